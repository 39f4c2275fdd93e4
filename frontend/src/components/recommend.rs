//! The "Right-sizing" card of the container and team pages: each item of
//! `GET {path}/recommendation` as its one line with an increase/decrease/keep badge, the note
//! while the history is too short, and "Apply", which sends the answer's `patch` to
//! `PATCH {path}/limits` — the ordinary re-limit, audited and undoable — for those who may.

use leptos::prelude::*;
use wire::{Recommendation, RecommendationAction};

use crate::{
    api,
    components::{
        poll::poll,
        ui::{FormError, field_errors, polled_view},
    },
    format,
};

/// `path` is the container's or team's API path (`/api/v1/containers/web`); `can_apply`
/// shows the button; `on_applied` runs after a successful apply.
#[component]
pub fn RightSizing(
    path: String,
    can_apply: Signal<bool>,
    on_applied: Callback<()>,
) -> impl IntoView {
    let rec = poll(60_000, {
        let p = format!("{path}/recommendation");
        move || {
            let p = p.clone();
            async move { api::get::<Recommendation>(&p).await }
        }
    });
    let errors = RwSignal::new(Vec::<(String, String)>::new());
    let applied = RwSignal::new(false);
    let apply = Action::new_local(move |patch: &wire::LimitsPatch| {
        let body = patch.clone();
        let p = format!("{path}/limits");
        async move { api::patch::<_, serde_json::Value>(&p, &body).await }
    });
    Effect::new(move |_| match apply.value().get() {
        Some(Ok(_)) => {
            errors.set(vec![]);
            applied.set(true);
            rec.refresh();
            on_applied.run(());
        }
        Some(Err(e)) => {
            applied.set(false);
            errors.set(field_errors(&e));
        }
        None => {}
    });
    view! {
        <section class="card" data-testid="right-sizing">
            <h2>"Right-sizing"</h2>
            {polled_view(rec, "the recommendation", move |r: Recommendation| {
                let head = format!(
                    "{} samples since {} (window {}; {} needed).",
                    r.samples,
                    format::datetime(r.from),
                    format::duration(r.window_secs as f64),
                    r.min_samples
                );
                let changes = !r.patch.is_empty();
                let patch = r.patch.clone();
                view! {
                    <p class="muted small">{head}</p>
                    {r.note.clone().map(|n| view! { <p class="notice" data-testid="right-sizing-note">{n}</p> })}
                    <ul class="recommendations">
                        {r.items.iter().map(|i| {
                            let (class, word) = match i.action {
                                RecommendationAction::Increase => ("badge warn", "increase"),
                                RecommendationAction::Decrease => ("badge info", "decrease"),
                                RecommendationAction::Keep => ("badge ok", "keep"),
                            };
                            view! {
                                <li data-testid="recommendation" data-knob=i.knob.clone() data-action=word>
                                    <span class=class>{word}</span>" "<span class="mono">{i.line.clone()}</span>
                                </li>
                            }
                        }).collect_view()}
                    </ul>
                    <Show when=move || can_apply.get() && changes>
                        {
                            let patch = patch.clone();
                            view! {
                                <button class="btn primary" data-testid="apply-recommendation"
                                    title="change the limits as recommended (undo it from the limit changes)"
                                    disabled=move || apply.pending().get()
                                    on:click=move |_| { apply.dispatch(patch.clone()); }>"Apply"</button>
                            }
                        }
                    </Show>
                }
            })}
            <Show when=move || applied.get()>
                <p class="notice ok" role="status" data-testid="recommendation-applied">"Applied: the limits changed as recommended."</p>
            </Show>
            <FormError errors=errors known=&[] />
        </section>
    }
}
