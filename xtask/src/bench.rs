//! `cargo xtask bench [--quick]`: issue 17's benchmark. Builds the release binary (the profile
//! `cargo xtask run` ships), starts a daemon of its own (state dir, socket, cgroup root
//! `corral-bench-PID`) and prints one table, measured side by side in one run: start→exit of
//! `/bin/true` through `corral run --rm`, runc, crun and bare `unshare` on one busybox rootfs;
//! create+start answered; list/get latency over a kept-alive unix socket at 100 (and 1000)
//! sleeping containers; the daemon's idle CPU without the metering sampler; the monitors'
//! RSS/PSS; freezing a 100-process container; the dashboard's WASM size.
//!
//! A benchmark, not a test: nothing is asserted, and `cargo xtask test` does not run it.
//! Everything it creates is undone by [`guard::Guard`], also on error.

mod guard;
mod http;
mod oci;
mod procfs;

use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

use guard::Guard;
use http::Conn;
use procfs::{Samples, ms};

/// The image every Corral container of the benchmark runs (the busybox rootfs, imported).
const IMAGE: &str = "corral-bench/busybox:1";
/// The metering sampler's thread name (`metering::sampler`), left out of the idle CPU.
const SAMPLER_THREAD: &str = "corral-sampler";
/// Where a hybrid host mounts cgroup2; crun 1.8 refuses to run while it is visible.
const UNIFIED: &str = "/sys/fs/cgroup/unified";

/// How much to measure: `--quick` or the full run.
struct Plan {
    /// start→exit runs per runtime (after `WARMUP`).
    starts: usize,
    /// create+start answers timed.
    creates: usize,
    /// Requests per list/get measurement.
    requests: usize,
    /// Container counts list/get and idle CPU are measured at.
    scales: &'static [usize],
    /// Window of the idle-CPU reading.
    idle: Duration,
    /// Freezes timed.
    freezes: usize,
}

const WARMUP: usize = 3;

impl Plan {
    fn new(quick: bool) -> Self {
        if quick {
            Plan {
                starts: 10,
                creates: 10,
                requests: 100,
                scales: &[100],
                idle: Duration::from_secs(10),
                freezes: 5,
            }
        } else {
            Plan {
                starts: 30,
                creates: 30,
                requests: 300,
                scales: &[100, 1000],
                // Long enough to take in one of the runtime's 30 s safety sweeps.
                idle: Duration::from_secs(30),
                freezes: 15,
            }
        }
    }
}

/// One row of the report: what, the result, and what it compares with.
struct Row {
    what: String,
    result: String,
    note: String,
}

#[derive(Default)]
struct Report {
    rows: Vec<Row>,
}

impl Report {
    fn add(&mut self, what: impl Into<String>, result: impl Into<String>, note: impl Into<String>) {
        let row = Row {
            what: what.into(),
            result: result.into(),
            note: note.into(),
        };
        println!("    {}: {}  {}", row.what, row.result, row.note);
        self.rows.push(row);
    }

    fn table(&self) -> String {
        let mut s = String::from("| measurement | result | notes |\n|---|---|---|\n");
        for r in &self.rows {
            let _ = writeln!(s, "| {} | {} | {} |", r.what, r.result, r.note);
        }
        s
    }
}

pub fn cli(root: &Path, args: &[String]) -> Result<()> {
    let mut quick = false;
    for a in args {
        match a.as_str() {
            "--quick" => quick = true,
            other => bail!("bench: unknown option {other} (options: --quick)"),
        }
    }
    super::ensure_root("the benchmark starts a daemon, containers and cgroups")?;
    super::apt_install(&[
        ("busybox", "busybox-static"),
        ("runc", "runc"),
        ("crun", "crun"),
    ])?;
    let plan = Plan::new(quick);
    let corral = build(root)?;
    let started = Instant::now();
    let load_at_start = loadavg();
    let mut report = Report::default();
    {
        let mut g = Guard::new()?;
        if let Err(e) = measure(&plan, &corral, &mut g, &mut report) {
            eprintln!("--- daemon log (tail) ---");
            let log = g.daemon_log();
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            for l in tail.iter().rev() {
                eprintln!("{l}");
            }
            return Err(e);
        }
        println!("==> bench: cleaning up");
    }
    wasm(root, &mut report)?;
    println!(
        "\n## cargo xtask bench{} — {}\n",
        if quick { " --quick" } else { "" },
        host_line(&load_at_start)
    );
    print!("{}", report.table());
    println!(
        "\n(corral: release profile; measured in {:.0} s)",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The release binary, with the dashboard embedded when `cargo xtask ui` has built it.
fn build(root: &Path) -> Result<PathBuf> {
    println!("==> bench: building corral (release profile, as `cargo xtask run` ships it)");
    let target = super::target_dir(root);
    let ui = target.join("ui");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "--release", "-p", "backend", "--bin", "corral"]);
    if ui.join("index.html").is_file() {
        cmd.env("CORRAL_UI_DIR", &ui);
    }
    if !cmd.status().context("run cargo build")?.success() {
        bail!("building corral failed");
    }
    Ok(target.join("release/corral"))
}

fn measure(plan: &Plan, corral: &Path, g: &mut Guard, report: &mut Report) -> Result<()> {
    println!(
        "==> bench: rootfs, image, OCI bundles in {}",
        g.dir.display()
    );
    let rootfs = g.dir.join("rootfs");
    oci::rootfs(&rootfs)?;
    let tarball = g.dir.join("busybox.tar");
    oci::docker_save(&rootfs, IMAGE, &tarball)?;
    let runc_bundle = g.dir.join("runc");
    let crun_bundle = g.dir.join("crun");
    oci::bundle(
        "runc",
        &rootfs,
        &runc_bundle,
        &format!("/{}/runc", g.oci_cgroup),
    )?;
    oci::bundle(
        "crun",
        &rootfs,
        &crun_bundle,
        &format!("/{}/crun", g.oci_cgroup),
    )?;

    println!(
        "==> bench: starting the daemon (cgroup root {})",
        g.cgroup_root
    );
    let daemon = g.start_daemon(corral)?;
    let mut c = Conn::new(&g.socket);
    c.post(
        "/api/v1/images/import",
        Some(&serde_json::json!({ "path": tarball })),
    )?
    .ok_json("image import")?;

    start_exit(plan, corral, g, &runc_bundle, &crun_bundle, report)?;
    create_start(plan, &mut c, report)?;
    api_run(plan, &mut c, report)?;
    freeze(plan, &mut c, report)?;

    let mut have = 0;
    for &n in plan.scales {
        println!("==> bench: {n} sleeping containers");
        let t = Instant::now();
        while have < n {
            c.post(
                "/api/v1/containers",
                Some(
                    &serde_json::json!({"name": format!("idle-{have}"), "image": IMAGE,
                    "command": ["sleep", "3600"], "start": true}),
                ),
            )?
            .ok_json("create a sleeping container")?;
            have += 1;
            if have % 100 == 0 {
                println!("    {have} running ({:.0} s)", t.elapsed().as_secs_f64());
            }
        }
        api_latency(plan, &mut c, n, report)?;
        idle_cpu(plan, daemon, n, report);
        monitors(g, n, report);
    }
    Ok(())
}

/// Runs `argv` `warmup` + `n` times; the wall time from spawn to exit of the last `n`. `{i}`
/// in an argument becomes `first` + the run's number (unique container ids across rounds).
fn time_runs(argv: &[String], first: usize, n: usize, warmup: usize) -> Result<Vec<Duration>> {
    let (prog, args) = argv.split_first().context("nothing to run")?;
    let mut out = Vec::with_capacity(n);
    for i in 0..warmup + n {
        let args: Vec<String> = args
            .iter()
            .map(|a| a.replace("{i}", &(first + i).to_string()))
            .collect();
        let t = Instant::now();
        let o = Command::new(prog)
            .args(&args)
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("run {prog}"))?;
        let dt = t.elapsed();
        if !o.status.success() {
            bail!(
                "{prog} {}: {}: {}",
                args.join(" "),
                o.status,
                String::from_utf8_lossy(&o.stderr).trim()
            );
        }
        if i >= warmup {
            out.push(dt);
        }
    }
    Ok(out)
}

/// `cargo xtask __bench-time FIRST N WARMUP PROG ARGS...`: [`time_runs`] inside another
/// process (crun's private mount namespace); one duration in nanoseconds per line.
pub fn time_cmd(args: &[String]) -> Result<()> {
    let [first, n, warmup, argv @ ..] = args else {
        bail!("__bench-time FIRST N WARMUP PROG ARGS...");
    };
    for d in time_runs(argv, first.parse()?, n.parse()?, warmup.parse()?)? {
        println!("{}", d.as_nanos());
    }
    Ok(())
}

fn hybrid() -> bool {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split_whitespace().nth(4) == Some(UNIFIED) && l.contains(" - cgroup2 "))
}

fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// Rounds the start→exit runs are split into, the runtimes taking turns, so a neighbour's
/// load on a shared machine falls on all of them alike.
const ROUNDS: usize = 5;

fn start_exit(
    plan: &Plan,
    corral: &Path,
    g: &Guard,
    runc_bundle: &Path,
    crun_bundle: &Path,
    report: &mut Report,
) -> Result<()> {
    println!(
        "==> bench: start→exit of /bin/true: corral, runc, crun (in a mount namespace without \
         {UNIFIED}), unshare, {ROUNDS} rounds"
    );
    let host = format!("unix://{}", g.socket.display());
    let corral_run: Vec<String> = vec![
        corral.display().to_string(),
        "--host".into(),
        host.clone(),
        "run".into(),
        "--rm".into(),
        IMAGE.into(),
        "/bin/true".into(),
    ];
    // The CLI's own share: exec of the binary and one request.
    let corral_ps: Vec<String> = vec![
        corral.display().to_string(),
        "--host".into(),
        host,
        "ps".into(),
        "-q".into(),
    ];
    let runc_run: Vec<String> = vec![
        "runc".into(),
        "--root".into(),
        g.dir.join("runc-state").display().to_string(),
        "run".into(),
        "-b".into(),
        runc_bundle.display().to_string(),
        "bench-runc-{i}".into(),
    ];
    let floor = strs(&[
        "unshare",
        "--pid",
        "--fork",
        "--mount",
        "--uts",
        "--ipc",
        "--net",
        "--cgroup",
        "/bin/true",
    ]);
    let crun_root = g.dir.join("crun-state");
    let xtask = std::env::current_exe()?;
    // Hybrid host: crun runs in a private mount namespace where cgroup2 is unmounted (only
    // there; the host keeps it). The timing loop runs inside, so only crun is timed.
    let script = if hybrid() {
        format!("umount {UNIFIED} && exec \"$@\"")
    } else {
        "exec \"$@\"".to_owned()
    };
    let crun = |first: usize, n: usize, warmup: usize| -> Result<Vec<Duration>> {
        let o = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "--", "sh", "-c"])
            .arg(&script)
            .arg("sh")
            .arg(&xtask)
            .arg("__bench-time")
            .args([first, n, warmup].map(|x| x.to_string()))
            .args(["crun", "--cgroup-manager", "cgroupfs", "--root"])
            .arg(&crun_root)
            .args(["run", "-b"])
            .arg(crun_bundle)
            .arg("bench-crun-{i}")
            .stdin(Stdio::null())
            .output()
            .context("run crun in a private mount namespace")?;
        if !o.status.success() {
            bail!("crun runs failed: {}", String::from_utf8_lossy(&o.stderr));
        }
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .map(|l| l.trim().parse::<u64>().map(Duration::from_nanos))
            .collect::<Result<_, _>>()
            .context("crun timings")
    };

    let mut runs: [Vec<Duration>; 5] = Default::default();
    let per_round = plan.starts.div_ceil(ROUNDS);
    for round in 0..ROUNDS {
        let n = per_round.min(plan.starts - round * per_round);
        let first = round * (per_round + WARMUP);
        // The first round warms every path up (page cache, the daemon's first requests).
        let warmup = if round == 0 { WARMUP } else { 1 };
        runs[0].extend(time_runs(&corral_run, first, n, warmup)?);
        runs[1].extend(time_runs(&runc_run, first, n, warmup)?);
        runs[2].extend(crun(first, n, warmup)?);
        runs[3].extend(time_runs(&floor, first, n, warmup)?);
        runs[4].extend(time_runs(&corral_ps, first, n, warmup)?);
    }
    let [corral_runs, runc, crun, floor, ps] = runs.map(Samples::new);

    let what = format!("start→exit of /bin/true, p50 / p90 of {}", plan.starts);
    let line = |s: &Samples| format!("{} / {}", ms(s.median()), ms(s.pct(90.0)));
    let ratio = |a: &Samples, b: &Samples| {
        a.median().as_secs_f64() / b.median().as_secs_f64().max(f64::EPSILON)
    };
    report.add(
        format!("{what}: `corral run --rm IMAGE /bin/true`"),
        line(&corral_runs),
        format!(
            "{:.2} × crun, {:.2} × runc, {:.1} × the unshare floor (goal ≤ 0.8 × crun); \
             the CLI process included",
            ratio(&corral_runs, &crun),
            ratio(&corral_runs, &runc),
            ratio(&corral_runs, &floor)
        ),
    );
    report.add(
        format!("{what}: `runc run` (cgroupfs)"),
        line(&runc),
        version("runc"),
    );
    report.add(
        format!("{what}: `crun run` (cgroupfs, cgroup2 hidden)"),
        line(&crun),
        version("crun"),
    );
    report.add(
        format!("{what}: `unshare --pid --fork --mount --uts --ipc --net --cgroup`"),
        line(&floor),
        "the namespaces alone: the floor",
    );
    report.add(
        format!("`corral ps -q`, p50 / p90 of {}", plan.starts),
        line(&ps),
        "the CLI's own share of a `run`: exec of the binary and one request",
    );
    Ok(())
}

fn version(cmd: &str) -> String {
    Command::new(cmd)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .map(str::to_owned)
        })
        .unwrap_or_default()
}

fn create_start(plan: &Plan, c: &mut Conn, report: &mut Report) -> Result<()> {
    println!("==> bench: create+start answered");
    let mut times = Vec::new();
    for i in 0..WARMUP + plan.creates {
        let name = format!("cs-{i}");
        let body = serde_json::json!({"name": name, "image": IMAGE,
            "command": ["sleep", "3600"], "start": true});
        let t = Instant::now();
        let r = c.post("/api/v1/containers", Some(&body))?;
        let dt = t.elapsed();
        let ct = r.ok_json("create+start")?;
        if ct["status"] != "running" {
            bail!("create+start answered {ct}");
        }
        if i >= WARMUP {
            times.push(dt);
        }
        c.request(
            "DELETE",
            &format!("/api/v1/containers/{name}?force=true"),
            None,
        )?
        .ok_json("remove")?;
    }
    let s = Samples::new(times);
    report.add(
        format!(
            "create+start answered (`POST /containers`, `start: true`), p50 / p90 of {}",
            s.len()
        ),
        format!("{} / {}", ms(s.median()), ms(s.pct(90.0))),
        "`sleep 3600`, over the kept-alive socket",
    );
    Ok(())
}

/// What `corral run --rm IMAGE /bin/true` asks of the daemon, without the CLI process, timed
/// per step: create+start answered, the followed log ending (exit seen), the removal.
fn api_run(plan: &Plan, c: &mut Conn, report: &mut Report) -> Result<()> {
    println!("==> bench: /bin/true through the API alone");
    let mut steps: [Vec<Duration>; 4] = Default::default();
    for i in 0..WARMUP + plan.creates {
        let name = format!("tr-{i}");
        let body = serde_json::json!({"name": name, "image": IMAGE,
            "command": ["/bin/true"], "start": true});
        let t0 = Instant::now();
        c.post("/api/v1/containers", Some(&body))?
            .ok_json("create+start")?;
        let t1 = Instant::now();
        let logs = c.get(&format!("/api/v1/containers/{name}/logs?follow=true"))?;
        if logs.status != 200 {
            bail!("logs of {name}: {}", logs.status);
        }
        let t2 = Instant::now();
        c.request(
            "DELETE",
            &format!("/api/v1/containers/{name}?force=true"),
            None,
        )?
        .ok_json("remove")?;
        let t3 = Instant::now();
        if i >= WARMUP {
            for (v, d) in steps.iter_mut().zip([t1 - t0, t2 - t1, t3 - t2, t3 - t0]) {
                v.push(d);
            }
        }
    }
    let [create, exit, remove, total] = steps.map(Samples::new);
    report.add(
        format!(
            "`/bin/true` through the API alone (`corral run --rm` without the CLI), p50 of {}",
            total.len()
        ),
        format!("{} in all", ms(total.median())),
        format!(
            "create+start answered {}, then exit seen (the followed log ends) {}, removed {}",
            ms(create.median()),
            ms(exit.median()),
            ms(remove.median())
        ),
    );
    Ok(())
}

fn freeze(plan: &Plan, c: &mut Conn, report: &mut Report) -> Result<()> {
    println!("==> bench: freeze of a 100-process container");
    let name = "freeze-100";
    c.post(
        "/api/v1/containers",
        Some(&serde_json::json!({"name": name, "image": IMAGE, "command":
            ["sh", "-c", "for i in $(seq 100); do sleep 3600 & done; wait"], "start": true})),
    )?
    .ok_json("create the 100-process container")?;
    let deadline = Instant::now() + Duration::from_secs(30);
    let procs = loop {
        let top = c
            .get(&format!("/api/v1/containers/{name}/top"))?
            .ok_json("top")?;
        let n = top.as_array().map_or(0, Vec::len);
        if n > 100 {
            break n;
        }
        if Instant::now() > deadline {
            bail!("{name} has {n} processes after 30 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let (mut freezes, mut thaws) = (Vec::new(), Vec::new());
    for _ in 0..plan.freezes {
        let t = Instant::now();
        let r = c
            .post(&format!("/api/v1/containers/{name}/freeze"), None)?
            .ok_json("freeze")?;
        freezes.push(t.elapsed());
        if r["status"] != "paused" {
            bail!("freeze answered {r}");
        }
        let t = Instant::now();
        c.post(&format!("/api/v1/containers/{name}/thaw"), None)?
            .ok_json("thaw")?;
        thaws.push(t.elapsed());
    }
    c.request(
        "DELETE",
        &format!("/api/v1/containers/{name}?force=true"),
        None,
    )?
    .ok_json("remove")?;
    let (f, t) = (Samples::new(freezes), Samples::new(thaws));
    report.add(
        format!(
            "freeze of a {procs}-process container (API call until frozen), p50 / max of {}",
            f.len()
        ),
        format!("{} / {}", ms(f.median()), ms(f.pct(100.0))),
        format!("thaw p50 {}", ms(t.median())),
    );
    Ok(())
}

fn api_latency(plan: &Plan, c: &mut Conn, n: usize, report: &mut Report) -> Result<()> {
    println!("==> bench: list/get at {n} containers");
    let mut time = |path: &dyn Fn(usize) -> String| -> Result<Samples> {
        let mut v = Vec::with_capacity(plan.requests);
        for i in 0..WARMUP + plan.requests {
            let p = path(i);
            let t = Instant::now();
            let r = c.get(&p)?;
            let dt = t.elapsed();
            if r.status != 200 {
                bail!("GET {p}: {}", r.status);
            }
            if i >= WARMUP {
                v.push(dt);
            }
        }
        Ok(Samples::new(v))
    };
    let list = time(&|_| "/api/v1/containers".to_owned())?;
    let get = time(&|i| format!("/api/v1/containers/idle-{}", (i * 7919) % n))?;
    let line = |s: &Samples| format!("p50 {} / p99 {}", ms(s.median()), ms(s.pct(99.0)));
    let note = format!(
        "{} requests, one kept-alive unix-socket connection",
        list.len()
    );
    report.add(
        format!("`GET /api/v1/containers` at {n} containers"),
        line(&list),
        format!("{note}{}", if n >= 1000 { "; goal p99 < 5 ms" } else { "" }),
    );
    report.add(
        format!("`GET /api/v1/containers/{{name}}` at {n} containers"),
        line(&get),
        note,
    );
    Ok(())
}

fn idle_cpu(plan: &Plan, daemon: u32, n: usize, report: &mut Report) {
    println!(
        "==> bench: idle daemon CPU at {n} containers ({} s)",
        plan.idle.as_secs()
    );
    // Let the starts' aftermath (events, first samples) settle.
    std::thread::sleep(Duration::from_secs(3));
    let (rest, sampler) = procfs::idle_cpu(daemon, SAMPLER_THREAD, plan.idle);
    report.add(
        format!("idle daemon CPU at {n} sleeping containers, threads other than the sampler"),
        format!("{rest:.3} % of a core"),
        format!(
            "the sampler (`{SAMPLER_THREAD}`, default 5 s interval) {sampler:.3} %; threads' run \
             time from schedstat, exited threads' from the process's stat; over {} s{}",
            plan.idle.as_secs(),
            if n >= 1000 { "; goal < 0.5 %" } else { "" }
        ),
    );
}

fn monitors(g: &Guard, n: usize, report: &mut Report) {
    let mut rss = Vec::new();
    let mut pss = Vec::new();
    for pid in g.monitors() {
        if let Some((r, p)) = procfs::rss_pss_kib(pid) {
            rss.push(r);
            pss.push(p);
        }
    }
    if rss.is_empty() {
        report.add("monitor (`__shim`) memory", "no monitor found", "");
        return;
    }
    rss.sort_unstable();
    pss.sort_unstable();
    let mib = |kib: u64| kib as f64 / 1024.0;
    report.add(
        format!(
            "monitor (`__shim`) memory, median of {} monitors",
            rss.len()
        ),
        format!(
            "RSS {:.2} MiB, PSS {:.2} MiB",
            mib(rss[rss.len() / 2]),
            mib(pss[pss.len() / 2])
        ),
        format!(
            "all {} together: RSS {:.0} MiB, PSS {:.0} MiB (at {n} containers); goal ≤ 1 MiB each",
            rss.len(),
            mib(rss.iter().sum()),
            mib(pss.iter().sum())
        ),
    );
}

/// The built dashboard's WASM, `gzip -9`: the main module (every page load), what a first
/// visit of each lazily loaded group of pages adds up to, and all modules together.
fn wasm(root: &Path, report: &mut Report) -> Result<()> {
    let loads = super::target_dir(root).join(super::ui::LOADS);
    let Ok(json) = std::fs::read(&loads) else {
        report.add(
            "dashboard WASM, gzip -9",
            "not built",
            "run `cargo xtask ui` first",
        );
        return Ok(());
    };
    let loads: Vec<(String, Vec<std::path::PathBuf>)> = serde_json::from_slice(&json)?;
    let mut sizes = std::collections::BTreeMap::new();
    for file in loads.iter().flat_map(|(_, files)| files) {
        if !sizes.contains_key(file) {
            let raw = std::fs::read(file).with_context(|| format!("read {}", file.display()))?;
            sizes.insert(file.clone(), (raw.len(), super::ui::gzip9(&raw)?));
        }
    }
    let kib = |n: usize| n as f64 / 1024.0;
    for (i, (name, files)) in loads.iter().enumerate() {
        let (raw, gz) = files
            .iter()
            .map(|f| sizes[f])
            .fold((0, 0), |(r, g), (fr, fg)| (r + fr, g + fg));
        report.add(
            format!("dashboard WASM, {name}: raw / gzip -9"),
            format!("{:.0} KiB / {:.0} KiB", kib(raw), kib(gz)),
            if i == 0 {
                "goal ≤ 400 KiB gzip; every page load".to_owned()
            } else {
                format!("{} files, each compressed on its own", files.len())
            },
        );
    }
    let (raw, gz) = sizes
        .values()
        .fold((0, 0), |(r, g), (fr, fg)| (r + fr, g + fg));
    report.add(
        "dashboard WASM, all modules: raw / gzip -9",
        format!("{:.0} KiB / {:.0} KiB", kib(raw), kib(gz)),
        format!("{} files", sizes.len()),
    );
    Ok(())
}

/// Kernel, cgroup layout and CPUs, for the table's heading.
fn host_line(load_at_start: &str) -> String {
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_owned();
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mode = if hybrid() {
        "hybrid cgroups"
    } else if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        "cgroup v2"
    } else {
        "cgroup v1"
    };
    format!(
        "Linux {kernel}, {cpus} CPUs, {mode}; load average {load_at_start} at the start, {} at \
         the end",
        loadavg()
    )
}

/// The 1-minute load average: a shared machine's neighbours show here (their load falls on
/// every runtime alike, but widens the spread).
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .next()
        .unwrap_or("?")
        .to_owned()
}
