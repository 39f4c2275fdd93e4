//! A team pool in the dashboard: from the teams list to the team's page, its ceilings as the
//! kernel enforces them, and the admins' form, which sends only the fields changed (an emptied
//! field removes that limit). Screenshot `team` in the artifacts dir.

use tests::{ADMIN, ADMIN_PASSWORD, Daemon, browser::Browser, containers::Reaper};

#[tokio::test]
async fn team_page_shows_and_changes_the_pooled_ceilings() {
    let daemon = Daemon::start();
    let _reaper = Reaper::new(&daemon);
    let admin = daemon.admin_token();
    let Some(b) = Browser::start().await else {
        return;
    };
    let base = daemon.url();
    let h = format!("Bearer {admin}");
    let headers = [
        ("authorization", h.as_str()),
        ("content-type", "application/json"),
    ];
    let r = daemon.http(
        "POST",
        "/api/v1/teams",
        &headers,
        Some(r#"{"name":"pool-web"}"#),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let r = daemon.http(
        "PATCH",
        "/api/v1/teams/pool-web/limits",
        &headers,
        Some(r#"{"memory_max":268435456,"pids_max":100}"#),
    );
    assert_eq!(r.status, 200, "{}", r.body);

    b.open(&base, "/login").await;
    b.fill("#f-name", ADMIN).await;
    b.fill("#f-password", ADMIN_PASSWORD).await;
    b.click("[data-testid=sign-in]").await;
    b.wait_for("[data-testid=whoami]").await;
    b.open(&base, "/billing").await;
    b.click("[data-testid=team-link]").await;
    b.wait_text("[data-testid=team-ceilings] tr[data-knob=pids_max]", "100")
        .await;
    b.wait_text("[data-testid=team-ceilings] tr[data-knob=cpus]", "no limit")
        .await;
    // The form is filled with the kernel's values; a bad value is shown beside its field.
    b.fill("#f-cpus", "lots").await;
    b.click("[data-testid=apply-team-limits]").await;
    b.wait_text("[data-field=cpus]", "not a number").await;
    b.fill("#f-cpus", "0.5").await;
    b.fill("#f-pids_max", "max").await;
    b.click("[data-testid=apply-team-limits]").await;
    b.wait_for("[data-testid=team-limits-saved]").await;
    b.wait_text("[data-testid=team-ceilings] tr[data-knob=cpus]", "0.5")
        .await;
    b.wait_text(
        "[data-testid=team-ceilings] tr[data-knob=pids_max]",
        "no limit",
    )
    .await;
    b.screenshot("team").await;
    let r = daemon.http("GET", "/api/v1/teams/pool-web/limits", &headers, None);
    let l = r.json();
    assert_eq!(l["cpus"], 0.5, "{}", r.body);
    assert!(l.get("pids_max").is_none(), "{}", r.body);
    assert_eq!(l["memory_max"], 268435456, "untouched: {}", r.body);
    b.close().await;
}
