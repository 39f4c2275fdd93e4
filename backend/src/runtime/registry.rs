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
    sync::{Mutex, MutexGuard},
};

use rusqlite::{Connection, OptionalExtension};

use super::{
    RuntimeError,
    manager::{COLS, Record, row_to_record},
};

pub(super) struct Registry {
    /// Id → record.
    records: Mutex<HashMap<String, Record>>,
    /// Ids of the containers with a running watch → whether both its pidfds are armed.
    watched: Mutex<HashMap<String, bool>>,
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
            .map(|r| r.map(|r| (r.id.clone(), r)))
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
            .or_else(|| records.values().find(|r| r.name == key))
            .cloned()
    }

    /// All records, oldest first (then by name), as the table's `ORDER BY created_at, name`.
    pub(super) fn all(&self) -> Vec<Record> {
        let mut all: Vec<Record> = lock(&self.records).values().cloned().collect();
        all.sort_by(|a, b| (a.created_at, &a.name).cmp(&(b.created_at, &b.name)));
        all
    }

    /// `f` applied to every record oldest first, with whether a watch covers it in full;
    /// `f` keeps what it returns.
    pub(super) fn map<T>(&self, mut f: impl FnMut(&Record, bool) -> Option<T>) -> Vec<T> {
        let watched = lock(&self.watched);
        let records = lock(&self.records);
        let mut rows: Vec<&Record> = records.values().collect();
        rows.sort_by(|a, b| (a.created_at, &a.name).cmp(&(b.created_at, &b.name)));
        rows.into_iter()
            .filter_map(|r| f(r, watched.get(&r.id).copied().unwrap_or(false)))
            .collect()
    }

    /// After `r` was written to the table (under the connection lock).
    pub(super) fn put(&self, r: &Record) {
        lock(&self.records).insert(r.id.clone(), r.clone());
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
            Some(r) => records.insert(id.to_owned(), r),
            None => records.remove(id),
        };
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
