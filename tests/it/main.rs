//! One integration-test binary, three levels (see ARCHITECTURE.md):
//! - `api::*`: the daemon through real HTTP, against a real SQLite file;
//! - `kernel::*`: effects on the real kernel (also run inside the cgroup-v2 VM);
//! - `browser::*`: the dashboard in headless Chromium.

mod api;
mod browser;
mod kernel;
