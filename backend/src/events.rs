//! The event hub behind `GET /api/v1/events` (see `http::events` for the stream itself).
//!
//! - Lifecycle events ([`wire::events::ContainerEvent`]) come from the runtime `Manager`
//!   ([`Events::saved`] diffs a record against what was stored; [`Events::container`] for
//!   create, remove, kill and restart) and from the sampler ([`Events::oom`]). Each gets a sequence
//!   id and goes into a ring of the last [`RING`] events; a `watch` of the newest id wakes the
//!   streams, which read the ring from their own cursor. So live delivery and `Last-Event-ID`
//!   resume are the same code: "everything after my cursor".
//! - Ids start at this run's start time in microseconds and grow by one per lifecycle event,
//!   so an id from an earlier daemon run is older than every id of this one: the hub answers
//!   `reset` for it (it cannot know what changed while it was down), as it does for an id whose
//!   events left the ring, or an id from the future.
//! - Live stats: one poller task (started with the first stream) watches the metering
//!   sampler's live view and publishes a snapshot per sampler tick; each stream filters it by
//!   its caller's teams.
//! - Who asked for a change: the auth guard runs each handler inside [`with_actor`]; the
//!   manager's blocking helper carries it onto its thread ([`run_as`]). A stop records its
//!   requester in the container's stop marker, so the exit event names them even when the
//!   reconciler notices the exit first. Exits the kernel caused carry no actor.

use std::{
    cell::RefCell,
    collections::VecDeque,
    path::Path,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use tokio::sync::watch;
use wire::{BudgetEvent, billing::LiveStat as WireStat, events::ContainerEvent};

use crate::{
    metering::{
        Metering,
        sampler::{LiveStat, SubjectKind, wall_ms},
        store::LedgerOwner,
    },
    runtime::manager::{Record, Status},
};

/// Lifecycle events kept for clients that reconnect.
pub const RING: usize = 1024;
/// How often the poller looks for a new sampler tick.
const POLL: Duration = Duration::from_millis(250);

/// One sampler tick of every metered subject, before per-caller filtering.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    pub interval_secs: f64,
    pub stats: Vec<WireStat>,
}

/// One event of the ring: what a stream delivers in order and replays after `Last-Event-ID`.
#[derive(Debug, Clone, PartialEq)]
pub enum Lifecycle {
    Container(ContainerEvent),
    /// A team's budget step changed (`crate::budget`).
    Budget(BudgetEvent),
}

impl Lifecycle {
    /// The team whose members may see it.
    pub fn team(&self) -> &str {
        match self {
            Lifecycle::Container(e) => &e.team,
            Lifecycle::Budget(e) => &e.team,
        }
    }

    /// The wire event.
    pub fn to_wire(&self) -> wire::events::Event {
        match self {
            Lifecycle::Container(e) => wire::events::Event::Container(e.clone()),
            Lifecycle::Budget(e) => wire::events::Event::Budget(e.clone()),
        }
    }
}

/// What a stream resuming after an id gets.
#[derive(Debug, Clone, PartialEq)]
pub enum Since {
    /// Every lifecycle event after the id (possibly none), and the newest id.
    Replay {
        events: Vec<(u64, Arc<Lifecycle>)>,
        head: u64,
    },
    /// The events after the id are gone (or the id is not of this run): refetch, then
    /// continue from `head`.
    Reset { head: u64 },
}

/// The hub: cheap to clone.
#[derive(Clone)]
pub struct Events {
    inner: Arc<Inner>,
}

struct Inner {
    /// Id "before the first event" of this run.
    start: u64,
    ring: Mutex<Ring>,
    head: watch::Sender<u64>,
    stats: watch::Sender<Option<Arc<Snapshot>>>,
    poller: AtomicBool,
    closed: watch::Sender<bool>,
}

struct Ring {
    events: VecDeque<(u64, Arc<Lifecycle>)>,
    /// Newest id handed out.
    last: u64,
    /// Newest id that left the ring: a cursor below it missed something.
    evicted: u64,
}

impl Default for Events {
    fn default() -> Self {
        Self::new()
    }
}

impl Events {
    pub fn new() -> Self {
        let start = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_micros() as u64);
        Self::starting_at(start)
    }

    /// A hub whose ids start after `start` (tests).
    pub fn starting_at(start: u64) -> Self {
        Events {
            inner: Arc::new(Inner {
                start,
                ring: Mutex::new(Ring {
                    events: VecDeque::with_capacity(RING),
                    last: start,
                    evicted: start,
                }),
                head: watch::channel(start).0,
                stats: watch::channel(None).0,
                poller: AtomicBool::new(false),
                closed: watch::channel(false).0,
            }),
        }
    }

    fn ring(&self) -> std::sync::MutexGuard<'_, Ring> {
        self.inner.ring.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Publishes a lifecycle event; returns its id.
    pub fn publish(&self, event: ContainerEvent) -> u64 {
        self.push(Lifecycle::Container(event))
    }

    /// Publishes a budget step change (`event: budget`); returns its id.
    pub fn budget(&self, event: BudgetEvent) -> u64 {
        self.push(Lifecycle::Budget(event))
    }

    fn push(&self, event: Lifecycle) -> u64 {
        let id = {
            let mut ring = self.ring();
            ring.last += 1;
            let id = ring.last;
            if ring.events.len() == RING
                && let Some((old, _)) = ring.events.pop_front()
            {
                ring.evicted = old;
            }
            ring.events.push_back((id, Arc::new(event)));
            id
        };
        self.inner.head.send_replace(id);
        id
    }

    /// The newest id.
    pub fn head(&self) -> u64 {
        self.ring().last
    }

    /// What a client whose last seen id is `after` has missed.
    pub fn since(&self, after: u64) -> Since {
        let ring = self.ring();
        if after < self.inner.start || after > ring.last || after < ring.evicted {
            return Since::Reset { head: ring.last };
        }
        Since::Replay {
            events: ring
                .events
                .iter()
                .filter(|(id, _)| *id > after)
                .cloned()
                .collect(),
            head: ring.last,
        }
    }

    /// Every lifecycle event still in the ring, oldest first, and the newest id (the Docker
    /// API's `docker events --since` picks from them by time).
    pub fn kept(&self) -> (Vec<(u64, Arc<Lifecycle>)>, u64) {
        let ring = self.ring();
        (ring.events.iter().cloned().collect(), ring.last)
    }

    /// Wakes when a lifecycle event was published.
    pub fn watch_head(&self) -> watch::Receiver<u64> {
        self.inner.head.subscribe()
    }

    /// The latest stats snapshot and its changes; starts the poller on `metering` the first
    /// time.
    pub fn watch_stats(
        &self,
        metering: Option<&Metering>,
    ) -> watch::Receiver<Option<Arc<Snapshot>>> {
        if let Some(m) = metering
            && !self.inner.poller.swap(true, Ordering::SeqCst)
        {
            let (hub, m) = (self.clone(), m.clone());
            tokio::spawn(async move { hub.poll_stats(m).await });
        }
        self.inner.stats.subscribe()
    }

    /// Ends every stream (daemon shutdown: open streams would hold the graceful shutdown).
    pub fn close(&self) {
        self.inner.closed.send_replace(true);
    }

    pub fn watch_closed(&self) -> watch::Receiver<bool> {
        self.inner.closed.subscribe()
    }

    /// Publishes a snapshot per sampler tick.
    async fn poll_stats(&self, m: Metering) {
        let mut closed = self.watch_closed();
        let mut tick = tokio::time::interval(POLL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut seen_version = None;
        let mut newest = None;
        loop {
            tokio::select! {
                _ = closed.wait_for(|c| *c) => return,
                _ = tick.tick() => {}
            }
            // An atomic load per poll; the live view is copied only after the sampler wrote it,
            // and published only when it holds a newer reading (an idle stream then carries
            // keep-alives).
            let version = m.live_version();
            if seen_version == Some(version) {
                continue;
            }
            seen_version = Some(version);
            let live = m.live();
            let n = live.iter().map(|l| l.reading.wall_ms).max();
            if n == newest {
                continue;
            }
            newest = n;
            self.inner.stats.send_replace(Some(Arc::new(Snapshot {
                interval_secs: m.config().interval.as_secs_f64(),
                stats: live.iter().map(wire_stat).collect(),
            })));
        }
    }

    /// Publishes `oom` for a container whose OOM kills grew (the sampler's [`Metering::on_oom`]:
    /// while it runs, and at its final reading — status `exited` — before `died`, as Docker
    /// orders them).
    pub fn oom(&self, o: &LedgerOwner, running: bool) {
        self.publish(ContainerEvent {
            name: o.name.clone(),
            id: Some(o.container_id.clone()),
            team: o.team.clone(),
            action: "oom".into(),
            status: if running { "running" } else { "exited" }.into(),
            exit_code: None,
            actor: None,
            ts: wall_ms(),
        });
    }

    /// Publishes `action` for `r` (created, removed, killed, restarted).
    pub fn container(&self, r: &Record, action: &str, actor: Option<String>) {
        let status = if action == "removed" {
            "removed".to_owned()
        } else {
            r.status().as_str().to_owned()
        };
        self.publish(ContainerEvent {
            name: r.name.clone(),
            id: Some(r.id.clone()),
            team: r.team.clone(),
            action: action.to_owned(),
            status,
            exit_code: r.exit_code.filter(|_| r.status() == Status::Exited),
            actor,
            ts: wall_ms(),
        });
    }

    /// Publishes what the manager's save of `after` changed against the stored `before`.
    /// `stop_marker` exists (holding the requester's name) when the exit was asked for. A
    /// re-limit does not change the state: the manager publishes `updated` itself.
    pub fn saved(&self, before: &Before, after: &Record, stop_marker: &Path) {
        use Status::*;
        let (was, now) = (before.status, after.status());
        let (action, actor) = if now == Exited
            && (was != Exited || before.finished_at != after.finished_at)
        {
            match std::fs::read_to_string(stop_marker) {
                Ok(who) => ("stopped", Some(who).filter(|w| !w.is_empty())),
                Err(_) => ("died", None),
            }
        } else if now == Running && (was == Created || was == Exited) {
            ("started", current_actor())
        } else if now == Running && was == Running && after.restart_count > before.restart_count {
            // The monitor's restart policy.
            ("restarted", None)
        } else if now == Paused && was == Running {
            ("paused", current_actor())
        } else if now == Running && was == Paused {
            ("unpaused", current_actor())
        } else {
            return;
        };
        self.container(after, action, actor);
    }
}

/// A container's stored state before the manager saves a change.
#[derive(Debug, Clone)]
pub struct Before {
    pub status: Status,
    pub restart_count: u32,
    pub finished_at: Option<i64>,
}

impl Before {
    /// Reads it (`?1` = container id).
    pub const SQL: &str = "SELECT status, restart_count, finished_at FROM containers WHERE id = ?1";

    pub fn from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        Ok(Before {
            status: row.get::<_, String>(0)?.parse().map_err(|e: String| {
                rusqlite::Error::FromSqlConversionFailure(
                    0,
                    rusqlite::types::Type::Text,
                    Box::<dyn std::error::Error + Send + Sync>::from(e),
                )
            })?,
            restart_count: row.get(1)?,
            finished_at: row.get(2)?,
        })
    }
}

/// The wire form of one live stat (also `GET /api/v1/stats`).
pub fn wire_stat(l: &LiveStat) -> WireStat {
    let c = &l.reading.counters;
    let (kind, name, id, team) = match &l.kind {
        SubjectKind::Container(o) => (
            "container",
            o.name.clone(),
            o.container_id.clone(),
            o.team.clone(),
        ),
        SubjectKind::Team(t) => ("team", t.clone(), String::new(), t.clone()),
    };
    WireStat {
        kind: kind.into(),
        name,
        container_id: id,
        team,
        cpu_cores: l.rates.cpu_cores,
        cpus_reserved: l.cpus_reserved,
        cpu_seconds_total: c.cpu_usec as f64 / 1e6,
        mem_bytes: c.memory_current,
        mem_limit_bytes: l.memory_max,
        io_read_bytes_per_sec: l.rates.io_read_bytes_per_sec,
        io_write_bytes_per_sec: l.rates.io_write_bytes_per_sec,
        io_read_bytes_total: c.io_rbytes,
        io_write_bytes_total: c.io_wbytes,
        pids: c.pids_current,
        oom_kills: c.oom_kills,
        cpu_pressure: l.pressure[0],
        memory_pressure: l.pressure[1],
        io_pressure: l.pressure[2],
        ts: l.reading.wall_ms,
    }
}

tokio::task_local! {
    static ACTOR: Option<String>;
}

thread_local! {
    static THREAD_ACTOR: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Runs a request's handler knowing who sent it (the auth guard does this).
pub async fn with_actor<F: Future>(actor: Option<String>, f: F) -> F::Output {
    ACTOR.scope(actor, f).await
}

/// The name of whoever the current request or blocking job runs for.
pub fn current_actor() -> Option<String> {
    ACTOR
        .try_with(Clone::clone)
        .ok()
        .flatten()
        .or_else(|| THREAD_ACTOR.with(|a| a.borrow().clone()))
}

/// Runs blocking `f` on this thread on behalf of `actor` (carried from the async request).
pub fn run_as<T>(actor: Option<String>, f: impl FnOnce() -> T) -> T {
    struct Restore(Option<String>);
    impl Drop for Restore {
        fn drop(&mut self) {
            THREAD_ACTOR.with(|a| *a.borrow_mut() = self.0.take());
        }
    }
    let _restore = Restore(THREAD_ACTOR.with(|a| a.replace(actor)));
    f()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(name: &str) -> ContainerEvent {
        ContainerEvent {
            name: name.into(),
            id: None,
            team: "t".into(),
            action: "started".into(),
            status: "running".into(),
            exit_code: None,
            actor: None,
            ts: 0,
        }
    }

    fn c(e: &Lifecycle) -> &ContainerEvent {
        match e {
            Lifecycle::Container(c) => c,
            Lifecycle::Budget(_) => panic!("not a container event"),
        }
    }

    fn names(s: &Since) -> Vec<String> {
        match s {
            Since::Replay { events, .. } => events.iter().map(|(_, e)| c(e).name.clone()).collect(),
            Since::Reset { .. } => vec!["<reset>".into()],
        }
    }

    #[test]
    fn resume_replays_what_was_missed_and_resets_when_it_is_gone() {
        let hub = Events::starting_at(1000);
        assert_eq!(
            hub.since(1000),
            Since::Replay {
                events: vec![],
                head: 1000
            }
        );
        let a = hub.publish(ev("a"));
        let b = hub.publish(ev("b"));
        assert_eq!((a, b), (1001, 1002));
        assert_eq!(names(&hub.since(1000)), ["a", "b"]);
        assert_eq!(names(&hub.since(a)), ["b"]);
        assert_eq!(names(&hub.since(b)), Vec::<String>::new());
        // An id of an earlier run, or from the future.
        assert_eq!(hub.since(999), Since::Reset { head: b });
        assert_eq!(hub.since(b + 1), Since::Reset { head: b });
        for i in 0..RING {
            hub.publish(ev(&format!("e{i}")));
        }
        // a and b left the ring: a client that saw only a missed b.
        assert_eq!(hub.since(a), Since::Reset { head: hub.head() });
        assert_eq!(names(&hub.since(b)).len(), RING);
    }

    fn record(status: &str, restart_count: u32, finished_at: Option<i64>) -> Record {
        let mut r = Record::for_test("web", status.parse().unwrap_or(Status::Created));
        r.id = "id1".into();
        r.team = "t".into();
        r.exit_code = (status == "exited").then_some(3);
        r.finished_at = finished_at;
        r.restart_count = restart_count;
        r
    }

    #[test]
    fn a_save_publishes_what_changed() {
        let dir = std::env::temp_dir().join(format!("corral-events-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap_or_default();
        let marker = dir.join("stop");
        let hub = Events::starting_at(0);
        let before = |status: &str, restarts: u32, finished: Option<i64>| Before {
            status: status.parse().unwrap_or(Status::Created),
            restart_count: restarts,
            finished_at: finished,
        };
        let mut actions = Vec::new();
        let mut check = |b: Before, after: Record| {
            let head = hub.head();
            run_as(Some("alice".into()), || hub.saved(&b, &after, &marker));
            actions.push(match hub.since(head) {
                Since::Replay { events, .. } => events
                    .iter()
                    .map(|(_, e)| {
                        let e = c(e);
                        format!("{} {} {:?} {:?}", e.action, e.status, e.exit_code, e.actor)
                    })
                    .collect::<Vec<_>>()
                    .join(","),
                Since::Reset { .. } => "reset".into(),
            });
        };
        check(before("created", 0, None), record("running", 0, None));
        check(before("running", 0, None), record("paused", 0, None));
        check(before("paused", 0, None), record("running", 0, None));
        check(before("running", 0, None), record("running", 1, None));
        check(before("running", 0, None), record("running", 0, None));
        check(before("running", 1, None), record("exited", 1, Some(5)));
        std::fs::write(&marker, "bob").unwrap_or_default();
        check(before("running", 0, None), record("exited", 0, Some(6)));
        // A failed start of an exited container: a new exit.
        std::fs::remove_file(&marker).unwrap_or_default();
        check(before("exited", 0, Some(6)), record("exited", 0, Some(7)));
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(
            actions,
            [
                "started running None Some(\"alice\")",
                "paused paused None Some(\"alice\")",
                "unpaused running None Some(\"alice\")",
                // The monitor's restart policy, and an exit nobody asked for: no actor.
                "restarted running None None",
                "",
                "died exited Some(3) None",
                // A stop names who asked for it, whoever noticed the exit.
                "stopped exited Some(3) Some(\"bob\")",
                "died exited Some(3) None",
            ]
        );
    }

    #[test]
    fn the_actor_follows_the_job_onto_its_thread() {
        assert_eq!(current_actor(), None);
        let inner = run_as(Some("alice".into()), || {
            let nested = run_as(None, current_actor);
            (current_actor(), nested)
        });
        assert_eq!(inner, (Some("alice".into()), None));
        assert_eq!(current_actor(), None);
    }

    #[test]
    fn event_json_is_tagged_and_round_trips() {
        let e = wire::events::Event::Container(ev("a"));
        let json = serde_json::to_value(&e).unwrap_or_default();
        assert_eq!(json["type"], "container");
        assert_eq!(json["name"], "a");
        let back: wire::events::Event =
            serde_json::from_value(json).unwrap_or(wire::events::Event::Reset);
        assert_eq!(back, e);
        let s = wire::events::Event::Stats(wire::billing::LiveStats::default());
        let back: wire::events::Event =
            serde_json::from_value(serde_json::to_value(&s).unwrap_or_default())
                .unwrap_or(wire::events::Event::Reset);
        assert_eq!(back, s);
    }
}
