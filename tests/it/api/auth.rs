//! The auth layer through real HTTP: credentials on every route, Host allowlist, CSRF, team
//! scoping, login throttling, sessions, tokens, setup, audit, hostile input.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tests::{ADMIN, ADMIN_PASSWORD, Daemon, RawResponse, call};

const JSON: (&str, &str) = ("content-type", "application/json");
const CLI: (&str, &str) = ("x-corral-client", "test");

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

fn login(d: &Daemon, name: &str, password: &str) -> RawResponse {
    let body = json!({"name": name, "password": password}).to_string();
    d.http("POST", "/api/v1/login", &[JSON, CLI], Some(&body))
}

fn create_user(d: &Daemon, admin: &str, name: &str, role: &str, teams: &[&str], password: &str) {
    let r = call(
        d,
        admin,
        "POST",
        "/api/v1/users",
        Some(json!({"name": name, "role": role, "teams": teams, "password": password})),
    );
    assert_eq!(r.status, 201, "create {name}: {}", r.body);
}

/// Every documented route (and a few undocumented ones) answers 401 without credentials,
/// except health, login, setup and the dashboard.
#[test]
fn every_route_needs_credentials_except_public_ones() {
    let d = Daemon::start();
    let doc = d.unix_http("GET", "/api/v1/openapi.json", &[], None).json();
    let public = [
        ("get", "/api/v1/health"),
        ("post", "/api/v1/login"),
        ("get", "/api/v1/setup"),
        ("post", "/api/v1/setup"),
    ];
    let mut checked = 0;
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in ["get", "post", "put", "patch", "delete"] {
            if item.get(method).is_none() {
                continue;
            }
            let concrete = path.replace("{name}", "x").replace("{id}", "1");
            let r = d.http(&method.to_uppercase(), &concrete, &[JSON], Some("{}"));
            if public.contains(&(method, path.as_str())) {
                assert_ne!(r.status, 401, "{method} {path} is public: {}", r.body);
            } else {
                assert_eq!(r.status, 401, "{method} {path}: {}", r.body);
                assert_eq!(r.code(), "unauthenticated");
                assert_eq!(
                    r.header("www-authenticate"),
                    Some("Bearer realm=\"corral\"")
                );
            }
            checked += 1;
        }
    }
    assert!(checked >= 15, "only {checked} routes documented");
    for path in [
        "/api/v1/nope",
        "/api/v1/users/",
        "/api/v1//users",
        "/api/v2/users",
        "/api/v1/events",
    ] {
        assert_eq!(d.http("GET", path, &[], None).status, 401, "{path}");
    }
    // A bad token or cookie is no credential either.
    for h in [
        ("authorization", "Bearer crl_0000"),
        ("authorization", "Basic YWRtaW46YWRtaW4="),
        ("cookie", "corral_session=0000"),
    ] {
        assert_eq!(d.http("GET", "/api/v1/me", &[h], None).status, 401, "{h:?}");
    }
    // The dashboard shell loads so the login page can show, and cannot be framed.
    let shell = d.http("GET", "/", &[], None);
    assert_eq!(shell.status, 200);
    assert_eq!(shell.header("x-frame-options"), Some("DENY"));
    let me = d.unix_http("GET", "/api/v1/me", &[], None);
    assert_eq!(me.header("cache-control"), Some("no-store"));
    assert_eq!(d.http("GET", "/login", &[], None).status, 200);
}

#[test]
fn foreign_host_is_refused_everywhere() {
    let d = Daemon::start_with(&[
        "--allowed-host",
        "corral.example",
        "--allowed-host",
        "box:8443",
    ]);
    let token = d.admin_token();
    let auth = bearer(&token);
    for host in [
        "evil.com",
        "evil.com:7700",
        "localhost.evil.com",
        "127.0.0.1.nip.io",
        "box:8444",
        "",
    ] {
        for path in ["/api/v1/health", "/api/v1/me", "/", "/api/v1/events"] {
            let r = d.http(
                "GET",
                path,
                &[("host", host), ("authorization", &auth)],
                None,
            );
            assert_eq!(r.status, 403, "host {host:?} {path}: {}", r.body);
            assert_eq!(r.code(), "bad_host");
        }
    }
    for host in [
        "localhost:7700",
        "localhost",
        "127.0.0.1:1",
        "[::1]:9999",
        "corral.example:443",
        "box:8443",
    ] {
        let r = d.http(
            "GET",
            "/api/v1/me",
            &[("host", host), ("authorization", &auth)],
            None,
        );
        assert_eq!(r.status, 200, "host {host:?}: {}", r.body);
    }
    // Two Host headers, or an absolute URI naming another host.
    let r = d.http(
        "GET",
        "/api/v1/health",
        &[("host", "localhost"), ("host", "evil.com")],
        None,
    );
    assert!(r.status == 403 || r.status == 400, "{}", r.status);
    let r = d.http(
        "GET",
        "http://evil.com/api/v1/health",
        &[("host", "localhost")],
        None,
    );
    assert_eq!(r.status, 403);
    // The unix socket too: `ssh -L 7700:/run/corral/corral.sock` hands it browser traffic.
    let r = d.unix_http("GET", "/api/v1/me", &[("host", "evil.com")], None);
    assert_eq!(r.status, 403);
}

#[test]
fn csrf_needs_custom_header_and_same_origin() {
    let d = Daemon::start();
    d.admin_token();
    let team = json!({"name": "csrf-team"}).to_string();

    // Login itself is a state change: it needs the custom header and a same origin.
    let body = json!({"name": ADMIN, "password": ADMIN_PASSWORD}).to_string();
    let r = d.http("POST", "/api/v1/login", &[JSON], Some(&body));
    assert_eq!((r.status, r.code().as_str()), (403, "csrf"));
    let r = d.http(
        "POST",
        "/api/v1/login",
        &[JSON, CLI, ("origin", "http://evil.com")],
        Some(&body),
    );
    assert_eq!((r.status, r.code().as_str()), (403, "csrf"));

    let r = login(&d, ADMIN, ADMIN_PASSWORD);
    assert_eq!(r.status, 200, "{}", r.body);
    let cookie = format!("corral_session={}", r.session_cookie().expect("cookie"));
    let csrf = r.json()["csrf_token"].as_str().expect("csrf").to_owned();
    let same = format!("http://127.0.0.1:{}", d.port);
    let cases: Vec<(Vec<(&str, &str)>, u16)> = vec![
        (vec![], 403),
        (vec![("x-corral-csrf", "wrong")], 403),
        (vec![CLI], 403),
        (
            vec![("x-corral-csrf", &csrf), ("origin", "http://evil.com")],
            403,
        ),
        (vec![("x-corral-csrf", &csrf), ("origin", "null")], 403),
        (
            vec![("x-corral-csrf", &csrf), ("origin", "http://localhost:1")],
            403,
        ),
        (
            vec![("x-corral-csrf", &csrf), ("sec-fetch-site", "cross-site")],
            403,
        ),
        (
            vec![("x-corral-csrf", &csrf), ("sec-fetch-site", "same-site")],
            403,
        ),
        (
            vec![
                ("x-corral-csrf", &csrf),
                ("origin", &same),
                ("sec-fetch-site", "same-origin"),
            ],
            201,
        ),
    ];
    for (extra, want) in cases {
        let mut h = vec![("cookie", cookie.as_str()), JSON];
        h.extend(extra.iter().copied());
        let r = d.http("POST", "/api/v1/teams", &h, Some(&team));
        assert_eq!(r.status, want, "{extra:?}: {}", r.body);
        if want == 403 {
            assert_eq!(r.code(), "csrf");
        }
    }
    // GET never changes state, so it needs no CSRF header.
    let r = d.http("GET", "/api/v1/teams", &[("cookie", &cookie)], None);
    assert_eq!(r.status, 200);
    // Root over the unix socket needs the custom header on state changes (socket forwarded to a browser).
    let r = d.unix_http(
        "POST",
        "/api/v1/teams",
        &[JSON],
        Some(&json!({"name": "t2"}).to_string()),
    );
    assert_eq!((r.status, r.code().as_str()), (403, "csrf"));
    // A bearer token is exempt (browsers cannot attach one cross-site) but Origin still applies.
    let token = d.token_for(ADMIN);
    let r = call(
        &d,
        &token,
        "POST",
        "/api/v1/teams",
        Some(json!({"name": "t3"})),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let auth = bearer(&token);
    let r = d.http(
        "POST",
        "/api/v1/teams",
        &[
            ("authorization", &auth),
            JSON,
            ("origin", "http://evil.com"),
        ],
        Some(&json!({"name": "t4"}).to_string()),
    );
    assert_eq!(r.status, 403);
}

#[test]
fn operator_of_team_a_cannot_see_or_touch_team_b() {
    let d = Daemon::start();
    let admin = d.admin_token();
    for t in ["team-a", "team-b"] {
        let r = call(
            &d,
            &admin,
            "POST",
            "/api/v1/teams",
            Some(json!({"name": t, "description": t})),
        );
        assert_eq!(r.status, 201, "{}", r.body);
    }
    create_user(
        &d,
        &admin,
        "opa",
        "operator",
        &["team-a"],
        "operator-a-password",
    );
    create_user(
        &d,
        &admin,
        "viewa",
        "viewer",
        &["team-a"],
        "viewer-a-password",
    );
    let op = d.token_for("opa");
    let viewer = d.token_for("viewa");

    let r = call(&d, &op, "GET", "/api/v1/teams", None);
    let names: Vec<String> = r
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["team-a"]);
    assert_eq!(
        call(&d, &op, "GET", "/api/v1/teams/team-a", None).status,
        200
    );
    for (method, path, body) in [
        ("GET", "/api/v1/teams/team-b", None),
        ("GET", "/api/v1/teams/no-such-team", None),
        (
            "PATCH",
            "/api/v1/teams/team-b",
            Some(json!({"description": "pwned"})),
        ),
        ("DELETE", "/api/v1/teams/team-b", None),
        ("DELETE", "/api/v1/teams/team-a", None),
        ("POST", "/api/v1/teams", Some(json!({"name": "team-c"}))),
        ("GET", "/api/v1/users", None),
        ("GET", "/api/v1/users/viewa", None),
        (
            "POST",
            "/api/v1/users",
            Some(json!({"name": "evil", "role": "admin", "password": "12345678"})),
        ),
        ("PATCH", "/api/v1/users/opa", Some(json!({"role": "admin"}))),
        (
            "PATCH",
            "/api/v1/users/opa",
            Some(json!({"teams": ["team-a", "team-b"]})),
        ),
        (
            "POST",
            "/api/v1/tokens",
            Some(json!({"name": "x", "user": "admin"})),
        ),
        ("GET", "/api/v1/audit", None),
    ] {
        let r = call(&d, &op, method, path, body);
        assert_eq!(r.status, 403, "operator {method} {path}: {}", r.body);
    }
    let r = call(
        &d,
        &op,
        "PATCH",
        "/api/v1/teams/team-a",
        Some(json!({"description": "ok"})),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    // The operator reads itself, not others.
    assert_eq!(call(&d, &op, "GET", "/api/v1/users/opa", None).status, 200);

    // A viewer reads its team and changes nothing.
    assert_eq!(
        call(&d, &viewer, "GET", "/api/v1/teams/team-a", None).status,
        200
    );
    let r = call(
        &d,
        &viewer,
        "PATCH",
        "/api/v1/teams/team-a",
        Some(json!({"description": "x"})),
    );
    assert_eq!(r.status, 403);
    assert_eq!(
        call(&d, &viewer, "GET", "/api/v1/teams/team-b", None).status,
        403
    );

    // Team b is untouched, and the refusals are in the audit log.
    let b = call(&d, &admin, "GET", "/api/v1/teams/team-b", None).json();
    assert_eq!(b["description"], "team-b");
    let audit = call(&d, &admin, "GET", "/api/v1/audit?limit=1000", None).json();
    assert!(
        audit.as_array().unwrap().iter().any(|e| e["actor"] == "opa"
            && e["result"] == "denied"
            && e["target"] == "team:team-b")
    );
    // Changing a user's teams takes effect at once (no stale grant in a session or token).
    let r = call(
        &d,
        &admin,
        "PATCH",
        "/api/v1/users/opa",
        Some(json!({"teams": ["team-b"]})),
    );
    assert_eq!(r.status, 200);
    assert_eq!(
        call(&d, &op, "GET", "/api/v1/teams/team-a", None).status,
        403
    );
}

#[test]
fn brute_force_meets_backoff_without_lockout_and_unknown_users_look_the_same() {
    let d = Daemon::start();
    let admin = d.admin_token();
    create_user(&d, &admin, "victim", "viewer", &[], "the-real-password");
    let mut answers = Vec::new();
    for name in ["victim", "ghost"] {
        let mut seq = Vec::new();
        for _ in 0..4 {
            let r = login(&d, name, "guess-guess");
            seq.push((r.status, r.body.clone()));
        }
        // The 5th try is throttled, even with the right password.
        let r = login(&d, name, "the-real-password");
        assert_eq!(r.status, 429, "{name}: {}", r.body);
        let retry: u64 = r
            .header("retry-after")
            .expect("retry-after")
            .parse()
            .unwrap();
        assert!((1..=2).contains(&retry), "{retry}");
        seq.push((r.status, r.json()["code"].to_string()));
        answers.push(seq);
    }
    assert_eq!(
        answers[0], answers[1],
        "an unknown user is answered exactly like a known one"
    );
    assert!(answers[0][..4].iter().all(|(s, _)| *s == 401));
    // Other accounts are not affected (no lockout of the admin by an attacker on another name).
    assert_eq!(login(&d, ADMIN, ADMIN_PASSWORD).status, 200);
    // No permanent lockout: after the wait the right password works and resets the counter.
    std::thread::sleep(Duration::from_millis(1100));
    let r = login(&d, "victim", "the-real-password");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(login(&d, "victim", "wrong-again").status, 401);
    // Every attempt is in the audit log.
    let audit = call(
        &d,
        &admin,
        "GET",
        "/api/v1/audit?action=login&limit=1000",
        None,
    )
    .json();
    let rows = audit.as_array().unwrap();
    let count = |actor: &str, result: &str| {
        rows.iter()
            .filter(|e| e["actor"] == actor && e["result"] == result)
            .count()
    };
    assert_eq!(count("victim", "failed"), 5);
    assert_eq!(count("victim", "throttled"), 1);
    assert_eq!(count("victim", "ok"), 1);
    assert_eq!(count("ghost", "failed"), 4);
}

#[test]
fn login_timing_is_similar_for_unknown_users() {
    let d = Daemon::start();
    d.admin_token();
    let time = |name: &str| {
        let mut v: Vec<Duration> = (0..3)
            .map(|i| {
                let t = Instant::now();
                let r = login(&d, name, &format!("wrong-password-{i}"));
                assert_eq!(r.status, 401);
                t.elapsed()
            })
            .collect();
        v.sort();
        v[1]
    };
    let known = time(ADMIN);
    let unknown = time("nobody-here");
    println!("login median: known user {known:?}, unknown user {unknown:?}");
    // Both pay one argon2 verification; a missing user that skipped it would be ~100x faster.
    // The 10x margin only catches that, so a busy machine does not make this flaky.
    assert!(
        unknown * 10 > known && known * 10 > unknown,
        "known {known:?} unknown {unknown:?}"
    );
}

#[test]
fn session_id_changes_at_login_and_dies_at_logout() {
    let d = Daemon::start();
    d.admin_token();
    let first = login(&d, ADMIN, ADMIN_PASSWORD);
    let second = login(&d, ADMIN, ADMIN_PASSWORD);
    let (a, b) = (
        first.session_cookie().unwrap(),
        second.session_cookie().unwrap(),
    );
    assert_ne!(a, b);
    assert_eq!(a.len(), 64);
    let set_cookie = first.header("set-cookie").unwrap();
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(set_cookie.contains(attr), "{set_cookie}");
    }
    // A session id the browser carried into the login (fixation) is replaced and killed.
    let fixed = format!("corral_session={a}");
    let body = json!({"name": ADMIN, "password": ADMIN_PASSWORD}).to_string();
    let r = d.http(
        "POST",
        "/api/v1/login",
        &[JSON, CLI, ("cookie", &fixed)],
        Some(&body),
    );
    let c = r.session_cookie().unwrap();
    assert_ne!(c, a);
    assert_eq!(
        d.http("GET", "/api/v1/me", &[("cookie", &fixed)], None)
            .status,
        401
    );

    let cookie = format!("corral_session={c}");
    let me = d.http("GET", "/api/v1/me", &[("cookie", &cookie)], None);
    assert_eq!(me.status, 200);
    assert_eq!(me.json()["via"], "session");
    let csrf = me.json()["csrf_token"].as_str().unwrap().to_owned();
    let r = d.http(
        "POST",
        "/api/v1/logout",
        &[("cookie", &cookie), ("x-corral-csrf", &csrf)],
        None,
    );
    assert_eq!(r.status, 204, "{}", r.body);
    assert!(r.header("set-cookie").unwrap().contains("Max-Age=0"));
    // Replaying the cookie after logout fails: the session is gone server-side.
    assert_eq!(
        d.http("GET", "/api/v1/me", &[("cookie", &cookie)], None)
            .status,
        401
    );
    // The other session is unaffected.
    assert_eq!(
        d.http(
            "GET",
            "/api/v1/me",
            &[("cookie", &format!("corral_session={b}"))],
            None
        )
        .status,
        200
    );
}

#[test]
fn sessions_expire_when_idle_and_at_the_absolute_limit() {
    let d = Daemon::start_with(&["--session-idle-secs", "2", "--session-max-secs", "4"]);
    d.admin_token();
    let idle = format!(
        "corral_session={}",
        login(&d, ADMIN, ADMIN_PASSWORD).session_cookie().unwrap()
    );
    let busy = format!(
        "corral_session={}",
        login(&d, ADMIN, ADMIN_PASSWORD).session_cookie().unwrap()
    );
    let start = Instant::now();
    // Keep one session busy every 0.5 s; leave the other idle.
    while start.elapsed() < Duration::from_millis(3000) {
        assert_eq!(
            d.http("GET", "/api/v1/me", &[("cookie", &busy)], None)
                .status,
            200,
            "{:?}",
            start.elapsed()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(
        d.http("GET", "/api/v1/me", &[("cookie", &idle)], None)
            .status,
        401,
        "idle timeout"
    );
    while start.elapsed() < Duration::from_millis(5200) {
        std::thread::sleep(Duration::from_millis(500));
        let _ = d.http("GET", "/api/v1/me", &[("cookie", &busy)], None);
    }
    assert_eq!(
        d.http("GET", "/api/v1/me", &[("cookie", &busy)], None)
            .status,
        401,
        "absolute timeout"
    );
}

#[tokio::test]
async fn unix_socket_root_is_admin_without_a_token() {
    let d = Daemon::start();
    let me: wire::Me = d.unix_client().get("/api/v1/me").await.unwrap();
    assert_eq!(
        (me.name.as_str(), me.role, me.via.as_str()),
        ("root", wire::Role::Admin, "unix")
    );
    let users: Vec<wire::User> = d.unix_client().get("/api/v1/users").await.unwrap();
    assert!(users.is_empty());
    // The same request over TCP, even from 127.0.0.1, needs credentials.
    let err = d
        .tcp_client(None)
        .get::<wire::Me>("/api/v1/me")
        .await
        .unwrap_err();
    assert!(
        matches!(err, backend::client::ClientError::Api { status, .. } if status.as_u16() == 401)
    );
}

#[test]
fn users_change_their_own_password_and_other_sessions_end() {
    let d = Daemon::start();
    let admin = d.admin_token();
    create_user(&d, &admin, "dave", "viewer", &[], "old-password");
    let a = login(&d, "dave", "old-password");
    let b = login(&d, "dave", "old-password");
    let cookie_a = format!("corral_session={}", a.session_cookie().unwrap());
    let cookie_b = format!("corral_session={}", b.session_cookie().unwrap());
    let csrf = a.json()["csrf_token"].as_str().unwrap().to_owned();
    let change = |current: &str| {
        let body =
            json!({"current_password": current, "new_password": "new-password-ü"}).to_string();
        d.http(
            "PUT",
            "/api/v1/me/password",
            &[("cookie", &cookie_a), ("x-corral-csrf", &csrf), JSON],
            Some(&body),
        )
    };
    assert_eq!(change("wrong-password").status, 401);
    assert_eq!(change("old-password").status, 204);
    assert_eq!(
        d.http("GET", "/api/v1/me", &[("cookie", &cookie_a)], None)
            .status,
        200
    );
    assert_eq!(
        d.http("GET", "/api/v1/me", &[("cookie", &cookie_b)], None)
            .status,
        401
    );
    assert_eq!(login(&d, "dave", "old-password").status, 401);
    assert_eq!(login(&d, "dave", "new-password-ü").status, 200);
}

#[test]
fn setup_link_works_once() {
    let d = Daemon::start();
    let token = d.setup_token().expect("setup token file");
    assert!(d.log().contains("/setup#"), "the link is logged");
    assert_eq!(
        d.http("GET", "/api/v1/setup", &[], None).json()["needed"],
        true
    );
    let try_setup = |t: &str, name: &str| {
        let body =
            json!({"token": t, "name": name, "password": "first-admin-password"}).to_string();
        d.http("POST", "/api/v1/setup", &[JSON, CLI], Some(&body))
    };
    assert_eq!(try_setup("0".repeat(64).as_str(), "boss").status, 403);
    assert_eq!(try_setup(&token, "Bad Name").status, 400);
    let r = try_setup(&token, "boss");
    assert_eq!(r.status, 201, "{}", r.body);
    assert!(r.session_cookie().is_some());
    assert_eq!(r.json()["user"]["role"], "admin");
    assert_eq!(
        try_setup(&token, "boss2").status,
        403,
        "the token works once"
    );
    assert!(d.setup_token().is_none(), "token file removed");
    assert_eq!(
        d.http("GET", "/api/v1/setup", &[], None).json()["needed"],
        false
    );
    assert_eq!(login(&d, "boss", "first-admin-password").status, 200);
}

#[test]
fn tokens_are_hashed_at_rest_and_revocable() {
    let d = Daemon::start();
    let admin = d.admin_token();
    create_user(&d, &admin, "script", "viewer", &[], "script-password");
    let s = login(&d, "script", "script-password");
    let cookie = format!("corral_session={}", s.session_cookie().unwrap());
    let csrf = s.json()["csrf_token"].as_str().unwrap().to_owned();
    let r = d.http(
        "POST",
        "/api/v1/tokens",
        &[("cookie", &cookie), ("x-corral-csrf", &csrf), JSON],
        Some(&json!({"name": "ci", "expires_in_days": 30}).to_string()),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let token = r.json()["token"].as_str().unwrap().to_owned();
    let id = r.json()["info"]["id"].as_i64().unwrap();
    assert!(r.json()["info"]["expires_at"].is_i64());
    assert_eq!(
        call(&d, &token, "GET", "/api/v1/me", None).json()["name"],
        "script"
    );
    // A viewer sees only its own tokens.
    let mine = call(&d, &token, "GET", "/api/v1/tokens", None).json();
    assert!(
        mine.as_array()
            .unwrap()
            .iter()
            .all(|t| t["user"] == "script")
    );
    // Neither the token nor the session id is stored in clear.
    let db = rusqlite::Connection::open(d.state.path().join("state/corral.db")).unwrap();
    let secret_in_db = |s: &str| -> bool {
        let mut found = false;
        for table in ["api_tokens", "sessions"] {
            let mut stmt = db.prepare(&format!("SELECT * FROM {table}")).unwrap();
            let n = stmt.column_count();
            let mut rows = stmt.query([]).unwrap();
            while let Some(row) = rows.next().unwrap() {
                for i in 0..n {
                    let v: rusqlite::types::Value = row.get(i).unwrap();
                    if let rusqlite::types::Value::Text(t) = v {
                        found |= t.contains(s);
                    }
                }
            }
        }
        found
    };
    assert!(!secret_in_db(&token));
    assert!(!secret_in_db(s.session_cookie().unwrap().as_str()));
    // Another user's token cannot be revoked by a non-admin.
    let admin_tokens = call(&d, &admin, "GET", "/api/v1/tokens", None).json();
    let admin_id = admin_tokens
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["user"] == ADMIN)
        .unwrap()["id"]
        .as_i64()
        .unwrap();
    assert_eq!(
        call(
            &d,
            &token,
            "DELETE",
            &format!("/api/v1/tokens/{admin_id}"),
            None
        )
        .status,
        404
    );
    assert_eq!(
        call(&d, &token, "DELETE", &format!("/api/v1/tokens/{id}"), None).status,
        204
    );
    assert_eq!(
        call(&d, &token, "GET", "/api/v1/me", None).status,
        401,
        "revoked"
    );
    // Deleting a user ends its sessions.
    assert_eq!(
        call(&d, &admin, "DELETE", "/api/v1/users/script", None).status,
        204
    );
    assert_eq!(
        d.http("GET", "/api/v1/me", &[("cookie", &cookie)], None)
            .status,
        401
    );
}

#[test]
fn audit_log_is_append_only_and_records_changes() {
    let d = Daemon::start();
    let admin = d.admin_token();
    let r = call(
        &d,
        &admin,
        "POST",
        "/api/v1/teams",
        Some(json!({"name": "audited", "description": "one"})),
    );
    assert_eq!(r.status, 201);
    let r = call(
        &d,
        &admin,
        "PATCH",
        "/api/v1/teams/audited",
        Some(json!({"description": "two"})),
    );
    assert_eq!(r.status, 200);
    let rows = call(&d, &admin, "GET", "/api/v1/audit", None).json();
    let update = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "team.update")
        .expect("team.update row");
    assert_eq!(update["actor"], ADMIN);
    assert_eq!(update["via"], "token");
    assert_eq!(update["result"], "ok");
    let before: Value = serde_json::from_str(update["before"].as_str().unwrap()).unwrap();
    let after: Value = serde_json::from_str(update["after"].as_str().unwrap()).unwrap();
    assert_eq!(
        (
            before["description"].as_str(),
            after["description"].as_str()
        ),
        (Some("one"), Some("two"))
    );
    // The table refuses UPDATE and DELETE, even to root with the database file.
    let db = rusqlite::Connection::open(d.state.path().join("state/corral.db")).unwrap();
    assert!(
        db.execute("UPDATE audit_log SET result = 'ok'", [])
            .is_err()
    );
    assert!(db.execute("DELETE FROM audit_log", []).is_err());
    // Admin only.
    create_user(&d, &admin, "peek", "viewer", &[], "peek-password");
    assert_eq!(
        call(&d, &d.token_for("peek"), "GET", "/api/v1/audit", None).status,
        403
    );
}

#[test]
fn hostile_input_gets_4xx_never_5xx() {
    let d = Daemon::start();
    let admin = d.admin_token();
    let auth = bearer(&admin);
    let a = ("authorization", auth.as_str());
    let post = |path: &str, headers: &[(&str, &str)], body: &[u8]| {
        d.http_bytes("POST", path, headers, body)
    };
    type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, Vec<u8>, u16);
    let cases: Vec<Case> = vec![
        (
            "unknown field",
            vec![a, JSON],
            br#"{"name":"t","description":"","admin":true}"#.to_vec(),
            400,
        ),
        (
            "duplicate key",
            vec![a, JSON],
            br#"{"name":"t","name":"u"}"#.to_vec(),
            400,
        ),
        ("no content type", vec![a], br#"{"name":"t"}"#.to_vec(), 400),
        (
            "form content type",
            vec![a, ("content-type", "application/x-www-form-urlencoded")],
            b"name=t".to_vec(),
            400,
        ),
        ("empty body", vec![a, JSON], Vec::new(), 400),
        (
            "trailing data",
            vec![a, JSON],
            br#"{"name":"t"} {}"#.to_vec(),
            400,
        ),
        (
            "invalid utf-8",
            vec![a, JSON],
            b"{\"name\":\"\xff\xfe\"}".to_vec(),
            400,
        ),
        (
            "deep nesting",
            vec![a, JSON],
            format!("{}{}", "[".repeat(10000), "]".repeat(10000)).into_bytes(),
            400,
        ),
        ("wrong type", vec![a, JSON], br#"{"name":12}"#.to_vec(), 400),
        ("null", vec![a, JSON], b"null".to_vec(), 400),
        (
            "array for object",
            vec![a, JSON],
            br#"["t", ""]"#.to_vec(),
            400,
        ),
        (
            "path traversal team",
            vec![a, JSON],
            br#"{"name":"../../etc"}"#.to_vec(),
            400,
        ),
        (
            "nul in name",
            vec![a, JSON],
            b"{\"name\":\"a\\u0000b\"}".to_vec(),
            400,
        ),
        ("too large", vec![a, JSON], vec![b' '; 2 << 20], 413),
    ];
    for (what, headers, body, want) in cases {
        let r = post("/api/v1/teams", &headers, &body);
        assert_eq!(r.status, want, "{what}: {}", r.body);
    }
    for (path, want) in [
        ("/api/v1/tokens/abc", 400),
        ("/api/v1/tokens/99999999999999999999", 400),
        ("/api/v1/tokens/-1", 404),
    ] {
        let r = d.http("DELETE", path, &[a], None);
        assert_eq!(r.status, want, "{path}: {}", r.body);
        assert!(r.json()["message"].is_string());
    }
    for q in [
        "limit=0",
        "limit=abc",
        "limit=1001",
        "bogus=1",
        "before_id=x",
    ] {
        let r = d.http("GET", &format!("/api/v1/audit?{q}"), &[a], None);
        assert_eq!(r.status, 400, "{q}: {}", r.body);
    }
    // Passwords: long and Unicode ones are kept whole; a prefix does not log in.
    let long = format!("{}🔑ünïcødé", "p".repeat(1016));
    assert_eq!(long.chars().count(), 1024);
    let r = call(
        &d,
        &admin,
        "POST",
        "/api/v1/users",
        Some(json!({"name": "longpw", "role": "viewer", "password": long})),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(login(&d, "longpw", &long).status, 200);
    assert_eq!(login(&d, "longpw", &long[..1016]).status, 401);
    assert_eq!(login(&d, "longpw", &long.replace('ü', "u")).status, 401);
    let r = call(
        &d,
        &admin,
        "POST",
        "/api/v1/users",
        Some(json!({"name": "toolong", "role": "viewer", "password": "é".repeat(1025)})),
    );
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["field"], "password");
    let r = call(
        &d,
        &admin,
        "POST",
        "/api/v1/users",
        Some(json!({"name": "short", "role": "viewer", "password": "1234567"})),
    );
    assert_eq!(r.status, 400);
    let r = call(
        &d,
        &admin,
        "POST",
        "/api/v1/users",
        Some(json!({"name": "r", "role": "superuser", "password": "12345678"})),
    );
    assert_eq!(r.status, 400);
    // The last admin cannot be demoted or deleted.
    assert_eq!(
        call(
            &d,
            &admin,
            "PATCH",
            "/api/v1/users/admin",
            Some(json!({"role": "viewer"}))
        )
        .status,
        409
    );
    assert_eq!(
        call(&d, &admin, "DELETE", "/api/v1/users/admin", None).status,
        409
    );
    // The daemon is still healthy and logged no panic.
    assert_eq!(d.http("GET", "/api/v1/health", &[], None).status, 200);
    assert!(!d.log().contains("panicked"), "{}", d.log());
}

#[test]
fn cli_manages_users_tokens_and_reads_audit() {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let d = Daemon::start();
    d.admin_token();
    let unix = format!("unix://{}", d.socket.display());
    let corral = |args: &[&str], stdin: &str, token: Option<&str>| {
        let mut cmd = Command::new(tests::corral_bin());
        cmd.args(args)
            .env_remove("CORRAL_TOKEN")
            .env_remove("CORRAL_HOST");
        if let Some(t) = token {
            cmd.env("CORRAL_TOKEN", t);
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, _, err) = corral(&["--host", &unix, "team", "add", "cli-team"], "", None);
    assert!(ok, "{err}");
    let (ok, out, err) = corral(
        &[
            "--host", &unix, "user", "add", "carol", "--role", "operator", "--team", "cli-team",
        ],
        "  spaces kept ü \n",
        None,
    );
    assert!(ok, "{err}");
    assert!(out.contains("created carol"), "{out}");
    assert_eq!(login(&d, "carol", "  spaces kept ü ").status, 200);
    let (ok, out, err) = corral(
        &[
            "--host", &unix, "token", "create", "laptop", "--user", "carol",
        ],
        "",
        None,
    );
    assert!(ok, "{err}");
    let token = out.trim().to_owned();
    assert!(token.starts_with("crl_"), "{out}");
    let tcp = d.url();
    let (ok, out, err) = corral(&["--host", &tcp, "token", "ls"], "", Some(&token));
    assert!(ok, "{err}");
    assert!(out.contains("laptop"), "{out}");
    let (ok, _, err) = corral(&["--host", &tcp, "user", "ls"], "", Some(&token));
    assert!(
        !ok && err.contains("admin"),
        "an operator cannot list users: {err}"
    );
    let (ok, _, err) = corral(&["--host", &tcp, "user", "ls"], "", None);
    assert!(!ok && err.contains("authentication required"), "{err}");
    let (ok, _, err) = corral(
        &["--host", &unix, "user", "passwd", "carol"],
        "a-new-password\n",
        None,
    );
    assert!(ok, "{err}");
    assert_eq!(login(&d, "carol", "a-new-password").status, 200);
    let (ok, out, err) = corral(&["--host", &unix, "audit", "--limit", "200"], "", None);
    assert!(ok, "{err}");
    for action in [
        "user.create",
        "user.update",
        "token.create",
        "login",
        "team.create",
    ] {
        assert!(out.contains(action), "{action} missing from:\n{out}");
    }
    let (ok, _, err) = corral(&["--host", &unix, "user", "rm", "carol"], "", None);
    assert!(ok, "{err}");
    let (ok, _, _) = corral(&["--host", &tcp, "token", "ls"], "", Some(&token));
    assert!(!ok, "the deleted user's token is dead");
}

/// A non-root peer on the unix socket is refused even if the file modes would let it in
/// (defence in depth behind the 0600 socket in a 0700 directory).
#[test]
fn unix_socket_refuses_non_root_peers() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    let d = Daemon::start();
    let set = |p: &std::path::Path, mode| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap()
    };
    set(d.state.path(), 0o755);
    set(d.socket.parent().unwrap(), 0o711);
    set(&d.socket, 0o666);
    let out = std::process::Command::new(tests::corral_bin())
        .args([
            "--host",
            &format!("unix://{}", d.socket.display()),
            "user",
            "ls",
        ])
        .env_remove("CORRAL_TOKEN")
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("the unix socket is for root only (peer uid 65534)"),
        "{err}"
    );
}

/// What a WebSocket attempt sends beyond the upgrade, and the status it must get.
type WsCase<'a> = (&'a str, Vec<(&'a str, &'a str)>, u16);

/// Cross-site WebSocket hijacking (issue 15): a page on another origin opens
/// `ws://127.0.0.1:PORT/api/v1/containers/NAME/exec` with the victim's cookie. The guard refuses
/// a foreign Origin, and a session that does not offer its CSRF token as a subprotocol; with
/// both right the request reaches the handler (404 for a container that does not exist). A
/// plain GET of the route is a 400 naming the upgrade.
#[test]
fn websocket_routes_refuse_cross_site_and_tokenless_sessions() {
    let d = Daemon::start();
    d.admin_token();
    let r = login(&d, ADMIN, ADMIN_PASSWORD);
    assert_eq!(r.status, 200, "{}", r.body);
    let cookie = format!("corral_session={}", r.session_cookie().expect("cookie"));
    let csrf = r.json()["csrf_token"].as_str().expect("csrf").to_owned();
    let same = format!("http://127.0.0.1:{}", d.port);
    let good = format!("corral.term.v1, corral-csrf.{csrf}");
    let ws = [
        ("connection", "upgrade"),
        ("upgrade", "websocket"),
        ("sec-websocket-version", "13"),
        ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ];
    for path in [
        "/api/v1/containers/nope/exec",
        "/api/v1/containers/nope/attach",
    ] {
        let cases: Vec<WsCase<'_>> = vec![
            (
                "foreign origin",
                vec![
                    ("origin", "http://evil.com"),
                    ("sec-websocket-protocol", &good),
                ],
                403,
            ),
            (
                "null origin",
                vec![("origin", "null"), ("sec-websocket-protocol", &good)],
                403,
            ),
            (
                "no csrf token",
                vec![
                    ("origin", &same),
                    ("sec-websocket-protocol", "corral.term.v1"),
                ],
                403,
            ),
            (
                "wrong csrf token",
                vec![
                    ("origin", &same),
                    ("sec-websocket-protocol", "corral-csrf.wrong"),
                ],
                403,
            ),
            ("no origin, no token", vec![], 403),
            (
                "same origin with the token",
                vec![("origin", &same), ("sec-websocket-protocol", &good)],
                404,
            ),
        ];
        for (what, extra, want) in cases {
            let mut headers: Vec<(&str, &str)> = ws.to_vec();
            headers.push(("cookie", &cookie));
            headers.extend(extra);
            let r = d.http("GET", path, &headers, None);
            assert_eq!(r.status, want, "{path} {what}: {}", r.body);
            if want == 403 {
                assert_eq!(r.code(), "csrf", "{path} {what}: {}", r.body);
            }
        }
    }
    // Not an upgrade at all: a 400 that says what the route speaks.
    let token = d.admin_token();
    let auth = format!("Bearer {token}");
    let r = d.http(
        "GET",
        "/api/v1/containers/nope/exec",
        &[("authorization", &auth)],
        None,
    );
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("WebSocket"), "{}", r.body);
}
