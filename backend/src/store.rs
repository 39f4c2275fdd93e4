//! The SQLite store: one database file under the state directory, migrated at start-up from the
//! SQL files in `migrations/`.

use std::path::{Path, PathBuf};
use std::{
    ops::{Deref, DerefMut},
    panic::Location,
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, Instant},
};

use rusqlite::Connection;
use rusqlite_migration::{M, Migrations};

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open database {path}")]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("cannot migrate database {path}")]
    Migrate {
        path: PathBuf,
        source: rusqlite_migration::Error,
    },
    #[error("database query failed")]
    Sql(#[from] rusqlite::Error),
}

/// The migrations, in order. A migration, once released, is never edited: add a new file.
pub(crate) const MIGRATIONS: &[&str] = &[
    include_str!("../../migrations/0001_init.sql"),
    include_str!("../../migrations/0002_auth.sql"),
    include_str!("../../migrations/0003_containers.sql"),
    include_str!("../../migrations/0004_metering.sql"),
    include_str!("../../migrations/0005_network.sql"),
    include_str!("../../migrations/0006_containers_creating.sql"),
    include_str!("../../migrations/0007_ledger_tiers.sql"),
    include_str!("../../migrations/0008_sample_pressure.sql"),
    include_str!("../../migrations/0009_packed_samples.sql"),
    include_str!("../../migrations/0010_network_team.sql"),
    include_str!("../../migrations/0011_team_limits.sql"),
    include_str!("../../migrations/0012_team_budgets.sql"),
    include_str!("../../migrations/0013_ledger_outbox.sql"),
    include_str!("../../migrations/0014_fleet_tokens.sql"),
];

/// [`MIGRATIONS`] with their Rust hooks: 0009 moves the raw samples of `meter_sample` into
/// packed chunks (`metering::store::move_row_samples`).
pub(crate) fn migrations() -> Migrations<'static> {
    Migrations::new(
        MIGRATIONS
            .iter()
            .map(|sql| {
                if sql.contains("CREATE TABLE meter_chunk") {
                    M::up_with_hook(sql, crate::metering::store::move_row_samples)
                } else {
                    M::up(sql)
                }
            })
            .collect(),
    )
}

/// A handle to the database, cheap to clone. Queries run on blocking threads (`spawn_blocking`).
#[derive(Clone)]
pub struct Store {
    conn: Arc<Mutex<Connection>>,
}

impl Store {
    /// Opens (creating if needed) and migrates the database at `path`.
    ///
    /// WAL with `synchronous=FULL`: a committed row survives a crash of the daemon or the host.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let open_err = |source| StoreError::Open {
            path: path.to_owned(),
            source,
        };
        let mut conn = Connection::open(path).map_err(open_err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(open_err)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(open_err)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(open_err)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(open_err)?;
        migrations()
            .to_latest(&mut conn)
            .map_err(|source| StoreError::Migrate {
                path: path.to_owned(),
                source,
            })?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// Locks the connection. Call from a blocking context only.
    ///
    /// A wait or a hold longer than [`SLOW_LOCK`] is logged with the caller's file and line:
    /// every request and the sampler share this one connection, so a slow holder is what a
    /// timed-out request (408) or a late ledger flush points at.
    #[track_caller]
    pub fn lock(&self) -> Locked<'_> {
        self.lock_for(Location::caller())
    }

    /// [`Store::lock`] on behalf of `at` (a helper that runs its caller's closure).
    pub fn lock_for(&self, at: &'static Location<'static>) -> Locked<'_> {
        let asked = Instant::now();
        // A panic while holding the lock leaves SQLite consistent (statements are atomic).
        let guard = self
            .conn
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let since = Instant::now();
        let waited = since - asked;
        if waited >= SLOW_LOCK {
            tracing::warn!(waited_ms = waited.as_millis() as u64, at = %at, "waited long for the database");
        }
        Locked { guard, at, since }
    }
}

/// A wait for, or a hold of, the database this long is logged.
pub const SLOW_LOCK: Duration = Duration::from_secs(2);

/// The locked connection ([`Store::lock`]); logs its caller when it was held long.
pub struct Locked<'a> {
    guard: MutexGuard<'a, Connection>,
    at: &'static Location<'static>,
    since: Instant,
}

impl Deref for Locked<'_> {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        &self.guard
    }
}

impl DerefMut for Locked<'_> {
    fn deref_mut(&mut self) -> &mut Connection {
        &mut self.guard
    }
}

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        let held = self.since.elapsed();
        if held >= SLOW_LOCK {
            tracing::warn!(held_ms = held.as_millis() as u64, at = %self.at, "held the database long");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_and_migrates_twice() {
        let dir = std::env::temp_dir().join(format!("corral-store-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let db = dir.join("corral.db");
        Store::open(&db).unwrap();
        let store = Store::open(&db).unwrap();
        let mode: String = store
            .lock()
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
