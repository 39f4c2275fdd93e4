//! Data that refreshes itself: fetched now and every `every_ms` while the page shows it,
//! with the time of the last good answer so the UI can say how old what it shows is.

use std::{
    future::Future,
    rc::Rc,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU32, Ordering::Relaxed},
    },
};

use leptos::prelude::*;

use crate::api::{self, ApiFailure};

/// The state of a polled resource.
pub struct Polled<T: Send + Sync + 'static> {
    /// The last good answer (kept when a later refresh fails).
    pub data: RwSignal<Option<T>>,
    /// The error of the last attempt, if it failed.
    pub error: RwSignal<Option<ApiFailure>>,
    /// Unix ms of the last good answer.
    pub updated: RwSignal<f64>,
    bump: RwSignal<u32>,
}

impl<T: Send + Sync + 'static> Clone for Polled<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T: Send + Sync + 'static> Copy for Polled<T> {}

impl<T: Send + Sync + 'static> Polled<T> {
    /// Fetches again right away (after a change the user made).
    pub fn refresh(&self) {
        self.bump.update(|n| *n += 1);
    }
}

/// Polls `fetch` every `every` ms (0: once, plus [`Polled::refresh`]) until the component is
/// gone; `fetch` is re-run at once when signals it reads (or `every`) change.
pub fn poll<T, F, Fut>(every: impl Into<Signal<i32>>, fetch: F) -> Polled<T>
where
    T: PartialEq + Send + Sync + 'static,
    F: Fn() -> Fut + 'static,
    Fut: Future<Output = Result<T, ApiFailure>> + 'static,
{
    let every: Signal<i32> = every.into();
    let p = Polled {
        data: RwSignal::new(None),
        error: RwSignal::new(None),
        updated: RwSignal::new(0.0),
        bump: RwSignal::new(0),
    };
    let alive = Arc::new(AtomicBool::new(true));
    let generation = Arc::new(AtomicU32::new(0));
    let fetch = Rc::new(fetch);
    // Re-runs (a new loop, the old one stops) when the inputs of `fetch` or `bump` change.
    Effect::new({
        let alive = alive.clone();
        let generation = generation.clone();
        move |_| {
            p.bump.track();
            let every_ms = every.get();
            let fut = fetch();
            let gen_now = generation.fetch_add(1, Relaxed).wrapping_add(1);
            let alive = alive.clone();
            let generation = generation.clone();
            let fetch = fetch.clone();
            leptos::task::spawn_local(async move {
                let mut fut = Some(fut);
                loop {
                    let f = match fut.take() {
                        Some(f) => f,
                        None => untrack(|| fetch()),
                    };
                    let r = f.await;
                    if !alive.load(Relaxed) || generation.load(Relaxed) != gen_now {
                        return;
                    }
                    match r {
                        Ok(v) => {
                            // Unchanged data is not set again: views (and a half-done
                            // "confirm?" in them) stay as they are.
                            if p.data.with_untracked(|d| d.as_ref() != Some(&v)) {
                                p.data.set(Some(v));
                            }
                            p.error.set(None);
                            p.updated.set(api::now_ms());
                        }
                        Err(e) => p.error.set(Some(e)),
                    }
                    if every_ms <= 0 {
                        return;
                    }
                    api::sleep_ms(every_ms).await;
                    if !alive.load(Relaxed) || generation.load(Relaxed) != gen_now {
                        return;
                    }
                }
            });
        }
    });
    on_cleanup(move || alive.store(false, Relaxed));
    p
}

/// A signal that ticks every second, for "updated Ns ago" labels.
pub fn clock() -> RwSignal<f64> {
    let now = RwSignal::new(api::now_ms());
    if let Ok(h) = set_interval_with_handle(
        move || now.set(api::now_ms()),
        std::time::Duration::from_secs(1),
    ) {
        on_cleanup(move || h.clear());
    }
    now
}
