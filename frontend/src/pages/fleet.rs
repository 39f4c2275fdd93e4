//! Fleet (issue 19), on a hub (`corral serve --hub`): every host with its heartbeat (stale
//! after the hub's `--stale-after`), the backlog waiting to ship and recent usage; this
//! month's statement across hosts per host and team, per team and in total; and charts of
//! the month's hourly CPU and memory per team across hosts, from `GET /api/v1/fleet/*`. On a
//! daemon that is not a hub the page says how to start one. Every daemon shows its own
//! shipping to the shared ledger (`GET /api/v1/host`).
//!
//! A host picked in the table shows its containers through the hub
//! (`/api/v1/fleet/hosts/{host}/containers`), with their lifecycle actions and the last lines
//! of their output, and, for an admin, the hub's token for that host (set or forget).

use leptos::{either::Either, prelude::*};

use crate::{
    api::{self, ApiFailure},
    components::{
        chart::{ChartData, LineChart, Series, unit_bytes, unit_cores},
        poll::{Polled, poll},
        ui::{ConfirmButton, ErrorBox, Field, FormError, StatusBadge, field_errors, polled_view},
    },
    session::use_session,
    types::Container,
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

/// `/api/v1/fleet/hosts/{host}` followed by `rest`.
fn host_path(host: &str, rest: &str) -> String {
    format!("/api/v1/fleet/hosts/{}{rest}", api::enc(host))
}

/// The failure with its code after the message, e.g. `… (host_unreachable)`.
fn with_code(mut e: ApiFailure) -> ApiFailure {
    e.error.message = format!("{} ({})", e.error.message, e.error.code);
    e
}

/// Runs `action` (`start`, `stop`, …, `remove`) on container `name` of `host` through the hub.
async fn act(host: &str, name: &str, action: &str, force: bool) -> Result<(), ApiFailure> {
    let path = host_path(host, &format!("/containers/{}", api::enc(name)));
    match (action, force) {
        ("remove", true) => api::delete(&format!("{path}?force=true")).await,
        ("remove", false) => api::delete(&path).await,
        _ => api::send_text("POST", &format!("{path}/{action}"), None)
            .await
            .map(drop),
    }
}

/// The buttons that make sense for a host's container's state (as on the containers page).
#[component]
fn HostActions(
    host: String,
    name: String,
    status: String,
    on_done: Callback<Result<(), ApiFailure>>,
) -> impl IntoView {
    let busy = RwSignal::new(false);
    let label = format!("Actions for {name}");
    let run = Callback::new({
        let name = name.clone();
        move |(action, force): (&'static str, bool)| {
            let (host, name) = (host.clone(), name.clone());
            busy.set(true);
            leptos::task::spawn_local(async move {
                let r = act(&host, &name, action, force).await;
                busy.set(false);
                on_done.run(r);
            });
        }
    });
    let btn = move |action: &'static str, label: &'static str| {
        view! {
            <button class="btn small" data-action=action disabled=move || busy.get()
                on:click=move |_| run.run((action, false))>{label}</button>
        }
    };
    let ask = move |action: &'static str, label: &'static str, q: String, force: bool| {
        view! {
            <ConfirmButton label=label confirm=q disabled=busy testid=action
                on_confirm=Callback::new(move |_| run.run((action, force))) />
        }
    };
    let running = status == "running";
    let paused = status == "paused";
    let up = running || paused;
    view! {
        <span class="btn-row" role="group" aria-label=label>
            {(!up).then(|| btn("start", "Start"))}
            {running.then(|| btn("freeze", "Freeze"))}
            {paused.then(|| btn("thaw", "Thaw"))}
            {up.then(|| btn("restart", "Restart"))}
            {up.then(|| ask("stop", "Stop", format!("Stop {name}?"), false))}
            {up.then(|| ask("kill", "Kill", format!("Kill {name} now (SIGKILL)?"), false))}
            // Forced only for one that runs, and the question says so.
            {ask("remove", "Remove", if up {
                format!("{name} is {status}: kill it and remove it with its logs?")
            } else {
                format!("Remove {name} and its logs?")
            }, up)}
        </span>
    }
}

/// The selected host: its containers through the hub and, for an admin, the hub's token.
#[component]
fn HostPanel(
    host: String,
    hosts: Polled<wire::fleet::FleetHosts>,
    on_close: Callback<()>,
) -> impl IntoView {
    let session = use_session();
    let list = poll(10_000, {
        let path = host_path(&host, "/containers?all=true");
        move || {
            let path = path.clone();
            async move { api::get::<Vec<Container>>(&path).await }
        }
    });
    let op_error = RwSignal::new(None::<ApiFailure>);
    // The last lines of one container's output, fetched on demand: (name, text).
    let shown_logs = RwSignal::new(None::<(String, String)>);
    let show_logs = Callback::new({
        let host = host.clone();
        move |name: String| {
            let p = host_path(
                &host,
                &format!("/containers/{}/logs?tail=200", api::enc(&name)),
            );
            leptos::task::spawn_local(async move {
                match api::send_text("GET", &p, None).await {
                    Ok(t) => {
                        op_error.set(None);
                        shown_logs.set(Some((name, t)));
                    }
                    Err(e) => op_error.set(Some(with_code(e))),
                }
            });
        }
    });
    let on_done = Callback::new(move |r: Result<(), ApiFailure>| {
        op_error.set(r.err().map(with_code));
        list.refresh();
    });
    let no_token = Memo::new(move |_| {
        list.error
            .with(|e| e.as_ref().is_some_and(|e| e.error.code == "no_host_token"))
    });
    let h = host.clone();
    let token_set = Memo::new(move |_| {
        hosts.data.with(|d| {
            d.as_ref()
                .is_some_and(|d| d.hosts.iter().any(|x| x.host_id == h && x.token_set))
        })
    });
    // The token form.
    let token = RwSignal::new(String::new());
    let errors = RwSignal::new(Vec::<(String, String)>::new());
    let set = RwSignal::new(None::<wire::fleet::HostTokenState>);
    let busy = RwSignal::new(false);
    // After the token changed: the host list's indicator, and the list afresh.
    let changed = move || {
        hosts.refresh();
        op_error.set(None);
        list.data.set(None);
        list.refresh();
    };
    let token_path = host_path(&host, "/token");
    let submit = {
        let path = token_path.clone();
        move |ev: leptos::ev::SubmitEvent| {
            ev.prevent_default();
            let (path, body) = (
                path.clone(),
                wire::fleet::HostToken {
                    token: token.get_untracked(),
                },
            );
            busy.set(true);
            leptos::task::spawn_local(async move {
                match api::put::<_, wire::fleet::HostTokenState>(&path, &body).await {
                    Ok(s) => {
                        set.set(Some(s));
                        token.set(String::new());
                        errors.set(vec![]);
                        changed();
                    }
                    Err(e) => errors.set(field_errors(&with_code(e))),
                }
                busy.set(false);
            });
        }
    };
    let forget = Callback::new(move |()| {
        let path = token_path.clone();
        leptos::task::spawn_local(async move {
            match api::delete(&path).await {
                Ok(()) => {
                    set.set(None);
                    errors.set(vec![]);
                    changed();
                }
                Err(e) => errors.set(field_errors(&with_code(e))),
            }
        });
    });
    let (h2, h3) = (host.clone(), host.clone());
    let forget_q = StoredValue::new(format!("Forget the hub's token for {host}?"));
    view! {
        <section class="card" data-testid="fleet-host-panel" data-host=host.clone()>
            <div class="card-head">
                <h2>"Containers on " <span class="mono">{host.clone()}</span></h2>
                <button class="btn ghost small" on:click=move |_| on_close.run(())>"Close"</button>
            </div>
            {move || op_error.get().map(|e| view! { <ErrorBox error=e /> })}
            {move || if no_token.get() {
                Either::Left(view! {
                    <p class="notice" role="note" data-testid="no-host-token">
                        {list.error.get().map(|e| e.error.message)}</p>
                })
            } else {
                let h = h2.clone();
                Either::Right(polled_view(list, "containers", move |l: Vec<Container>| {
                    if l.is_empty() {
                        return Either::Left(view! {
                            <p class="empty-state">"No containers of your teams on this host."</p>
                        });
                    }
                    let h = h.clone();
                    Either::Right(view! {
                        <div class="table-wrap">
                            <table class="table" data-testid="fleet-containers">
                                <thead><tr><th>"Name"</th><th>"State"</th><th>"Team"</th>
                                    <th class="hide-sm">"Image"</th><th></th></tr></thead>
                                <tbody>
                                    {l.into_iter().map(|c| {
                                        let (h, name, status) = (h.clone(), c.name.clone(), c.status.clone());
                                        view! {
                                            <tr data-name=c.name data-status=c.status>
                                                <td><b>{name.clone()}</b></td>
                                                <td><StatusBadge status=status.clone() /></td>
                                                <td>{c.team}</td>
                                                <td class="hide-sm mono">{c.image}</td>
                                                <td class="actions">
                                                    <button class="btn small ghost" data-action="logs"
                                                        on:click={let n = name.clone(); move |_| show_logs.run(n.clone())}>"Logs"</button>
                                                    <Show when=move || session.can_operate()>
                                                        <HostActions host=h.clone() name=name.clone()
                                                            status=status.clone() on_done=on_done />
                                                    </Show>
                                                </td>
                                            </tr>
                                        }
                                    }).collect_view()}
                                </tbody>
                            </table>
                        </div>
                    })
                }))
            }}
            {move || shown_logs.get().map(|(name, text)| view! {
                <div class="card-head">
                    <h3>"Last 200 lines of " <span class="mono">{name}</span></h3>
                    <button class="btn ghost small" on:click=move |_| shown_logs.set(None)>"Close logs"</button>
                </div>
                <pre class="log" data-testid="fleet-logs" tabindex="0" aria-label="Container output">
                    {if text.is_empty() { "(no output yet)".to_owned() } else { text }}
                </pre>
            })}
            <Show when=move || session.is_admin()>
                <h3>"The hub's token for this host"</h3>
                <p class="muted small">"An API token of an admin of " <span class="mono">{h3.clone()}</span>
                    " (" <code>"corral token create"</code> " there): the hub checks it with the host, then uses it to list and act on the host's containers. It is never shown again."</p>
                <form class="inline-form" on:submit=submit.clone() data-testid="host-token-form">
                    <Field label="Token" name="token" kind="password" value=token errors=errors />
                    <button class="btn primary" type="submit" data-testid="set-token" disabled=move || busy.get()>
                        {move || if token_set.get() { "Replace token" } else { "Set token" }}
                    </button>
                    <Show when=move || token_set.get()>
                        <ConfirmButton label="Forget token" confirm=forget_q.get_value()
                            on_confirm=forget testid="forget-token" />
                    </Show>
                </form>
                {move || set.get().map(|s| view! {
                    <dl class="facts" data-testid="host-token-state">
                        <div><dt>"Account on the host"</dt><dd class="mono">{s.user}</dd></div>
                        <div><dt>"Host API"</dt><dd class="mono">{s.api_url}</dd></div>
                        <div><dt>"Set"</dt><dd>{format!("{} by {}", s.set_at, s.set_by)}</dd></div>
                    </dl>
                })}
                <FormError errors=errors known=&["token"] />
            </Show>
        </section>
    }
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
    // The host whose containers show below the table.
    let selected = RwSignal::new(None::<String>);
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
                {polled_view(hosts, "hosts", move |h: wire::fleet::FleetHosts| view! {
                    <div class="table-wrap">
                        <table class="table" data-testid="fleet-hosts">
                            <thead><tr><th>"Host"</th><th>"State"</th><th>"Heartbeat"</th><th title="Containers with usage shipped for the last hour">"Metered (1 h)"</th>
                                <th>"CPU core-h (24 h)"</th><th>"Waiting to ship"</th><th>"Last shipped"</th><th>"API"</th><th>"Token"</th><th></th></tr></thead>
                            <tbody>
                                {h.hosts.into_iter().map(|x| {
                                    let state = if x.stale { "stale" } else { "up" };
                                    let (id, id2) = (x.host_id.clone(), x.host_id.clone());
                                    let open = move || selected.with(|s| s.as_ref() == Some(&id));
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
                                            <td><span class=if x.token_set { "badge ok" } else { "badge muted" } data-testid="token">
                                                {if x.token_set { "set" } else { "not set" }}</span></td>
                                            <td><button class="btn small" data-testid="host-containers"
                                                aria-label=format!("Containers of {}", x.host_id) aria-pressed=move || open().to_string()
                                                on:click=move |_| selected.update(|s| {
                                                    *s = if s.as_ref() == Some(&id2) { None } else { Some(id2.clone()) }
                                                })>"Containers"</button></td>
                                        </tr>
                                    }
                                }).collect_view()}
                            </tbody>
                        </table>
                    </div>
                })}
            </section>
            {move || selected.get().map(|h| view! {
                <HostPanel host=h hosts=hosts on_close=Callback::new(move |()| selected.set(None)) />
            })}
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
