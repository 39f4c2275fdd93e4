//! Overview: the daemon's health, version and cgroup mode.

use leptos::prelude::*;

use crate::api;

#[component]
pub fn Overview() -> impl IntoView {
    let health = LocalResource::new(|| api::get::<wire::Health>("/api/v1/health"));
    view! {
        <h1>"Overview"</h1>
        <Suspense fallback=|| view! { <p class="status-loading">"Loading…"</p> }>
            {move || health.get().map(|r| match r {
                Ok(h) => view! {
                    <div class="cards" data-testid="health">
                        <div class="card"><h2>"Daemon"</h2><div class="value" data-testid="daemon-status">{h.status}</div></div>
                        <div class="card"><h2>"Version"</h2><div class="value" data-testid="daemon-version">{h.version}</div></div>
                        <div class="card"><h2>"Cgroups"</h2><div class="value">{h.cgroup_mode.unwrap_or_else(|| "unknown".into())}</div></div>
                    </div>
                }.into_any(),
                Err(e) => view! { <p class="status-error" role="alert">{e.to_string()}</p> }.into_any(),
            })}
        </Suspense>
    }
}
