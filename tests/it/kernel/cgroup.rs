//! The cgroup engine on the real kernel: limits have the effect a user expects, on this hybrid
//! host and on pure cgroup v2 (the VM). Each test owns a unique subtree, removed (with every
//! process in it) by a Drop guard even when the test fails.

use std::{
    io::{BufRead, BufReader, Write},
    os::unix::process::ExitStatusExt,
    path::PathBuf,
    process::{Child, ChildStdout, Command, Stdio},
    time::{Duration, Instant},
};

use backend::cgroup::{
    CgroupError, Cgroups, Group, GroupPath, Limits, LimitsUpdate, Max, parse_cpus, parse_size,
};

/// The workload binary: `$CORRAL_TESTLOAD` (the VM points it at its copy) or the one cargo built.
fn testload() -> PathBuf {
    std::env::var_os("CORRAL_TESTLOAD")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_testload")))
}

/// A subtree of our own, killed and removed on drop.
struct Subtree(Cgroups);

impl Subtree {
    fn new() -> Self {
        let name = tests::unique("corral-it");
        Subtree(Cgroups::host(&name).expect("detect cgroups and create the subtree"))
    }

    fn group(&self, path: &str) -> Group {
        self.0
            .create(&GroupPath::parse(path).expect("valid path"))
            .expect("create group")
    }
}

impl Drop for Subtree {
    fn drop(&mut self) {
        if let Err(e) = self.0.remove_subtree() {
            eprintln!("cleanup of {} failed: {e}", self.0.subtree());
        }
    }
}

/// A testload process we started, killed and reaped on drop.
struct Workload {
    child: Child,
    stdout: Option<BufReader<ChildStdout>>,
}

impl Workload {
    /// Starts `testload --gate ARGS`, moves it into `group`, then lets it run.
    fn start_in(group: &Group, args: &[&str]) -> Self {
        let mut child = Command::new(testload())
            .arg("--gate")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn testload");
        let pid = child.id() as i32;
        let stdout = child.stdout.take().map(BufReader::new);
        let mut w = Workload { child, stdout };
        group.attach(pid).expect("attach the workload");
        assert!(
            group.procs().expect("procs").contains(&pid),
            "pid {pid} listed in the group"
        );
        let mut stdin = w.child.stdin.take().expect("stdin");
        stdin.write_all(b"go\n").expect("open the gate");
        w
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    fn line(&mut self) -> String {
        let mut s = String::new();
        if let Some(out) = self.stdout.as_mut() {
            out.read_line(&mut s).expect("read workload stdout");
        }
        s.trim().to_owned()
    }

    fn wait(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.child.try_wait().expect("wait") {
                return st;
            }
            assert!(
                Instant::now() < deadline,
                "workload did not exit in {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Workload {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn cpu_usec(g: &Group) -> u64 {
    g.stats()
        .cpu_usage_usec
        .expect("cpu usage is reported on every host")
}

fn available(cg: &Cgroups, knob: &str) -> bool {
    cg.capabilities()
        .knobs
        .iter()
        .any(|k| k.name == knob && k.available)
}

#[test]
fn subtree_exists_in_every_hierarchy_and_goes_away() {
    let t = Subtree::new();
    let g = t.group("team-a/web");
    let dirs: Vec<PathBuf> = g.dirs().map(|d| d.to_owned()).collect();
    assert!(!dirs.is_empty());
    for d in &dirs {
        assert!(d.is_dir(), "{} exists", d.display());
    }
    if let Some(v2) = g.v2_dir() {
        assert!(v2.join("cgroup.procs").exists());
    }
    t.0.remove_subtree().unwrap();
    for d in &dirs {
        assert!(!d.exists(), "{} removed", d.display());
    }
}

#[test]
fn busy_loop_under_0_2_cpus_uses_at_most_25_percent() {
    let t = Subtree::new();
    let g = t.group("team/burn");
    let limit = parse_cpus("0.2").unwrap();
    g.apply(&LimitsUpdate {
        cpu_max: Some(limit),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(g.limits().cpu_max, Some(limit), "read back from the kernel");
    let _w = Workload::start_in(&g, &["burn", "8"]);
    std::thread::sleep(Duration::from_millis(500));
    let (u0, t0) = (cpu_usec(&g), Instant::now());
    std::thread::sleep(Duration::from_secs(2));
    let (u1, elapsed) = (cpu_usec(&g), t0.elapsed());
    let share = (u1 - u0) as f64 / elapsed.as_micros() as f64;
    eprintln!(
        "0.2-CPU group used {:.1} % of a CPU over {elapsed:?}",
        share * 100.0
    );
    assert!(share <= 0.25, "used {:.1} % of a CPU", share * 100.0);
    assert!(
        share >= 0.02,
        "the loop ran at all ({:.1} %)",
        share * 100.0
    );
    let s = g.stats();
    if let Some(n) = s.cpu_nr_throttled {
        assert!(n > 0, "throttled periods are counted: {s:?}");
    }
}

#[test]
fn memory_max_32m_oom_kills_a_64m_allocation() {
    let t = Subtree::new();
    let g = t.group("team/oom");
    let mut update = LimitsUpdate {
        memory_max: Some(parse_size("memory_max", "32M").unwrap()),
        ..Default::default()
    };
    if available(&t.0, "swap_max") {
        // Without this the allocation could spill into swap instead of failing.
        update.swap_max = Some(Max::Limit(0));
    }
    g.apply(&update).unwrap();
    let l = g.limits();
    assert_eq!(l.memory_max, Some(Max::Limit(32 << 20)));
    if update.swap_max.is_some() {
        assert_eq!(l.swap_max, Some(Max::Limit(0)));
    }
    let mut w = Workload::start_in(&g, &["alloc", "64"]);
    let status = w.wait(Duration::from_secs(60));
    assert_eq!(
        status.signal(),
        Some(libc::SIGKILL),
        "OOM-killed: {status:?}"
    );
    let s = g.stats();
    assert_eq!(s.memory_events.oom_kill, Some(1), "{:?}", s.memory_events);
    if let Some(peak) = s.memory_peak {
        assert!(peak <= 32 << 20, "peak {peak} stays under the limit");
    }
}

#[test]
fn pids_max_5_stops_the_sixth_task() {
    let t = Subtree::new();
    let g = t.group("team/forks");
    g.apply(&LimitsUpdate {
        pids_max: Some(Max::Limit(5)),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(g.limits().pids_max, Some(Max::Limit(5)));
    let mut w = Workload::start_in(&g, &["forks", "6"]);
    let line = w.line();
    let forked: u32 = line
        .strip_prefix("forked ")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("unexpected output {line:?}"));
    // The workload itself is the first of the 5 tasks: 4 children fit, the 5th and 6th fail.
    assert_eq!(forked, 4, "tasks = workload + {forked} children");
    assert!(w.wait(Duration::from_secs(20)).success());
    if let Some(peak) = g.stats().pids_peak {
        assert_eq!(peak, 5);
    }
}

#[test]
fn freeze_stops_cpu_use_and_thaw_resumes_it() {
    let t = Subtree::new();
    let g = t.group("team/freeze");
    let w = Workload::start_in(&g, &["burn", "20"]);
    std::thread::sleep(Duration::from_millis(300));
    g.freeze().unwrap();
    assert_eq!(g.is_frozen(), Some(true));
    let mut reader = g.stats_reader();
    let u0 = reader.sample().cpu_usage_usec.unwrap();
    std::thread::sleep(Duration::from_millis(700));
    let u1 = reader.sample().cpu_usage_usec.unwrap();
    assert!(u1 - u0 <= 2_000, "frozen group used {} µs", u1 - u0);
    assert!(
        g.procs().unwrap().contains(&w.pid()),
        "still there, just frozen"
    );
    g.thaw().unwrap();
    assert_eq!(g.is_frozen(), Some(false));
    std::thread::sleep(Duration::from_millis(700));
    let u2 = reader.sample().cpu_usage_usec.unwrap();
    assert!(
        u2 - u1 >= 20_000,
        "thawed group used only {} µs in 700 ms",
        u2 - u1
    );
    assert!(
        cpu_usec(&g) >= u2,
        "pread and open-each-time read the same counter"
    );
}

fn limits_subset(
    l: &Limits,
) -> (
    Option<backend::cgroup::CpuMax>,
    Option<u64>,
    Option<Max>,
    Option<Max>,
) {
    (l.cpu_max, l.cpu_weight, l.memory_max, l.pids_max)
}

#[test]
fn live_relimit_is_read_back_from_the_kernel() {
    let t = Subtree::new();
    let g = t.group("team/live");
    let _w = Workload::start_in(&g, &["sleep", "30"]);
    for (cpus, weight, mem, pids) in [("0.5", 200, "64M", 100), ("1.5", 50, "128M", 50)] {
        let mut u = LimitsUpdate {
            cpu_max: Some(parse_cpus(cpus).unwrap()),
            cpu_weight: Some(weight),
            memory_max: Some(parse_size("memory_max", mem).unwrap()),
            memory_low: Some(parse_size("memory_low", "16M").unwrap()),
            pids_max: Some(Max::Limit(pids)),
            ..Default::default()
        };
        if available(&t.0, "cpuset_cpus") {
            u.cpuset_cpus = Some("0".into());
        }
        g.apply(&u).unwrap();
        let l = g.limits();
        assert_eq!(limits_subset(&l), limits_subset(&u), "{l:?}");
        assert_eq!(l.memory_low, u.memory_low);
        if u.cpuset_cpus.is_some() {
            assert_eq!(l.cpuset_cpus.as_deref(), Some("0"));
        }
    }
}

#[test]
fn a_rejected_change_leaves_the_old_limits() {
    let t = Subtree::new();
    let g = t.group("team/reject");
    let before = LimitsUpdate {
        cpu_max: Some(parse_cpus("0.5").unwrap()),
        memory_max: Some(Max::Limit(256 << 20)),
        pids_max: Some(Max::Limit(100)),
        ..Default::default()
    };
    g.apply(&before).unwrap();
    let kept = g.limits();

    // A cpuset outside the parent's effective cpus, after valid fields.
    if available(&t.0, "cpuset_cpus") {
        let e = g
            .apply(&LimitsUpdate {
                cpu_max: Some(parse_cpus("1").unwrap()),
                memory_max: Some(Max::Limit(128 << 20)),
                cpuset_cpus: Some("4095".into()),
                ..Default::default()
            })
            .unwrap_err();
        assert!(
            matches!(
                e,
                CgroupError::Invalid {
                    field: "cpuset_cpus",
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("parent"), "{e}");
        assert_eq!(g.limits(), kept);
    }

    // A memory limit below what the group uses now.
    let mut w = Workload::start_in(&g, &["alloc", "24", "30"]);
    assert_eq!(w.line(), "allocated 24");
    let e = g
        .apply(&LimitsUpdate {
            pids_max: Some(Max::Limit(10)),
            memory_max: Some(Max::Limit(8 << 20)),
            ..Default::default()
        })
        .unwrap_err();
    assert!(
        matches!(
            e,
            CgroupError::Invalid {
                field: "memory_max",
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("current usage"), "{e}");
    assert_eq!(g.limits(), kept);
    assert!(
        w.child.try_wait().unwrap().is_none(),
        "the workload was not harmed"
    );

    // Out-of-range values name the field and the allowed values.
    let e = g
        .apply(&LimitsUpdate {
            cpu_weight: Some(0),
            ..Default::default()
        })
        .unwrap_err();
    assert!(
        e.to_string().contains("cpu_weight") && e.to_string().contains("10000"),
        "{e}"
    );
    assert_eq!(g.limits(), kept);
}

#[test]
fn kill_empties_a_nested_group_both_ways() {
    let t = Subtree::new();
    let team = t.group("team");
    let g = t.group("team/web");
    let mut a = Workload::start_in(&g, &["sleep", "30"]);
    let mut b = Workload::start_in(&g, &["burn", "30"]);
    // cgroup.kill where the kernel has it (v2 and hybrid), killing a parent kills the children.
    team.kill().unwrap();
    assert!(g.procs().unwrap().is_empty());
    assert_eq!(a.wait(Duration::from_secs(5)).signal(), Some(libc::SIGKILL));
    assert_eq!(b.wait(Duration::from_secs(5)).signal(), Some(libc::SIGKILL));
    // The v1 way (freeze, SIGKILL each pid, thaw) works on every host too.
    let mut c = Workload::start_in(&g, &["burn", "30"]);
    g.kill_with_signals().unwrap();
    assert_eq!(c.wait(Duration::from_secs(5)).signal(), Some(libc::SIGKILL));
    // remove kills leftovers and removes the group in every hierarchy.
    let _d = Workload::start_in(&g, &["sleep", "30"]);
    g.remove().unwrap();
    assert!(g.dirs().all(|d| !d.exists()));
}

#[test]
fn names_that_escape_are_rejected() {
    let t = Subtree::new();
    for bad in ["..", "a/../../etc", "x\0y", "cgroup.procs", ""] {
        assert!(
            GroupPath::parse(bad).is_err() || bad.is_empty(),
            "{bad:?} accepted"
        );
    }
    assert!(t.0.open(&GroupPath::parse("nope").unwrap()).is_err());
}

#[test]
fn a_kernel_refusal_half_way_rolls_back_what_was_written() {
    let t = Subtree::new();
    let team = t.group("team");
    team.apply(&LimitsUpdate {
        cpu_max: Some(parse_cpus("0.5").unwrap()),
        ..Default::default()
    })
    .unwrap();
    let g = t.group("team/web");
    g.apply(&LimitsUpdate {
        cpu_max: Some(parse_cpus("0.25").unwrap()),
        pids_max: Some(Max::Limit(64)),
        ..Default::default()
    })
    .unwrap();
    let kept = g.limits();
    let mut update = LimitsUpdate {
        // v1 refuses a child quota above its parent's (v2 allows it and clamps at run time),
        // after the cpuset and the period were written.
        cpu_max: Some(parse_cpus("1").unwrap()),
        pids_max: Some(Max::Limit(32)),
        ..Default::default()
    };
    if available(&t.0, "cpuset_cpus") {
        update.cpuset_cpus = Some("0".into());
    }
    match g.apply(&update) {
        Err(e) => {
            assert!(matches!(e, CgroupError::Write { .. }), "{e}");
            assert_eq!(
                g.limits(),
                kept,
                "every file written before the refusal is restored"
            );
        }
        Ok(()) => {
            assert_eq!(
                g.mode(),
                backend::cgroup::CgroupMode::V2,
                "only v2 accepts this"
            );
            assert_eq!(g.limits().cpu_max, update.cpu_max);
        }
    }
}

/// A whole disk of this machine (`MAJ:MIN`), preferring real disks over loop devices.
fn some_disk() -> Option<String> {
    let mut disks: Vec<(bool, String)> = std::fs::read_dir("/sys/block")
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let dev = std::fs::read_to_string(e.path().join("dev")).ok()?;
            Some((
                name.starts_with("loop") || name.starts_with("ram"),
                dev.trim().to_owned(),
            ))
        })
        .collect();
    disks.sort();
    disks.into_iter().next().map(|(_, d)| d)
}

#[test]
fn every_available_knob_is_set_and_read_back() {
    let t = Subtree::new();
    let g = t.group("team/all");
    let _w = Workload::start_in(&g, &["sleep", "30"]);
    let has = |k: &str| available(&t.0, k);
    let mut u = LimitsUpdate {
        cpu_max: Some(parse_cpus("0.75").unwrap()),
        cpu_weight: Some(300),
        memory_max: Some(Max::Limit(100 << 20)),
        pids_max: Some(Max::Limit(77)),
        ..Default::default()
    };
    if has("cpuset_cpus") {
        u.cpuset_cpus = Some("0".into());
        u.cpuset_mems = Some("0".into());
    }
    if has("memory_high") {
        u.memory_high = Some(Max::Limit(90 << 20));
    }
    if has("memory_low") {
        u.memory_low = Some(Max::Limit(10 << 20));
    }
    if has("memory_min") {
        u.memory_min = Some(Max::Limit(5 << 20));
    }
    if has("swap_max") {
        u.swap_max = Some(Max::Limit(50 << 20));
    }
    let disk = some_disk().filter(|_| has("io_max"));
    if let Some(d) = &disk {
        let device =
            backend::cgroup::parse_device("io_max", d, std::path::Path::new("/sys")).unwrap();
        u.io_max = vec![backend::cgroup::IoMax {
            device,
            rbps: Some(Max::Limit(1 << 20)),
            wbps: Some(Max::Limit(2 << 20)),
            riops: Some(Max::Limit(100)),
            wiops: Some(Max::Limit(200)),
        }];
    }
    let io_weight = has("io_weight").then_some(300);
    u.io_weight = io_weight;
    g.apply(&u).unwrap();
    let l = g.limits();
    let mut expect = u.clone();
    // v1 block-IO weights are coarser (10..1000): the read-back is the nearest v1 step.
    if let (Some(want), Some(got)) = (io_weight, l.io_weight) {
        assert!(
            want.abs_diff(got) <= 10,
            "io_weight {want} read back as {got}"
        );
        expect.io_weight = l.io_weight;
    }
    macro_rules! same {
        ($($f:ident),*) => {$(
            if expect.$f.is_some() {
                assert_eq!(l.$f, expect.$f, stringify!($f));
            }
        )*};
    }
    same!(
        cpu_max,
        cpu_weight,
        cpuset_cpus,
        cpuset_mems,
        memory_max,
        memory_high,
        memory_low,
        memory_min,
        swap_max,
        pids_max,
        io_weight
    );
    if disk.is_some() {
        assert_eq!(l.io_max, expect.io_max);
    } else {
        eprintln!("no block device: io_max not exercised");
    }
}

#[test]
fn v1_freezer_stops_and_resumes_where_the_host_has_it() {
    let t = Subtree::new();
    let g = t.group("team/v1freeze");
    let Some(v1) = g.with_v1_freezer() else {
        eprintln!("no v1 freezer hierarchy (pure v2): nothing to test");
        return;
    };
    let _w = Workload::start_in(&g, &["burn", "20"]);
    std::thread::sleep(Duration::from_millis(300));
    v1.freeze().unwrap();
    assert_eq!(v1.is_frozen(), Some(true));
    let u0 = cpu_usec(&g);
    std::thread::sleep(Duration::from_millis(700));
    let u1 = cpu_usec(&g);
    assert!(u1 - u0 <= 2_000, "frozen group used {} µs", u1 - u0);
    v1.thaw().unwrap();
    std::thread::sleep(Duration::from_millis(700));
    let u2 = cpu_usec(&g);
    assert!(
        u2 - u1 >= 20_000,
        "thawed group used only {} µs in 700 ms",
        u2 - u1
    );
    // The v1 kill fallback freezes through the v1 freezer too.
    v1.kill_with_signals().unwrap();
    assert!(g.procs().unwrap().is_empty());
}

#[test]
fn stats_report_what_the_group_uses() {
    let t = Subtree::new();
    let g = t.group("team/stats");
    let mut w = Workload::start_in(&g, &["alloc", "16", "30"]);
    assert_eq!(w.line(), "allocated 16");
    let s = g.stats();
    assert!(s.cpu_usage_usec.unwrap() > 0, "{s:?}");
    assert!(s.memory_current.unwrap() >= 16 << 20, "{s:?}");
    assert!(s.memory_anon.unwrap() >= 15 << 20, "{s:?}");
    assert!(
        s.memory_peak.unwrap() >= s.memory_current.unwrap() / 2,
        "{s:?}"
    );
    assert_eq!(s.pids_current, Some(1));
    assert_eq!(s.memory_events.oom_kill, Some(0));
    if t.0.capabilities().psi {
        for p in [&s.cpu_pressure, &s.memory_pressure, &s.io_pressure] {
            assert!(p.as_ref().is_some_and(|p| p.some.is_some()), "{s:?}");
        }
    }
    // The kept-open reader sees the same group.
    let mut r = g.stats_reader();
    let k = r.sample();
    assert_eq!(k.pids_current, Some(1));
    assert!(k.memory_current.unwrap() >= 16 << 20);
    assert!(k.cpu_usage_usec.unwrap() >= s.cpu_usage_usec.unwrap());
}
