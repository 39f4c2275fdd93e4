//! Checkpoint and restore of a container (issue 18), the daemon's half: criu dumps the running
//! tree (`checkpoint::dump`), the writable layer is kept as a layer tarball, and a restore is a
//! start whose monitor runs `criu restore` instead of cloning an init (`shim::restore_init`).
//!
//! A checkpoint lives in `<state>/checkpoints/<name>/` and outlives its container, so a
//! removed container can be restored, under its own name or another. It is written in a
//! temporary directory and renamed into place only when whole: a failed dump leaves the old
//! checkpoint (if any) and the container as they were, running.
//!
//! Metering: a restore is a start in a fresh cgroup (the stopped run was billed in full by its
//! final reading), so the time between checkpoint and restore is not billed and nothing is
//! counted twice.

use std::{
    fs,
    os::unix::fs::DirBuilderExt,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use super::{Manager, RuntimeError, blocking, conflict};
use crate::runtime::{
    checkpoint::{self, Meta, RestorePlan, Stored},
    state::now,
};

/// Where a restore reads from.
enum Source {
    /// `<state>/checkpoints/<name>`.
    Stored(Stored),
    /// An unpacked `--import` tarball, removed after the restore.
    Imported(Stored),
}

impl Source {
    fn stored(&self) -> &Stored {
        match self {
            Self::Stored(s) | Self::Imported(s) => s,
        }
    }
}

impl Drop for Source {
    fn drop(&mut self) {
        if let Self::Imported(s) = self {
            let _ = fs::remove_dir_all(&s.0);
        }
    }
}

fn failed(message: impl Into<String>) -> RuntimeError {
    RuntimeError::Checkpoint(message.into())
}

/// criu's path where it works here, else its reason as the error.
fn criu() -> Result<PathBuf, RuntimeError> {
    let support = checkpoint::support();
    support
        .path
        .clone()
        .filter(|_| support.available)
        .ok_or_else(|| failed(support.reason.clone()))
}

impl Manager {
    fn checkpoints_dir(&self) -> PathBuf {
        self.inner
            .dir
            .parent()
            .unwrap_or(&self.inner.dir)
            .join("checkpoints")
    }

    /// A temporary directory under the checkpoints directory (same filesystem: renamed into
    /// place when whole).
    fn checkpoint_scratch(&self, what: &str) -> Result<PathBuf, RuntimeError> {
        let root = self.checkpoints_dir();
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&root)
            .map_err(RuntimeError::io("create", &root))?;
        let tmp = root.join(format!(".{what}-{}", super::new_id()));
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&tmp)
            .map_err(RuntimeError::io("create", &tmp))?;
        Ok(tmp)
    }

    /// The team of the stored checkpoint `name`, or `NoCheckpoint` (the routes check the
    /// caller's rights on it before restoring).
    pub async fn checkpoint_team(&self, name: &str) -> Result<String, RuntimeError> {
        let s = Stored(self.checkpoints_dir().join(name));
        let n = name.to_owned();
        blocking(move || {
            if !s.meta().exists() {
                return Err(RuntimeError::NoCheckpoint(n));
            }
            s.read_meta().map(|m| m.team).map_err(failed)
        })
        .await
    }

    /// The stored checkpoints, by name.
    pub async fn list_checkpoints(&self) -> Result<Vec<wire::StoredCheckpoint>, RuntimeError> {
        let root = self.checkpoints_dir();
        blocking(move || {
            let mut out = Vec::new();
            let Ok(rd) = fs::read_dir(&root) else {
                return Ok(out);
            };
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with('.') {
                    continue;
                }
                let s = Stored(e.path());
                let Ok(m) = s.read_meta() else { continue };
                let image = match (&m.spec.image, &m.spec.rootfs) {
                    (Some(i), _) => i.clone(),
                    (None, Some(r)) => format!("rootfs:{r}"),
                    _ => String::new(),
                };
                out.push(wire::StoredCheckpoint {
                    name,
                    container_id: m.id,
                    team: m.team,
                    image,
                    created_at: m.created_at,
                    size_bytes: match m.size_bytes {
                        0 => checkpoint::size_of(&s.0),
                        n => n,
                    },
                    criu_version: m.criu_version,
                });
            }
            out.sort_by(|a, b| a.name.cmp(&b.name));
            Ok(out)
        })
        .await
    }

    /// Removes the stored checkpoint `name` (under the name's lock: never while it is being
    /// written or restored from).
    pub async fn remove_checkpoint(&self, name: &str) -> Result<(), RuntimeError> {
        let _g = self.lock(name).await;
        let s = Stored(self.checkpoints_dir().join(name));
        let n = name.to_owned();
        let m = self.clone();
        blocking(move || {
            if !s.meta().exists() {
                return Err(RuntimeError::NoCheckpoint(n));
            }
            // Renamed away first, so a crash halfway leaves no half checkpoint under the name.
            let gone = m.checkpoint_scratch(&format!("rm-{n}"))?;
            let _ = fs::remove_dir(&gone);
            fs::rename(&s.0, &gone).map_err(RuntimeError::io("rename", &s.0))?;
            fs::remove_dir_all(&gone).map_err(RuntimeError::io("remove", &gone))
        })
        .await
    }

    /// Checkpoints the running container `name`: its tree dumped by criu (stopped after, as by
    /// `stop`, unless `leave_running`), its writable layer kept, and with `export` the whole
    /// written as one tarball there (a file that must not exist yet).
    pub async fn checkpoint(
        &self,
        name: &str,
        leave_running: bool,
        export: Option<PathBuf>,
    ) -> Result<wire::Checkpoint, RuntimeError> {
        let _g = self.lock(name).await;
        let m = self.clone();
        let n = name.to_owned();
        let r = blocking(move || m.refresh(m.load(&n)?)).await?;
        if r.status() != super::Status::Running {
            return Err(conflict(
                &r,
                "only a running container can be checkpointed (a paused one: unpause it first)",
            ));
        }
        if r.spec.tty {
            return Err(conflict(
                &r,
                "it has a terminal (-t): checkpoints of containers with a terminal are not supported",
            ));
        }
        if r.spec.userns.is_some() {
            return Err(conflict(
                &r,
                "it runs in a user namespace: checkpoints of such containers are not supported",
            ));
        }
        if let Some(p) = &export {
            if p.exists() {
                return Err(RuntimeError::invalid(
                    "export",
                    format!("{} exists: give a new file", p.display()),
                ));
            }
            match p.parent() {
                Some(d) if d.is_dir() => {}
                _ => {
                    return Err(RuntimeError::invalid(
                        "export",
                        format!("the directory of {} does not exist", p.display()),
                    ));
                }
            }
        }
        let criu = criu()?;
        let Some(init) = r.init_pid.filter(|p| *p > 0) else {
            return Err(conflict(&r, "its process is not known"));
        };
        let dir = self.container_dir(&r.id);
        if !leave_running {
            // The monitor must not restart what criu ends.
            let who = crate::events::current_actor().unwrap_or_default();
            fs::write(dir.stop_marker(), who)
                .map_err(RuntimeError::io("write", dir.stop_marker()))?;
        }
        let m = self.clone();
        let r2 = r.clone();
        let version = checkpoint::support().version.clone();
        let made = blocking(move || {
            let tmp = m.checkpoint_scratch(&format!("new-{}", r2.name))?;
            let res = m.checkpoint_into(&r2, init, &criu, &tmp, leave_running, version);
            if res.is_err() {
                let _ = fs::remove_dir_all(&tmp);
            }
            res
        })
        .await;
        let (stored, took, size) = match made {
            Ok(x) => x,
            Err(e) => {
                if !leave_running {
                    let _ = fs::remove_file(dir.stop_marker());
                }
                return Err(e);
            }
        };
        if !leave_running {
            self.wait_exit(&r, Duration::from_secs(10)).await;
        }
        let export_res = match &export {
            Some(p) => {
                let (s, p) = (stored.clone(), p.clone());
                blocking(move || {
                    checkpoint::export(&s, &p)
                        .map_err(RuntimeError::io("write the exported checkpoint", &p))
                })
                .await
                .map(Some)
            }
            None => Ok(None),
        };
        let m = self.clone();
        let n = name.to_owned();
        let after = blocking(move || m.refresh(m.load(&n)?)).await?;
        self.emit(&after, "checkpointed");
        export_res?;
        Ok(wire::Checkpoint {
            container: after.name.clone(),
            status: after.status().to_string(),
            size_bytes: size,
            took_ms: took.as_millis() as u64,
            export: export.map(|p| p.display().to_string()),
        })
    }

    /// The dump into `tmp` and the rename into place: (the stored checkpoint, the dump's time, its size).
    fn checkpoint_into(
        &self,
        r: &super::Record,
        init: i32,
        criu: &Path,
        tmp: &Path,
        leave_running: bool,
        criu_version: Option<String>,
    ) -> Result<(Stored, Duration, u64), RuntimeError> {
        let s = Stored(tmp.to_owned());
        fs::create_dir(s.images()).map_err(RuntimeError::io("create", s.images()))?;
        let pipes = checkpoint::std_pipes(init);
        let netns = checkpoint::own_netns_inode(init);
        // Held across the dump: the namespace whose lock is lifted after it.
        let netns_file = netns.and_then(|_| fs::File::open(format!("/proc/{init}/ns/net")).ok());
        let t0 = Instant::now();
        let dir = self.container_dir(&r.id);
        // criu's log in the container's directory, where a failed dump's stays to be read.
        let work = dir.path().join("criu");
        checkpoint::dump(criu, init, &s.images(), &work, leave_running, netns).map_err(failed)?;
        let took = t0.elapsed();
        if !leave_running
            && let Some(f) = &netns_file
            && let Err(e) = checkpoint::drop_network_lock(f)
        {
            tracing::warn!(container = %r.name, error = %e, "cannot lift criu's network lock");
        }
        checkpoint::write_layer(&dir.upper(), &s.rootfs_diff())
            .map_err(RuntimeError::io("write the writable layer of", dir.upper()))?;
        let meta = Meta {
            version: 1,
            id: r.id.clone(),
            name: r.name.clone(),
            team: r.team.clone(),
            spec: r.spec.clone(),
            created_at: now(),
            pipes,
            external_netns: netns.is_some(),
            criu_version,
            size_bytes: checkpoint::size_of(tmp),
        };
        let data = serde_json::to_vec_pretty(&meta).map_err(|e| failed(e.to_string()))?;
        crate::runtime::state::write_atomic(&s.meta(), &data)
            .map_err(RuntimeError::io("write", s.meta()))?;
        let dest = self.checkpoints_dir().join(&r.name);
        if dest.exists() {
            // The older checkpoint of this name goes once the new one is whole.
            let old = self.checkpoint_scratch(&format!("old-{}", r.name))?;
            let _ = fs::remove_dir(&old);
            fs::rename(&dest, &old).map_err(RuntimeError::io("rename", &dest))?;
            let _ = fs::remove_dir_all(&old);
        }
        fs::rename(tmp, &dest).map_err(RuntimeError::io("rename", tmp))?;
        Ok((Stored(dest), took, meta.size_bytes))
    }

    /// Restores the checkpoint `from` (or the tarball `import`) as a running container named
    /// `name` (default: the checkpointed container's). The container is made from the
    /// checkpoint's spec when no container of that name exists; the checkpointed container
    /// itself, stopped, is restored in place; any other container of that name is a conflict.
    pub async fn restore(
        &self,
        from: &str,
        import: Option<PathBuf>,
        name: Option<String>,
        allow_privileged: bool,
    ) -> Result<wire::Container, RuntimeError> {
        let criu = criu()?;
        let src = match import {
            Some(file) => {
                let tmp = self.checkpoint_scratch("import")?;
                let t = tmp.clone();
                let got = blocking(move || {
                    checkpoint::import(&file, &t).map_err(|e| RuntimeError::invalid("import", e))
                })
                .await;
                match got {
                    Ok(s) => Source::Imported(s),
                    Err(e) => {
                        let _ = fs::remove_dir_all(&tmp);
                        return Err(e);
                    }
                }
            }
            None => {
                let s = Stored(self.checkpoints_dir().join(from));
                if !s.meta().exists() {
                    return Err(RuntimeError::NoCheckpoint(from.to_owned()));
                }
                Source::Stored(s)
            }
        };
        let meta = src.stored().read_meta().map_err(failed)?;
        let target = name.unwrap_or_else(|| meta.name.clone());
        // Held from the check to the prepared restore: nothing starts, removes or restores
        // this name in between. (`start` takes it again.)
        let guard = self.lock(&target).await;
        let m = self.clone();
        let t = target.clone();
        let existing = blocking(move || match m.load(&t) {
            Ok(r) => m.refresh(r).map(Some),
            Err(RuntimeError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        })
        .await?;
        let made_here = match existing {
            Some(r) if r.id == meta.id => {
                if r.status().is_live() || r.status() == super::Status::Creating {
                    return Err(conflict(&r, "restore needs it stopped"));
                }
                false
            }
            Some(_) => return Err(RuntimeError::NameInUse(target)),
            None => {
                let mut spec = meta.spec.clone();
                spec.name = Some(target.clone());
                spec.start = false;
                self.create(spec, allow_privileged).await?;
                true
            }
        };
        let m = self.clone();
        let t = target.clone();
        let stored = src.stored().clone();
        let plan = RestorePlan {
            criu,
            images: stored.images(),
            pipes: meta.pipes.clone(),
            external_netns: meta.external_netns,
        };
        let prepared = blocking(move || {
            let r = m.load(&t)?;
            let dir = m.container_dir(&r.id);
            // The writable layer as it was at the checkpoint.
            for d in [dir.upper(), dir.work()] {
                if d.exists() {
                    fs::remove_dir_all(&d).map_err(RuntimeError::io("clear", &d))?;
                }
                fs::DirBuilder::new()
                    .mode(0o700)
                    .create(&d)
                    .map_err(RuntimeError::io("create", &d))?;
            }
            fs::set_permissions(
                dir.upper(),
                std::os::unix::fs::PermissionsExt::from_mode(0o755),
            )
            .map_err(RuntimeError::io("chmod", dir.upper()))?;
            let f = fs::File::open(stored.rootfs_diff())
                .map_err(RuntimeError::io("open", stored.rootfs_diff()))?;
            crate::image::unpack::unpack_layer(std::io::BufReader::new(f), &dir.upper(), true)
                .map_err(|e| failed(format!("the checkpoint's writable layer: {e}")))?;
            let data = serde_json::to_vec(&plan).map_err(|e| failed(e.to_string()))?;
            let p = dir.path().join(crate::runtime::shim::RESTORE_PLAN);
            crate::runtime::state::write_atomic(&p, &data)
                .map_err(RuntimeError::io("write", &p))?;
            Ok(())
        })
        .await;
        drop(guard);
        let started = match prepared {
            Ok(()) => self.start(&target).await.map_err(|e| match e {
                RuntimeError::Start { message, .. } => failed(message),
                e => e,
            }),
            Err(e) => Err(e),
        };
        match started {
            Ok(c) => Ok(c),
            Err(e) => {
                if made_here {
                    // No half-made container: the one made for this restore goes again.
                    let _ = self.remove(&target, true).await;
                } else if let Ok(r) = self.load(&target) {
                    let _ = fs::remove_file(
                        self.container_dir(&r.id)
                            .path()
                            .join(crate::runtime::shim::RESTORE_PLAN),
                    );
                }
                Err(e)
            }
        }
    }
}
