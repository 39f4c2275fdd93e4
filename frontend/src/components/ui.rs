//! Small pieces every page uses: loading and error states, freshness, status badges,
//! confirmed buttons and form fields that show the server's error beside them.

use leptos::prelude::*;

use crate::api::ApiFailure;
use crate::components::poll::Polled;
use crate::format;

/// A placeholder while data loads.
#[component]
pub fn Loading(#[prop(optional, into)] what: String) -> impl IntoView {
    view! {
        <div class="loading" role="status" aria-live="polite">
            <span class="spinner" aria-hidden="true"></span>
            {if what.is_empty() { "Loading…".to_owned() } else { format!("Loading {what}…") }}
        </div>
    }
}

/// The server's message, shown as an alert.
#[component]
pub fn ErrorBox(#[prop(into)] error: ApiFailure) -> impl IntoView {
    let code = error.error.code.clone();
    // An API this daemon does not have yet (an older version): say so plainly.
    if error.status == 404 && error.error.message.starts_with("no such endpoint") {
        return view! {
            <div class="notice" role="note" data-code="unavailable">
                "Not available from this daemon: it has no "
                <code>{error.error.message.trim_start_matches("no such endpoint: ").to_owned()}</code>
                " API."
            </div>
        }
        .into_any();
    }
    view! {
        <div class="error-box" role="alert" data-code=code.clone()>
            <strong>{match error.status {
                0 => "Cannot reach the daemon".to_owned(),
                403 => "Not allowed".to_owned(),
                404 => "Not found".to_owned(),
                s if s >= 500 => "The daemon failed".to_owned(),
                _ => "Request refused".to_owned(),
            }}</strong>
            " "
            <span>{error.error.message.clone()}</span>
        </div>
    }
    .into_any()
}

/// Renders a polled resource: loading, error (with no data), or `ok(data)`; when a refresh
/// failed while older data is shown, says so above it.
pub fn polled_view<T, V, F>(p: Polled<T>, what: &'static str, ok: F) -> impl IntoView
where
    T: Clone + Send + Sync + 'static,
    V: IntoView + 'static,
    F: Fn(T) -> V + Send + Sync + 'static,
{
    move || {
        let stale = p.error.get().filter(|_| p.data.with(Option::is_some));
        match (p.data.get(), p.error.get()) {
            (Some(d), _) => view! {
                {stale.map(|e| view! {
                    <div class="stale" role="alert">
                        "Could not refresh (" {e.error.message} "); showing data from "
                        {format::ago(p.updated.get_untracked())} "."
                    </div>
                })}
                {ok(d)}
            }
            .into_any(),
            (None, Some(e)) => view! { <ErrorBox error=e /> }.into_any(),
            (None, None) => view! { <Loading what=what /> }.into_any(),
        }
    }
}

/// Like [`polled_view`], but `ok` runs once, when data first arrives, and reads the data
/// through signals itself: a refresh updates rows and cells in place (the elements survive a
/// poll) instead of building the view again.
pub fn polled_live<T, V, F>(p: Polled<T>, what: &'static str, ok: F) -> impl IntoView
where
    T: Send + Sync + 'static,
    V: IntoView + 'static,
    F: Fn() -> V + Send + Sync + 'static,
{
    let has = Memo::new(move |_| p.data.with(Option::is_some));
    move || {
        if has.get() {
            view! {
                {move || p.error.get().map(|e| view! {
                    <div class="stale" role="alert">
                        "Could not refresh (" {e.error.message} "); showing data from "
                        {format::ago(p.updated.get_untracked())} "."
                    </div>
                })}
                {ok()}
            }
            .into_any()
        } else {
            match p.error.get() {
                Some(e) => view! { <ErrorBox error=e /> }.into_any(),
                None => view! { <Loading what=what /> }.into_any(),
            }
        }
    }
}

/// "Updated 3s ago" for a polled resource, ticking with `now`.
#[component]
pub fn Freshness<T: Send + Sync + 'static>(poll: Polled<T>, now: RwSignal<f64>) -> impl IntoView {
    let text = move || {
        let at = poll.updated.get();
        if at <= 0.0 {
            return if poll.error.with(Option::is_some) {
                "not updated"
            } else {
                "loading…"
            }
            .to_owned();
        }
        let secs = ((now.get() - at) / 1000.0).max(0.0).round();
        format!("updated {secs:.0}s ago")
    };
    let stale = move || poll.error.with(Option::is_some);
    view! {
        <span class="freshness" class:bad=stale data-testid="freshness" aria-live="off">
            <span class="pulse" aria-hidden="true"></span>{text}
        </span>
    }
}

/// A container state as a coloured badge.
#[component]
pub fn StatusBadge(#[prop(into)] status: Signal<String>) -> impl IntoView {
    let look = move || {
        status.with(|s| match s.as_str() {
            "running" => ("badge ok", "running"),
            "paused" | "frozen" => ("badge info", "frozen"),
            "created" => ("badge muted", "created"),
            "exited" => ("badge warn", "exited"),
            _ => ("badge muted", "unknown"),
        })
    };
    view! { <span class=move || look().0 data-status=status>{move || look().1}</span> }
}

/// A button that asks once more before a destructive action.
#[component]
pub fn ConfirmButton(
    #[prop(into)] label: String,
    #[prop(into)] confirm: String,
    on_confirm: Callback<()>,
    #[prop(optional, into)] testid: String,
    #[prop(optional, into)] disabled: Signal<bool>,
) -> impl IntoView {
    let asking = RwSignal::new(false);
    let label2 = label.clone();
    view! {
        <Show when=move || asking.get() fallback=move || view! {
            <button class="btn danger-ghost" data-testid=testid.clone() disabled=move || disabled.get()
                on:click=move |_| asking.set(true)>{label2.clone()}</button>
        }>
            <span class="confirm" role="group" aria-label=confirm.clone()>
                <span class="confirm-q">{confirm.clone()}</span>
                <button class="btn danger" data-testid="confirm-yes" on:click=move |_| {
                    asking.set(false);
                    on_confirm.run(());
                }>{label.clone()}</button>
                <button class="btn ghost" on:click=move |_| asking.set(false)>"Cancel"</button>
            </span>
        </Show>
    }
}

/// A labelled input whose error (client check or the server's `field`) shows beneath it.
#[component]
pub fn Field(
    #[prop(into)] label: String,
    /// The request field name the server uses (e.g. `limits.memory_max`).
    #[prop(into)]
    name: String,
    value: RwSignal<String>,
    errors: RwSignal<Vec<(String, String)>>,
    #[prop(optional, into)] placeholder: String,
    #[prop(optional, into)] hint: String,
    #[prop(optional, into)] kind: String,
) -> impl IntoView {
    let id = format!("f-{}", name.replace('.', "-"));
    let err_id = format!("{id}-err");
    let n2 = name.clone();
    let error = Memo::new(move |_| {
        errors.with(|e| e.iter().find(|(f, _)| *f == n2).map(|(_, m)| m.clone()))
    });
    let has_error = move || error.with(Option::is_some);
    let kind = if kind.is_empty() {
        "text".to_owned()
    } else {
        kind
    };
    view! {
        <div class="field" class:invalid=has_error>
            <label for=id.clone()>{label}</label>
            <input id=id.clone() name=name.clone() type=kind placeholder=placeholder
                aria-invalid=move || has_error().to_string() aria-describedby=err_id.clone()
                prop:value=move || value.get() on:input=move |ev| value.set(event_target_value(&ev)) />
            {(!hint.is_empty()).then(|| view! { <small class="hint">{hint.clone()}</small> })}
            <small class="field-error" id=err_id data-field=name.clone() role="alert">{move || error.get()}</small>
        </div>
    }
}

/// Errors for [`Field`]s from a failed request: the named field, or `""` for the form.
pub fn field_errors(e: &ApiFailure) -> Vec<(String, String)> {
    vec![(e.field().unwrap_or("").to_owned(), e.error.message.clone())]
}

/// The form-wide error (one not tied to a field shown in the form).
#[component]
pub fn FormError(
    errors: RwSignal<Vec<(String, String)>>,
    /// Field names the form shows beside inputs.
    known: &'static [&'static str],
) -> impl IntoView {
    let msg = move || {
        errors.with(|e| {
            e.iter()
                // `ports[2]` belongs to the field `ports`.
                .filter(|(f, _)| {
                    !known
                        .iter()
                        .any(|k| f == k || f.strip_prefix(k).is_some_and(|r| r.starts_with('[')))
                })
                .map(|(f, m)| {
                    if f.is_empty() {
                        m.clone()
                    } else {
                        format!("{f}: {m}")
                    }
                })
                .collect::<Vec<_>>()
                .join("; ")
        })
    };
    view! {
        <Show when=move || !msg().is_empty()>
            <div class="error-box" role="alert" data-testid="form-error">{msg}</div>
        </Show>
    }
}
