//! `GET /api/v1/events`: Server-Sent Events for live stats and container lifecycle.
//!
//! Each SSE message carries `id:` (a sequence number that only grows), `event:` (the variant
//! name: `stats`, `container`, `budget` or `reset`) and `data:` (this enum as JSON). A client that reconnects
//! with `Last-Event-ID` gets every lifecycle event it missed; when the server no longer holds them
//! it sends `reset` first, and the client refetches its lists.

use serde::{Deserialize, Serialize};

use crate::billing::LiveStats;

/// One event of the stream (the JSON in `data:`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// A fresh live sample, only the containers and teams the caller may read.
    Stats(LiveStats),
    /// A container's lifecycle changed.
    Container(ContainerEvent),
    /// A team's budget ladder moved (a step landed or was lifted).
    Budget(crate::BudgetEvent),
    /// Events were missed and cannot be replayed: refetch the lists.
    Reset,
}

impl Event {
    /// The SSE `event:` field for this event.
    pub fn kind(&self) -> &'static str {
        match self {
            Event::Stats(_) => "stats",
            Event::Container(_) => "container",
            Event::Budget(_) => "budget",
            Event::Reset => "reset",
        }
    }
}

/// A lifecycle change of one container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ContainerEvent {
    pub name: String,
    /// The container's id (absent from servers that predate it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub team: String,
    /// `created`, `started`, `stopped`, `died`, `killed`, `paused`, `unpaused`, `updated`,
    /// `restarted`, `removed` or `oom`.
    pub action: String,
    /// The container's status after the change (`created`, `running`, `paused`, `exited`,
    /// `removed`).
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// Who asked for it; absent when the kernel or a restart policy did it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// Unix ms.
    pub ts: i64,
}
