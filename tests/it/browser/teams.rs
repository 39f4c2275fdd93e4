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

    b.sign_in(&base, ADMIN, ADMIN_PASSWORD).await;
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

/// Runs a JS statement block in the page (through `wait_js`, which evaluates an expression).
async fn js(b: &Browser, body: &str) {
    b.wait_js(&format!("(() => {{ {body}; return true; }})()"), 10, |v| {
        v == &serde_json::Value::Bool(true)
    })
    .await;
}

async fn ladder_rows(b: &Browser, n: u64) {
    b.wait_js(
        "document.querySelectorAll('[data-testid=ladder-row]').length",
        10,
        |v| v.as_u64() == Some(n),
    )
    .await;
}

/// Issue 13 part 3: a team's page draws the pool's history (a container of the team ran) with
/// its ceiling as a limit line, shows its budget (none yet), links its statements, and gives
/// admins the budget form with the ladder editor (client-side errors beside the row; the
/// server's answer beside its field). Screenshots `team-overview`, `team-budget-panel` and
/// `team-budget-form` and `team-budget-saved`.
#[tokio::test]
async fn team_page_draws_history_and_edits_the_budget() {
    let daemon = Daemon::start_with(&["--sample-interval", "1"]);
    let _reaper = Reaper::new(&daemon);
    let admin = daemon.admin_token();
    let Some(b) = Browser::start().await else {
        return;
    };
    let rootfs = tests::rootfs::Rootfs::new();
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
        Some(r#"{"name":"pool-hist"}"#),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let r = daemon.http(
        "PATCH",
        "/api/v1/teams/pool-hist/limits",
        &headers,
        Some(r#"{"cpus":1.5,"memory_max":268435456}"#),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    // A container of the team runs for a moment and exits: the team's history has its CPU.
    let spec = serde_json::json!({"name": "pool-hist-burn", "team": "pool-hist",
        "rootfs": rootfs.path(), "start": true,
        "command": ["/bin/sh", "-c", "end=$(($(date +%s) + 6)); while [ $(date +%s) -lt $end ]; do :; done"]});
    let r = daemon.http(
        "POST",
        "/api/v1/containers",
        &headers,
        Some(&spec.to_string()),
    );
    assert_eq!(r.status, 201, "{}", r.body);

    b.sign_in(&base, ADMIN, ADMIN_PASSWORD).await;
    b.open(&base, "/teams/pool-hist").await;
    b.wait_for("[data-testid=team-history]").await;
    // The CPU chart draws the container's CPU (the team's, while it burns), and the team's
    // ceiling as its limit line.
    b.wait_js(
        "+document.querySelector('[data-testid=team-chart-cpu]').dataset.last",
        40,
        |v| v.as_f64().is_some_and(|c| c > 0.1),
    )
    .await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while daemon
        .http("GET", "/api/v1/containers/pool-hist-burn", &headers, None)
        .json()["status"]
        != "exited"
    {
        assert!(std::time::Instant::now() < deadline, "the burn did not end");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    b.wait_js(
        "+document.querySelector('[data-testid=team-chart-cpu]').dataset.points",
        40,
        |v| v.as_f64().is_some_and(|n| n >= 2.0),
    )
    .await;
    b.wait_js(
        "document.querySelector('[data-testid=team-chart-cpu]').dataset.levels",
        20,
        |v| v.as_str().is_some_and(|s| s.contains("1.5")),
    )
    .await;
    b.wait_js(
        "document.querySelector('[data-testid=team-chart-mem]').dataset.levels",
        20,
        |v| v.as_str().is_some_and(|s| s.contains("268435456")),
    )
    .await;
    b.wait_for("[data-testid=team-chart-cpu] polyline").await;
    b.wait_for("[data-testid=team-page] [data-testid=freshness]")
        .await;
    b.wait_text("[data-testid=team-budget]", "No budget").await;
    let href = b
        .wait_for("[data-testid=statement-csv]")
        .await
        .attr("href")
        .await
        .expect("href")
        .unwrap_or_default();
    assert!(
        href.starts_with("/api/v1/billing/statements/pool-hist/") && href.ends_with("?format=csv"),
        "{href}"
    );
    js(&b, "window.scrollTo(0, 0)").await;
    let shot = b.screenshot("team-overview").await;
    println!("screenshot: {}", shot.display());

    js(
        &b,
        "document.querySelector('[data-testid=team-budget]').scrollIntoView()",
    )
    .await;
    let shot = b.screenshot("team-budget-panel").await;
    println!("screenshot: {}", shot.display());

    // The budget form: no budget yet, so the default ladder; edit it.
    b.wait_for("[data-testid=budget-form]").await;
    ladder_rows(&b, 4).await;
    b.click("[data-testid=ladder-add]").await;
    ladder_rows(&b, 5).await;
    js(
        &b,
        "const s = document.querySelectorAll('[data-testid=ladder-row] select')[4]; \
         s.value = 'freeze'; s.dispatchEvent(new Event('change'))",
    )
    .await;
    b.click("[data-testid=ladder-row]:nth-child(5) [data-testid=ladder-remove]")
        .await;
    ladder_rows(&b, 4).await;
    b.click("[data-testid=ladder-default]").await;
    ladder_rows(&b, 4).await;
    js(
        &b,
        "const s = document.getElementById('f-period'); \
         s.value = 'week'; s.dispatchEvent(new Event('change'))",
    )
    .await;
    b.fill("#f-cpu_core_hours", "0.01").await;
    b.fill("#f-memory_gib_hours", "2").await;
    b.fill("#f-webhook", "http://127.0.0.1:9/budget").await;
    // A client-side error is shown beside its row, nothing is sent.
    b.fill("[name='ladder[0].at_percent']", "soon").await;
    b.click("[data-testid=save-budget]").await;
    b.wait_text("[data-field='ladder[0]']", "not a whole percent")
        .await;
    b.fill("[name='ladder[0].at_percent']", "80").await;
    js(
        &b,
        "document.querySelector('[data-testid=team-budget-form]').scrollIntoView()",
    )
    .await;
    let shot = b.screenshot("team-budget-form").await;
    println!("screenshot: {}", shot.display());
    b.click("[data-testid=save-budget]").await;
    let outcome = b
        .wait_js(
            "(document.querySelector('[data-testid=budget-saved]') \
              || document.querySelector('[data-testid=team-budget-form] [data-testid=form-error]') \
              || {}).textContent",
            20,
            |v| v.as_str().is_some_and(|s| !s.is_empty()),
        )
        .await;
    let outcome = outcome.as_str().unwrap_or_default().to_owned();
    assert!(outcome.contains("saved"), "{outcome}");
    let t = daemon
        .http("GET", "/api/v1/teams/pool-hist", &headers, None)
        .json();
    let budget = &t["budget"]["budget"];
    assert_eq!(budget["period"], "week", "{t}");
    assert_eq!(budget["cpu_core_hours"], 0.01, "{t}");
    assert_eq!(budget["memory_gib_hours"], 2.0, "{t}");
    assert_eq!(budget["webhook"], "http://127.0.0.1:9/budget", "{t}");
    assert_eq!(budget["ladder"].as_array().map(Vec::len), Some(4), "{t}");
    b.wait_for("[data-testid=team-budget] [data-testid=budget-percent]")
        .await;
    let shot = b.screenshot("team-budget-saved").await;
    println!("screenshot: {}", shot.display());
    b.close().await;
}
