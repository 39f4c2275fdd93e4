//! Everything the benchmark creates, undone on drop — also when a measurement fails half-way:
//! its containers (removed through the API while the daemon runs), its daemon, the monitors
//! and inits it left, its own cgroup subtrees and its temporary directory. Nothing outside
//! them is touched: only processes it started are signalled (the daemon's containers by the
//! PID and start time their state files record, the rest found in its own cgroup subtrees).

use std::{
    fs,
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

use super::{http::Conn, procfs};

/// The cgroup filesystem's mount point (as in the leak check).
const CGROUP_FS: &str = "/sys/fs/cgroup";

pub struct Guard {
    /// `/tmp/corral-bench-PID`: state dir, socket, rootfs, bundles, logs.
    pub dir: PathBuf,
    /// The daemon's `--cgroup-root` (`corral-bench-PID`).
    pub cgroup_root: String,
    /// The subtree runc's and crun's containers are put in (`corral-bench-PID-oci`).
    pub oci_cgroup: String,
    pub socket: PathBuf,
    daemon: Option<Child>,
}

impl Guard {
    pub fn new() -> Result<Self> {
        let id = format!("corral-bench-{}", std::process::id());
        let dir = std::env::temp_dir().join(&id);
        if dir.exists() {
            bail!("{} exists: another benchmark of this PID?", dir.display());
        }
        fs::create_dir_all(&dir)?;
        Ok(Guard {
            socket: dir.join("run/corral.sock"),
            dir,
            oci_cgroup: format!("{id}-oci"),
            cgroup_root: id,
            daemon: None,
        })
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.join("state")
    }

    /// Starts `corral serve` with this benchmark's state dir, socket and cgroup root, on a free
    /// loopback port, and waits until it answers over the socket.
    pub fn start_daemon(&mut self, corral: &Path) -> Result<u32> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let log = fs::File::create(self.dir.join("daemon.log"))?;
        let child = Command::new(corral)
            .arg("serve")
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--socket")
            .arg(&self.socket)
            .arg("--state-dir")
            .arg(self.state_dir())
            .arg("--cgroup-root")
            .arg(&self.cgroup_root)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("start {} serve", corral.display()))?;
        let pid = child.id();
        self.daemon = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = Conn::new(&self.socket).get("/api/v1/health")
                && r.status == 200
            {
                return Ok(pid);
            }
            if let Some(status) = self.daemon.as_mut().and_then(|c| c.try_wait().ok()?) {
                bail!("corral serve exited with {status}: {}", self.daemon_log());
            }
            if Instant::now() > deadline {
                bail!("corral serve did not answer in 30 s: {}", self.daemon_log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn daemon_log(&self) -> String {
        fs::read_to_string(self.dir.join("daemon.log")).unwrap_or_default()
    }

    /// The monitor (`__shim`) PIDs of the daemon's live containers, from their state files
    /// (checked against the recorded start time).
    pub fn monitors(&self) -> Vec<i32> {
        self.recorded_pids(&["shim"])
    }

    fn recorded_pids(&self, kinds: &[&str]) -> Vec<i32> {
        let mut out = Vec::new();
        let Ok(rd) = fs::read_dir(self.state_dir().join("containers")) else {
            return out;
        };
        for e in rd.flatten() {
            let Ok(text) = fs::read_to_string(e.path().join("state.json")) else {
                continue;
            };
            let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) else {
                continue;
            };
            for kind in kinds {
                let pid = v[format!("{kind}_pid")].as_i64().unwrap_or(0) as i32;
                let start = v[format!("{kind}_start")].as_u64().unwrap_or(0);
                if pid > 0 && procfs::start_time(pid) == Some(start) {
                    out.push(pid);
                }
            }
        }
        out
    }

    /// Removes every container through the API (force), while the daemon runs.
    fn remove_containers(&self) {
        let mut c = Conn::new(&self.socket);
        let Ok(list) = c
            .get("/api/v1/containers?all=true")
            .and_then(|r| r.ok_json("list"))
        else {
            return;
        };
        let names: Vec<String> = list
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|x| x["name"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        if !names.is_empty() {
            println!("==> bench: removing {} containers", names.len());
        }
        let deadline = Instant::now() + Duration::from_secs(600);
        for n in names {
            if Instant::now() > deadline {
                break;
            }
            let _ = c.request(
                "DELETE",
                &format!("/api/v1/containers/{n}?force=true"),
                None,
            );
        }
    }

    fn stop_daemon(&mut self) {
        let Some(mut child) = self.daemon.take() else {
            return;
        };
        signal("TERM", &[child.id() as i32]);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Kills every process of `name`'s subtree in every hierarchy and removes its directories,
    /// deepest first (frozen groups thawed first). Only this benchmark's own subtrees.
    fn remove_cgroup_subtree(name: &str) {
        if !name.starts_with("corral-bench-") {
            return;
        }
        let mut hierarchies: Vec<PathBuf> = fs::read_dir(CGROUP_FS)
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.path())
                    .filter(|p| p.is_dir())
                    .collect()
            })
            .unwrap_or_default();
        hierarchies.push(PathBuf::from(CGROUP_FS));
        for _ in 0..100 {
            let (mut pids, mut dirs) = (Vec::new(), Vec::new());
            for h in &hierarchies {
                let root = h.join(name);
                if root.is_dir() {
                    collect(&root, &mut pids, &mut dirs);
                }
            }
            if dirs.is_empty() {
                return;
            }
            for d in &dirs {
                let _ = fs::write(d.join("freezer.state"), "THAWED");
                let _ = fs::write(d.join("cgroup.freeze"), "0");
            }
            pids.sort_unstable();
            pids.dedup();
            signal("KILL", &pids);
            dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
            for d in &dirs {
                let _ = fs::remove_dir(d);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!("bench: could not remove every cgroup of {name}");
    }

    /// Mounts under the benchmark's directory (none are expected: Corral mounts a container's
    /// root inside the container's own mount namespace), lazily unmounted.
    fn unmount_leftovers(&self) {
        let text = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let mut mounts: Vec<&str> = text
            .lines()
            .filter_map(|l| l.split_whitespace().nth(4))
            .filter(|m| Path::new(m).starts_with(&self.dir))
            .collect();
        mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in mounts {
            let _ = Command::new("umount").args(["-l", m]).status();
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if self.daemon.is_some() {
            self.remove_containers();
        }
        self.stop_daemon();
        // Containers outlive their daemon by design: kill what is left of ours.
        signal("KILL", &self.recorded_pids(&["shim", "init"]));
        std::thread::sleep(Duration::from_millis(100));
        Self::remove_cgroup_subtree(&self.oci_cgroup);
        Self::remove_cgroup_subtree(&self.cgroup_root);
        self.unmount_leftovers();
        if let Err(e) = fs::remove_dir_all(&self.dir) {
            eprintln!("bench: remove {}: {e}", self.dir.display());
        }
    }
}

fn collect(dir: &Path, pids: &mut Vec<i32>, dirs: &mut Vec<PathBuf>) {
    dirs.push(dir.to_owned());
    if let Ok(procs) = fs::read_to_string(dir.join("cgroup.procs")) {
        pids.extend(procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
    }
    if let Ok(rd) = fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                collect(&e.path(), pids, dirs);
            }
        }
    }
}

/// `kill -SIG PIDS` (xtask has no libc binding; the PIDs are the benchmark's own).
fn signal(sig: &str, pids: &[i32]) {
    for chunk in pids.chunks(500) {
        if chunk.is_empty() {
            continue;
        }
        let _ = Command::new("kill")
            .arg(format!("-{sig}"))
            .args(chunk.iter().map(i32::to_string))
            .stderr(Stdio::null())
            .status();
    }
}
