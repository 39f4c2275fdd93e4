//! The registry of metered groups and the sampler thread.
//!
//! The runtime calls [`Metering::register`] when a container's cgroup exists and
//! [`Metering::unregister_with_final_reading`] after its processes exited and BEFORE it removes
//! the cgroup, so the last microseconds are billed (a 50 ms container is billed exactly its
//! final `cpu.stat`). Teams are registered with [`Metering::register_team`]; a team pool's
//! group ([`Metering::meter_team`], at team creation and daemon start) stays metered while the
//! team exists, with or without containers, and is dropped by [`Metering::unregister_team`].
//!
//! Every tick (default 5 s, `--sample-interval`) the sampler thread reads every group through
//! its kept-open [`UsageReader`] — only the files billing needs; the cumulative peaks, OOM kills
//! and v1 throttling at most every [`MeteringConfig::full_read`] and always at registration and
//! at the final reading —, turns readings into deltas against the last checkpoint, and
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
    time::{Duration, Instant},
};

use crate::{
    cgroup::{Cgroups, Group, Limits, Max, UsageReader, UsageSample, units::parse_id_list},
    store::Store,
};

use super::{
    MeteringError,
    account::{Counters, Rates, Reading, Reserved, Usage, comparable, rates_of, usage_between},
    packed::{Block, RawSample},
    store::{self, Batch, LedgerOwner, Retention},
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
    /// How often reservations (cpu.max, cpuset, memory.max) are re-read as a safety net (the
    /// runtime calls [`Metering::refresh_limits`] after every change it makes).
    pub limits_every: Duration,
    /// How often the files that only hold cumulative maxima and rare counters (memory and pids
    /// peaks, OOM kills, v1 throttling) are read when the interval is shorter. Cumulative, so
    /// nothing is lost in between; registration and the final reading always read them.
    pub full_read: Duration,
    /// How often the ledger and the checkpoints are written (raw samples go every tick). A
    /// crash loses nothing: the next reading is compared with the last written checkpoint.
    pub ledger_flush: Duration,
}

impl Default for MeteringConfig {
    fn default() -> Self {
        MeteringConfig {
            interval: Duration::from_secs(5),
            retention: Retention::default(),
            max_buffered_samples: 200_000,
            limits_every: Duration::from_secs(60),
            full_read: Duration::from_secs(5),
            ledger_flush: Duration::from_secs(30),
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
    /// PSI `some avg10` of cpu, memory and io at this reading (live only, never stored).
    pub pressure: [Option<f64>; 3],
    /// PSI stall time of cpu, memory and io, `[some, full]`, µs since the group was created
    /// (`total=` of the `*.pressure` files at the last full read; live only, never stored).
    pub pressure_total_usec: [[Option<u64>; 2]; 3],
}

struct Entry {
    kind: SubjectKind,
    reader: UsageReader,
    /// The last values read (files not re-read this tick keep them).
    last: UsageSample,
    /// Ticks since the last full read and the last reservation refresh.
    since_full: u32,
    since_limits: u32,
    generation: u64,
    reserved: Reserved,
    memory_max: Option<u64>,
    /// The next sample goes to history without usage: the daemon restarted and its usage since
    /// the checkpoint may already be in the raw samples (the ledger still gets all of it).
    resumed: bool,
    /// The latest reading, rewritten in place each tick.
    reading: Reading,
}

struct Registry {
    entries: BTreeMap<String, Entry>,
    /// Last reading accounted per subject. Persisted (with the ledger rows up to it) at every
    /// flush; loaded at start-up.
    checkpoints: BTreeMap<String, Reading>,
    /// Ledger usage since the last flush.
    unflushed: Batch,
    /// Subjects whose checkpoint must be deleted at the next flush.
    removed: Vec<String>,
    /// What could not be written yet (disk full): written before anything newer.
    pending: Batch,
    /// `None` until the first flush, which the first commit does: from then on a crash always
    /// finds a checkpoint for the host and every group.
    last_flush: Option<Instant>,
    ticks: u64,
    failures: u64,
}

struct Shared {
    store: Store,
    /// The engine, when the daemon has one: lets `register` meter a container's team group too.
    cgroups: std::sync::OnceLock<Arc<Cgroups>>,
    /// Told of each container reading whose OOM-kill count grew (the event hub's `oom`).
    on_oom: std::sync::OnceLock<OomSink>,
    /// Told after each ledger flush was written (the budget governor's wake-up).
    on_flush: std::sync::OnceLock<FlushSink>,
    config: MeteringConfig,
    boot_id: String,
    host_cpus: u64,
    registry: Mutex<Registry>,
    live: RwLock<BTreeMap<String, LiveStat>>,
    /// Bumped whenever `live` is written: readers skip copying an unchanged live view.
    live_version: std::sync::atomic::AtomicU64,
    stop: Mutex<bool>,
    wake: Condvar,
}

/// Called with a container whose OOM kills grew since its last reading, and whether it still
/// runs (`false` at the final reading, taken once it exited). On the sampler thread, with the
/// registry locked: it must not call back into [`Metering`].
pub type OomSink = Box<dyn Fn(&LedgerOwner, bool) + Send + Sync>;

/// Called after each ledger flush reached the database. On the sampler thread, with the
/// registry locked: it must only signal (never block, never call back into [`Metering`]).
pub type FlushSink = Box<dyn Fn() + Send + Sync>;

/// The metering handle: registry, live view, sampler control. Cheap to clone.
#[derive(Clone)]
pub struct Metering {
    shared: Arc<Shared>,
}

/// Where one tick's time went.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TickStats {
    pub groups: usize,
    /// Reading the kernel's files (kept-open `pread` + parse).
    pub read: Duration,
    /// Everything else of the sampling pass: deltas, batch, live view.
    pub account: Duration,
    /// Writing to SQLite (samples; ledger and checkpoints when flushed).
    pub commit: Duration,
    pub flushed: bool,
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
                cgroups: std::sync::OnceLock::new(),
                on_oom: std::sync::OnceLock::new(),
                on_flush: std::sync::OnceLock::new(),
                config,
                boot_id: boot_id(),
                host_cpus: std::thread::available_parallelism().map_or(1, |n| n.get() as u64),
                registry: Mutex::new(Registry {
                    entries: BTreeMap::new(),
                    checkpoints,
                    unflushed: Batch::default(),
                    removed: Vec::new(),
                    pending: Batch::default(),
                    last_flush: None,
                    ticks: 0,
                    failures: 0,
                }),
                live: RwLock::new(BTreeMap::new()),
                live_version: std::sync::atomic::AtomicU64::new(0),
                stop: Mutex::new(false),
                wake: Condvar::new(),
            }),
        })
    }

    pub fn config(&self) -> &MeteringConfig {
        &self.shared.config
    }

    /// Sets who is told of OOM kills (once; later calls are ignored).
    pub fn on_oom(&self, sink: OomSink) {
        let _ = self.shared.on_oom.set(sink);
    }

    /// Sets who is told when a ledger flush was written (once; later calls are ignored).
    pub fn on_flush(&self, sink: FlushSink) {
        let _ = self.shared.on_flush.set(sink);
    }

    /// Gives metering the cgroup engine: from then on, registering a container also meters its
    /// team's group (the parent of the container's group), and a team whose group no pool
    /// pins ([`Cgroups::is_pinned`]) stops being metered with its last container.
    pub fn set_cgroups(&self, cgroups: Arc<Cgroups>) {
        let _ = self.shared.cgroups.set(cgroups);
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
        let team_group = self.shared.cgroups.get().and_then(|cg| {
            let parent = group.path().parent()?;
            let known = self.registry().entries.contains_key(&team_subject(team));
            (!known && !parent.parts().is_empty())
                .then(|| cg.open(&parent).ok())
                .flatten()
        });
        self.insert(
            container_subject(container_id),
            SubjectKind::Container(owner),
            group,
        );
        if let Some(tg) = team_group {
            self.register_team(tg, team);
        }
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

    /// Meters a team's pool for the team's whole life (team created, daemon start), not only
    /// while it has containers: its counters stay cumulative and its history has no holes.
    /// Opens `<subtree>/<team>` through the engine; a team already metered or a group that does
    /// not exist (no engine, pool not created) is left alone.
    pub fn meter_team(&self, team: &str) {
        if self.registry().entries.contains_key(&team_subject(team)) {
            return;
        }
        let group = self.shared.cgroups.get().and_then(|cg| {
            let path = crate::cgroup::GroupPath::new([team]).ok()?;
            cg.open(&path).ok()
        });
        if let Some(g) = group {
            self.register_team(g, team);
        }
    }

    fn insert(&self, subject: String, kind: SubjectKind, group: Group) {
        let mut reg = self.registry();
        let mut reader = group.usage_reader();
        let (reserved, memory_max) = reserved_of(&reader.read_reservation(), self.shared.host_cpus);
        // Staggered, so full reads spread over the ticks instead of all landing on one.
        let full_every = self.ticks_per(self.shared.config.full_read);
        let limits_every = self.ticks_per(self.shared.config.limits_every);
        let entry = Entry {
            kind,
            reader,
            last: UsageSample::default(),
            since_full: (reg.entries.len() as u32) % full_every,
            // Staggered as well.
            since_limits: (reg.entries.len() as u32) % limits_every,
            generation: generation(&group),
            reserved,
            memory_max,
            resumed: reg.checkpoints.contains_key(&subject),
            reading: Reading {
                boot_id: self.shared.boot_id.clone(),
                mono_ns: 0,
                wall_ms: 0,
                generation: 0,
                counters: Counters::default(),
                reserved: Reserved::default(),
            },
        };
        reg.removed.retain(|s| *s != subject);
        reg.entries.insert(subject.clone(), entry);
        let mut samples = Block::default();
        let mut stats = TickStats::default();
        let live = self.sample_subject(
            &mut reg,
            &subject,
            &mut samples,
            wall_ms(),
            &mut stats,
            true,
        );
        self.publish(live);
        // Durable at once: a crash right after never loses the registration's baseline.
        self.commit(&mut reg, samples, true);
    }

    /// Re-reads a container's reservations now (call after `update` changed its limits).
    pub fn refresh_limits(&self, container_id: &str) {
        let mut reg = self.registry();
        if let Some(e) = reg.entries.get_mut(&container_subject(container_id)) {
            (e.reserved, e.memory_max) =
                reserved_of(&e.reader.read_reservation(), self.shared.host_cpus);
        }
    }

    /// Takes the final reading of a container (its processes have exited; its cgroup still
    /// exists), commits it with all unflushed ledger rows, and stops metering it. Returns the
    /// container's final cumulative counters, or `None` if it was not registered.
    pub fn unregister_with_final_reading(&self, container_id: &str) -> Option<Counters> {
        let subject = container_subject(container_id);
        let mut reg = self.registry();
        if !reg.entries.contains_key(&subject) {
            return None;
        }
        let mut samples = Block::default();
        let mut stats = TickStats::default();
        let live = self.sample_subject(
            &mut reg,
            &subject,
            &mut samples,
            wall_ms(),
            &mut stats,
            false,
        );
        reg.entries.remove(&subject);
        reg.checkpoints.remove(&subject);
        reg.removed.push(subject.clone());
        self.commit(&mut reg, samples, true);
        self.live_mut().remove(&subject);
        // The team's group goes with its last container (when metering opened it itself),
        // unless a team pool keeps the group: then it stays metered while the team exists.
        if let Some(cg) = self.shared.cgroups.get()
            && let Some(team) = live.as_ref().and_then(|l| match &l.kind {
                SubjectKind::Container(o) => Some(o.team.clone()),
                SubjectKind::Team(_) => None,
            })
            && !reg
                .entries
                .values()
                .any(|e| matches!(&e.kind, SubjectKind::Container(o) if o.team == team))
            && !cg.is_pinned(&team)
        {
            drop(reg);
            self.unregister_team(&team);
        }
        live.map(|l| l.reading.counters)
    }

    /// Stops metering a team's group.
    pub fn unregister_team(&self, team: &str) {
        let subject = team_subject(team);
        let mut reg = self.registry();
        reg.entries.remove(&subject);
        reg.checkpoints.remove(&subject);
        reg.removed.push(subject.clone());
        self.live_mut().remove(&subject);
    }

    fn live_mut(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, LiveStat>> {
        let guard = self.shared.live.write().unwrap_or_else(|p| p.into_inner());
        self.shared
            .live_version
            .fetch_add(1, std::sync::atomic::Ordering::Release);
        guard
    }

    /// Changes whenever the live view may have changed (a tick, a registration, a removal):
    /// a cheap check before copying it with [`Metering::live`].
    pub fn live_version(&self) -> u64 {
        self.shared
            .live_version
            .load(std::sync::atomic::Ordering::Acquire)
    }

    fn publish(&self, live: impl IntoIterator<Item = LiveStat>) {
        let mut map = self.live_mut();
        for l in live {
            match map.get_mut(&l.subject) {
                Some(slot) => *slot = l,
                None => {
                    map.insert(l.subject.clone(), l);
                }
            }
        }
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

    /// Whether the container is being metered now.
    pub fn is_registered(&self, container_id: &str) -> bool {
        self.registry()
            .entries
            .contains_key(&container_subject(container_id))
    }

    /// Whether the container has a checkpoint (persisted or in memory) that its final reading
    /// has not consumed yet: usage after it is still unbilled.
    pub fn has_checkpoint(&self, container_id: &str) -> bool {
        self.registry()
            .checkpoints
            .contains_key(&container_subject(container_id))
    }

    /// Id and team of a registered container with this name or id.
    pub fn container_owner(&self, name_or_id: &str) -> Option<(String, String)> {
        let reg = self.registry();
        reg.entries.values().find_map(|e| match &e.kind {
            SubjectKind::Container(o) if o.name == name_or_id || o.container_id == name_or_id => {
                Some((o.container_id.clone(), o.team.clone()))
            }
            _ => None,
        })
    }

    /// Number of commits that failed so far, and raw samples buffered in memory now.
    pub fn backlog(&self) -> (u64, usize) {
        let reg = self.registry();
        (reg.failures, reg.pending.samples())
    }

    /// Ticks of the configured interval in `d` (at least 1).
    fn ticks_per(&self, d: Duration) -> u32 {
        let every = d.as_nanos() / self.shared.config.interval.as_nanos().max(1);
        u32::try_from(every).unwrap_or(u32::MAX).max(1)
    }

    /// Reads one subject in full (registration; the final reading, `running` false) and books
    /// it.
    fn sample_subject(
        &self,
        reg: &mut Registry,
        subject: &str,
        samples: &mut Block,
        wall: i64,
        stats: &mut TickStats,
        running: bool,
    ) -> Option<LiveStat> {
        let Registry {
            entries,
            checkpoints,
            unflushed,
            ..
        } = reg;
        let e = entries.get_mut(subject)?;
        self.sample_one(
            e,
            subject,
            true,
            Books {
                checkpoints,
                unflushed,
                samples,
                stats,
                running,
            },
            wall,
            None,
        )
    }

    /// Reads one entry (every file when `full`, else the every-tick ones), books its delta
    /// (ledger usage into `unflushed`, a history sample into `samples`), advances its in-memory
    /// checkpoint and updates its live view `live` in place — or returns a new one.
    fn sample_one(
        &self,
        e: &mut Entry,
        subject: &str,
        full: bool,
        b: Books<'_>,
        wall: i64,
        live: Option<&mut LiveStat>,
    ) -> Option<LiveStat> {
        let t0 = Instant::now();
        if full {
            e.reader.read_all(&mut e.last);
        } else {
            e.reader.read_fast(&mut e.last);
        }
        b.stats.read += t0.elapsed();
        b.stats.groups += 1;
        let counters = counters_from(&e.last);
        // The entry's own reading, updated in place (no allocation per tick).
        let reading = &mut e.reading;
        reading.mono_ns = mono_ns();
        reading.wall_ms = wall;
        reading.generation = e.generation;
        reading.counters = counters;
        reading.reserved = e.reserved;
        let reading = &*reading;
        let mut prev = b.checkpoints.get_mut(subject);
        let usage = usage_between(prev.as_deref(), reading);
        let r = match prev.as_deref() {
            Some(p) if comparable(p, reading) => rates_of(&usage),
            _ => Rates::default(),
        };
        // The first reading after a daemon restart may repeat what the last daemon already
        // put in history and announced; the ledger still gets all of it.
        let resumed = std::mem::take(&mut e.resumed);
        if usage.oom_kills > 0
            && !resumed
            && let (SubjectKind::Container(owner), Some(sink)) = (&e.kind, self.shared.on_oom.get())
        {
            sink(owner, b.running);
        }
        let history = if resumed {
            Usage {
                memory_peak: usage.memory_peak,
                pids_peak: usage.pids_peak,
                ..Usage::default()
            }
        } else {
            usage
        };
        b.samples.push(
            subject,
            &RawSample::new(
                wall,
                &history,
                counters.memory_current,
                counters.pids_current,
                // The last slow-path reading (a 10 s average): no file is read for it here.
                e.last.pressure_some_avg10,
            ),
        );
        match prev.as_mut() {
            Some(slot) => slot.clone_from(reading),
            None => {
                b.checkpoints.insert(subject.to_owned(), reading.clone());
            }
        }
        if let SubjectKind::Container(owner) = &e.kind {
            b.unflushed.add_ledger(owner, wall, &usage);
        }
        let cpus_reserved = e.reserved.millicores as f64 / 1000.0;
        let pressure = e
            .last
            .pressure_some_avg10
            .map(|p| p.map(|centi| f64::from(centi) / 100.0));
        match live {
            // Update in place: no clone of the subject and its owner per tick.
            Some(l) => {
                l.reading.clone_from(reading);
                l.rates = r;
                l.memory_max = e.memory_max;
                l.cpus_reserved = cpus_reserved;
                l.pressure = pressure;
                l.pressure_total_usec = e.last.pressure_total_usec;
                None
            }
            None => Some(LiveStat {
                subject: subject.to_owned(),
                kind: e.kind.clone(),
                reading: reading.clone(),
                rates: r,
                memory_max: e.memory_max,
                cpus_reserved,
                pressure,
                pressure_total_usec: e.last.pressure_total_usec,
            }),
        }
    }

    /// The host's busy CPU since the last host reading (only deltas between our own readings:
    /// the host's counters run since boot).
    fn sample_host(&self, reg: &mut Registry, wall: i64) {
        let Some(HostBusy { usec, cpus }) = host_busy(Path::new("/proc/stat")) else {
            return;
        };
        // The online CPU count is the host reading's generation: a CPU going on- or offline
        // changes what "busy since boot" means, so no delta is taken across it.
        let prev = reg
            .checkpoints
            .get(HOST_SUBJECT)
            .filter(|p| p.boot_id == self.shared.boot_id && p.generation == cpus);
        // Idle time is truncated to 10 ms when the kernel prints it: a fully idle interval can
        // read a few ms below the last one. Never a reset: hold the counter until it passes.
        let usec = prev.map_or(usec, |p| usec.max(p.counters.cpu_usec));
        let reading = Reading {
            boot_id: self.shared.boot_id.clone(),
            mono_ns: mono_ns(),
            wall_ms: wall,
            generation: cpus,
            counters: Counters {
                cpu_usec: usec,
                ..Counters::default()
            },
            reserved: Reserved::default(),
        };
        if let Some(prev) = reg.checkpoints.get(HOST_SUBJECT)
            && super::account::comparable(prev, &reading)
        {
            let usage = usage_between(Some(prev), &reading);
            if usage.duration_ns > 0 {
                reg.unflushed.add_host(wall, &usage);
            }
        }
        reg.checkpoints.insert(HOST_SUBJECT.to_owned(), reading);
    }

    /// Writes `samples` after whatever is pending and, when `flush` (or the flush interval has
    /// passed), the unflushed ledger with every checkpoint — one transaction. On failure
    /// everything stays pending (samples capped, ledger sums merged) for the next commit.
    fn commit(&self, reg: &mut Registry, samples: Block, flush: bool) -> bool {
        let flush = flush
            || reg
                .last_flush
                .is_none_or(|t| t.elapsed() >= self.shared.config.ledger_flush);
        let mut batch = Batch {
            blocks: vec![samples],
            ..Batch::default()
        };
        if flush {
            let ledger = std::mem::take(&mut reg.unflushed);
            batch.ledger = ledger.ledger;
            batch.host = ledger.host;
            batch.checkpoints = reg
                .checkpoints
                .iter()
                .map(|(s, r)| (s.clone(), Some(r.clone())))
                .collect();
            for s in reg.removed.drain(..) {
                batch.checkpoints.insert(s, None);
            }
            reg.last_flush = Some(Instant::now());
        }
        let mut all = std::mem::take(&mut reg.pending);
        all.merge(batch, self.shared.config.max_buffered_samples);
        if all.is_empty() {
            return flush;
        }
        match store::commit(&mut self.shared.store.lock(), &all) {
            Ok(()) => {
                if flush && let Some(sink) = self.shared.on_flush.get() {
                    sink();
                }
                if all.dropped_samples > 0 {
                    tracing::warn!(
                        dropped = all.dropped_samples,
                        "history samples were dropped while the database could not be written; the ledger is complete"
                    );
                }
            }
            Err(e) => {
                reg.failures += 1;
                if reg.failures.is_power_of_two() {
                    tracing::warn!(error = %e, buffered = all.samples(), failures = reg.failures, "cannot write metering data; keeping it in memory");
                }
                reg.pending = all;
            }
        }
        flush
    }

    /// One sampler tick: every registered group, the host, one commit.
    pub fn tick(&self) -> TickStats {
        let full_every = self.ticks_per(self.shared.config.full_read);
        let limits_every = self.ticks_per(self.shared.config.limits_every);
        let mut guard = self.registry();
        let reg = &mut *guard;
        reg.ticks += 1;
        let wall = wall_ms();
        let mut stats = TickStats::default();
        let t0 = Instant::now();
        let mut samples = Block::with_capacity(reg.entries.len());
        {
            let mut live = self.live_mut();
            let Registry {
                entries,
                checkpoints,
                unflushed,
                ..
            } = reg;
            for (subject, e) in entries.iter_mut() {
                e.since_limits += 1;
                if e.since_limits >= limits_every {
                    e.since_limits = 0;
                    (e.reserved, e.memory_max) =
                        reserved_of(&e.reader.read_reservation(), self.shared.host_cpus);
                }
                e.since_full += 1;
                let full = e.since_full >= full_every;
                if full {
                    e.since_full = 0;
                }
                let books = Books {
                    checkpoints,
                    unflushed,
                    samples: &mut samples,
                    stats: &mut stats,
                    running: true,
                };
                let new = self.sample_one(e, subject, full, books, wall, live.get_mut(subject));
                if let Some(l) = new {
                    live.insert(l.subject.clone(), l);
                }
            }
        }
        self.sample_host(reg, wall);
        stats.account = t0.elapsed().saturating_sub(stats.read);
        let t1 = Instant::now();
        stats.flushed = self.commit(reg, samples, false);
        stats.commit = t1.elapsed();
        stats
    }

    /// Writes the unflushed ledger and checkpoints now (shutdown, tests).
    pub fn flush(&self) {
        let mut reg = self.registry();
        self.commit(&mut reg, Block::default(), true);
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
        let mut last_maintain = Instant::now();
        let mut next = Instant::now();
        loop {
            self.tick();
            if last_maintain.elapsed() >= Duration::from_secs(60) {
                last_maintain = Instant::now();
                if let Err(e) = self.maintain() {
                    tracing::warn!(error = %e, "metering rollup failed");
                }
            }
            next += interval;
            let now = Instant::now();
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
        // A last tick and flush so a clean shutdown leaves the ledger up to date.
        self.tick();
        self.flush();
    }

    /// Asks the sampler thread to take a last sample, flush and stop.
    pub fn stop(&self) {
        *self.shared.stop.lock().unwrap_or_else(|p| p.into_inner()) = true;
        self.shared.wake.notify_all();
    }
}

/// Where `sample_one` books a reading.
struct Books<'a> {
    checkpoints: &'a mut BTreeMap<String, Reading>,
    unflushed: &'a mut Batch,
    samples: &'a mut Block,
    stats: &'a mut TickStats,
    /// The group's processes may still run (not the final reading).
    running: bool,
}

/// The cumulative counters of one usage sample.
pub fn counters_from(s: &UsageSample) -> Counters {
    Counters {
        cpu_usec: s.cpu_usec,
        throttled_usec: s.throttled_usec,
        io_rbytes: s.io_rbytes,
        io_wbytes: s.io_wbytes,
        io_rios: s.io_rios,
        io_wios: s.io_wios,
        oom_kills: s.oom_kills,
        memory_current: s.memory_current,
        memory_peak: s.memory_peak,
        pids_current: s.pids_current,
        pids_peak: s.pids_peak,
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

/// The host's busy CPU time since boot and the CPUs it was counted over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostBusy {
    pub usec: u64,
    /// Online CPUs (the `cpuN` lines of `/proc/stat`).
    pub cpus: u64,
}

/// The host's busy CPU time since boot, µs: `CLOCK_BOOTTIME` × online CPUs − (idle + iowait).
///
/// Not the sum of the user/system/irq columns: those (and the root cgroup's `cpu.stat`
/// `usage_usec`, which the kernel sums from the same per-tick counters) are sampled by the
/// timer tick and lose the time of late or missed ticks — in a loaded VM far more than 1 %,
/// while a cgroup's own usage is exact scheduler time. Idle and iowait, on a tickless kernel
/// (every distribution kernel), are measured from the kernel's idle entry and exit timestamps,
/// so "everything that was not idle" is exact to the 10 ms the kernel prints them in.
pub fn host_busy(proc_stat: &Path) -> Option<HostBusy> {
    let text = std::fs::read_to_string(proc_stat).ok()?;
    let (idle_ticks, cpus) = parse_proc_stat_idle(&text)?;
    let ts = nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME).ok()?;
    let boot_usec = (ts.tv_sec() as u64) * 1_000_000 + ts.tv_nsec() as u64 / 1000;
    let usec = (boot_usec * cpus).saturating_sub(idle_ticks * USEC_PER_USER_HZ_TICK);
    Some(HostBusy { usec, cpus })
}

/// [`host_busy`]'s µs alone.
pub fn host_busy_usec(proc_stat: &Path) -> Option<u64> {
    host_busy(proc_stat).map(|b| b.usec)
}

/// `/proc/stat` counts in USER_HZ, which is 100 on every Linux architecture Corral supports.
const USEC_PER_USER_HZ_TICK: u64 = 10_000;

/// Idle + iowait of the `cpu` line of `/proc/stat` (in USER_HZ ticks) and the number of online
/// CPUs (`cpuN` lines).
pub fn parse_proc_stat_idle(text: &str) -> Option<(u64, u64)> {
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|x| x.parse().ok())
        .collect::<Option<_>>()?;
    // user nice system idle iowait irq softirq steal
    let idle = v.get(3).copied()? + v.get(4).copied().unwrap_or(0);
    let cpus = text
        .lines()
        .filter(|l| {
            l.strip_prefix("cpu")
                .is_some_and(|r| r.starts_with(|c: char| c.is_ascii_digit()))
        })
        .count() as u64;
    (cpus > 0).then_some((idle, cpus))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_stat() {
        let t = "cpu  100 5 50 9000 7 1 2 3 10 0\ncpu0 1 2 3 4 5 6 7 8 9 0\ncpu1 1 2 3 4 5 6 7 8 9 0\nintr 5\n";
        assert_eq!(parse_proc_stat_idle(t), Some((9000 + 7, 2)));
        assert!(parse_proc_stat_idle("intr 1 2\n").is_none());
        let t = std::time::Instant::now();
        let a = host_busy(Path::new("/proc/stat")).unwrap();
        assert!(a.usec > 0 && a.cpus >= 1);
        // Busy never exceeds the wall time of every CPU (+ the 10 ms the kernel prints in).
        std::thread::sleep(std::time::Duration::from_millis(100));
        let b = host_busy(Path::new("/proc/stat")).unwrap();
        let wall = t.elapsed().as_micros() as u64;
        assert!(b.usec.saturating_sub(a.usec) <= wall * b.cpus + 10_000);
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
