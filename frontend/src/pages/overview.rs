//! Overview: host capacity against what is allocated and used, container counts, top
//! consumers, the cgroup mode and the capability matrix.

use leptos::prelude::*;
use leptos_router::components::A;

use crate::{
    api,
    components::{
        chart::Meter,
        poll::{clock, poll},
        ui::{ErrorBox, Freshness, Loading, StatusBadge, polled_view},
    },
    format,
    types::{Container, LiveStats},
};

#[component]
pub fn Overview() -> impl IntoView {
    let now = clock();
    let host = poll(0, || api::get::<wire::HostInfo>("/api/v1/host"));
    let health = poll(0, || api::get::<wire::Health>("/api/v1/health"));
    let containers = poll(5000, || {
        api::get::<Vec<Container>>("/api/v1/containers?all=true")
    });
    let stats = poll(5000, || api::get::<LiveStats>("/api/v1/stats"));

    let cpu_used = Signal::derive(move || {
        stats.data.with(|s| {
            s.as_ref().map_or(0.0, |s| {
                s.stats
                    .iter()
                    .filter(|l| l.kind == "container")
                    .fold(0.0, |a, l| a + l.cpu_cores)
            })
        })
    });
    let mem_used = Signal::derive(move || {
        stats.data.with(|s| {
            s.as_ref().map_or(0.0, |s| {
                s.stats
                    .iter()
                    .filter(|l| l.kind == "container")
                    .fold(0.0, |a, l| a + l.mem_bytes as f64)
            })
        })
    });
    let running = move || {
        containers.data.with(|c| {
            c.as_ref()
                .map(|c| {
                    c.iter()
                        .filter(|c| c.status == "running")
                        .cloned()
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default()
        })
    };
    let cpu_alloc = Signal::derive(move || {
        running()
            .iter()
            .filter_map(|c| c.limits.cpus)
            .fold(0.0, |a, b| a + b)
    });
    let mem_alloc = Signal::derive(move || {
        running()
            .iter()
            .filter_map(|c| c.limits.memory_max)
            .fold(0.0, |a, b| a + b as f64)
    });
    let count = move |status: &'static str| {
        move || {
            containers.data.with(|c| {
                c.as_ref()
                    .map_or(0, |c| c.iter().filter(|c| c.status == status).count())
            })
        }
    };
    let containers_known = move || containers.data.with(Option::is_some);

    view! {
        <div class="page-head">
            <h1>"Overview"</h1>
            <Freshness poll=containers now=now />
        </div>
        {move || health.data.get().map(|h| view! {
            <p class="sub">"Corral " <span data-testid="daemon-version">{h.version}</span>
                " · daemon " <span data-testid="daemon-status">{h.status}</span></p>
        })}
        {polled_view(host, "host facts", move |h: wire::HostInfo| {
            let cpus = f64::from(h.cpus);
            let mem = h.memory_bytes as f64;
            view! {
                <section class="grid-2">
                    <div class="card" data-testid="cap-cpu">
                        <h2>"CPU"</h2>
                        <div class="big-num">{h.cpus} <small>"CPUs"</small></div>
                        <Meter used=cpu_used allocated=cpu_alloc total=Signal::derive(move || cpus) label="CPU" />
                        <div class="meter-legend">
                            <span><i class="k used"></i>"used " {move || format::cores(cpu_used.get())}</span>
                            <span><i class="k alloc"></i>"reserved " {move || format::cores(cpu_alloc.get())}</span>
                            <span>"of " {h.cpus}</span>
                        </div>
                    </div>
                    <div class="card" data-testid="cap-mem">
                        <h2>"Memory"</h2>
                        <div class="big-num">{format::bytes(mem)}</div>
                        <Meter used=mem_used allocated=mem_alloc total=Signal::derive(move || mem) label="Memory" />
                        <div class="meter-legend">
                            <span><i class="k used"></i>"used " {move || format::bytes(mem_used.get())}</span>
                            <span><i class="k alloc"></i>"limited " {move || format::bytes(mem_alloc.get())}</span>
                            <span>"of " {format::bytes(mem)}</span>
                        </div>
                        <p class="sub" data-testid="default-memory">"Default limit per container: "
                            {match h.default_memory {
                                Some(b) => format::bytes(b as f64),
                                None => "none (--default-memory not set)".to_owned(),
                            }}</p>
                    </div>
                </section>
            }
        })}
        <section class="cards counts">
            <A href="/containers" attr:class="card count ok"><h2>"Running"</h2><div class="big-num" data-testid="count-running">{move || if containers_known() { count("running")().to_string() } else { "–".into() }}</div></A>
            <A href="/containers" attr:class="card count info"><h2>"Frozen"</h2><div class="big-num" data-testid="count-frozen">{move || if containers_known() { count("paused")().to_string() } else { "–".into() }}</div></A>
            <A href="/containers" attr:class="card count warn"><h2>"Exited"</h2><div class="big-num" data-testid="count-exited">{move || if containers_known() { count("exited")().to_string() } else { "–".into() }}</div></A>
            <A href="/containers" attr:class="card count"><h2>"Created"</h2><div class="big-num">{move || if containers_known() { count("created")().to_string() } else { "–".into() }}</div></A>
        </section>
        <section class="card">
            <h2>"Top consumers"</h2>
            {move || match (stats.data.get(), stats.error.get(), containers.data.get()) {
                (Some(s), _, list) => {
                    let mut lines: Vec<_> = s.stats.into_iter().filter(|l| l.kind == "container").collect();
                    lines.sort_by(|a, b| b.cpu_cores.total_cmp(&a.cpu_cores).then(b.mem_bytes.cmp(&a.mem_bytes)));
                    lines.truncate(5);
                    if lines.is_empty() {
                        let running = list.as_ref().map_or(0, |l| l.iter().filter(|c| c.status == "running").count());
                        if running > 0 {
                            return view! { <p class="empty-state">{format!("{running} running, but the meter has no samples of them yet.")}</p> }.into_any();
                        }
                        return view! { <p class="empty-state">"No container is running. " <A href="/containers/new">"Start one"</A></p> }.into_any();
                    }
                    let status_of = move |name: &str| list.as_ref().and_then(|l| l.iter().find(|c| c.name == name).map(|c| c.status.clone())).unwrap_or_default();
                    view! {
                        <table class="table">
                            <thead><tr><th>"Container"</th><th>"Team"</th><th>"State"</th><th class="num">"CPU"</th><th class="num">"Memory"</th></tr></thead>
                            <tbody>
                                {lines.into_iter().map(|l| { let st = status_of(&l.name); view! {
                                    <tr>
                                        <td><A href=format!("/containers/{}", api::enc(&l.name))>{l.name.clone()}</A></td>
                                        <td>{l.team.clone()}</td>
                                        <td><StatusBadge status=st /></td>
                                        <td class="num">{format::cores(l.cpu_cores)} " cores"</td>
                                        <td class="num">{format::bytes_u(l.mem_bytes)}</td>
                                    </tr>
                                }}).collect_view()}
                            </tbody>
                        </table>
                    }.into_any()
                }
                (None, Some(e), _) => view! { <ErrorBox error=e /> }.into_any(),
                (None, None, _) => view! { <Loading what="usage" /> }.into_any(),
            }}
        </section>
        {polled_view(host, "capabilities", |h: wire::HostInfo| view! { <Capabilities h=h /> })}
    }
}

#[component]
fn Capabilities(h: wire::HostInfo) -> impl IntoView {
    let mode = h.cgroup_mode.clone();
    view! {
        <section class="card" data-testid="capabilities">
            <div class="card-head">
                <h2>"Cgroups and capabilities"</h2>
                <span class="badge info" data-testid="cgroup-mode">{format!("cgroup {mode}")}</span>
            </div>
            <dl class="facts">
                <div><dt>"Kernel"</dt><dd>{h.kernel.clone()}</dd></div>
                <div><dt>"Corral's subtree"</dt><dd><code>{h.cgroup_root.clone()}</code></dd></div>
                <div><dt>"Pressure (PSI)"</dt><dd>{if h.psi { "available" } else { "not available" }}</dd></div>
                <div><dt>"Freeze"</dt><dd>{h.freeze.clone().unwrap_or_else(|| "not available".into())}</dd></div>
                <div><dt>"Kill"</dt><dd>{h.kill.clone()}</dd></div>
                <div><dt>"Checkpoint"</dt><dd data-testid="host-checkpoint">{
                    let c = &h.checkpoint;
                    match (c.available, &c.version) {
                        (true, v) => format!("available (criu {})", v.clone().unwrap_or_default()),
                        (false, Some(v)) => format!("unavailable (criu {v}): {}", c.reason),
                        (false, None) => format!("unavailable: {}", c.reason),
                    }
                }</dd></div>
                <div><dt>"Devices"</dt><dd data-testid="device-policy">{
                    if h.devices.enforcement.is_empty() {
                        "no device cgroup: nodev mounts only".to_owned()
                    } else {
                        h.devices.enforcement.join(" + ")
                    }
                }</dd></div>
            </dl>
            <h3>"Devices a container may use"</h3>
            <div class="chips" data-testid="device-allowlist">
                {h.devices.allowed.iter().map(|a| view! { <span class="chip"><code>{a.clone()}</code></span> }).collect_view()}
            </div>
            <h3>"Controllers"</h3>
            <div class="chips">
                {h.controllers.iter().map(|c| {
                    let ok = c.version.is_some();
                    view! {
                        <span class="chip" class:off=!ok title=c.hierarchy.clone().unwrap_or_default()>
                            <b>{c.name.clone()}</b>" "{c.version.clone().unwrap_or_else(|| "missing".into())}
                        </span>
                    }
                }).collect_view()}
            </div>
            <h3>"Limits on this host"</h3>
            <div class="table-wrap">
                <table class="table compact">
                    <thead><tr><th>"Limit"</th><th>"Controller"</th><th>"Works"</th><th>"Live"</th><th>"Kernel files"</th><th>"Note"</th></tr></thead>
                    <tbody>
                        {h.knobs.iter().map(|k| view! {
                            <tr class:off=!k.available>
                                <td><code>{k.name.clone()}</code></td>
                                <td>{k.controller.clone()}</td>
                                <td>{if k.available { view! { <span class="yes">"yes"</span> } } else { view! { <span class="no">"no"</span> } }}</td>
                                <td>{if k.live { "yes" } else { "at start" }}</td>
                                <td class="files">{k.files.join(", ")}</td>
                                <td class="note">{k.note.clone().unwrap_or_default()}</td>
                            </tr>
                        }).collect_view()}
                    </tbody>
                </table>
            </div>
        </section>
    }
}
