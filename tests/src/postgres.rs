//! A PostgreSQL of the test's own (issue 19's shared ledger): Debian's `initdb` + `pg_ctl`
//! on a temporary directory and a free loopback port, run as the `postgres` user (initdb
//! refuses root), with password (SCRAM) authentication for the user `corral`. Stopped and
//! removed on drop.

use std::{
    os::unix::{fs::PermissionsExt, process::CommandExt},
    path::PathBuf,
    process::{Command, Stdio},
};

use crate::{Daemon, TempDir, free_port};

/// The ledger user's password (in `password_file()`).
pub const PASSWORD: &str = "corral-ledger-test";

pub struct Postgres {
    dir: TempDir,
    bin: PathBuf,
    pub port: u16,
    running: bool,
    /// `-c ssl=on …` when started with [`Postgres::start_tls`].
    tls: Option<String>,
}

/// The newest `/usr/lib/postgresql/N/bin` (Debian's layout), else the PATH's.
fn bin_dir() -> PathBuf {
    let mut dirs: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    dirs.sort();
    dirs.pop().map_or_else(PathBuf::new, |(_, b)| b)
}

fn postgres_ids() -> (u32, u32) {
    let user = nix::unistd::User::from_name("postgres")
        .ok()
        .flatten()
        .expect("the postgres user (Debian's postgresql package; cargo xtask test installs it)");
    (user.uid.as_raw(), user.gid.as_raw())
}

impl Postgres {
    /// initdb and start; panics with the server's log when it does not come up.
    pub fn start() -> Self {
        Self::init(None).0
    }

    /// Like [`Postgres::start`], serving TLS with this certificate and key (PEM); returns the
    /// certificate's path too, for `--ledger-ca`.
    pub fn start_tls(cert_pem: &str, key_pem: &str) -> (Self, PathBuf) {
        Self::init(Some((cert_pem, key_pem)))
    }

    fn init(tls: Option<(&str, &str)>) -> (Self, PathBuf) {
        let dir = TempDir::new("corral-pg");
        let (uid, gid) = postgres_ids();
        let own = |p: &std::path::Path| {
            nix::unistd::chown(p, Some(uid.into()), Some(gid.into())).expect("chown");
        };
        own(dir.path());
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700))
            .expect("chmod");
        let pw = dir.path().join("pwfile");
        std::fs::write(&pw, PASSWORD).expect("pwfile");
        own(&pw);
        let cert = dir.path().join("server.crt");
        let tls = tls.map(|(cert_pem, key_pem)| {
            let key = dir.path().join("server.key");
            std::fs::write(&cert, cert_pem).expect("server.crt");
            std::fs::write(&key, key_pem).expect("server.key");
            std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).expect("chmod");
            own(&cert);
            own(&key);
            format!(
                " -c ssl=on -c ssl_cert_file={} -c ssl_key_file={}",
                cert.display(),
                key.display()
            )
        });
        let pg = Postgres {
            bin: bin_dir(),
            port: free_port(),
            dir,
            running: false,
            tls,
        };
        let out = pg
            .command("initdb")
            .arg("-D")
            .arg(pg.data())
            .args([
                "-U",
                "corral",
                "-A",
                "scram-sha-256",
                "--no-sync",
                "-E",
                "UTF8",
            ])
            .arg(format!("--pwfile={}", pw.display()))
            .output()
            .expect("run initdb");
        assert!(
            out.status.success(),
            "initdb: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let mut pg = pg;
        pg.resume();
        (pg, cert)
    }

    fn command(&self, tool: &str) -> Command {
        let (uid, gid) = postgres_ids();
        let mut c = Command::new(self.bin.join(tool));
        c.uid(uid)
            .gid(gid)
            .current_dir(self.dir.path())
            .stdin(Stdio::null());
        c
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Starts the server (again) on the same port and data.
    pub fn resume(&mut self) {
        let out = self
            .command("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .arg("-l")
            .arg(self.dir.path().join("server.log"))
            .arg("-o")
            .arg(format!(
                "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off{}",
                self.port,
                self.dir.path().display(),
                self.tls.as_deref().unwrap_or("")
            ))
            .args(["-w", "-t", "30", "start"])
            .output()
            .expect("run pg_ctl start");
        assert!(
            out.status.success(),
            "pg_ctl start: {}{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        self.running = true;
    }

    /// Stops the server (fast: open connections are closed, as a crash or an outage would).
    pub fn pause(&mut self) {
        let _ = self
            .command("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .args(["-m", "fast", "-w", "stop"])
            .output();
        self.running = false;
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// `--ledger` for a daemon.
    pub fn url(&self) -> String {
        format!(
            "postgres://corral@127.0.0.1:{}/postgres?sslmode=disable",
            self.port
        )
    }

    /// A file holding the password, for `--ledger-password-file` (0600, root's).
    pub fn password_file(&self) -> PathBuf {
        let p = self.dir.path().join("ledger-password");
        if !p.exists() {
            std::fs::write(&p, format!("{PASSWORD}\n")).expect("password file");
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        }
        p
    }

    /// Starts a daemon shipping to this PostgreSQL as `host_id` (the password from
    /// [`Postgres::password_file`]) at `url` (default [`Postgres::url`]), with `extra` flags.
    pub fn daemon(&self, host_id: &str, url: Option<&str>, extra: &[&str]) -> Daemon {
        let mut flags = self.ledger_flags(host_id, url);
        flags.extend(extra.iter().map(|s| s.to_string()));
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        Daemon::start_with(&flags)
    }

    /// Like [`Postgres::daemon`] at the default URL, the extra flags made knowing the port the
    /// daemon will listen on (`--advertise-url`).
    pub fn daemon_on_port(&self, host_id: &str, extra: impl FnOnce(u16) -> Vec<String>) -> Daemon {
        let flags = self.ledger_flags(host_id, None);
        Daemon::start_with_port(|port| flags.into_iter().chain(extra(port)).collect())
    }

    /// `--host-id`, `--ledger` (default [`Postgres::url`]) and the password file.
    fn ledger_flags(&self, host_id: &str, url: Option<&str>) -> Vec<String> {
        let pwf = self.password_file();
        vec![
            "--host-id".into(),
            host_id.into(),
            "--ledger".into(),
            url.map_or_else(|| self.url(), str::to_owned),
            "--ledger-password-file".into(),
            pwf.to_str().expect("utf-8 path").into(),
        ]
    }

    /// A client for the test's own checks.
    pub async fn client(&self) -> tokio_postgres::Client {
        let (client, conn) = tokio_postgres::Config::new()
            .host("127.0.0.1")
            .port(self.port)
            .user("corral")
            .password(PASSWORD)
            .dbname("postgres")
            .connect(tokio_postgres::NoTls)
            .await
            .expect("connect to the test's PostgreSQL");
        tokio::spawn(conn);
        client
    }
}

/// A daemon's shipping to the shared ledger, as `GET /api/v1/host` shows it.
pub fn ledger_state(d: &Daemon) -> Option<wire::fleet::LedgerState> {
    let r = crate::call(d, &d.admin_token(), "GET", "/api/v1/host", None);
    let h: wire::HostInfo = serde_json::from_str(&r.body).expect("host info");
    h.ledger
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if self.running {
            let _ = self
                .command("pg_ctl")
                .arg("-D")
                .arg(self.data())
                .args(["-m", "immediate", "-w", "stop"])
                .output();
        }
    }
}
