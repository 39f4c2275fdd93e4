//! The docker-like commands with no other test of their own, through the real `corral` binary
//! against a real daemon: `create`/`start` (with `--label` and `--stop-timeout`), `ps -q`,
//! `--format` and `--filter`, `history`, `events`, `network`, `rates`, `user update` and
//! `passwd`. A refusal is one `error: …` line naming the flag, never a backtrace.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::{
    io::BufRead,
    process::{Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use tests::{
    Daemon, call,
    containers::Reaper,
    net::{NetGuard, bridged_daemon},
    rootfs::Rootfs,
};

/// `corral ARGS` that must fail; its stderr.
fn refused(d: &Daemon, token: Option<&str>, args: &[&str], stdin: &str) -> String {
    let out = d.cli(token, args, stdin);
    assert!(!out.ok, "corral {args:?} should fail: {}", out.stdout);
    out.stderr
}

fn inspect(d: &Daemon, name: &str) -> Value {
    serde_json::from_str(&d.corral(&["inspect", name])).unwrap()
}

#[test]
fn cli_create_then_start_with_labels_and_stop_timeout() {
    let d = Daemon::start();
    let _reaper = Reaper::new(&d);
    let rootfs = Rootfs::new();
    let root = rootfs.path().display().to_string();
    let name = tests::unique("created");
    let out = d.corral(&[
        "create",
        "--name",
        &name,
        "-l",
        "tier=web",
        "--label",
        "owner",
        "--stop-timeout",
        "3",
        "--rootfs",
        &root,
        "sleep",
        "100",
    ]);
    assert_eq!(out, format!("{name}\n"));
    let c = inspect(&d, &name);
    assert_eq!(c["status"], "created", "{c}");
    assert_eq!(c["spec"]["labels"], json!({"tier": "web", "owner": ""}));
    assert_eq!(c["spec"]["stop_timeout"], 3);
    assert!(c.get("pid").is_none(), "not started: {c}");

    assert_eq!(d.corral(&["start", &name]), format!("{name}\n"));
    let c = inspect(&d, &name);
    assert_eq!(c["status"], "running", "{c}");
    assert!(c["pid"].as_i64().unwrap() > 0);

    // Refusals name the flag, and create nothing.
    let err = refused(
        &d,
        None,
        &[
            "create",
            "--stop-timeout",
            "7200",
            "--rootfs",
            &root,
            "true",
        ],
        "",
    );
    assert!(
        err.contains("--stop-timeout: 7200 must be at most 3600"),
        "{err}"
    );
    let err = refused(
        &d,
        None,
        &["create", "-l", "=x", "--rootfs", &root, "true"],
        "",
    );
    assert!(err.contains("--label"), "{err}");
    let err = refused(
        &d,
        None,
        &["create", "--cpus", "0", "--rootfs", &root, "true"],
        "",
    );
    assert!(err.contains("--cpus: "), "{err}");
    assert_eq!(d.corral(&["ps", "-aq"]).lines().count(), 1);
    let err = refused(&d, None, &["start", "no-such-container"], "");
    assert!(err.contains("no-such-container"), "{err}");
    d.corral(&["rm", "-f", &name]);

    // start -a streams this run's output only and exits with the container's code.
    let job = tests::unique("job");
    d.corral(&[
        "create",
        "--name",
        &job,
        "--rootfs",
        &root,
        "sh",
        "-c",
        "echo run; exit 3",
    ]);
    for _ in 0..2 {
        let out = Command::new(tests::corral_bin())
            .arg("--host")
            .arg(format!("unix://{}", d.socket.display()))
            .args(["start", "-a", &job])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(String::from_utf8_lossy(&out.stdout), "run\n", "{err}");
        assert_eq!(
            out.status.code(),
            Some(3),
            "the container's code is ours: {err}"
        );
    }
    assert_eq!(d.corral(&["logs", &job]), "run\nrun\n");
    d.corral(&["rm", &job]);
}

/// `corral timeline` lists the container's changes with their ids, limits old → new; the id is
/// what `corral update --undo --to` takes.
#[test]
fn cli_timeline_lists_changes_for_undo() {
    let d = Daemon::start();
    let _reaper = Reaper::new(&d);
    let rootfs = Rootfs::new();
    let root = rootfs.path().display().to_string();
    let name = tests::unique("tl");
    d.corral(&[
        "create", "--name", &name, "--cpus", "0.5", "--rootfs", &root, "sleep", "100",
    ]);
    d.corral(&["update", &name, "--pids-limit", "77", "--cpus", "max"]);
    d.corral(&["update", &name, "--memory", "64M"]);
    let out = d.corral(&["timeline", &name]);
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].trim_start().starts_with("ID") && lines[0].contains("CHANGE"),
        "{out}"
    );
    assert!(
        lines[1].contains("container.create") && lines[1].contains("root"),
        "{out}"
    );
    let first = lines
        .iter()
        .find(|l| {
            l.contains("container.update")
                && l.contains("cpus 0.5 → max, pids_max ")
                && l.ends_with(" → 77")
        })
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        lines.last().unwrap().contains("memory_max max → 67108864"),
        "{out}"
    );
    let id = first.split_whitespace().next().unwrap();
    let l: Value =
        serde_json::from_str(&d.corral(&["update", &name, "--undo", "--to", id])).unwrap();
    assert_eq!(l["cpus"], 0.5, "the limits before that change: {l}");
    assert_ne!(l["pids_max"], 77, "{l}");
    assert!(l.get("memory_max").is_none(), "{l}");
    let rows: Value = serde_json::from_str(&d.corral(&["timeline", &name, "--json"])).unwrap();
    assert_eq!(
        rows.as_array().unwrap().last().unwrap()["action"],
        "container.undo"
    );
    let err = refused(&d, None, &["timeline", "ghost"], "");
    assert!(err.contains("ghost"), "{err}");
    d.corral(&["rm", "-f", &name]);
}

#[test]
fn cli_ps_quiet_format_and_filter() {
    let d = Daemon::start();
    let _reaper = Reaper::new(&d);
    let rootfs = Rootfs::new();
    let root = rootfs.path().display().to_string();
    let web = tests::unique("web");
    let db = tests::unique("db");
    d.corral(&[
        "run",
        "-d",
        "--name",
        &web,
        "-l",
        "tier=front",
        "--rootfs",
        &root,
        "sleep",
        "100",
    ]);
    d.corral(&[
        "create",
        "--name",
        &db,
        "-l",
        "tier=back",
        "-l",
        "owner=ann",
        "--rootfs",
        &root,
        "sleep",
        "100",
    ]);
    let web_id = inspect(&d, &web)["id"].as_str().unwrap().to_owned();
    let db_id = inspect(&d, &db)["id"].as_str().unwrap().to_owned();

    // -q: ids only, the running one; -a adds the created one.
    assert_eq!(d.corral(&["ps", "-q"]), format!("{web_id}\n"));
    let all = d.corral(&["ps", "-a", "-q"]);
    let mut ids: Vec<&str> = all.lines().collect();
    ids.sort();
    let mut want = vec![web_id.as_str(), db_id.as_str()];
    want.sort();
    assert_eq!(ids, want);

    // A Go template, docker's fields; `table` adds headers and aligns columns.
    let out = d.corral(&[
        "ps",
        "-a",
        "--format",
        "{{.Names}}|{{.State}}|{{.Label \"tier\"}}|{{.Team}}|{{.Command}}",
    ]);
    let mut lines: Vec<&str> = out.lines().collect();
    lines.sort();
    let mut want = vec![
        format!("{web}|running|front|default|\"sleep 100\""),
        format!("{db}|created|back|default|\"sleep 100\""),
    ];
    want.sort();
    assert_eq!(lines, want, "{out}");
    let out = d.corral(&["ps", "--format", "table {{.ID}}\\t{{.Name}}\\t{{.Status}}"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(lines[0].starts_with("CONTAINER ID"), "{out}");
    assert!(
        lines[0].contains("NAMES") && lines[0].contains("STATUS"),
        "{out}"
    );
    assert!(lines[1].starts_with(&web_id), "{out}");
    assert!(lines[1].contains(" Up "), "docker's status: {out}");
    assert_eq!(
        lines[0].find("NAMES"),
        lines[1].find(&web),
        "aligned columns: {out}"
    );
    let out = d.corral(&[
        "ps",
        "-a",
        "--format",
        "{{json .}}",
        "--filter",
        "label=owner=ann",
    ]);
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["Names"], db.as_str());
    assert_eq!(v["ID"], db_id.as_str());
    assert_eq!(v["Labels"], "owner=ann,tier=back");
    assert_eq!(v["Status"], "Created");

    // Filters: label, name, status (which implies -a).
    assert_eq!(
        d.corral(&["ps", "-q", "--filter", "status=created"]),
        format!("{db_id}\n")
    );
    assert_eq!(
        d.corral(&[
            "ps",
            "-aq",
            "-f",
            "label=tier",
            "-f",
            &format!("name={web}")
        ]),
        format!("{web_id}\n")
    );
    assert_eq!(d.corral(&["ps", "-aq", "-f", "label=nope"]), "");

    // An unknown field is refused naming --format and what it allows.
    let err = refused(&d, None, &["ps", "--format", "{{.Nope}}"], "");
    assert!(
        err.starts_with("error: --format: unknown field {{.Nope}}"),
        "{err}"
    );
    assert!(
        err.contains(".Names") && err.contains(".Label \"KEY\""),
        "{err}"
    );
    let err = refused(&d, None, &["ps", "--filter", "colour=red"], "");
    assert!(err.starts_with("error: --filter: "), "{err}");

    // The ids -q prints are what every command takes (scripts: `corral rm -f $(corral ps -aq)`).
    let mut rm = vec!["rm", "-f"];
    rm.extend(ids.iter().copied());
    d.corral(&rm);
    assert_eq!(d.corral(&["ps", "-aq"]), "");
}

#[test]
fn cli_history_prints_rows() {
    let d = Daemon::start_with(&["--sample-interval", "1"]);
    let _reaper = Reaper::new(&d);
    let rootfs = Rootfs::new();
    let root = rootfs.path().display().to_string();
    let name = tests::unique("hist");
    d.corral(&[
        "run", "-d", "--name", &name, "--rootfs", &root, "sleep", "100",
    ]);
    // A few samples.
    let deadline = Instant::now() + Duration::from_secs(20);
    let h = loop {
        let out = d.corral(&["history", &name, "--since", "5m", "--step", "1s", "--json"]);
        let h: Value = serde_json::from_str(&out).unwrap();
        if h["points"].as_array().unwrap().len() >= 2 {
            break h;
        }
        assert!(Instant::now() < deadline, "no history points: {out}");
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(h["tier"], "raw");
    assert_eq!(h["step_secs"], 1);
    let out = d.corral(&["history", &name, "--since", "5m", "--step", "1s"]);
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with(&name) && lines[0].contains("raw tier"),
        "{out}"
    );
    assert!(
        lines[1].starts_with("TIME (UTC)") && lines[1].contains("CORES"),
        "{out}"
    );
    let rows: Vec<&str> = lines[2..]
        .iter()
        .copied()
        .filter(|l| l.starts_with("20"))
        .collect();
    assert!(rows.len() >= 2, "{out}");
    // A sleeping container: a handful of KiB of memory at most, one process.
    assert!(rows.iter().any(|r| r.contains("B ")), "{out}");
    let err = refused(&d, None, &["history", &name, "--since", "soon"], "");
    assert!(err.contains("--since: invalid range \"soon\""), "{err}");
    let err = refused(&d, None, &["history", "ghost"], "");
    assert!(err.contains("ghost"), "{err}");
    d.corral(&["rm", "-f", &name]);
}

#[test]
fn cli_events_prints_a_line_when_a_container_starts() {
    let d = Daemon::start_with(&["--sample-interval", "1"]);
    let _reaper = Reaper::new(&d);
    let rootfs = Rootfs::new();
    let root = rootfs.path().display().to_string();
    let name = tests::unique("ev");
    let mut child = Command::new(tests::corral_bin())
        .arg("--host")
        .arg(format!("unix://{}", d.socket.display()))
        .args(["events", "--container", &name])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // Let the stream open (a new stream starts at the newest event), then start one.
    std::thread::sleep(Duration::from_millis(1500));
    d.corral(&[
        "run", "-d", "--name", &name, "--rootfs", &root, "sleep", "100",
    ]);
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    while !seen
        .iter()
        .any(|l: &String| l.contains(&format!("container started {name} ")))
    {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(l) => seen.push(l),
            Err(_) => panic!("no started line within 15 s; got {seen:?}"),
        }
    }
    d.corral(&["stop", "-t", "1", &name]);
    while !seen.iter().any(|l| {
        l.contains(&format!("container stopped {name} "))
            || l.contains(&format!("container died {name} "))
    }) {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(l) => seen.push(l),
            Err(_) => panic!("no stop line within 15 s; got {seen:?}"),
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let created = seen
        .iter()
        .find(|l| l.contains(&format!("container created {name} ")))
        .unwrap_or_else(|| panic!("{seen:?}"));
    assert!(
        created.contains("team=default") && created.contains("by=root"),
        "{created}"
    );
    // The stats flood is skipped without --stats (ticks of 1 s passed meanwhile).
    assert!(!seen.iter().any(|l| l.contains(" stats ")), "{seen:?}");
    d.corral(&["rm", "-f", &name]);
}

#[test]
fn cli_network_shows_the_bridge_and_addresses() {
    let (d, bridge, table) = bridged_daemon(false, &[]);
    let _net = NetGuard::new(&d, &bridge, &table);
    let _reaper = Reaper::new(&d);
    let rootfs = Rootfs::new();
    let root = rootfs.path().display().to_string();
    let out = d.corral(&["network"]);
    assert!(out.starts_with("NAME "), "{out}");
    assert!(
        out.contains(&format!("\n{bridge} ")) && out.contains(" bridge "),
        "{out}"
    );
    assert!(out.contains("\nhost ") && out.contains("\nnone "), "{out}");
    let name = tests::unique("net");
    let port = tests::free_port();
    d.corral(&[
        "run",
        "-d",
        "--name",
        &name,
        "-p",
        &format!("127.0.0.1:{port}:80"),
        "--rootfs",
        &root,
        "sleep",
        "100",
    ]);
    let c = inspect(&d, &name);
    let ip = c["network"]["ip_address"].as_str().unwrap().to_owned();
    let info: Value =
        serde_json::from_str(&call(&d, &d.admin_token(), "GET", "/api/v1/network", None).body)
            .unwrap();
    let subnet = info["subnet"].as_str().unwrap().to_owned();
    let out = d.corral(&["network", "ls"]);
    assert!(out.contains(&subnet), "{out}");
    let out = d.corral(&["network", "inspect"]);
    assert!(out.contains(&format!("Bridge:    {bridge}\n")), "{out}");
    assert!(out.contains(&format!("Subnet:    {subnet}\n")), "{out}");
    let row = out
        .lines()
        .find(|l| l.starts_with(&name))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(row.contains(&format!("{ip}/24")), "{row}");
    assert!(row.contains(&format!("127.0.0.1:{port}->80/tcp")), "{row}");
    let v: Value =
        serde_json::from_str(&d.corral(&["network", "inspect", &bridge, "--json"])).unwrap();
    assert_eq!(v["bridge"]["bridge"], bridge.as_str());
    assert_eq!(v["containers"][0]["name"], name.as_str());
    assert_eq!(v["containers"][0]["network"]["ip_address"], ip.as_str());
    let none = d.corral(&["network", "inspect", "none"]);
    assert!(!none.contains(&name), "{none}");
    let err = refused(&d, None, &["network", "inspect", "overlay"], "");
    assert!(err.contains("no network \"overlay\""), "{err}");
    d.corral(&["rm", "-f", &name]);
}

#[test]
fn cli_rates_set_with_an_effective_date_then_show() {
    let d = Daemon::start();
    let admin = d.admin_token();
    let out = d.corral(&["rates"]);
    assert!(out.starts_with("the rate card is unset"), "{out}");
    let err = refused(&d, None, &["rates", "set", "--io-gib", "1"], "");
    assert!(
        err.contains("--currency: the first rate card needs one"),
        "{err}"
    );
    let now = backend::metering::sampler::wall_ms() / 1000;
    let day = |n: i64| (now / 86_400 + n) * 86_400;
    let date = |t: i64| backend::metering::calendar::format_time(t)[..10].to_owned();
    let out = d.corral(&[
        "rates",
        "set",
        "--currency",
        "EUR",
        "--cpu-core-hour-used",
        "0.05",
        "--mem-gib-hour-used",
        "0.01",
        "--effective",
        &date(day(2)),
    ]);
    let from = backend::metering::calendar::format_time(day(2));
    assert!(
        out.starts_with(&format!("rate card version from {from} saved")),
        "{out}"
    );
    // A second version copies what it does not name from the latest one.
    d.corral(&[
        "rates",
        "set",
        "--io-gib",
        "0.2",
        "--effective-from",
        &date(day(3)),
    ]);
    let out = d.corral(&["rates"]);
    assert!(out.contains("in force now: no version yet"), "{out}");
    assert!(out.contains(&from) && out.contains("EUR"), "{out}");
    let saved = |v: &Value| -> Vec<Value> {
        v["versions"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c.get("effective_from").is_some())
            .cloned()
            .collect()
    };
    let v: Value = serde_json::from_str(&d.corral(&["rates", "--json"])).unwrap();
    let versions = saved(&v);
    assert_eq!(versions.len(), 2, "{v}");
    assert_eq!(versions[0]["effective_from"], from.as_str());
    assert_eq!(versions[0]["io_gib"], 0.0);
    assert_eq!(versions[1]["cpu_core_hour_used"], 0.05);
    assert_eq!(versions[1]["mem_gib_hour_used"], 0.01);
    assert_eq!(versions[1]["io_gib"], 0.2);
    assert_eq!(versions[1]["currency"], "EUR");

    // Refusals name the flag and add nothing.
    let err = refused(
        &d,
        None,
        &["rates", "set", "--io-gib", "1", "--effective", "2001-01-01"],
        "",
    );
    assert!(err.contains("--effective: "), "{err}");
    let err = refused(
        &d,
        None,
        &["rates", "set", "--cpu-core-hour-used", "2000000"],
        "",
    );
    assert!(err.contains("--cpu-core-hour-used: "), "{err}");
    let err = refused(&d, None, &["rates", "set", "--currency", "USD"], "");
    assert!(err.contains("--currency: "), "{err}");
    // Viewers read the card, only admins set it.
    let r = call(
        &d,
        &admin,
        "POST",
        "/api/v1/users",
        Some(json!({"name": "vic", "role": "viewer", "password": "vic-password-1"})),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let vic = d.token_for("vic");
    assert!(d.cli(Some(&vic), &["rates"], "").ok);
    let err = refused(&d, Some(&vic), &["rates", "set", "--io-gib", "9"], "");
    assert!(err.contains("admin"), "{err}");
    let v: Value = serde_json::from_str(&d.corral(&["rates", "--json"])).unwrap();
    assert_eq!(saved(&v).len(), 2, "{v}");
}

#[test]
fn cli_user_update_changes_role_and_teams() {
    let d = Daemon::start();
    let admin = d.admin_token();
    for t in ["red", "blue"] {
        d.corral(&["team", "add", t]);
    }
    // The team's description (also an operator's to change), beside its ceilings.
    assert_eq!(
        d.corral(&["team", "update", "red", "--description", "the red one"]),
        "updated team red: the red one\n"
    );
    assert!(d.corral(&["team", "ls"]).contains("the red one"));
    let err = refused(
        &d,
        None,
        &["team", "update", "red", "--description", "bad\u{7}"],
        "",
    );
    assert!(err.contains("--description: "), "{err}");
    let r = call(
        &d,
        &admin,
        "POST",
        "/api/v1/users",
        Some(
            json!({"name": "bob", "role": "viewer", "teams": ["red"], "password": "bob-password-1"}),
        ),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let out = d.corral(&[
        "user", "update", "bob", "--role", "operator", "--teams", "red,blue",
    ]);
    assert_eq!(out, "updated bob (operator) teams: blue,red\n");
    let u = call(&d, &admin, "GET", "/api/v1/users/bob", None).json();
    assert_eq!(u["role"], "operator");
    assert_eq!(u["teams"], json!(["blue", "red"]));
    assert_eq!(
        d.corral(&["user", "update", "bob", "--teams", ""]),
        "updated bob (operator) teams: \n"
    );
    // Refusals: a team that does not exist (named by flag), an unknown role, nothing to change,
    // and a non-admin — who changes nothing.
    let err = refused(&d, None, &["user", "update", "bob", "--teams", "green"], "");
    assert!(err.contains("no such team \"green\""), "{err}");
    let err = refused(&d, None, &["user", "update", "bob", "--role", "boss"], "");
    assert!(
        err.contains("--role") && err.contains("admin, operator or viewer"),
        "{err}"
    );
    let err = refused(&d, None, &["user", "update", "bob"], "");
    assert!(err.contains("--role and/or --teams"), "{err}");
    let bob = d.token_for("bob");
    let err = refused(
        &d,
        Some(&bob),
        &["user", "update", "bob", "--role", "admin"],
        "",
    );
    assert!(err.contains("admin"), "{err}");
    let u = call(&d, &admin, "GET", "/api/v1/users/bob", None).json();
    assert_eq!(u["role"], "operator", "unchanged: {u}");
    let audit = d.corral(&["audit", "--action", "user.update", "--json"]);
    assert!(audit.lines().count() >= 2, "both changes audited: {audit}");
}

#[test]
fn cli_passwd_changes_ones_own_password() {
    let d = Daemon::start();
    let admin = d.admin_token();
    let r = call(
        &d,
        &admin,
        "POST",
        "/api/v1/users",
        Some(json!({"name": "carol", "role": "operator", "password": "old-password-1"})),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let login = |p: &str| {
        let body = json!({"name": "carol", "password": p}).to_string();
        d.http(
            "POST",
            "/api/v1/login",
            &[
                ("content-type", "application/json"),
                ("x-corral-client", "test"),
            ],
            Some(&body),
        )
    };
    let session = login("old-password-1").session_cookie().unwrap();
    let token = d.token_for("carol");
    let me_with_cookie = || {
        d.http(
            "GET",
            "/api/v1/me",
            &[("cookie", &format!("corral_session={session}"))],
            None,
        )
        .status
    };
    assert_eq!(me_with_cookie(), 200);

    // A wrong current password: refused, nothing changed.
    let err = refused(
        &d,
        Some(&token),
        &["passwd", "--password-stdin"],
        "not-my-password\nnew-password-2\n",
    );
    assert!(
        err.contains("the current password is wrong; nothing changed"),
        "{err}"
    );
    assert_eq!(login("new-password-2").status, 401);
    assert_eq!(me_with_cookie(), 200, "the session lives on");
    // A too short new one names it.
    let err = refused(
        &d,
        Some(&token),
        &["passwd", "--password-stdin"],
        "old-password-1\nshort\n",
    );
    assert!(err.contains("new password: "), "{err}");

    let out = d.cli(
        Some(&token),
        &["passwd", "--password-stdin"],
        "old-password-1\nnew-password-2\n",
    );
    assert!(out.ok, "{}", out.stderr);
    assert!(
        out.stdout.starts_with("password of carol changed"),
        "{}",
        out.stdout
    );
    assert_eq!(login("new-password-2").status, 200);
    assert_eq!(login("old-password-1").status, 401);
    assert_eq!(me_with_cookie(), 401, "the other session ended");
    assert_eq!(
        call(&d, &token, "GET", "/api/v1/me", None).status,
        200,
        "API tokens stay"
    );

    // Root over the socket has no password: it names a user, and sets theirs as an admin.
    let err = refused(&d, None, &["passwd"], "x\ny\n");
    assert!(err.contains("corral passwd NAME"), "{err}");
    let out = d.cli(None, &["passwd", "carol"], "third-password-3\n");
    assert!(out.ok, "{}", out.stderr);
    assert_eq!(login("third-password-3").status, 200);
    // …which a non-admin may not do for someone else.
    let err = refused(&d, Some(&token), &["passwd", "admin"], "taken-over-4\n");
    assert!(err.contains("admin"), "{err}");
    let audit = d.corral(&["audit", "--action", "password.change", "--json"]);
    let results: Vec<String> = audit
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["result"].to_string())
        .collect();
    assert_eq!(results, ["\"ok\"", "\"failed\""], "newest first: {audit}");
}

/// `corral whoami` says who the daemon takes the caller for; `corral info --cgroups` prints the
/// host's cgroup tree with Corral's own groups marked, as far as the caller may see it.
#[test]
fn cli_whoami_and_the_cgroup_tree() {
    let d = Daemon::start();
    let admin = d.admin_token();
    let out = d.corral(&["whoami"]);
    assert!(out.starts_with("root (admin, via unix)"), "{out}");
    d.corral(&["team", "add", "green"]);
    let r = call(
        &d,
        &admin,
        "POST",
        "/api/v1/users",
        Some(
            json!({"name": "gus", "role": "viewer", "teams": ["green"], "password": "gus-password-1"}),
        ),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let gus = d.token_for("gus");
    let out = d.cli(Some(&gus), &["whoami"], "");
    assert_eq!(
        out.stdout, "gus (viewer, via token) teams: green\n",
        "{}",
        out.stderr
    );

    let tree = d.corral(&["info", "--cgroups"]);
    assert!(tree.starts_with("cgroup mode "), "{tree}");
    assert!(
        tree.contains("GROUP") && tree.contains("CPU USEC"),
        "{tree}"
    );
    let ours = format!("/{} *", d.cgroup_root);
    assert!(
        tree.lines().any(|l| l.trim_start().starts_with(&ours)),
        "{tree}"
    );
    let team = format!("/{}/green *", d.cgroup_root);
    assert!(
        tree.lines().any(|l| l.trim_start().starts_with(&team)),
        "{tree}"
    );
    // A viewer sees the roots and their own team's pool, not the rest of the host.
    let out = d.cli(Some(&gus), &["info", "--cgroups"], "");
    assert!(out.ok, "{}", out.stderr);
    assert!(out.stdout.contains(&team), "{}", out.stdout);
    assert!(
        out.stdout.lines().count() < tree.lines().count(),
        "{}",
        out.stdout
    );
}
