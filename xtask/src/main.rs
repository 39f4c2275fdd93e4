//! Build and test automation (matklad's xtask pattern): `cargo xtask run` and `cargo xtask test`
//! work on a fresh Debian machine with only rustup and cargo, installing what they need.

mod bench;
mod ui;
mod vm;
mod xterm;

use std::{
    env,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result, bail};

const USAGE: &str = "\
usage: cargo xtask <command>

  run [-- SERVE_ARGS...]   build the dashboard and the release binary, then run the daemon
                           on http://127.0.0.1:7700 with state under ./var
  test                     everything CI checks: fmt, clippy, unit, integration, browser and
                           cgroup-v2 VM tests, then a leak check
  ui                       build the dashboard only (target/ui)
  leaks                    the leak check alone: fails on anything Corral's tests, benchmark or
                           a daemon of this checkout's build left on this machine
  bench [--quick]          issue 17's benchmark: corral vs runc vs crun start latency, API
                           latency at 100/1000 containers, idle CPU, monitor memory, freeze,
                           WASM size, printed as one table (not part of `test`)
  vm [-- TEST_ARGS...]     run the kernel tests inside a pure cgroup-v2 VM (qemu, TCG);
                           options: --timeout SECS --mem MIB --cpus N --kernel PATH --keep
";

fn main() -> Result<()> {
    let args: Vec<String> = env::args().skip(1).collect();
    let root = workspace_root();
    env::set_current_dir(&root)?;
    match args.first().map(String::as_str) {
        Some("run") => run(&root, &args[1..]),
        Some("test") => test(&root),
        Some("ui") => ui::build(&root).map(|_| ()),
        Some("leaks") => leak_check(&root),
        Some("vm") => vm::cli(&args[1..]),
        Some("bench") => bench::cli(&root, &args[1..]),
        // The benchmark's timing loop, run by itself inside crun's private mount namespace.
        Some("__bench-time") => bench::time_cmd(&args[1..]),
        _ => {
            eprint!("{USAGE}");
            bail!("unknown or missing command")
        }
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

/// `cargo xtask run`: dashboard + release binary, then `corral serve` in the foreground.
fn run(root: &Path, extra: &[String]) -> Result<()> {
    ensure_root("the daemon creates cgroups and namespaces")?;
    ui::build(root)?;
    cargo(&["build", "--release", "-p", "backend", "--bin", "corral"])?;
    let var = root.join("var");
    std::fs::create_dir_all(&var)?;
    let bin = target_dir(root).join("release/corral");
    let socket = var.join("run/corral.sock");
    println!();
    println!("Corral dashboard: http://127.0.0.1:7700/");
    println!(
        "From another machine: ssh -L 7700:localhost:7700 THIS_HOST, then open http://localhost:7700/"
    );
    println!(
        "CLI: export CORRAL_HOST=unix://{}; {} version",
        socket.display(),
        bin.display()
    );
    println!();
    let extra_args = extra.strip_prefix(&["--".to_owned()]).unwrap_or(extra);
    let status = Command::new(&bin)
        .arg("serve")
        .args(["--listen", "127.0.0.1:7700"])
        .arg("--state-dir")
        .arg(var.join("state"))
        .arg("--socket")
        .arg(&socket)
        .args(extra_args)
        .status()
        .with_context(|| format!("start {}", bin.display()))?;
    if !status.success() {
        bail!("corral serve exited with {status}");
    }
    Ok(())
}

/// `cargo xtask test`: what CI runs.
fn test(root: &Path) -> Result<()> {
    ensure_root("the kernel tests create cgroups, namespaces and mounts")?;
    apt_install(&[
        ("chromium", "chromium"),
        ("chromedriver", "chromium-driver"),
        ("busybox", "busybox-static"),
        ("nft", "nftables"),
        ("iptables", "iptables"),
        // The real docker CLI as the Docker API's client (no dockerd is started).
        ("docker", "docker.io"),
        // A real registry for the pull tests, filled by skopeo; htpasswd for its basic auth.
        ("docker-registry", "docker-registry"),
        ("skopeo", "skopeo"),
        ("htpasswd", "apache2-utils"),
        // Checkpoint and restore (issue 18): on the host its `criu check` is the refusal's
        // reason; the VM carries it to checkpoint for real.
        ("criu", "criu"),
        // The fleet's shared ledger (issue 19): the tests start their own PostgreSQL with
        // initdb + pg_ctl on a temporary directory and port.
        ("pg_ctlcluster", "postgresql"),
    ])?;
    ui::build(root)?;

    step("rustfmt");
    cargo(&["fmt", "--all", "--check"])?;
    // Without --workspace, cargo uses `default-members`: the host crates. The frontend is
    // checked for the target it is built for.
    step("clippy");
    cargo(&["clippy", "--all-targets", "--", "-D", "warnings"])?;
    cargo(&[
        "clippy",
        "-p",
        "frontend",
        "--target",
        "wasm32-unknown-unknown",
        "--",
        "-D",
        "warnings",
    ])?;

    step("unit and integration tests (api, kernel, browser)");
    // The tests' build of the daemon has the crash tests' fault-injection points (the same
    // features the `tests` crate asks for, so the backend is compiled once).
    cargo(&[
        "build",
        "-p",
        "backend",
        "--bin",
        "corral",
        "--features",
        "fault-injection",
    ])?;
    // Browser tests must not be skipped in CI: fail if Chromium or the dashboard is missing.
    let tools = metrics_tools(root)?;
    cargo_env(
        &["test"],
        &[
            ("CORRAL_REQUIRE_BROWSER", "1"),
            (
                "PROMTOOL",
                tools.promtool.to_str().context("promtool path")?,
            ),
            ("PYTHONPATH", tools.pylib.to_str().context("pylib path")?),
        ],
    )?;

    step("schemathesis against the OpenAPI document");
    let corral = target_dir(root).join("debug/corral");
    let ok = Command::new("python3")
        .arg(root.join("tests/schemathesis/run.py"))
        .arg("--corral")
        .arg(&corral)
        .status()
        .context("run python3 tests/schemathesis/run.py")?
        .success();
    if !ok {
        bail!("schemathesis found failures");
    }

    step("leak check (host)");
    leak_check(root)?;

    step("kernel tests inside a pure cgroup-v2 VM");
    let bins = vm::build_test_binaries()?;
    let report = vm::run_kernel_suite(&vm::VmOptions::from_binaries(&bins))?;
    println!("vm: {report}");
    println!("\nxtask test: all checks passed");
    Ok(())
}

fn step(name: &str) {
    println!("\n==> {name}");
}

fn cargo(args: &[&str]) -> Result<()> {
    cargo_env(args, &[])
}

fn cargo_env(args: &[&str], envs: &[(&str, &str)]) -> Result<()> {
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(&cargo)
        .args(args)
        .envs(envs.iter().copied())
        .status()
        .with_context(|| format!("run cargo {}", args.join(" ")))?;
    if !status.success() {
        bail!("cargo {} failed ({status})", args.join(" "));
    }
    Ok(())
}

fn target_dir(root: &Path) -> PathBuf {
    env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
}

fn ensure_root(why: &str) -> Result<()> {
    // SAFETY-free check: the effective uid from /proc, no libc needed.
    let status = std::fs::read_to_string("/proc/self/status").context("read /proc/self/status")?;
    let euid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("");
    if euid != "0" {
        bail!("run this as root: {why}");
    }
    Ok(())
}

/// The checkers the /metrics tests run: Prometheus' `promtool` and the Python
/// `prometheus_client` OpenMetrics parser.
struct MetricsTools {
    promtool: PathBuf,
    pylib: PathBuf,
}

/// Finds or fetches the metrics checkers into `target/tools`. `promtool` comes out of Debian's
/// `prometheus` package unpacked (installing it would start a Prometheus server); the parser is
/// pip-installed into a private directory put on `PYTHONPATH`.
fn metrics_tools(root: &Path) -> Result<MetricsTools> {
    let tools = target_dir(root).join("tools");
    std::fs::create_dir_all(&tools)?;
    let unpacked = tools.join("prometheus/usr/bin/promtool");
    let promtool = if on_path("promtool") {
        PathBuf::from("promtool")
    } else {
        if !unpacked.is_file() {
            println!(
                "==> fetching promtool (Debian package prometheus, unpacked into target/tools)"
            );
            let ok = Command::new("apt-get")
                .arg("update")
                .arg("-qq")
                .status()?
                .success();
            if !ok {
                bail!("apt-get update failed");
            }
            let ok = Command::new("apt-get")
                .args(["download", "prometheus"])
                .current_dir(&tools)
                .status()?
                .success();
            if !ok {
                bail!("apt-get download prometheus failed");
            }
            let deb = std::fs::read_dir(&tools)?
                .flatten()
                .map(|e| e.path())
                .find(|p| p.extension().is_some_and(|x| x == "deb"))
                .context("apt-get download wrote no .deb")?;
            let ok = Command::new("dpkg-deb")
                .arg("-x")
                .arg(&deb)
                .arg(tools.join("prometheus"))
                .status()?
                .success();
            std::fs::remove_file(&deb)?;
            if !ok {
                bail!("dpkg-deb -x {} failed", deb.display());
            }
        }
        unpacked
    };
    let pylib = tools.join("pylib");
    if !pylib.join("prometheus_client").is_dir() {
        println!("==> pip install prometheus-client into target/tools/pylib");
        let ok = Command::new("python3")
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "--target",
            ])
            .arg(&pylib)
            .arg("prometheus-client")
            .status()
            .context("run python3 -m pip")?
            .success();
        if !ok {
            bail!("pip install prometheus-client failed");
        }
    }
    Ok(MetricsTools { promtool, pylib })
}

/// Installs Debian packages whose command is missing: `(command, package)` pairs.
pub fn apt_install(wanted: &[(&str, &str)]) -> Result<()> {
    let missing: Vec<&str> = wanted
        .iter()
        .filter(|(cmd, _)| !on_path(cmd))
        .map(|(_, pkg)| *pkg)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    println!("==> installing Debian packages: {}", missing.join(" "));
    let ok = Command::new("apt-get")
        .arg("update")
        .arg("-qq")
        .status()?
        .success();
    if !ok {
        bail!("apt-get update failed");
    }
    let ok = Command::new("apt-get")
        .args(["install", "-y", "-qq", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()?
        .success();
    if !ok {
        bail!("apt-get install {} failed", missing.join(" "));
    }
    Ok(())
}

fn on_path(cmd: &str) -> bool {
    env::var_os("PATH")
        .map(|p| env::split_paths(&p).any(|d| d.join(cmd).is_file()))
        .unwrap_or(false)
}

/// Names every test run gives what it creates: `corral-it-*` (integration tests),
/// `corral-st-*` (schemathesis' daemon), `corral-bench-*` (`cargo xtask bench`).
const TEST_NAMES: &[&str] = &["corral-it", "corral-st", "corral-bench"];

/// Fails when anything of Corral's is left behind: cgroups, mounts, network namespaces,
/// links, temporary directories or processes named as tests name them; any process still
/// running a binary of this checkout's build (a daemon started by hand and forgotten, whatever
/// its names); and any `corral-*` cgroup subtree at the top of a hierarchy that no daemon of an
/// installed Corral (a binary outside this checkout) names as its `--cgroup-root`.
fn leak_check(root: &Path) -> Result<()> {
    let build = target_dir(root);
    let build = build.canonicalize().unwrap_or(build);
    let procs = processes();
    let mut leaks = Vec::new();
    // Subtrees in use by an installed daemon are its admin's, not ours.
    let installed_roots: Vec<&str> = procs
        .iter()
        .filter(|p| !p.exe.starts_with(&build))
        .filter_map(|p| {
            let mut args = p.cmdline.split(' ');
            loop {
                let a = args.next()?;
                if let Some(v) = a.strip_prefix("--cgroup-root=") {
                    return Some(v);
                }
                if a == "--cgroup-root" {
                    return args.next();
                }
            }
        })
        .collect();
    // The top of every hierarchy: `/sys/fs/cgroup` itself on pure v2, each of its
    // directories (`memory`, `unified`, …) on v1 and hybrid hosts.
    let cgroup = Path::new("/sys/fs/cgroup");
    let mut tops = vec![cgroup.to_owned()];
    if let Ok(entries) = std::fs::read_dir(cgroup) {
        tops.extend(entries.flatten().map(|e| e.path()));
    }
    for top in &tops {
        find_named(top, 3, &mut leaks);
        let Ok(groups) = std::fs::read_dir(top) else {
            continue;
        };
        for g in groups.flatten() {
            let name = g.file_name().to_string_lossy().into_owned();
            if name.starts_with("corral-")
                && !is_test_name(&name)
                && !installed_roots.contains(&name.as_str())
                && g.file_type().is_ok_and(|t| t.is_dir())
            {
                leaks.push(format!("cgroup: {}", g.path().display()));
            }
        }
    }
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    leaks.extend(
        mounts
            .lines()
            .filter(|l| is_test_name(l))
            .map(|l| format!("mount: {l}")),
    );
    if let Ok(entries) = std::fs::read_dir("/run/netns") {
        leaks.extend(
            entries
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().contains("corral"))
                .map(|e| format!("netns: {}", e.path().display())),
        );
    }
    if let Ok(out) = Command::new("nft").args(["list", "tables"]).output() {
        leaks.extend(
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter(|l| l.contains("corral_it") || l.contains("corral_st"))
                .map(|l| format!("nft: {l}")),
        );
    }
    if let Ok(entries) = std::fs::read_dir("/sys/class/net") {
        leaks.extend(
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("corral-it") || n.starts_with("vc-it"))
                .map(|n| format!("link: {n}")),
        );
    }
    for p in &procs {
        if is_test_name(&p.cmdline) {
            leaks.push(format!("process {}: {}", p.pid, p.cmdline));
        } else if p.exe.starts_with(&build) {
            leaks.push(format!(
                "process {} of this checkout's build: {}",
                p.pid, p.cmdline
            ));
        }
    }
    if let Ok(entries) = std::fs::read_dir(env::temp_dir()) {
        leaks.extend(
            entries
                .flatten()
                .filter(|e| is_test_name(&e.file_name().to_string_lossy()))
                .map(|e| format!("temp dir: {}", e.path().display())),
        );
    }
    leaks.sort();
    leaks.dedup();
    if !leaks.is_empty() {
        bail!(
            "left behind (end the processes by their PID, or stop their daemon, which removes \
             its subtree):\n  {}",
            leaks.join("\n  ")
        );
    }
    println!("no leftovers");
    Ok(())
}

/// A running process other than this one and its ancestors (cargo, the shell).
struct Proc {
    pid: u32,
    exe: PathBuf,
    cmdline: String,
}

fn processes() -> Vec<Proc> {
    let mut mine = vec![std::process::id()];
    while let Some(parent) = std::fs::read_to_string(format!("/proc/{}/stat", mine[mine.len() - 1]))
        .ok()
        .and_then(|s| s.rsplit_once(") ").map(|(_, rest)| rest.to_owned()))
        .and_then(|rest| rest.split(' ').nth(1)?.parse::<u32>().ok())
        .filter(|&p| p > 1)
    {
        mine.push(parent);
    }
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| {
            let pid: u32 = e.file_name().to_str()?.parse().ok()?;
            if mine.contains(&pid) {
                return None;
            }
            let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
            Some(Proc {
                pid,
                exe: std::fs::read_link(e.path().join("exe")).unwrap_or_default(),
                cmdline: String::from_utf8_lossy(&cmdline)
                    .replace('\0', " ")
                    .trim()
                    .to_owned(),
            })
        })
        .collect()
}

fn is_test_name(name: &str) -> bool {
    TEST_NAMES.iter().any(|n| name.contains(n))
}

fn find_named(dir: &Path, depth: u32, out: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let Ok(ft) = e.file_type() else { continue };
        if !ft.is_dir() {
            continue;
        }
        if is_test_name(&e.file_name().to_string_lossy()) {
            out.push(format!("cgroup: {}", e.path().display()));
        } else if depth > 1 {
            find_named(&e.path(), depth - 1, out);
        }
    }
}
