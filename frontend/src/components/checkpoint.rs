//! The "Checkpoint" card of the container page, for operators and admins: whether this host
//! can checkpoint (`GET /api/v1/host`'s `checkpoint`: criu found and `criu check` passed, or
//! criu's reason why not), "Checkpoint" (`POST {path}/checkpoint`; the container stops),
//! "Checkpoint, keep running" (`leave_running`), and "Restore" of this container's checkpoint,
//! under another name when one is typed (`POST {path}/restore`). A refusal shows the server's
//! message, criu's reason included.

use leptos::prelude::*;

use crate::{
    api::{self, ApiFailure},
    components::ui::ErrorBox,
    format,
};

/// `path` is the container's API path (`/api/v1/containers/web`); `running` whether it runs;
/// `on_done` is told after each action (the page re-reads the container).
#[component]
pub fn Checkpointing(path: String, running: Signal<bool>, on_done: Callback<()>) -> impl IntoView {
    let support = LocalResource::new(|| api::get::<wire::HostInfo>("/api/v1/host"));
    let busy = RwSignal::new(false);
    let error = RwSignal::new(None::<ApiFailure>);
    let outcome = RwSignal::new(None::<String>);
    let new_name = RwSignal::new(String::new());
    let checkpoint = {
        let path = path.clone();
        move |leave_running: bool| {
            let path = path.clone();
            busy.set(true);
            leptos::task::spawn_local(async move {
                let body = wire::CheckpointRequest {
                    leave_running,
                    export: None,
                };
                let r =
                    api::post::<_, wire::Checkpoint>(&format!("{path}/checkpoint"), &body).await;
                busy.set(false);
                match r {
                    Ok(ck) => {
                        error.set(None);
                        outcome.set(Some(format!(
                            "Checkpointed in {} ms, {} ({}).",
                            ck.took_ms,
                            format::bytes(ck.size_bytes as f64),
                            ck.status
                        )));
                    }
                    Err(e) => {
                        outcome.set(None);
                        error.set(Some(e));
                    }
                }
                on_done.run(());
            });
        }
    };
    let keep = checkpoint.clone();
    let restore = move |_| {
        let path = path.clone();
        let name = new_name.get_untracked().trim().to_owned();
        busy.set(true);
        leptos::task::spawn_local(async move {
            let body = wire::RestoreRequest {
                import: None,
                name: (!name.is_empty()).then_some(name),
            };
            let r = api::post::<_, wire::Container>(&format!("{path}/restore"), &body).await;
            busy.set(false);
            match r {
                Ok(c) => {
                    error.set(None);
                    outcome.set(Some(format!("Restored as {}.", c.name)));
                }
                Err(e) => {
                    outcome.set(None);
                    error.set(Some(e));
                }
            }
            on_done.run(());
        });
    };
    let state = move || {
        support.get().map(|r| match r {
            Ok(h) if h.checkpoint.available => format!(
                "Available (criu {}).",
                h.checkpoint.version.unwrap_or_default()
            ),
            Ok(h) => format!("Unavailable on this host: {}", h.checkpoint.reason),
            Err(e) => format!("Unknown: {e}"),
        })
    };
    let unavailable = move || {
        support
            .get()
            .is_some_and(|r| r.is_ok_and(|h| !h.checkpoint.available))
    };
    view! {
        <section class="card" data-testid="checkpoint">
            <h2>"Checkpoint"</h2>
            <p class="muted small" data-testid="checkpoint-support">{state}</p>
            <div class="btn-row">
                <button class="btn small" data-testid="checkpoint-stop"
                    disabled=move || busy.get() || !running.get()
                    on:click=move |_| checkpoint(false)>"Checkpoint"</button>
                <button class="btn small" data-testid="checkpoint-keep"
                    disabled=move || busy.get() || !running.get()
                    on:click=move |_| keep(true)>"Checkpoint, keep running"</button>
                <input type="text" placeholder="restore as (optional new name)" aria-label="Restore as"
                    data-testid="restore-name" prop:value=move || new_name.get()
                    on:input=move |ev| new_name.set(event_target_value(&ev)) />
                <button class="btn small" data-testid="restore" disabled=move || busy.get()
                    on:click=restore>"Restore"</button>
            </div>
            {move || unavailable().then(|| view! {
                <p class="muted small">"Checkpoint and restore need criu, and a kernel that criu check accepts; the buttons answer with that reason here."</p>
            })}
            {move || outcome.get().map(|o| view! { <p data-testid="checkpoint-outcome">{o}</p> })}
            {move || error.get().map(|e| view! { <ErrorBox error=e /> })}
        </section>
    }
}
