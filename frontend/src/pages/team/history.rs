//! The team page's charts: the pool's history (`GET /api/v1/teams/{name}/history`, the same
//! ranges as a container's page) against its ceilings and its budget, with the budget ladder's
//! step changes (`GET /api/v1/teams/{name}/budget/steps`) as annotations.

use leptos::prelude::*;

use crate::{
    api,
    components::{
        chart::{
            ChartData, Level, LineChart, Mark, Series, cpu_series, memory_series, unit_bytes,
            unit_cores,
        },
        poll::{Polled, clock, poll},
        ui::{ErrorBox, Freshness},
    },
    format,
    types::History,
};

/// Range, tab label, refresh interval (ms): the container page's.
const RANGES: [(&str, &str, i32); 5] = [
    ("15m", "15 min", 3000),
    ("1h", "1 h", 5000),
    ("24h", "24 h", 60_000),
    ("7d", "7 d", 300_000),
    ("30d", "30 d", 600_000),
];

fn range_ms(r: &str) -> f64 {
    match r {
        "15m" => 900_000.0,
        "1h" => 3_600_000.0,
        "24h" => 86_400_000.0,
        "7d" => 7.0 * 86_400_000.0,
        _ => 30.0 * 86_400_000.0,
    }
}

/// Hours of the budget's current period (`[period_start, next_reset)`), when both parse.
fn period_hours(b: &wire::TeamBudget) -> Option<f64> {
    let start = js_sys::Date::parse(&b.period_start);
    let end = js_sys::Date::parse(&b.next_reset);
    let h = (end - start) / 3_600_000.0;
    (h.is_finite() && h > 0.0).then_some(h)
}

/// The budget's lines on the CPU chart: the pace the budget allows (core-hours spread evenly
/// over the period: above it on average, the budget runs out before the reset) and a CPU cap a
/// ladder step put on the team.
fn cpu_budget_levels(b: &wire::TeamBudget) -> Vec<Level> {
    let mut levels = Vec::new();
    if let (Some(ch), Some(h)) = (b.budget.cpu_core_hours, period_hours(b)) {
        levels.push(Level {
            name: "budget pace".into(),
            value: ch / h,
            class: "budget",
        });
    }
    if let Some(c) = b.enforced.cpus {
        levels.push(Level {
            name: "budget cap".into(),
            value: c,
            class: "soft",
        });
    }
    levels
}

/// The budget's lines on the memory chart: GiB-hours spread over the period, and a
/// memory.high a ladder step put on the team.
fn memory_budget_levels(b: &wire::TeamBudget) -> Vec<Level> {
    let mut levels = Vec::new();
    if let (Some(gh), Some(h)) = (b.budget.memory_gib_hours, period_hours(b)) {
        levels.push(Level {
            name: "budget pace".into(),
            value: gh / h * 1_073_741_824.0,
            class: "budget",
        });
    }
    if let Some(m) = b.enforced.memory_high {
        levels.push(Level {
            name: "budget high".into(),
            value: m as f64,
            class: "soft",
        });
    }
    levels
}

fn cpu_levels(t: &wire::TeamDetail) -> Vec<Level> {
    let mut levels: Vec<Level> = t
        .limits
        .cpus
        .map(|c| Level {
            name: "ceiling".into(),
            value: c,
            class: "limit",
        })
        .into_iter()
        .collect();
    levels.extend(t.budget.as_ref().map(cpu_budget_levels).unwrap_or_default());
    levels
}

fn memory_levels(t: &wire::TeamDetail) -> Vec<Level> {
    let mut levels = Vec::new();
    if let Some(m) = t.limits.memory_max {
        levels.push(Level {
            name: "max".into(),
            value: m as f64,
            class: "limit",
        });
    }
    if let Some(m) = t.limits.memory_high {
        levels.push(Level {
            name: "high".into(),
            value: m as f64,
            class: "soft",
        });
    }
    levels.extend(
        t.budget
            .as_ref()
            .map(memory_budget_levels)
            .unwrap_or_default(),
    );
    levels
}

/// A budget step change as an annotation: when, what, why.
fn step_mark(e: &wire::BudgetEvent) -> Mark {
    Mark {
        at: e.ts as f64,
        label: format!(
            "budget {} at {}: {}",
            e.action,
            format::datetime_ms(e.ts as f64),
            e.reason
        ),
    }
}

/// The budget ladder's step changes; none when the route is missing (404), forbidden or
/// empty — the charts never show an error for them.
async fn budget_marks(name: &str) -> Vec<Mark> {
    let p = format!("/api/v1/teams/{}/budget/steps", api::enc(name));
    api::get::<Vec<wire::BudgetEvent>>(&p)
        .await
        .map(|steps| steps.iter().map(step_mark).collect())
        .unwrap_or_default()
}

/// CPU and memory of the team's pool over a chosen range, against its ceilings and budget.
/// `team` is the page's polled team (ceilings and budget state); the charts keep their own
/// history poll, so the page's refresh never redraws them from scratch.
#[component]
pub fn TeamCharts(name: String, team: Polled<wire::TeamDetail>) -> impl IntoView {
    let now = clock();
    let range = RwSignal::new("15m".to_owned());
    let every = Memo::new(move |_| {
        RANGES
            .iter()
            .find(|r| r.0 == range.get())
            .map_or(5000, |r| r.2)
    });
    let path = format!("/api/v1/teams/{}/history", api::enc(&name));
    let history = poll(every, move || {
        let q = format!("{path}?range={}", range.get());
        async move { api::get::<History>(&q).await }
    });
    let marks = poll(30_000, move || {
        let name = name.clone();
        async move { Ok(budget_marks(&name).await) }
    });
    let window = move || {
        let to = now.get().max(history.updated.get());
        (to - range_ms(&range.get()), to)
    };
    let chart = move |series: fn(&History) -> Vec<Series>,
                      levels: fn(&wire::TeamDetail) -> Vec<Level>| {
        Signal::derive(move || {
            let (from, to) = window();
            let h = history.data.get().unwrap_or_default();
            ChartData {
                series: series(&h),
                levels: team
                    .data
                    .with(|t| t.as_ref().map(levels).unwrap_or_default()),
                marks: marks.data.get().unwrap_or_default(),
                from,
                to,
                ..ChartData::default()
            }
        })
    };
    let cpu = chart(cpu_series, cpu_levels);
    let mem = chart(memory_series, memory_levels);
    view! {
        <section class="team-history" data-testid="team-history">
            <div class="toolbar">
                <div class="tabs" role="tablist" aria-label="Range">
                    {RANGES.iter().map(|(r, label, _)| view! {
                        <button role="tab" class="tab" data-range=*r aria-selected=move || (range.get() == *r).to_string()
                            on:click=move |_| range.set((*r).to_owned())>{*label}</button>
                    }).collect_view()}
                </div>
                <Freshness poll=history now=now />
                {move || history.data.get().map(|h| view! {
                    <span class="muted small" data-testid="team-history-points" data-points=h.points.len().to_string()>
                        {format!("{} points, {}s step, {} tier", h.points.len(), h.step_secs, h.tier)}
                    </span>
                })}
            </div>
            {move || history.error.get().filter(|_| history.data.with(Option::is_none)).map(|e| view! { <ErrorBox error=e /> })}
            <div class="charts">
                <div class="card"><LineChart data=cpu unit=unit_cores label="Team CPU" testid="team-chart-cpu" min_max=0.1 /></div>
                <div class="card"><LineChart data=mem unit=unit_bytes label="Team memory" testid="team-chart-mem" min_max=1_048_576.0 /></div>
            </div>
            <p class="muted small">"The team's cgroup over all its containers together. Red: the pooled ceiling; amber: memory.high or a budget step's cap; blue dashed: the budget's pace (its core-hours or GiB-hours spread over the period). Marks: budget steps."</p>
        </section>
    }
}
