//! `GET /api/v1/events`: Server-Sent Events of live stats and container lifecycle, for the
//! dashboard (`EventSource`) and scripts.
//!
//! Every message has `id:` (the newest lifecycle id this stream has passed, see
//! `crate::events`), `event:` (`stats`, `container`, `reset`) and `data:` (a
//! `wire::events::Event` as JSON). A new stream starts with a `stats` message; one that sends
//! `Last-Event-ID` first gets the lifecycle events it missed (or `reset` when they are gone).
//! Each caller sees only its teams' containers and teams; the stream re-checks its credentials
//! and teams every [`RECHECK`], and ends when the session or token ends or the daemon stops.
//! Comments (`: keep-alive`) every [`KEEP_ALIVE`] keep proxies and tunnels from closing it.
//! The router's 30 s request timeout times the answer's head only, so the stream runs on.

use std::{collections::VecDeque, convert::Infallible, sync::Arc, time::Duration};

use axum::{
    extract::State,
    http::HeaderMap,
    response::{
        IntoResponse, Response,
        sse::{Event as SseEvent, KeepAlive, Sse},
    },
};
use tokio::sync::watch;
use utoipa_axum::{router::OpenApiRouter, routes};
use wire::events::Event;

use super::AppState;
use crate::{
    auth::Actor,
    events::{Since, Snapshot},
};

/// The route's full path.
pub const PATH: &str = "/api/v1/events";
/// Time between keep-alive comments.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// Time between re-checks of the caller's credentials and teams.
pub const RECHECK: Duration = Duration::from_secs(10);

/// In the OpenAPI document; any authenticated caller, filtered to its teams.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(events_get))
}

/// Live stats and container lifecycle events as Server-Sent Events.
#[utoipa::path(get, path = "/events", tag = "events",
    params(
        ("Last-Event-ID" = Option<String>, Header,
            description = "Resume after this id: the lifecycle events missed since, or `reset`"),
    ),
    responses(
        (status = 200, description = "An endless `text/event-stream`; each `data:` is one Event",
            content_type = "text/event-stream", body = wire::events::Event),
        (status = 401, description = "No credentials", body = wire::ApiError),
        (status = 403, description = "Foreign Host or Origin", body = wire::ApiError),
    ))]
async fn events_get(State(state): State<AppState>, actor: Actor, headers: HeaderMap) -> Response {
    let hub = state.events().clone();
    // Subscribe before reading the ring: nothing published in between is lost.
    let mut head = hub.watch_head();
    head.borrow_and_update();
    let mut stats = hub.watch_stats(state.metering());
    stats.borrow_and_update();
    let mut closed = hub.watch_closed();
    closed.borrow_and_update();
    let mut stream = Stream {
        state,
        actor,
        cursor: hub.head(),
        queue: VecDeque::new(),
        head,
        stats,
        closed,
        recheck: tokio::time::interval_at(tokio::time::Instant::now() + RECHECK, RECHECK),
    };
    if let Some(last) = headers.get("last-event-id") {
        // Not a number we gave out: the client cannot know what it missed.
        let after = last
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        stream.catch_up(after);
    }
    stream.push_stats();
    let body = futures_util::stream::unfold(stream, |mut s| async move {
        let next = s.next().await?;
        Some((Ok::<_, Infallible>(next), s))
    });
    Sse::new(body)
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE).text("keep-alive"))
        .into_response()
}

/// One caller's stream.
struct Stream {
    state: AppState,
    actor: Actor,
    /// Newest lifecycle id passed on (or skipped as not visible).
    cursor: u64,
    queue: VecDeque<SseEvent>,
    head: watch::Receiver<u64>,
    stats: watch::Receiver<Option<Arc<Snapshot>>>,
    closed: watch::Receiver<bool>,
    recheck: tokio::time::Interval,
}

enum Wake {
    Lifecycle,
    Stats,
    Recheck,
    End,
}

impl Stream {
    async fn next(&mut self) -> Option<SseEvent> {
        loop {
            if let Some(e) = self.queue.pop_front() {
                return Some(e);
            }
            let wake = tokio::select! {
                biased;
                _ = self.closed.wait_for(|c| *c) => Wake::End,
                r = self.head.changed() => if r.is_ok() { Wake::Lifecycle } else { Wake::End },
                r = self.stats.changed() => if r.is_ok() { Wake::Stats } else { Wake::End },
                _ = self.recheck.tick() => Wake::Recheck,
            };
            match wake {
                Wake::End => return None,
                Wake::Lifecycle => self.catch_up(self.cursor),
                Wake::Stats => {
                    // Lifecycle first: a stats id must never pass an event not yet sent.
                    self.catch_up(self.cursor);
                    self.push_stats();
                }
                Wake::Recheck => {
                    match crate::auth::middleware::recheck(&self.state, &self.actor).await {
                        Ok(Some(actor)) => self.actor = actor,
                        Ok(None) => return None,
                        Err(e) => {
                            tracing::warn!(error = %e, "cannot re-check an event stream's credentials");
                            return None;
                        }
                    }
                }
            }
        }
    }

    /// Queues the lifecycle events after `after` that the caller may see, or `reset`.
    fn catch_up(&mut self, after: u64) {
        match self.state.events().since(after) {
            Since::Replay { events, head } => {
                let scope = self.actor.team_scope();
                for (id, e) in events {
                    self.cursor = id;
                    if scope.contains(e.team()) {
                        self.queue.push_back(message(id, &e.to_wire()));
                    }
                }
                self.cursor = self.cursor.max(head);
            }
            Since::Reset { head } => {
                self.cursor = head;
                self.queue.push_back(message(head, &Event::Reset));
            }
        }
    }

    /// Queues the latest stats snapshot, filtered to the caller's teams.
    fn push_stats(&mut self) {
        let snap = self.stats.borrow_and_update().clone();
        let scope = self.actor.team_scope();
        let stats = match snap {
            Some(s) => wire::billing::LiveStats {
                interval_secs: s.interval_secs,
                stats: s
                    .stats
                    .iter()
                    .filter(|l| scope.contains(&l.team))
                    .cloned()
                    .collect(),
            },
            None => wire::billing::LiveStats {
                interval_secs: self
                    .state
                    .metering()
                    .map_or(0.0, |m| m.config().interval.as_secs_f64()),
                stats: Vec::new(),
            },
        };
        self.queue
            .push_back(message(self.cursor, &Event::Stats(stats)));
    }
}

fn message(id: u64, event: &Event) -> SseEvent {
    // Serializing plain structs of strings and numbers does not fail.
    let data = serde_json::to_string(event).unwrap_or_else(|_| "{}".to_owned());
    SseEvent::default()
        .id(id.to_string())
        .event(event.kind())
        .data(data)
}
