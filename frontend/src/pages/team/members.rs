//! The admin's membership editor: the team's users with a button to take each out, and a pick
//! of the other users to add one — each a `PATCH /api/v1/users/{name}` of that user's teams
//! (audited there as `user.update`).

use leptos::prelude::*;

use crate::{
    api::{self, ApiFailure},
    components::{
        poll::poll,
        ui::{ConfirmButton, ErrorBox, polled_view},
    },
};

#[component]
pub fn Members(#[prop(into)] team: String, on_changed: Callback<()>) -> impl IntoView {
    let users = poll(0, || api::get::<Vec<wire::User>>("/api/v1/users"));
    let op_error = RwSignal::new(None::<ApiFailure>);
    let pick = RwSignal::new(String::new());
    // Sets `user`'s teams to `teams`.
    let set_teams = move |user: String, teams: Vec<String>| {
        leptos::task::spawn_local(async move {
            let body = wire::UserUpdate {
                teams: Some(teams),
                ..Default::default()
            };
            match api::patch::<_, wire::User>(&format!("/api/v1/users/{}", api::enc(&user)), &body)
                .await
            {
                Ok(_) => {
                    op_error.set(None);
                    pick.set(String::new());
                    on_changed.run(());
                }
                Err(e) => op_error.set(Some(e)),
            }
            users.refresh();
        });
    };
    view! {
        <section class="card" data-testid="team-members">
            <h2>"Members"</h2>
            <p class="muted">"Operators act on the team's containers, viewers read them; admins see every team."</p>
            {move || op_error.get().map(|e| view! { <ErrorBox error=e /> })}
            {polled_view(users, "users", move |list: Vec<wire::User>| {
                let team = team.clone();
                let (members, others): (Vec<_>, Vec<_>) =
                    list.into_iter().partition(|u| u.teams.contains(&team));
                let rows = if members.is_empty() {
                    view! { <p class="empty-state">"No members."</p> }.into_any()
                } else {
                    members.into_iter().map(|u| {
                        let teams: Vec<String> = u.teams.iter().filter(|t| **t != team).cloned().collect();
                        let name = u.name.clone();
                        view! {
                            <div class="member-row" data-member=u.name.clone()>
                                <span><b>{u.name.clone()}</b>" " <span class="muted small">{u.role.to_string()}</span></span>
                                <ConfirmButton label="Remove" confirm=format!("Take {} out of {team}?", u.name) testid="remove-member"
                                    on_confirm=Callback::new(move |_| set_teams(name.clone(), teams.clone())) />
                            </div>
                        }
                    }).collect_view().into_any()
                };
                let candidates = others.clone();
                let team2 = team.clone();
                let add = move |ev: leptos::ev::SubmitEvent| {
                    ev.prevent_default();
                    let who = pick.get_untracked();
                    if let Some(u) = candidates.iter().find(|u| u.name == who) {
                        let mut teams = u.teams.clone();
                        teams.push(team2.clone());
                        set_teams(u.name.clone(), teams);
                    }
                };
                view! {
                    <div data-testid="member-list">{rows}</div>
                    {(!others.is_empty()).then(|| view! {
                        <form class="inline-form" on:submit=add>
                            <div class="field">
                                <label for="f-add-member">"Add a user"</label>
                                <select id="f-add-member" data-testid="add-member-pick" on:change=move |ev| pick.set(event_target_value(&ev))>
                                    <option value="" selected=true>"choose…"</option>
                                    {others.iter().map(|u| view! {
                                        <option value=u.name.clone()>{format!("{} ({})", u.name, u.role)}</option>
                                    }).collect_view()}
                                </select>
                            </div>
                            <button class="btn primary" type="submit" data-testid="add-member"
                                disabled=move || pick.get().is_empty()>"Add to team"</button>
                        </form>
                    })}
                }
            })}
        </section>
    }
}
