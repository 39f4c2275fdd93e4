//! A headless Debian Chromium driven over WebDriver (chromedriver), for the browser tests.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant, SystemTime},
};

use std::os::unix::process::CommandExt;

use fantoccini::{Client, ClientBuilder, Locator, elements::Element};

use crate::{TempDir, free_port};

/// Where screenshots are written (test artifacts).
pub fn artifacts_dir() -> PathBuf {
    let dir = std::env::var_os("CORRAL_ARTIFACTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let exe = std::env::current_exe().expect("current_exe");
            exe.ancestors()
                .nth(3)
                .expect("target dir")
                .join("artifacts")
        });
    std::fs::create_dir_all(&dir).expect("create artifacts dir");
    dir
}

/// Newest modification time of the files under `dir` (recursively).
fn newest(dir: &Path) -> Option<SystemTime> {
    let mut best = None;
    for e in std::fs::read_dir(dir).ok()?.flatten() {
        let t = if e.file_type().ok()?.is_dir() {
            newest(&e.path())
        } else {
            e.metadata().and_then(|m| m.modified()).ok()
        };
        best = best.max(t);
    }
    best
}

/// Fails when the `corral` binary the tests start is older than the code or the dashboard it
/// should contain: `cargo test -p tests` does not rebuild another package's binary, and a stale
/// daemon makes the browser tests check yesterday's UI and API (`cargo build -p backend` after
/// `cargo xtask ui`; `cargo xtask test` does both). Skipped when `CORRAL_BIN` names the binary.
fn assert_fresh_daemon() {
    if std::env::var_os("CORRAL_BIN").is_some() {
        return;
    }
    let bin = crate::corral_bin();
    let Ok(built) = std::fs::metadata(&bin).and_then(|m| m.modified()) else {
        return;
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let ui = std::env::var_os("CORRAL_UI_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target/ui"));
    for dir in [
        root.join("backend/src"),
        root.join("wire/src"),
        root.join("migrations"),
        ui,
    ] {
        if let Some(t) = newest(&dir)
            && t > built
        {
            panic!(
                "{} is older than {}: run `cargo build -p backend` first",
                bin.display(),
                dir.display()
            );
        }
    }
}

/// Chromium + chromedriver, both ended on drop.
pub struct Browser {
    pub client: Client,
    driver: Child,
    _profile: TempDir,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium session. Returns `None` (the test is skipped)
    /// when chromedriver is missing, unless `CORRAL_REQUIRE_BROWSER=1` (set by `cargo xtask test`).
    pub async fn start() -> Option<Browser> {
        assert_fresh_daemon();
        let driver_bin = ["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.is_file());
        let Some(driver_bin) = driver_bin else {
            if std::env::var("CORRAL_REQUIRE_BROWSER").as_deref() == Ok("1") {
                panic!("chromedriver is not installed (apt-get install chromium chromium-driver)");
            }
            eprintln!(
                "skipping browser test: chromedriver not installed (cargo xtask test installs it)"
            );
            return None;
        };
        let port = free_port();
        // Its own process group, so Chromium (started by chromedriver) can be ended with it.
        let driver = Command::new(driver_bin)
            .process_group(0)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let profile = TempDir::new("corral-it-chromium");
        let args = [
            "--headless=new".to_owned(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-quic".into(),
            "--no-first-run".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--disable-dev-shm-usage".into(),
            "--window-size=1280,900".into(),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        let caps = serde_json::json!({
            "browserName": "chrome",
            "goog:chromeOptions": { "binary": "/usr/bin/chromium", "args": args },
        });
        let caps = match caps {
            serde_json::Value::Object(m) => m,
            _ => unreachable!("a json object"),
        };
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        let client = loop {
            match ClientBuilder::rustls()
                .expect("rustls")
                .capabilities(caps.clone())
                .connect(&url)
                .await
            {
                Ok(c) => break c,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("cannot start a chromium session: {e}"),
            }
        };
        Some(Browser {
            client,
            driver,
            _profile: profile,
        })
    }

    /// Waits (up to 20 s) for an element the WASM app renders.
    pub async fn wait_for(&self, css: &str) -> Element {
        match self
            .client
            .wait()
            .at_most(Duration::from_secs(20))
            .for_element(Locator::Css(css))
            .await
        {
            Ok(e) => e,
            Err(e) => {
                let html = self.client.source().await.unwrap_or_default();
                panic!("element {css} never appeared: {e}\n{html}")
            }
        }
    }

    /// Like [`Browser::wait_for`], then waits until the element's text contains `text`.
    pub async fn wait_text(&self, css: &str, text: &str) -> Element {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let el = self.wait_for(css).await;
            let now = el.text().await.unwrap_or_default();
            if now.contains(text) {
                return el;
            }
            assert!(
                Instant::now() < deadline,
                "{css} never showed {text:?} (last: {now:?})"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Waits (up to `secs`) until `check` holds for the value of a JS expression.
    pub async fn wait_js(
        &self,
        expr: &str,
        secs: u64,
        check: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let v = self
                .client
                .execute(&format!("return {expr};"), vec![])
                .await
                .unwrap_or(serde_json::Value::Null);
            if check(&v) {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "{expr} never satisfied the check (last: {v})"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Types into the input matching `css` (after clearing it).
    pub async fn fill(&self, css: &str, text: &str) {
        let el = self.wait_for(css).await;
        el.clear().await.expect("clear input");
        el.send_keys(text).await.expect("type into input");
    }

    /// Clicks the element matching `css`. (Polled data updates rows and cells in place, so an
    /// element found stays the element clicked.)
    pub async fn click(&self, css: &str) {
        self.wait_for(css)
            .await
            .click()
            .await
            .unwrap_or_else(|e| panic!("click {css}: {e}"));
    }

    /// Signs in on the login page as `user` and waits for the signed-in side bar.
    pub async fn sign_in(&self, base: &str, user: &str, password: &str) {
        self.open(base, "/login").await;
        self.fill("#f-name", user).await;
        self.fill("#f-password", password).await;
        self.click("[data-testid=sign-in]").await;
        self.wait_for("[data-testid=whoami]").await;
    }

    /// Opens `base` + `path` (a root-relative URL, as the app uses).
    pub async fn open(&self, base: &str, path: &str) {
        self.client
            .goto(&format!("{base}{path}"))
            .await
            .unwrap_or_else(|e| panic!("open {path}: {e}"));
    }

    /// Milliseconds from navigation start to the app's first render (the `corral-first-render`
    /// performance mark the app sets right after mounting).
    pub async fn first_render_ms(&self) -> f64 {
        let v = self
            .wait_js(
                "(performance.getEntriesByName('corral-first-render')[0] || {}).startTime",
                20,
                |v| v.is_number(),
            )
            .await;
        v.as_f64().unwrap_or(f64::NAN)
    }

    /// Saves a PNG screenshot under the artifacts dir; returns its path.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let png = self.client.screenshot().await.expect("screenshot");
        let path = artifacts_dir().join(format!("{name}.png"));
        std::fs::write(&path, png).expect("write screenshot");
        path
    }

    /// Ends the session and chromedriver.
    pub async fn close(self) {
        let _ = self.client.clone().close().await;
        // Drop ends chromedriver and whatever Chromium processes are left.
    }

    /// Ends chromedriver's process group and any Chromium process using this test's profile
    /// (Chromium may leave the group); both were started by this test.
    fn end_processes(&mut self) {
        let pgid = nix::unistd::Pid::from_raw(-(self.driver.id() as i32));
        let _ = nix::sys::signal::kill(pgid, nix::sys::signal::Signal::SIGKILL);
        let _ = self.driver.wait();
        let marker = format!("--user-data-dir={}", self._profile.path().display());
        for _ in 0..20 {
            let mut found = false;
            for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
                let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
                    continue;
                };
                let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
                if String::from_utf8_lossy(&cmdline)
                    .split('\0')
                    .any(|a| a == marker)
                {
                    found = true;
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
            }
            if !found {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        self.end_processes();
    }
}
