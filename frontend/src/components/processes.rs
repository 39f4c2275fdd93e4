//! The "Processes" card of the container page: `GET {path}/top` (the container's processes
//! with their host PIDs, `corral top`'s columns) every few seconds while the container runs
//! and the page shows it; the plain "not running" note otherwise, without asking the daemon.

use leptos::prelude::*;

use crate::{
    api,
    components::{
        poll::poll,
        ui::{Freshness, polled_view},
    },
    format,
    types::ContainerProcess,
};

/// How often the list is read while it is shown, ms.
const TOP_MS: i32 = 3000;

/// `path` is the container's API path (`/api/v1/containers/web`); `status` its state, as the
/// page last read it: the list is polled only while that is `running` or `paused`.
#[component]
pub fn Processes(path: String, status: Signal<String>, now: RwSignal<f64>) -> impl IntoView {
    let live = Memo::new(move |_| status.with(|s| s == "running" || s == "paused"));
    view! {
        <section class="card" data-testid="processes">
            {move || if live.get() {
                view! { <ProcessTable path=path.clone() paused=Signal::derive(move || status.with(|s| s == "paused")) now=now /> }.into_any()
            } else {
                view! {
                    <h2>"Processes"</h2>
                    <p class="muted small" data-testid="processes-note">"The container is not running: it has no processes."</p>
                }.into_any()
            }}
        </section>
    }
}

/// The polled table; it exists (and polls) only while the container runs. A refresh that
/// changes the list draws its rows again (rows of plain text: the smallest code for the WASM).
#[component]
fn ProcessTable(path: String, paused: Signal<bool>, now: RwSignal<f64>) -> impl IntoView {
    let top = poll(TOP_MS, move || {
        let p = format!("{path}/top");
        async move { api::get::<Vec<ContainerProcess>>(&p).await }
    });
    let count = move || {
        top.data.with(|d| match d.as_ref().map(Vec::len) {
            Some(1) => "1 process".to_owned(),
            Some(n) => format!("{n} processes"),
            None => String::new(),
        })
    };
    view! {
        <div class="card-head">
            <h2>"Processes"</h2>
            <div class="btn-row">
                <span class="muted small" data-testid="processes-count">{count}</span>
                <Freshness poll=top now=now />
            </div>
        </div>
        {move || paused.get().then(|| view! {
            <p class="notice" data-testid="processes-paused">"The container is frozen: its processes are listed but do not run."</p>
        })}
        {polled_view(top, "the processes", |list: Vec<ContainerProcess>| if list.is_empty() {
            view! { <p class="empty-state" data-testid="processes-empty">"No processes: the container's cgroup is empty (its processes have just exited)."</p> }.into_any()
        } else {
            view! {
                <div class="table-wrap">
                    <table class="table compact" data-testid="processes-table">
                        <thead><tr>
                            <th class="num" title="on the host">"PID"</th><th class="num hide-sm">"PPID"</th><th>"User"</th>
                            <th class="num" title="CPU over the process's lifetime, % of one core">"CPU"</th>
                            <th class="num" title="user + system">"CPU time"</th><th class="hide-sm">"Started"</th>
                            <th class="hide-sm">"TTY"</th><th>"Command"</th>
                        </tr></thead>
                        <tbody>{list.into_iter().map(row).collect_view()}</tbody>
                    </table>
                </div>
            }.into_any()
        })}
    }
}

/// One process as a table row.
fn row(p: ContainerProcess) -> impl IntoView {
    view! {
        <tr data-testid="process" data-pid=p.pid>
            <td class="num mono" data-testid="process-pid">{p.pid}</td>
            <td class="num mono hide-sm">{p.ppid}</td>
            <td title=format!("uid {}", p.uid)>{p.user}</td>
            <td class="num">{format!("{}%", p.cpu_percent)}</td>
            <td class="num">{cpu_time(p.cpu_seconds)}</td>
            <td class="hide-sm nowrap">{format::datetime(p.started_at)}</td>
            <td class="hide-sm mono">{p.tty.unwrap_or_else(|| "–".into())}</td>
            <td class="mono" data-testid="process-command">{p.command}</td>
        </tr>
    }
}

/// CPU seconds as `ps` would not: `0.42 s` below a minute, then `1m 5s`, `2h 3m`, ….
fn cpu_time(secs: f64) -> String {
    if secs < 60.0 {
        format!("{secs:.2} s")
    } else {
        format::duration(secs)
    }
}

#[cfg(test)]
mod tests {
    use super::cpu_time;

    #[test]
    fn cpu_times_read_short() {
        assert_eq!(cpu_time(0.0), "0.00 s");
        assert_eq!(cpu_time(1.234), "1.23 s");
        assert_eq!(cpu_time(65.0), "1m 5s");
        assert_eq!(cpu_time(7380.0), "2h 3m");
    }
}
