//! Metering on the real kernel: what a process burns in a cgroup is what it is billed, to the
//! microsecond of the kernel's own counter, across sampler restarts and a full disk. Works on
//! this hybrid host and on pure cgroup v2 (the VM). Each test owns a unique cgroup subtree and
//! state directory, removed by Drop guards even when it fails.

use std::{
    collections::BTreeMap,
    io::Write,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use backend::{
    cgroup::{Cgroups, Group, GroupPath, LimitsUpdate, Max, parse_cpus},
    metering::{
        Metering, MeteringConfig,
        billing::{self, Filter},
        sampler::wall_ms,
    },
    store::Store,
};
use tests::TempDir;

fn testload() -> PathBuf {
    std::env::var_os("CORRAL_TESTLOAD")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_testload")))
}

/// A cgroup subtree of our own, killed and removed on drop.
struct Subtree(Cgroups);

impl Subtree {
    fn new() -> Self {
        Subtree(Cgroups::host(&tests::unique("corral-it")).expect("create the subtree"))
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

/// A process we started, killed and reaped on drop.
struct Proc(Child);

impl Proc {
    /// Starts `program args` held at a gate (a line on stdin), moves it into `group`, opens the
    /// gate.
    fn start_in(group: &Group, mut cmd: Command) -> Self {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn workload");
        group.attach(child.id() as i32).expect("attach");
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(b"go\n").expect("open the gate");
        Proc(child)
    }

    fn wait(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.0.try_wait().expect("wait").is_none() {
            assert!(Instant::now() < deadline, "workload did not exit");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn burn(secs: u32) -> Command {
    let mut c = Command::new(testload());
    c.args(["--gate", "burn", &secs.to_string()]);
    c
}

/// A shell loop that spins until killed, after reading its gate line.
fn spin() -> Command {
    let mut c = Command::new("sh");
    c.args(["-c", "read x; while :; do :; done"]);
    c
}

fn config(interval_ms: u64) -> MeteringConfig {
    MeteringConfig {
        interval: Duration::from_millis(interval_ms),
        ..MeteringConfig::default()
    }
}

fn ledger_cpu(store: &Store, id: &str) -> i64 {
    store
        .lock()
        .query_row(
            "SELECT coalesce(sum(cpu_usec), 0) FROM usage_ledger WHERE container_id = ?1",
            [id],
            |r| r.get(0),
        )
        .expect("ledger sum")
}

fn no_labels() -> BTreeMap<String, String> {
    BTreeMap::new()
}

#[test]
fn half_a_cpu_for_four_seconds_is_billed_two_cpu_seconds() {
    let t = Subtree::new();
    let team = t.group("team-m");
    let g = t.group("team-m/burn");
    g.apply(&LimitsUpdate {
        cpu_max: Some(parse_cpus("0.5").expect("0.5 cpus")),
        memory_max: Some(Max::Limit(256 << 20)),
        ..LimitsUpdate::default()
    })
    .expect("apply 0.5 cpu");
    // The quota, not other load on the host, must be what limits the workload: give Corral's
    // subtree and the group the highest CPU weight (a test machine may be busy compiling).
    for grp in [&t.0.open(&GroupPath::default()).expect("top"), &team, &g] {
        grp.apply(&LimitsUpdate {
            cpu_weight: Some(10_000),
            ..LimitsUpdate::default()
        })
        .expect("cpu weight");
    }
    let dir = TempDir::new("corral-meter");
    let store = Store::open(&dir.path().join("corral.db")).expect("store");
    let m = Metering::new(store.clone(), config(1000)).expect("metering");
    let sampler = m.start().expect("sampler");
    m.register_team(team.clone(), "team-m");
    let labels = BTreeMap::from([("env".to_owned(), "test".to_owned())]);
    m.register(g.clone(), "id-burn", "burn", "team-m", &labels);
    let started = Instant::now();
    let mut p = Proc::start_in(&g, burn(4));
    p.wait(Duration::from_secs(20));
    let wall = started.elapsed();
    let fin = m
        .unregister_with_final_reading("id-burn")
        .expect("registered");
    m.stop();
    sampler.join().expect("sampler thread");

    let kernel = g.stats().cpu_usage_usec.expect("cpu usage");
    let billed = ledger_cpu(&store, "id-burn");
    println!(
        "burn 4 s under 0.5 CPU: kernel {:.6} s, billed {:.6} s (wall {:.2} s)",
        kernel as f64 / 1e6,
        billed as f64 / 1e6,
        wall.as_secs_f64()
    );
    assert_eq!(billed as u64, fin.cpu_usec, "billed = the final reading");
    assert_eq!(
        billed as u64, kernel,
        "billed = the kernel's counter, exactly"
    );
    assert!(
        (1_800_000..=2_200_000).contains(&billed),
        "2.0 ± 0.2 CPU-seconds, billed {billed} µs"
    );

    // Priced through the billing report: per container, per team, per label.
    let now = wall_ms() / 1000;
    let r =
        billing::report(&store.lock(), now - 7200, now + 3600, &Filter::default()).expect("report");
    let line = r
        .containers
        .iter()
        .find(|l| l.container_id == "id-burn")
        .expect("container line");
    assert_eq!(line.usage.cpu_usec, billed);
    assert_eq!(line.labels.get("env").map(String::as_str), Some("test"));
    assert_eq!(r.teams[0].usage.cpu_usec, billed);
    assert_eq!(r.labels[0].name, "env=test");
    // Reserved: 0.5 core for the time it was registered (≥ the burn), 256 MiB likewise.
    let reserved_s = line.usage.cpu_reserved_core_usec as f64 / 1e6;
    assert!(
        reserved_s >= 0.5 * 3.5 && reserved_s <= 0.5 * (wall.as_secs_f64() + 2.0),
        "reserved {reserved_s} core-seconds over {wall:?}"
    );
    assert!(line.usage.mem_reserved_byte_s > 0);
    // The host's busy CPU over the same window holds the container's.
    let h = billing::reconcile(&store.lock(), now - 7200, now + 3600).expect("reconcile");
    println!(
        "host busy {:.3} s, containers {:.3} s, idle {:.3} s",
        h.host_cpu_usec as f64 / 1e6,
        h.containers_cpu_usec as f64 / 1e6,
        h.idle_cpu_usec as f64 / 1e6
    );
    // Everywhere, also in the qemu TCG VM whose timer ticks arrive late: the host total is
    // "not idle" from the kernel's idle timestamps, exact like the container's own usage.
    assert!(h.reconciled, "{h:?}");
    assert!(
        h.containers_cpu_usec <= h.host_cpu_usec + h.host_cpu_usec / 100,
        "containers {} µs within 1 % of the host's {} µs",
        h.containers_cpu_usec,
        h.host_cpu_usec
    );
    assert_eq!(h.containers_cpu_usec + h.idle_cpu_usec, h.host_cpu_usec);
}

#[test]
fn a_100ms_process_is_billed_exactly_its_final_cpu_usage() {
    let t = Subtree::new();
    let g = t.group("team-m/short");
    let dir = TempDir::new("corral-meter");
    let store = Store::open(&dir.path().join("corral.db")).expect("store");
    // A long interval: no periodic tick happens, only the registration and the final reading.
    let m = Metering::new(store.clone(), config(3_600_000)).expect("metering");
    m.register(g.clone(), "id-short", "short", "team-m", &no_labels());
    let mut p = Proc::start_in(&g, spin());
    std::thread::sleep(Duration::from_millis(100));
    let _ = p.0.kill();
    p.wait(Duration::from_secs(5));
    let fin = m
        .unregister_with_final_reading("id-short")
        .expect("registered");
    let kernel = g.stats().cpu_usage_usec.expect("cpu usage");
    let billed = ledger_cpu(&store, "id-short");
    println!("100 ms process: kernel {} µs, billed {} µs", kernel, billed);
    assert!(billed > 0);
    assert_eq!(billed as u64, kernel);
    assert_eq!(billed as u64, fin.cpu_usec);
    assert!(m.unregister_with_final_reading("id-short").is_none());
}

#[test]
fn a_sampler_restart_neither_loses_nor_doubles_usage() {
    let t = Subtree::new();
    let g = t.group("team-m/restart");
    let dir = TempDir::new("corral-meter");
    let db = dir.path().join("corral.db");
    let mut p = Proc::start_in(&g, spin());
    {
        // First daemon: samples, then dies without a final reading (its thread never stops
        // cleanly: the instance is simply dropped, like kill -9 after the last commit).
        let store = Store::open(&db).expect("store");
        let flush_every_tick = MeteringConfig {
            ledger_flush: Duration::ZERO,
            ..config(3_600_000)
        };
        let m = Metering::new(store.clone(), flush_every_tick).expect("metering");
        m.register(g.clone(), "id-r", "r", "team-m", &no_labels());
        std::thread::sleep(Duration::from_millis(300));
        assert!(m.tick().flushed);
        std::thread::sleep(Duration::from_millis(300));
        m.tick();
        assert!(
            ledger_cpu(&store, "id-r") > 0,
            "ledger rows were written before the crash"
        );
    }
    // Usage while "the daemon is down" must still be billed, once.
    std::thread::sleep(Duration::from_millis(300));
    let store = Store::open(&db).expect("reopen store");
    let m = Metering::new(store.clone(), config(3_600_000)).expect("metering");
    m.register(g.clone(), "id-r", "r", "team-m", &no_labels());
    std::thread::sleep(Duration::from_millis(200));
    let _ = p.0.kill();
    p.wait(Duration::from_secs(5));
    m.unregister_with_final_reading("id-r").expect("registered");
    let kernel = g.stats().cpu_usage_usec.expect("cpu usage");
    let billed = ledger_cpu(&store, "id-r");
    println!("restart: kernel {kernel} µs, billed {billed} µs");
    assert_eq!(billed as u64, kernel, "continuous across the restart");

    // The container restarts in a NEW cgroup at the same path: its counters start again and
    // are added, not subtracted.
    g.remove().expect("remove");
    let g2 = t.group("team-m/restart");
    m.register(g2.clone(), "id-r", "r", "team-m", &no_labels());
    let mut p = Proc::start_in(&g2, spin());
    std::thread::sleep(Duration::from_millis(200));
    let _ = p.0.kill();
    p.wait(Duration::from_secs(5));
    m.unregister_with_final_reading("id-r").expect("registered");
    let second = g2.stats().cpu_usage_usec.expect("cpu usage");
    assert_eq!(ledger_cpu(&store, "id-r") as u64, kernel + second);
}

#[test]
fn a_full_disk_buffers_and_loses_nothing_once_space_returns() {
    let t = Subtree::new();
    let g = t.group("team-m/full");
    let dir = TempDir::new("corral-meter");
    let store = Store::open(&dir.path().join("corral.db")).expect("store");
    let m = Metering::new(store.clone(), config(3_600_000)).expect("metering");
    m.register(g.clone(), "id-f", "f", "team-m", &no_labels());
    let mut p = Proc::start_in(&g, spin());
    // Fill the "disk": the database may not grow by a single page.
    let pages: i64 = store
        .lock()
        .query_row("PRAGMA page_count", [], |r| r.get(0))
        .expect("page count");
    store
        .lock()
        .pragma_update(None, "max_page_count", pages)
        .expect("cap");
    // Enough samples that they cannot fit in the free space of the pages already there.
    for _ in 0..400 {
        std::thread::sleep(Duration::from_millis(2));
        m.tick();
    }
    let (failures, buffered) = m.backlog();
    println!("disk full: {failures} failed commits, {buffered} samples buffered");
    assert!(failures > 0, "commits failed while the disk was full");
    assert!(buffered > 0);
    let _ = p.0.kill();
    p.wait(Duration::from_secs(5));
    // Space returns; the final reading writes everything buffered.
    store
        .lock()
        .pragma_update(None, "max_page_count", 1_073_741_823i64)
        .expect("uncap");
    m.unregister_with_final_reading("id-f").expect("registered");
    assert_eq!(m.backlog().1, 0, "buffer flushed");
    let kernel = g.stats().cpu_usage_usec.expect("cpu usage");
    assert_eq!(ledger_cpu(&store, "id-f") as u64, kernel);
    let samples = backend::metering::store::raw_samples(&store.lock(), "c:id-f", 0, i64::MAX)
        .expect("samples")
        .len();
    assert!(samples >= 400, "buffered samples written: {samples}");
}

#[test]
fn a_team_is_metered_with_its_containers_and_holds_their_usage() {
    let t = Subtree::new();
    let a = t.group("team-z/a");
    let b = t.group("team-z/b");
    let dir = TempDir::new("corral-meter");
    let store = Store::open(&dir.path().join("corral.db")).expect("store");
    let m = Metering::new(store, config(3_600_000)).expect("metering");
    m.set_cgroups(std::sync::Arc::new(
        Cgroups::host(t.0.subtree()).expect("engine"),
    ));
    m.register(a.clone(), "id-a", "a", "team-z", &no_labels());
    m.register(b.clone(), "id-b", "b", "team-z", &no_labels());
    let mut pa = Proc::start_in(&a, spin());
    let mut pb = Proc::start_in(&b, spin());
    std::thread::sleep(Duration::from_millis(300));
    m.tick();
    let live = m.live();
    let cpu = |name: &str| {
        live.iter()
            .find(|l| match &l.kind {
                backend::metering::SubjectKind::Container(o) => o.name == name,
                backend::metering::SubjectKind::Team(t) => t == name,
            })
            .map(|l| l.reading.counters.cpu_usec)
            .unwrap_or_else(|| panic!("{name} is metered"))
    };
    // The team's counters are hierarchical: they hold both containers (read a moment later).
    assert!(
        cpu("team-z") >= cpu("a") + cpu("b"),
        "team holds its containers"
    );
    let _ = pa.0.kill();
    let _ = pb.0.kill();
    pa.wait(Duration::from_secs(5));
    pb.wait(Duration::from_secs(5));
    m.unregister_with_final_reading("id-a");
    assert!(
        m.live().iter().any(|l| l.subject == "t:team-z"),
        "b still runs"
    );
    m.unregister_with_final_reading("id-b");
    assert!(m.live().is_empty(), "the team went with its last container");
}

/// A team pool (pinned) is metered from its creation and stays metered when its last container
/// is gone, its counter still holding what the container used; the next container adds to the
/// same counter (no reset), and `unregister_team` ends it.
#[test]
fn a_pinned_team_stays_metered_without_containers_and_its_counter_keeps_growing() {
    let t = Subtree::new();
    let engine = std::sync::Arc::new(Cgroups::host(t.0.subtree()).expect("engine"));
    let _team = t.group("team-p");
    engine.pin_team("team-p");
    let dir = TempDir::new("corral-meter");
    let store = Store::open(&dir.path().join("corral.db")).expect("store");
    let m = Metering::new(store, config(3_600_000)).expect("metering");
    m.set_cgroups(engine.clone());
    m.meter_team("team-p");
    let team_cpu = |m: &Metering| {
        m.live()
            .iter()
            .find(|l| l.subject == "t:team-p")
            .map(|l| l.reading.counters.cpu_usec)
    };
    assert!(team_cpu(&m).is_some(), "metered before any container");
    let mut last = 0;
    for run in ["one", "two"] {
        let g = t.group(&format!("team-p/{run}"));
        m.register(g.clone(), run, run, "team-p", &no_labels());
        let mut p = Proc::start_in(&g, spin());
        std::thread::sleep(Duration::from_millis(300));
        let _ = p.0.kill();
        p.wait(Duration::from_secs(5));
        m.unregister_with_final_reading(run);
        g.remove().expect("remove the container's group");
        m.tick();
        let now = team_cpu(&m).unwrap_or_else(|| panic!("the team outlives container {run}"));
        assert!(
            now > last,
            "{run}: the team's counter grew ({last} -> {now})"
        );
        last = now;
    }
    m.unregister_team("team-p");
    assert!(team_cpu(&m).is_none());
    engine.unpin_team("team-p");
}

#[test]
fn the_narrow_usage_reader_agrees_with_the_full_stats() {
    let t = Subtree::new();
    let g = t.group("team-m/narrow");
    let mut r = g.usage_reader();
    let (fast, slow) = r.open_files();
    assert!(fast >= 3, "cpu, memory, pids at least: {fast}");
    let mut p = Proc::start_in(&g, spin());
    std::thread::sleep(Duration::from_millis(200));
    let _ = p.0.kill();
    p.wait(Duration::from_secs(5));
    // The process is gone: the cumulative counters no longer move.
    let mut u = backend::cgroup::UsageSample::default();
    r.read_fast(&mut u);
    assert!(u.cpu_usec > 0);
    assert_eq!(u.pids_peak, 0, "peaks are not read every tick");
    r.read_all(&mut u);
    let s = g.stats();
    let sum = |f: fn(&backend::cgroup::IoDeviceStats) -> Option<u64>| -> u64 {
        s.io.iter().filter_map(f).sum()
    };
    println!("narrow reader: {fast} + {slow} files, {u:?}");
    assert_eq!(Some(u.cpu_usec), s.cpu_usage_usec);
    assert_eq!(u.throttled_usec, s.cpu_throttled_usec.unwrap_or(0));
    assert_eq!(u.memory_peak, s.memory_peak.unwrap_or(0));
    assert_eq!(u.oom_kills, s.memory_events.oom_kill.unwrap_or(0));
    assert_eq!(u.pids_peak, s.pids_peak.unwrap_or(0));
    assert_eq!(u.pids_current, 0);
    assert_eq!(
        (u.io_rbytes, u.io_wbytes, u.io_rios, u.io_wios),
        (
            sum(|d| d.rbytes),
            sum(|d| d.wbytes),
            sum(|d| d.rios),
            sum(|d| d.wios)
        )
    );
    if s.pids_peak.is_some() {
        assert!(u.pids_peak >= 1, "the spinner was counted");
    }
    // The reservation the sampler prices comes from kept-open limit files: the same values as
    // the full limit read, unlimited and limited.
    let reserved = |l: &backend::cgroup::Limits| (l.cpu_max, l.cpuset_cpus.clone(), l.memory_max);
    assert_eq!(reserved(&r.read_reservation()), reserved(&g.limits()));
    g.apply(&LimitsUpdate {
        cpu_max: Some(parse_cpus("0.25").expect("0.25 cpus")),
        memory_max: Some(Max::Limit(64 << 20)),
        ..LimitsUpdate::default()
    })
    .expect("limits");
    let now = r.read_reservation();
    assert_eq!(reserved(&now), reserved(&g.limits()));
    assert_eq!(now.memory_max, Some(Max::Limit(64 << 20)));
    assert_eq!(now.cpu_max.map(|c| c.period), Some(100_000));
}
