//! Corral's dashboard, rendered in the browser. `start` runs when the generated JS glue has
//! instantiated the module.
//!
//! Architecture invariant: the frontend never depends on the backend; it speaks `wire` types over
//! root-relative URLs (no host or port anywhere), so any `ssh -L` port works. Only `api.rs` does
//! HTTP.

mod api;
mod app;
mod components;
mod format;
mod pages;
mod session;
mod types;

use wasm_bindgen::prelude::wasm_bindgen;

/// Entry point: mounts the app into `<body>`.
#[wasm_bindgen(start)]
pub fn start() {
    console_error_panic_hook::set_once();
    leptos::mount::mount_to_body(app::App);
    // For the time-to-first-render benchmark: the app's first elements exist now.
    if let Some(p) = web_sys::window().and_then(|w| w.performance()) {
        let _ = p.mark("corral-first-render");
    }
}
