//! The daemon side of containers: the record and its state, the `Manager` with its store,
//! registry and metering hooks, and the reads (list, get, refresh against the monitor's state).
//! Each job beside it has its file: `validate.rs` (a create request's checks), `create.rs`,
//! `lifecycle.rs` (start, stop, kill, restart, freeze, re-limit, remove), `recovery.rs` (the
//! sweep at start and the reconciler), `ckpt.rs` (checkpoint and restore).
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
    state::{ShimState, ShimStatus, alive, now},
};
use crate::{image::ImageStore, store::Store};

pub use super::registry::Listed;
pub use super::status::Status;

mod ckpt;
mod create;
mod lifecycle;
mod recovery;
mod validate;

pub(in crate::runtime) use validate::check_env;
use validate::*;
pub use validate::{parse_signal, valid_name, validate_limits};

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

    /// The crash tests' named points (`<state>/containers/.crash-at`, [`crate::fault`]).
    fn fault(&self, point: &str) {
        crate::fault::crash_point(&self.inner.dir, point);
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
            Some(st) if st.status == ShimStatus::Running && alive(st.init_pid, st.init_start) => {
                r.init_pid = Some(st.init_pid);
                r.init_start = Some(st.init_start);
                r.restart_count = st.restart_count;
                r.started_at = st.started_at;
            }
            Some(st) if st.status == ShimStatus::Exited && (st.done || !shim_alive) => {
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
                let finishing = stored.as_deref().is_some_and(Status::live_str);
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

    /// `GET /containers` as serialized rows: the containers of the teams `team` accepts, live
    /// ones only unless `all`, oldest first. Rows a watch covers are copied from the
    /// registry's JSON; others are read up to date from their monitor first.
    pub async fn list_rows(
        &self,
        all: bool,
        team: impl Fn(&str) -> bool + Send + 'static,
    ) -> Result<Vec<Listed>, RuntimeError> {
        let m = self.clone();
        blocking(move || {
            let rows = m
                .inner
                .registry
                .list_rows(|r, live| (all || live) && team(&r.team));
            let mut out = Vec::with_capacity(rows.len());
            for row in rows {
                match row {
                    super::registry::ListRow::Ready(l) => out.push(l),
                    super::registry::ListRow::Stale(r) => {
                        let r = m.refresh(*r)?;
                        if all || r.status().is_live() {
                            out.push(Listed::of(&r));
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
}

/// How often every record is reconciled besides the pidfd watches.
pub const SWEEP: Duration = Duration::from_secs(30);

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
        let driver = crate::runtime::cgroups::EngineCgroups::new(cgroups);
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
