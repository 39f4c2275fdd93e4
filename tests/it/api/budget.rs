//! Team budgets over the API (issue 13, part 2): `GET|PUT|DELETE /api/v1/teams/{name}/budget`
//! and `/budget/steps`: validation (400 naming the field, nothing stored), who may read and
//! change a budget (admins change; the team's operators and viewers read; others are refused),
//! audit rows (denied attempts too), the budget in `GET /api/v1/teams/{name}`, removal with the
//! team, and `corral team budget`. The ladder on the kernel: `kernel::team_budget`.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use serde_json::{Value, json};
use tests::{Daemon, call, containers::Reaper};

fn add_team(d: &Daemon, admin: &str, team: &str) {
    let r = call(
        d,
        admin,
        "POST",
        "/api/v1/teams",
        Some(json!({"name": team})),
    );
    assert_eq!(r.status, 201, "{}", r.body);
}

#[test]
fn budgets_are_validated_admin_only_audited_and_go_with_the_team() {
    let d = Daemon::start();
    let _reaper = Reaper::new(&d);
    let admin = d.admin_token();
    add_team(&d, &admin, "team-a");
    add_team(&d, &admin, "team-b");
    let path = "/api/v1/teams/team-a/budget";
    let none = call(&d, &admin, "GET", path, None);
    assert_eq!(none.status, 404, "{}", none.body);
    assert_eq!(none.code(), "no_budget");

    let step = |at: u32, action: Value| {
        let mut s = action;
        s["at_percent"] = json!(at);
        s
    };
    for (body, field) in [
        (json!({"period": "day"}), "money"),
        (json!({"period": "day", "money": 0}), "money"),
        (
            json!({"period": "day", "cpu_core_hours": -1}),
            "cpu_core_hours",
        ),
        (
            json!({"period": "day", "memory_gib_hours": 0}),
            "memory_gib_hours",
        ),
        (
            json!({"period": "day", "money": 1, "ladder": [
                step(80, json!({"action": "warn"})),
                step(100, json!({"action": "cpu_weight", "cpu_weight": 10})),
                step(110, json!({"action": "cpus", "cpus": 5000.0})),
            ]}),
            "ladder[2].cpus",
        ),
        (
            json!({"period": "day", "money": 1, "ladder": [
                step(80, json!({"action": "warn"})), step(70, json!({"action": "freeze"})),
            ]}),
            "ladder[1].at_percent",
        ),
        (
            json!({"period": "day", "money": 1, "ladder": [
                step(80, json!({"action": "cpu_weight", "cpu_weight": 0})),
            ]}),
            "ladder[0].cpu_weight",
        ),
        (
            json!({"period": "day", "money": 1, "ladder": [
                step(80, json!({"action": "memory_high", "memory_high": 1024})),
            ]}),
            "ladder[0].memory_high",
        ),
        (
            json!({"period": "day", "money": 1, "webhook": "ftp://example.com/"}),
            "webhook",
        ),
    ] {
        let r = call(&d, &admin, "PUT", path, Some(body.clone()));
        assert_eq!(r.status, 400, "{body}: {}", r.body);
        assert_eq!(r.json()["field"], field, "{body}: {}", r.body);
        let m = r.json()["message"].as_str().unwrap().to_owned();
        assert!(m.contains(field), "the message names the field: {m}");
    }
    // Malformed JSON shapes are refused by the schema (unknown fields, a wrong action).
    for body in [
        json!({"period": "year", "money": 1}),
        json!({"period": "day", "money": 1, "extra": 1}),
        json!({"period": "day", "money": 1, "ladder": [{"at_percent": 80, "action": "nap"}]}),
        json!({"period": "day", "money": 1, "ladder": [{"at_percent": 80, "action": "warn", "cpus": 1}]}),
    ] {
        let r = call(&d, &admin, "PUT", path, Some(body.clone()));
        assert_eq!(r.status, 400, "{body}: {}", r.body);
    }
    let r = call(&d, &admin, "GET", path, None);
    assert_eq!(r.code(), "no_budget", "nothing was stored: {}", r.body);

    for (name, role) in [("opa", "operator"), ("viewa", "viewer")] {
        d.add_user(name, role, &["team-a"]);
    }
    let (op, viewer) = (d.token_for("opa"), d.token_for("viewa"));
    let good = json!({"period": "month", "money": 120, "cpu_core_hours": 10});
    for who in [&op, &viewer] {
        assert_eq!(call(&d, who, "GET", path, None).code(), "no_budget");
        let r = call(&d, who, "PUT", path, Some(good.clone()));
        assert_eq!(r.status, 403, "only admins set budgets: {}", r.body);
        let r = call(&d, who, "DELETE", path, None);
        assert_eq!(r.status, 403, "only admins clear budgets: {}", r.body);
        for p in [
            "/api/v1/teams/team-b/budget",
            "/api/v1/teams/team-b/budget/steps",
        ] {
            // Not their team: refused like the team's other routes.
            assert_eq!(call(&d, who, "GET", p, None).status, 403, "{p}");
        }
    }

    let r = call(&d, &admin, "PUT", path, Some(good.clone()));
    assert_eq!(r.status, 200, "{}", r.body);
    let b = r.json();
    assert_eq!(b["budget"]["money"], 120.0, "{b}");
    assert_eq!(
        b["ladder"].as_array().unwrap().len(),
        4,
        "the default ladder: {b}"
    );
    assert_eq!(b["percent"], 0.0, "{b}");
    assert!(b.get("step").is_none(), "{b}");
    assert!(
        b["next_reset"].as_str().unwrap().ends_with("-01T00:00:00Z"),
        "{b}"
    );
    for who in [&op, &viewer] {
        let r = call(&d, who, "GET", path, None);
        assert_eq!(r.status, 200, "members read it: {}", r.body);
        let r = call(&d, who, "GET", "/api/v1/teams/team-a", None);
        assert_eq!(r.json()["budget"]["budget"]["money"], 120.0, "{}", r.body);
        let r = call(&d, who, "GET", "/api/v1/teams/team-a/budget/steps", None);
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.json(), json!([]), "no step yet");
    }
    let r = call(
        &d,
        &admin,
        "GET",
        "/api/v1/teams/team-a/budget/steps?limit=0",
        None,
    );
    assert_eq!(r.status, 400, "{}", r.body);
    for (method, body) in [("GET", None), ("PUT", Some(good.clone())), ("DELETE", None)] {
        let r = call(&d, &admin, method, "/api/v1/teams/nope/budget", body);
        assert_eq!(r.status, 404, "{method}: {}", r.body);
        assert_eq!(r.code(), "not_found", "{method}: {}", r.body);
    }

    let audit = call(&d, &admin, "GET", "/api/v1/audit?action=team.budget", None).json();
    let rows = audit.as_array().unwrap();
    let denied = rows.iter().filter(|r| r["result"] == "denied").count();
    assert_eq!(denied, 4, "2 PUT + 2 DELETE refused: {audit}");
    assert!(
        rows.iter()
            .any(|r| r["result"] == "ok" && r["actor"] == tests::ADMIN),
        "{audit}"
    );

    let r = call(&d, &admin, "DELETE", path, None);
    assert_eq!(r.status, 204, "{}", r.body);
    assert_eq!(call(&d, &admin, "GET", path, None).code(), "no_budget");
    assert_eq!(call(&d, &admin, "DELETE", path, None).code(), "no_budget");

    // The budget goes with its team.
    let r = call(&d, &admin, "PUT", path, Some(good.clone()));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        call(&d, &admin, "DELETE", "/api/v1/teams/team-a", None).status,
        204
    );
    add_team(&d, &admin, "team-a");
    assert_eq!(call(&d, &admin, "GET", path, None).code(), "no_budget");
}

#[test]
fn cli_team_budget_sets_shows_and_clears() {
    let d = Daemon::start();
    let _reaper = Reaper::new(&d);
    let run = |args: &[&str]| {
        let out = d.cli(None, args, "");
        (out.ok, out.stdout, out.stderr)
    };
    let (ok, _, err) = run(&["team", "add", "cli-b"]);
    assert!(ok, "{err}");
    let (ok, out, err) = run(&[
        "team",
        "budget",
        "cli-b",
        "--period",
        "week",
        "--money",
        "120",
        "--cpu-hours",
        "2",
        "--ladder",
        "80:warn,100:cpu-weight=10,110:cpus=0.5,125:memory-high=256M,150:freeze",
    ]);
    assert!(ok, "{err}");
    println!("{out}");
    assert!(out.contains("budget per week"), "{out}");
    assert!(out.contains("0.00 of 120"), "{out}");
    assert!(out.contains("next reset"), "{out}");
    assert!(out.contains("150 %: freeze"), "{out}");
    let (ok, out, err) = run(&["team", "budget", "cli-b", "--json"]);
    assert!(ok, "{err}");
    let b: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(b["ladder"][3]["memory_high"], 256 << 20, "{out}");
    assert_eq!(b["budget"]["cpu_core_hours"], 2.0, "{out}");
    let (ok, out, _) = run(&["team", "inspect", "cli-b"]);
    assert!(ok);
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap()["budget"]["budget"]["period"],
        "week"
    );
    let (ok, _, err) = run(&[
        "team",
        "budget",
        "cli-b",
        "--period",
        "day",
        "--money",
        "1",
        "--ladder",
        "80:cpus=9999",
    ]);
    assert!(!ok, "refused");
    assert!(err.contains("ladder[0].cpus"), "{err}");
    let (ok, _, err) = run(&["team", "budget", "cli-b", "--money", "5"]);
    assert!(!ok && err.contains("--period"), "{err}");
    let (ok, out, err) = run(&["team", "budget", "cli-b", "--clear"]);
    assert!(ok, "{err}");
    assert!(out.contains("cleared"), "{out}");
    let (ok, _, err) = run(&["team", "budget", "cli-b"]);
    assert!(!ok && err.contains("no budget"), "{err}");
}
