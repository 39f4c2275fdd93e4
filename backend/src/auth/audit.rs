//! The audit log: an append-only table (triggers abort any UPDATE or DELETE) with one row per
//! state change and per login attempt — who, when, what, before/after JSON, result.
//!
//! Call [`record`] after a change (or [`insert`] inside the change's own transaction). A
//! state-changing request whose handler records nothing still gets a generic row from the
//! middleware, so nothing goes unrecorded.
//!
//! # The reserve
//! A full state filesystem must not turn into unrecorded changes. The middleware calls
//! [`ensure_room`] before every state-changing request (but logout and a container's stop or
//! kill, the brakes): when the state filesystem has less than [`RESERVE_BYTES`] free, the
//! change is refused with 503 `audit_unavailable` naming the audit log, before anything is
//! done. The space below the reserve is left for the rows of what still runs (refusals, the
//! brakes, logouts); a change whose own transaction hits a full disk anyway rolls back with
//! its audit row and answers the same 503.

use std::path::Path;

use rusqlite::{Connection, params};
use serde_json::Value;

use super::{Actor, AuthError, db};
use crate::store::Store;

/// How an audited action ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    /// Refused by authorization.
    Denied,
    /// Refused for another reason (validation, wrong password).
    Failed,
    /// A login attempt refused by the throttle.
    Throttled,
    /// The server failed.
    Error,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Denied => "denied",
            Outcome::Failed => "failed",
            Outcome::Throttled => "throttled",
            Outcome::Error => "error",
        }
    }
}

/// One audit row being built.
#[derive(Debug, Clone)]
pub struct Event {
    pub actor: String,
    pub via: String,
    pub action: String,
    pub target: Option<String>,
    pub before: Option<Value>,
    pub after: Option<Value>,
    pub result: Outcome,
    pub detail: Option<String>,
    marker: Option<Actor>,
}

impl Event {
    /// An event by `actor`, `Ok` unless set otherwise.
    pub fn new(actor: &Actor, action: &str) -> Self {
        Self {
            actor: actor.name.clone(),
            via: actor.via.as_str().to_owned(),
            action: action.to_owned(),
            target: None,
            before: None,
            after: None,
            result: Outcome::Ok,
            detail: None,
            marker: Some(actor.clone()),
        }
    }

    /// An event without an authenticated actor (login attempts, setup).
    pub fn anonymous(name: &str, action: &str) -> Self {
        Self {
            actor: name.to_owned(),
            via: "-".into(),
            action: action.to_owned(),
            target: None,
            before: None,
            after: None,
            result: Outcome::Ok,
            detail: None,
            marker: None,
        }
    }

    pub fn target(mut self, target: impl Into<String>) -> Self {
        self.target = Some(target.into());
        self
    }
    pub fn before(mut self, v: Value) -> Self {
        self.before = Some(v);
        self
    }
    pub fn after(mut self, v: Value) -> Self {
        self.after = Some(v);
        self
    }
    pub fn result(mut self, r: Outcome) -> Self {
        self.result = r;
        self
    }
    pub fn detail(mut self, d: impl Into<String>) -> Self {
        self.detail = Some(d.into());
        self
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Appends `event` using `conn` (e.g. inside the transaction of the change it records).
pub fn insert(conn: &Connection, event: &Event) -> Result<(), rusqlite::Error> {
    if let Some(a) = &event.marker {
        a.mark_audited();
    }
    conn.execute(
        "INSERT INTO audit_log (at_ms, actor, via, action, target, before, after, result, detail) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        params![
            now_ms(),
            event.actor,
            event.via,
            event.action,
            event.target,
            event.before.as_ref().map(Value::to_string),
            event.after.as_ref().map(Value::to_string),
            event.result.as_str(),
            event.detail,
        ],
    )?;
    Ok(())
}

/// Appends `event` on a blocking thread. A failure is logged, never returned: the change it
/// describes has already happened.
pub async fn record(store: &Store, event: Event) {
    if let Some(a) = &event.marker {
        a.mark_audited();
    }
    let action = event.action.clone();
    let r = db::run(store, move |conn| {
        insert(conn, &event).map_err(AuthError::from)
    })
    .await;
    if let Err(e) = r {
        tracing::error!(error = %e, action, "cannot write audit record");
    }
}

/// Free bytes the state filesystem keeps for audit rows: below this, security-relevant
/// changes are refused (see the module docs).
pub const RESERVE_BYTES: u64 = 8 << 20;

/// `Ok` when the filesystem of `state_dir` has at least [`RESERVE_BYTES`] free (for
/// unprivileged writers: `f_bavail`); otherwise [`AuthError::AuditUnavailable`] saying so.
pub fn ensure_room(state_dir: &Path) -> Result<(), AuthError> {
    let free = match nix::sys::statvfs::statvfs(state_dir) {
        Ok(v) => v.blocks_available().saturating_mul(v.fragment_size()),
        // Not knowing is not a reason to refuse; a failing write still is.
        Err(_) => return Ok(()),
    };
    if free >= RESERVE_BYTES {
        return Ok(());
    }
    Err(AuthError::AuditUnavailable(format!(
        "the audit log cannot be kept: the state filesystem of {} has {} KiB free, below the \
         {} MiB kept for audit rows, so the change was refused and nothing changed; free space \
         there and try again",
        state_dir.display(),
        free / 1024,
        RESERVE_BYTES >> 20
    )))
}

/// Filters of `GET /api/v1/audit`.
#[derive(Debug, Default, Clone)]
pub struct Query {
    pub limit: u32,
    pub before_id: Option<i64>,
    pub actor: Option<String>,
    pub action: Option<String>,
}

/// Newest first.
pub fn list(conn: &Connection, q: &Query) -> Result<Vec<wire::AuditEntry>, AuthError> {
    let mut stmt = conn.prepare(
        "SELECT id, at_ms, actor, via, action, target, before, after, result, detail FROM audit_log \
         WHERE (?1 IS NULL OR id < ?1) AND (?2 IS NULL OR actor = ?2) AND (?3 IS NULL OR action = ?3) \
         ORDER BY id DESC LIMIT ?4",
    )?;
    let rows = stmt.query_map(
        params![q.before_id, q.actor, q.action, q.limit],
        entry_from_row,
    )?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The rows about `target` since `since_ms`, oldest first (a container's timeline).
pub fn for_target(
    conn: &Connection,
    target: &str,
    since_ms: i64,
) -> Result<Vec<wire::AuditEntry>, AuthError> {
    let mut stmt = conn.prepare(
        "SELECT id, at_ms, actor, via, action, target, before, after, result, detail \
         FROM audit_log WHERE target = ?1 AND at_ms >= ?2 ORDER BY id LIMIT 10000",
    )?;
    let rows = stmt.query_map(params![target, since_ms], entry_from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// One row of the `SELECT id, at_ms, actor, via, action, target, before, after, result,
/// detail` the readers share.
fn entry_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<wire::AuditEntry> {
    Ok(wire::AuditEntry {
        id: r.get(0)?,
        at_ms: r.get(1)?,
        actor: r.get(2)?,
        via: r.get(3)?,
        action: r.get(4)?,
        target: r.get(5)?,
        before: r.get(6)?,
        after: r.get(7)?,
        result: r.get(8)?,
        detail: r.get(9)?,
    })
}
