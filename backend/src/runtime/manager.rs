//! The daemon side of containers: validation, the SQLite records, starting monitors, and
//! reconciling records with what the monitors report (also after a daemon restart).
//!
//! Architecture invariant: nothing here forks, clones, unshares or setns. Monitors and exec
//! helpers are separate, freshly exec'd processes (`corral __shim`, `corral __exec`).

use std::{
    collections::HashMap,
    fs,
    io::Read,
    os::unix::{fs::DirBuilderExt, process::CommandExt},
    path::{Path, PathBuf},
    process::Stdio,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use rusqlite::{OptionalExtension, params};

use super::{
    RuntimeError,
    cgroups::{CgroupDriver, CgroupFailure},
    config::{
        ContainerDir, DEFAULT_CAPS, DEFAULT_LOG_MAX, DEFAULT_PATH, IdRange, MountConfig,
        RestartPolicy, ShimConfig,
    },
    state::{ShimState, alive, now},
};
use crate::{image::ImageStore, store::Store};

pub use super::status::Status;

mod ckpt;

/// pids.max when the request sets none: a fork bomb stops here.
pub const DEFAULT_PIDS_MAX: u64 = 2048;
/// Seconds between SIGTERM and SIGKILL on stop.
pub const DEFAULT_STOP_TIMEOUT: u64 = 10;

/// One container's record.
#[derive(Debug, Clone)]
pub struct Record {
    pub id: String,
    pub name: String,
    pub team: String,
    pub spec: wire::CreateContainer,
    /// Changed only by [`Record::transition`].
    status: Status,
    pub exit_code: Option<i32>,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub shim_pid: Option<i32>,
    pub shim_start: Option<u64>,
    pub init_pid: Option<i32>,
    pub init_start: Option<u64>,
    pub restart_count: u32,
}

impl Record {
    /// Where the container is in its life.
    pub fn status(&self) -> Status {
        self.status
    }

    /// Moves the container to `to`, the only way its state changes. A step no container makes
    /// ([`Status::can_become`]) is a bug: it is logged as one (and still taken, so the record
    /// follows what the kernel and the monitor report).
    pub fn transition(&mut self, to: Status) {
        if !self.status.can_become(to) {
            tracing::error!(container = %self.name, from = %self.status, %to,
                "a container state change no container makes");
        }
        self.status = to;
    }

    /// A record in `status` with the rest empty, for tests of what reads records.
    #[cfg(test)]
    pub fn for_test(name: &str, status: Status) -> Self {
        Record {
            id: format!("id-{name}"),
            name: name.to_owned(),
            team: "default".to_owned(),
            spec: wire::CreateContainer::default(),
            status,
            exit_code: None,
            created_at: 0,
            started_at: None,
            finished_at: None,
            shim_pid: None,
            shim_start: None,
            init_pid: None,
            init_start: None,
            restart_count: 0,
        }
    }

    pub fn to_wire(&self) -> wire::Container {
        let image = match (&self.spec.image, &self.spec.rootfs) {
            (Some(i), _) => i.clone(),
            (None, Some(r)) => format!("rootfs:{r}"),
            _ => String::new(),
        };
        let live = self.status().is_live();
        wire::Container {
            id: self.id.clone(),
            name: self.name.clone(),
            team: self.team.clone(),
            image,
            command: self.spec.command.clone(),
            status: self.status.as_str().to_owned(),
            exit_code: self.exit_code,
            pid: if live { self.init_pid } else { None },
            created_at: self.created_at,
            started_at: self.started_at,
            finished_at: self.finished_at,
            restart_count: self.restart_count,
            limits: self.spec.limits.clone(),
            spec: self.spec.clone(),
            network: None,
            team_limits: None,
            effective_limits: None,
        }
    }
}

/// The container manager, cheap to clone.
#[derive(Clone)]
pub struct Manager {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    dir: PathBuf,
    images: ImageStore,
    cgroups: Arc<dyn CgroupDriver>,
    /// Metering: containers are registered while their cgroup exists and runs processes.
    metering: Option<crate::metering::Metering>,
    /// Serializes the live → exited transition (and so the final reading).
    exit_lock: Mutex<()>,
    /// Held from choosing a user-namespace range to recording it: ranges never overlap.
    userns_lock: Mutex<()>,
    /// One lock per container name: lifecycle operations on one container never interleave.
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Bridge networking; `None` in tests that do not need it.
    network: Option<crate::network::Network>,
    /// Lifecycle events for `GET /api/v1/events` (set by `AppState::with_containers`).
    events: std::sync::OnceLock<crate::events::Events>,
    /// `--default-memory`: the memory limit of a container created without one.
    default_memory: Option<u64>,
    /// The records reads use, and which live containers a pidfd watch covers (`registry.rs`).
    registry: super::registry::Registry,
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, RuntimeError> + Send + 'static,
) -> Result<T, RuntimeError> {
    let actor = crate::events::current_actor();
    tokio::task::spawn_blocking(move || crate::events::run_as(actor, f))
        .await
        .unwrap_or_else(|e| {
            Err(RuntimeError::Start {
                name: String::new(),
                message: format!("blocking task failed: {e}"),
            })
        })
}

impl Manager {
    /// `state_dir/containers` holds one directory per container.
    pub fn new(
        store: Store,
        state_dir: &Path,
        cgroups: Arc<dyn CgroupDriver>,
        metering: Option<crate::metering::Metering>,
    ) -> Result<Self, RuntimeError> {
        let dir = state_dir.join("containers");
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(RuntimeError::io("create", &dir))?;
        let images = ImageStore::new(store.clone(), state_dir)?;
        let registry = super::registry::Registry::load(&store.lock())?;
        Ok(Self {
            inner: Arc::new(Inner {
                store,
                dir,
                images,
                cgroups,
                metering,
                exit_lock: Mutex::new(()),
                userns_lock: Mutex::new(()),
                locks: Mutex::new(HashMap::new()),
                network: None,
                events: std::sync::OnceLock::new(),
                default_memory: None,
                registry,
            }),
        })
    }

    /// Adds bridge networking (before the manager is shared).
    pub fn with_network(mut self, network: crate::network::Network) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.network = Some(network);
        }
        self
    }

    /// Imports under `limits` (before the manager is shared).
    pub fn with_image_limits(mut self, limits: crate::image::Limits) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.images = inner.images.clone().with_limits(limits);
        }
        self
    }

    pub fn network(&self) -> Option<&crate::network::Network> {
        self.inner.network.as_ref()
    }

    /// Gives every container created without a memory limit `limit` (before the manager is
    /// shared).
    pub fn with_default_memory(mut self, limit: Option<u64>) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.default_memory = limit;
        }
        self
    }

    /// Publishes lifecycle events to `events` from now on.
    pub fn set_events(&self, events: crate::events::Events) {
        let _ = self.inner.events.set(events);
    }

    /// Publishes `action` (created, removed, killed, restarted) for `r`.
    fn emit(&self, r: &Record, action: &str) {
        if let Some(ev) = self.inner.events.get() {
            ev.container(r, action, crate::events::current_actor());
        }
    }

    pub fn images(&self) -> &ImageStore {
        &self.inner.images
    }

    pub fn cgroups(&self) -> &Arc<dyn CgroupDriver> {
        &self.inner.cgroups
    }

    pub(super) fn container_dir(&self, id: &str) -> ContainerDir {
        ContainerDir(self.inner.dir.join(id))
    }

    async fn lock(&self, name: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let m = {
            let mut locks = self.inner.locks.lock().unwrap_or_else(|p| p.into_inner());
            locks.entry(name.to_owned()).or_default().clone()
        };
        m.lock_owned().await
    }

    // ---- metering hooks (called on blocking threads) ----

    /// Starts metering the container's group (it must exist; its processes need not run yet).
    fn meter_register(&self, r: &Record) {
        let Some(m) = &self.inner.metering else {
            return;
        };
        match self.inner.cgroups.engine_group(&r.team, &r.name) {
            Some(g) => m.register(g, &r.id, &r.name, &r.team, &r.spec.labels),
            None => tracing::warn!(container = %r.name, "no cgroup to meter"),
        }
    }

    /// Takes the final reading of an exited container, before its cgroup goes. A container
    /// that is not metered now is finished only if it still has a checkpoint (registration
    /// writes one at once, the final reading consumes it): each run is billed exactly once.
    fn meter_final(&self, r: &Record) {
        let Some(m) = &self.inner.metering else {
            return;
        };
        if !m.is_registered(&r.id) {
            if !m.has_checkpoint(&r.id) {
                return;
            }
            let Some(g) = self.inner.cgroups.engine_group(&r.team, &r.name) else {
                return;
            };
            m.register(g, &r.id, &r.name, &r.team, &r.spec.labels);
        }
        m.unregister_with_final_reading(&r.id);
    }

    /// Removes an exited container's cgroup after its final reading. A failure (a process
    /// still leaving) is logged; the next start or the daemon's next start removes it.
    fn release_cgroup(&self, r: &Record) {
        if let Err(e) = self.inner.cgroups.remove(&r.team, &r.name) {
            tracing::warn!(container = %r.name, error = %e, "cannot remove the exited container's cgroup");
        }
    }

    /// At daemon start, after the first reconcile (which finished the bill of containers that
    /// exited while the daemon was down): meters every live container again; billing continues
    /// from its saved checkpoint.
    fn meter_resume(&self) -> Result<(), RuntimeError> {
        if self.inner.metering.is_none() {
            return Ok(());
        }
        for r in self.load_all()? {
            if r.status().is_live() {
                self.meter_register(&r);
            } else if r.status() == Status::Exited {
                self.meter_final(&r);
                // A crash between the final reading and the removal left it.
                if self.inner.cgroups.exists(&r.team, &r.name) {
                    self.release_cgroup(&r);
                }
            }
        }
        Ok(())
    }

    // ---- crash recovery ----

    /// Fault injection for the crash tests: when `<state>/containers/.crash-at` holds `point`,
    /// the file is removed and the daemon SIGKILLs itself there, as a crash would. The file
    /// lives in the root-only state directory; nothing else writes it. Only in builds with the
    /// `fault-injection` feature (the tests'); elsewhere a no-op.
    #[cfg(not(feature = "fault-injection"))]
    fn fault(&self, _point: &str) {}

    #[cfg(feature = "fault-injection")]
    fn fault(&self, point: &str) {
        let marker = self.inner.dir.join(CRASH_AT);
        match fs::read_to_string(&marker) {
            Ok(s) if s.trim() == point => {
                let _ = fs::remove_file(&marker);
                tracing::warn!(point, "fault injection: killing the daemon");
                let _ = kill(nix::unistd::getpid(), Signal::SIGKILL);
            }
            _ => {}
        }
    }

    /// At daemon start, before the first reconcile: finishes what a crash interrupted.
    /// - A `creating` record is a create that never completed: its network (namespace, veth,
    ///   address), cgroup, any mount under its directory, its directory (upper/work layers,
    ///   config) and the record go, in that order. No monitor was ever started for it.
    /// - A `created`/`exited` record whose monitor runs a live init is a start that the crash
    ///   cut off before the record said `running`: the container is adopted.
    /// - A directory under `containers/` without a record and without a live monitor is
    ///   removed.
    ///
    /// Nothing of another container is touched: every resource is found by the id or the
    /// (unique) name of the swept record.
    pub async fn sweep(&self) -> Result<(), RuntimeError> {
        let m = self.clone();
        let records = blocking(move || m.load_all()).await?;
        for r in &records {
            if r.status() != Status::Creating {
                continue;
            }
            tracing::warn!(container = %r.name, id = %r.id, "removing a create interrupted by a crash");
            if let Some(n) = &self.inner.network
                && let Err(e) = n.detach(&r.id).await
            {
                tracing::warn!(container = %r.name, error = %e, "cannot release the network");
            }
            let m = self.clone();
            let r = r.clone();
            blocking(move || m.sweep_creating(&r)).await?;
        }
        let m = self.clone();
        blocking(move || {
            for r in &records {
                if r.status() == Status::Created || r.status() == Status::Exited {
                    m.adopt(r)?;
                }
            }
            m.sweep_orphan_dirs(&records);
            Ok(())
        })
        .await
    }

    fn sweep_creating(&self, r: &Record) -> Result<(), RuntimeError> {
        self.inner
            .cgroups
            .remove(&r.team, &r.name)
            .map_err(cgroup_err)?;
        let dir = self.container_dir(&r.id);
        unmount_under(dir.path());
        if dir.path().exists() {
            fs::remove_dir_all(dir.path()).map_err(RuntimeError::io("remove", dir.path()))?;
        }
        let conn = self.inner.store.lock();
        conn.execute(
            "DELETE FROM containers WHERE id = ?1 AND status = 'creating'",
            [&r.id],
        )?;
        self.inner.registry.reread(&conn, &r.id)
    }

    /// A record that is not live although its monitor reports a live init: adopt it.
    fn adopt(&self, r: &Record) -> Result<(), RuntimeError> {
        let Some(st) = ShimState::read(&self.container_dir(&r.id).state()) else {
            return Ok(());
        };
        if st.status != "running"
            || !alive(st.shim_pid, st.shim_start)
            || !alive(st.init_pid, st.init_start)
        {
            return Ok(());
        }
        tracing::warn!(container = %r.name, "adopting a container whose start a crash cut off");
        let mut r = r.clone();
        r.transition(Status::Running);
        r.exit_code = None;
        r.finished_at = None;
        r.started_at = st.started_at.or(Some(now()));
        r.shim_pid = Some(st.shim_pid);
        r.shim_start = Some(st.shim_start);
        r.init_pid = Some(st.init_pid);
        r.init_start = Some(st.init_start);
        r.restart_count = st.restart_count;
        self.save(&r)
    }

    fn sweep_orphan_dirs(&self, records: &[Record]) {
        let Ok(rd) = fs::read_dir(&self.inner.dir) else {
            return;
        };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let is_id = name.len() == 32 && name.bytes().all(|b| b.is_ascii_hexdigit());
            if !is_id || !e.path().is_dir() || records.iter().any(|r| r.id == name) {
                continue;
            }
            if let Some(st) = ShimState::read(&e.path().join("state.json"))
                && alive(st.shim_pid, st.shim_start)
            {
                continue;
            }
            tracing::warn!(dir = %e.path().display(), "removing a container directory without a record");
            unmount_under(&e.path());
            if let Err(err) = fs::remove_dir_all(e.path()) {
                tracing::warn!(dir = %e.path().display(), error = %err, "cannot remove");
            }
        }
    }

    // ---- records ----

    fn load(&self, name: &str) -> Result<Record, RuntimeError> {
        self.inner
            .registry
            .get(name)
            .ok_or_else(|| RuntimeError::NotFound(name.to_owned()))
    }

    fn load_all(&self) -> Result<Vec<Record>, RuntimeError> {
        Ok(self.inner.registry.all())
    }

    fn save(&self, r: &Record) -> Result<(), RuntimeError> {
        let spec = serde_json::to_string(&r.spec)
            .map_err(|e| RuntimeError::invalid("spec", e.to_string()))?;
        let conn = self.inner.store.lock();
        let before = match self.inner.events.get() {
            Some(_) => conn
                .query_row(
                    crate::events::Before::SQL,
                    [&r.id],
                    crate::events::Before::from_row,
                )
                .optional()?,
            None => None,
        };
        conn.execute(
            "UPDATE containers SET spec=?2, status=?3, exit_code=?4, started_at=?5, finished_at=?6,
             shim_pid=?7, shim_start=?8, init_pid=?9, init_start=?10, restart_count=?11 WHERE id=?1",
            params![
                r.id,
                spec,
                r.status.as_str(),
                r.exit_code,
                r.started_at,
                r.finished_at,
                r.shim_pid,
                r.shim_start.map(|v| v as i64),
                r.init_pid,
                r.init_start.map(|v| v as i64),
                r.restart_count
            ],
        )?;
        self.inner.registry.put(r);
        drop(conn);
        if let (Some(ev), Some(b)) = (self.inner.events.get(), before) {
            ev.saved(&b, r, &self.container_dir(&r.id).stop_marker());
        }
        Ok(())
    }

    /// Brings a record up to date with its monitor's state file and the process table.
    fn refresh(&self, mut r: Record) -> Result<Record, RuntimeError> {
        if !r.status().is_live() {
            return Ok(r);
        }
        let dir = self.container_dir(&r.id);
        // The monitor's liveness first, its state file after: a monitor found gone had
        // written its last state before it went, so the read sees the exit. (Read the other
        // way round, a monitor that wrote `exited` and ended in between looked like one that
        // died without a word, and a clean exit was recorded as code -1.)
        let shim_alive = match (r.shim_pid, r.shim_start) {
            (Some(p), Some(s)) => alive(p, s),
            _ => false,
        };
        let st = ShimState::read(&dir.state());
        let before = (r.status, r.exit_code, r.init_pid, r.restart_count);
        match st {
            Some(st) if st.status == "running" && alive(st.init_pid, st.init_start) => {
                r.init_pid = Some(st.init_pid);
                r.init_start = Some(st.init_start);
                r.restart_count = st.restart_count;
                r.started_at = st.started_at;
            }
            Some(st) if st.status == "exited" && (st.done || !shim_alive) => {
                r.transition(Status::Exited);
                r.exit_code = st.exit_code;
                r.finished_at = st.finished_at.or(Some(now()));
                r.restart_count = st.restart_count;
            }
            Some(_) if shim_alive => {} // between restarts, or just starting
            _ => {
                // Running according to the record, but no monitor and no init: the host or the
                // monitor died. Record an exit with an unknown code.
                let init_alive = match (r.init_pid, r.init_start) {
                    (Some(p), Some(s)) => alive(p, s),
                    _ => false,
                };
                if !shim_alive && !init_alive {
                    r.transition(Status::Exited);
                    r.exit_code = r.exit_code.or(Some(-1));
                    r.finished_at = Some(now());
                }
            }
        }
        if (r.status, r.exit_code, r.init_pid, r.restart_count) != before {
            if r.status() == Status::Exited {
                // Refreshes race (API reads, the reconciler): under one lock, only the one
                // that still finds the stored record live takes the final reading, and it does
                // so before the exit becomes visible, so whoever sees "exited" sees the final
                // bill. (A crash between the two is harmless: the final reading consumed the
                // checkpoint, and without one there is nothing left to bill.)
                let _g = self
                    .inner
                    .exit_lock
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                let stored: Option<String> = self
                    .inner
                    .store
                    .lock()
                    .query_row(
                        "SELECT status FROM containers WHERE id = ?1",
                        [&r.id],
                        |row| row.get(0),
                    )
                    .optional()?;
                let finishing = matches!(stored.as_deref(), Some("running" | "paused"));
                if finishing {
                    self.meter_final(&r);
                }
                self.save(&r)?;
                if finishing {
                    // Billed in full: the cgroup goes, as runc removes it (the record, its
                    // limits and its history stay; a start makes a fresh one).
                    self.release_cgroup(&r);
                }
            } else {
                self.save(&r)?;
            }
        }
        Ok(r)
    }

    // ---- public API (async; all blocking work on spawn_blocking) ----

    pub async fn list(&self, all: bool) -> Result<Vec<wire::Container>, RuntimeError> {
        let m = self.clone();
        blocking(move || {
            // Records a watch covers in full are current; others (live without an armed
            // watch) are read up to date from their monitor, in the list's order.
            enum Row {
                Ready(Box<wire::Container>),
                Stale(Box<Record>),
            }
            let rows = m.inner.registry.map(|r, armed| {
                let live = r.status().is_live();
                if live && !armed {
                    Some(Row::Stale(Box::new(r.clone())))
                } else if all || live {
                    Some(Row::Ready(Box::new(r.to_wire())))
                } else {
                    None
                }
            });
            let mut out = Vec::with_capacity(rows.len());
            for row in rows {
                match row {
                    Row::Ready(c) => out.push(*c),
                    Row::Stale(r) => {
                        let r = m.refresh(*r)?;
                        if all || r.status().is_live() {
                            out.push(r.to_wire());
                        }
                    }
                }
            }
            Ok(out)
        })
        .await
    }

    pub async fn get(&self, name: &str) -> Result<wire::Container, RuntimeError> {
        let m = self.clone();
        let name = name.to_owned();
        blocking(move || Ok(m.refresh(m.load(&name)?)?.to_wire())).await
    }

    /// Creates a container. Unless `allow_privileged`, a request whose validated (normalized)
    /// spec reaches the host — a host directory as rootfs, a bind mount, the host network —
    /// is refused with [`RuntimeError::Forbidden`] before anything is made.
    pub async fn create(
        &self,
        req: wire::CreateContainer,
        allow_privileged: bool,
    ) -> Result<wire::Container, RuntimeError> {
        let start = req.start;
        let m = self.clone();
        let mut r = blocking(move || m.create_blocking(req, allow_privileged)).await?;
        if let Err(e) = self.attach_network(&r).await {
            if let Some(n) = &self.inner.network {
                let _ = n.detach(&r.id).await;
            }
            let m = self.clone();
            let r2 = r.clone();
            let _ = blocking(move || m.remove_blocking(&r2)).await;
            return Err(e);
        }
        self.fault("create:network");
        // Every resource exists: only now is the container complete (see `sweep`).
        let m = self.clone();
        let id = r.id.clone();
        blocking(move || {
            let conn = m.inner.store.lock();
            conn.execute(
                "UPDATE containers SET status = 'created' WHERE id = ?1 AND status = 'creating'",
                [&id],
            )?;
            m.inner.registry.reread(&conn, &id)
        })
        .await?;
        r.transition(Status::Created);
        // Only now is the container whole (record, directory, cgroup, config, network).
        self.emit(&r, "created");
        if start {
            return self.start(&r.name).await;
        }
        Ok(r.to_wire())
    }

    /// Bridge mode: the container's namespace, veth, address, NAT and published ports, and its
    /// /etc/hosts and /etc/resolv.conf (bind-mounted from the container directory).
    async fn attach_network(&self, r: &Record) -> Result<(), RuntimeError> {
        use crate::network::{NetworkMode, PortSpec};
        let ports = PortSpec::parse_all(&r.spec.ports).map_err(net_err(&r.name))?;
        if network_mode(&r.spec) != NetworkMode::Bridge {
            return Ok(());
        }
        let Some(net) = &self.inner.network else {
            return Err(RuntimeError::invalid(
                "network",
                "bridge networking is not available",
            ));
        };
        let hostname = r
            .spec
            .hostname
            .clone()
            .unwrap_or_else(|| r.name.chars().take(63).collect());
        let att = net
            .attach(&r.id, &r.team, NetworkMode::Bridge, &hostname, &ports)
            .await
            .map_err(net_err(&r.name))?;
        let dir = self.container_dir(&r.id);
        for (file, text) in [("hosts", &att.hosts), ("resolv.conf", &att.resolv_conf)] {
            let p = dir.path().join(file);
            fs::write(&p, text).map_err(RuntimeError::io("write", &p))?;
        }
        Ok(())
    }

    fn create_blocking(
        &self,
        mut req: wire::CreateContainer,
        allow_privileged: bool,
    ) -> Result<Record, RuntimeError> {
        if req.limits.memory_max.is_none() {
            req.limits.memory_max = self.inner.default_memory;
        }
        let v = validate(&mut req, &self.inner.images)?;
        if !allow_privileged && let Some((field, why)) = v.privileged().into_iter().next() {
            return Err(RuntimeError::Forbidden {
                field,
                message: why,
            });
        }
        let id = new_id();
        let name = req
            .name
            .clone()
            .unwrap_or_else(|| format!("c-{}", &id[..12]));
        req.name = Some(name.clone());
        let team = req.team.clone().unwrap_or_else(|| "default".into());
        req.team = Some(team.clone());
        req.start = false;
        let created_at = now();
        let userns_guard = self
            .inner
            .userns_lock
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let userns = match v.userns {
            None => None,
            Some(want) => Some(self.userns_range(want)?),
        };
        req.userns = userns.map(|r| format!("{}:{}", r.host, r.size));
        {
            let spec = serde_json::to_string(&req)
                .map_err(|e| RuntimeError::invalid("spec", e.to_string()))?;
            let conn = self.inner.store.lock();
            let res = conn.execute(
                "INSERT INTO containers (id, name, team, spec, status, created_at) VALUES (?1, ?2, ?3, ?4, 'creating', ?5)",
                params![id, name, team, spec, created_at],
            );
            match res {
                Err(rusqlite::Error::SqliteFailure(e, _))
                    if e.code == rusqlite::ErrorCode::ConstraintViolation =>
                {
                    return Err(RuntimeError::NameInUse(name));
                }
                r => {
                    r?;
                }
            }
            self.inner.registry.reread(&conn, &id)?;
        }
        drop(userns_guard);
        self.fault("create:record");
        // Resources first, the record last: a crash in between leaves a 'creating' record
        // that the next start sweeps, never resources without a record.
        let undo = |m: &Manager| {
            let _ = fs::remove_dir_all(m.container_dir(&id).path());
            let conn = m.inner.store.lock();
            let _ = conn.execute("DELETE FROM containers WHERE id = ?1", [&id]);
            let _ = m.inner.registry.reread(&conn, &id);
        };
        let dir = self.container_dir(&id);
        let made = (|| -> Result<(), RuntimeError> {
            for d in [dir.path().to_owned(), dir.upper(), dir.work(), dir.merged()] {
                fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(&d)
                    .map_err(RuntimeError::io("create", &d))?;
            }
            // The merged root takes the upper dir's mode; both must be reachable by the
            // container's own users.
            for d in [dir.merged(), dir.upper()] {
                fs::set_permissions(&d, std::os::unix::fs::PermissionsExt::from_mode(0o755))
                    .map_err(RuntimeError::io("chmod", &d))?;
            }
            if let Some(r) = userns {
                // Container root owns its (empty) upper layer: what it creates lands there
                // as host ids of its range.
                std::os::unix::fs::chown(dir.upper(), Some(r.host), Some(r.host))
                    .map_err(RuntimeError::io("chown", dir.upper()))?;
            }
            self.fault("create:dirs");
            self.inner
                .cgroups
                .create(&team, &name, &req.limits)
                .map_err(cgroup_err)?;
            self.fault("create:cgroup");
            let cfg = ShimConfig {
                id: id.clone(),
                name: name.clone(),
                lower: v.lower,
                args: v.args,
                env: v.env,
                cwd: v.cwd,
                uid: v.uid,
                gid: v.gid,
                hostname: req
                    .hostname
                    .clone()
                    .unwrap_or_else(|| name.chars().take(63).collect()),
                mounts: {
                    let mut mounts = v.mounts;
                    if network_mode(&req) == crate::network::NetworkMode::Bridge {
                        for f in ["hosts", "resolv.conf"] {
                            let p = dir.path().join(f);
                            fs::write(&p, "").map_err(RuntimeError::io("write", &p))?;
                            if let Some(r) = userns {
                                std::os::unix::fs::chown(&p, Some(r.host), Some(r.host))
                                    .map_err(RuntimeError::io("chown", &p))?;
                            }
                            let (source, id) = bind_source(&p).map_err(|why| RuntimeError::Io {
                                action: "resolve",
                                path: p.clone(),
                                source: std::io::Error::other(why),
                            })?;
                            mounts.push(MountConfig::Bind {
                                source,
                                destination: format!("/etc/{f}"),
                                readonly: false,
                                id: Some(id),
                            });
                        }
                    }
                    mounts
                },
                net_ns: v.net_ns,
                netns: self
                    .inner
                    .network
                    .as_ref()
                    .filter(|_| network_mode(&req) == crate::network::NetworkMode::Bridge)
                    .map(|n| n.netns_path(&id)),
                cgroup_procs: self.inner.cgroups.procs_files(&team, &name),
                cgroup2_mount: self.inner.cgroups.pure_v2(),
                restart: v.restart,
                log_max: DEFAULT_LOG_MAX,
                caps: DEFAULT_CAPS.iter().map(|s| (*s).to_owned()).collect(),
                userns,
                tty: req.tty,
                open_stdin: req.open_stdin,
            };
            let data = serde_json::to_vec_pretty(&cfg)
                .map_err(|e| RuntimeError::invalid("spec", e.to_string()))?;
            super::state::write_atomic(&dir.config(), &data)
                .map_err(RuntimeError::io("write", dir.config()))?;
            self.fault("create:config");
            Ok(())
        })();
        if let Err(e) = made {
            let _ = self.inner.cgroups.remove(&team, &name);
            undo(self);
            return Err(e);
        }
        self.load(&id)
    }

    /// The host range of a new user namespace: `auto` takes the first free one; a given range
    /// must overlap no other container's. Called under `userns_lock`.
    fn userns_range(&self, want: UsernsRequest) -> Result<IdRange, RuntimeError> {
        let taken: Vec<(String, IdRange)> = self
            .load_all()?
            .into_iter()
            .filter_map(|r| {
                let range = r.spec.userns.as_deref().and_then(IdRange::parse)?;
                Some((r.name, range))
            })
            .collect();
        match want {
            UsernsRequest::Auto => {
                let ranges: Vec<IdRange> = taken.iter().map(|(_, r)| *r).collect();
                IdRange::pick(&ranges).ok_or_else(|| {
                    RuntimeError::invalid("userns", "no free user-namespace range is left")
                })
            }
            UsernsRequest::Fixed(r) => match taken.iter().find(|(_, t)| t.overlaps(r)) {
                Some((name, t)) => Err(RuntimeError::invalid(
                    "userns",
                    format!(
                        "{}:{} overlaps the range {}:{} of container {name}",
                        r.host, r.size, t.host, t.size
                    ),
                )),
                None => Ok(r),
            },
        }
    }

    pub async fn start(&self, name: &str) -> Result<wire::Container, RuntimeError> {
        let _g = self.lock(name).await;
        // A bridged container whose namespace is gone (the host rebooted: /run is a tmpfs) gets
        // its network again before it starts.
        if let Some(net) = &self.inner.network {
            let m = self.clone();
            let n = name.to_owned();
            let r = blocking(move || m.load(&n)).await?;
            if network_mode(&r.spec) == crate::network::NetworkMode::Bridge
                && !net.netns_path(&r.id).exists()
            {
                let _ = net.detach(&r.id).await;
                self.attach_network(&r).await?;
            }
        }
        let m = self.clone();
        let name = name.to_owned();
        blocking(move || m.start_blocking(&name)).await
    }

    fn start_blocking(&self, name: &str) -> Result<wire::Container, RuntimeError> {
        let mut r = self.refresh(self.load(name)?)?;
        if r.status().is_live() {
            return Err(conflict(&r, "already running"));
        }
        if r.status() == Status::Creating {
            return Err(conflict(&r, "still being created"));
        }
        let dir = self.container_dir(&r.id);
        let _ = fs::remove_file(dir.stop_marker());
        let _ = fs::remove_file(dir.state());
        if r.status() != Status::Created {
            // A run starts in a fresh cgroup: its counters start at zero (the last run was
            // billed in full by its final reading), and no state of the last run leaks in.
            self.meter_final(&r);
            self.inner
                .cgroups
                .remove(&r.team, &r.name)
                .map_err(cgroup_err)?;
            self.inner
                .cgroups
                .create(&r.team, &r.name, &r.spec.limits)
                .map_err(cgroup_err)?;
        }
        self.meter_register(&r);
        let program = super::memfd::helper_program()
            .map_err(RuntimeError::io("make a sealed copy of", "/proc/self/exe"))?;
        let shim_log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.shim_log())
            .map_err(RuntimeError::io("open", dir.shim_log()))?;
        let mut child = std::process::Command::new(&program);
        child
            .arg0("corral")
            .arg("__shim")
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(shim_log)
            .env_clear()
            .env("PATH", DEFAULT_PATH);
        super::pass_open_file_limit(|k, v| child.env(k, v));
        let mut child = child
            .spawn()
            .map_err(RuntimeError::io("spawn monitor", &program))?;
        let mut out = String::new();
        if let Some(mut so) = child.stdout.take() {
            let _ = so.read_to_string(&mut out);
        }
        let _ = child.wait();
        let line = out.lines().next().unwrap_or("");
        let mut parts = line.split_whitespace();
        match parts.next() {
            Some("ok") => {
                self.fault("start:monitor");
                let shim: i32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
                let init: i32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
                let st = ShimState::read(&dir.state()).unwrap_or_default();
                r.transition(Status::Running);
                r.exit_code = None;
                r.finished_at = None;
                r.started_at = Some(now());
                r.shim_pid = Some(shim);
                r.shim_start = Some(st.shim_start)
                    .filter(|s| *s > 0)
                    .or_else(|| super::state::proc_start_time(shim));
                r.init_pid = Some(init);
                r.init_start = Some(st.init_start)
                    .filter(|s| *s > 0)
                    .or_else(|| super::state::proc_start_time(init));
                r.restart_count = 0;
                self.save(&r)?;
                let r = self.refresh(r)?;
                // Also when it has already exited (a quick `true`): the watch then finds both
                // processes gone and reconciles once, so a detached `--rm` goes at once
                // instead of at the next sweep.
                self.watch(&r);
                Ok(r.to_wire())
            }
            _ => {
                let message = line
                    .strip_prefix("error ")
                    .unwrap_or(line)
                    .trim()
                    .to_owned();
                let message = if message.is_empty() {
                    "the monitor exited without a report (see shim.log)".to_owned()
                } else {
                    message
                };
                r.transition(Status::Exited);
                r.exit_code = Some(127);
                r.finished_at = Some(now());
                self.save(&r)?;
                self.meter_final(&r);
                Err(RuntimeError::Start {
                    name: r.name.clone(),
                    message,
                })
            }
        }
    }

    /// SIGTERM, then SIGKILL after `timeout` seconds; returns once the monitor recorded the exit.
    pub async fn stop(
        &self,
        name: &str,
        timeout: Option<u64>,
    ) -> Result<wire::Container, RuntimeError> {
        let _g = self.lock(name).await;
        self.stop_locked(name, timeout).await
    }

    async fn stop_locked(
        &self,
        name: &str,
        timeout: Option<u64>,
    ) -> Result<wire::Container, RuntimeError> {
        let m = self.clone();
        let n = name.to_owned();
        let r = blocking(move || m.refresh(m.load(&n)?)).await?;
        if !r.status().is_live() {
            return Ok(r.to_wire());
        }
        let dir = self.container_dir(&r.id);
        // Holds who asked, for the exit's lifecycle event.
        let who = crate::events::current_actor().unwrap_or_default();
        fs::write(dir.stop_marker(), who).map_err(RuntimeError::io("write", dir.stop_marker()))?;
        if r.status() == Status::Paused {
            let m = self.clone();
            let (t, n) = (r.team.clone(), r.name.clone());
            blocking(move || m.inner.cgroups.thaw(&t, &n).map_err(cgroup_err)).await?;
        }
        let timeout = timeout
            .or(r.spec.stop_timeout)
            .unwrap_or(DEFAULT_STOP_TIMEOUT);
        self.signal_init(&r, Signal::SIGTERM);
        if !self.wait_exit(&r, Duration::from_secs(timeout)).await {
            self.signal_init(&r, Signal::SIGKILL);
            let m = self.clone();
            let (t, n) = (r.team.clone(), r.name.clone());
            let _ = blocking(move || m.inner.cgroups.kill(&t, &n).map_err(cgroup_err)).await;
            self.wait_exit(&r, Duration::from_secs(10)).await;
        }
        let m = self.clone();
        let n = name.to_owned();
        blocking(move || Ok(m.refresh(m.load(&n)?)?.to_wire())).await
    }

    /// Signals the container's init, unless its PID now belongs to another process.
    fn signal_init(&self, r: &Record, sig: Signal) -> bool {
        let dir = self.container_dir(&r.id);
        let (pid, start) = match ShimState::read(&dir.state()) {
            Some(st) if st.status == "running" => (st.init_pid, st.init_start),
            _ => match (r.init_pid, r.init_start) {
                (Some(p), Some(s)) => (p, s),
                _ => return false,
            },
        };
        alive(pid, start) && kill(Pid::from_raw(pid), sig).is_ok()
    }

    /// Waits until the monitor has recorded a final exit (or is gone).
    async fn wait_exit(&self, r: &Record, timeout: Duration) -> bool {
        let dir = self.container_dir(&r.id);
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = ShimState::read(&dir.state())
                && st.status == "exited"
                && st.done
            {
                return true;
            }
            let shim_alive = match (r.shim_pid, r.shim_start) {
                (Some(p), Some(s)) => alive(p, s),
                _ => false,
            };
            if !shim_alive {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn kill(
        &self,
        name: &str,
        signal: Option<&str>,
    ) -> Result<wire::Container, RuntimeError> {
        let sig = parse_signal(signal.unwrap_or("KILL"))?;
        let m = self.clone();
        let n = name.to_owned();
        let r = blocking(move || m.refresh(m.load(&n)?)).await?;
        if sig == Signal::SIGKILL && (r.status().is_live()) {
            // A KILL is a manual stop, as in docker: the restart policy does not bring the
            // container back, and its exit event names who asked.
            let dir = self.container_dir(&r.id);
            let who = crate::events::current_actor().unwrap_or_default();
            fs::write(dir.stop_marker(), who)
                .map_err(RuntimeError::io("write", dir.stop_marker()))?;
        }
        if r.status() == Status::Paused {
            // A frozen task does not run its handlers, so only SIGKILL means anything to it
            // (docker refuses the others the same way).
            if sig != Signal::SIGKILL {
                return Err(conflict(
                    &r,
                    &format!(
                        "paused: only KILL reaches a frozen container (unpause it to send {sig})"
                    ),
                ));
            }
            self.signal_init(&r, sig);
            // cgroup v2 lets SIGKILL through the freezer, v1 delivers it only on thaw: kill
            // every task of the group, then thaw it (its freezer state must not outlive the
            // container, a restart would start frozen).
            let m = self.clone();
            let (t, n) = (r.team.clone(), r.name.clone());
            blocking(move || {
                if let Err(e) = m.inner.cgroups.kill(&t, &n) {
                    tracing::warn!(container = %n, error = %e, "kill of a paused container");
                }
                m.inner.cgroups.thaw(&t, &n).map_err(cgroup_err)
            })
            .await?;
        } else if r.status() != Status::Running {
            return Err(conflict(&r, "not running"));
        } else {
            self.signal_init(&r, sig);
        }
        self.emit(&r, "killed");
        if sig == Signal::SIGKILL {
            self.wait_exit(&r, Duration::from_secs(5)).await;
        }
        self.get(name).await
    }

    pub async fn restart(
        &self,
        name: &str,
        timeout: Option<u64>,
    ) -> Result<wire::Container, RuntimeError> {
        let _g = self.lock(name).await;
        self.stop_locked(name, timeout).await?;
        let m = self.clone();
        let n = name.to_owned();
        blocking(move || {
            let c = m.start_blocking(&n)?;
            m.emit(&m.load(&n)?, "restarted");
            Ok(c)
        })
        .await
    }

    pub async fn freeze(&self, name: &str, freeze: bool) -> Result<wire::Container, RuntimeError> {
        let _g = self.lock(name).await;
        let m = self.clone();
        let n = name.to_owned();
        blocking(move || {
            let mut r = m.refresh(m.load(&n)?)?;
            let want = if freeze {
                Status::Running
            } else {
                Status::Paused
            };
            if r.status() != want {
                return Err(conflict(
                    &r,
                    if freeze { "not running" } else { "not paused" },
                ));
            }
            if freeze {
                m.inner
                    .cgroups
                    .freeze(&r.team, &r.name)
                    .map_err(cgroup_err)?;
                r.transition(Status::Paused);
            } else {
                m.inner.cgroups.thaw(&r.team, &r.name).map_err(cgroup_err)?;
                r.transition(Status::Running);
            }
            m.save(&r)?;
            Ok(r.to_wire())
        })
        .await
    }

    /// Live re-limit: `patch` is merged into the current limits (absent: kept, cleared: back
    /// to the kernel's default, set: the value). A rejected change leaves the old limits in
    /// force and the record unchanged. Returns the limits before the change and the container.
    pub async fn update(
        &self,
        name: &str,
        patch: wire::LimitsPatch,
    ) -> Result<(wire::Limits, wire::Container), RuntimeError> {
        self.set_limits(name, move |cur| patch.merge(cur)).await
    }

    /// Puts `next(current limits)` in force and in the record: validated first, then only the
    /// changed knobs written (all or nothing), then saved; a failed save writes the old limits
    /// back, so kernel and record never disagree. Used by [`Manager::update`] and by undo
    /// (which passes the limits recorded before an earlier change).
    pub async fn set_limits(
        &self,
        name: &str,
        next: impl FnOnce(&wire::Limits) -> wire::Limits + Send + 'static,
    ) -> Result<(wire::Limits, wire::Container), RuntimeError> {
        let _g = self.lock(name).await;
        let m = self.clone();
        let n = name.to_owned();
        blocking(move || {
            let mut r = m.refresh(m.load(&n)?)?;
            let old = r.spec.limits.clone();
            let new = next(&old);
            validate_limits(&new)?;
            let cg = &m.inner.cgroups;
            // An exited container has no cgroup: its next start applies the new limits.
            let live = r.status() != Status::Exited;
            if live {
                cg.update(&r.team, &r.name, &old, &new).map_err(cgroup_err)?;
            }
            r.spec.limits = new.clone();
            if let Err(e) = m.save(&r) {
                if live && let Err(undo) = cg.update(&r.team, &r.name, &new, &old) {
                    tracing::error!(container = %r.name, error = %undo, "cannot restore the limits after a failed save");
                }
                return Err(e);
            }
            m.emit(&r, "updated");
            if let Some(meter) = &m.inner.metering {
                meter.refresh_limits(&r.id);
            }
            Ok((old, r.to_wire()))
        })
        .await
    }

    /// Limits as the kernel reports them; for an exited container (whose cgroup is gone) the
    /// limits its next start applies.
    pub async fn kernel_limits(&self, name: &str) -> Result<wire::Limits, RuntimeError> {
        let m = self.clone();
        let n = name.to_owned();
        blocking(move || {
            let r = m.load(&n)?;
            if r.status() == Status::Exited && !m.inner.cgroups.exists(&r.team, &r.name) {
                return Ok(r.spec.limits);
            }
            m.inner.cgroups.limits(&r.team, &r.name).map_err(cgroup_err)
        })
        .await
    }

    /// Removes the container: cgroup, directory (upper layer, logs, state) and record. A
    /// running container needs `force` and is killed first.
    pub async fn remove(&self, name: &str, force: bool) -> Result<(), RuntimeError> {
        let _g = self.lock(name).await;
        let m = self.clone();
        let n = name.to_owned();
        let r = blocking(move || m.refresh(m.load(&n)?)).await?;
        if r.status() == Status::Creating {
            return Err(conflict(&r, "still being created"));
        }
        if r.status().is_live() {
            if !force {
                return Err(conflict(&r, "running: stop it first or force the removal"));
            }
            self.stop_locked(name, Some(0)).await?;
        }
        let m = self.clone();
        let id = r.id.clone();
        blocking(move || m.remove_blocking(&r)).await?;
        if let Some(n) = &self.inner.network
            && let Err(e) = n.detach(&id).await
        {
            tracing::warn!(container = name, error = %e, "cannot release the network");
        }
        self.inner
            .locks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name);
        Ok(())
    }

    fn remove_blocking(&self, r: &Record) -> Result<(), RuntimeError> {
        let dir = self.container_dir(&r.id);
        // The monitor, if it lingers, must be gone before its directory is.
        if let (Some(p), Some(s)) = (r.shim_pid, r.shim_start) {
            let deadline = Instant::now() + Duration::from_secs(5);
            while alive(p, s) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            if alive(p, s) {
                let _ = kill(Pid::from_raw(p), Signal::SIGKILL);
            }
        }
        // The last reading before the counters disappear with the cgroup.
        self.meter_final(r);
        self.inner
            .cgroups
            .remove(&r.team, &r.name)
            .map_err(cgroup_err)?;
        if dir.path().exists() {
            fs::remove_dir_all(dir.path()).map_err(RuntimeError::io("remove", dir.path()))?;
        }
        {
            let conn = self.inner.store.lock();
            conn.execute("DELETE FROM containers WHERE id = ?1", [&r.id])?;
            self.inner.registry.reread(&conn, &r.id)?;
        }
        self.emit(r, "removed");
        Ok(())
    }

    /// The container's log files (rotated one first), and whether it still runs.
    pub async fn log_source(&self, name: &str) -> Result<(Vec<PathBuf>, String), RuntimeError> {
        let r = self.get(name).await?;
        let dir = self.container_dir(&r.id);
        Ok((vec![dir.log_rotated(), dir.log()], r.name))
    }

    /// Whether the container still runs (for log follow).
    pub async fn is_running(&self, name: &str) -> bool {
        matches!(self.get(name).await, Ok(c) if c.status == "running" || c.status == "paused")
    }

    /// Removes an image unless a container uses it.
    pub async fn remove_image(&self, reference: &str) -> Result<(), RuntimeError> {
        let m = self.clone();
        let reference = reference.to_owned();
        blocking(move || {
            let resolved = m.inner.images.resolve(&reference)?;
            let mut user = None;
            for r in m.load_all()? {
                if let Ok(cfg) = m.container_dir(&r.id).read_config()
                    && cfg.lower == resolved.layers
                {
                    user = Some(r.name.clone());
                    break;
                }
            }
            m.inner
                .images
                .remove(&reference, |_| user.clone())
                .map_err(RuntimeError::from)
        })
        .await
    }

    /// Reconciles every live record with its monitor, and removes exited auto-remove
    /// containers. Called at start-up and then periodically.
    pub async fn reconcile(&self) -> Result<(), RuntimeError> {
        let m = self.clone();
        let (remove, restart) = blocking(move || {
            let (mut remove, mut restart) = (Vec::new(), Vec::new());
            for r in m.load_all()? {
                let (r, rm, again) = m.reconcile_record(r)?;
                if rm {
                    remove.push(r.name.clone());
                }
                if again {
                    restart.push(r.name.clone());
                }
                if r.status().is_live() {
                    // Adopted at daemon start, or a watch that could not be armed before.
                    m.watch(&r);
                }
            }
            Ok((remove, restart))
        })
        .await?;
        self.finish_reconcile(remove, restart).await;
        Ok(())
    }

    /// [`Manager::reconcile`] of one container (a pidfd watch woke): its record after, `None`
    /// when `--rm` removed it.
    pub(super) async fn reconcile_one(&self, name: &str) -> Result<Option<Record>, RuntimeError> {
        let m = self.clone();
        let n = name.to_owned();
        let (r, rm, again) = blocking(move || m.reconcile_record(m.load(&n)?)).await?;
        let gone = rm;
        let name = r.name.clone();
        self.finish_reconcile(
            if rm { vec![name.clone()] } else { Vec::new() },
            if again { vec![name] } else { Vec::new() },
        )
        .await;
        Ok((!gone).then_some(r))
    }

    /// Refreshes one record; whether `--rm` should remove it and whether a restart policy
    /// should start it again after its monitor was lost.
    fn reconcile_record(&self, r: Record) -> Result<(Record, bool, bool), RuntimeError> {
        let was_live = r.status().is_live();
        let r = self.refresh(r)?;
        let remove = r.status() == Status::Exited && r.spec.auto_remove;
        // Lost with its monitor (host crash, monitor killed): the monitor cannot apply the
        // restart policy any more, so the daemon does.
        let lost = was_live && r.status() == Status::Exited && r.exit_code == Some(-1);
        let policy = r
            .spec
            .restart
            .as_deref()
            .and_then(RestartPolicy::parse)
            .unwrap_or(RestartPolicy::No);
        let restart = lost
            && !self.container_dir(&r.id).stop_marker().exists()
            && policy.should_restart(-1, r.restart_count);
        Ok((r, remove, restart))
    }

    async fn finish_reconcile(&self, remove: Vec<String>, restart: Vec<String>) {
        for name in remove {
            if let Err(e) = self.remove(&name, false).await {
                tracing::warn!(container = %name, error = %e, "auto-remove failed");
            }
        }
        for name in restart {
            tracing::info!(container = %name, "restarting a container lost with its monitor");
            if let Err(e) = self.start(&name).await {
                tracing::warn!(container = %name, error = %e, "restart after loss failed");
            }
        }
    }

    /// Marks `id` watched; false when it already was.
    pub(super) fn mark_watched(&self, id: &str) -> bool {
        self.inner.registry.mark_watched(id)
    }

    /// Whether both of `id`'s pidfds are armed: its record then changes only through writes.
    pub(super) fn set_armed(&self, id: &str, armed: bool) {
        self.inner.registry.set_armed(id, armed);
    }

    pub(super) fn unmark_watched(&self, id: &str) {
        self.inner.registry.unmark_watched(id);
    }

    /// Starts the background reconciler: a sweep every [`SWEEP`], the safety net behind the
    /// pidfd watches (`watch.rs`) that notice exits as they happen.
    pub fn spawn_reconciler(&self) {
        let m = self.clone();
        tokio::spawn(async move {
            loop {
                if let Err(e) = m.reconcile().await {
                    tracing::warn!(error = %e, "reconcile failed");
                }
                tokio::time::sleep(SWEEP).await;
            }
        });
    }
}

/// How often every record is reconciled besides the pidfd watches.
pub const SWEEP: Duration = Duration::from_secs(30);

/// The fault-injection marker under `<state>/containers` (see `Manager::fault`).
pub const CRASH_AT: &str = ".crash-at";

/// Detaches every mount at or below `dir` (deepest first), as listed in /proc/self/mountinfo.
fn unmount_under(dir: &Path) {
    let Ok(info) = fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    let mut points: Vec<PathBuf> = info
        .lines()
        .filter_map(|l| l.split_whitespace().nth(4))
        .map(crate::cgroup::detect::unescape_path)
        .filter(|p| p.starts_with(dir))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for p in points {
        if let Err(e) = nix::mount::umount2(&p, nix::mount::MntFlags::MNT_DETACH) {
            tracing::warn!(mount = %p.display(), error = %e, "cannot unmount");
        }
    }
}

pub(super) const COLS: &str = "id, name, team, spec, status, exit_code, created_at, started_at, finished_at, \
                    shim_pid, shim_start, init_pid, init_start, restart_count";

pub(super) fn row_to_record(row: &rusqlite::Row<'_>) -> rusqlite::Result<Record> {
    let spec: String = row.get(3)?;
    let spec = serde_json::from_str(&spec).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(3, rusqlite::types::Type::Text, Box::new(e))
    })?;
    Ok(Record {
        id: row.get(0)?,
        name: row.get(1)?,
        team: row.get(2)?,
        spec,
        status: row.get::<_, String>(4)?.parse().map_err(|e: String| {
            rusqlite::Error::FromSqlConversionFailure(
                4,
                rusqlite::types::Type::Text,
                Box::<dyn std::error::Error + Send + Sync>::from(e),
            )
        })?,
        exit_code: row.get(5)?,
        created_at: row.get(6)?,
        started_at: row.get(7)?,
        finished_at: row.get(8)?,
        shim_pid: row.get(9)?,
        shim_start: row.get::<_, Option<i64>>(10)?.map(|v| v as u64),
        init_pid: row.get(11)?,
        init_start: row.get::<_, Option<i64>>(12)?.map(|v| v as u64),
        restart_count: row.get(13)?,
    })
}

fn conflict(r: &Record, message: &str) -> RuntimeError {
    RuntimeError::Conflict {
        name: r.name.clone(),
        status: r.status.to_string(),
        message: message.to_owned(),
    }
}

fn cgroup_err(e: CgroupFailure) -> RuntimeError {
    match e.field {
        Some(f) => RuntimeError::Invalid {
            field: format!("limits.{f}"),
            message: e.message,
        },
        None => RuntimeError::Cgroup(e.message),
    }
}

fn new_id() -> String {
    let mut b = [0u8; 16];
    if let Ok(mut f) = fs::File::open("/dev/urandom") {
        let _ = f.read_exact(&mut b);
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Parses `TERM`, `SIGTERM` or `15`.
pub fn parse_signal(s: &str) -> Result<Signal, RuntimeError> {
    let bad = || RuntimeError::invalid("signal", format!("unknown signal {s:?}"));
    if let Ok(n) = s.parse::<i32>() {
        return Signal::try_from(n).map_err(|_| bad());
    }
    let up = s.to_ascii_uppercase();
    let full = if up.starts_with("SIG") {
        up
    } else {
        format!("SIG{up}")
    };
    full.parse::<Signal>().map_err(|_| bad())
}

/// What a request asks of the user namespace.
#[derive(Debug, Clone, Copy)]
enum UsernsRequest {
    Auto,
    Fixed(IdRange),
}

/// The parts of a validated request the monitor needs.
struct Validated {
    userns: Option<UsernsRequest>,
    lower: Vec<PathBuf>,
    args: Vec<String>,
    env: Vec<String>,
    cwd: String,
    uid: u32,
    gid: u32,
    mounts: Vec<MountConfig>,
    net_ns: bool,
    restart: RestartPolicy,
    /// The lower layer is a host directory (`rootfs`), not an imported image.
    host_rootfs: bool,
}

impl Validated {
    /// What of this (validated, normalized) spec reaches into the host: `(field, reason)`.
    /// Only admins may create such containers.
    fn privileged(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if self.host_rootfs {
            out.push((
                "rootfs".to_owned(),
                "a host directory as root filesystem needs admin: use an image".to_owned(),
            ));
        }
        for (i, m) in self.mounts.iter().enumerate() {
            if let MountConfig::Bind { .. } = m {
                out.push((
                    format!("mounts[{i}]"),
                    "bind mounts of host paths need admin".to_owned(),
                ));
            }
        }
        if !self.net_ns {
            out.push((
                "network".to_owned(),
                "the host network needs admin".to_owned(),
            ));
        }
        if let Some(UsernsRequest::Fixed(_)) = self.userns {
            out.push((
                "userns".to_owned(),
                "choosing the host range needs admin: use auto".to_owned(),
            ));
        }
        out
    }
}

/// Names of containers and teams: 1-64 of `[A-Za-z0-9_.-]`, starting alphanumeric.
pub fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
}

pub(super) fn check_env(e: &str, field: &str) -> Result<(), RuntimeError> {
    match e.split_once('=') {
        Some((k, _)) if !k.is_empty() && !k.contains('\0') && !e.contains('\0') => Ok(()),
        _ => Err(RuntimeError::invalid(
            field,
            format!("{e:?} is not KEY=VALUE"),
        )),
    }
}

/// A mount destination must not be `/` nor at or under /proc, /sys or /dev (for every user).
/// `p` is already absolute and free of `..`.
fn check_mount_destination(p: &str, field: &str) -> Result<(), RuntimeError> {
    let mut comps = p.split('/').filter(|c| !c.is_empty() && *c != ".");
    let refused = match comps.next() {
        None => true,
        Some(first) => super::config::RUNTIME_OWNED_DIRS.contains(&first),
    };
    if refused {
        return Err(RuntimeError::invalid(
            field,
            format!(
                "{p:?} is not allowed: a mount must not be / nor at or under /proc, /sys or \
                 /dev (the runtime mounts those); choose another absolute path"
            ),
        ));
    }
    Ok(())
}

/// Resolves a bind source once, at create: its canonical path (every symlink followed now,
/// never again) and the identity of the file there, opened without following symlinks.
fn bind_source(src: &Path) -> Result<(PathBuf, super::config::SourceId), String> {
    let canon = fs::canonicalize(src).map_err(|e| format!("cannot resolve: {e}"))?;
    let (_, id) = super::config::open_bind_source(&canon)?;
    Ok((canon, id))
}

fn check_container_path(p: &str, field: &str) -> Result<(), RuntimeError> {
    if !p.starts_with('/') || p.split('/').any(|c| c == "..") || p.contains('\0') {
        return Err(RuntimeError::invalid(
            field,
            format!("{p:?} must be an absolute path without .."),
        ));
    }
    Ok(())
}

/// Checks limit values (ranges the kernel would reject are reported per field).
pub fn validate_limits(l: &wire::Limits) -> Result<(), RuntimeError> {
    if let Some(c) = l.cpus
        && !(c.is_finite() && (0.01..=1024.0).contains(&c))
    {
        return Err(RuntimeError::invalid(
            "limits.cpus",
            format!("{c} must be between 0.01 and 1024 (or max: no limit)"),
        ));
    }
    for (f, w) in [
        ("limits.cpu_weight", l.cpu_weight),
        ("limits.io_weight", l.io_weight),
    ] {
        if let Some(w) = w
            && !(1..=10000).contains(&w)
        {
            return Err(RuntimeError::invalid(
                f,
                format!("{w} must be between 1 and 10000 (or max: the default, 100)"),
            ));
        }
    }
    for line in &l.io_max {
        if let Err(e) = crate::cgroup::parse_io_max_line(line) {
            return Err(RuntimeError::invalid("limits.io_max", e.to_string()));
        }
    }
    for (f, v) in [
        ("limits.memory_max", l.memory_max),
        ("limits.memory_high", l.memory_high),
    ] {
        if let Some(v) = v
            && v < (1 << 20)
        {
            return Err(RuntimeError::invalid(
                f,
                format!(
                    "{v} bytes is below the 1 MiB minimum: it must be at least 1048576 (or max: no limit)"
                ),
            ));
        }
    }
    if let (Some(min), Some(max)) = (l.memory_min, l.memory_max)
        && min > max
    {
        return Err(RuntimeError::invalid(
            "limits.memory_min",
            format!(
                "{min} bytes must be at most memory_max ({max} bytes): a protection cannot exceed the limit"
            ),
        ));
    }
    if let Some(p) = l.pids_max
        && (!(1..=4_194_304).contains(&p))
    {
        return Err(RuntimeError::invalid(
            "limits.pids_max",
            format!("{p} must be between 1 and 4194304 (or max: no limit)"),
        ));
    }
    for (f, c) in [
        ("limits.cpuset_cpus", &l.cpuset_cpus),
        ("limits.cpuset_mems", &l.cpuset_mems),
    ] {
        let Some(c) = c else { continue };
        let ok = !c.is_empty()
            && c.split(',').all(|part| {
                let mut it = part.splitn(2, '-');
                let a = it.next().and_then(|x| x.parse::<u32>().ok());
                match (a, it.next()) {
                    (Some(_), None) => true,
                    (Some(a), Some(b)) => b.parse::<u32>().is_ok_and(|b| b >= a),
                    _ => false,
                }
            });
        if !ok {
            return Err(RuntimeError::invalid(
                f,
                format!("{c:?} is not a list: it must be like 0-2,4 (or max: the parent's)"),
            ));
        }
    }
    Ok(())
}

fn validate(
    req: &mut wire::CreateContainer,
    images: &ImageStore,
) -> Result<Validated, RuntimeError> {
    if let Some(n) = &req.name
        && !valid_name(n)
    {
        return Err(RuntimeError::invalid(
            "name",
            format!("{n:?} must be 1-64 of [A-Za-z0-9_.-], starting alphanumeric"),
        ));
    }
    if let Some(t) = &req.team
        && !valid_name(t)
    {
        return Err(RuntimeError::invalid(
            "team",
            format!("{t:?} must be 1-64 of [A-Za-z0-9_.-], starting alphanumeric"),
        ));
    }
    let mut env: Vec<String> = Vec::new();
    let mut args = req.command.clone();
    let mut cwd = req.workdir.clone();
    let mut user = req.user.clone();
    let host_rootfs = req.rootfs.is_some();
    let lower = match (&req.image, &req.rootfs) {
        (Some(_), Some(_)) | (None, None) => {
            return Err(RuntimeError::invalid(
                "image",
                "give exactly one of image and rootfs",
            ));
        }
        (None, Some(r)) => {
            let p = Path::new(r);
            if !p.is_absolute() || r.contains([',', ':', '\0']) || r.split('/').any(|c| c == "..") {
                return Err(RuntimeError::invalid(
                    "rootfs",
                    format!("{r:?} must be an absolute path without ',', ':' or .."),
                ));
            }
            if !p.is_dir() {
                return Err(RuntimeError::invalid(
                    "rootfs",
                    format!("{r} is not a directory"),
                ));
            }
            vec![p.to_owned()]
        }
        (Some(i), None) => {
            let img = images.resolve(i).map_err(|e| match e {
                crate::image::ImageError::NotFound(_) => {
                    RuntimeError::invalid("image", format!("no such image: {i}"))
                }
                other => RuntimeError::Image(other),
            })?;
            env.extend(img.env.iter().cloned());
            if args.is_empty() {
                args = img
                    .entrypoint
                    .iter()
                    .chain(img.cmd.iter())
                    .cloned()
                    .collect();
            } else if !img.entrypoint.is_empty() {
                args = img.entrypoint.iter().chain(args.iter()).cloned().collect();
            }
            if cwd.is_none() && !img.workdir.is_empty() {
                cwd = Some(img.workdir.clone());
            }
            if user.is_none() && !img.user.is_empty() {
                user = Some(img.user.clone());
            }
            img.layers
        }
    };
    if args.is_empty() || args[0].is_empty() {
        return Err(RuntimeError::invalid(
            "command",
            "must not be empty (and the image has no default)",
        ));
    }
    if args.iter().any(|a| a.contains('\0')) {
        return Err(RuntimeError::invalid(
            "command",
            "must not contain NUL bytes",
        ));
    }
    for e in &req.env {
        check_env(e, "env")?;
    }
    for e in &req.env {
        let key = e.split('=').next().unwrap_or("");
        env.retain(|x| x.split('=').next() != Some(key));
        env.push(e.clone());
    }
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.insert(0, format!("PATH={DEFAULT_PATH}"));
    }
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push("HOME=/root".into());
    }
    let cwd = cwd.unwrap_or_else(|| "/".into());
    check_container_path(&cwd, "workdir")?;
    if let Some(h) = &req.hostname {
        let ok = !h.is_empty()
            && h.len() <= 63
            && h.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
        if !ok {
            return Err(RuntimeError::invalid(
                "hostname",
                format!("{h:?} must be 1-63 of [A-Za-z0-9.-]"),
            ));
        }
    }
    let (uid, gid) = match user.as_deref() {
        None | Some("") => (0, 0),
        Some(u) => {
            let (a, b) = u.split_once(':').unwrap_or((u, u));
            match (a.parse::<u32>(), b.parse::<u32>()) {
                (Ok(a), Ok(b)) => (a, b),
                _ => {
                    return Err(RuntimeError::invalid(
                        "user",
                        format!("{u:?} must be numeric uid[:gid]"),
                    ));
                }
            }
        }
    };
    let mut mounts = Vec::new();
    for (i, m) in req.mounts.iter_mut().enumerate() {
        let field = format!("mounts[{i}]");
        check_container_path(&m.destination, &format!("{field}.destination"))?;
        check_mount_destination(&m.destination, &format!("{field}.destination"))?;
        match m.kind.as_str() {
            "bind" => {
                let field = format!("{field}.source");
                let src = m
                    .source
                    .as_deref()
                    .ok_or_else(|| RuntimeError::invalid(&field, "a bind mount needs a source"))?;
                if !Path::new(src).is_absolute() || !Path::new(src).exists() {
                    return Err(RuntimeError::invalid(
                        &field,
                        format!("{src:?} must be an existing absolute path"),
                    ));
                }
                let (source, id) = bind_source(Path::new(src))
                    .map_err(|why| RuntimeError::invalid(&field, format!("{src:?}: {why}")))?;
                // The record shows what is mounted: the canonical path.
                m.source = Some(source.to_str().map(str::to_owned).ok_or_else(|| {
                    RuntimeError::invalid(
                        &field,
                        format!(
                            "{src:?} resolves to {}, which is not UTF-8",
                            source.display()
                        ),
                    )
                })?);
                mounts.push(MountConfig::Bind {
                    source,
                    destination: m.destination.clone(),
                    readonly: m.readonly,
                    id: Some(id),
                });
            }
            "tmpfs" => mounts.push(MountConfig::Tmpfs {
                destination: m.destination.clone(),
            }),
            other => {
                return Err(RuntimeError::invalid(
                    &format!("{field}.type"),
                    format!("{other:?} must be bind or tmpfs"),
                ));
            }
        }
    }
    if let Some(s) = req.network.as_deref() {
        s.parse::<crate::network::NetworkMode>().map_err(|_| {
            RuntimeError::invalid("network", format!("{s:?} must be none, host or bridge"))
        })?;
    }
    crate::network::PortSpec::parse_all(&req.ports).map_err(net_err(""))?;
    let mode = network_mode(req);
    if mode != crate::network::NetworkMode::Bridge && !req.ports.is_empty() {
        return Err(RuntimeError::invalid(
            "ports",
            format!("publishing ports needs network bridge, not {mode}"),
        ));
    }
    let net_ns = mode != crate::network::NetworkMode::Host;
    let restart = match req.restart.as_deref() {
        None => RestartPolicy::No,
        Some(s) => RestartPolicy::parse(s).ok_or_else(|| {
            RuntimeError::invalid(
                "restart",
                format!("{s:?} must be no, on-failure[:N] or always"),
            )
        })?,
    };
    if req.auto_remove && restart != RestartPolicy::No {
        return Err(RuntimeError::invalid(
            "restart",
            "auto_remove and a restart policy exclude each other",
        ));
    }
    if let Some(t) = req.stop_timeout
        && t > 3600
    {
        return Err(RuntimeError::invalid(
            "stop_timeout",
            format!("{t} must be at most 3600 seconds"),
        ));
    }
    for k in req.labels.keys() {
        if k.is_empty() || k.len() > 128 {
            return Err(RuntimeError::invalid(
                "labels",
                format!("label key {k:?} must be 1-128 characters"),
            ));
        }
    }
    let userns = match req.userns.as_deref() {
        None => None,
        Some("auto") => Some(UsernsRequest::Auto),
        Some(s) => Some(UsernsRequest::Fixed(IdRange::parse(s).ok_or_else(
            || {
                RuntimeError::invalid(
                    "userns",
                    format!("{s:?} must be auto or HOST_UID[:SIZE] (HOST_UID > 0, within 32 bits)"),
                )
            },
        )?)),
    };
    if userns.is_some() && !Path::new("/proc/self/ns/user").exists() {
        return Err(RuntimeError::invalid(
            "userns",
            "this kernel has no user namespaces",
        ));
    }
    if req.limits.pids_max.is_none() {
        req.limits.pids_max = Some(DEFAULT_PIDS_MAX);
    }
    validate_limits(&req.limits)?;
    Ok(Validated {
        userns,
        lower,
        args,
        env,
        cwd,
        uid,
        gid,
        mounts,
        net_ns,
        restart,
        host_rootfs,
    })
}

/// The network mode of a request (`NetworkMode::of_spec`).
fn network_mode(req: &wire::CreateContainer) -> crate::network::NetworkMode {
    crate::network::NetworkMode::of_spec(req.network.as_deref(), !req.ports.is_empty())
}

/// Network errors as runtime errors: bad or busy ports name their field.
fn net_err(name: &str) -> impl Fn(crate::network::NetworkError) -> RuntimeError + '_ {
    use crate::network::NetworkError as E;
    move |e| match e {
        E::InvalidPort {
            field,
            value,
            reason,
        } => RuntimeError::invalid(&field, format!("{value:?}: {reason}")),
        e @ (E::PortInUse { .. } | E::PortsNeedBridge(_) | E::InvalidMode { .. }) => {
            RuntimeError::invalid("ports", e.to_string())
        }
        e => RuntimeError::Start {
            name: name.to_owned(),
            message: e.to_string(),
        },
    }
}

/// Builds the manager for the daemon, reconciles the records with the monitors that survived a
/// daemon restart, and starts the periodic reconciler.
/// `network`: the daemon's networking (it restores and shuts it down; the manager attaches and
/// detaches containers).
pub async fn start_manager(
    config: &crate::config::Config,
    store: Store,
    cgroups: Arc<crate::cgroup::Cgroups>,
    network: crate::network::Network,
    metering: Option<crate::metering::Metering>,
) -> Result<Manager, RuntimeError> {
    let state_dir = config.state_dir.clone();
    let image_limits = config.images.limits();
    let net = network.clone();
    let default_memory = config.default_memory;
    let m = blocking(move || {
        let driver = super::cgroups::EngineCgroups::new(cgroups);
        Manager::new(store, &state_dir, Arc::new(driver), metering).map(|m| {
            m.with_network(network)
                .with_default_memory(default_memory)
                .with_image_limits(image_limits)
        })
    })
    .await?;
    m.sweep().await?;
    // Bridged containers that outlived the last daemon get their NAT and published ports back:
    // after the sweep, so a half-created container's network is not brought back only to be
    // taken down again.
    if let Err(e) = net.restore().await {
        tracing::error!(error = %e, "cannot restore container networking");
    }
    m.reconcile().await?;
    let r = m.clone();
    blocking(move || r.meter_resume()).await?;
    m.spawn_reconciler();
    Ok(m)
}
