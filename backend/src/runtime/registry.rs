//! The container records in memory: what reads (`list`, `get`, every lifecycle operation's
//! lookup) use. SQLite stays the durable copy; every write to the `containers` table goes
//! through the store's connection lock and then here, under that lock, so the two never
//! disagree for longer than one write. Loaded once when the manager is made (a restarted
//! daemon rebuilds it from SQLite), never re-read on a timer.
//!
//! It also knows which live containers a pidfd watch covers in full (`watch.rs`: the
//! monitor's and the init's pidfds both armed). Their records change only through a write
//! (an API action, or the watch's reconcile on an exit or a restart), so a list returns them
//! as they are; any other live record is brought up to date from its monitor's state file and
//! the process table on read, as before.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard},
};

use rusqlite::{Connection, OptionalExtension};

use super::{
    RuntimeError,
    manager::{COLS, Record, row_to_record},
};

pub(super) struct Registry {
    /// Id → record.
    records: Mutex<HashMap<String, Entry>>,
    /// Ids of the containers with a running watch → whether both its pidfds are armed.
    watched: Mutex<HashMap<String, bool>>,
}

struct Entry {
    record: Record,
    /// `record.to_wire()` as JSON, made by the first list that returns this version of the
    /// record (a write replaces the entry, so it is never stale).
    json: Option<Arc<[u8]>>,
}

impl Entry {
    fn new(record: Record) -> Self {
        Entry { record, json: None }
    }
}

/// One container of `GET /containers`, serialized ([`Registry::list_rows`]).
pub struct Listed {
    pub id: String,
    pub network: crate::network::NetworkMode,
    /// The `wire::Container` as JSON, without `network` (the caller adds it).
    pub json: Arc<[u8]>,
}

impl Listed {
    pub(super) fn of(r: &Record) -> Self {
        Self::with_json(r, wire_json(r))
    }

    fn with_json(r: &Record, json: Arc<[u8]>) -> Self {
        Listed {
            id: r.id.clone(),
            network: crate::network::NetworkMode::of_spec(
                r.spec.network.as_deref(),
                !r.spec.ports.is_empty(),
            ),
            json,
        }
    }
}

fn wire_json(r: &Record) -> Arc<[u8]> {
    serde_json::to_vec(&r.to_wire())
        .expect("a wire::Container serializes")
        .into()
}

/// A row of [`Registry::list_rows`].
pub(super) enum ListRow {
    Ready(Listed),
    /// A live record without an armed watch: to be brought up to date from its monitor.
    Stale(Box<Record>),
}

/// Oldest first, then by name: the table's `ORDER BY created_at, name`.
fn age_order(a: &Record, b: &Record) -> std::cmp::Ordering {
    (a.created_at, &a.name).cmp(&(b.created_at, &b.name))
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Registry {
    /// Every record of the `containers` table.
    pub(super) fn load(conn: &Connection) -> Result<Self, RuntimeError> {
        let mut stmt = conn.prepare(&format!("SELECT {COLS} FROM containers"))?;
        let records = stmt
            .query_map([], row_to_record)?
            .map(|r| r.map(|r| (r.id.clone(), Entry::new(r))))
            .collect::<Result<HashMap<_, _>, _>>()?;
        Ok(Self {
            records: Mutex::new(records),
            watched: Mutex::default(),
        })
    }

    /// The record whose id or name is `key`.
    pub(super) fn get(&self, key: &str) -> Option<Record> {
        let records = lock(&self.records);
        records
            .get(key)
            .or_else(|| records.values().find(|e| e.record.name == key))
            .map(|e| e.record.clone())
    }

    /// All records, oldest first (then by name), as the table's `ORDER BY created_at, name`.
    pub(super) fn all(&self) -> Vec<Record> {
        let mut all: Vec<Record> = lock(&self.records)
            .values()
            .map(|e| e.record.clone())
            .collect();
        all.sort_by(age_order);
        all
    }

    /// `f` applied to every record oldest first, with whether a watch covers it in full;
    /// `f` keeps what it returns.
    pub(super) fn map<T>(&self, mut f: impl FnMut(&Record, bool) -> Option<T>) -> Vec<T> {
        let watched = lock(&self.watched);
        let records = lock(&self.records);
        let mut rows: Vec<&Record> = records.values().map(|e| &e.record).collect();
        rows.sort_by(|a, b| age_order(a, b));
        rows.into_iter()
            .filter_map(|r| f(r, watched.get(&r.id).copied().unwrap_or(false)))
            .collect()
    }

    /// The list's rows, oldest first (then by name): every record `keep` accepts (given the
    /// record and whether it is live), as its wire JSON when a watch covers it in full or it is
    /// not live, else as a [`ListRow::Stale`] record. Each record version is serialized once,
    /// by the first list that returns it; a list of unchanged records copies bytes.
    pub(super) fn list_rows(&self, mut keep: impl FnMut(&Record, bool) -> bool) -> Vec<ListRow> {
        let watched = lock(&self.watched);
        let mut records = lock(&self.records);
        let mut rows: Vec<&mut Entry> = records.values_mut().collect();
        rows.sort_unstable_by(|a, b| age_order(&a.record, &b.record));
        let mut out = Vec::with_capacity(rows.len());
        for e in rows {
            let r = &e.record;
            let live = r.status().is_live();
            if !keep(r, live) {
                continue;
            }
            if live && !watched.get(&r.id).copied().unwrap_or(false) {
                out.push(ListRow::Stale(Box::new(r.clone())));
                continue;
            }
            let json = e.json.get_or_insert_with(|| wire_json(r)).clone();
            out.push(ListRow::Ready(Listed::with_json(r, json)));
        }
        out
    }

    /// After `r` was written to the table (under the connection lock).
    pub(super) fn put(&self, r: &Record) {
        lock(&self.records).insert(r.id.clone(), Entry::new(r.clone()));
    }

    /// After a write to the row of `id` other than a whole record (under the connection lock):
    /// the row read back, or dropped when it is gone.
    pub(super) fn reread(&self, conn: &Connection, id: &str) -> Result<(), RuntimeError> {
        let row = conn
            .query_row(
                &format!("SELECT {COLS} FROM containers WHERE id = ?1"),
                [id],
                row_to_record,
            )
            .optional()?;
        let mut records = lock(&self.records);
        match row {
            Some(r) => {
                records.insert(id.to_owned(), Entry::new(r));
            }
            None => {
                records.remove(id);
            }
        }
        Ok(())
    }

    /// Marks `id` watched (not yet armed); false when it already was.
    pub(super) fn mark_watched(&self, id: &str) -> bool {
        let mut w = lock(&self.watched);
        if w.contains_key(id) {
            return false;
        }
        w.insert(id.to_owned(), false);
        true
    }

    /// Whether both pidfds of `id`'s watch are armed.
    pub(super) fn set_armed(&self, id: &str, armed: bool) {
        if let Some(a) = lock(&self.watched).get_mut(id) {
            *a = armed;
        }
    }

    pub(super) fn unmark_watched(&self, id: &str) {
        lock(&self.watched).remove(id);
    }
}
