//! Host cgroups: every hierarchy's tree with usage per node; Corral's own subtree highlighted.
//! Below it, the container network (`network::NetworkCard`).

use std::collections::HashSet;

use leptos::prelude::*;

use crate::{
    api,
    components::{
        poll::{clock, poll},
        ui::{Freshness, polled_view},
    },
    format,
};

#[component]
pub fn Cgroups() -> impl IntoView {
    let now = clock();
    let tree = poll(10_000, || {
        api::get::<wire::CgroupTree>("/api/v1/host/cgroups")
    });
    let selected = RwSignal::new(String::new());
    let filter = RwSignal::new(String::new());
    // Paths the user opened or closed (per hierarchy); the default opens the top two levels
    // and the way down to Corral's subtree.
    let toggled = RwSignal::new(HashSet::<String>::new());

    view! {
        <div class="page-head">
            <h1>"Host cgroups"</h1>
            <Freshness poll=tree now=now />
        </div>
        <p class="sub">"Every control group of this host, read-only. Corral's own subtree is highlighted."</p>
        {polled_view(tree, "the cgroup tree", move |t: wire::CgroupTree| {
            if selected.get_untracked().is_empty() {
                let first = t.hierarchies.iter().find(|h| h.name == "unified" || h.name == "memory")
                    .or(t.hierarchies.first()).map(|h| h.name.clone()).unwrap_or_default();
                selected.set(first);
            }
            let names: Vec<String> = t.hierarchies.iter().map(|h| h.name.clone()).collect();
            let t2 = t.clone();
            view! {
                <div class="toolbar">
                    <div class="tabs" role="tablist" aria-label="hierarchy">
                        {names.into_iter().map(|n| {
                            let n2 = n.clone();
                            let n3 = n.clone();
                            view! {
                                <button role="tab" class="tab" aria-selected=move || (selected.get() == n2).to_string()
                                    on:click=move |_| selected.set(n3.clone())>{n}</button>
                            }
                        }).collect_view()}
                    </div>
                    <input class="search" type="search" placeholder="Filter by path" aria-label="Filter by path"
                        prop:value=move || filter.get() on:input=move |ev| filter.set(event_target_value(&ev)) />
                </div>
                <span class="badge info">{format!("cgroup {}", t.cgroup_mode)}</span>
                {move || {
                    let sel = selected.get();
                    let Some(h) = t2.hierarchies.iter().find(|h| h.name == sel).cloned() else {
                        return view! { <p class="empty-state">"No hierarchy."</p> }.into_any();
                    };
                    view! { <Tree h=h filter=filter toggled=toggled /> }.into_any()
                }}
            }
        })}
        <super::network::NetworkCard />
    }
}

#[component]
fn Tree(
    h: wire::CgroupHierarchy,
    filter: RwSignal<String>,
    toggled: RwSignal<HashSet<String>>,
) -> impl IntoView {
    let nodes = h.nodes.clone();
    let n = nodes.len();
    let has_children: Vec<bool> = (0..n)
        .map(|i| {
            nodes
                .get(i + 1)
                .is_some_and(|next| next.depth > nodes[i].depth)
        })
        .collect();
    // Ancestors of Corral's nodes open by default.
    let corral_paths: Vec<String> = nodes
        .iter()
        .filter(|c| c.corral)
        .map(|c| c.path.clone())
        .collect();
    let default_open = move |node: &wire::CgroupNode| {
        node.depth < 1
            || corral_paths.iter().any(|p| {
                p.starts_with(&format!("{}/", node.path.trim_end_matches('/'))) && p != &node.path
            })
    };
    let max_mem = nodes
        .iter()
        .filter(|c| c.depth > 0)
        .filter_map(|c| c.memory_current)
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let max_cpu = nodes
        .iter()
        .filter(|c| c.depth > 0)
        .filter_map(|c| c.cpu_usage_usec)
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let key_of = {
        let name = h.name.clone();
        move |p: &str| format!("{name}:{p}")
    };
    let rows = move || {
        let f = filter.get().to_lowercase();
        let toggled = toggled.get();
        let mut out = Vec::new();
        let mut hide_below: Option<u32> = None;
        for (i, node) in nodes.iter().enumerate() {
            let key = key_of(&node.path);
            let open = default_open(node) != toggled.contains(&key);
            if f.is_empty() {
                if let Some(d) = hide_below {
                    if node.depth > d {
                        continue;
                    }
                    hide_below = None;
                }
                if has_children[i] && !open {
                    hide_below = Some(node.depth);
                }
            } else if !node.path.to_lowercase().contains(&f) {
                continue;
            }
            out.push((node.clone(), has_children[i], open, key));
        }
        out
    };
    view! {
        {h.truncated.then(|| view! { <div class="notice">"This hierarchy has too many groups; the rest are left out."</div> })}
        <div class="table-wrap">
            <table class="table tree" role="treegrid" aria-label=format!("{} hierarchy", h.name) data-testid="cgroup-tree">
                <thead><tr>
                    <th>"Group"</th><th class="num">"CPU time"</th><th class="num">"Memory"</th>
                    <th class="num">"Tasks"</th><th class="num">"Procs"</th>
                </tr></thead>
                <tbody>
                    <For each=rows key=|(n, _, open, _)| (n.path.clone(), *open) let:row>
                        {
                            let (node, kids, open, key) = row;
                            let name = if node.path == "/" { h.mount.clone() } else {
                                node.path.rsplit('/').next().unwrap_or(&node.path).to_owned()
                            };
                            let indent = format!("padding-left:{}px", 8 + node.depth * 18);
                            let mem_pct = node.memory_current.map(|m| (m as f64 / max_mem * 100.0).min(100.0));
                            let cpu_pct = node.cpu_usage_usec.map(|c| (c as f64 / max_cpu * 100.0).min(100.0));
                            view! {
                                <tr class:corral=node.corral aria-expanded=kids.then(|| open.to_string())
                                    data-path=node.path.clone()>
                                    <td style=indent title=node.path.clone()>
                                        {if kids {
                                            let key = key.clone();
                                            view! {
                                                <button class="twisty" aria-label=if open { "Collapse" } else { "Expand" }
                                                    on:click=move |_| toggled.update(|t| { if !t.remove(&key) { t.insert(key.clone()); } })>
                                                    {if open { "▾" } else { "▸" }}
                                                </button>
                                            }.into_any()
                                        } else { view! { <span class="twisty-space"></span> }.into_any() }}
                                        <span class="node-name">{name}</span>
                                        {node.corral.then(|| view! { <span class="badge ok tiny">"corral"</span> })}
                                    </td>
                                    <td class="num">
                                        {node.cpu_usage_usec.map(|u| format::duration(u as f64 / 1e6)).unwrap_or_else(|| "–".into())}
                                        {cpu_pct.map(|p| view! { <span class="bar"><i style=format!("width:{p:.1}%")></i></span> })}
                                    </td>
                                    <td class="num">
                                        {node.memory_current.map(format::bytes_u).unwrap_or_else(|| "–".into())}
                                        {mem_pct.map(|p| view! { <span class="bar mem"><i style=format!("width:{p:.1}%")></i></span> })}
                                    </td>
                                    <td class="num">{node.pids_current.map(|p| p.to_string()).unwrap_or_else(|| "–".into())}</td>
                                    <td class="num">{node.procs.map(|p| p.to_string()).unwrap_or_else(|| "–".into())}</td>
                                </tr>
                            }
                        }
                    </For>
                </tbody>
            </table>
        </div>
    }
}
