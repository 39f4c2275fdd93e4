//! One team as a resource pool: its ceilings as the kernel enforces them, usage now, its
//! history charts against ceilings and budget (`history.rs`), its budget and, for admins, the
//! budget form and ladder editor (`budget.rs`), the right-sizing card of its ceilings (apply:
//! admins), statement links, its containers and members,
//! and (admins) the ceilings form, which sends only the fields changed (an emptied field or
//! `max` removes that limit), and the membership editor (`members.rs`).

mod budget;
mod history;
mod members;

use leptos::prelude::*;
use leptos_router::hooks::use_params_map;
use serde_json::{Map, Value, json};

use crate::{
    api,
    components::{
        poll::{clock, poll},
        recommend::RightSizing,
        ui::{Field, FormError, Freshness, field_errors, polled_view},
    },
    format,
    session::use_session,
};

/// One knob of the form: label, wire field, how it shows and parses.
#[derive(Clone, Copy)]
enum Kind {
    Cpus,
    Size,
    Count,
    List,
}

const KNOBS: [(&str, &str, Kind, &str); 11] = [
    ("CPUs", "cpus", Kind::Cpus, "e.g. 1.5"),
    ("Memory max", "memory_max", Kind::Size, "e.g. 2G"),
    ("Memory high", "memory_high", Kind::Size, "cgroup v2"),
    ("Memory low", "memory_low", Kind::Size, "protection"),
    (
        "Memory min",
        "memory_min",
        Kind::Size,
        "hard protection, cgroup v2",
    ),
    ("Swap", "swap_max", Kind::Size, "on top of memory"),
    ("Tasks", "pids_max", Kind::Count, "processes and threads"),
    (
        "CPU weight",
        "cpu_weight",
        Kind::Count,
        "1–10000, default 100",
    ),
    ("CPU list", "cpuset_cpus", Kind::List, "e.g. 0-1"),
    ("Memory nodes", "cpuset_mems", Kind::List, "e.g. 0"),
    (
        "IO weight",
        "io_weight",
        Kind::Count,
        "1–10000, default 100",
    ),
];

/// A limit as the form shows it (empty: no limit).
fn shown(v: &Value, kind: Kind) -> String {
    match (v, kind) {
        (Value::Null, _) => String::new(),
        (Value::Number(n), Kind::Size) => n.as_u64().map(format::size_text).unwrap_or_default(),
        (Value::Number(n), _) => n.to_string(),
        (Value::String(s), _) => s.clone(),
        (other, _) => other.to_string(),
    }
}

/// A limit as the table shows it.
fn display(v: &Value, kind: Kind) -> String {
    match (v, kind) {
        (Value::Null, _) => "no limit".to_owned(),
        (Value::Number(n), Kind::Size) => n.as_u64().map(format::bytes_u).unwrap_or_default(),
        (v, k) => shown(v, k),
    }
}

/// The form's text as a patch value: `null` removes the limit.
fn parse(field: &str, text: &str, kind: Kind) -> Result<Value, (String, String)> {
    let t = text.trim();
    if t.is_empty() || t.eq_ignore_ascii_case("max") {
        return Ok(Value::Null);
    }
    let bad = |m: String| (field.to_owned(), m);
    match kind {
        Kind::Cpus => t
            .parse::<f64>()
            .map(|v| json!(v))
            .map_err(|_| bad(format!("{t:?} is not a number of CPUs, e.g. 1.5"))),
        Kind::Size => format::parse_size(t).map(|v| json!(v)).map_err(bad),
        Kind::Count => t
            .parse::<u64>()
            .map(|v| json!(v))
            .map_err(|_| bad(format!("{t:?} is not a whole number"))),
        Kind::List => Ok(json!(t)),
    }
}

#[component]
pub fn TeamDetail() -> impl IntoView {
    let params = use_params_map();
    let name = Memo::new(move |_| params.with(|p| p.get("name").unwrap_or_default()));
    // Read reactively: opened directly (a reload, a link), the page renders before the
    // session is known, and the admins' forms must appear once it is.
    let session = use_session();
    let admin = move || session.is_admin();
    let now = clock();
    let team = poll(5000, move || {
        let p = format!("/api/v1/teams/{}", api::enc(&name.get()));
        async move { api::get::<wire::TeamDetail>(&p).await }
    });
    view! {
        <div class="page" data-testid="team-page">
            <div class="page-head">
                <h1>"Team " {move || name.get()}</h1>
                <Freshness poll=team now=now />
                {move || team.data.with(|t| t.as_ref().and_then(|t| t.budget.as_ref()).and_then(budget::step_badge))
                    .map(|(class, text)| view! { <span class=class data-testid="team-budget-badge">{text}</span> })}
            </div>
            {move || { let n = name.get(); view! { <history::TeamCharts name=n team=team /> } }}
            {polled_view(team, "the team", move |t: wire::TeamDetail| {
                let limits = serde_json::to_value(&t.limits).unwrap_or(Value::Null);
                let rows = KNOBS.iter().map(|(label, field, kind, _)| {
                    let v = limits.get(*field).cloned().unwrap_or(Value::Null);
                    view! { <tr data-knob=*field><td>{*label}</td><td>{display(&v, *kind)}</td></tr> }
                }).collect_view();
                let io = (!t.limits.io_max.is_empty()).then(|| view! {
                    <tr data-knob="io_max"><td>"IO limits"</td><td>{t.limits.io_max.join("; ")}</td></tr>
                });
                let u = t.usage.clone();
                view! {
                    <section class="card" data-testid="team-ceilings">
                        <h2>"Pooled ceilings"</h2>
                        <p class="muted">"What the kernel enforces on the team's cgroup, over all its containers together."</p>
                        <table class="table"><tbody>{rows}{io}</tbody></table>
                    </section>
                    <section class="card" data-testid="team-usage">
                        <h2>"Usage now"</h2>
                        <table class="table"><tbody>
                            <tr><td>"CPU"</td><td>{u.cpu_cores.map_or("–".to_owned(), |c| format!("{} cores", format::cores(c)))}</td></tr>
                            <tr><td>"CPU time"</td><td>{u.cpu_usage_usec.map_or("–".to_owned(), |us| format::duration(us as f64 / 1e6))}</td></tr>
                            <tr><td>"Memory"</td><td>{u.memory_bytes.map_or("–".to_owned(), format::bytes_u)}</td></tr>
                            <tr><td>"Tasks"</td><td>{u.pids.map_or("–".to_owned(), |p| p.to_string())}</td></tr>
                            <tr><td>"Budget"</td><td data-testid="usage-budget">{t.budget.as_ref().map_or("none".to_owned(), |b| format!("{:.0} % used", b.percent))}</td></tr>
                        </tbody></table>
                        <h3>"Containers"</h3>
                        {if t.containers.is_empty() {
                            view! { <p class="empty-state">"No containers."</p> }.into_any()
                        } else {
                            view! { <ul>{t.containers.iter().map(|c| view! {
                                <li><a href=format!("/containers/{}", api::enc(c))>{c.clone()}</a></li>
                            }).collect_view()}</ul> }.into_any()
                        }}
                        <h3>"Members"</h3>
                        <p>{if t.members.is_empty() { "–".to_owned() } else { t.members.join(", ") }}</p>
                    </section>
                    <budget::BudgetPanel budget=t.budget.clone() />
                    <Statements team=t.name.clone() />
                }
            })}
            {move || {
                let path = format!("/api/v1/teams/{}", api::enc(&name.get()));
                view! { <RightSizing path=path can_apply=Signal::derive(admin) on_applied=Callback::new(move |_| team.refresh()) /> }
            }}
            <Show when=admin>
                <members::Members team=name.get_untracked() on_changed=Callback::new(move |_| team.refresh()) />
                <budget::BudgetForm name=name.get_untracked() on_saved=Callback::new(move |_| team.refresh()) />
                <CeilingsForm name=name.get_untracked() on_saved=Callback::new(move |_| team.refresh()) />
            </Show>
        </div>
    }
}

/// Links to the team's monthly statement (JSON and CSV) for this month and the last.
#[component]
fn Statements(team: String) -> impl IntoView {
    let links = [
        ("This month", format::this_month()),
        ("Last month", format::last_month()),
    ]
    .into_iter()
    .map(|(label, month)| {
        let json = format!("/api/v1/billing/statements/{}/{}", api::enc(&team), month);
        let csv = format!("{json}?format=csv");
        view! {
            <li data-month=month.clone()>{label}" ("{month.clone()}"): "
                <a href=json target="_blank" data-testid="statement-json">"JSON"</a>" · "
                <a href=csv download="" data-testid="statement-csv">"CSV"</a></li>
        }
    })
    .collect_view();
    view! {
        <section class="card" data-testid="team-statements">
            <h2>"Statements"</h2>
            <ul>{links}</ul>
        </section>
    }
}

/// The admin's form: filled with the kernel's values (read once, and again after a change, so
/// the page's polling never resets what is being typed); only changed fields are sent.
#[component]
fn CeilingsForm(name: String, on_saved: Callback<()>) -> impl IntoView {
    let path = format!("/api/v1/teams/{}/limits", api::enc(&name));
    let current = poll(0, {
        let p = path.clone();
        move || {
            let p = p.clone();
            async move { api::get::<Value>(&p).await }
        }
    });
    let errors = RwSignal::new(Vec::<(String, String)>::new());
    let saved = RwSignal::new(false);
    let save = Action::new_local(move |body: &Map<String, Value>| {
        let body = Value::Object(body.clone());
        let p = path.clone();
        async move { api::patch::<_, Value>(&p, &body).await }
    });
    Effect::new(move |_| match save.value().get() {
        Some(Ok(_)) => {
            errors.set(vec![]);
            saved.set(true);
            current.refresh();
            on_saved.run(());
        }
        Some(Err(e)) => {
            saved.set(false);
            errors.set(field_errors(&e));
        }
        None => {}
    });
    view! {
        <section class="card" data-testid="team-limits-form">
            <h2>"Change ceilings"</h2>
            {polled_view(current, "the current ceilings", move |limits: Value| {
                let fields: Vec<(&'static str, Kind, String, RwSignal<String>)> = KNOBS
                    .iter()
                    .map(|(_, field, kind, _)| {
                        let v = shown(&limits.get(*field).cloned().unwrap_or(Value::Null), *kind);
                        (*field, *kind, v.clone(), RwSignal::new(v))
                    })
                    .collect();
                let inputs = KNOBS
                    .iter()
                    .zip(fields.iter())
                    .map(|((label, field, _, hint), (_, _, _, value))| {
                        view! { <Field label=*label name=*field value=*value errors=errors hint=*hint /> }
                    })
                    .collect_view();
                view! {
                    <form on:submit=move |ev| {
                        ev.prevent_default();
                        saved.set(false);
                        let mut body = Map::new();
                        let mut errs = Vec::new();
                        for (field, kind, initial, value) in &fields {
                            let now = value.get_untracked();
                            if now.trim() == initial.trim() {
                                continue;
                            }
                            match parse(field, &now, *kind) {
                                Ok(v) => { body.insert((*field).to_owned(), v); }
                                Err(e) => errs.push(e),
                            }
                        }
                        if !errs.is_empty() {
                            errors.set(errs);
                        } else if body.is_empty() {
                            errors.set(vec![(String::new(), "nothing changed".to_owned())]);
                        } else {
                            errors.set(vec![]);
                            save.dispatch(body);
                        }
                    }>
                        <p class="muted">"Filled with what the kernel enforces now. Empty or max: no limit. Only the fields you change are sent."</p>
                        <div class="form-grid">{inputs}</div>
                        <FormError errors=errors known=&["cpus", "memory_max", "memory_high", "memory_low", "memory_min", "swap_max", "pids_max", "cpu_weight", "cpuset_cpus", "cpuset_mems", "io_weight"] />
                        <div class="btn-row">
                            <button class="btn primary" type="submit" data-testid="apply-team-limits" disabled=move || save.pending().get()>
                                {move || if save.pending().get() { "Applying…" } else { "Apply ceilings" }}
                            </button>
                            <Show when=move || saved.get()><span class="yes" role="status" data-testid="team-limits-saved">"Applied"</span></Show>
                        </div>
                    </form>
                }
            })}
        </section>
    }
}
