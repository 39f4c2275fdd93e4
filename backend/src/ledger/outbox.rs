//! The SQLite side of shipping (migrations/0013_ledger_outbox.sql): turning the outbox on,
//! reading the oldest changed rows with their current totals, and forgetting what PostgreSQL
//! acknowledged.

use rusqlite::{Connection, OptionalExtension, params};

use crate::metering::billing::Quantities;

/// One hourly ledger row as shipped: its key, its current absolute totals and the outbox
/// version they were read at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub period: i64,
    pub container_id: String,
    pub team: String,
    pub labels: String,
    pub name: String,
    pub duration_ms: i64,
    pub q: Quantities,
    pub version: i64,
}

/// Turns shipping on. The first time, this also queues every ledger row written so far (the
/// fleet gets this host's whole history) and names this database `new_id` (`db_id`, so two
/// databases never ship as one host) unless it has a name. Returns the database's id.
pub fn enable(conn: &Connection, new_id: &str) -> rusqlite::Result<String> {
    let tx = conn.unchecked_transaction()?;
    let (enabled, db_id): (bool, Option<String>) = tx.query_row(
        "SELECT enabled, db_id FROM ledger_ship WHERE id = 1",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let db_id = match db_id {
        Some(id) => id,
        None => {
            tx.execute("UPDATE ledger_ship SET db_id = ?1 WHERE id = 1", [new_id])?;
            new_id.to_owned()
        }
    };
    if !enabled {
        let n = tx.execute(
            "INSERT OR REPLACE INTO ledger_outbox (period, container_id, team, labels, version)
             SELECT period, container_id, team, labels,
               (SELECT next_version FROM ledger_ship WHERE id = 1)
                 + row_number() OVER (ORDER BY period, container_id, team, labels)
             FROM usage_ledger",
            [],
        )?;
        tx.execute(
            "UPDATE ledger_ship SET enabled = 1, next_version = next_version + ?1 WHERE id = 1",
            [n as i64],
        )?;
    }
    tx.commit()?;
    Ok(db_id)
}

/// Up to `limit` changed rows, oldest change first.
pub fn pending(conn: &Connection, limit: usize) -> rusqlite::Result<Vec<Row>> {
    let mut st = conn.prepare_cached(
        "SELECT o.period, o.container_id, o.team, o.labels, l.name, l.duration_ms, l.cpu_usec,
           l.throttled_usec, l.cpu_reserved_core_usec, l.mem_byte_s, l.mem_reserved_byte_s,
           l.io_rbytes, l.io_wbytes, l.io_rios, l.io_wios, l.oom_kills, l.mem_peak, l.pids_peak,
           o.version
         FROM ledger_outbox o JOIN usage_ledger l USING (period, container_id, team, labels)
         ORDER BY o.version LIMIT ?1",
    )?;
    st.query_map([limit as i64], |r| {
        Ok(Row {
            period: r.get(0)?,
            container_id: r.get(1)?,
            team: r.get(2)?,
            labels: r.get(3)?,
            name: r.get(4)?,
            duration_ms: r.get(5)?,
            q: Quantities {
                cpu_usec: r.get(6)?,
                throttled_usec: r.get(7)?,
                cpu_reserved_core_usec: r.get(8)?,
                mem_byte_s: r.get(9)?,
                mem_reserved_byte_s: r.get(10)?,
                io_rbytes: r.get(11)?,
                io_wbytes: r.get(12)?,
                io_rios: r.get(13)?,
                io_wios: r.get(14)?,
                oom_kills: r.get(15)?,
                mem_peak: r.get(16)?,
                pids_peak: r.get(17)?,
            },
            version: r.get(18)?,
        })
    })?
    .collect()
}

/// Forgets the shipped rows whose version did not move since they were read (a row written
/// again meanwhile stays queued, with its newer totals), and counts them shipped.
pub fn acknowledge(conn: &Connection, rows: &[Row], now_ms: i64) -> rusqlite::Result<()> {
    let tx = conn.unchecked_transaction()?;
    {
        let mut st = tx.prepare_cached(
            "DELETE FROM ledger_outbox WHERE period = ?1 AND container_id = ?2 AND team = ?3
               AND labels = ?4 AND version <= ?5",
        )?;
        for r in rows {
            st.execute(params![
                r.period,
                r.container_id,
                r.team,
                r.labels,
                r.version
            ])?;
        }
    }
    tx.execute(
        "UPDATE ledger_ship SET shipped_rows = shipped_rows + ?1, last_ship_ms = ?2 WHERE id = 1",
        params![rows.len() as i64, now_ms],
    )?;
    tx.commit()
}

/// What waits to be shipped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Backlog {
    /// Queued row keys.
    pub rows: i64,
    /// The oldest queued hour (unix s), if any.
    pub oldest_period: Option<i64>,
    /// Rows shipped since shipping was turned on.
    pub shipped_rows: i64,
    /// When PostgreSQL last acknowledged rows (unix ms).
    pub last_ship_ms: Option<i64>,
}

pub fn backlog(conn: &Connection) -> rusqlite::Result<Backlog> {
    let (rows, oldest_period): (i64, Option<i64>) =
        conn.query_row("SELECT count(*), min(period) FROM ledger_outbox", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?;
    let (shipped_rows, last_ship_ms) = conn
        .query_row(
            "SELECT shipped_rows, last_ship_ms FROM ledger_ship WHERE id = 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?
        .unwrap_or((0, None));
    Ok(Backlog {
        rows,
        oldest_period,
        shipped_rows,
        last_ship_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metering::{
        account::Usage,
        store::{Batch, LedgerOwner, commit, tests::db},
    };

    fn owner(id: &str) -> LedgerOwner {
        LedgerOwner {
            container_id: id.into(),
            name: format!("n-{id}"),
            team: "t".into(),
            labels: "{}".into(),
        }
    }

    fn usage(cpu: u64) -> Usage {
        Usage {
            duration_ns: 1_000_000_000,
            cpu_usec: cpu,
            ..Usage::default()
        }
    }

    #[test]
    fn rows_are_queued_with_the_ledger_and_forgotten_only_when_unchanged() {
        let mut conn = db();
        let hour = 1_800_000_000_000; // ms, within one hour
        // Written before shipping is on: queued by enable (history ships too).
        let mut b = Batch::default();
        b.add_ledger(&owner("a"), hour, &usage(10));
        commit(&mut conn, &b).expect("write");
        assert_eq!(backlog(&conn).expect("backlog").rows, 0);
        let id = enable(&conn, "first").expect("enable");
        assert_eq!(
            enable(&conn, "second").expect("again"),
            id,
            "one id per database"
        );
        assert_eq!(backlog(&conn).expect("backlog").rows, 1);
        // Later writes are queued by the trigger, in the same transaction.
        let mut b = Batch::default();
        b.add_ledger(&owner("b"), hour, &usage(5));
        commit(&mut conn, &b).expect("write");
        let rows = pending(&conn, 10).expect("pending");
        assert_eq!(
            rows.iter()
                .map(|r| (r.container_id.as_str(), r.q.cpu_usec))
                .collect::<Vec<_>>(),
            [("a", 10), ("b", 5)]
        );
        // "a" grows after it was read: acknowledging the read copy keeps it queued.
        let mut b = Batch::default();
        b.add_ledger(&owner("a"), hour, &usage(7));
        commit(&mut conn, &b).expect("write");
        acknowledge(&conn, &rows, 1).expect("ack");
        let left = pending(&conn, 10).expect("pending");
        assert_eq!(
            left.iter()
                .map(|r| (r.container_id.as_str(), r.q.cpu_usec))
                .collect::<Vec<_>>(),
            [("a", 17)]
        );
        acknowledge(&conn, &left, 2).expect("ack");
        let b = backlog(&conn).expect("backlog");
        assert_eq!((b.rows, b.shipped_rows, b.last_ship_ms), (0, 3, Some(2)));
    }
}
