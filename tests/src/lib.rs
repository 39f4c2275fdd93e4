//! Support for Corral's integration tests: a real daemon on a free port with its own state
//! directory, socket and cgroup subtree, stopped and cleaned up on drop.

pub mod bench;
pub mod browser;
pub mod containers;
pub mod docker;
pub mod net;
pub mod postgres;
pub mod pty;
pub mod registry;
pub mod rootfs;

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
    extra: Vec<String>,
    env: Vec<(String, String)>,
}

impl Daemon {
    /// Starts a daemon on a free loopback port and waits until `/api/v1/health` answers.
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Like [`Daemon::start`], with extra `corral serve` flags (e.g. `--session-idle-secs 2`).
    pub fn start_with(extra: &[&str]) -> Self {
        Self::start_with_env(extra, &[])
    }

    /// Like [`Daemon::start_with`], with extra environment variables for the daemon (e.g. a
    /// fault-injection switch).
    pub fn start_with_env(extra: &[&str], env: &[(&str, &str)]) -> Self {
        Self::start_on(free_port(), extra, env)
    }

    /// Like [`Daemon::start_with`], the flags made knowing the port it will listen on (for
    /// `--advertise-url`). With `--tls-cert`, readiness is asked over the unix socket.
    pub fn start_with_port(extra: impl FnOnce(u16) -> Vec<String>) -> Self {
        let port = free_port();
        let flags = extra(port);
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        Self::start_on(port, &flags, &[])
    }

    fn start_on(port: u16, extra: &[&str], env: &[(&str, &str)]) -> Self {
        let state = TempDir::new("corral-it");
        let cgroup_root = unique("corral-it");
        let socket = state.path().join("run/corral.sock");
        let mut d = Daemon {
            child: None,
            port,
            socket,
            state,
            cgroup_root,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
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
            .args(&self.extra)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn corral serve");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        // Ready when health answers: the daemon serves only after its start-up work (setup link).
        while !self.healthy() {
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

    fn healthy(&self) -> bool {
        use std::io::{Read, Write};
        if self.extra.iter().any(|a| a == "--tls-cert") {
            return std::os::unix::net::UnixStream::connect(&self.socket).is_ok()
                && self.unix_http("GET", "/api/v1/health", &[], None).status == 200;
        }
        let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        let req = format!(
            "GET /api/v1/health HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n\r\n",
            self.port
        );
        let mut buf = [0u8; 12];
        s.write_all(req.as_bytes()).is_ok()
            && s.read_exact(&mut buf).is_ok()
            && buf.starts_with(b"HTTP/1.1 200")
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

    /// The one-time setup token the daemon wrote at start (while no admin exists).
    pub fn setup_token(&self) -> Option<String> {
        std::fs::read_to_string(self.state.path().join("state/setup-token")).ok()
    }

    /// Runs `corral ARGS` against this daemon: as root over its unix socket (an admin) when
    /// `token` is `None`, else over TCP as the token's bearer; `stdin` is fed in. It runs with
    /// `RUST_BACKTRACE=1`, and a refusal must still be one `error: …` line with no backtrace.
    pub fn cli(&self, token: Option<&str>, args: &[&str], stdin: &str) -> CliOut {
        use std::io::Write;
        let mut cmd = Command::new(corral_bin());
        cmd.env_remove("CORRAL_TOKEN")
            .env_remove("CORRAL_HOST")
            .env("RUST_BACKTRACE", "1");
        match token {
            Some(t) => cmd.arg("--host").arg(self.url()).env("CORRAL_TOKEN", t),
            None => cmd
                .arg("--host")
                .arg(format!("unix://{}", self.socket.display())),
        };
        let mut child = cmd
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run corral");
        let mut input = child.stdin.take().expect("stdin");
        // A command that reads no stdin may exit before the write: that is no failure.
        let _ = input.write_all(stdin.as_bytes());
        drop(input);
        let out = child.wait_with_output().expect("wait for corral");
        let out = CliOut {
            ok: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        };
        if !out.ok {
            assert!(
                out.stderr.starts_with("error") && !out.stderr.contains("stack backtrace"),
                "corral {args:?}: one error line, no backtrace: {}",
                out.stderr
            );
        }
        out
    }

    /// `corral ARGS` as root over the socket; its stdout, or a panic with its stderr.
    pub fn corral(&self, args: &[&str]) -> String {
        let out = self.cli(None, args, "");
        assert!(out.ok, "corral {args:?}: {}", out.stderr);
        out.stdout
    }

    /// Completes the first-run setup (admin [`ADMIN`] / [`ADMIN_PASSWORD`]) if still open and
    /// returns a fresh API token of that admin, for TCP clients.
    pub fn admin_token(&self) -> String {
        if let Some(token) = self.setup_token() {
            let body =
                serde_json::json!({"token": token, "name": ADMIN, "password": ADMIN_PASSWORD});
            let r = self.http(
                "POST",
                "/api/v1/setup",
                &[
                    ("content-type", "application/json"),
                    ("x-corral-client", "test"),
                ],
                Some(&body.to_string()),
            );
            assert_eq!(r.status, 201, "setup: {}", r.body);
        }
        self.token_for(ADMIN)
    }

    /// A client over TCP authenticated as the admin (completes setup if needed).
    pub fn admin_client(&self) -> Client {
        self.tcp_client(Some(self.admin_token()))
    }

    /// Creates `name` with `role` in `teams` (password [`USER_PASSWORD`]) as root over the
    /// unix socket.
    pub fn add_user(&self, name: &str, role: &str, teams: &[&str]) {
        let body = serde_json::json!({"name": name, "role": role, "teams": teams,
            "password": USER_PASSWORD});
        let r = self.unix_http(
            "POST",
            "/api/v1/users",
            &[
                ("content-type", "application/json"),
                ("x-corral-client", "test"),
            ],
            Some(&body.to_string()),
        );
        assert_eq!(r.status, 201, "user {name}: {}", r.body);
    }

    /// A new API token of `user`, created by root over the unix socket.
    pub fn token_for(&self, user: &str) -> String {
        let body = serde_json::json!({"name": unique("it"), "user": user});
        let r = self.unix_http(
            "POST",
            "/api/v1/tokens",
            &[
                ("content-type", "application/json"),
                ("x-corral-client", "test"),
            ],
            Some(&body.to_string()),
        );
        assert_eq!(r.status, 201, "token for {user}: {}", r.body);
        r.json()["token"].as_str().expect("token").to_owned()
    }

    /// One raw HTTP/1.1 request over TCP. `Host` defaults to `127.0.0.1:PORT` unless given.
    pub fn http(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&str>,
    ) -> RawResponse {
        let stream = std::net::TcpStream::connect(("127.0.0.1", self.port)).expect("connect");
        raw_request(
            stream,
            &format!("127.0.0.1:{}", self.port),
            method,
            path,
            headers,
            body.map(str::as_bytes),
        )
    }

    /// One raw request with a byte body (for invalid UTF-8 and the like).
    pub fn http_bytes(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> RawResponse {
        let stream = std::net::TcpStream::connect(("127.0.0.1", self.port)).expect("connect");
        raw_request(
            stream,
            &format!("127.0.0.1:{}", self.port),
            method,
            path,
            headers,
            Some(body),
        )
    }

    /// One raw HTTP/1.1 request over the unix socket (as this process's uid).
    pub fn unix_http(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&str>,
    ) -> RawResponse {
        unix_http(&self.socket, method, path, headers, body)
    }

    /// PID of the running daemon.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether the daemon has exited (e.g. killed itself at a fault-injection point); reaped
    /// then, so [`Daemon::restart`] may follow.
    pub fn exited(&mut self) -> bool {
        let done = self
            .child
            .as_mut()
            .is_none_or(|c| c.try_wait().ok().flatten().is_some());
        if done {
            self.child = None;
        }
        done
    }

    /// SIGKILLs the daemon (a crash) and reaps it.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Changes the value of one of the extra flags for the next [`Daemon::restart`]
    /// (e.g. another `--advertise-url`).
    pub fn set_flag(&mut self, flag: &str, value: &str) {
        let i = self
            .extra
            .iter()
            .position(|a| a == flag)
            .unwrap_or_else(|| panic!("{flag} is not among {:?}", self.extra));
        self.extra[i + 1] = value.to_owned();
    }

    /// Starts the daemon again on the same port, state directory, socket and cgroup root.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "daemon still running");
        self.spawn();
    }

    /// Sends SIGTERM and waits for a clean exit; returns the exit status.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        terminate(&mut self.child.take().expect("daemon running"))
    }
}

/// SIGTERM to a `corral serve` this test started, SIGKILL if it has not exited 15 s later;
/// its exit status.
pub fn terminate(child: &mut std::process::Child) -> std::process::ExitStatus {
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

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.child.is_some() {
            self.stop();
        }
        if std::thread::panicking() {
            // A failed test shows what the daemon said (a 500's cause is only in its log).
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(60).collect();
            eprintln!(
                "--- the last {} lines of the daemon's log ({}) ---",
                tail.len(),
                self.state.path().display()
            );
            for l in tail.iter().rev() {
                eprintln!("{l}");
            }
        }
        // Containers outlive the daemon by design; a test that panicked before removing its
        // containers must not leave them running. Everything in this daemon's own cgroup
        // subtree was started by this test.
        remove_cgroup_subtree(&self.cgroup_root);
    }
}

/// The hierarchies a test's cgroup subtree may live in (v1 controllers, the unified tree).
fn cgroup_hierarchies() -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir("/sys/fs/cgroup") else {
        return Vec::new();
    };
    let mut dirs: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    // A pure v2 host: the mount point itself is the hierarchy.
    dirs.push(PathBuf::from("/sys/fs/cgroup"));
    dirs
}

/// Kills every process in `name`'s subtree, in every hierarchy, and removes the directories.
/// Only ever called with a test's unique subtree name (`corral-it-PID-N`).
pub fn remove_cgroup_subtree(name: &str) {
    assert!(
        name.starts_with("corral-it-"),
        "refusing to clean {name}: not a test subtree"
    );
    for _ in 0..50 {
        let mut pids = Vec::new();
        let mut dirs = Vec::new();
        for h in cgroup_hierarchies() {
            let root = h.join(name);
            if root.is_dir() {
                collect_cgroup(&root, &mut pids, &mut dirs);
                // Frozen tasks (v1 freezer, cgroup.freeze) must be thawed to die.
                let _ = std::fs::write(root.join("freezer.state"), "THAWED");
                let _ = std::fs::write(root.join("cgroup.freeze"), "0");
            }
        }
        if dirs.is_empty() {
            return;
        }
        for pid in &pids {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(*pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        // Deepest first.
        dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
        for d in &dirs {
            let _ = std::fs::remove_dir(d);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Every process in `name`'s cgroup subtree (any hierarchy), e.g. a test daemon's containers.
pub fn subtree_pids(name: &str) -> Vec<i32> {
    let (mut pids, mut dirs) = (Vec::new(), Vec::new());
    for h in cgroup_hierarchies() {
        let root = h.join(name);
        if root.is_dir() {
            collect_cgroup(&root, &mut pids, &mut dirs);
        }
    }
    pids.sort_unstable();
    pids.dedup();
    pids
}

fn collect_cgroup(dir: &Path, pids: &mut Vec<i32>, dirs: &mut Vec<PathBuf>) {
    dirs.push(dir.to_owned());
    if let Ok(procs) = std::fs::read_to_string(dir.join("cgroup.procs")) {
        pids.extend(procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
    }
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                collect_cgroup(&e.path(), pids, dirs);
            }
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

/// What one `corral` run ([`Daemon::cli`]) printed.
pub struct CliOut {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

/// The admin [`Daemon::admin_token`] creates.
pub const ADMIN: &str = "admin";
/// Its password.
pub const ADMIN_PASSWORD: &str = "correct horse battery staple";
/// The password of every user [`Daemon::add_user`] creates.
pub const USER_PASSWORD: &str = "a long enough password";

/// One JSON API request as the bearer of `token` (the body, if any, as `application/json`).
pub fn call(
    d: &Daemon,
    token: &str,
    method: &str,
    path: &str,
    body: Option<serde_json::Value>,
) -> RawResponse {
    let auth = format!("Bearer {token}");
    let body = body.map(|b| b.to_string());
    d.http(
        method,
        path,
        &[
            ("authorization", &auth),
            ("content-type", "application/json"),
        ],
        body.as_deref(),
    )
}
/// A response read by [`Daemon::http`].
#[derive(Debug, Clone)]
pub struct RawResponse {
    pub status: u16,
    /// Lowercase names.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| {
            panic!(
                "status {} body is not json ({e}): {:?}",
                self.status, self.body
            )
        })
    }

    /// The `code` of a JSON error body.
    pub fn code(&self) -> String {
        self.json()["code"].as_str().unwrap_or_default().to_owned()
    }

    /// The value the response sets for the session cookie.
    pub fn session_cookie(&self) -> Option<String> {
        self.headers
            .iter()
            .filter(|(k, _)| k == "set-cookie")
            .filter_map(|(_, v)| v.strip_prefix("corral_session="))
            .map(|v| v.split(';').next().unwrap_or_default().to_owned())
            .next()
    }
}

/// One raw HTTP/1.1 request over the unix socket at `socket` (as this process's uid).
pub fn unix_http(
    socket: &Path,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> RawResponse {
    let stream = std::os::unix::net::UnixStream::connect(socket).expect("connect socket");
    raw_request(
        stream,
        "localhost",
        method,
        path,
        headers,
        body.map(str::as_bytes),
    )
}

fn raw_request<S: std::io::Read + std::io::Write>(
    mut stream: S,
    default_host: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> RawResponse {
    use std::fmt::Write as _;
    let mut head = format!("{method} {path} HTTP/1.1\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        let _ = write!(head, "Host: {default_host}\r\n");
    }
    for (k, v) in headers {
        let _ = write!(head, "{k}: {v}\r\n");
    }
    let body = body.unwrap_or_default();
    if !body.is_empty() || !matches!(method, "GET" | "HEAD") {
        let _ = write!(head, "Content-Length: {}\r\n", body.len());
    }
    head.push_str("Connection: close\r\n\r\n");
    stream.write_all(head.as_bytes()).expect("write request");
    // A server may answer before it read the whole body (a refusal: 400, 413) and close; the
    // rest of the body then meets a closed socket, and the answer is still there to read.
    if let Err(e) = stream.write_all(body) {
        assert!(
            matches!(
                e.kind(),
                std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
            ),
            "write body: {e:?}"
        );
    }
    let mut raw = Vec::new();
    // A server may close early (e.g. 413): keep what was read.
    let _ = stream.read_to_end(&mut raw);
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no response head: {:?}", String::from_utf8_lossy(&raw)));
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut rest = raw[split + 4..].to_vec();
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    if headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"))
    {
        rest = dechunk(&rest);
    }
    RawResponse {
        status,
        headers,
        body: String::from_utf8_lossy(&rest).into_owned(),
    }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(pos) = data.windows(2).position(|w| w == b"\r\n") {
        let size_line = String::from_utf8_lossy(&data[..pos]);
        let size = usize::from_str_radix(size_line.split(';').next().unwrap_or("0").trim(), 16)
            .unwrap_or(0);
        if size == 0 {
            break;
        }
        let start = pos + 2;
        let end = (start + size).min(data.len());
        out.extend_from_slice(&data[start..end]);
        data = &data[(end + 2).min(data.len())..];
    }
    out
}
