//! Fleet (issue 19), on a hub (`corral serve --hub`): every host with its heartbeat (stale
//! after the hub's `--stale-after`), the backlog waiting to ship and recent usage; this
//! month's statement across hosts per host and team, per team and in total; and charts of
//! the month's hourly CPU and memory per team across hosts, from `GET /api/v1/fleet/*`. On a
//! daemon that is not a hub the page says how to start one. Every daemon shows its own
//! shipping to the shared ledger (`GET /api/v1/host`).

use leptos::prelude::*;

use crate::{
    api,
    components::{
        chart::{ChartData, LineChart, Series, unit_bytes, unit_cores},
        poll::poll,
        ui::polled_view,
    },
};

/// The month's hourly series per team across hosts, `y` of each point: an hour's core-hours
/// are its mean cores, its GiB-hours its mean GiB.
fn chart(h: &wire::fleet::FleetHistory, y: fn(&wire::fleet::FleetPoint) -> f64) -> ChartData {
    const CLASSES: [&str; 4] = ["s1", "s2", "s3", "s4"];
    let series: Vec<Series> = h
        .series
        .iter()
        .enumerate()
        .map(|(i, s)| Series {
            name: s.key.clone(),
            class: CLASSES[i % CLASSES.len()],
            points: s
                .points
                .iter()
                .map(|p| (js_sys::Date::parse(&p.t), y(p)))
                .collect(),
            area: false,
        })
        .collect();
    ChartData {
        series,
        from: js_sys::Date::parse(&h.from),
        to: js_sys::Date::parse(&h.to).min(js_sys::Date::now()),
        day_ticks: true,
        ..ChartData::default()
    }
}

fn money(micros: i64) -> String {
    format!("{:.2}", micros as f64 / 1e6)
}

fn core_hours(usec: i64) -> String {
    format!("{:.3}", usec as f64 / 3.6e9)
}

#[component]
pub fn Fleet() -> impl IntoView {
    let hosts = poll(10_000, || {
        api::get::<wire::fleet::FleetHosts>("/api/v1/fleet/hosts")
    });
    let statement = poll(30_000, || {
        api::get::<wire::fleet::FleetStatement>("/api/v1/fleet/statement")
    });
    let host = poll(10_000, || api::get::<wire::HostInfo>("/api/v1/host"));
    let history = poll(60_000, || {
        api::get::<wire::fleet::FleetHistory>("/api/v1/fleet/history?by=team")
    });
    let series = move |y: fn(&wire::fleet::FleetPoint) -> f64| {
        Signal::derive(move || {
            history
                .data
                .with(|h| h.as_ref().map(|h| chart(h, y)).unwrap_or_default())
        })
    };
    let cpu = series(|p| p.cpu_core_hours);
    let mem = series(|p| p.mem_gib_hours * 1_073_741_824.0);
    let not_hub = move || {
        hosts
            .error
            .get()
            .is_some_and(|e| e.error.code == "not_a_hub")
    };
    view! {
        <div class="page-head"><h1>"Fleet"</h1></div>
        <Show when=not_hub>
            <p class="notice" data-testid="not-a-hub">
                "This daemon is not a hub. Start one with " <code>"corral serve --hub --ledger postgres://…"</code>
                " and every host with " <code>"--host-id NAME --ledger postgres://…"</code>
                ": the hub then lists the hosts and bills the fleet from the shared ledger."
            </p>
        </Show>
        <section class="card">
            <h2>"This host's shipping"</h2>
            {polled_view(host, "host", |h: wire::HostInfo| match h.ledger {
                None => view! {
                    <p class="muted" data-testid="ledger-off">"This host ships to no shared ledger ("
                        <code>"corral serve --ledger postgres://…"</code>"): its bills are its own."</p>
                }.into_any(),
                Some(l) => {
                    let state = match (&l.last_error, l.connected) {
                        (None, true) => "shipping".to_owned(),
                        (Some(e), _) => format!("unavailable: {e}"),
                        (None, false) => "connecting".to_owned(),
                    };
                    view! {
                        <dl class="facts" data-testid="ledger-state">
                            <div><dt>"Ledger"</dt><dd class="mono">{l.target.clone()}</dd></div>
                            <div><dt>"State"</dt><dd class:warn=l.last_error.is_some()>{state}</dd></div>
                            <div><dt>"Waiting to ship"</dt><dd data-testid="ledger-backlog">{format!("{} rows{}", l.backlog_rows,
                                l.backlog_oldest.clone().map(|t| format!(" since {t}")).unwrap_or_default())}</dd></div>
                            <div><dt>"Shipped"</dt><dd>{format!("{} rows", l.shipped_rows)}</dd></div>
                        </dl>
                        {l.alarm.then(|| view! {
                            <p class="notice warn" role="alert">"The oldest hour waiting is more than 6 hours old: check PostgreSQL."</p>
                        })}
                    }.into_any()
                }
            })}
        </section>
        <Show when=move || !not_hub()>
            <section class="card">
                <h2>"Hosts"</h2>
                {polled_view(hosts, "hosts", |h: wire::fleet::FleetHosts| view! {
                    <div class="table-wrap">
                        <table class="table" data-testid="fleet-hosts">
                            <thead><tr><th>"Host"</th><th>"State"</th><th>"Heartbeat"</th><th>"Containers"</th>
                                <th>"CPU core-h (24 h)"</th><th>"Waiting to ship"</th><th>"Last shipped"</th><th>"API"</th></tr></thead>
                            <tbody>
                                {h.hosts.into_iter().map(|x| {
                                    let state = if x.stale { "stale" } else { "up" };
                                    view! {
                                        <tr data-host=x.host_id.clone() data-state=state>
                                            <td class="mono"><b>{x.host_id.clone()}</b></td>
                                            <td><span class=if x.stale { "badge warn" } else { "badge ok" }>{state}</span></td>
                                            <td class="nowrap">{format!("{:.0} s ago", x.heartbeat_age_s)}</td>
                                            <td>{x.containers}</td>
                                            <td>{format!("{:.3}", x.cpu_core_hours_24h)}</td>
                                            <td>{x.backlog_rows}
                                                {x.backlog_oldest.clone().map(|t| format!(" (since {t})"))}</td>
                                            <td class="nowrap">{x.last_ship_at.clone().unwrap_or_else(|| "-".into())}</td>
                                            <td class="mono">{x.api_url.clone().map(|u| view! {
                                                <a href=u.clone() target="_blank" rel="noopener">{u.clone()}</a>
                                            })}</td>
                                        </tr>
                                    }
                                }).collect_view()}
                            </tbody>
                        </table>
                    </div>
                })}
            </section>
            <section>
                <div class="charts">
                    <div class="card"><LineChart data=cpu unit=unit_cores label="Fleet CPU by team, this month" testid="fleet-chart-cpu" min_max=0.1 /></div>
                    <div class="card"><LineChart data=mem unit=unit_bytes label="Fleet memory by team, this month" testid="fleet-chart-mem" min_max=1_048_576.0 /></div>
                </div>
                <p class="muted small">"Hourly means of every host's containers of each team together, from the shared ledger."</p>
            </section>
            <section class="card">
                <h2>"This month across hosts"</h2>
                {polled_view(statement, "statement", |s: wire::fleet::FleetStatement| {
                    let cur = s.currency.clone();
                    view! {
                        <p class="muted small">{format!("{} – {}, priced with the fleet's rate card ({cur}){}",
                            s.from, s.to, if s.rates_set { "" } else { "; no rate card set: every cost is 0" })}</p>
                        <div class="table-wrap">
                            <table class="table" data-testid="fleet-statement">
                                <thead><tr><th>"Host"</th><th>"Team"</th><th>"CPU core-h"</th><th>"Memory GiB-h"</th><th>"Cost"</th></tr></thead>
                                <tbody>
                                    {s.host_teams.iter().map(|l| view! {
                                        <tr data-host=l.host.clone() data-team=l.team.clone()>
                                            <td class="mono">{l.host.clone()}</td><td>{l.team.clone()}</td>
                                            <td>{core_hours(l.cpu_usec)}</td>
                                            <td>{format!("{:.3}", l.line.usage.mem_gib_hours)}</td>
                                            <td>{money(l.cost_micros)}</td>
                                        </tr>
                                    }).collect_view()}
                                    {s.teams.iter().map(|l| view! {
                                        <tr class="subtotal" data-team-total=l.team.clone()>
                                            <td class="muted">"all hosts"</td><td><b>{l.team.clone()}</b></td>
                                            <td>{core_hours(l.cpu_usec)}</td>
                                            <td>{format!("{:.3}", l.line.usage.mem_gib_hours)}</td>
                                            <td><b>{money(l.cost_micros)}</b></td>
                                        </tr>
                                    }).collect_view()}
                                    <tr class="total" data-testid="fleet-total">
                                        <td><b>"Total"</b></td><td></td>
                                        <td>{core_hours(s.total.cpu_usec)}</td>
                                        <td>{format!("{:.3}", s.total.line.usage.mem_gib_hours)}</td>
                                        <td><b>{format!("{} {cur}", money(s.total.cost_micros))}</b></td>
                                    </tr>
                                </tbody>
                            </table>
                        </div>
                    }
                })}
            </section>
        </Show>
    }
}
