//! The registry of metered groups and the sampler thread.
//!
//! The runtime calls [`Metering::register`] when a container's cgroup exists and
//! [`Metering::unregister_with_final_reading`] after its processes exited and BEFORE it removes
//! the cgroup, so the last microseconds are billed (a 50 ms container is billed exactly its
//! final `cpu.stat`). Teams are registered with [`Metering::register_team`].
//!
//! Every tick (default 5 s, `--sample-interval`) the sampler thread reads every group through
//! its kept-open [`StatsReader`], turns readings into deltas against the last checkpoint, and
//! commits samples, ledger rows and new checkpoints in ONE transaction. If the commit fails
//! (SQLITE_FULL, I/O error), the batch stays in memory — ledger sums merged, raw samples capped —
//! and is written with the next successful commit; containers are never touched. The thread is
//! a plain OS thread: it never blocks the async runtime.

use std::{
    collections::BTreeMap,
    os::unix::fs::MetadataExt,
    path::Path,
    sync::{Arc, Condvar, Mutex, MutexGuard, RwLock},
    thread::JoinHandle,
    time::Duration,
};

use crate::{
    cgroup::{Group, Limits, Max, Stats, StatsReader, units::parse_id_list},
    store::Store,
};

use super::{
    MeteringError,
    account::{Counters, Rates, Reading, Reserved, Usage, rates, usage_between},
    store::{self, Batch, LedgerOwner, Retention, Sample},
};

/// Metering settings (`corral serve` flags).
#[derive(Debug, Clone)]
pub struct MeteringConfig {
    /// Time between samples: 1 s to 1 h, default 5 s.
    pub interval: Duration,
    /// History retention per tier.
    pub retention: Retention,
    /// Raw samples kept in memory while the database cannot be written.
    pub max_buffered_samples: usize,
    /// How often reservations (cpu.max, cpuset, memory.max) are re-read, in ticks.
    pub limits_every: u32,
}

impl Default for MeteringConfig {
    fn default() -> Self {
        MeteringConfig {
            interval: Duration::from_secs(5),
            retention: Retention::default(),
            max_buffered_samples: 200_000,
            limits_every: 12,
        }
    }
}

/// Shortest and longest sample interval accepted.
pub const MIN_INTERVAL: Duration = Duration::from_secs(1);
pub const MAX_INTERVAL: Duration = Duration::from_secs(3600);

/// What a metered subject is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubjectKind {
    Container(LedgerOwner),
    Team(String),
}

/// The latest view of one subject, for `corral stats` and `/metrics`.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveStat {
    pub subject: String,
    pub kind: SubjectKind,
    pub reading: Reading,
    pub rates: Rates,
    pub memory_max: Option<u64>,
    pub cpus_reserved: f64,
}

struct Entry {
    kind: SubjectKind,
    group: Group,
    reader: StatsReader,
    generation: u64,
    reserved: Reserved,
    memory_max: Option<u64>,
}

struct Registry {
    entries: BTreeMap<String, Entry>,
    /// Last reading accounted per subject (mirrors `meter_checkpoint` plus what is pending).
    checkpoints: BTreeMap<String, Reading>,
    /// Previous reading per subject, for rates (not persisted).
    previous: BTreeMap<String, Reading>,
    /// What could not be written yet.
    pending: Batch,
    ticks: u64,
    failures: u64,
}

struct Shared {
    store: Store,
    config: MeteringConfig,
    boot_id: String,
    host_cpus: u64,
    registry: Mutex<Registry>,
    live: RwLock<BTreeMap<String, LiveStat>>,
    stop: Mutex<bool>,
    wake: Condvar,
}

/// The metering handle: registry, live view, sampler control. Cheap to clone.
#[derive(Clone)]
pub struct Metering {
    shared: Arc<Shared>,
}

/// Subject key of a container.
pub fn container_subject(container_id: &str) -> String {
    format!("c:{container_id}")
}

/// Subject key of a team.
pub fn team_subject(team: &str) -> String {
    format!("t:{team}")
}

/// Subject key of the host.
pub const HOST_SUBJECT: &str = "host";

impl Metering {
    /// Loads the persisted checkpoints. Does not start the thread (see [`Metering::start`]).
    pub fn new(store: Store, config: MeteringConfig) -> Result<Metering, MeteringError> {
        let checkpoints = store::load_checkpoints(&store.lock())?;
        Ok(Metering {
            shared: Arc::new(Shared {
                store,
                config,
                boot_id: boot_id(),
                host_cpus: std::thread::available_parallelism().map_or(1, |n| n.get() as u64),
                registry: Mutex::new(Registry {
                    entries: BTreeMap::new(),
                    checkpoints,
                    previous: BTreeMap::new(),
                    pending: Batch::default(),
                    ticks: 0,
                    failures: 0,
                }),
                live: RwLock::new(BTreeMap::new()),
                stop: Mutex::new(false),
                wake: Condvar::new(),
            }),
        })
    }

    pub fn config(&self) -> &MeteringConfig {
        &self.shared.config
    }

    pub fn store(&self) -> &Store {
        &self.shared.store
    }

    fn registry(&self) -> MutexGuard<'_, Registry> {
        self.shared
            .registry
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Starts metering a container's group. `labels` are denormalized into its ledger rows.
    /// Takes a first reading right away, so usage since the group was created counts (or, after
    /// a daemon restart, usage since the persisted checkpoint).
    pub fn register(
        &self,
        group: Group,
        container_id: &str,
        name: &str,
        team: &str,
        labels: &BTreeMap<String, String>,
    ) {
        let owner = LedgerOwner {
            container_id: container_id.to_owned(),
            name: name.to_owned(),
            team: team.to_owned(),
            labels: serde_json::to_string(labels).unwrap_or_else(|_| "{}".into()),
        };
        self.insert(
            container_subject(container_id),
            SubjectKind::Container(owner),
            group,
        );
    }

    /// Starts metering a team's group (history and `/metrics`; teams are billed through their
    /// containers).
    pub fn register_team(&self, group: Group, team: &str) {
        self.insert(
            team_subject(team),
            SubjectKind::Team(team.to_owned()),
            group,
        );
    }

    fn insert(&self, subject: String, kind: SubjectKind, group: Group) {
        let mut reg = self.registry();
        let (reserved, memory_max) = reserved_of(&group.limits(), self.shared.host_cpus);
        let entry = Entry {
            kind,
            reader: group.stats_reader(),
            generation: generation(&group),
            group,
            reserved,
            memory_max,
        };
        reg.entries.insert(subject.clone(), entry);
        let mut batch = Batch::default();
        self.sample_one(&mut reg, &subject, &mut batch, wall_ms());
        self.commit(&mut reg, batch);
    }

    /// Re-reads a container's reservations now (call after `update` changed its limits).
    pub fn refresh_limits(&self, container_id: &str) {
        let mut reg = self.registry();
        if let Some(e) = reg.entries.get_mut(&container_subject(container_id)) {
            (e.reserved, e.memory_max) = reserved_of(&e.group.limits(), self.shared.host_cpus);
        }
    }

    /// Takes the final reading of a container (its processes have exited; its cgroup still
    /// exists), commits it with the ledger, and stops metering it. Returns the container's
    /// final cumulative counters, or `None` if it was not registered.
    pub fn unregister_with_final_reading(&self, container_id: &str) -> Option<Counters> {
        let subject = container_subject(container_id);
        let mut reg = self.registry();
        if !reg.entries.contains_key(&subject) {
            return None;
        }
        let mut batch = Batch::default();
        let counters = self.sample_one(&mut reg, &subject, &mut batch, wall_ms());
        reg.entries.remove(&subject);
        reg.checkpoints.remove(&subject);
        reg.previous.remove(&subject);
        batch.checkpoints.insert(subject.clone(), None);
        self.commit(&mut reg, batch);
        self.live_mut().remove(&subject);
        counters
    }

    /// Stops metering a team's group.
    pub fn unregister_team(&self, team: &str) {
        let subject = team_subject(team);
        let mut reg = self.registry();
        reg.entries.remove(&subject);
        reg.previous.remove(&subject);
        self.live_mut().remove(&subject);
    }

    fn live_mut(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, LiveStat>> {
        self.shared.live.write().unwrap_or_else(|p| p.into_inner())
    }

    /// The latest reading and rates of every metered subject.
    pub fn live(&self) -> Vec<LiveStat> {
        self.shared
            .live
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// Container id of a registered container with this name or id.
    pub fn container_id(&self, name_or_id: &str) -> Option<String> {
        let reg = self.registry();
        reg.entries.values().find_map(|e| match &e.kind {
            SubjectKind::Container(o) if o.name == name_or_id || o.container_id == name_or_id => {
                Some(o.container_id.clone())
            }
            _ => None,
        })
    }

    /// Number of ticks whose commit failed, and raw samples buffered now.
    pub fn backlog(&self) -> (u64, usize) {
        let reg = self.registry();
        (reg.failures, reg.pending.samples.len())
    }

    /// Reads one subject, books its delta into `batch`, advances its in-memory checkpoint and
    /// updates the live view. Returns the reading's counters.
    fn sample_one(
        &self,
        reg: &mut Registry,
        subject: &str,
        batch: &mut Batch,
        wall: i64,
    ) -> Option<Counters> {
        let e = reg.entries.get_mut(subject)?;
        let stats = e.reader.sample();
        let reading = Reading {
            boot_id: self.shared.boot_id.clone(),
            mono_ns: mono_ns(),
            wall_ms: wall,
            generation: e.generation,
            counters: counters_of(&stats),
            reserved: e.reserved,
        };
        let kind = e.kind.clone();
        let memory_max = e.memory_max;
        let cpus_reserved = e.reserved.millicores as f64 / 1000.0;
        let usage = usage_between(reg.checkpoints.get(subject), &reading);
        batch.samples.push(Sample {
            subject: subject.to_owned(),
            ts_ms: wall,
            usage,
            mem_bytes: reading.counters.memory_current,
            pids: reading.counters.pids_current,
        });
        if let SubjectKind::Container(owner) = &kind {
            batch.add_ledger(owner, wall, &usage);
        }
        batch
            .checkpoints
            .insert(subject.to_owned(), Some(reading.clone()));
        let r = reg
            .previous
            .get(subject)
            .map(|p| rates(p, &reading))
            .unwrap_or_default();
        reg.previous.insert(subject.to_owned(), reading.clone());
        reg.checkpoints.insert(subject.to_owned(), reading.clone());
        let counters = reading.counters;
        self.live_mut().insert(
            subject.to_owned(),
            LiveStat {
                subject: subject.to_owned(),
                kind,
                reading,
                rates: r,
                memory_max,
                cpus_reserved,
            },
        );
        Some(counters)
    }

    /// The host's busy CPU since the last host reading.
    fn sample_host(&self, reg: &mut Registry, batch: &mut Batch, wall: i64) {
        let Some(busy) = host_busy_usec(Path::new("/proc/stat")) else {
            return;
        };
        let reading = Reading {
            boot_id: self.shared.boot_id.clone(),
            mono_ns: mono_ns(),
            wall_ms: wall,
            generation: 0,
            counters: Counters {
                cpu_usec: busy,
                ..Counters::default()
            },
            reserved: Reserved::default(),
        };
        let usage = match reg.checkpoints.get(HOST_SUBJECT) {
            // The host's counters run since boot: only deltas between our own readings count.
            Some(prev) if super::account::comparable(prev, &reading) => {
                usage_between(Some(prev), &reading)
            }
            _ => Usage::default(),
        };
        if usage.duration_ns > 0 {
            batch.add_host(wall, &usage);
        }
        batch
            .checkpoints
            .insert(HOST_SUBJECT.to_owned(), Some(reading.clone()));
        reg.checkpoints.insert(HOST_SUBJECT.to_owned(), reading);
    }

    /// Writes `batch` after whatever is pending; on failure keeps everything pending.
    fn commit(&self, reg: &mut Registry, batch: Batch) {
        let mut all = std::mem::take(&mut reg.pending);
        all.merge(batch, self.shared.config.max_buffered_samples);
        if all.is_empty() {
            return;
        }
        let result = store::commit(&mut self.shared.store.lock(), &all);
        match result {
            Ok(()) => {
                if all.dropped_samples > 0 {
                    tracing::warn!(
                        dropped = all.dropped_samples,
                        "history samples were dropped while the database could not be written; the ledger is complete"
                    );
                }
            }
            Err(e) => {
                reg.failures += 1;
                tracing::warn!(error = %e, buffered = all.samples.len(), "cannot write metering data; keeping it in memory");
                reg.pending = all;
            }
        }
    }

    /// One sampler tick: every registered group, the host, one commit.
    pub fn tick(&self) {
        let mut reg = self.registry();
        reg.ticks += 1;
        let refresh = reg
            .ticks
            .is_multiple_of(u64::from(self.shared.config.limits_every.max(1)));
        let wall = wall_ms();
        let mut batch = Batch::default();
        let subjects: Vec<String> = reg.entries.keys().cloned().collect();
        for s in subjects {
            if refresh && let Some(e) = reg.entries.get_mut(&s) {
                (e.reserved, e.memory_max) = reserved_of(&e.group.limits(), self.shared.host_cpus);
            }
            self.sample_one(&mut reg, &s, &mut batch, wall);
        }
        self.sample_host(&mut reg, &mut batch, wall);
        self.commit(&mut reg, batch);
    }

    /// Rollups and retention (run by the sampler thread once a minute).
    pub fn maintain(&self) -> Result<(), MeteringError> {
        let now = wall_ms();
        let mut conn = self.shared.store.lock();
        store::rollup(&mut conn, now)?;
        store::apply_retention(&conn, now, &self.shared.config.retention)?;
        Ok(())
    }

    /// Starts the sampler thread. It stops when [`Metering::stop`] is called.
    pub fn start(&self) -> Result<JoinHandle<()>, MeteringError> {
        let me = self.clone();
        std::thread::Builder::new()
            .name("corral-sampler".into())
            .spawn(move || me.run())
            .map_err(MeteringError::Spawn)
    }

    fn run(&self) {
        let interval = self
            .shared
            .config
            .interval
            .clamp(MIN_INTERVAL, MAX_INTERVAL);
        let mut last_maintain = std::time::Instant::now();
        let mut next = std::time::Instant::now();
        loop {
            self.tick();
            if last_maintain.elapsed() >= Duration::from_secs(60) {
                last_maintain = std::time::Instant::now();
                if let Err(e) = self.maintain() {
                    tracing::warn!(error = %e, "metering rollup failed");
                }
            }
            next += interval;
            let now = std::time::Instant::now();
            if next < now {
                next = now + interval;
            }
            let stop = self.shared.stop.lock().unwrap_or_else(|p| p.into_inner());
            let (stop, _) = self
                .shared
                .wake
                .wait_timeout_while(stop, next - now, |s| !*s)
                .unwrap_or_else(|p| p.into_inner());
            if *stop {
                break;
            }
        }
        // A last tick so the shutdown loses nothing since the previous one.
        self.tick();
    }

    /// Asks the sampler thread to take a last sample and stop.
    pub fn stop(&self) {
        *self.shared.stop.lock().unwrap_or_else(|p| p.into_inner()) = true;
        self.shared.wake.notify_all();
    }
}

/// The cumulative counters of one stats sample.
pub fn counters_of(s: &Stats) -> Counters {
    let io = |f: fn(&crate::cgroup::IoDeviceStats) -> Option<u64>| -> u64 {
        s.io.iter().filter_map(f).sum()
    };
    Counters {
        cpu_usec: s.cpu_usage_usec.unwrap_or(0),
        throttled_usec: s.cpu_throttled_usec.unwrap_or(0),
        io_rbytes: io(|d| d.rbytes),
        io_wbytes: io(|d| d.wbytes),
        io_rios: io(|d| d.rios),
        io_wios: io(|d| d.wios),
        oom_kills: s.memory_events.oom_kill.unwrap_or(0),
        memory_current: s.memory_current.unwrap_or(0),
        memory_peak: s.memory_peak.unwrap_or(0),
        pids_current: s.pids_current.unwrap_or(0),
        pids_peak: s.pids_peak.unwrap_or(0),
    }
}

/// Reservations from limits read back from the kernel. A cpuset that spans every CPU of the
/// host reserves nothing (it is the default, not a reservation).
pub fn reserved_of(l: &Limits, host_cpus: u64) -> (Reserved, Option<u64>) {
    let (quota, period) = match l.cpu_max {
        Some(m) => (
            match m.quota {
                Max::Limit(q) => Some(q),
                Max::Unlimited => None,
            },
            m.period,
        ),
        None => (None, 0),
    };
    let cpuset = l
        .cpuset_cpus
        .as_deref()
        .and_then(parse_id_list)
        .map(|s| s.len() as u64)
        .filter(|n| *n > 0 && *n < host_cpus);
    let memory_max = match l.memory_max {
        Some(Max::Limit(b)) if b < crate::cgroup::units::V1_UNLIMITED_FLOOR => Some(b),
        _ => None,
    };
    (
        Reserved {
            millicores: Reserved::millicores_from(quota, period, cpuset),
            memory_bytes: memory_max.unwrap_or(0),
        },
        memory_max,
    )
}

/// The group's incarnation: the inode of its first directory (a recreated group gets a new one).
fn generation(g: &Group) -> u64 {
    g.dirs()
        .next()
        .and_then(|d| std::fs::metadata(d).ok())
        .map_or(0, |m| m.ino())
}

/// `CLOCK_MONOTONIC` in ns.
pub fn mono_ns() -> u64 {
    match nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC) {
        Ok(ts) => (ts.tv_sec() as u64) * 1_000_000_000 + ts.tv_nsec() as u64,
        Err(_) => 0,
    }
}

/// Wall clock, Unix ms.
pub fn wall_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// This boot's id; a different one means every counter restarted.
pub fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

/// The host's busy CPU time in µs from the `cpu` line of `/proc/stat`: user + nice + system +
/// irq + softirq + steal (guest time is already inside user). Values are in USER_HZ, which is
/// 100 on every Linux architecture Corral supports.
pub fn host_busy_usec(proc_stat: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(proc_stat).ok()?;
    parse_proc_stat_busy(&text)
}

/// Parses the busy time out of `/proc/stat` text.
pub fn parse_proc_stat_busy(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|x| x.parse().ok())
        .collect::<Option<_>>()?;
    let get = |i: usize| v.get(i).copied().unwrap_or(0);
    // user nice system idle iowait irq softirq steal
    let busy = get(0) + get(1) + get(2) + get(5) + get(6) + get(7);
    Some(busy * 10_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_stat() {
        let t = "cpu  100 5 50 9000 7 1 2 3 10 0\ncpu0 1 2 3 4 5 6 7 8 9 0\n";
        assert_eq!(
            parse_proc_stat_busy(t),
            Some((100 + 5 + 50 + 1 + 2 + 3) * 10_000)
        );
        assert!(parse_proc_stat_busy("intr 1 2\n").is_none());
        assert!(host_busy_usec(Path::new("/proc/stat")).unwrap() > 0);
    }

    #[test]
    fn reservations_from_limits() {
        use crate::cgroup::CpuMax;
        let l = Limits {
            cpu_max: Some(CpuMax {
                quota: Max::Limit(50_000),
                period: 100_000,
            }),
            cpuset_cpus: Some("0-7".into()),
            memory_max: Some(Max::Limit(1 << 30)),
            ..Limits::default()
        };
        let (r, m) = reserved_of(&l, 8);
        assert_eq!(r.millicores, 500);
        assert_eq!(r.memory_bytes, 1 << 30);
        assert_eq!(m, Some(1 << 30));
        let l = Limits {
            cpuset_cpus: Some("0-1".into()),
            memory_max: Some(Max::Unlimited),
            ..Limits::default()
        };
        let (r, m) = reserved_of(&l, 8);
        assert_eq!((r.millicores, r.memory_bytes, m), (2000, 0, None));
        // The whole host is not a reservation.
        let l = Limits {
            cpuset_cpus: Some("0-7".into()),
            ..Limits::default()
        };
        assert_eq!(reserved_of(&l, 8).0.millicores, 0);
    }
}
