//! One container: state and actions, charts of its history (CPU with the quota line and
//! throttling, memory with max/high, IO, pids, pressure) over a chosen range with limit changes marked,
//! the limit changes from the container's timeline (who, when, old → new) with undo, the
//! re-limit form filled with the stored limits (sends only what changed), the right-sizing
//! card (`components::recommend`), its processes (`components::processes`), logs with follow,
//! exec, checkpoint and restore (`components::checkpoint`), and the terminal tab
//! (`components::terminal`).

use leptos::prelude::*;
use leptos_router::{
    components::A,
    hooks::{use_navigate, use_params_map},
};

use crate::{
    api::{self, ApiFailure},
    components::limits::{LIMIT_FIELDS, LimitFields, LimitInputs},
    components::{
        chart::{
            ChartData, Level, LineChart, Mark, Series, cpu_series, memory_series, unit_bytes,
            unit_cores,
        },
        checkpoint::Checkpointing,
        events::{Link, LiveBadge, POLL_MS, live_stats, live_stream},
        poll::{clock, poll},
        processes::Processes,
        recommend::RightSizing,
        terminal::{TermMode, Terminal},
        ui::{
            ErrorBox, Field, FormError, Freshness, StatusBadge, field_errors, polled_live,
            polled_view,
        },
    },
    format,
    pages::containers::{Actions, split_words},
    session::use_session,
    types::{Container, ExecRequest, ExecResult, History, Limits},
};

const RANGES: [(&str, &str, i32); 5] = [
    ("15m", "15 min", 3000),
    ("1h", "1 h", 5000),
    ("24h", "24 h", 60_000),
    ("7d", "7 d", 300_000),
    ("30d", "30 d", 600_000),
];

/// Live pressure samples kept (the tail drawn after the stored history).
const PSI_KEEP: usize = 600;

fn range_ms(r: &str) -> f64 {
    match r {
        "15m" => 900_000.0,
        "1h" => 3_600_000.0,
        "24h" => 86_400_000.0,
        "7d" => 7.0 * 86_400_000.0,
        _ => 30.0 * 86_400_000.0,
    }
}

/// Turns a container's history into the lines and limit levels of one chart.
type ChartFn = fn(&History, &Container) -> (Vec<Series>, Vec<Level>);

fn unit_rate(v: f64) -> String {
    format!("{}/s", format::bytes(v))
}
fn unit_pct(v: f64) -> String {
    format!("{v:.1} %")
}
fn unit_count(v: f64) -> String {
    format!("{v:.0}")
}

#[component]
pub fn ContainerDetail() -> impl IntoView {
    let params = use_params_map();
    let name = Memo::new(move |_| params.with(|p| p.get("name").unwrap_or_default()));
    view! {
        {move || {
            let n = name.get();
            view! { <Detail name=n /> }
        }}
    }
}

#[component]
fn Detail(name: String) -> impl IntoView {
    let session = use_session();
    let navigate = use_navigate();
    let now = clock();
    let path = format!("/api/v1/containers/{}", api::enc(&name));
    let range = RwSignal::new("15m".to_owned());
    let stream = live_stream();
    let live = live_stats(stream, now);
    // Lifecycle events refresh the container at once; the poll is slower while they flow.
    let c_every = Signal::derive(move || {
        if stream.link.get() == Link::Live {
            15_000
        } else {
            POLL_MS
        }
    });
    let c = poll(c_every, {
        let path = path.clone();
        move || {
            let path = path.clone();
            async move { api::get::<Container>(&path).await }
        }
    });
    let every = Memo::new(move |_| {
        RANGES
            .iter()
            .find(|r| r.0 == range.get())
            .map_or(5000, |r| r.2)
    });
    let history = poll(3000, {
        let path = path.clone();
        move || {
            let q = format!("{path}/history?range={}", range.get());
            // Reading `every` ties the refresh to the range (longer ranges change slowly).
            let _ = every.get();
            async move { api::get::<History>(&q).await }
        }
    });
    // Limit changes, for annotations and undo: the container's own timeline, which everyone
    // who sees the container may read.
    let marks = poll(30_000, {
        let path = path.clone();
        move || {
            let p = format!("{path}/events");
            async move {
                let rows = api::get::<Vec<wire::AuditEntry>>(&p).await?;
                Ok(limit_changes(&rows))
            }
        }
    });
    {
        let name = name.clone();
        Effect::new(move |_| {
            if stream
                .lifecycle
                .with(|e| e.as_ref().is_some_and(|e| e.name == name))
            {
                history.refresh();
                c.refresh();
            }
        });
    }
    // A reset (events were missed): refetch the container too. Other containers' events
    // leave it alone.
    stream.on_reset(move || c.refresh());
    let n_live = name.clone();
    let stat = Memo::new(move |_| {
        live.stats.with(|s| {
            s.as_ref().and_then(|s| {
                s.stats
                    .iter()
                    .find(|l| l.kind == "container" && l.name == n_live)
                    .cloned()
            })
        })
    });
    // Pressure (PSI some avg10): the stored history for the chosen range, then the live samples
    // newer than its last bucket (seen since the page opened, newest last).
    let psi = RwSignal::new(Vec::<(f64, [Option<f64>; 3])>::new());
    Effect::new(move |_| {
        let Some(l) = stat.get() else { return };
        psi.update(|v| {
            if v.last().is_none_or(|p| p.0 < l.ts as f64) {
                v.push((
                    l.ts as f64,
                    [l.cpu_pressure, l.memory_pressure, l.io_pressure],
                ));
                if v.len() > PSI_KEEP {
                    v.remove(0);
                }
            }
        });
    });
    let has_psi = Memo::new(move |_| {
        psi.with(|v| v.iter().any(|p| p.1.iter().any(Option::is_some)))
            || history.data.with(|h| {
                h.as_ref().is_some_and(|h| {
                    h.points.iter().any(|p| {
                        p.cpu_pressure.is_some()
                            || p.memory_pressure.is_some()
                            || p.io_pressure.is_some()
                    })
                })
            })
    });
    let op_error = RwSignal::new(None::<ApiFailure>);
    let on_done = Callback::new(move |r: Result<(), ApiFailure>| {
        op_error.set(r.err());
        c.refresh();
        history.refresh();
    });
    // After "remove", the container is gone: back to the list.
    Effect::new(move |_| {
        if c.error
            .with(|e| e.as_ref().is_some_and(|e| e.status == 404))
            && c.data.with(Option::is_some)
        {
            navigate("/containers", Default::default());
        }
    });

    let window = move || {
        let to = now.get().max(history.updated.get());
        (to - range_ms(&range.get()), to)
    };
    let chart = move |f: ChartFn| {
        Signal::derive(move || {
            let (from, to) = window();
            let h = history.data.get().unwrap_or_default();
            let Some(cur) = c.data.get() else {
                return ChartData {
                    from,
                    to,
                    ..Default::default()
                };
            };
            let (series, levels) = f(&h, &cur);
            ChartData {
                series,
                levels,
                marks: to_marks(&marks.data.get().unwrap_or_default()),
                from,
                to,
                ..ChartData::default()
            }
        })
    };
    let cpu = chart(|h, c| {
        (
            cpu_series(h),
            c.limits
                .cpus
                .map(|q| {
                    vec![Level {
                        name: "quota".into(),
                        value: q,
                        class: "limit",
                    }]
                })
                .unwrap_or_default(),
        )
    });
    let mem = chart(|h, c| {
        let mut levels = Vec::new();
        if let Some(m) = c.limits.memory_max {
            levels.push(Level {
                name: "max".into(),
                value: m as f64,
                class: "limit",
            });
        }
        if let Some(m) = c.limits.memory_high {
            levels.push(Level {
                name: "high".into(),
                value: m as f64,
                class: "soft",
            });
        }
        (memory_series(h), levels)
    });
    let io = chart(move |h, _| {
        let s = h.step_secs.max(1) as f64;
        (
            vec![
                Series {
                    name: "read".into(),
                    class: "s1",
                    area: true,
                    points: h
                        .points
                        .iter()
                        .map(|p| (p.ts as f64, p.io_read_bytes as f64 / s))
                        .collect(),
                },
                Series {
                    name: "write".into(),
                    class: "s2",
                    area: true,
                    points: h
                        .points
                        .iter()
                        .map(|p| (p.ts as f64, p.io_write_bytes as f64 / s))
                        .collect(),
                },
            ],
            vec![],
        )
    });
    let psi_chart = Signal::derive(move || {
        let (from, to) = window();
        let h = history.data.get().unwrap_or_default();
        // Live samples after the last stored bucket (ts is its start).
        let tail_from = h.points.last().map_or(f64::MIN, |p| {
            p.ts as f64 + h.step_secs.max(1) as f64 * 1000.0
        });
        let series = [("cpu", "s1"), ("memory", "s3"), ("io", "s2")]
            .into_iter()
            .enumerate()
            .map(|(i, (name, class))| {
                let mut points: Vec<(f64, f64)> = h
                    .points
                    .iter()
                    .filter_map(|p| {
                        [p.cpu_pressure, p.memory_pressure, p.io_pressure][i]
                            .map(|y| (p.ts as f64, y))
                    })
                    .collect();
                psi.with(|v| {
                    points.extend(
                        v.iter()
                            .filter(|p| p.0 >= tail_from)
                            .filter_map(|p| p.1[i].map(|y| (p.0, y))),
                    );
                });
                Series {
                    name: name.into(),
                    class,
                    area: false,
                    points,
                }
            })
            .collect();
        ChartData {
            series,
            marks: to_marks(&marks.data.get().unwrap_or_default()),
            from,
            to,
            ..Default::default()
        }
    });
    let pids = chart(|h, c| {
        (
            vec![Series {
                name: "tasks".into(),
                class: "s4",
                area: true,
                points: h
                    .points
                    .iter()
                    .map(|p| (p.ts as f64, p.pids_peak as f64))
                    .collect(),
            }],
            c.limits
                .pids_max
                .map(|m| {
                    vec![Level {
                        name: "max".into(),
                        value: m as f64,
                        class: "limit",
                    }]
                })
                .unwrap_or_default(),
        )
    });

    let (p1, p2, p3) = (path.clone(), path.clone(), path.clone());
    let p4 = path.clone();
    let p5 = path.clone();
    let p6 = path.clone();
    let p7 = path.clone();
    // Bumped by an undo: the re-limit form re-reads the stored limits.
    let limits_version = RwSignal::new(0u32);
    view! {
        <div class="crumbs"><A href="/containers">"Containers"</A>" / " {name.clone()}</div>
        {polled_live(c, "the container", move || {
            let k = move |f: fn(&Container) -> String| move || c.data.with(|k| k.as_ref().map(f).unwrap_or_default());
            let status = Memo::new(move |_| c.data.with(|k| k.as_ref().map(|k| k.status.clone())).unwrap_or_default());
            let id = k(|k| k.id.clone());
            view! {
            <div class="page-head">
                <h1 data-testid="container-name">{k(|k| k.name.clone())}</h1>
                <StatusBadge status=status />
                <Freshness poll=c now=now />
                <LiveBadge stream=stream view_=live now=now />
                <Show when=move || session.can_operate()>
                    {move || view! { <Actions name=c.data.with_untracked(|k| k.as_ref().map(|k| k.name.clone()).unwrap_or_default()) status=status.get() on_done=on_done /> }}
                </Show>
            </div>
            <dl class="facts card">
                <div><dt>"Team"</dt><dd><a href=move || format!("/teams/{}", api::enc(&k(|k| k.team.clone())())) data-testid="team-link">{k(|k| k.team.clone())}</a></dd></div>
                <div><dt>"Team ceiling"</dt><dd data-testid="team-ceiling">{k(|k| k.team_limits.as_ref().map(limits_summary).unwrap_or_else(|| "–".into()))}</dd></div>
                <div><dt>"In force"</dt><dd data-testid="effective-limits" title="per limit the tighter of the container's own and its team's">{k(|k| k.effective_limits.as_ref().map(limits_summary).unwrap_or_else(|| "–".into()))}</dd></div>
                <div><dt>"Image"</dt><dd class="mono">{k(|k| k.image.clone())}</dd></div>
                <div><dt>"Command"</dt><dd class="mono">{k(|k| k.command.join(" "))}</dd></div>
                <div><dt>"PID"</dt><dd>{k(|k| k.pid.map(|p| p.to_string()).unwrap_or_else(|| "–".into()))}</dd></div>
                <div><dt>"Started"</dt><dd>{k(|k| k.started_at.map(format::datetime).unwrap_or_else(|| "never".into()))}</dd></div>
                <div><dt>"Exit"</dt><dd>{k(|k| match (k.status.as_str(), k.exit_code) { ("exited", Some(x)) => format!("code {x}"), _ => "–".into() })}</dd></div>
                <div><dt>"Network"</dt><dd class="mono" data-testid="network">{k(|k| match &k.network {
                    None => "–".into(),
                    Some(n) => {
                        let mut t = n.mode.clone();
                        if let Some(ip) = &n.ip_address { t = format!("{t} {ip}"); }
                        for p in &n.ports { t = format!("{t} · {p}"); }
                        t
                    }
                })}</dd></div>
                <div><dt>"Restarts"</dt><dd>{k(|k| k.restart_count.to_string())}</dd></div>
                <div><dt>"ID"</dt><dd class="mono" title=id>{move || id().chars().take(12).collect::<String>()}</dd></div>
            </dl>
            {move || c.data.get().map(|k| view! { <Spec c=k /> })}
            <dl class="facts card live-now" data-testid="live-now">
                <div><dt>"CPU now"</dt><dd data-testid="live-cpu">{move || stat.get().map(|l| format!("{:.0}%", l.cpu_cores * 100.0)).unwrap_or_else(|| "–".into())}</dd></div>
                <div><dt>"Memory now"</dt><dd>{move || stat.get().map(|l| format::bytes_u(l.mem_bytes)).unwrap_or_else(|| "–".into())}</dd></div>
                <div><dt>"IO now"</dt><dd>{move || stat.get().map(|l| format!("{}/s", format::bytes(l.io_read_bytes_per_sec + l.io_write_bytes_per_sec))).unwrap_or_else(|| "–".into())}</dd></div>
                <div><dt>"Tasks"</dt><dd>{move || stat.get().map(|l| l.pids.to_string()).unwrap_or_else(|| "–".into())}</dd></div>
                <div><dt>"OOM kills"</dt><dd>{move || stat.get().map(|l| l.oom_kills.to_string()).unwrap_or_else(|| "–".into())}</dd></div>
            </dl>
        }})}
        {move || op_error.get().map(|e| view! { <ErrorBox error=e /> })}
        <div class="toolbar">
            <div class="tabs" role="tablist" aria-label="Range">
                {RANGES.iter().map(|(r, label, _)| view! {
                    <button role="tab" class="tab" data-range=*r aria-selected=move || (range.get() == *r).to_string()
                        on:click=move |_| range.set((*r).to_owned())>{*label}</button>
                }).collect_view()}
            </div>
            <Freshness poll=history now=now />
            {move || history.data.get().map(|h| view! { <span class="muted small">{format!("{} points, {}s step, {} tier", h.points.len(), h.step_secs, h.tier)}</span> })}
        </div>
        {move || history.error.get().filter(|_| history.data.with(Option::is_none)).map(|e| view! { <ErrorBox error=e /> })}
        <div class="charts">
            <div class="card"><LineChart data=cpu unit=unit_cores label="CPU" testid="chart-cpu" min_max=0.1 /></div>
            <div class="card"><LineChart data=mem unit=unit_bytes label="Memory" testid="chart-mem" min_max=1_048_576.0 /></div>
            <div class="card"><LineChart data=io unit=unit_rate label="IO" testid="chart-io" min_max=1024.0 /></div>
            <div class="card"><LineChart data=pids unit=unit_count label="Tasks" testid="chart-pids" min_max=4.0 /></div>
        </div>
        <div class="card">
            <Show when=move || has_psi.get() fallback=move || view! {
                <p class="muted small" data-testid="psi-note">{move || if stat.with(Option::is_some) || history.data.with(|h| h.as_ref().is_some_and(|h| !h.points.is_empty())) {
                    "Pressure (PSI): no pressure data on this host."
                } else {
                    "Pressure (PSI): waiting for data…"
                }}</p>
            }>
                <LineChart data=psi_chart unit=unit_pct label="Pressure (some avg10)" testid="chart-psi" min_max=1.0 />
            </Show>
            <p class="muted small">"Pressure: the share of the last 10 s in which some task of the container waited for CPU, memory or IO (PSI some avg10), averaged per point of the stored history, then the live samples."</p>
        </div>
        <RightSizing path=p5 can_apply=Signal::derive(move || session.can_operate())
            on_applied=Callback::new(move |_| { c.refresh(); history.refresh(); marks.refresh(); limits_version.update(|v| *v += 1); }) />
        <LimitChanges path=p4 changes=marks.data can_undo=Signal::derive(move || session.can_operate())
            on_undone=Callback::new(move |_| { c.refresh(); history.refresh(); marks.refresh(); limits_version.update(|v| *v += 1); }) />
        <Processes path=p6 now=now
            status=Signal::derive(move || c.data.with(|k| k.as_ref().map(|k| k.status.clone())).unwrap_or_default()) />
        <div class="grid-main-side">
            <div>
                <Logs path=p1 />
                <Show when=move || session.can_operate()>
                    <Exec path=p2.clone() />
                </Show>
            </div>
            <Show when=move || session.can_operate()>
                <Relimit path=p3.clone() version=limits_version on_saved=Callback::new(move |_| { c.refresh(); history.refresh(); marks.refresh(); }) />
            </Show>
        </div>
        <Show when=move || session.can_operate()>
            <Checkpointing path=p7.clone()
                running=Signal::derive(move || c.data.with(|k| k.as_ref().is_some_and(|k| k.status == "running")))
                on_done=Callback::new(move |_| { c.refresh(); history.refresh(); marks.refresh(); }) />
        </Show>
        <Show when=move || session.can_operate()>
            <TerminalCard name=name.clone()
                running=Signal::derive(move || c.data.with(|k| k.as_ref().is_some_and(|k| k.status == "running")))
                tty=Signal::derive(move || c.data.with(|k| k.as_ref().is_some_and(|k| k.spec.tty))) />
        </Show>
    }
}

/// The terminal tab, for those who may exec: a new shell in the running container, or (when
/// it was created with a terminal, `-t`) its own terminal. Closing the tab ends the session.
#[component]
fn TerminalCard(name: String, running: Signal<bool>, tty: Signal<bool>) -> impl IntoView {
    let open = RwSignal::new(None::<TermMode>);
    let tab = move |m: TermMode| move || (open.get() == Some(m)).to_string();
    view! {
        <section class="card" data-testid="terminal-card">
            <div class="card-head">
                <h2>"Terminal"</h2>
                <div class="btn-row">
                    <div class="tabs" role="tablist" aria-label="Terminal">
                        <button role="tab" class="tab" data-testid="terminal-tab" aria-selected=tab(TermMode::Exec)
                            disabled=move || !running.get() title="/bin/sh inside the container, with its limits"
                            on:click=move |_| open.set(Some(TermMode::Exec))>"New shell"</button>
                        <Show when=move || tty.get()>
                            <button role="tab" class="tab" data-testid="terminal-attach" aria-selected=tab(TermMode::Attach)
                                disabled=move || !running.get() title="the container's own process; closing detaches"
                                on:click=move |_| open.set(Some(TermMode::Attach))>"Attach to the container's terminal"</button>
                        </Show>
                    </div>
                    <Show when=move || open.with(Option::is_some)>
                        <button class="btn ghost small" data-testid="terminal-close" on:click=move |_| open.set(None)>"Close"</button>
                    </Show>
                </div>
            </div>
            {move || match open.get() {
                Some(mode) => view! { <Terminal container=name.clone() mode=mode /> }.into_any(),
                None if running.get() => view! {
                    <p class="muted small">"Open a shell inside the container in your browser. Copy: select, then Ctrl+C; paste: Ctrl+V or the context menu."</p>
                }.into_any(),
                None => view! { <p class="muted small">"The container is not running."</p> }.into_any(),
            }}
        </section>
    }
}

/// The container's whole spec as created: environment, mounts, user, working directory,
/// restart policy, stop timeout, labels, user namespace, hostname, network and ports.
#[component]
fn Spec(c: Container) -> impl IntoView {
    let s = c.spec;
    let or_default = |v: &Option<String>, d: &str| {
        v.clone()
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| d.to_owned())
    };
    let list = |items: Vec<String>, testid: &'static str| {
        if items.is_empty() {
            view! { <dd data-testid=testid>"–"</dd> }.into_any()
        } else {
            view! { <dd data-testid=testid><ul class="spec-list">{items.into_iter().map(|i| view! { <li>{i}</li> }).collect_view()}</ul></dd> }.into_any()
        }
    };
    let mounts = s
        .mounts
        .iter()
        .map(|m| match (&m.source, m.kind.as_str()) {
            (Some(src), _) => format!(
                "{src} → {}{}",
                m.destination,
                if m.readonly { " (ro)" } else { "" }
            ),
            (None, kind) => format!("{kind} → {}", m.destination),
        })
        .collect();
    let labels = s.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let restart = match s.restart.as_deref() {
        None | Some("" | "no") => "never".to_owned(),
        Some(r) => r.to_owned(),
    };
    let network = or_default(&s.network, "default");
    view! {
        <section class="card" data-testid="spec">
            <h2>"Spec"</h2>
            <dl class="facts">
                <div><dt>"User"</dt><dd class="mono" data-testid="spec-user">{or_default(&s.user, "image default")}</dd></div>
                <div><dt>"Working directory"</dt><dd class="mono" data-testid="spec-workdir">{or_default(&s.workdir, "image default")}</dd></div>
                <div><dt>"Restart policy"</dt><dd data-testid="spec-restart">{restart}</dd></div>
                <div><dt>"Stop timeout"</dt><dd>{s.stop_timeout.map_or("10 s (default)".to_owned(), |t| format!("{t} s"))}</dd></div>
                <div><dt>"User namespace"</dt><dd class="mono" data-testid="spec-userns">{or_default(&s.userns, "host (none)")}</dd></div>
                <div><dt>"Hostname"</dt><dd class="mono">{or_default(&s.hostname, "the container's name")}</dd></div>
                <div><dt>"Network"</dt><dd class="mono">{network}</dd></div>
                <div><dt>"Published ports"</dt>{list(s.ports.clone(), "spec-ports")}</div>
                <div><dt>"Auto-remove"</dt><dd>{if s.auto_remove { "yes" } else { "no" }}</dd></div>
                <div><dt>"Terminal (-t)"</dt><dd data-testid="spec-tty">{if s.tty { "yes" } else { "no" }}</dd></div>
                <div><dt>"Stdin open (-i)"</dt><dd data-testid="spec-stdin">{if s.open_stdin { "yes" } else { "no" }}</dd></div>
            </dl>
            <dl class="facts">
                <div><dt>"Environment"</dt>{list(s.env.clone(), "spec-env")}</div>
                <div><dt>"Mounts"</dt>{list(mounts, "spec-mounts")}</div>
                <div><dt>"Labels"</dt>{list(labels, "spec-labels")}</div>
            </dl>
        </section>
    }
}

/// CPUs, memory and tasks of a set of limits in a few words (`no limit` when none is set).
fn limits_summary(l: &Limits) -> String {
    let mut parts = Vec::new();
    if let Some(c) = l.cpus {
        parts.push(format!("{} CPU", format::cores(c)));
    }
    if let Some(m) = l.memory_max {
        parts.push(format::bytes_u(m));
    }
    if let Some(p) = l.pids_max {
        parts.push(format!("{p} tasks"));
    }
    if parts.is_empty() {
        "no limit".into()
    } else {
        parts.join(" · ")
    }
}

/// One limit change of the container's timeline.
#[derive(Clone, Debug, PartialEq)]
struct Change {
    id: i64,
    at_ms: i64,
    actor: String,
    /// `undo` for an undo, else `change`.
    kind: &'static str,
    /// `cpus 0.5 → 0.25, memory_max none → 512 MiB`.
    what: String,
}

/// The successful limit changes (updates and undos) of a timeline, oldest first.
fn limit_changes(rows: &[wire::AuditEntry]) -> Vec<Change> {
    rows.iter()
        .filter(|r| {
            r.result == "ok" && (r.action == "container.update" || r.action == "container.undo")
        })
        .map(|r| Change {
            id: r.id,
            at_ms: r.at_ms,
            actor: r.actor.clone(),
            kind: if r.action == "container.undo" {
                "undo"
            } else {
                "change"
            },
            what: old_to_new(r.before.as_deref(), r.after.as_deref()),
        })
        .collect()
}

/// The fields that differ between the `limits` of two audit snapshots, as `field old → new`.
fn old_to_new(before: Option<&str>, after: Option<&str>) -> String {
    let limits = |t: Option<&str>| {
        t.and_then(|t| serde_json::from_str::<serde_json::Value>(t).ok())
            .and_then(|v| v.get("limits").and_then(|l| l.as_object().cloned()))
            .unwrap_or_default()
    };
    let (old, new) = (limits(before), limits(after));
    let mut keys: Vec<&String> = old.keys().chain(new.keys()).collect();
    keys.sort();
    keys.dedup();
    let show = |v: Option<&serde_json::Value>| match v {
        None => "none".to_owned(),
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(v) => v.to_string(),
    };
    let parts: Vec<String> = keys
        .into_iter()
        .filter(|k| old.get(*k) != new.get(*k))
        .map(|k| format!("{k} {} → {}", show(old.get(k)), show(new.get(k))))
        .collect();
    if parts.is_empty() {
        "no change".into()
    } else {
        parts.join(", ")
    }
}

/// Chart annotations of the changes: who, when, old → new.
fn to_marks(changes: &[Change]) -> Vec<Mark> {
    changes
        .iter()
        .map(|c| Mark {
            at: c.at_ms as f64,
            label: format!(
                "{} by {} at {}: {}",
                if c.kind == "undo" {
                    "undone"
                } else {
                    "limits changed"
                },
                c.actor,
                format::datetime_ms(c.at_ms as f64),
                c.what
            ),
        })
        .collect()
}

/// The container's limit changes, newest first, each with an undo button for those who may
/// act (it restores the limits before that change; the undo is itself a change).
#[component]
fn LimitChanges(
    path: String,
    changes: RwSignal<Option<Vec<Change>>>,
    can_undo: Signal<bool>,
    on_undone: Callback<()>,
) -> impl IntoView {
    let errors = RwSignal::new(Vec::<(String, String)>::new());
    let undo = Action::new_local(move |id: &i64| {
        let p = format!("{path}/undo");
        let body = wire::UndoLimits { event: Some(*id) };
        async move { api::post::<_, serde_json::Value>(&p, &body).await }
    });
    Effect::new(move |_| match undo.value().get() {
        Some(Ok(_)) => {
            errors.set(vec![]);
            on_undone.run(());
        }
        Some(Err(e)) => errors.set(field_errors(&e)),
        None => {}
    });
    let rows = move || {
        let mut v = changes.get().unwrap_or_default();
        v.reverse();
        v
    };
    view! {
        <Show when=move || changes.with(|c| c.as_ref().is_some_and(|c| !c.is_empty()))>
            <section class="card" data-testid="limit-changes">
                <h2>"Limit changes"</h2>
                <ul class="changes">
                    <For each=rows key=|c| c.id let:c>
                        <li data-testid="limit-change" data-id=c.id.to_string()>
                            <span class="muted small">{format::datetime_ms(c.at_ms as f64)}</span>
                            " "<strong>{c.actor.clone()}</strong>" "
                            {if c.kind == "undo" { "undid: " } else { "" }}
                            <span>{c.what.clone()}</span>
                            <Show when=move || can_undo.get()>
                                <button class="btn small" data-testid="undo-change" data-id=c.id.to_string()
                                    title="restore the limits before this change"
                                    disabled=move || undo.pending().get()
                                    on:click=move |_| { undo.dispatch(c.id); }>"Undo"</button>
                            </Show>
                        </li>
                    </For>
                </ul>
                <FormError errors=errors known=&[] />
            </section>
        </Show>
    }
}

/// The re-limit form, filled with the container's stored limits (not the kernel's view, whose
/// defaults — every CPU, weight 100 — are no limits). Only the fields the user changed are
/// sent; an emptied field or `max` removes that limit.
#[component]
fn Relimit(path: String, version: RwSignal<u32>, on_saved: Callback<()>) -> impl IntoView {
    let current = poll(0, {
        let path = path.clone();
        move || {
            let p = path.clone();
            let _ = version.get();
            async move { api::get::<Container>(&p).await.map(|c| c.limits) }
        }
    });
    let errors = RwSignal::new(Vec::<(String, String)>::new());
    let saved = RwSignal::new(false);
    view! {
        <section class="card" data-testid="relimit">
            <h2>"Limits"</h2>
            {polled_view(current, "the current limits", move |l: Limits| {
                let f = LimitFields::new(&l);
                let path = path.clone();
                let save = Action::new_local(move |body: &wire::LimitsPatch| {
                    let body = body.clone();
                    let p = format!("{path}/limits");
                    async move { api::patch::<_, serde_json::Value>(&p, &body).await }
                });
                Effect::new(move |_| match save.value().get() {
                    Some(Ok(_)) => { errors.set(vec![]); saved.set(true); on_saved.run(()); current.refresh(); }
                    Some(Err(e)) => { saved.set(false); errors.set(field_errors(&e)); }
                    None => {}
                });
                view! {
                    <form on:submit=move |ev| {
                        ev.prevent_default();
                        saved.set(false);
                        match f.patch() {
                            Ok(p) if p.is_empty() => errors.set(vec![(String::new(), "nothing changed".into())]),
                            Ok(p) => { errors.set(vec![]); save.dispatch(p); }
                            Err(e) => errors.set(e),
                        }
                    }>
                        <p class="muted">"The container's own limits. Only the fields you change are sent; empty a field or write max to remove that limit."</p>
                        <LimitInputs f=f errors=errors />
                        <FormError errors=errors known=&LIMIT_FIELDS />
                        <div class="btn-row">
                            <button class="btn primary" type="submit" data-testid="apply-limits" disabled=move || save.pending().get()>
                                {move || if save.pending().get() { "Applying…" } else { "Apply limits" }}
                            </button>
                            <Show when=move || saved.get()><span class="yes" role="status" data-testid="limits-saved">"Applied"</span></Show>
                        </div>
                    </form>
                }
            })}
        </section>
    }
}

/// The container's output; "follow" re-reads the tail every two seconds.
#[component]
fn Logs(path: String) -> impl IntoView {
    let follow = RwSignal::new(true);
    let logs = poll(2000, move || {
        let p = format!("{path}/logs?tail=500");
        let on = follow.get();
        async move {
            if !on {
                // Paused: keep what is shown.
                return Err(ApiFailure {
                    status: 0,
                    error: wire::ApiError {
                        code: "paused".into(),
                        message: "paused".into(),
                        field: None,
                    },
                });
            }
            api::send_text("GET", &p, None).await
        }
    });
    let pre = NodeRef::<leptos::html::Pre>::new();
    Effect::new(move |_| {
        logs.data.track();
        if let Some(el) = pre.get().filter(|_| follow.get_untracked()) {
            el.set_scroll_top(el.scroll_height());
        }
    });
    view! {
        <section class="card">
            <div class="card-head">
                <h2>"Logs"</h2>
                <label class="check"><input type="checkbox" data-testid="follow" prop:checked=move || follow.get()
                    on:change=move |ev| follow.set(event_target_checked(&ev)) />" Follow"</label>
            </div>
            {move || logs.error.get().filter(|e| e.error.code != "paused").map(|e| view! { <ErrorBox error=e /> })}
            <pre class="log" node_ref=pre data-testid="logs" tabindex="0" aria-label="Container output">
                {move || match logs.data.get() {
                    None => "…".to_owned(),
                    Some(t) if t.is_empty() => "(no output yet)".to_owned(),
                    Some(t) => t,
                }}
            </pre>
        </section>
    }
}

/// Runs a command inside the container (with all its restrictions) and shows the result.
#[component]
fn Exec(path: String) -> impl IntoView {
    let cmd = RwSignal::new(String::new());
    let errors = RwSignal::new(Vec::<(String, String)>::new());
    let run = Action::new_local(move |words: &Vec<String>| {
        let body = ExecRequest {
            command: words.clone(),
            ..Default::default()
        };
        let p = format!("{path}/exec");
        async move { api::post::<_, ExecResult>(&p, &body).await }
    });
    Effect::new(move |_| {
        if let Some(Err(e)) = run.value().get() {
            errors.set(field_errors(&e));
        }
    });
    view! {
        <section class="card">
            <h2>"Exec"</h2>
            <form class="inline-form" on:submit=move |ev| {
                ev.prevent_default();
                errors.set(vec![]);
                let words = split_words(&cmd.get_untracked());
                if words.is_empty() {
                    errors.set(vec![("command".into(), "type a command".into())]);
                    return;
                }
                run.dispatch(words);
            }>
                <Field label="Command" name="command" value=cmd errors=errors placeholder="ps aux" />
                <button class="btn primary" type="submit" data-testid="exec" disabled=move || run.pending().get()>
                    {move || if run.pending().get() { "Running…" } else { "Run" }}
                </button>
            </form>
            <FormError errors=errors known=&["command"] />
            {move || run.value().get().and_then(|r| r.ok()).map(|r| view! {
                <div data-testid="exec-result">
                    <span class=if r.exit_code == 0 { "badge ok" } else { "badge bad" }>{format!("exit {}", r.exit_code)}</span>
                    {r.truncated.then(|| view! {
                        <span class="badge bad" data-testid="exec-truncated"
                            title="the output passed 1 MiB: it is cut there and the command was killed (use `corral exec` for all of it)">
                            "truncated at 1 MiB"
                        </span>
                    })}
                    {r.timed_out.then(|| view! {
                        <span class="badge bad" data-testid="exec-timed-out"
                            title="the command ran longer than 25 s and was killed (use `corral exec` for long commands)">
                            "timed out"
                        </span>
                    })}
                    <pre class="log short">{r.stdout}<span class="err">{r.stderr}</span></pre>
                </div>
            })}
        </section>
    }
}
