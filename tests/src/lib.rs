//! Support for Corral's integration tests: a real daemon on a free port with its own state
//! directory, socket and cgroup subtree, stopped and cleaned up on drop.

pub mod browser;

use std::{
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

use backend::client::{Client, Host};

/// The `corral` binary built next to this test binary (`target/<profile>/corral`), or `$CORRAL_BIN`.
pub fn corral_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("CORRAL_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("current_exe");
    // target/<profile>/deps/it-HASH -> target/<profile>/corral
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .expect("target dir")
        .join("corral");
    assert!(
        bin.is_file(),
        "{} is missing: build it with `cargo build -p backend` (cargo xtask test does)",
        bin.display()
    );
    bin
}

/// A name unique to this test process and call, for cgroups, dirs and containers.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A temporary directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(prefix: &str) -> Self {
        let p = std::env::temp_dir().join(unique(prefix));
        std::fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running `corral serve`, killed (SIGTERM, then SIGKILL) on drop.
pub struct Daemon {
    child: Option<Child>,
    pub port: u16,
    pub socket: PathBuf,
    pub state: TempDir,
    pub cgroup_root: String,
}

impl Daemon {
    /// Starts a daemon on a free loopback port and waits until `/api/v1/health` answers.
    pub fn start() -> Self {
        let state = TempDir::new("corral-it");
        let cgroup_root = unique("corral-it");
        let port = free_port();
        let socket = state.path().join("run/corral.sock");
        let mut d = Daemon {
            child: None,
            port,
            socket,
            state,
            cgroup_root,
        };
        d.spawn();
        d
    }

    fn spawn(&mut self) {
        let log = std::fs::File::create(self.state.path().join("daemon.log")).expect("daemon log");
        let child = Command::new(corral_bin())
            .arg("serve")
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", self.port))
            .arg("--socket")
            .arg(&self.socket)
            .arg("--state-dir")
            .arg(self.state.path().join("state"))
            .arg("--cgroup-root")
            .arg(&self.cgroup_root)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn corral serve");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("daemon exited with {status}: {}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "daemon did not start: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The daemon's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.state.path().join("daemon.log")).unwrap_or_default()
    }

    /// Base URL of the TCP listener.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A client over the unix socket (root: admin).
    pub fn unix_client(&self) -> Client {
        Client::new(Host::Unix(self.socket.clone()), None)
    }

    /// A client over TCP.
    pub fn tcp_client(&self, token: Option<String>) -> Client {
        Client::new(Host::Tcp(format!("127.0.0.1:{}", self.port)), token)
    }

    /// PID of the running daemon.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILLs the daemon (a crash) and reaps it.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the daemon again on the same port, state directory, socket and cgroup root.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "daemon still running");
        self.spawn();
    }

    /// Sends SIGTERM and waits for a clean exit; returns the exit status.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("daemon running");
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = child.try_wait().expect("wait daemon") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                return child.wait().expect("wait daemon");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.child.is_some() {
            self.stop();
        }
    }
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind :0")
        .local_addr()
        .expect("local addr")
        .port()
}
