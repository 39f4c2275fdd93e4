//! Right-sizing over the API (issue 14 part 3): the shape of
//! `GET /api/v1/{containers,teams}/{name}/recommendation`, the "not enough history" answer of
//! a new container, 400 naming a bad `window` or an unknown key, and who may read it (the
//! container's team: 404 for others, like every container route; a team's members and admins:
//! 403 for others, 404 for no team). The recommendations themselves are proven on the kernel
//! (`kernel::recommend`).

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use serde_json::json;
use tests::{Daemon, call, containers::Reaper, rootfs::Rootfs};

#[test]
fn recommendations_need_history_and_follow_visibility() {
    let d = Daemon::start();
    let _reaper = Reaper::new(&d);
    let admin = d.admin_token();
    let rootfs = Rootfs::new();
    for team in ["reco", "other"] {
        let r = call(
            &d,
            &admin,
            "POST",
            "/api/v1/teams",
            Some(json!({"name": team})),
        );
        assert_eq!(r.status, 201, "{}", r.body);
    }
    for (name, team) in [("recov", "reco"), ("otherv", "other")] {
        d.add_user(name, "viewer", &[team]);
    }
    let r = call(
        &d,
        &admin,
        "POST",
        "/api/v1/containers",
        Some(
            json!({"name": "reco-new", "team": "reco", "rootfs": rootfs.path(),
                    "command": ["/bin/sh", "-c", "exec sleep 1000"],
                    "limits": {"cpus": 1.0, "memory_max": 256 << 20}, "start": true}),
        ),
    );
    assert_eq!(r.status, 201, "{}", r.body);

    // A new container: the shape, no items and the reason.
    let path = "/api/v1/containers/reco-new/recommendation";
    let r = call(&d, &admin, "GET", path, None);
    assert_eq!(r.status, 200, "{}", r.body);
    let rec: wire::Recommendation = serde_json::from_str(&r.body).unwrap();
    assert_eq!(rec.scope, wire::RecommendationScope::Container);
    assert_eq!(rec.name, "reco-new");
    assert_eq!(rec.window_secs, 7 * 86_400, "7 days by default");
    assert_eq!(rec.min_samples, 30);
    assert!(rec.samples < 30, "{rec:?}");
    assert_eq!(
        rec.note,
        Some(format!(
            "not enough history: {} samples, need 30",
            rec.samples
        ))
    );
    assert!(rec.items.is_empty());
    assert!(rec.patch.is_empty());
    assert_eq!(r.json()["patch"], json!({}));
    let created = call(&d, &admin, "GET", "/api/v1/containers/reco-new", None).json()["created_at"]
        .as_i64()
        .unwrap();
    assert!(rec.from >= created, "not before the container: {rec:?}");

    let r = call(&d, &admin, "GET", &format!("{path}?window=24h"), None);
    assert_eq!(r.json()["window_secs"], json!(86_400));
    // A window longer than a year reads a year.
    let r = call(&d, &admin, "GET", &format!("{path}?window=60034d"), None);
    assert_eq!(r.json()["window_secs"], json!(366 * 86_400), "{}", r.body);
    // Bad input: 400 naming the field.
    for (query, field) in [
        ("window=soon", "window"),
        ("window=0s", "window"),
        ("min_samples=1", "min_samples"),
    ] {
        let r = call(&d, &admin, "GET", &format!("{path}?{query}"), None);
        assert_eq!(
            (r.status, r.json()["field"].clone()),
            (400, json!(field)),
            "{query}: {}",
            r.body
        );
    }

    // Visibility: the team's viewer reads it; others get the 404 of a missing container.
    let viewer = d.token_for("recov");
    assert_eq!(call(&d, &viewer, "GET", path, None).status, 200);
    let outsider = d.token_for("otherv");
    let r = call(&d, &outsider, "GET", path, None);
    assert_eq!(r.status, 404, "{}", r.body);
    let ghost = call(
        &d,
        &admin,
        "GET",
        "/api/v1/containers/ghost/recommendation",
        None,
    );
    assert_eq!(ghost.status, 404, "{}", ghost.body);
    assert_eq!(r.json()["code"], ghost.json()["code"], "indistinguishable");
    let r = d.http("GET", path, &[], None);
    assert_eq!(r.status, 401);

    // Teams: members and admins; 403 others, 404 no team.
    let tpath = "/api/v1/teams/reco/recommendation";
    let r = call(&d, &viewer, "GET", tpath, None);
    assert_eq!(r.status, 200, "{}", r.body);
    let rec: wire::Recommendation = serde_json::from_str(&r.body).unwrap();
    assert_eq!(rec.scope, wire::RecommendationScope::Team);
    assert_eq!(rec.name, "reco");
    assert!(rec.items.is_empty() && rec.note.is_some(), "{rec:?}");
    assert_eq!(call(&d, &outsider, "GET", tpath, None).status, 403);
    let r = call(&d, &admin, "GET", "/api/v1/teams/nope/recommendation", None);
    assert_eq!(r.status, 404, "{}", r.body);
    let r = call(&d, &admin, "GET", &format!("{tpath}?window=1y"), None);
    assert_eq!(
        (r.status, r.json()["field"].clone()),
        (400, json!("window"))
    );

    let r = call(
        &d,
        &admin,
        "DELETE",
        "/api/v1/containers/reco-new?force=true",
        None,
    );
    assert_eq!(r.status, 204, "{}", r.body);
}
