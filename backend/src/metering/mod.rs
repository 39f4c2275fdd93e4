//! Metering, history and billing, from the kernel's own cumulative counters.
//!
//! - [`account`]: the pure accounting core (readings → exact deltas; resets, reboots, clock
//!   steps; memory integrals; reservations; hour splitting).
//! - [`store`]: the SQLite side (migrations/0004_metering.sql): the batch written per sampler
//!   tick (a block of packed samples + ledger + checkpoints in one transaction), compaction into
//!   per-minute chunks, rollups, retention, history.
//! - [`packed`]: the blob format of raw samples (blocks per tick, chunks per subject-minute).
//! - [`billing`]: the versioned rate card, priced reports per container/team/label, statements.
//! - [`sampler`]: the registry the runtime feeds (`register` / `unregister_with_final_reading`)
//!   and the sampler thread that reads every group through kept-open cgroup readers.
//! - [`calendar`]: UTC hours, days and months.
//!
//! Architecture invariant: usage is only ever derived from counter deltas between two readings
//! of the same boot and the same cgroup incarnation, timed by `CLOCK_MONOTONIC`; the wall clock
//! only decides which hour a delta is booked to.

pub mod account;
pub mod billing;
pub mod calendar;
pub mod packed;
pub mod sampler;
pub mod store;

pub use account::{Counters, Reading, Reserved, Usage};
pub use sampler::{LiveStat, Metering, MeteringConfig, SubjectKind};

/// Errors of metering and billing.
#[derive(Debug, thiserror::Error)]
pub enum MeteringError {
    #[error("metering database query failed")]
    Sql(#[from] rusqlite::Error),
    #[error("cannot encode a metering checkpoint")]
    Json(#[source] serde_json::Error),
    #[error("invalid {field} {value:?}: allowed is {allowed}")]
    Invalid {
        field: &'static str,
        value: String,
        allowed: String,
    },
    #[error("no metered container or team named {0:?}")]
    NotFound(String),
    #[error("cannot read {path}")]
    Read {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("cannot start the sampler thread")]
    Spawn(#[source] std::io::Error),
}
