//! Create: a validated spec becomes a record, a directory, a cgroup, a monitor config and
//! (bridge mode) a network, in that order; a failure undoes what was made.

use super::*;

impl Manager {
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
    pub(super) async fn attach_network(&self, r: &Record) -> Result<(), RuntimeError> {
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

    pub(super) fn create_blocking(
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
            // The log exists (empty) before the first start, as the monitor would open it
            // (create, append): a client attached before the start holds it open, so a run
            // that is over and removed before the client looks (`docker run --rm IMAGE echo
            // hi`) still reaches it.
            fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(dir.log())
                .map_err(RuntimeError::io("create", dir.log()))?;
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
            crate::runtime::state::write_atomic(&dir.config(), &data)
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
    pub(super) fn userns_range(&self, want: UsernsRequest) -> Result<IdRange, RuntimeError> {
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
}
