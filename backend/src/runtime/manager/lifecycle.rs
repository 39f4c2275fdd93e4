//! The lifecycle of a made container: start (a monitor per run), stop, kill, restart,
//! freeze, live re-limits, remove, and what reads its logs.

use super::*;

impl Manager {
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

    pub(super) fn start_blocking(&self, name: &str) -> Result<wire::Container, RuntimeError> {
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
        let program = crate::runtime::memfd::helper_program()
            .map_err(RuntimeError::io("make a sealed copy of", "/proc/self/exe"))?;
        let shim_log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.shim_log())
            .map_err(RuntimeError::io("open", dir.shim_log()))?;
        let mut out = String::new();
        // Forked by the zygote; exec'd here only when the zygote cannot serve.
        match crate::runtime::zygote::spawn_monitor(&program, &dir, &shim_log) {
            Ok(mut report) => {
                let _ = report.read_to_string(&mut out);
            }
            Err(e) => {
                tracing::warn!(error = %e, "monitor zygote unavailable; exec'ing the monitor");
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
                crate::runtime::pass_open_file_limit(|k, v| child.env(k, v));
                let mut child = child
                    .spawn()
                    .map_err(RuntimeError::io("spawn monitor", &program))?;
                if let Some(mut so) = child.stdout.take() {
                    let _ = so.read_to_string(&mut out);
                }
                let _ = child.wait();
            }
        }
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
                    .or_else(|| crate::runtime::state::proc_start_time(shim));
                r.init_pid = Some(init);
                r.init_start = Some(st.init_start)
                    .filter(|s| *s > 0)
                    .or_else(|| crate::runtime::state::proc_start_time(init));
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

    pub(super) async fn stop_locked(
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
    pub(super) fn signal_init(&self, r: &Record, sig: Signal) -> bool {
        let dir = self.container_dir(&r.id);
        let (pid, start) = match ShimState::read(&dir.state()) {
            Some(st) if st.status == ShimStatus::Running => (st.init_pid, st.init_start),
            _ => match (r.init_pid, r.init_start) {
                (Some(p), Some(s)) => (p, s),
                _ => return false,
            },
        };
        alive(pid, start) && kill(Pid::from_raw(pid), sig).is_ok()
    }

    /// Waits until the monitor has recorded a final exit (or is gone).
    pub(super) async fn wait_exit(&self, r: &Record, timeout: Duration) -> bool {
        let dir = self.container_dir(&r.id);
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = ShimState::read(&dir.state())
                && st.status == ShimStatus::Exited
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
                match m.inner.cgroups.thaw(&t, &n) {
                    Ok(()) => Ok(()),
                    // Killed, the container may already have exited and released its cgroup
                    // (`runtime::watch`): nothing is left to thaw.
                    Err(_) if !m.inner.cgroups.exists(&t, &n) => Ok(()),
                    Err(e) => Err(cgroup_err(e)),
                }
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

    pub(super) fn remove_blocking(&self, r: &Record) -> Result<(), RuntimeError> {
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
        matches!(self.get(name).await, Ok(c) if Status::live_str(&c.status))
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
}
