//! Corral's dashboard, rendered in the browser. `start` is called by the generated JS glue.
//!
//! Architecture invariant: the frontend never depends on the backend; it speaks `wire` types over
//! relative URLs, so any `ssh -L` port works.

mod app;

use wasm_bindgen::prelude::wasm_bindgen;

/// Entry point: mounts the app into `<body>`.
#[wasm_bindgen(start)]
pub fn start() {
    console_error_panic_hook::set_once();
    leptos::mount::mount_to_body(app::App);
}
