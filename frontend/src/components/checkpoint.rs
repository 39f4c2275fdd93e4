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

/// The "Checkpoints" card of the containers page: the stored checkpoints the caller may restore
/// (`GET /api/v1/checkpoints`; they outlive their containers, so a removed container is
/// restored from here), each with "Restore" (under the name typed, else its own) and, for
/// operators, "Remove" (`DELETE /api/v1/checkpoints/{name}`). Hidden while there are none.
/// `on_done` is told after a restore (the page re-reads its list).
#[component]
pub fn StoredCheckpoints(can_operate: Signal<bool>, on_done: Callback<()>) -> impl IntoView {
    let list =
        LocalResource::new(|| api::get::<Vec<wire::StoredCheckpoint>>("/api/v1/checkpoints"));
    let busy = RwSignal::new(false);
    let error = RwSignal::new(None::<ApiFailure>);
    let outcome = RwSignal::new(None::<String>);
    let names = RwSignal::new(std::collections::HashMap::<String, String>::new());
    let restore = move |from: String| {
        let name = names.with_untracked(|n| n.get(&from).map(|s| s.trim().to_owned()));
        busy.set(true);
        leptos::task::spawn_local(async move {
            let body = wire::RestoreRequest {
                import: None,
                name: name.filter(|n| !n.is_empty()),
            };
            let path = format!("/api/v1/containers/{}/restore", api::enc(&from));
            let r = api::post::<_, wire::Container>(&path, &body).await;
            busy.set(false);
            match r {
                Ok(c) => {
                    error.set(None);
                    outcome.set(Some(format!("Restored {from} as {}.", c.name)));
                }
                Err(e) => {
                    outcome.set(None);
                    error.set(Some(e));
                }
            }
            on_done.run(());
        });
    };
    let remove = move |name: String| {
        busy.set(true);
        leptos::task::spawn_local(async move {
            let r = api::delete(&format!("/api/v1/checkpoints/{}", api::enc(&name))).await;
            busy.set(false);
            match r {
                Ok(()) => {
                    error.set(None);
                    outcome.set(Some(format!("Removed the checkpoint of {name}.")));
                }
                Err(e) => {
                    outcome.set(None);
                    error.set(Some(e));
                }
            }
            list.refetch();
        });
    };
    let rows = move || list.get().and_then(Result::ok).unwrap_or_default();
    view! {
        <Show when=move || !rows().is_empty() || error.get().is_some() || outcome.get().is_some()>
            <section class="card" data-testid="checkpoints">
                <h2>"Checkpoints"</h2>
                <div class="table-wrap">
                    <table class="table" data-testid="checkpoints-table">
                        <thead><tr>
                            <th>"Name"</th><th>"Team"</th><th class="hide-sm">"Image"</th>
                            <th>"Taken"</th><th class="num">"Size"</th><th></th>
                        </tr></thead>
                        <tbody>
                            {move || rows().into_iter().map(|c| {
                                let (n1, n2, n3) = (c.name.clone(), c.name.clone(), c.name.clone());
                                view! {
                                    <tr data-testid="checkpoint-row">
                                        <td>{c.name.clone()}</td>
                                        <td>{c.team.clone()}</td>
                                        <td class="hide-sm">{c.image.clone()}</td>
                                        <td>{format::datetime(c.created_at)}</td>
                                        <td class="num">{format::bytes(c.size_bytes as f64)}</td>
                                        <td>
                                            <Show when=move || can_operate.get()>
                                                <div class="btn-row">
                                                    <input type="text" placeholder="as (optional new name)"
                                                        aria-label="Restore as" data-testid="checkpoint-restore-name"
                                                        on:input={
                                                            let n = n1.clone();
                                                            move |ev| names.update(|m| { m.insert(n.clone(), event_target_value(&ev)); })
                                                        } />
                                                    <button class="btn small" data-testid="checkpoint-restore"
                                                        disabled=move || busy.get()
                                                        on:click={ let n = n2.clone(); move |_| restore(n.clone()) }>"Restore"</button>
                                                    <button class="btn small danger" data-testid="checkpoint-remove"
                                                        disabled=move || busy.get()
                                                        on:click={ let n = n3.clone(); move |_| remove(n.clone()) }>"Remove"</button>
                                                </div>
                                            </Show>
                                        </td>
                                    </tr>
                                }
                            }).collect_view()}
                        </tbody>
                    </table>
                </div>
                {move || outcome.get().map(|o| view! { <p data-testid="checkpoints-outcome">{o}</p> })}
                {move || error.get().map(|e| view! { <ErrorBox error=e /> })}
            </section>
        </Show>
    }
}
