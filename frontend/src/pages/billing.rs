//! Teams and billing: totals per team, container and label for a month (a `key=value` label
//! filter narrows all of them), cost over time, the rate card (the version in force and its
//! effective date, every version, and the admins' form for a new one from a chosen hour), a
//! notice when no rate card priced the month (every cost is 0.00 then), CSV statements, and the
//! teams themselves.

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

/// A label filter as typed: empty (no filter) or `key=value` with a key.
fn check_label(v: &str) -> Result<Option<String>, String> {
    let v = v.trim();
    if v.is_empty() {
        return Ok(None);
    }
    match v.split_once('=') {
        Some((k, _)) if !k.trim().is_empty() => Ok(Some(v.to_owned())),
        _ => Err(format!("{v:?} is not key=value")),
    }
}

/// Labels as `k=v` chips.
fn label_chips(labels: &std::collections::BTreeMap<String, String>) -> impl IntoView {
    if labels.is_empty() {
        return view! { <span class="muted">"–"</span> }.into_any();
    }
    view! {
        <span class="chips">{labels.iter().map(|(k, v)| view! { <span class="chip">{format!("{k}={v}")}</span> }).collect_view()}</span>
    }
    .into_any()
}

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
    // The label filter in force (`key=value`), and the text being typed with its error.
    let label = RwSignal::new(None::<String>);
    let label_text = RwSignal::new(String::new());
    let label_errors = RwSignal::new(Vec::<(String, String)>::new());
    let report = poll(15_000, move || {
        let m = month.get();
        let mut q = format!("/api/v1/billing?from={m}&to={}", next_month(&m));
        if let Some(l) = label.get() {
            q.push_str(&format!("&label={}", api::enc(&l)));
        }
        async move { api::get::<BillingReport>(&q).await }
    });
    let apply_label = move |v: String| match check_label(&v) {
        Ok(l) => {
            label_errors.set(vec![]);
            label_text.set(l.clone().unwrap_or_default());
            label.set(l);
        }
        Err(e) => label_errors.set(vec![("label".to_owned(), e)]),
    };
    // The session may still be loading when the page mounts: read it reactively.
    let admin = Signal::derive(move || session.is_admin());
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
        <form class="inline-form" data-testid="label-filter" on:submit=move |ev| { ev.prevent_default(); apply_label(label_text.get_untracked()); }>
            <Field label="Only containers labelled" name="label" value=label_text errors=label_errors placeholder="key=value" />
            <button class="btn" type="submit" data-testid="apply-label">"Filter"</button>
            <Show when=move || label.with(Option::is_some)>
                <button class="btn" type="button" data-testid="clear-label" on:click=move |_| apply_label(String::new())>"Clear"</button>
            </Show>
        </form>
        {polled_view(report, "the bill", move |r: BillingReport| {
            let cur = r.currency.clone();
            let m = month.get_untracked();
            view! {
                {(!r.rates_set).then(|| view! {
                    <div class="notice" role="status" data-testid="rates-unset" style="border-left-color: var(--warn)">
                        <b>"No rate card is set"</b>" for this month: every cost shows as 0.00. "
                        {if admin.get() {
                            view! { <a href="#rate-card" data-testid="set-rates-link" on:click=move |ev| { ev.prevent_default(); focus_rate_card(); }>"Set the rate card →"</a> }.into_any()
                        } else {
                            view! { <span>"An admin sets it on this page (or with "<code>"corral rates set"</code>")."</span> }.into_any()
                        }}
                    </div>
                })}
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
                <PerContainer r=r.clone() />
                <PerLabel r=r.clone() on_pick=Callback::new(move |kv: String| apply_label(kv)) />
                {(!r.teams.is_empty()).then(|| view! { <CostOverTime month=m.clone() teams=r.teams.iter().map(|t| if t.team.is_empty() { t.name.clone() } else { t.team.clone() }).collect() /> })}
            }
        })}
        <div class="grid-2">
            <RateCardEditor admin=admin on_saved=Callback::new(move |_| report.refresh()) />
            <Teams admin=admin />
        </div>
    }
}

/// Scrolls to the rate card form and puts the cursor in its first field.
fn focus_rate_card() {
    use wasm_bindgen::JsCast;
    let Some(doc) = web_sys::window().and_then(|w| w.document()) else {
        return;
    };
    if let Some(card) = doc.get_element_by_id("rate-card") {
        card.scroll_into_view();
    }
    if let Some(input) = doc
        .get_element_by_id("f-currency")
        .and_then(|e| e.dyn_into::<web_sys::HtmlElement>().ok())
    {
        let _ = input.focus();
    }
}

/// One line per container (with its team and labels) and the total.
#[component]
fn PerContainer(r: BillingReport) -> impl IntoView {
    let cur = r.currency.clone();
    view! {
        <section class="card">
            <h2>"Per container"</h2>
            {if r.containers.is_empty() {
                view! { <p class="empty-state">"No container was metered in this period."</p> }.into_any()
            } else { view! {
                <div class="table-wrap">
                    <table class="table" data-testid="containers-bill">
                        <thead><tr><th>"Container"</th><th>"Team"</th><th class="hide-sm">"Labels"</th><th class="num">"CPU core·h"</th>
                            <th class="num">"Memory GiB·h"</th><th class="num hide-sm">"IO"</th><th class="num">"Cost"</th></tr></thead>
                        <tbody>
                            {r.containers.iter().map(|c| view! {
                                <tr data-container=c.name.clone()>
                                    <td><b>{c.name.clone()}</b></td>
                                    <td>{c.team.clone()}</td>
                                    <td class="hide-sm">{label_chips(&c.labels)}</td>
                                    <td class="num">{format!("{:.4}", c.usage.cpu_core_hours)}</td>
                                    <td class="num">{format!("{:.4}", c.usage.mem_gib_hours)}</td>
                                    <td class="num hide-sm">{format::bytes_u(c.usage.io_read_bytes + c.usage.io_write_bytes)}</td>
                                    <td class="num" data-testid="container-cost" data-value=c.cost.total.to_string()>{format::money(c.cost.total, &cur)}</td>
                                </tr>
                            }).collect_view()}
                        </tbody>
                        <tfoot><tr data-testid="containers-total">
                            <th colspan="3">{format!("Total, {} container line(s)", r.containers.len())}</th>
                            <th class="num">{format!("{:.4}", r.total.usage.cpu_core_hours)}</th>
                            <th class="num">{format!("{:.4}", r.total.usage.mem_gib_hours)}</th>
                            <th class="num hide-sm">{format::bytes_u(r.total.usage.io_read_bytes + r.total.usage.io_write_bytes)}</th>
                            <th class="num" data-value=r.total.cost.total.to_string()>{format::money(r.total.cost.total, &cur)}</th>
                        </tr></tfoot>
                    </table>
                </div>
            }.into_any() }}
        </section>
    }
}

/// One line per `key=value` label; picking one filters the whole page by it.
#[component]
fn PerLabel(r: BillingReport, on_pick: Callback<String>) -> impl IntoView {
    let cur = r.currency.clone();
    let count = |kv: &str| {
        r.containers
            .iter()
            .filter(|c| c.labels.iter().any(|(k, v)| format!("{k}={v}") == kv))
            .count()
    };
    view! {
        <section class="card">
            <h2>"Per label"</h2>
            {if r.labels.is_empty() {
                view! { <p class="empty-state">"No labelled container was metered in this period."</p> }.into_any()
            } else { view! {
                <div class="table-wrap">
                    <table class="table" data-testid="labels-bill">
                        <thead><tr><th>"Label"</th><th class="num">"Containers"</th><th class="num">"CPU core·h"</th>
                            <th class="num">"Memory GiB·h"</th><th class="num hide-sm">"IO"</th><th class="num">"Cost"</th></tr></thead>
                        <tbody>
                            {r.labels.iter().map(|l| {
                                let kv = l.name.clone();
                                view! {
                                    <tr data-label=kv.clone()>
                                        <td><button class="btn small" type="button" title="Show only these containers"
                                            on:click={ let kv = kv.clone(); move |_| on_pick.run(kv.clone()) }>{kv.clone()}</button></td>
                                        <td class="num">{count(&kv)}</td>
                                        <td class="num">{format!("{:.4}", l.usage.cpu_core_hours)}</td>
                                        <td class="num">{format!("{:.4}", l.usage.mem_gib_hours)}</td>
                                        <td class="num hide-sm">{format::bytes_u(l.usage.io_read_bytes + l.usage.io_write_bytes)}</td>
                                        <td class="num" data-testid="label-cost" data-value=l.cost.total.to_string()>{format::money(l.cost.total, &cur)}</td>
                                    </tr>
                                }
                            }).collect_view()}
                        </tbody>
                    </table>
                </div>
                <p class="muted small">"A container counts under each of its labels, so these lines need not add up to the total."</p>
            }.into_any() }}
        </section>
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

/// The rate card: the version in force (and since when), every version with its status, and
/// for admins a form for a new version from a chosen hour (empty: the next full hour).
#[component]
fn RateCardEditor(admin: Signal<bool>, on_saved: Callback<()>) -> impl IntoView {
    let rates = poll(0, || api::get::<RateCards>("/api/v1/billing/rates"));
    let errors = RwSignal::new(Vec::<(String, String)>::new());
    let saved = RwSignal::new(None::<RateCard>);
    view! {
        <section class="card" id="rate-card" data-testid="rate-card">
            <h2>"Rate card"</h2>
            {polled_view(rates, "the rate card", move |r: RateCards| {
                let c = r.current.clone();
                let cur = RwSignal::new(c.currency.clone());
                let f = |v: f64| RwSignal::new(v.to_string());
                let (a, b, d, e, g) = (f(c.cpu_core_hour_used), f(c.cpu_core_hour_reserved), f(c.mem_gib_hour_used), f(c.mem_gib_hour_reserved), f(c.io_gib));
                let from = RwSignal::new(String::new());
                let save = Action::new_local(move |card: &RateCard| {
                    let card = card.clone();
                    async move { api::put::<_, RateCard>("/api/v1/billing/rates", &card).await }
                });
                Effect::new(move |_| match save.value().get() {
                    Some(Ok(card)) => { errors.set(vec![]); saved.set(Some(card)); rates.refresh(); on_saved.run(()); }
                    Some(Err(e)) => errors.set(field_errors(&e)),
                    None => {}
                });
                let current_from = c.effective_from.clone();
                view! {
                    <p data-testid="rates-in-force">{match &current_from {
                        Some(t) => view! { "In force since " <b data-testid="rates-effective">{t.clone()}</b> {format!(" ({}).", c.currency)} }.into_any(),
                        None => view! { <span>"No rate card in force: everything is priced at 0 (" {c.currency.clone()} ")."</span> }.into_any(),
                    }}</p>
                    <Versions versions=r.versions.clone() current=current_from />
                    <form on:submit=move |ev| {
                        ev.prevent_default();
                        saved.set(None);
                        let mut bad = Vec::new();
                        let mut num = |name: &str, s: RwSignal<String>| s.get_untracked().trim().parse::<f64>().unwrap_or_else(|_| { bad.push((name.to_owned(), "a price is a number".to_owned())); 0.0 });
                        let when = from.get_untracked().trim().to_owned();
                        let card = RateCard {
                            effective_from: (!when.is_empty()).then_some(when),
                            currency: cur.get_untracked().trim().to_owned(),
                            cpu_core_hour_used: num("cpu_core_hour_used", a),
                            cpu_core_hour_reserved: num("cpu_core_hour_reserved", b),
                            mem_gib_hour_used: num("mem_gib_hour_used", d),
                            mem_gib_hour_reserved: num("mem_gib_hour_reserved", e),
                            io_gib: num("io_gib", g),
                        };
                        if bad.is_empty() { save.dispatch(card); } else { errors.set(bad); }
                    }>
                        <fieldset disabled=move || !admin.get()>
                            <Show when=move || admin.get()><h3>"New version"</h3></Show>
                            <div class="form-grid">
                                <Field label="Effective from (UTC)" name="effective_from" value=from errors=errors
                                    placeholder="YYYY-MM-DDTHH:00Z" hint="Empty: the next full hour. Never in the past." />
                                <Field label="Currency" name="currency" value=cur errors=errors />
                                <Field label="CPU core·hour used" name="cpu_core_hour_used" value=a errors=errors />
                                <Field label="CPU core·hour reserved" name="cpu_core_hour_reserved" value=b errors=errors />
                                <Field label="Memory GiB·hour used" name="mem_gib_hour_used" value=d errors=errors />
                                <Field label="Memory GiB·hour reserved" name="mem_gib_hour_reserved" value=e errors=errors />
                                <Field label="IO per GiB" name="io_gib" value=g errors=errors />
                            </div>
                        </fieldset>
                        <FormError errors=errors known=&["effective_from", "currency", "cpu_core_hour_used", "cpu_core_hour_reserved", "mem_gib_hour_used", "mem_gib_hour_reserved", "io_gib"] />
                        <p class="muted small">"A new version prices usage from its hour on, never the past; one at the same hour as a scheduled version replaces it."</p>
                        {move || admin.get().then(|| view! {
                            <div class="btn-row">
                                <button class="btn primary" type="submit" data-testid="save-rates" disabled=move || save.pending().get()>"Save rate card"</button>
                                {move || saved.get().map(|s| view! {
                                    <span class="yes" role="status" data-testid="rates-saved">
                                        {format!("Saved: in force from {}", s.effective_from.unwrap_or_default())}
                                    </span>
                                })}
                            </div>
                        })}
                    </form>
                }
            })}
        </section>
    }
}

/// Every saved version, newest first: in force, scheduled or past.
#[component]
fn Versions(versions: Vec<RateCard>, current: Option<String>) -> impl IntoView {
    // The zero card (no effective date) is not a saved version.
    let mut saved: Vec<RateCard> = versions
        .into_iter()
        .filter(|v| v.effective_from.is_some())
        .collect();
    if saved.is_empty() {
        return view! { <p class="muted" data-testid="rate-versions-none">"No version saved yet."</p> }.into_any();
    }
    saved.reverse();
    let n = saved.len();
    view! {
        <details class="rate-versions" open={n <= 3}>
            <summary>{format!("{n} version(s)")}</summary>
            <div class="table-wrap">
                <table class="table" data-testid="rate-versions">
                    <thead><tr><th>"Effective from"</th><th></th><th>"Prices"</th></tr></thead>
                    <tbody>
                        {saved.into_iter().map(|v| {
                            let at = v.effective_from.clone().unwrap_or_default();
                            // RFC 3339 UTC strings order like the instants they name.
                            let status = match current.as_deref() {
                                Some(c) if at.as_str() == c => "in force",
                                Some(c) if at.as_str() < c => "past",
                                _ => "scheduled",
                            };
                            let prices = format!(
                                "CPU {} used, {} reserved · memory {} used, {} reserved · IO {} per GiB ({})",
                                unit_money(v.cpu_core_hour_used), unit_money(v.cpu_core_hour_reserved),
                                unit_money(v.mem_gib_hour_used), unit_money(v.mem_gib_hour_reserved),
                                unit_money(v.io_gib), v.currency,
                            );
                            view! {
                                <tr data-effective=at.clone() data-status=status>
                                    <td class="nowrap">{at.clone()}</td>
                                    <td><span class="badge" class:warn={status == "scheduled"}>{status}</span></td>
                                    <td class="small">{prices}</td>
                                </tr>
                            }
                        }).collect_view()}
                    </tbody>
                </table>
            </div>
        </details>
    }
    .into_any()
}

#[component]
fn Teams(admin: Signal<bool>) -> impl IntoView {
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
            {move || admin.get().then(|| view! {
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
