//! The audit log (admin): every state change and login attempt, newest first.

use leptos::prelude::*;

use crate::{
    api,
    components::{
        poll::{clock, poll},
        ui::{Freshness, polled_view},
    },
    format,
};

const PAGE: u32 = 100;

#[component]
pub fn Audit() -> impl IntoView {
    let now = clock();
    let actor = RwSignal::new(String::new());
    let action = RwSignal::new(String::new());
    let before = RwSignal::new(None::<i64>);
    let log = poll(15_000, move || {
        let mut q = format!("/api/v1/audit?limit={PAGE}");
        let a = actor.get();
        if !a.trim().is_empty() {
            q.push_str(&format!("&actor={}", api::enc(a.trim())));
        }
        let a = action.get();
        if !a.trim().is_empty() {
            q.push_str(&format!("&action={}", api::enc(a.trim())));
        }
        if let Some(b) = before.get() {
            q.push_str(&format!("&before_id={b}"));
        }
        async move { api::get::<Vec<wire::AuditEntry>>(&q).await }
    });
    view! {
        <div class="page-head">
            <h1>"Audit log"</h1>
            <Freshness poll=log now=now />
        </div>
        <div class="toolbar">
            <input class="search" type="search" placeholder="Actor" aria-label="Filter by actor"
                on:change=move |ev| { before.set(None); actor.set(event_target_value(&ev)); } />
            <input class="search" type="search" placeholder="Action, e.g. login" aria-label="Filter by action"
                on:change=move |ev| { before.set(None); action.set(event_target_value(&ev)); } />
            <Show when=move || before.get().is_some()>
                <button class="btn ghost" on:click=move |_| before.set(None)>"Newest"</button>
            </Show>
        </div>
        {polled_view(log, "the audit log", move |rows: Vec<wire::AuditEntry>| {
            let last = rows.last().map(|r| r.id);
            let full = rows.len() as u32 == PAGE;
            if rows.is_empty() {
                return view! { <p class="empty-state">"No matching entries."</p> }.into_any();
            }
            view! {
                <div class="table-wrap card flush">
                    <table class="table" data-testid="audit-table">
                        <thead><tr><th>"When"</th><th>"Who"</th><th>"Action"</th><th>"Target"</th><th>"Result"</th><th>"Change"</th></tr></thead>
                        <tbody>
                            {rows.into_iter().map(|r| {
                                let class = match r.result.as_str() { "ok" => "ok", "denied" | "throttled" => "warn", _ => "bad" };
                                let change = (r.before.is_some() || r.after.is_some() || r.detail.is_some()).then(|| view! {
                                    <details>
                                        <summary>"details"</summary>
                                        {r.detail.clone().map(|d| view! { <p>{d}</p> })}
                                        {r.before.clone().map(|b| view! { <div class="diff before"><b>"before "</b><code>{b}</code></div> })}
                                        {r.after.clone().map(|a| view! { <div class="diff after"><b>"after "</b><code>{a}</code></div> })}
                                    </details>
                                });
                                view! {
                                    <tr>
                                        <td class="nowrap" title=format!("#{}", r.id)>{format::datetime_ms(r.at_ms as f64)}</td>
                                        <td>{r.actor.clone()}<small class="muted">" via "{r.via.clone()}</small></td>
                                        <td><code>{r.action.clone()}</code></td>
                                        <td>{r.target.clone().unwrap_or_default()}</td>
                                        <td><span class=format!("badge {class}")>{r.result.clone()}</span></td>
                                        <td>{change}</td>
                                    </tr>
                                }
                            }).collect_view()}
                        </tbody>
                    </table>
                </div>
                {(full && last.is_some()).then(|| view! {
                    <div class="pager"><button class="btn" on:click=move |_| before.set(last)>"Older entries →"</button></div>
                })}
            }.into_any()
        })}
    }
}
