//! Container helpers over the daemon's API (`backend::client::Client`), and the [`Reaper`] that
//! kills what a failed test left running.

use std::{
    fs,
    path::PathBuf,
    time::{Duration, Instant},
};

use backend::client::{Client, ClientError};
use hyper::Method;

use crate::Daemon;

/// One request; the answer parsed as `T` (an empty body parses as JSON `null`).
pub async fn call<T: serde::de::DeserializeOwned>(
    c: &Client,
    method: Method,
    path: &str,
    body: Option<serde_json::Value>,
) -> Result<T, ClientError> {
    let body = body.map(|b| serde_json::to_vec(&b).expect("json body"));
    let (_, bytes) = c.request(method, path, body).await?;
    let bytes = if bytes.is_empty() {
        &b"null"[..]
    } else {
        &bytes[..]
    };
    Ok(serde_json::from_slice(bytes)
        .unwrap_or_else(|e| panic!("{path}: not the expected JSON ({e}): {bytes:?}")))
}

/// `POST /api/v1/images/import` of `path`: the image, or the API's refusal.
pub async fn import(c: &Client, path: &std::path::Path) -> Result<wire::Image, ClientError> {
    call(
        c,
        Method::POST,
        "/api/v1/images/import",
        Some(serde_json::json!({ "path": path })),
    )
    .await
}

/// `POST /api/v1/images/import` of `path` streamed, as `corral image import` asks (no request
/// timeout however slow the machine): every progress line, the last one the outcome.
pub async fn import_streamed(c: &Client, path: &std::path::Path) -> Vec<wire::ImportProgress> {
    let body = serde_json::to_vec(&serde_json::json!({ "path": path })).expect("json body");
    let mut events = Vec::new();
    c.request_lines(
        Method::POST,
        "/api/v1/images/import",
        Some(body),
        &mut |l| {
            events.push(serde_json::from_slice::<wire::ImportProgress>(l).expect("progress line"))
        },
    )
    .await
    .expect("streamed import");
    events
}

pub async fn create(c: &Client, spec: serde_json::Value) -> wire::Container {
    call(c, Method::POST, "/api/v1/containers", Some(spec))
        .await
        .expect("create container")
}

/// `GET /api/v1/billing?{filter}` (e.g. `team=web`, `container=job`) over the last day and the
/// next two hours.
pub async fn billing_last_day(c: &Client, filter: &str) -> wire::billing::BillingReport {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs();
    call(
        c,
        Method::GET,
        &format!(
            "/api/v1/billing?{filter}&from={}&to={}",
            now - 86_400,
            now + 7_200
        ),
        None,
    )
    .await
    .expect("billing report")
}

/// `POST /api/v1/teams` with just a name (an admin's client).
pub async fn add_team(c: &Client, name: &str) {
    let _: serde_json::Value = call(
        c,
        Method::POST,
        "/api/v1/teams",
        Some(serde_json::json!({ "name": name })),
    )
    .await
    .expect("create team");
}

pub async fn get(c: &Client, name: &str) -> wire::Container {
    call(c, Method::GET, &format!("/api/v1/containers/{name}"), None)
        .await
        .expect("get container")
}

/// `POST /api/v1/containers/{name}/{action}` (start, stop, restart, freeze, thaw, kill).
pub async fn action(c: &Client, name: &str, action: &str) -> wire::Container {
    call(
        c,
        Method::POST,
        &format!("/api/v1/containers/{name}/{action}"),
        None,
    )
    .await
    .unwrap_or_else(|e| panic!("{action} {name}: {e}"))
}

pub async fn logs(c: &Client, name: &str) -> String {
    let (_, b) = c
        .request(
            Method::GET,
            &format!("/api/v1/containers/{name}/logs"),
            None,
        )
        .await
        .expect("logs");
    String::from_utf8_lossy(&b).into_owned()
}

/// Polls until the container has exited.
pub async fn wait_exited(c: &Client, name: &str, timeout: Duration) -> wire::Container {
    let deadline = Instant::now() + timeout;
    loop {
        let ct = get(c, name).await;
        if ct.status == "exited" {
            return ct;
        }
        assert!(Instant::now() < deadline, "{name} did not exit: {ct:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `rm -f`.
pub async fn remove(c: &Client, name: &str) {
    let _: serde_json::Value = call(
        c,
        Method::DELETE,
        &format!("/api/v1/containers/{name}?force=true"),
        None,
    )
    .await
    .expect("remove container");
}

pub async fn exec(c: &Client, name: &str, cmd: &[&str]) -> wire::ExecResult {
    call(
        c,
        Method::POST,
        &format!("/api/v1/containers/{name}/exec"),
        Some(serde_json::json!({ "command": cmd })),
    )
    .await
    .expect("exec")
}

/// `POST /containers/{name}/exec` with `Accept: application/x-ndjson`: every frame of the
/// streamed answer, in order.
pub async fn exec_stream(
    c: &Client,
    name: &str,
    req: serde_json::Value,
) -> Result<Vec<wire::ExecFrame>, ClientError> {
    let mut frames = Vec::new();
    c.stream_lines(
        Method::POST,
        &format!("/api/v1/containers/{name}/exec"),
        Some(serde_json::to_vec(&req).expect("json body")),
        1 << 20,
        &mut |line| {
            frames.push(serde_json::from_slice(line).expect("an ExecFrame line"));
            true
        },
    )
    .await?;
    Ok(frames)
}

/// The bytes of a streamed exec frame's `data` (standard base64).
pub fn frame_bytes(f: &wire::ExecFrame) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(f.data.as_deref().unwrap_or_default())
        .expect("base64 data")
}

/// Processes in the test daemon's cgroup subtree whose command line is `argv`.
pub fn procs_running(cgroup_root: &str, argv: &[&str]) -> Vec<i32> {
    let want: Vec<u8> = argv
        .iter()
        .flat_map(|a| [a.as_bytes(), b"\0"].concat())
        .collect();
    crate::subtree_pids(cgroup_root)
        .into_iter()
        .filter(|p| fs::read(format!("/proc/{p}/cmdline")).is_ok_and(|c| c == want))
        .collect()
}

/// `key=value` lines of a script's output, trimmed.
pub fn facts(out: &str) -> std::collections::BTreeMap<String, String> {
    out.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

/// The start time (clock ticks after boot) of `pid`, to tell it from a reused PID.
pub fn start_time(pid: i32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Mount points of cgroup filesystems (v1 and v2).
pub fn cgroup_mounts() -> Vec<PathBuf> {
    let text = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let (pre, post) = l.split_once(" - ")?;
            let fstype = post.split_whitespace().next()?;
            let mp = pre.split_whitespace().nth(4)?;
            (fstype == "cgroup" || fstype == "cgroup2").then(|| PathBuf::from(mp))
        })
        .collect()
}

/// Kills whatever containers a test leaves running (the monitors and inits its daemon started,
/// checked by start time — monitors live outside the container's cgroup) and removes the
/// daemon's cgroup subtree, even when the test panicked. Declare it after the `Daemon` so it
/// runs first.
pub struct Reaper {
    state_dir: PathBuf,
    cgroup_root: String,
}

impl Reaper {
    pub fn new(d: &Daemon) -> Self {
        Reaper {
            state_dir: d.state.path().join("state"),
            cgroup_root: d.cgroup_root.clone(),
        }
    }
}

impl Drop for Reaper {
    fn drop(&mut self) {
        if let Ok(rd) = fs::read_dir(self.state_dir.join("containers")) {
            for e in rd.flatten() {
                let Ok(text) = fs::read_to_string(e.path().join("state.json")) else {
                    continue;
                };
                let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) else {
                    continue;
                };
                for (p, s) in [("shim_pid", "shim_start"), ("init_pid", "init_start")] {
                    let pid = v[p].as_i64().unwrap_or(0) as i32;
                    let start = v[s].as_u64().unwrap_or(0);
                    if pid > 0 && start_time(pid) == Some(start) {
                        let _ = nix::sys::signal::kill(
                            nix::unistd::Pid::from_raw(pid),
                            nix::sys::signal::Signal::SIGKILL,
                        );
                    }
                }
            }
        }
        std::thread::sleep(Duration::from_millis(100));
        crate::remove_cgroup_subtree(&self.cgroup_root);
    }
}

/// Resident memory of `pid` in bytes (`VmRSS`), for the daemon's memory bounds.
pub fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("process status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .expect("VmRSS")
        * 1024
}

/// A running container named `PREFIX-…` doing nothing (`sleep 1000` on `rootfs`), for
/// commands to be exec'd in.
pub async fn sleeper(d: &crate::Daemon, rootfs: &crate::rootfs::Rootfs, prefix: &str) -> String {
    let name = crate::unique(prefix);
    create(
        &d.unix_client(),
        serde_json::json!({"name": name, "rootfs": rootfs.path(),
            "command": ["sleep", "1000"], "start": true}),
    )
    .await;
    name
}

/// Whether this host can checkpoint containers (criu there and `criu check` passing); when it
/// cannot, says why (the checkpoint tests then have nothing to do here).
pub async fn checkpoint_works(c: &Client) -> bool {
    let host: wire::HostInfo = call(c, Method::GET, "/api/v1/host", None)
        .await
        .expect("host");
    if !host.checkpoint.available {
        println!(
            "checkpoint unavailable here ({}): skipped",
            host.checkpoint.reason
        );
    }
    host.checkpoint.available
}

/// `POST /api/v1/containers/{name}/checkpoint` with `body`, which must succeed: a failure's
/// panic carries the end of the criu log it names.
pub async fn checkpoint(
    c: &Client,
    name: &str,
    body: Option<serde_json::Value>,
) -> wire::Checkpoint {
    call(
        c,
        Method::POST,
        &format!("/api/v1/containers/{name}/checkpoint"),
        body,
    )
    .await
    .unwrap_or_else(|e| panic!("checkpoint {name}: {e:?}{}", criu_log(&e.to_string())))
}

/// `POST /api/v1/containers/{name}/restore` with `body`, as [`checkpoint`].
pub async fn restore(c: &Client, name: &str, body: Option<serde_json::Value>) -> wire::Container {
    call(
        c,
        Method::POST,
        &format!("/api/v1/containers/{name}/restore"),
        body,
    )
    .await
    .unwrap_or_else(|e| panic!("restore {name}: {e:?}{}", criu_log(&e.to_string())))
}

/// The end of the criu log an error's text names (`(criu's log: PATH)`), to see why.
pub fn criu_log(text: &str) -> String {
    let Some(path) = text
        .split("(criu's log: ")
        .nth(1)
        .and_then(|r| r.split(')').next())
    else {
        return String::new();
    };
    let log = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    format!(
        "\n--- {path} ---\n{}",
        lines[lines.len().saturating_sub(60)..].join("\n")
    )
}

/// An API refusal as (status, code, field); anything else panics.
pub fn api_status(e: ClientError) -> (u16, String, Option<String>) {
    match e {
        ClientError::Api {
            status,
            code,
            field,
            ..
        } => (status.as_u16(), code, field),
        other => panic!("unexpected {other:?}"),
    }
}
