//! Who may do what to containers and images, through real HTTP with API tokens, on real
//! containers (a busybox image built here): an operator of team A cannot see, inspect, stop,
//! re-limit or remove team B's container nor create one in team B or a privileged one; a viewer
//! changes nothing; every change and refused attempt is in the audit log with before/after; the
//! container's timeline shows a limit change.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use serde_json::{Value, json};
use tests::{Daemon, RawResponse, TempDir, containers::Reaper, rootfs::docker_save};

/// One request as `token` (bearer tokens need no CSRF header).
fn call(d: &Daemon, token: &str, method: &str, path: &str, body: Option<Value>) -> RawResponse {
    let auth = format!("Bearer {token}");
    let mut headers = vec![("authorization", auth.as_str())];
    if body.is_some() {
        headers.push(("content-type", "application/json"));
    }
    let body = body.map(|b| b.to_string());
    d.http(method, path, &headers, body.as_deref())
}

#[track_caller]
fn expect(r: &RawResponse, status: u16, what: &str) {
    assert_eq!(r.status, status, "{what}: {}", r.body);
}

fn audit(d: &Daemon, admin: &str) -> Vec<Value> {
    let r = call(d, admin, "GET", "/api/v1/audit?limit=1000", None);
    expect(&r, 200, "audit");
    r.json().as_array().unwrap().clone()
}

fn find<'a>(rows: &'a [Value], actor: &str, action: &str, target: &str, result: &str) -> &'a Value {
    rows.iter()
        .find(|r| {
            r["actor"] == actor
                && r["action"] == action
                && r["target"] == target
                && r["result"] == result
        })
        .unwrap_or_else(|| panic!("no audit row {actor} {action} {target} {result} in {rows:#?}"))
}

fn parse(v: &Value) -> Value {
    serde_json::from_str(v.as_str().unwrap_or("null")).unwrap()
}

#[tokio::test]
async fn teams_scope_containers_and_every_change_is_audited() {
    let d = Daemon::start();
    let _reaper = Reaper::new(&d);
    let admin = d.admin_token();
    for t in ["team-a", "team-b"] {
        expect(
            &call(
                &d,
                &admin,
                "POST",
                "/api/v1/teams",
                Some(json!({"name": t})),
            ),
            201,
            "team",
        );
    }
    for (u, role, team) in [
        ("op-a", "operator", "team-a"),
        ("view-a", "viewer", "team-a"),
        ("op-b", "operator", "team-b"),
    ] {
        let body =
            json!({"name": u, "role": role, "teams": [team], "password": "a long password 123"});
        expect(
            &call(&d, &admin, "POST", "/api/v1/users", Some(body)),
            201,
            "user",
        );
    }
    let (op_a, view_a, op_b) = (
        d.token_for("op-a"),
        d.token_for("view-a"),
        d.token_for("op-b"),
    );

    // Images: import is admin only; everyone lists.
    let dir = TempDir::new("corral-it-img");
    let tarball = dir.path().join("bb.tar");
    docker_save(&tarball, "bb:1", &["sh", "-c", "echo up; exec sleep 1000"]);
    let import = json!({"path": tarball, "tag": "bb:test"});
    let r = call(
        &d,
        &op_a,
        "POST",
        "/api/v1/images/import",
        Some(import.clone()),
    );
    expect(&r, 403, "operator imports an image");
    let r = call(&d, &admin, "POST", "/api/v1/images/import", Some(import));
    expect(&r, 201, "admin imports");
    let r = call(&d, &view_a, "GET", "/api/v1/images", None);
    expect(&r, 200, "viewer lists images");
    assert_eq!(r.json().as_array().unwrap().len(), 1);
    let r = call(&d, &op_a, "DELETE", "/api/v1/images/bb:1", None);
    expect(&r, 403, "operator removes an image");

    // Team B's container, made by its operator.
    let r = call(
        &d,
        &op_b,
        "POST",
        "/api/v1/containers",
        Some(json!({"name": "b-web", "image": "bb:1", "start": true})),
    );
    expect(&r, 201, "operator B creates in its only team");
    assert_eq!(
        r.json()["team"],
        "team-b",
        "no team = the operator's only team"
    );
    assert_eq!(r.json()["status"], "running");

    // Operator A: team B's container does not exist for it, whatever it tries.
    let r = call(&d, &op_a, "GET", "/api/v1/containers?all=true", None);
    expect(&r, 200, "list");
    assert_eq!(
        r.json(),
        json!([]),
        "operator A sees no container of team B"
    );
    for (method, path, body) in [
        ("GET", "/api/v1/containers/b-web", None),
        ("GET", "/api/v1/containers/b-web/logs", None),
        ("GET", "/api/v1/containers/b-web/limits", None),
        ("GET", "/api/v1/containers/b-web/events", None),
        ("GET", "/api/v1/containers/b-web/top", None),
        (
            "POST",
            "/api/v1/containers/b-web/stop",
            Some(json!({"timeout": 0})),
        ),
        ("POST", "/api/v1/containers/b-web/kill", None),
        ("POST", "/api/v1/containers/b-web/freeze", None),
        (
            "POST",
            "/api/v1/containers/b-web/exec",
            Some(json!({"command": ["true"]})),
        ),
        (
            "PATCH",
            "/api/v1/containers/b-web/limits",
            Some(json!({"cpus": 4})),
        ),
        ("DELETE", "/api/v1/containers/b-web?force=true", None),
    ] {
        let r = call(&d, &op_a, method, path, body.clone());
        expect(&r, 404, &format!("operator A: {method} {path}"));
        let missing = call(&d, &op_a, method, &path.replace("b-web", "no-such"), body);
        assert_eq!(
            r.json()["message"].as_str().unwrap().replace("b-web", "X"),
            missing.json()["message"]
                .as_str()
                .unwrap()
                .replace("no-such", "X"),
            "a hidden container answers like a missing one"
        );
    }
    let r = call(
        &d,
        &op_a,
        "POST",
        "/api/v1/containers",
        Some(json!({"name": "sneaky", "team": "team-b", "image": "bb:1"})),
    );
    expect(&r, 403, "operator A creates in team B");
    let r = call(&d, &admin, "GET", "/api/v1/containers/b-web", None);
    assert_eq!(
        r.json()["status"],
        "running",
        "team B's container untouched"
    );

    // Privileged specs are admin only, whatever field carries them.
    let rootfs = TempDir::new("corral-it-rootfs");
    for (spec, field) in [
        (json!({"image": "bb:1", "network": "host"}), "network"),
        (
            json!({"image": "bb:1", "mounts": [{"type": "tmpfs", "destination": "/t"}, {"type": "bind", "source": "/etc", "destination": "/h", "readonly": true}]}),
            "mounts[1]",
        ),
        (
            json!({"rootfs": rootfs.path(), "command": ["/bin/true"]}),
            "rootfs",
        ),
    ] {
        let mut spec = spec;
        spec["name"] = json!("priv");
        let r = call(&d, &op_a, "POST", "/api/v1/containers", Some(spec));
        expect(
            &r,
            403,
            &format!("operator creates a privileged container ({field})"),
        );
        assert!(
            r.json()["message"].as_str().unwrap().starts_with(field),
            "{}",
            r.body
        );
    }
    // A tmpfs is no privilege, but not over /proc/sys (it could forge cap_last_cap): refused
    // for operators as for admins, naming the field.
    let r = call(
        &d,
        &op_a,
        "POST",
        "/api/v1/containers",
        Some(
            json!({"name": "forge", "team": "team-a", "image": "bb:1", "mounts": [{"type": "tmpfs", "destination": "/proc/sys/kernel"}]}),
        ),
    );
    expect(&r, 400, "operator mounts a tmpfs over /proc/sys/kernel");
    assert_eq!(r.json()["field"], "mounts[0].destination", "{}", r.body);
    let r = call(&d, &op_a, "GET", "/api/v1/containers?all=true", None);
    assert_eq!(r.json(), json!([]), "no refused create left a record");

    // Operator A runs its own container.
    let r = call(
        &d,
        &op_a,
        "POST",
        "/api/v1/containers",
        Some(
            json!({"name": "a-web", "team": "team-a", "image": "bb:1", "start": true, "env": ["SECRET=hunter2"]}),
        ),
    );
    expect(&r, 201, "operator A creates in team A");

    // The viewer reads it and changes nothing.
    let r = call(&d, &view_a, "GET", "/api/v1/containers", None);
    let names: Vec<_> = r
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].clone())
        .collect();
    assert_eq!(names, vec![json!("a-web")], "the viewer sees its team only");
    for path in ["", "/limits", "/events", "/top"] {
        let r = call(
            &d,
            &view_a,
            "GET",
            &format!("/api/v1/containers/a-web{path}"),
            None,
        );
        expect(&r, 200, &format!("viewer reads {path}"));
    }
    expect(
        &call(&d, &view_a, "GET", "/api/v1/containers/a-web/logs", None),
        200,
        "viewer reads logs",
    );
    for (method, path, body) in [
        ("POST", "/api/v1/containers/a-web/stop", None),
        ("POST", "/api/v1/containers/a-web/restart", None),
        (
            "POST",
            "/api/v1/containers/a-web/kill",
            Some(json!({"signal": "TERM"})),
        ),
        ("POST", "/api/v1/containers/a-web/freeze", None),
        (
            "POST",
            "/api/v1/containers/a-web/exec",
            Some(json!({"command": ["true"]})),
        ),
        (
            "PATCH",
            "/api/v1/containers/a-web/limits",
            Some(json!({"pids_max": 10})),
        ),
        ("DELETE", "/api/v1/containers/a-web?force=true", None),
        ("POST", "/api/v1/containers", Some(json!({"image": "bb:1"}))),
    ] {
        let r = call(&d, &view_a, method, path, body);
        expect(&r, 403, &format!("viewer: {method} {path}"));
    }
    let r = call(&d, &op_a, "GET", "/api/v1/containers/a-web", None);
    assert_eq!(r.json()["status"], "running", "the viewer changed nothing");

    // A wrongly typed value names its field.
    let r = call(
        &d,
        &op_a,
        "PATCH",
        "/api/v1/containers/a-web/limits",
        Some(json!({"cpus": "lots"})),
    );
    expect(&r, 400, "typed limit");
    assert_eq!(r.json()["field"], "cpus");
    let r = call(
        &d,
        &op_a,
        "POST",
        "/api/v1/containers",
        Some(json!({"image": "bb:1", "limits": {"cpus": "lots"}})),
    );
    expect(&r, 400, "typed limit in create");
    assert_eq!(r.json()["field"], "limits.cpus");

    // Operator A re-limits, freezes, thaws, execs, stops and removes its container.
    let r = call(
        &d,
        &op_a,
        "PATCH",
        "/api/v1/containers/a-web/limits",
        Some(json!({"cpus": 0.5, "memory_max": 64 << 20})),
    );
    expect(&r, 200, "re-limit");
    assert_eq!(r.json()["limits"]["pids_max"], 2048, "unrelated limit kept");
    let k = call(&d, &op_a, "GET", "/api/v1/containers/a-web/limits", None).json();
    assert_eq!(
        k["memory_max"],
        64 << 20,
        "the kernel has the new limit: {k}"
    );
    expect(
        &call(&d, &op_a, "POST", "/api/v1/containers/a-web/freeze", None),
        200,
        "freeze",
    );
    expect(
        &call(&d, &op_a, "POST", "/api/v1/containers/a-web/thaw", None),
        200,
        "thaw",
    );
    let r = call(
        &d,
        &op_a,
        "POST",
        "/api/v1/containers/a-web/exec",
        Some(json!({"command": ["echo", "inside"]})),
    );
    expect(&r, 200, "exec");
    assert_eq!(r.json()["stdout"], "inside\n");

    // The timeline shows the limit change: who, when, old and new limits.
    let r = call(&d, &view_a, "GET", "/api/v1/containers/a-web/events", None);
    let events = r.json();
    let update = events
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "container.update" && e["result"] == "ok")
        .unwrap_or_else(|| panic!("no limit change in the timeline: {events:#}"));
    assert_eq!(update["actor"], "op-a");
    assert!(update["at_ms"].as_i64().unwrap() > 0);
    assert_eq!(parse(&update["before"])["limits"]["cpus"], Value::Null);
    assert_eq!(parse(&update["after"])["limits"]["cpus"], 0.5);
    assert_eq!(parse(&update["after"])["limits"]["memory_max"], 64 << 20);
    let actions: Vec<_> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        actions.first().map(String::as_str),
        Some("container.create"),
        "{actions:?}"
    );

    let r = call(
        &d,
        &op_a,
        "POST",
        "/api/v1/containers/a-web/stop",
        Some(json!({"timeout": 1})),
    );
    expect(&r, 200, "stop");
    assert_eq!(r.json()["status"], "exited");
    expect(
        &call(&d, &op_a, "DELETE", "/api/v1/containers/a-web", None),
        204,
        "remove",
    );

    // Every change and every refused attempt is in the audit log, with before/after.
    let rows = audit(&d, &admin);
    let create = find(&rows, "op-a", "container.create", "container:a-web", "ok");
    let spec = parse(&create["after"]);
    assert_eq!(spec["spec"]["team"], "team-a");
    assert_eq!(
        spec["spec"]["env"],
        json!(["SECRET=…"]),
        "env values are not logged"
    );
    assert!(
        !rows.iter().any(|r| r.to_string().contains("hunter2")),
        "secret in the audit log"
    );
    let upd = find(&rows, "op-a", "container.update", "container:a-web", "ok");
    assert_eq!(parse(&upd["after"])["limits"]["memory_max"], 64 << 20);
    assert!(parse(&upd["before"])["limits"].is_object());
    for action in ["freeze", "thaw", "exec", "stop", "remove"] {
        find(
            &rows,
            "op-a",
            &format!("container.{action}"),
            "container:a-web",
            "ok",
        );
    }
    let stop = find(&rows, "op-a", "container.stop", "container:a-web", "ok");
    assert_eq!(parse(&stop["before"])["status"], "running");
    assert_eq!(parse(&stop["after"])["status"], "exited");
    find(&rows, "op-b", "container.create", "container:b-web", "ok");
    for action in ["stop", "kill", "freeze", "exec", "update", "remove"] {
        let row = find(
            &rows,
            "op-a",
            &format!("container.{action}"),
            "container:b-web",
            "denied",
        );
        assert!(row["after"].is_null(), "nothing changed");
    }
    find(
        &rows,
        "op-a",
        "container.create",
        "container:sneaky",
        "denied",
    );
    find(
        &rows,
        "op-a",
        "container.create",
        "container:priv",
        "denied",
    );
    for action in [
        "stop", "restart", "kill", "freeze", "exec", "update", "remove",
    ] {
        find(
            &rows,
            "view-a",
            &format!("container.{action}"),
            "container:a-web",
            "denied",
        );
    }
    find(&rows, "view-a", "container.create", "container:?", "denied");
    find(
        &rows,
        "admin",
        "image.import",
        &format!("image:{}", tarball.display()),
        "ok",
    );
    find(
        &rows,
        "op-a",
        "image.import",
        &format!("image:{}", tarball.display()),
        "denied",
    );
    find(&rows, "op-a", "image.remove", "image:bb:1", "denied");

    // Admin cleans up: team B's container, then the image.
    expect(
        &call(
            &d,
            &admin,
            "DELETE",
            "/api/v1/containers/b-web?force=true",
            None,
        ),
        204,
        "admin removes b-web",
    );
    expect(
        &call(&d, &admin, "DELETE", "/api/v1/images/bb:1", None),
        204,
        "admin removes the image",
    );
    let rows = audit(&d, &admin);
    let rm = find(&rows, "admin", "container.remove", "container:b-web", "ok");
    assert_eq!(parse(&rm["before"])["status"], "running");
    find(&rows, "admin", "image.remove", "image:bb:1", "ok");
}

/// (method, path, content type, body, expected status, expected field)
type HostileCase = (
    &'static str,
    &'static str,
    Option<&'static str>,
    &'static str,
    u16,
    Option<&'static str>,
);

/// Hostile bodies on the container routes: a JSON 4xx naming the field, never a 5xx, and no
/// trick (duplicate keys, arrays, nulls, wrong content type) gets a privileged spec past an
/// operator's check.
#[tokio::test]
async fn hostile_container_requests_get_4xx() {
    let d = Daemon::start();
    let _reaper = Reaper::new(&d);
    let admin = d.admin_token();
    expect(
        &call(
            &d,
            &admin,
            "POST",
            "/api/v1/teams",
            Some(json!({"name": "team-a"})),
        ),
        201,
        "team",
    );
    let body = json!({"name": "op", "role": "operator", "teams": ["team-a"], "password": "a long password 123"});
    expect(
        &call(&d, &admin, "POST", "/api/v1/users", Some(body)),
        201,
        "user",
    );
    let op = d.token_for("op");
    let auth = format!("Bearer {op}");
    let cases: Vec<HostileCase> = vec![
        // (method, path, content-type, body, status, field)
        (
            "POST",
            "/api/v1/containers",
            Some("application/json"),
            r#"{"image":"x","network":"none","network":"host"}"#,
            400,
            Some("network"),
        ),
        (
            "POST",
            "/api/v1/containers",
            Some("application/json"),
            r#"[{"image":"x","network":"host"}]"#,
            400,
            Some("body"),
        ),
        (
            "POST",
            "/api/v1/containers",
            Some("text/plain"),
            r#"{"image":"x"}"#,
            400,
            Some("body"),
        ),
        ("POST", "/api/v1/containers", None, "", 400, Some("body")),
        (
            "POST",
            "/api/v1/containers",
            Some("application/json"),
            r#"{"image":"x","limits":{"cpus":1e400}}"#,
            400,
            Some("limits.cpus"),
        ),
        (
            "POST",
            "/api/v1/containers",
            Some("application/json"),
            r#"{"image":"x","limits":{"pids_max":-1}}"#,
            400,
            Some("limits.pids_max"),
        ),
        (
            "POST",
            "/api/v1/containers",
            Some("application/json"),
            r#"{"image":"x","mounts":[{"type":"bind","destination":"/x","source":7}]}"#,
            400,
            Some("mounts[0].source"),
        ),
        (
            "POST",
            "/api/v1/containers",
            Some("application/json"),
            r#"{"image":"x","privileged":true}"#,
            400,
            Some("privileged"),
        ),
        (
            "POST",
            "/api/v1/containers",
            Some("application/json"),
            r#"{"image":"x"} {"network":"host"}"#,
            400,
            Some("body"),
        ),
        (
            "POST",
            "/api/v1/containers",
            Some("application/json"),
            r#"{"image":"x","team":"../team-a"}"#,
            403,
            None,
        ),
        (
            "POST",
            "/api/v1/containers",
            Some("application/json"),
            "{\"image\":\"x\",\"name\":\"a\\u0000b\"}",
            400,
            Some("name"),
        ),
        (
            "POST",
            "/api/v1/containers/x/stop",
            Some("application/json"),
            r#"{"timeout":1e30}"#,
            400,
            Some("timeout"),
        ),
        (
            "POST",
            "/api/v1/containers/x/stop",
            Some("application/json"),
            r#"{"timeout":99999}"#,
            400,
            Some("timeout"),
        ),
        (
            "POST",
            "/api/v1/containers/x/kill",
            Some("application/json"),
            "nul",
            400,
            Some("body"),
        ),
        (
            "PATCH",
            "/api/v1/containers/x/limits",
            Some("application/json"),
            r#"{"cpus":"1"}"#,
            400,
            Some("cpus"),
        ),
        (
            "GET",
            "/api/v1/containers?all=maybe",
            None,
            "",
            400,
            Some("query"),
        ),
        (
            "DELETE",
            "/api/v1/containers/x?force=1&force=2",
            None,
            "",
            400,
            Some("query"),
        ),
        (
            "GET",
            "/api/v1/containers/x/logs?tail=-1",
            None,
            "",
            400,
            Some("query"),
        ),
        (
            "GET",
            "/api/v1/containers/%2e%2e%2f%2e%2e/events",
            None,
            "",
            404,
            None,
        ),
        (
            "POST",
            "/api/v1/images/import",
            Some("application/json"),
            r#"{"path":"/etc/shadow"}"#,
            403,
            None,
        ),
    ];
    for (method, path, ct, body, status, field) in cases {
        let mut headers = vec![("authorization", auth.as_str())];
        if let Some(ct) = ct {
            headers.push(("content-type", ct));
        }
        let b = (!body.is_empty() || ct.is_some()).then_some(body);
        let r = d.http(method, path, &headers, b);
        assert_eq!(r.status, status, "{method} {path} {body}: {}", r.body);
        assert_eq!(
            r.json()["field"].as_str(),
            field,
            "{method} {path} {body}: {}",
            r.body
        );
    }
    let r = call(&d, &admin, "GET", "/api/v1/containers?all=true", None);
    assert_eq!(r.json(), json!([]), "no hostile request made a container");
}
