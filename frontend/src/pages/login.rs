//! Sign-in, and the first-run setup reached through the one-time link the daemon prints
//! (`/setup#TOKEN`: the token stays in the fragment, never in a request line or a log).

use leptos::prelude::*;
use leptos_router::hooks::{use_navigate, use_query_map};

use crate::{
    api,
    components::ui::{ErrorBox, Field, field_errors},
    session::use_session,
};

/// Where to go after signing in: the `next` query, if it is a path of ours.
fn next_path(next: Option<String>) -> String {
    next.filter(|n| n.starts_with('/') && !n.starts_with("//") && !n.starts_with("/login"))
        .unwrap_or_else(|| "/".into())
}

#[component]
fn AuthCard(#[prop(into)] title: String, children: Children) -> impl IntoView {
    view! {
        <div class="auth-wrap">
            <main class="auth-card" id="app-main">
                <div class="brand big" id="brand">
                    <svg class="logo" viewBox="0 0 24 24" aria-hidden="true">
                        <path d="M3 8l9-5 9 5v8l-9 5-9-5zm2 1.2v5.6l7 3.9 7-3.9V9.2l-7 3.9z" />
                    </svg>
                    "Corral"
                </div>
                <h1>{title}</h1>
                {children()}
            </main>
        </div>
    }
}

#[component]
pub fn Login() -> impl IntoView {
    let session = use_session();
    let query = use_query_map();
    let navigate = use_navigate();
    let name = RwSignal::new(String::new());
    let password = RwSignal::new(String::new());
    let errors = RwSignal::new(Vec::<(String, String)>::new());
    let setup = LocalResource::new(|| api::get::<wire::SetupStatus>("/api/v1/setup"));
    let submit = Action::new_local(move |_: &()| {
        let body = wire::LoginRequest {
            name: name.get_untracked(),
            password: password.get_untracked(),
        };
        async move { api::post::<_, wire::LoginResponse>("/api/v1/login", &body).await }
    });
    Effect::new(move |_| match submit.value().get() {
        Some(Ok(r)) => {
            session.signed_in(r);
            let to = next_path(query.get_untracked().get("next"));
            navigate(&to, Default::default());
        }
        Some(Err(e)) => errors.set(field_errors(&e)),
        None => {}
    });
    let form_error = move || {
        errors.with(|e| {
            e.iter()
                .find(|(f, _)| f.is_empty() || f == "credentials")
                .map(|(_, m)| m.clone())
        })
    };
    view! {
        <AuthCard title="Sign in">
            {move || setup.get().and_then(|r| r.ok()).filter(|s| s.needed).map(|_| view! {
                <div class="notice" role="note">
                    "No administrator exists yet. Open the one-time setup link the daemon printed "
                    "when it started (" <code>"/setup#…"</code> ")."
                </div>
            })}
            <form on:submit=move |ev| { ev.prevent_default(); errors.set(vec![]); submit.dispatch(()); }>
                <Field label="User name" name="name" value=name errors=errors />
                <Field label="Password" name="password" kind="password" value=password errors=errors />
                {move || form_error().map(|m| view! { <div class="error-box" role="alert" data-testid="login-error">{m}</div> })}
                <button class="btn primary wide" type="submit" data-testid="sign-in" disabled=move || submit.pending().get()>
                    {move || if submit.pending().get() { "Signing in…" } else { "Sign in" }}
                </button>
            </form>
        </AuthCard>
    }
}

#[component]
pub fn Setup() -> impl IntoView {
    let session = use_session();
    let navigate = use_navigate();
    let token = web_sys::window()
        .and_then(|w| w.location().hash().ok())
        .map(|h| h.trim_start_matches('#').to_owned())
        .unwrap_or_default();
    // Drop the token from the address bar and history once read.
    if let Some(h) = web_sys::window().and_then(|w| w.history().ok()) {
        let _ = h.replace_state_with_url(&wasm_bindgen::JsValue::NULL, "", Some("/setup"));
    }
    let has_token = !token.is_empty();
    let name = RwSignal::new("admin".to_owned());
    let password = RwSignal::new(String::new());
    let repeat = RwSignal::new(String::new());
    let errors = RwSignal::new(Vec::<(String, String)>::new());
    let status = LocalResource::new(|| api::get::<wire::SetupStatus>("/api/v1/setup"));
    let submit = Action::new_local(move |_: &()| {
        let body = wire::SetupRequest {
            token: token.clone(),
            name: name.get_untracked(),
            password: password.get_untracked(),
        };
        async move { api::post::<_, wire::LoginResponse>("/api/v1/setup", &body).await }
    });
    Effect::new(move |_| match submit.value().get() {
        Some(Ok(r)) => {
            session.signed_in(r);
            navigate("/", Default::default());
        }
        Some(Err(e)) => errors.set(field_errors(&e)),
        None => {}
    });
    let on_submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        if password.get_untracked() != repeat.get_untracked() {
            errors.set(vec![("repeat".into(), "the passwords differ".into())]);
            return;
        }
        errors.set(vec![]);
        submit.dispatch(());
    };
    let form_error = move || {
        errors.with(|e| {
            e.iter()
                .find(|(f, _)| !["name", "password", "repeat"].contains(&f.as_str()))
                .map(|(_, m)| m.clone())
        })
    };
    view! {
        <AuthCard title="Create the administrator">
            {move || match status.get() {
                None => None,
                Some(Err(e)) => Some(view! { <ErrorBox error=e /> }.into_any()),
                Some(Ok(s)) if !s.needed => Some(view! {
                    <div class="notice" role="note">
                        "Setup is already complete. " <a href="/login">"Sign in"</a>
                    </div>
                }.into_any()),
                Some(Ok(_)) if !has_token => Some(view! {
                    <div class="error-box" role="alert">
                        "This page needs the one-time link the daemon printed, ending in "
                        <code>"#"</code>" and a token."
                    </div>
                }.into_any()),
                Some(Ok(_)) => None,
            }}
            <p class="muted">"This account can do everything on this host. Choose a long password."</p>
            <form on:submit=on_submit>
                <Field label="User name" name="name" value=name errors=errors />
                <Field label="Password" name="password" kind="password" value=password errors=errors
                    hint="8 to 1024 characters" />
                <Field label="Repeat the password" name="repeat" kind="password" value=repeat errors=errors />
                {move || form_error().map(|m| view! { <div class="error-box" role="alert">{m}</div> })}
                <button class="btn primary wide" type="submit" data-testid="create-admin"
                    disabled=move || submit.pending().get() || !has_token>
                    {move || if submit.pending().get() { "Creating…" } else { "Create and sign in" }}
                </button>
            </form>
        </AuthCard>
    }
}
