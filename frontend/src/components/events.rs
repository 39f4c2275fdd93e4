//! The live stream: `GET /api/v1/events` as Server-Sent Events (`wire::events`), through the
//! browser's `EventSource` (same origin, so the session cookie goes along; it resumes with
//! `Last-Event-ID` by itself).
//!
//! [`live_stream`] exposes the newest stats sample and lifecycle events as signals. Whenever the
//! stream is not live (connecting, refused, an older daemon without the route, a broken
//! tunnel), pages fall back to polling, and [`LiveBadge`] says which of the two is in use:
//! what is shown is never older than one of them can vouch for.

use std::{
    cell::{Cell, RefCell},
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering::Relaxed},
    },
};

use leptos::prelude::*;
use wasm_bindgen::{JsCast, closure::Closure};
use web_sys::{EventSource, MessageEvent};

use crate::{
    api::{self, ApiFailure},
    components::poll::{Polled, poll},
    types::{ContainerEvent, Event, LiveStats},
};

/// The stream's URL, root-relative like every API path (any `ssh -L` port works).
const URL: &str = "/api/v1/events";
/// Wait before opening again a stream the server refused or closed (the browser itself
/// retries a dropped connection).
const RETRY_MS: i32 = 10_000;
/// How often pages poll while the stream is down.
pub const POLL_MS: i32 = 3000;

/// Where the stream is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Link {
    Connecting,
    Live,
    Down,
}

/// The stream's state as signals (one stream per page that uses it; closed with the page).
#[derive(Clone, Copy)]
pub struct Stream {
    pub link: RwSignal<Link>,
    /// The newest stats sample of the stream.
    pub stats: RwSignal<Option<LiveStats>>,
    /// Browser time (Unix ms) that sample arrived.
    pub stats_at: RwSignal<f64>,
    /// The newest lifecycle event.
    pub lifecycle: RwSignal<Option<ContainerEvent>>,
    /// Counts lifecycle events and resets: lists refetch when it moves.
    pub changes: RwSignal<u32>,
    /// Counts resets only (events were missed): a page about one container refetches it.
    pub resets: RwSignal<u32>,
}

impl Stream {
    /// Whether the stream's stats are current at `now`: live, and a sample within three sample
    /// intervals (at least 10 s).
    pub fn stats_current(&self, now: f64) -> bool {
        self.link.get() == Link::Live
            && self.stats.with(|s| {
                s.as_ref().is_some_and(|s| {
                    let window = (s.interval_secs * 3000.0).max(10_000.0);
                    now - self.stats_at.get() <= window
                })
            })
    }

    /// Runs `f` after every lifecycle event or reset (not at once).
    pub fn on_change(&self, f: impl Fn() + 'static) {
        on_bump(self.changes, f);
    }

    /// Runs `f` after every reset (not at once).
    pub fn on_reset(&self, f: impl Fn() + 'static) {
        on_bump(self.resets, f);
    }
}

/// Runs `f` whenever `counter` moves (not at once).
fn on_bump(counter: RwSignal<u32>, f: impl Fn() + 'static) {
    Effect::new(move |seen: Option<u32>| {
        let n = counter.get();
        if seen.is_some_and(|s| s != n) {
            f();
        }
        n
    });
}

struct Conn {
    source: EventSource,
    _handlers: Vec<Closure<dyn FnMut(web_sys::Event)>>,
}

thread_local! {
    /// Open streams by id (the `EventSource` and its handlers live as long as the page).
    static CONNS: RefCell<HashMap<u32, Conn>> = RefCell::new(HashMap::new());
    static NEXT: Cell<u32> = const { Cell::new(0) };
}

/// Opens the stream for the current page; it is closed when the page goes.
pub fn live_stream() -> Stream {
    let s = Stream {
        link: RwSignal::new(Link::Connecting),
        stats: RwSignal::new(None),
        stats_at: RwSignal::new(0.0),
        lifecycle: RwSignal::new(None),
        changes: RwSignal::new(0),
        resets: RwSignal::new(0),
    };
    let id = NEXT.with(|n| {
        n.set(n.get().wrapping_add(1));
        n.get()
    });
    let alive = Arc::new(AtomicBool::new(true));
    open(id, s, alive.clone());
    on_cleanup(move || {
        alive.store(false, Relaxed);
        close(id);
    });
    s
}

fn close(id: u32) {
    if let Some(c) = CONNS.with(|c| c.borrow_mut().remove(&id)) {
        c.source.close();
    }
}

/// Opens again after [`RETRY_MS`], unless the page is gone.
fn retry(id: u32, s: Stream, alive: Arc<AtomicBool>) {
    leptos::task::spawn_local(async move {
        api::sleep_ms(RETRY_MS).await;
        if alive.load(Relaxed) {
            close(id);
            open(id, s, alive);
        }
    });
}

fn open(id: u32, s: Stream, alive: Arc<AtomicBool>) {
    let Ok(source) = EventSource::new(URL) else {
        let _ = s.link.try_set(Link::Down);
        retry(id, s, alive);
        return;
    };
    let mut handlers = Vec::new();
    let mut on = |name: &str, f: Box<dyn FnMut(web_sys::Event)>| {
        let h = Closure::wrap(f);
        let _ = source.add_event_listener_with_callback(name, h.as_ref().unchecked_ref());
        handlers.push(h);
    };
    on(
        "open",
        Box::new(move |_| {
            let _ = s.link.try_set(Link::Live);
        }),
    );
    {
        let source = source.clone();
        let alive = alive.clone();
        on(
            "error",
            Box::new(move |_| {
                let _ = s.link.try_set(Link::Down);
                // CLOSED: refused (404 from an older daemon, 401, not an event stream); the
                // browser gives up, so try again later. CONNECTING: it retries by itself.
                if source.ready_state() == EventSource::CLOSED {
                    retry(id, s, alive.clone());
                }
            }),
        );
    }
    let decode = |e: web_sys::Event| -> Option<Event> {
        let text = e.dyn_ref::<MessageEvent>()?.data().as_string()?;
        serde_json::from_str(&text).ok()
    };
    on(
        "stats",
        Box::new(move |e| {
            if let Some(Event::Stats(st)) = decode(e) {
                let _ = s.stats.try_set(Some(st));
                let _ = s.stats_at.try_set(api::now_ms());
            }
        }),
    );
    on(
        "container",
        Box::new(move |e| {
            if let Some(Event::Container(c)) = decode(e) {
                let _ = s.lifecycle.try_set(Some(c));
                let _ = s.changes.try_update(|n| *n = n.wrapping_add(1));
            }
        }),
    );
    on(
        "reset",
        Box::new(move |_| {
            let _ = s.changes.try_update(|n| *n = n.wrapping_add(1));
            let _ = s.resets.try_update(|n| *n = n.wrapping_add(1));
        }),
    );
    CONNS.with(|c| {
        c.borrow_mut().insert(
            id,
            Conn {
                source,
                _handlers: handlers,
            },
        )
    });
}

/// Live stats from the stream while it is current, else polled from `/api/v1/stats`.
#[derive(Clone, Copy)]
pub struct LiveStatsView {
    pub stats: Memo<Option<LiveStats>>,
    /// Browser time of what `stats` shows.
    pub updated: Signal<f64>,
    /// Whether `stats` comes from the stream.
    pub streaming: Memo<bool>,
    /// The fallback (its error shows when polling fails).
    pub polled: Polled<LiveStats>,
}

/// Stats for a page: the stream's while current (polling pauses), polled otherwise.
pub fn live_stats(s: Stream, now: RwSignal<f64>) -> LiveStatsView {
    let streaming = Memo::new(move |_| s.stats_current(now.get()));
    let polled = poll(
        Signal::derive(move || if streaming.get() { 0 } else { POLL_MS }),
        || api::get::<LiveStats>("/api/v1/stats"),
    );
    let stats = Memo::new(move |_| {
        if streaming.get() {
            s.stats.get()
        } else {
            polled.data.get()
        }
    });
    let updated = Signal::derive(move || {
        if streaming.get() {
            s.stats_at.get()
        } else {
            polled.updated.get()
        }
    });
    LiveStatsView {
        stats,
        updated,
        streaming,
        polled,
    }
}

/// "live" or "polling": which source the page's numbers come from, and how old they are.
#[component]
pub fn LiveBadge(
    stream: Stream,
    view_: LiveStatsView,
    now: RwSignal<f64>,
    #[prop(optional)] error: Option<RwSignal<Option<ApiFailure>>>,
) -> impl IntoView {
    let state = move || {
        if view_.streaming.get() {
            "live"
        } else if stream.link.get() == Link::Connecting {
            "connecting"
        } else {
            "polling"
        }
    };
    let text = move || {
        let age = ((now.get() - view_.updated.get()) / 1000.0)
            .max(0.0)
            .round();
        let at = view_.updated.get();
        match state() {
            "live" => format!("live · {age:.0}s ago"),
            _ if at <= 0.0 => "live stream unavailable · loading…".to_owned(),
            _ => format!("live stream unavailable · polled {age:.0}s ago"),
        }
    };
    let bad = move || {
        !view_.streaming.get()
            && (view_.polled.error.with(Option::is_some)
                || error.is_some_and(|e| e.with(Option::is_some)))
    };
    view! {
        <span class="freshness live-badge" class:bad=bad class:polling=move || state() != "live"
            data-testid="live-state" data-state=state aria-live="off"
            title="Live updates come over the event stream; when it is down the page polls every 3 s">
            <span class="pulse" aria-hidden="true"></span>{text}
        </span>
    }
}
