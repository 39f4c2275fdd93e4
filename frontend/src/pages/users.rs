//! Users and API tokens (admin): create, change role and teams, delete; create and revoke tokens.

use leptos::prelude::*;

use crate::{
    api,
    components::{
        poll::poll,
        ui::{ConfirmButton, ErrorBox, Field, FormError, field_errors, polled_view},
    },
    format,
};

fn parse_teams(s: &str) -> Vec<String> {
    s.split([',', ' '])
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .collect()
}

#[component]
pub fn Users() -> impl IntoView {
    let users = poll(0, || api::get::<Vec<wire::User>>("/api/v1/users"));
    let tokens = poll(0, || api::get::<Vec<wire::TokenInfo>>("/api/v1/tokens"));
    let op_error = RwSignal::new(None::<api::ApiFailure>);

    let name = RwSignal::new(String::new());
    let role = RwSignal::new("operator".to_owned());
    let teams = RwSignal::new(String::new());
    let password = RwSignal::new(String::new());
    let errors = RwSignal::new(Vec::<(String, String)>::new());
    let create = Action::new_local(move |_: &()| {
        let body = wire::UserCreate {
            name: name.get_untracked().trim().to_owned(),
            role: match role.get_untracked().as_str() {
                "admin" => wire::Role::Admin,
                "viewer" => wire::Role::Viewer,
                _ => wire::Role::Operator,
            },
            teams: parse_teams(&teams.get_untracked()),
            password: password.get_untracked(),
        };
        async move { api::post::<_, wire::User>("/api/v1/users", &body).await }
    });
    Effect::new(move |_| match create.value().get() {
        Some(Ok(_)) => {
            errors.set(vec![]);
            name.set(String::new());
            password.set(String::new());
            teams.set(String::new());
            users.refresh();
        }
        Some(Err(e)) => errors.set(field_errors(&e)),
        None => {}
    });

    let remove_user = move |n: String| {
        leptos::task::spawn_local(async move {
            match api::delete(&format!("/api/v1/users/{}", api::enc(&n))).await {
                Ok(()) => {
                    op_error.set(None);
                    users.refresh();
                }
                Err(e) => op_error.set(Some(e)),
            }
        });
    };
    let set_role = move |n: String, r: String| {
        leptos::task::spawn_local(async move {
            let role = match r.as_str() {
                "admin" => wire::Role::Admin,
                "viewer" => wire::Role::Viewer,
                _ => wire::Role::Operator,
            };
            let body = wire::UserUpdate {
                role: Some(role),
                ..Default::default()
            };
            match api::patch::<_, wire::User>(&format!("/api/v1/users/{}", api::enc(&n)), &body)
                .await
            {
                Ok(_) => {
                    op_error.set(None);
                    users.refresh();
                }
                Err(e) => {
                    op_error.set(Some(e));
                    users.refresh();
                }
            }
        });
    };

    // Tokens.
    let t_name = RwSignal::new(String::new());
    let t_user = RwSignal::new(String::new());
    let t_days = RwSignal::new("90".to_owned());
    let t_errors = RwSignal::new(Vec::<(String, String)>::new());
    let secret = RwSignal::new(None::<wire::TokenCreated>);
    let create_token = Action::new_local(move |_: &()| {
        let days = t_days.get_untracked();
        let user = t_user.get_untracked();
        let body = wire::TokenCreate {
            name: t_name.get_untracked(),
            user: (!user.trim().is_empty()).then(|| user.trim().to_owned()),
            expires_in_days: days.trim().parse().ok(),
        };
        async move { api::post::<_, wire::TokenCreated>("/api/v1/tokens", &body).await }
    });
    Effect::new(move |_| match create_token.value().get() {
        Some(Ok(t)) => {
            t_errors.set(vec![]);
            t_name.set(String::new());
            secret.set(Some(t));
            tokens.refresh();
        }
        Some(Err(e)) => t_errors.set(field_errors(&e)),
        None => {}
    });
    let revoke = move |id: i64| {
        leptos::task::spawn_local(async move {
            match api::delete(&format!("/api/v1/tokens/{id}")).await {
                Ok(()) => {
                    op_error.set(None);
                    tokens.refresh();
                }
                Err(e) => op_error.set(Some(e)),
            }
        });
    };

    view! {
        <div class="page-head"><h1>"Users & tokens"</h1></div>
        {move || op_error.get().map(|e| view! { <ErrorBox error=e /> })}
        <div class="grid-main-side">
            <section class="card">
                <h2>"Users"</h2>
                {polled_view(users, "users", move |list: Vec<wire::User>| view! {
                    <div class="table-wrap">
                        <table class="table" data-testid="users-table">
                            <thead><tr><th>"Name"</th><th>"Role"</th><th>"Teams"</th><th>"Created"</th><th></th></tr></thead>
                            <tbody>
                                {list.into_iter().map(|u| {
                                    let n1 = u.name.clone();
                                    let n2 = u.name.clone();
                                    let current = u.role.to_string();
                                    view! {
                                        <tr data-user=u.name.clone()>
                                            <td><b>{u.name.clone()}</b></td>
                                            <td>
                                                <select aria-label=format!("Role of {}", u.name) on:change=move |ev| set_role(n1.clone(), event_target_value(&ev))>
                                                    {["admin", "operator", "viewer"].into_iter().map(|r| view! {
                                                        <option value=r selected=current == r>{r}</option>
                                                    }).collect_view()}
                                                </select>
                                            </td>
                                            <td>{if u.teams.is_empty() { "–".to_owned() } else { u.teams.join(", ") }}</td>
                                            <td class="nowrap">{format::datetime(u.created_at)}</td>
                                            <td class="actions">
                                                <ConfirmButton label="Delete" confirm=format!("Delete {}?", u.name)
                                                    on_confirm=Callback::new(move |_| remove_user(n2.clone())) />
                                            </td>
                                        </tr>
                                    }
                                }).collect_view()}
                            </tbody>
                        </table>
                    </div>
                })}
            </section>
            <section class="card">
                <h2>"New user"</h2>
                <form on:submit=move |ev| { ev.prevent_default(); create.dispatch(()); }>
                    <Field label="Name" name="name" value=name errors=errors placeholder="alice" />
                    <div class="field">
                        <label for="f-role">"Role"</label>
                        <select id="f-role" on:change=move |ev| role.set(event_target_value(&ev))>
                            <option value="operator" selected=true>"operator — acts on its teams' containers"</option>
                            <option value="viewer">"viewer — reads its teams"</option>
                            <option value="admin">"admin — everything"</option>
                        </select>
                    </div>
                    <Field label="Teams" name="teams" value=teams errors=errors placeholder="team-a, team-b" hint="Comma-separated; the teams must exist." />
                    <Field label="Password" name="password" kind="password" value=password errors=errors hint="8 to 1024 characters" />
                    <FormError errors=errors known=&["name", "teams", "password"] />
                    <button class="btn primary" type="submit" disabled=move || create.pending().get()>"Create user"</button>
                </form>
            </section>
        </div>
        <section class="card">
            <h2>"API tokens"</h2>
            {move || secret.get().map(|t| view! {
                <div class="notice ok" role="status">
                    <p>"Token " <b>{t.info.name.clone()}</b> " for " {t.info.user.clone()} " — copy it now, it is not shown again:"</p>
                    <code class="secret" data-testid="token-secret">{t.token.clone()}</code>
                    <button class="btn ghost small" on:click=move |_| secret.set(None)>"Done"</button>
                </div>
            })}
            <form class="inline-form" on:submit=move |ev| { ev.prevent_default(); create_token.dispatch(()); }>
                <Field label="Label" name="name" value=t_name errors=t_errors placeholder="ci-deploy" />
                <Field label="For user" name="user" value=t_user errors=t_errors placeholder="yourself" />
                <Field label="Expires in days" name="expires_in_days" value=t_days errors=t_errors kind="number" />
                <button class="btn primary" type="submit" disabled=move || create_token.pending().get()>"Create token"</button>
            </form>
            <FormError errors=t_errors known=&["name", "user", "expires_in_days"] />
            {polled_view(tokens, "tokens", move |list: Vec<wire::TokenInfo>| {
                if list.is_empty() {
                    return view! { <p class="empty-state">"No tokens yet."</p> }.into_any();
                }
                view! {
                    <div class="table-wrap">
                        <table class="table" data-testid="tokens-table">
                            <thead><tr><th>"Label"</th><th>"User"</th><th>"Created"</th><th>"Last used"</th><th>"Expires"</th><th>"State"</th><th></th></tr></thead>
                            <tbody>
                                {list.into_iter().map(|t| {
                                    let id = t.id;
                                    let revoked = t.revoked_at.is_some();
                                    view! {
                                        <tr class:off=revoked>
                                            <td>{t.name.clone()}</td>
                                            <td>{t.user.clone()}</td>
                                            <td class="nowrap">{format::datetime(t.created_at)}</td>
                                            <td class="nowrap">{t.last_used_at.map(format::datetime).unwrap_or_else(|| "never".into())}</td>
                                            <td class="nowrap">{t.expires_at.map(format::datetime).unwrap_or_else(|| "never".into())}</td>
                                            <td>{if revoked { view! { <span class="badge muted">"revoked"</span> } } else { view! { <span class="badge ok">"active"</span> } }}</td>
                                            <td class="actions">{(!revoked).then(|| view! {
                                                <ConfirmButton label="Revoke" confirm="Revoke this token?" on_confirm=Callback::new(move |_| revoke(id)) />
                                            })}</td>
                                        </tr>
                                    }
                                }).collect_view()}
                            </tbody>
                        </table>
                    </div>
                }.into_any()
            })}
        </section>
    }
}
