//! Teams and billing: totals per team for a period, cost over time, the rate card editor
//! (admin), CSV statements, and the teams themselves.

use leptos::prelude::*;

use crate::{
    api,
    components::{
        chart::{ChartData, LineChart, Series},
        poll::poll,
        ui::{ErrorBox, Field, FormError, field_errors, polled_view},
    },
    format,
    session::use_session,
    types::{BillingReport, RateCard, RateCards},
};

fn unit_money(v: f64) -> String {
    if v != 0.0 && v.abs() < 0.01 {
        format!("{v:.4}")
    } else {
        format!("{v:.2}")
    }
}

/// `YYYY-MM` of the month before `m`.
fn prev_month(m: &str) -> String {
    let (y, mo) = m.split_once('-').unwrap_or(("1970", "01"));
    let (y, mo): (i32, u32) = (y.parse().unwrap_or(1970), mo.parse().unwrap_or(1));
    if mo == 1 {
        format!("{}-12", y - 1)
    } else {
        format!("{y}-{:02}", mo - 1)
    }
}

fn next_month(m: &str) -> String {
    let (y, mo) = m.split_once('-').unwrap_or(("1970", "01"));
    let (y, mo): (i32, u32) = (y.parse().unwrap_or(1970), mo.parse().unwrap_or(1));
    if mo == 12 {
        format!("{}-01", y + 1)
    } else {
        format!("{y}-{:02}", mo + 1)
    }
}

#[component]
pub fn Billing() -> impl IntoView {
    let session = use_session();
    let month = RwSignal::new(format::this_month());
    let report = poll(15_000, move || {
        let m = month.get();
        let q = format!("/api/v1/billing?from={m}&to={}", next_month(&m));
        async move { api::get::<BillingReport>(&q).await }
    });
    view! {
        <div class="page-head">
            <h1>"Teams & billing"</h1>
            <div class="btn-row" role="group" aria-label="Period">
                <button class="btn small" aria-label="Previous month" on:click=move |_| month.update(|m| *m = prev_month(m))>"‹"</button>
                <input type="month" aria-label="Month" prop:value=move || month.get()
                    on:change=move |ev| { let v = event_target_value(&ev); if !v.is_empty() { month.set(v); } } />
                <button class="btn small" aria-label="Next month" on:click=move |_| month.update(|m| *m = next_month(m))>"›"</button>
            </div>
        </div>
        {polled_view(report, "the bill", move |r: BillingReport| {
            let cur = r.currency.clone();
            let m = month.get_untracked();
            view! {
                <section class="cards">
                    <div class="card"><h2>"Total"</h2><div class="big-num" data-testid="bill-total" data-value=r.total.cost.total.to_string()>{format::money(r.total.cost.total, &cur)}</div></div>
                    <div class="card"><h2>"CPU used"</h2><div class="big-num">{format!("{:.3}", r.total.usage.cpu_core_hours)}<small>" core·h"</small></div></div>
                    <div class="card"><h2>"Memory used"</h2><div class="big-num">{format!("{:.3}", r.total.usage.mem_gib_hours)}<small>" GiB·h"</small></div></div>
                    <div class="card"><h2>"IO"</h2><div class="big-num">{format::bytes_u(r.total.usage.io_read_bytes + r.total.usage.io_write_bytes)}</div></div>
                </section>
                <section class="card">
                    <h2>"Per team"</h2>
                    {if r.teams.is_empty() {
                        view! { <p class="empty-state">"Nothing metered in this period."</p> }.into_any()
                    } else { view! {
                        <div class="table-wrap">
                            <table class="table" data-testid="teams-bill">
                                <thead><tr><th>"Team"</th><th class="num">"CPU core·h"</th><th class="num hide-sm">"Reserved core·h"</th>
                                    <th class="num">"Memory GiB·h"</th><th class="num hide-sm">"IO"</th><th class="num">"Cost"</th><th>"Statement"</th></tr></thead>
                                <tbody>
                                    {r.teams.iter().map(|t| {
                                        let csv = format!("/api/v1/billing/statements/{}/{}?format=csv", api::enc(&t.team), m);
                                        let json = format!("/api/v1/billing/statements/{}/{}", api::enc(&t.team), m);
                                        let team = if t.team.is_empty() { t.name.clone() } else { t.team.clone() };
                                        view! {
                                            <tr data-team=team.clone()>
                                                <td><b>{team.clone()}</b></td>
                                                <td class="num">{format!("{:.4}", t.usage.cpu_core_hours)}</td>
                                                <td class="num hide-sm">{format!("{:.4}", t.usage.cpu_reserved_core_hours)}</td>
                                                <td class="num">{format!("{:.4}", t.usage.mem_gib_hours)}</td>
                                                <td class="num hide-sm">{format::bytes_u(t.usage.io_read_bytes + t.usage.io_write_bytes)}</td>
                                                <td class="num" data-testid="team-cost" data-value=t.cost.total.to_string()><b>{format::money(t.cost.total, &cur)}</b></td>
                                                <td class="nowrap"><a href=csv download="" data-testid="csv">"CSV"</a>" · "<a href=json target="_blank">"JSON"</a></td>
                                            </tr>
                                        }
                                    }).collect_view()}
                                </tbody>
                            </table>
                        </div>
                    }.into_any() }}
                </section>
                {(!r.teams.is_empty()).then(|| view! { <CostOverTime month=m.clone() teams=r.teams.iter().map(|t| if t.team.is_empty() { t.name.clone() } else { t.team.clone() }).collect() /> })}
            }
        })}
        <div class="grid-2">
            <RateCardEditor admin=session.is_admin() />
            <Teams admin=session.is_admin() />
        </div>
    }
}

/// Cost per day of the month, one line per team (up to four), from one query per day.
#[component]
fn CostOverTime(month: String, teams: Vec<String>) -> impl IntoView {
    let teams: Vec<String> = teams.into_iter().take(4).collect();
    let data = RwSignal::new(None::<ChartData>);
    let error = RwSignal::new(None::<api::ApiFailure>);
    let m = month.clone();
    leptos::task::spawn_local(async move {
        let start = js_sys::Date::parse(&format!("{m}-01T00:00:00"));
        let today = api::now_ms();
        let mut per_team: Vec<Vec<(f64, f64)>> = vec![Vec::new(); teams.len()];
        for d in 0..31 {
            let day = start + f64::from(d) * 86_400_000.0;
            if day > today || !format::datetime_ms(day).starts_with(&m) {
                break;
            }
            let from = format::datetime_ms(day)[..10].to_owned();
            let to = format::datetime_ms(day + 86_400_000.0)[..10].to_owned();
            match api::get::<BillingReport>(&format!("/api/v1/billing?from={from}&to={to}")).await {
                Ok(r) => {
                    for (i, t) in teams.iter().enumerate() {
                        let v = r
                            .teams
                            .iter()
                            .find(|l| &l.team == t || &l.name == t)
                            .map_or(0.0, |l| l.cost.total);
                        per_team[i].push((day, v));
                    }
                }
                Err(e) => {
                    error.set(Some(e));
                    return;
                }
            }
        }
        let classes = ["s1", "s2", "s3", "s4"];
        let end = start + 31.0 * 86_400_000.0;
        data.set(Some(ChartData {
            series: teams
                .iter()
                .zip(per_team)
                .enumerate()
                .map(|(i, (t, p))| Series {
                    name: t.clone(),
                    class: classes[i % 4],
                    points: p,
                    area: i == 0,
                })
                .collect(),
            from: start,
            to: end.min(today.max(start + 86_400_000.0)),
            day_ticks: true,
            ..Default::default()
        }));
    });
    view! {
        <section class="card">
            {move || match (data.get(), error.get()) {
                (_, Some(e)) => view! { <ErrorBox error=e /> }.into_any(),
                (None, None) => view! { <crate::components::ui::Loading what="cost per day" /> }.into_any(),
                (Some(d), None) => view! { <LineChart data=Signal::derive(move || d.clone()) unit=unit_money label="Cost per day" testid="chart-cost" /> }.into_any(),
            }}
        </section>
    }
}

#[component]
fn RateCardEditor(admin: bool) -> impl IntoView {
    let rates = poll(0, || api::get::<RateCards>("/api/v1/billing/rates"));
    let errors = RwSignal::new(Vec::<(String, String)>::new());
    let saved = RwSignal::new(false);
    view! {
        <section class="card" data-testid="rate-card">
            <h2>"Rate card"</h2>
            {polled_view(rates, "the rate card", move |r: RateCards| {
                let c = r.current.clone();
                let cur = RwSignal::new(c.currency.clone());
                let f = |v: f64| RwSignal::new(v.to_string());
                let (a, b, d, e, g) = (f(c.cpu_core_hour_used), f(c.cpu_core_hour_reserved), f(c.mem_gib_hour_used), f(c.mem_gib_hour_reserved), f(c.io_gib));
                let save = Action::new_local(move |card: &RateCard| {
                    let card = card.clone();
                    async move { api::put::<_, RateCard>("/api/v1/billing/rates", &card).await }
                });
                Effect::new(move |_| match save.value().get() {
                    Some(Ok(_)) => { errors.set(vec![]); saved.set(true); rates.refresh(); }
                    Some(Err(e)) => errors.set(field_errors(&e)),
                    None => {}
                });
                let versions = r.versions.len();
                view! {
                    <form on:submit=move |ev| {
                        ev.prevent_default();
                        saved.set(false);
                        let mut bad = Vec::new();
                        let mut num = |name: &str, s: RwSignal<String>| s.get_untracked().trim().parse::<f64>().unwrap_or_else(|_| { bad.push((name.to_owned(), "a price is a number".to_owned())); 0.0 });
                        let card = RateCard {
                            effective_from: None,
                            currency: cur.get_untracked().trim().to_owned(),
                            cpu_core_hour_used: num("cpu_core_hour_used", a),
                            cpu_core_hour_reserved: num("cpu_core_hour_reserved", b),
                            mem_gib_hour_used: num("mem_gib_hour_used", d),
                            mem_gib_hour_reserved: num("mem_gib_hour_reserved", e),
                            io_gib: num("io_gib", g),
                        };
                        if bad.is_empty() { save.dispatch(card); } else { errors.set(bad); }
                    }>
                        <fieldset disabled=!admin>
                            <div class="form-grid">
                                <Field label="Currency" name="currency" value=cur errors=errors />
                                <Field label="CPU core·hour used" name="cpu_core_hour_used" value=a errors=errors />
                                <Field label="CPU core·hour reserved" name="cpu_core_hour_reserved" value=b errors=errors />
                                <Field label="Memory GiB·hour used" name="mem_gib_hour_used" value=d errors=errors />
                                <Field label="Memory GiB·hour reserved" name="mem_gib_hour_reserved" value=e errors=errors />
                                <Field label="IO per GiB" name="io_gib" value=g errors=errors />
                            </div>
                        </fieldset>
                        <FormError errors=errors known=&["currency", "cpu_core_hour_used", "cpu_core_hour_reserved", "mem_gib_hour_used", "mem_gib_hour_reserved", "io_gib"] />
                        <p class="muted small">{format!("{versions} version(s); a change prices usage from the next full hour on, never the past.")}</p>
                        {admin.then(|| view! {
                            <div class="btn-row">
                                <button class="btn primary" type="submit" data-testid="save-rates" disabled=move || save.pending().get()>"Save rate card"</button>
                                <Show when=move || saved.get()><span class="yes" role="status">"Saved"</span></Show>
                            </div>
                        })}
                    </form>
                }
            })}
        </section>
    }
}

#[component]
fn Teams(admin: bool) -> impl IntoView {
    let teams = poll(0, || api::get::<Vec<wire::Team>>("/api/v1/teams"));
    let name = RwSignal::new(String::new());
    let description = RwSignal::new(String::new());
    let errors = RwSignal::new(Vec::<(String, String)>::new());
    let create = Action::new_local(move |_: &()| {
        let body = wire::TeamCreate {
            name: name.get_untracked().trim().to_owned(),
            description: description.get_untracked(),
        };
        async move { api::post::<_, wire::Team>("/api/v1/teams", &body).await }
    });
    Effect::new(move |_| match create.value().get() {
        Some(Ok(_)) => {
            errors.set(vec![]);
            name.set(String::new());
            description.set(String::new());
            teams.refresh();
        }
        Some(Err(e)) => errors.set(field_errors(&e)),
        None => {}
    });
    view! {
        <section class="card">
            <h2>"Teams"</h2>
            {polled_view(teams, "teams", |list: Vec<wire::Team>| {
                if list.is_empty() {
                    return view! { <p class="empty-state">"No teams yet."</p> }.into_any();
                }
                view! {
                    <table class="table" data-testid="teams-table">
                        <thead><tr><th>"Team"</th><th>"Members"</th></tr></thead>
                        <tbody>{list.into_iter().map(|t| view! {
                            <tr><td><b><a href=format!("/teams/{}", api::enc(&t.name)) data-testid="team-link">{t.name.clone()}</a></b><br /><small class="muted">{t.description.clone()}</small></td>
                                <td>{if t.members.is_empty() { "–".to_owned() } else { t.members.join(", ") }}</td></tr>
                        }).collect_view()}</tbody>
                    </table>
                }.into_any()
            })}
            {admin.then(|| view! {
                <h3>"New team"</h3>
                <form class="inline-form" on:submit=move |ev| { ev.prevent_default(); create.dispatch(()); }>
                    <Field label="Name" name="name" value=name errors=errors placeholder="team-a" />
                    <Field label="Description" name="description" value=description errors=errors />
                    <button class="btn primary" type="submit" disabled=move || create.pending().get()>"Create"</button>
                </form>
                <FormError errors=errors known=&["name", "description"] />
            })}
        </section>
    }
}
