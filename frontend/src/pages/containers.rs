//! Containers: the live table (state, team, CPU, a memory sparkline, actions) and the
//! "new container" form with the server's validation errors beside each field.

use std::collections::HashMap;

use leptos::{either::Either, prelude::*};
use leptos_router::{components::A, hooks::use_navigate};

use crate::{
    api::{self, ApiFailure},
    components::{
        chart::Sparkline,
        checkpoint::StoredCheckpoints,
        events::{Link, LiveBadge, POLL_MS, live_stats, live_stream},
        limits::{LimitFields, LimitInputs},
        poll::{clock, poll},
        ui::{
            ConfirmButton, ErrorBox, Field, FormError, Freshness, StatusBadge, field_errors,
            polled_live,
        },
    },
    format,
    session::use_session,
    types::{Container, CreateContainer, Image, Limits},
};

/// How many memory samples a row's sparkline keeps.
const SPARK: usize = 40;

/// Runs a lifecycle action (`start`, `stop`, …) on a container.
pub async fn act(name: &str, action: &str) -> Result<(), ApiFailure> {
    let path = format!("/api/v1/containers/{}", api::enc(name));
    match action {
        "remove" => api::delete(&format!("{path}?force=true")).await,
        "start" | "freeze" | "thaw" => api::send_text("POST", &format!("{path}/{action}"), None)
            .await
            .map(|_| ()),
        _ => api::post::<_, serde_json::Value>(&format!("{path}/{action}"), &serde_json::json!({}))
            .await
            .map(|_| ()),
    }
}

/// The buttons that make sense for a container's state.
#[component]
pub fn Actions(
    #[prop(into)] name: String,
    #[prop(into)] status: String,
    on_done: Callback<Result<(), ApiFailure>>,
) -> impl IntoView {
    let busy = RwSignal::new(false);
    let run = {
        let name = name.clone();
        move |action: &'static str| {
            let name = name.clone();
            busy.set(true);
            leptos::task::spawn_local(async move {
                let r = act(&name, action).await;
                busy.set(false);
                on_done.run(r);
            });
        }
    };
    let run2 = run.clone();
    let btn = move |action: &'static str, label: &'static str| {
        let run = run.clone();
        view! {
            <button class="btn small" data-action=action disabled=move || busy.get()
                on:click=move |_| run(action)>{label}</button>
        }
    };
    let running = status == "running";
    let paused = status == "paused";
    let stopped = !running && !paused;
    view! {
        <span class="btn-row" role="group" aria-label=format!("Actions for {name}")>
            {stopped.then(|| btn("start", "Start"))}
            {running.then(|| btn("freeze", "Freeze"))}
            {paused.then(|| btn("thaw", "Thaw"))}
            {(running || paused).then(|| btn("restart", "Restart"))}
            {(running || paused).then(|| {
                let run = run2.clone();
                view! {
                    <ConfirmButton label="Stop" confirm=format!("Stop {name}?") disabled=busy
                        on_confirm=Callback::new(move |_| run("stop")) testid="stop" />
                }
            })}
            // SIGKILL, at once: also for a frozen container (it ends exited, thawed).
            {(running || paused).then(|| {
                let run = run2.clone();
                view! {
                    <ConfirmButton label="Kill" confirm=format!("Kill {name} now (SIGKILL)?") disabled=busy
                        on_confirm=Callback::new(move |_| run("kill")) testid="kill" />
                }
            })}
            {
                let run = run2.clone();
                view! {
                    <ConfirmButton label="Remove" confirm=format!("Remove {name} and its logs?") disabled=busy
                        on_confirm=Callback::new(move |_| run("remove")) testid="remove" />
                }
            }
        </span>
    }
}

#[component]
pub fn Containers() -> impl IntoView {
    let session = use_session();
    let now = clock();
    let stream = live_stream();
    let live = live_stats(stream, now);
    // With the stream up, lifecycle events refresh the list; the slow poll is a safety net.
    let list_every = Signal::derive(move || {
        if stream.link.get() == Link::Live {
            30_000
        } else {
            POLL_MS
        }
    });
    let list = poll(list_every, || {
        api::get::<Vec<Container>>("/api/v1/containers?all=true")
    });
    stream.on_change(move || list.refresh());
    let op_error = RwSignal::new(None::<ApiFailure>);
    let search = RwSignal::new(String::new());
    let team = RwSignal::new(String::new());
    let show_exited = RwSignal::new(true);
    // Memory samples per container, from the live stats, for the sparklines.
    let mem_hist = RwSignal::new(HashMap::<String, Vec<f64>>::new());
    Effect::new(move |_| {
        let Some(s) = live.stats.get() else { return };
        mem_hist.update(|h| {
            for l in s.stats.iter().filter(|l| l.kind == "container") {
                let v = h.entry(l.name.clone()).or_default();
                v.push(l.mem_bytes as f64);
                if v.len() > SPARK {
                    v.remove(0);
                }
            }
        });
    });
    let on_done = Callback::new(move |r: Result<(), ApiFailure>| {
        op_error.set(r.err());
        list.refresh();
        live.polled.refresh();
    });
    let teams = move || {
        let mut t: Vec<String> = list.data.with(|l| {
            l.as_ref()
                .map(|l| l.iter().map(|c| c.team.clone()).collect())
                .unwrap_or_default()
        });
        t.sort();
        t.dedup();
        t
    };
    // The rows shown, in order; `For` keeps each row's element by name across polls.
    let rows = Memo::new(move |_| {
        let q = search.get().to_lowercase();
        let t = team.get();
        let exited = show_exited.get();
        list.data.with(|all| {
            all.iter()
                .flatten()
                .filter(|c| {
                    (q.is_empty()
                        || c.name.to_lowercase().contains(&q)
                        || c.image.to_lowercase().contains(&q))
                        && (t.is_empty() || c.team == t)
                        && (exited || c.status != "exited")
                })
                .map(|c| c.name.clone())
                .collect::<Vec<_>>()
        })
    });
    // The list and the live stats keyed by name, built once per poll or sample, so a row finds
    // its own in O(1) instead of searching both for every row.
    let by_name = Memo::new(move |_| {
        list.data.with(|l| {
            l.iter()
                .flatten()
                .map(|c| (c.name.clone(), c.clone()))
                .collect::<HashMap<_, _>>()
        })
    });
    let stat_by_name = Memo::new(move |_| {
        live.stats.with(|s| {
            s.iter()
                .flat_map(|s| &s.stats)
                .filter(|l| l.kind == "container")
                .map(|l| (l.name.clone(), l.clone()))
                .collect::<HashMap<_, _>>()
        })
    });
    let row = move |name: String| {
        let n = name.clone();
        // This row's container, updated in place by every poll.
        let c = Memo::new(move |prev: Option<&Option<Container>>| {
            by_name
                .with(|m| m.get(&n).cloned())
                .or_else(|| prev.cloned().flatten())
        });
        let get = move |f: fn(&Container) -> String| {
            move || c.with(|c| c.as_ref().map(f).unwrap_or_default())
        };
        let status = Memo::new(move |_| {
            c.with(|c| c.as_ref().map(|c| c.status.clone()))
                .unwrap_or_default()
        });
        let n2 = name.clone();
        let stat = Memo::new(move |_| stat_by_name.with(|m| m.get(&n2).cloned()));
        let reserved = Memo::new(move |_| c.with(|c| c.as_ref().and_then(|c| c.limits.cpus)));
        let mem_max = Memo::new(move |_| {
            c.with(|c| c.as_ref().and_then(|c| c.limits.memory_max))
                .map(|m| m as f64)
        });
        // Ticks with the clock, so "up 5m" is never a stale number.
        let since = move || {
            let t = now.get() / 1000.0;
            c.with(|c| {
                let c = c.as_ref()?;
                match c.status.as_str() {
                    "running" | "paused" => c
                        .started_at
                        .map(|s| format!("up {}", format::duration(t - s as f64))),
                    "exited" => Some(format!(
                        "exit {} · {}",
                        c.exit_code.map_or("?".into(), |x| x.to_string()),
                        c.finished_at
                            .map(|f| format!("{} ago", format::duration(t - f as f64)))
                            .unwrap_or_default()
                    )),
                    _ => Some(format!(
                        "created {} ago",
                        format::duration(t - c.created_at as f64)
                    )),
                }
            })
        };
        let href = format!("/containers/{}", api::enc(&name));
        let (n3, n4, label) = (name.clone(), name.clone(), name.clone());
        view! {
            <tr data-name=name data-status=move || status.get()>
                <td><A href=href><b>{label}</b></A></td>
                <td><StatusBadge status=status /></td>
                <td>{get(|c| c.team.clone())}</td>
                <td class="hide-sm mono">{get(|c| c.image.clone())}</td>
                <td class="num">
                    {move || stat.get().map(|l| {
                        let r = reserved.get();
                        let cap = r.unwrap_or(1.0).max(0.01);
                        let pct = (l.cpu_cores / cap * 100.0).clamp(0.0, 100.0);
                        Either::Left(view! {
                            <span class="cpu-cell" title=format!("{} of {} cores", format::cores(l.cpu_cores), r.map_or("unlimited".into(), format::cores))>
                                <span data-testid="cpu">{format!("{:.0}%", l.cpu_cores * 100.0)}</span>
                                <span class="bar"><i style=format!("width:{pct:.0}%")></i></span>
                            </span>
                        })
                    }).unwrap_or_else(|| Either::Right(view! { <span class="cpu-cell muted">"–"</span> }))}
                </td>
                <td class="num">
                    <span class="cpu-cell">
                        {move || {
                            let n3 = n3.clone();
                            view! {
                                <Sparkline values=Signal::derive(move || mem_hist.with(|h| h.get(&n3).cloned().unwrap_or_default()))
                                    max=mem_max.get().unwrap_or(0.0) title="memory" />
                            }
                        }}
                        {move || stat.get().map(|l| format::bytes_u(l.mem_bytes)).unwrap_or_else(|| "–".into())}
                    </span>
                </td>
                <td class="hide-sm muted nowrap">{since}</td>
                <td class="actions">
                    <Show when=move || session.can_operate()>
                        {
                            let n4 = n4.clone();
                            move || view! { <Actions name=n4.clone() status=status.get() on_done=on_done /> }
                        }
                    </Show>
                </td>
            </tr>
        }
    };

    view! {
        <div class="page-head">
            <h1>"Containers"</h1>
            <Freshness poll=list now=now />
            <LiveBadge stream=stream view_=live now=now />
            <Show when=move || session.can_operate()>
                <A href="/containers/new" attr:class="btn primary" attr:data-testid="new-container">"+ New container"</A>
            </Show>
        </div>
        <div class="toolbar">
            <input class="search" type="search" placeholder="Search name or image" aria-label="Search containers"
                prop:value=move || search.get() on:input=move |ev| search.set(event_target_value(&ev)) />
            <select aria-label="Team" on:change=move |ev| team.set(event_target_value(&ev))>
                <option value="">"All teams"</option>
                {move || teams().into_iter().map(|t| view! { <option value=t.clone()>{t.clone()}</option> }).collect_view()}
            </select>
            <label class="check"><input type="checkbox" prop:checked=move || show_exited.get()
                on:change=move |ev| show_exited.set(event_target_checked(&ev)) />" Show exited"</label>
        </div>
        {move || op_error.get().map(|e| view! { <ErrorBox error=e /> })}
        <section class="card flush">
            {polled_live(list, "containers", move || view! {
                <Show when=move || rows.with(|r| !r.is_empty()) fallback=|| view! {
                    <p class="empty-state">"No containers here yet. "
                        <A href="/containers/new">"Start one"</A>" from an image or a root filesystem."</p>
                }>
                    <div class="table-wrap">
                        <table class="table" data-testid="containers-table">
                            <thead><tr>
                                <th>"Name"</th><th>"State"</th><th>"Team"</th><th class="hide-sm">"Image"</th>
                                <th class="num">"CPU"</th><th class="num">"Memory"</th><th class="hide-sm">"Since"</th><th></th>
                            </tr></thead>
                            <tbody>
                                <For each=move || rows.get() key=|n| n.clone() children=row />
                            </tbody>
                        </table>
                    </div>
                </Show>
            })}
        </section>
        <StoredCheckpoints can_operate=Signal::derive(move || session.can_operate())
            on_done=Callback::new(move |()| list.refresh()) />
    }
}

/// Splits a command line into words: whitespace separates, quotes group, `\` escapes.
pub fn split_words(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    let mut any = false;
    let mut chars = s.chars();
    while let Some(ch) = chars.next() {
        match (quote, ch) {
            (Some(q), c) if c == q => quote = None,
            (None, '"' | '\'') => {
                quote = Some(ch);
                any = true;
            }
            (_, '\\') => {
                if let Some(n) = chars.next() {
                    cur.push(n);
                    any = true;
                }
            }
            (None, c) if c.is_whitespace() => {
                if any {
                    out.push(std::mem::take(&mut cur));
                    any = false;
                }
            }
            (_, c) => {
                cur.push(c);
                any = true;
            }
        }
    }
    if any {
        out.push(cur);
    }
    out
}

/// `KEY=value` lines (blank lines skipped); a line without `=` is an error on `labels`.
fn parse_labels(
    text: &str,
) -> Result<std::collections::BTreeMap<String, String>, (String, String)> {
    let mut out = std::collections::BTreeMap::new();
    for (i, line) in text.lines().map(str::trim).enumerate() {
        if line.is_empty() {
            continue;
        }
        match line.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => {
                out.insert(k.trim().to_owned(), v.trim().to_owned());
            }
            _ => {
                return Err((
                    "labels".into(),
                    format!("line {}: {line:?} must be KEY=value", i + 1),
                ));
            }
        }
    }
    Ok(out)
}

/// Volume lines: `HOST:CONTAINER[:ro|:rw]` (a bind) or `/PATH` alone (a tmpfs); a malformed
/// line is an error on `mounts[i]`.
fn parse_volumes(text: &str) -> Result<Vec<wire::Mount>, (String, String)> {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let mut out = Vec::new();
    for (i, line) in lines.into_iter().enumerate() {
        let parts: Vec<&str> = line.split(':').collect();
        let (source, destination, readonly) = match parts.as_slice() {
            [d] => (None, *d, false),
            [s, d] | [s, d, "rw"] => (Some(*s), *d, false),
            [s, d, "ro"] => (Some(*s), *d, true),
            _ => {
                return Err((
                    format!("mounts[{i}]"),
                    format!("{line:?} must be HOST:CONTAINER[:ro] or /PATH (a tmpfs)"),
                ));
            }
        };
        out.push(wire::Mount {
            kind: if source.is_some() { "bind" } else { "tmpfs" }.into(),
            source: source.map(str::to_owned),
            destination: destination.to_owned(),
            readonly,
        });
    }
    Ok(out)
}

const FORM_FIELDS: &[&str] = &[
    "name",
    "team",
    "image",
    "rootfs",
    "command",
    "env",
    "network",
    "ports",
    "user",
    "workdir",
    "labels",
    "mounts",
    "limits.cpus",
    "limits.cpu_weight",
    "limits.cpuset_cpus",
    "limits.cpuset_mems",
    "limits.memory_max",
    "limits.memory_high",
    "limits.memory_low",
    "limits.memory_min",
    "limits.swap_max",
    "limits.io_weight",
    "limits.io_max",
    "limits.pids_max",
];

#[component]
pub fn NewContainer() -> impl IntoView {
    let navigate = use_navigate();
    let session = use_session();
    let images = poll(0, || api::get::<Vec<Image>>("/api/v1/images"));
    let name = RwSignal::new(String::new());
    let team = RwSignal::new(
        session
            .me
            .with_untracked(|m| m.as_ref().and_then(|m| m.teams.first().cloned()))
            .unwrap_or_else(|| "default".into()),
    );
    let source = RwSignal::new("image".to_owned());
    let image = RwSignal::new(String::new());
    let rootfs = RwSignal::new(String::new());
    let command = RwSignal::new(String::new());
    let env = RwSignal::new(String::new());
    let network = RwSignal::new(String::new());
    let ports = RwSignal::new(String::new());
    let restart = RwSignal::new("no".to_owned());
    let user = RwSignal::new(String::new());
    let workdir = RwSignal::new(String::new());
    let labels = RwSignal::new(String::new());
    let volumes = RwSignal::new(String::new());
    let start = RwSignal::new(true);
    let tty = RwSignal::new(false);
    let open_stdin = RwSignal::new(false);
    let limits = LimitFields::new(&Limits::default());
    let errors = RwSignal::new(Vec::<(String, String)>::new());
    let create = Action::new_local(move |spec: &CreateContainer| {
        let spec = spec.clone();
        async move { api::post::<_, Container>("/api/v1/containers", &spec).await }
    });
    Effect::new(move |_| match create.value().get() {
        Some(Ok(c)) => navigate(
            &format!("/containers/{}", api::enc(&c.name)),
            Default::default(),
        ),
        Some(Err(e)) => errors.set(field_errors(&e)),
        None => {}
    });
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let lim = match limits.parse() {
            Ok(l) => l,
            Err(e) => {
                errors.set(e);
                return;
            }
        };
        let (labels_map, mounts) = match (
            parse_labels(&labels.get_untracked()),
            parse_volumes(&volumes.get_untracked()),
        ) {
            (Ok(l), Ok(m)) => (l, m),
            (l, m) => {
                errors.set(l.err().into_iter().chain(m.err()).collect());
                return;
            }
        };
        errors.set(vec![]);
        let opt = |s: RwSignal<String>| {
            let t = s.get_untracked().trim().to_owned();
            (!t.is_empty()).then_some(t)
        };
        let from_image = source.get_untracked() == "image";
        let spec = CreateContainer {
            name: opt(name),
            team: opt(team),
            image: if from_image { opt(image) } else { None },
            rootfs: if from_image { None } else { opt(rootfs) },
            command: split_words(&command.get_untracked()),
            env: env
                .get_untracked()
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(str::to_owned)
                .collect(),
            limits: lim,
            network: opt(network),
            ports: ports
                .get_untracked()
                .split([',', '\n'])
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(str::to_owned)
                .collect(),
            restart: Some(restart.get_untracked()),
            user: opt(user),
            workdir: opt(workdir),
            labels: labels_map,
            mounts,
            start: start.get_untracked(),
            tty: tty.get_untracked(),
            open_stdin: open_stdin.get_untracked(),
            ..Default::default()
        };
        create.dispatch(spec);
    };
    let env_error =
        move || errors.with(|e| e.iter().find(|(f, _)| f == "env").map(|(_, m)| m.clone()));
    let network_error = move || {
        errors.with(|e| {
            e.iter()
                .find(|(f, _)| f == "network")
                .map(|(_, m)| m.clone())
        })
    };
    // `ports` or `ports[i]` (the i-th entry): shown beside the ports field.
    let ports_error = move || {
        errors.with(|e| {
            e.iter()
                .find(|(f, _)| f == "ports" || f.starts_with("ports["))
                .map(|(f, m)| {
                    match f
                        .strip_prefix("ports[")
                        .and_then(|r| r.strip_suffix(']'))
                        .and_then(|i| i.parse::<usize>().ok())
                    {
                        Some(i) => format!("port {}: {m}", i + 1),
                        None => m.clone(),
                    }
                })
        })
    };
    let labels_error = move || {
        errors.with(|e| {
            e.iter()
                .find(|(f, _)| f == "labels" || f.starts_with("labels."))
                .map(|(_, m)| m.clone())
        })
    };
    // `mounts` or `mounts[i]`: the i-th volume line.
    let volumes_error = move || {
        errors.with(|e| {
            e.iter()
                .find(|(f, _)| f == "mounts" || f.starts_with("mounts["))
                .map(|(f, m)| {
                    match f
                        .strip_prefix("mounts[")
                        .and_then(|r| r.split(']').next())
                        .and_then(|i| i.parse::<usize>().ok())
                    {
                        Some(i) => format!("volume {}: {m}", i + 1),
                        None => m.clone(),
                    }
                })
        })
    };
    view! {
        <div class="crumbs"><A href="/containers">"Containers"</A>" / new"</div>
        <div class="page-head"><h1>"New container"</h1></div>
        <form class="card" on:submit=submit data-testid="new-form" novalidate=true>
            <fieldset>
                <legend>"What to run"</legend>
                <div class="form-grid">
                    <Field label="Name" name="name" value=name errors=errors placeholder="generated when empty" />
                    <Field label="Team" name="team" value=team errors=errors hint="The cgroup level it is billed to" />
                </div>
                <div class="tabs" role="radiogroup" aria-label="Source">
                    <button type="button" class="tab" role="radio" aria-selected=move || (source.get() == "image").to_string()
                        on:click=move |_| source.set("image".into())>"Image"</button>
                    <button type="button" class="tab" role="radio" aria-selected=move || (source.get() == "rootfs").to_string()
                        data-testid="source-rootfs" on:click=move |_| source.set("rootfs".into())>"Root filesystem"</button>
                </div>
                <div class="spacer"></div>
                <Show when=move || source.get() == "image" fallback=move || view! {
                    <Field label="Root filesystem" name="rootfs" value=rootfs errors=errors placeholder="/srv/rootfs/alpine"
                        hint="An absolute directory on the host, used read-only" />
                }>
                    <Field label="Image" name="image" value=image errors=errors placeholder="alpine:3.20" />
                    {move || images.data.get().filter(|l| !l.is_empty()).map(|l| view! {
                        <div class="chips pick">{l.into_iter().flat_map(|i| i.tags).map(|t| {
                            let t2 = t.clone();
                            view! { <button type="button" class="chip" on:click=move |_| image.set(t2.clone())>{t}</button> }
                        }).collect_view()}</div>
                    })}
                </Show>
                <Field label="Command" name="command" value=command errors=errors placeholder="the image's default"
                    hint="Words split like a shell: sh -c \"echo hi\"" />
                <div class="field" class:invalid=move || env_error().is_some()>
                    <label for="f-env">"Environment"</label>
                    <textarea id="f-env" rows="3" placeholder="KEY=value, one per line"
                        prop:value=move || env.get() on:input=move |ev| env.set(event_target_value(&ev))></textarea>
                    <small class="field-error" data-field="env" role="alert">{env_error}</small>
                </div>
            </fieldset>
            <fieldset>
                <legend>"Limits"</legend>
                <LimitInputs f=limits errors=errors more=true />
            </fieldset>
            <fieldset>
                <legend>"Options"</legend>
                <div class="form-grid">
                    <div class="field">
                        <label for="f-network">"Network"</label>
                        <select id="f-network" on:change=move |ev| network.set(event_target_value(&ev))>
                            <option value="" selected=true>"default — none, or bridge when ports are published"</option>
                            <option value="none">"none — own namespace, loopback only"</option>
                            <option value="bridge">"bridge — Corral's bridge with NAT and published ports"</option>
                            <option value="host">"host — share the host's network"</option>
                        </select>
                        <small class="field-error" data-field="network" role="alert">{network_error}</small>
                    </div>
                    <div class="field" class:invalid=move || ports_error().is_some()>
                        <label for="f-ports">"Published ports"</label>
                        <input id="f-ports" name="ports" type="text" placeholder="8080:80, 127.0.0.1:5353:53/udp"
                            aria-invalid=move || ports_error().is_some().to_string() aria-describedby="f-ports-err"
                            prop:value=move || ports.get() on:input=move |ev| ports.set(event_target_value(&ev))
                            on:change=move |ev| ports.set(event_target_value(&ev)) />
                        <small class="hint">"[IP:]HOST:CONTAINER[/tcp|udp], comma-separated; bound to 127.0.0.1 unless an address is given"</small>
                        <small class="field-error" id="f-ports-err" data-field="ports" role="alert">{ports_error}</small>
                    </div>
                    <Field label="User" name="user" value=user errors=errors placeholder="the image's (UID[:GID])"
                        hint="Numeric, e.g. 1000:1000" />
                    <Field label="Working directory" name="workdir" value=workdir errors=errors placeholder="the image's, or /" />
                    <div class="field">
                        <label for="f-restart">"Restart"</label>
                        <select id="f-restart" on:change=move |ev| restart.set(event_target_value(&ev))>
                            <option value="no" selected=true>"never"</option>
                            <option value="on-failure">"on failure"</option>
                            <option value="always">"always"</option>
                        </select>
                    </div>
                </div>
                <div class="form-grid">
                    <div class="field" class:invalid=move || volumes_error().is_some()>
                        <label for="f-volumes">"Volumes"</label>
                        <textarea id="f-volumes" rows="2" placeholder="/srv/data:/data:ro, one per line; /scratch alone is a tmpfs"
                            aria-describedby="f-volumes-err"
                            prop:value=move || volumes.get() on:input=move |ev| volumes.set(event_target_value(&ev))></textarea>
                        <small class="hint">"HOST:CONTAINER[:ro] binds a host directory (admins); /PATH alone mounts a tmpfs"</small>
                        <small class="field-error" id="f-volumes-err" data-field="mounts" role="alert">{volumes_error}</small>
                    </div>
                    <div class="field" class:invalid=move || labels_error().is_some()>
                        <label for="f-labels">"Labels"</label>
                        <textarea id="f-labels" rows="2" placeholder="KEY=value, one per line"
                            aria-describedby="f-labels-err"
                            prop:value=move || labels.get() on:input=move |ev| labels.set(event_target_value(&ev))></textarea>
                        <small class="hint">"Billing can group by them (e.g. project=web)"</small>
                        <small class="field-error" id="f-labels-err" data-field="labels" role="alert">{labels_error}</small>
                    </div>
                </div>
                <label class="check"><input type="checkbox" id="f-tty" prop:checked=move || tty.get()
                    on:change=move |ev| tty.set(event_target_checked(&ev)) />" Terminal (-t)"</label>
                <label class="check"><input type="checkbox" id="f-open-stdin" prop:checked=move || open_stdin.get()
                    on:change=move |ev| open_stdin.set(event_target_checked(&ev)) />" Keep stdin open (-i)"</label>
                <small class="hint">"With both, the container's page can attach to its terminal"</small>
                <label class="check"><input type="checkbox" prop:checked=move || start.get()
                    on:change=move |ev| start.set(event_target_checked(&ev)) />" Start it now"</label>
            </fieldset>
            <FormError errors=errors known=FORM_FIELDS />
            <div class="btn-row">
                <button class="btn primary" type="submit" data-testid="create" disabled=move || create.pending().get()>
                    {move || if create.pending().get() { "Creating…" } else { "Create container" }}
                </button>
                <A href="/containers" attr:class="btn ghost">"Cancel"</A>
            </div>
        </form>
    }
}

#[cfg(test)]
mod tests {
    use super::split_words;

    #[test]
    fn words() {
        assert_eq!(
            split_words(r#"sh -c "echo hi there" 'a b'"#),
            ["sh", "-c", "echo hi there", "a b"]
        );
        assert_eq!(split_words(r#"x "" y"#), ["x", "", "y"]);
        assert!(split_words("   ").is_empty());
    }
}
