//! `DIR/config.json`: everything the monitor needs to build the container, written by the daemon
//! before the monitor starts and never changed while it runs.

use std::{
    os::fd::OwnedFd,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

/// Docker's default capabilities (the 14 of moby's `oci/caps/defaults.go`) less NET_RAW: with
/// it a container could forge frames on the shared bridge (ARP-spoof a neighbour's address).
/// `ping` works without it, through ICMP datagram sockets (`net.ipv4.ping_group_range`, set in
/// every container network namespace by `init.rs`).
pub const DEFAULT_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Largest size of one log file before it is rotated to `console.log.1`.
pub const DEFAULT_LOG_MAX: u64 = 8 << 20;
/// PATH used to find the command when the container's env has none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A mount the monitor sets up inside the container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum MountConfig {
    Bind {
        /// Canonical host path (no symlinks), resolved once at create.
        source: PathBuf,
        destination: String,
        readonly: bool,
        /// What `source` was at create. Every start reopens `source` without following any
        /// symlink ([`open_bind_source`]) and refuses it unless it is still this file.
        /// Absent only in configs written before identities were recorded.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<SourceId>,
    },
    Tmpfs {
        destination: String,
    },
}

/// Top-level directories the runtime mounts itself (proc, sysfs, the minimal /dev). No user
/// mount may land at or under one of them (nor on `/`): it could hide or forge what the kernel
/// reports (masked paths, `/proc/sys`), or add device nodes.
pub const RUNTIME_OWNED_DIRS: &[&str] = &["proc", "sys", "dev"];

/// The identity of a bind source: device and inode number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceId {
    pub dev: u64,
    pub ino: u64,
}

/// Opens the bind source `path` (absolute, canonical) as an `O_PATH` fd without following any
/// symlink on the way (`openat2(RESOLVE_NO_SYMLINKS)`), and returns it with its identity.
/// A source that was swapped for a symlink, or whose path now runs through one, fails here.
pub fn open_bind_source(path: &Path) -> Result<(OwnedFd, SourceId), String> {
    use nix::{
        errno::Errno,
        fcntl::{AT_FDCWD, OFlag, OpenHow, ResolveFlag, openat2},
    };
    if !path.is_absolute() {
        return Err(format!("{} is not an absolute path", path.display()));
    }
    let fd = openat2(
        AT_FDCWD,
        path,
        OpenHow::new()
            .flags(OFlag::O_PATH | OFlag::O_CLOEXEC)
            .resolve(ResolveFlag::RESOLVE_NO_SYMLINKS | ResolveFlag::RESOLVE_NO_MAGICLINKS),
    )
    .map_err(|e| match e {
        Errno::ELOOP => format!(
            "{} is a symbolic link or its path runs through one",
            path.display()
        ),
        e => format!("open {}: {e}", path.display()),
    })?;
    let st = nix::sys::stat::fstat(&fd).map_err(|e| format!("stat {}: {e}", path.display()))?;
    let id = SourceId {
        dev: st.st_dev,
        ino: st.st_ino,
    };
    Ok((fd, id))
}

/// Opens the bind source of a start: [`open_bind_source`], and the file must still be the one
/// recorded at create (`want`). The error names the mount's destination and what changed.
pub fn reopen_bind_source(
    path: &Path,
    want: Option<SourceId>,
    destination: &str,
) -> Result<OwnedFd, String> {
    let refuse = |why: String| {
        format!(
            "bind source {} of {destination} is refused: {why}; the container does not start \
             (put the original back, or re-create the container to bind what is there now)",
            path.display()
        )
    };
    let (fd, id) = open_bind_source(path).map_err(refuse)?;
    if let Some(want) = want
        && want != id
    {
        return Err(refuse(format!(
            "it is no longer the file recorded at create (device {} inode {} then, device {} \
             inode {} now)",
            want.dev, want.ino, id.dev, id.ino
        )));
    }
    Ok(fd)
}

/// When the monitor starts the container again after it exits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "policy", rename_all = "kebab-case")]
pub enum RestartPolicy {
    No,
    /// Restart after a non-zero exit, at most `max` times (0 = unbounded).
    OnFailure {
        max: u32,
    },
    Always,
}

impl RestartPolicy {
    /// Parses `no`, `on-failure`, `on-failure:N` or `always`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "no" | "" => Some(Self::No),
            "always" => Some(Self::Always),
            "on-failure" => Some(Self::OnFailure { max: 0 }),
            _ => s
                .strip_prefix("on-failure:")
                .and_then(|n| n.parse().ok())
                .map(|max| Self::OnFailure { max }),
        }
    }

    /// Whether a container that exited with `code` after `restarts` restarts goes again.
    pub fn should_restart(self, code: i32, restarts: u32) -> bool {
        match self {
            Self::No => false,
            Self::Always => true,
            Self::OnFailure { max } => code != 0 && (max == 0 || restarts < max),
        }
    }
}

/// The container as the monitor builds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShimConfig {
    pub id: String,
    pub name: String,
    /// Read-only lower layers, topmost first.
    pub lower: Vec<PathBuf>,
    /// Command and arguments (never empty).
    pub args: Vec<String>,
    /// `KEY=VALUE`.
    pub env: Vec<String>,
    /// Absolute working directory inside the container.
    pub cwd: String,
    pub uid: u32,
    pub gid: u32,
    pub hostname: String,
    pub mounts: Vec<MountConfig>,
    /// Own network namespace with loopback up (`false`: the host's network).
    pub net_ns: bool,
    /// A prepared network namespace (bridge mode) the init joins instead of a fresh one.
    #[serde(default)]
    pub netns: Option<PathBuf>,
    /// The `cgroup.procs` files the init is written into before it runs anything.
    pub cgroup_procs: Vec<PathBuf>,
    /// Mount the (namespaced) cgroup2 hierarchy read-only at /sys/fs/cgroup.
    pub cgroup2_mount: bool,
    pub restart: RestartPolicy,
    pub log_max: u64,
    /// Capability names kept in bounding/permitted/effective.
    pub caps: Vec<String>,
    /// A user namespace mapping container ids 0..size to host ids host..host+size.
    #[serde(default)]
    pub userns: Option<IdRange>,
}

/// A host id range a user namespace maps container ids `0..size` onto.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdRange {
    pub host: u32,
    pub size: u32,
}

impl IdRange {
    /// Size of a range when none is given (and of `auto` ranges): every 16-bit id.
    pub const DEFAULT_SIZE: u32 = 65536;
    /// Where `auto` ranges are taken from: far above login users and the usual /etc/subuid
    /// ranges (100000+), below systemd-nspawn's pick range (0x70000000+).
    pub const AUTO_START: u32 = 1_000_000_000;
    pub const AUTO_END: u32 = 1_800_000_000;

    /// Parses `HOST[:SIZE]` (the stored form is always `HOST:SIZE`).
    pub fn parse(s: &str) -> Option<Self> {
        let (h, n) = match s.split_once(':') {
            Some((h, n)) => (h, Some(n)),
            None => (s, None),
        };
        let host: u32 = h.parse().ok()?;
        let size: u32 = match n {
            Some(n) => n.parse().ok()?,
            None => Self::DEFAULT_SIZE,
        };
        (host > 0 && size > 0 && u64::from(host) + u64::from(size) <= u64::from(u32::MAX))
            .then_some(Self { host, size })
    }

    pub fn end(self) -> u64 {
        u64::from(self.host) + u64::from(self.size)
    }

    pub fn overlaps(self, other: Self) -> bool {
        u64::from(self.host) < other.end() && u64::from(other.host) < self.end()
    }

    /// The first `auto` range of [`Self::DEFAULT_SIZE`] that overlaps none of `taken`.
    pub fn pick(taken: &[IdRange]) -> Option<Self> {
        let mut host = Self::AUTO_START;
        while u64::from(host) + u64::from(Self::DEFAULT_SIZE) <= u64::from(Self::AUTO_END) {
            let r = Self {
                host,
                size: Self::DEFAULT_SIZE,
            };
            match taken
                .iter()
                .filter(|t| t.overlaps(r))
                .map(|t| t.end())
                .max()
            {
                None => return Some(r),
                // Jump past the blocking range, rounded up to a whole block.
                Some(end) => {
                    let blocks =
                        (end - u64::from(Self::AUTO_START)).div_ceil(u64::from(Self::DEFAULT_SIZE));
                    host = u32::try_from(
                        u64::from(Self::AUTO_START) + blocks * u64::from(Self::DEFAULT_SIZE),
                    )
                    .ok()?;
                }
            }
        }
        None
    }

    /// The `uid_map`/`gid_map` line.
    pub fn map_line(self) -> String {
        format!("0 {} {}\n", self.host, self.size)
    }
}

/// Files of one container's directory.
#[derive(Debug, Clone)]
pub struct ContainerDir(pub PathBuf);

impl ContainerDir {
    pub fn path(&self) -> &Path {
        &self.0
    }
    pub fn config(&self) -> PathBuf {
        self.0.join("config.json")
    }
    pub fn state(&self) -> PathBuf {
        self.0.join("state.json")
    }
    /// Present while a stop was asked for: the monitor does not restart the container.
    pub fn stop_marker(&self) -> PathBuf {
        self.0.join("stopping")
    }
    pub fn log(&self) -> PathBuf {
        self.0.join("console.log")
    }
    pub fn log_rotated(&self) -> PathBuf {
        self.0.join("console.log.1")
    }
    /// The monitor's attach socket ([`super::attach`]).
    pub fn attach_socket(&self) -> PathBuf {
        self.0.join("attach.sock")
    }
    pub fn shim_log(&self) -> PathBuf {
        self.0.join("shim.log")
    }
    pub fn upper(&self) -> PathBuf {
        self.0.join("upper")
    }
    pub fn work(&self) -> PathBuf {
        self.0.join("work")
    }
    pub fn merged(&self) -> PathBuf {
        self.0.join("rootfs")
    }

    pub fn read_config(&self) -> Result<ShimConfig, String> {
        let path = self.config();
        let data = std::fs::read(&path).map_err(|e| format!("read {}: {e}", path.display()))?;
        serde_json::from_slice(&data).map_err(|e| format!("parse {}: {e}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_ranges() {
        assert_eq!(
            IdRange::parse("100000"),
            Some(IdRange {
                host: 100000,
                size: 65536
            })
        );
        assert_eq!(IdRange::parse("5:10").map(|r| r.end()), Some(15));
        for bad in ["0", "0:5", "1:0", "x", "4294967295:2", "-1"] {
            assert_eq!(IdRange::parse(bad), None, "{bad}");
        }
        let a = IdRange { host: 10, size: 10 };
        assert!(a.overlaps(IdRange { host: 19, size: 1 }));
        assert!(!a.overlaps(IdRange { host: 20, size: 5 }));
        assert!(!a.overlaps(IdRange { host: 5, size: 5 }));
        let first = IdRange::pick(&[]).unwrap();
        assert_eq!(first.host, IdRange::AUTO_START);
        let odd = IdRange {
            host: IdRange::AUTO_START + 65536 + 7,
            size: 3,
        };
        let second = IdRange::pick(&[first, odd]).unwrap();
        assert_eq!(second.host, IdRange::AUTO_START + 2 * 65536);
        assert!(!second.overlaps(first) && !second.overlaps(odd));
    }

    #[test]
    fn restart_policies() {
        assert_eq!(RestartPolicy::parse("no"), Some(RestartPolicy::No));
        assert_eq!(
            RestartPolicy::parse("on-failure:3"),
            Some(RestartPolicy::OnFailure { max: 3 })
        );
        assert_eq!(RestartPolicy::parse("on-failure:x"), None);
        assert_eq!(RestartPolicy::parse("sometimes"), None);
        let p = RestartPolicy::OnFailure { max: 2 };
        assert!(p.should_restart(1, 0));
        assert!(p.should_restart(1, 1));
        assert!(!p.should_restart(1, 2));
        assert!(!p.should_restart(0, 0));
        assert!(RestartPolicy::Always.should_restart(0, 100));
    }
}
