//! Recovery: the sweep at start (half-made records, monitors that outlived a daemon, orphan
//! directories) and the reconciler that records exits the pidfd watches did not see.

use super::*;

impl Manager {
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

    pub(super) fn sweep_creating(&self, r: &Record) -> Result<(), RuntimeError> {
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
    pub(super) fn adopt(&self, r: &Record) -> Result<(), RuntimeError> {
        let Some(st) = ShimState::read(&self.container_dir(&r.id).state()) else {
            return Ok(());
        };
        if st.status != ShimStatus::Running
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

    pub(super) fn sweep_orphan_dirs(&self, records: &[Record]) {
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

    /// Refreshes one record; whether `--rm` should remove it and whether a restart policy
    /// should start it again after its monitor was lost.
    pub(super) fn reconcile_record(&self, r: Record) -> Result<(Record, bool, bool), RuntimeError> {
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

    pub(super) async fn finish_reconcile(&self, remove: Vec<String>, restart: Vec<String>) {
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

/// Detaches every mount at or below `dir` (deepest first), as listed in /proc/self/mountinfo.
pub(super) fn unmount_under(dir: &Path) {
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
