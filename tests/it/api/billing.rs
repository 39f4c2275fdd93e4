//! Billing, rates, statements, history and `/metrics` through real HTTP.
//!
//! `/metrics` is checked with `promtool check metrics` (classic text format; `$PROMTOOL` or
//! `promtool` on PATH) and, in OpenMetrics form, with the `prometheus_client` Python package's
//! strict OpenMetrics parser (`$CORRAL_OM_PYTHON` or `python3`). Set `CORRAL_SKIP_PROMTOOL=1`
//! to skip those two checks on a machine without them.

use std::{
    collections::BTreeMap,
    io::Write,
    path::PathBuf,
    process::{Command, Stdio},
    time::Duration,
};

use backend::{
    cgroup::{Cgroups, GroupPath},
    config::Config,
    http::{AppState, app},
    metering::{Metering, MeteringConfig},
    store::Store,
};
use tests::{Daemon, RawResponse, TempDir, containers::api_status};

/// `GET path` over the in-process router's unix socket (root there is admin).
async fn get_unix(
    sock: &std::sync::Arc<PathBuf>,
    path: &'static str,
    accept: &'static str,
) -> RawResponse {
    let sock = sock.clone();
    tokio::task::spawn_blocking(move || {
        tests::unix_http(&sock, "GET", path, &[("accept", accept)], None)
    })
    .await
    .expect("get")
}

fn skip_external() -> bool {
    std::env::var_os("CORRAL_SKIP_PROMTOOL").is_some()
}

pub(super) fn promtool_check(text: &str) {
    if skip_external() {
        return;
    }
    let bin = std::env::var_os("PROMTOOL").map_or_else(|| PathBuf::from("promtool"), PathBuf::from);
    let mut child = Command::new(&bin)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {} ({e}): install Debian's `prometheus` package (or set PROMTOOL, or CORRAL_SKIP_PROMTOOL=1)",
                bin.display()
            )
        });
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("promtool");
    assert!(
        out.status.success(),
        "promtool rejected /metrics:\n{}{}\n---\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

pub(super) fn openmetrics_check(text: &str) {
    if skip_external() {
        return;
    }
    let py = std::env::var_os("CORRAL_OM_PYTHON")
        .map_or_else(|| PathBuf::from("python3"), PathBuf::from);
    let script = "import sys\nfrom prometheus_client.openmetrics.parser import text_string_to_metric_families as p\nn = sum(len(f.samples) for f in p(sys.stdin.read()))\nprint(n)\n";
    let mut child = Command::new(&py)
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {} ({e})", py.display()));
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("python");
    assert!(
        out.status.success(),
        "the OpenMetrics parser rejected /metrics (needs `pip install prometheus-client`; set CORRAL_OM_PYTHON to its python):\n{}\n---\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A subtree of our own, removed on drop.
struct Subtree(Cgroups);

impl Drop for Subtree {
    fn drop(&mut self) {
        let _ = self.0.remove_subtree();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_of_metered_groups_pass_promtool_and_the_openmetrics_parser() {
    let t = Subtree(Cgroups::host(&tests::unique("corral-it")).expect("subtree"));
    let team =
        t.0.create(&GroupPath::parse("team-x").expect("path"))
            .expect("team");
    let g =
        t.0.create(&GroupPath::parse("team-x/web").expect("path"))
            .expect("group");
    let dir = TempDir::new("corral-metrics");
    let store = Store::open(&dir.path().join("corral.db")).expect("store");
    let m = Metering::new(
        store.clone(),
        MeteringConfig {
            interval: Duration::from_secs(3600),
            ..MeteringConfig::default()
        },
    )
    .expect("metering");
    m.register_team(team, "team-x");
    // Stored ceilings become gauges (and must pass both checkers with values).
    store
        .lock()
        .execute_batch(
            "INSERT INTO teams (name, created_at) VALUES ('team-x', 0);
             INSERT INTO team_limits (team, limits, updated_at)
             VALUES ('team-x', '{\"cpus\": 1.5, \"memory_high\": 268435456}', 0);",
        )
        .expect("team limits");
    // A name that needs escaping in a label value.
    m.register(g, "id-web", "web\"1", "team-x", &BTreeMap::new());
    m.tick();
    let config = Config {
        listen: "127.0.0.1:0".parse().expect("addr"),
        socket: None,
        docker_socket: None,
        state_dir: dir.path().to_owned(),
        cgroup_root: t.0.subtree().to_owned(),
        sample_interval: Duration::from_secs(5),
        ledger_flush: Duration::from_secs(30),
        retention: Default::default(),
        auth: Default::default(),
        network: Default::default(),
        tls: Default::default(),
        default_memory: None,
        images: Default::default(),
        host_id: None,
        ledger: Default::default(),
    };
    let engine = std::sync::Arc::new(Cgroups::host(t.0.subtree()).expect("engine"));
    let state = AppState::new(config, store, engine).with_metering(m.clone());
    // Root over a unix socket is admin: no account needed for an in-process router.
    let sock = dir.path().join("api.sock");
    let listener = tokio::net::UnixListener::bind(&sock).expect("bind");
    let server = tokio::spawn(async move {
        axum::serve(
            listener,
            app(state).into_make_service_with_connect_info::<backend::auth::UnixPeer>(),
        )
        .await
    });
    let sock = std::sync::Arc::new(sock);

    let r = get_unix(&sock, "/metrics", "text/plain").await;
    let classic = r.body.clone();
    assert_eq!(
        r.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8"),
        "{r:?}"
    );
    assert!(
        classic.contains("corral_container_cpu_seconds_total{name=\"web\\\"1\",team=\"team-x\"} "),
        "{classic}"
    );
    assert!(classic.contains("corral_team_memory_bytes{team=\"team-x\"} "));
    assert!(
        classic.contains("corral_team_limit_cpus{team=\"team-x\"} 1.5\n"),
        "{classic}"
    );
    assert!(classic.contains("corral_team_limit_memory_high_bytes{team=\"team-x\"} 268435456.0\n"));
    promtool_check(&classic);

    let r = get_unix(
        &sock,
        "/metrics",
        "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
    )
    .await;
    let om = r.body.clone();
    assert!(
        r.header("content-type")
            .is_some_and(|t| t.starts_with("application/openmetrics-text")),
        "{r:?}"
    );
    assert!(om.ends_with("# EOF\n"));
    openmetrics_check(&om);

    // History of the same group, from the raw tier, and the live view.
    m.tick();
    let r = get_unix(
        &sock,
        "/api/v1/containers/id-web/history?range=10m&step=1s",
        "application/json",
    )
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    let h: wire::billing::History = serde_json::from_str(&r.body).expect("history json");
    assert_eq!(h.tier, "raw");
    assert_eq!(h.step_secs, 1);
    assert!(!h.points.is_empty(), "{h:?}");
    assert!(h.points.iter().all(|p| p.pids_peak == 0));
    let r = get_unix(&sock, "/api/v1/stats", "application/json").await;
    let live: wire::billing::LiveStats = serde_json::from_str(&r.body).expect("stats json");
    assert!(
        live.stats
            .iter()
            .any(|l| l.kind == "container" && l.name == "web\"1")
    );
    assert!(
        live.stats
            .iter()
            .any(|l| l.kind == "team" && l.team == "team-x")
    );
    server.abort();
    m.unregister_with_final_reading("id-web");
}

#[tokio::test]
async fn daemon_metrics_pass_promtool() {
    let daemon = Daemon::start();
    let auth = format!("Bearer {}", daemon.admin_token());
    let text = daemon
        .http(
            "GET",
            "/metrics",
            &[("authorization", &auth), ("accept", "*/*")],
            None,
        )
        .body;
    assert!(
        text.contains("corral_metering_failed_commits_total 0"),
        "{text}"
    );
    promtool_check(&text);
}

#[tokio::test]
async fn rate_card_billing_and_statements_over_http() {
    let daemon = Daemon::start();
    let c = daemon.unix_client();
    let put = |body: serde_json::Value| {
        let c = c.clone();
        async move {
            c.request(
                hyper::Method::PUT,
                "/api/v1/billing/rates",
                Some(serde_json::to_vec(&body).expect("json")),
            )
            .await
        }
    };
    // A rate that would re-price the past is refused, naming the field.
    let e = put(serde_json::json!({
        "effective_from": "2020-01-01", "currency": "EUR", "cpu_core_hour_used": 0.04,
        "cpu_core_hour_reserved": 0.01, "mem_gib_hour_used": 0.005,
        "mem_gib_hour_reserved": 0.001, "io_gib": 0.02
    }))
    .await
    .unwrap_err();
    assert_eq!(
        api_status(e),
        (400, "invalid_value".into(), Some("effective_from".into()))
    );
    let e = put(serde_json::json!({
        "currency": "euro", "cpu_core_hour_used": 0.04, "cpu_core_hour_reserved": 0.01,
        "mem_gib_hour_used": 0.005, "mem_gib_hour_reserved": 0.001, "io_gib": 0.02
    }))
    .await
    .unwrap_err();
    assert_eq!(api_status(e).2.as_deref(), Some("currency"));
    let e = put(serde_json::json!({ "currency": "EUR", "nope": 1 }))
        .await
        .unwrap_err();
    assert!(api_status(e).0 >= 400);
    // The next hour by default.
    let (_, body) = put(serde_json::json!({
        "currency": "EUR", "cpu_core_hour_used": 0.04, "cpu_core_hour_reserved": 0.01,
        "mem_gib_hour_used": 0.005, "mem_gib_hour_reserved": 0.001, "io_gib": 0.02
    }))
    .await
    .expect("put rates");
    let saved: wire::billing::RateCard = serde_json::from_slice(&body).expect("rate card");
    assert!(
        saved
            .effective_from
            .as_deref()
            .is_some_and(|s| s.ends_with(":00:00Z"))
    );
    let cards: wire::billing::RateCards = c.get("/api/v1/billing/rates").await.expect("rates");
    assert_eq!(cards.versions.last(), Some(&saved));
    assert_eq!(
        cards.current.currency, "USD",
        "the new version is not in force yet"
    );

    let r: wire::billing::BillingReport = c
        .get("/api/v1/billing?team=red&from=2026-01-01&to=2026-02-01")
        .await
        .expect("report");
    assert_eq!(r.from, "2026-01-01T00:00:00Z");
    assert!(r.containers.is_empty());
    // No saved card priced that month: the report says so (every cost there is 0).
    assert!(!r.rates_set, "{r:?}");
    // A period that reaches the saved version is priced by a card.
    let now = backend::metering::sampler::wall_ms() / 1000;
    let r: wire::billing::BillingReport = c
        .get(&format!("/api/v1/billing?from={now}&to={}", now + 7200))
        .await
        .expect("report");
    assert!(r.rates_set, "{r:?}");
    assert_eq!(r.currency, "EUR");
    let e = c
        .get::<serde_json::Value>("/api/v1/billing?from=yesterday")
        .await
        .unwrap_err();
    assert_eq!(api_status(e).2.as_deref(), Some("from"));
    let e = c
        .get::<serde_json::Value>("/api/v1/billing?colour=red")
        .await
        .unwrap_err();
    assert_eq!(api_status(e).2.as_deref(), Some("colour"));

    // The host is metered from the first tick: a statement of this month has host CPU and
    // reconciles (no containers: everything is idle).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let month =
        backend::metering::calendar::format_month(backend::metering::sampler::wall_ms() / 1000);
    let s: wire::billing::Statement = c
        .get(&format!("/api/v1/billing/statements/red/{month}"))
        .await
        .expect("statement");
    assert_eq!(s.month, month);
    assert_eq!(
        s.host.containers_cpu_seconds + s.host.idle_cpu_seconds,
        s.host.host_cpu_seconds
    );
    let (_, csv) = c
        .request(
            hyper::Method::GET,
            &format!("/api/v1/billing/statements/red/{month}?format=csv"),
            None,
        )
        .await
        .expect("csv");
    let csv = String::from_utf8(csv.to_vec()).expect("utf8");
    assert!(csv.starts_with("kind,container_id,name,team,labels,cpu_core_hours"));
    assert!(csv.contains("team_total,,,red,"));
    let e = c
        .get::<serde_json::Value>("/api/v1/billing/statements/red/2026-13")
        .await
        .unwrap_err();
    assert_eq!(api_status(e).2.as_deref(), Some("month"));

    let e = c
        .get::<serde_json::Value>("/api/v1/containers/ghost/history?range=1h")
        .await
        .unwrap_err();
    assert_eq!(api_status(e).0, 404);
    let e = c
        .get::<serde_json::Value>("/api/v1/containers/ghost/history?range=soon")
        .await
        .unwrap_err();
    assert_eq!(api_status(e).2.as_deref(), Some("range"));

    let live: wire::billing::LiveStats = c.get("/api/v1/stats").await.expect("stats");
    assert!(live.stats.is_empty());
}

#[test]
fn cli_bill_and_stats_talk_to_the_daemon() {
    let daemon = Daemon::start();
    let run_both = |args: &[&str]| {
        let out = daemon.cli(None, args, "");
        assert!(out.ok, "corral {args:?}: {}", out.stderr);
        (out.stdout, out.stderr)
    };
    let run = |args: &[&str]| run_both(args).0;
    // No rate card yet: the table is all zeros, and stderr says why and how to set one
    // (stdout stays the table).
    let (out, err) = run_both(&["bill"]);
    assert!(out.contains("TOTAL"), "{out}");
    assert!(
        err.contains("note: the rate card is unset") && err.contains("corral rates set"),
        "{err}"
    );
    assert!(!out.contains("note:"));
    assert!(run(&["bill", "--team", "red", "--from", "2026-01-01", "--csv"]).starts_with("kind,"));
    assert!(
        run(&["bill", "--team", "red", "--statement", "2026-11", "--csv"])
            .contains("host_cpu_seconds")
    );
    assert!(run(&["stats", "--no-stream"]).starts_with("NAME"));
}

/// Busy CPU of the host now, µs (`/proc/stat`).
fn host_busy() -> i64 {
    backend::metering::sampler::host_busy_usec(std::path::Path::new("/proc/stat"))
        .expect("/proc/stat") as i64
}

#[test]
fn kill_9_and_restart_neither_loses_nor_doubles_host_cpu() {
    let before = host_busy();
    let mut d = Daemon::start();
    std::thread::sleep(Duration::from_millis(5_500));
    d.kill9();
    // Busy time while no daemon runs must still be booked, once.
    std::thread::sleep(Duration::from_millis(1_500));
    d.restart();
    std::thread::sleep(Duration::from_millis(1_000));
    assert!(d.stop().success(), "clean stop: {}", d.log());
    let after = host_busy();
    let conn = rusqlite::Connection::open(d.state.path().join("state/corral.db")).expect("db");
    let booked: i64 = conn
        .query_row(
            "SELECT coalesce(sum(cpu_usec), 0) FROM host_ledger",
            [],
            |r| r.get(0),
        )
        .expect("host ledger");
    let measured = after - before;
    println!(
        "host busy measured {:.2} s, booked across kill -9 {:.2} s",
        measured as f64 / 1e6,
        booked as f64 / 1e6
    );
    // Never more than what happened (plus one jiffy per CPU of rounding) ...
    assert!(
        booked <= measured + 20_000,
        "doubled: {booked} > {measured}"
    );
    // ... and the outage is in it: only the daemon's own start-up before its first reading is
    // missing.
    assert!(
        booked as f64 >= 0.9 * measured as f64,
        "lost: booked {booked} of {measured}"
    );
}

/// One request over TCP with a bearer token (or none).
fn as_user(
    d: &Daemon,
    token: Option<&str>,
    method: &str,
    path: &str,
    body: Option<serde_json::Value>,
) -> tests::RawResponse {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("content-type", "application/json")];
    if let Some(a) = &auth {
        headers.push(("authorization", a));
    }
    let body = body.map(|b| b.to_string());
    d.http(method, path, &headers, body.as_deref())
}

#[test]
fn an_operator_of_team_a_cannot_read_team_bs_bill() {
    let d = Daemon::start();
    let admin = d.admin_token();
    for t in ["team-a", "team-b"] {
        let r = as_user(
            &d,
            Some(&admin),
            "POST",
            "/api/v1/teams",
            Some(serde_json::json!({"name": t})),
        );
        assert_eq!(r.status, 201, "{}", r.body);
    }
    let r = as_user(
        &d,
        Some(&admin),
        "POST",
        "/api/v1/users",
        Some(
            serde_json::json!({"name": "op-a", "role": "operator", "teams": ["team-a"],
            "password": "operator a password"}),
        ),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let op = d.token_for("op-a");

    // Ledger rows of one container per team, written like the sampler writes them.
    let store = Store::open(&d.state.path().join("state/corral.db")).expect("store");
    let now_ms = backend::metering::sampler::wall_ms();
    let mut batch = backend::metering::store::Batch::default();
    for (id, team, cpu) in [("id-a", "team-a", 3_000_000), ("id-b", "team-b", 5_000_000)] {
        let owner = backend::metering::store::LedgerOwner {
            container_id: id.into(),
            name: format!("web-{team}"),
            team: team.into(),
            labels: "{}".into(),
        };
        let usage = backend::metering::Usage {
            duration_ns: 1_000_000_000,
            cpu_usec: cpu,
            ..Default::default()
        };
        batch.add_ledger(&owner, now_ms, &usage);
    }
    backend::metering::store::commit(&mut store.lock(), &batch).expect("seed ledger");
    let now = now_ms / 1000;
    let range = format!("from={}&to={}", now - 86_400, now + 7_200);
    let month = backend::metering::calendar::format_month(now);

    // Team B's bill, statement and the unfiltered totals are refused or limited to team A.
    let r = as_user(
        &d,
        Some(&op),
        "GET",
        &format!("/api/v1/billing?team=team-b&{range}"),
        None,
    );
    assert_eq!(r.status, 403, "{}", r.body);
    let r = as_user(
        &d,
        Some(&op),
        "GET",
        &format!("/api/v1/billing/statements/team-b/{month}"),
        None,
    );
    assert_eq!(r.status, 403, "{}", r.body);
    let r = as_user(
        &d,
        Some(&op),
        "GET",
        &format!("/api/v1/billing?{range}"),
        None,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let mine: wire::billing::BillingReport = serde_json::from_str(&r.body).expect("report");
    let teams: Vec<&str> = mine.teams.iter().map(|l| l.team.as_str()).collect();
    assert_eq!(teams, ["team-a"]);
    assert_eq!(mine.containers.len(), 1);
    assert_eq!(mine.total.usage.cpu_seconds, 3.0, "only team A's usage");
    // A container of team B named explicitly yields nothing either.
    let r = as_user(
        &d,
        Some(&op),
        "GET",
        &format!("/api/v1/billing?container=id-b&{range}"),
        None,
    );
    let other: wire::billing::BillingReport = serde_json::from_str(&r.body).expect("report");
    assert!(other.containers.is_empty(), "{other:?}");
    let r = as_user(
        &d,
        Some(&op),
        "GET",
        &format!("/api/v1/billing/statements/team-a/{month}"),
        None,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    // The admin sees both.
    let r = as_user(
        &d,
        Some(&admin),
        "GET",
        &format!("/api/v1/billing?{range}"),
        None,
    );
    let all: wire::billing::BillingReport = serde_json::from_str(&r.body).expect("report");
    assert_eq!(all.total.usage.cpu_seconds, 8.0);

    // Rates: everyone reads, only admins write (audited with before/after).
    assert_eq!(
        as_user(&d, Some(&op), "GET", "/api/v1/billing/rates", None).status,
        200
    );
    let card = serde_json::json!({"currency": "EUR", "cpu_core_hour_used": 0.04,
        "cpu_core_hour_reserved": 0.01, "mem_gib_hour_used": 0.005,
        "mem_gib_hour_reserved": 0.001, "io_gib": 0.02});
    let r = as_user(
        &d,
        Some(&op),
        "PUT",
        "/api/v1/billing/rates",
        Some(card.clone()),
    );
    assert_eq!(r.status, 403, "{}", r.body);
    let r = as_user(&d, Some(&admin), "PUT", "/api/v1/billing/rates", Some(card));
    assert_eq!(r.status, 200, "{}", r.body);
    let r = as_user(&d, Some(&admin), "GET", "/api/v1/audit", None);
    let rows: Vec<serde_json::Value> = serde_json::from_str(&r.body).expect("audit");
    let row = rows
        .iter()
        .find(|e| e["action"] == "billing.rates.put")
        .unwrap_or_else(|| panic!("audited: {rows:?}"));
    // The audit log keeps before/after as JSON text.
    let json_of = |v: &serde_json::Value| -> serde_json::Value {
        serde_json::from_str(v.as_str().unwrap_or("null")).expect("json text")
    };
    assert_eq!(json_of(&row["after"])["currency"], "EUR", "{row}");
    assert!(json_of(&row["before"]).is_object(), "{row}");

    // /metrics: everyone signed in, each their own teams' series (the month's cost from the
    // same ledger, per team: these containers are gone); the admin's text has both teams.
    assert_eq!(as_user(&d, None, "GET", "/metrics", None).status, 401);
    let r = as_user(&d, Some(&op), "GET", "/metrics", None);
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.body
            .contains("corral_team_cost_month{team=\"team-a\",currency="),
        "{}",
        r.body
    );
    assert!(!r.body.contains("team-b"), "{}", r.body);
    let r = as_user(&d, Some(&admin), "GET", "/metrics", None);
    assert_eq!(r.status, 200);
    assert!(
        r.body
            .contains("corral_team_cost_month{team=\"team-b\",currency="),
        "{}",
        r.body
    );
}
