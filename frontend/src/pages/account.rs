//! Your account: who you are, and the change of your own password (`PUT /api/v1/me/password`,
//! checked against the current one; your other sessions end, this one and API tokens stay).

use leptos::prelude::*;

use crate::{
    api,
    components::ui::{Field, FormError},
    session::use_session,
};

#[component]
pub fn Account() -> impl IntoView {
    let session = use_session();
    let current = RwSignal::new(String::new());
    let new = RwSignal::new(String::new());
    let again = RwSignal::new(String::new());
    let errors = RwSignal::new(Vec::<(String, String)>::new());
    let changed = RwSignal::new(false);
    let change = Action::new_local(move |_: &()| {
        let body = wire::PasswordChange {
            current_password: current.get_untracked(),
            new_password: new.get_untracked(),
        };
        async move { api::put::<_, ()>("/api/v1/me/password", &body).await }
    });
    Effect::new(move |_| match change.value().get() {
        Some(Ok(())) => {
            errors.set(vec![]);
            for s in [current, new, again] {
                s.set(String::new());
            }
            changed.set(true);
        }
        Some(Err(e)) => {
            // The server names the new password's field; a wrong current one is a 401.
            let field = match e.field() {
                Some("new_password" | "password") => "new_password",
                _ => "current_password",
            };
            errors.set(vec![(field.into(), e.error.message.clone())]);
        }
        None => {}
    });
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        changed.set(false);
        if new.get_untracked() != again.get_untracked() {
            errors.set(vec![(
                "new_password_again".into(),
                "the two new passwords differ".into(),
            )]);
            return;
        }
        errors.set(vec![]);
        change.dispatch(());
    };
    let me = move || session.me.get();
    view! {
        <div class="page-head"><h1>"Your account"</h1></div>
        <dl class="facts card" data-testid="account-facts">
            <div><dt>"Name"</dt><dd>{move || me().map(|m| m.name).unwrap_or_default()}</dd></div>
            <div><dt>"Role"</dt><dd>{move || me().map(|m| m.role.to_string()).unwrap_or_default()}</dd></div>
            <div><dt>"Teams"</dt><dd>{move || me().map(|m| if m.teams.is_empty() { "–".to_owned() } else { m.teams.join(", ") }).unwrap_or_default()}</dd></div>
        </dl>
        <section class="card" data-testid="password-form">
            <h2>"Change your password"</h2>
            <p class="muted">"Your other sessions end; this one and your API tokens stay."</p>
            <form on:submit=submit>
                <Field label="Current password" name="current_password" kind="password" value=current errors=errors />
                <Field label="New password" name="new_password" kind="password" value=new errors=errors hint="8 to 1024 characters" />
                <Field label="New password again" name="new_password_again" kind="password" value=again errors=errors />
                <FormError errors=errors known=&["current_password", "new_password", "new_password_again"] />
                <button class="btn primary" type="submit" data-testid="change-password" disabled=move || change.pending().get()>
                    {move || if change.pending().get() { "Changing…" } else { "Change password" }}
                </button>
            </form>
            {move || changed.get().then(|| view! {
                <p class="notice ok" role="status" data-testid="password-changed">"Password changed."</p>
            })}
        </section>
    }
}
