//! The container page's "Right-sizing" card (issue 14 part 3), in Chromium against a real
//! daemon and kernel: an idle container under `--cpus 1.5 --memory 512M` first shows the
//! "not enough history" note, then, after 30 one-second samples, "decrease" lines for CPU and
//! memory; "Apply" changes the limits (the kernel's, read back by the API) and the change
//! appears among the limit changes, with undo; the team's page shows the pool's card.
//! Screenshots `right-sizing-card`, `right-sizing-applied` and `right-sizing-team`.

use tests::{ADMIN, ADMIN_PASSWORD, Daemon, browser::Browser, containers::Reaper};

#[tokio::test]
async fn the_right_sizing_card_explains_and_applies() {
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
        Some(r#"{"name":"lazy-team"}"#),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let name = tests::unique("lazy").replace('_', "-");
    let spec = serde_json::json!({"name": name, "team": "lazy-team", "rootfs": rootfs.path(), "start": true,
        "command": ["/bin/sh", "-c", "exec sleep 1000"],
        "limits": {"cpus": 1.5, "memory_max": 512u64 << 20}});
    let r = daemon.http(
        "POST",
        "/api/v1/containers",
        &headers,
        Some(&spec.to_string()),
    );
    assert_eq!(r.status, 201, "{}", r.body);

    b.sign_in(&base, ADMIN, ADMIN_PASSWORD).await;
    b.wait_for("[data-testid=cap-cpu]").await;
    b.open(&base, &format!("/containers/{name}")).await;
    b.wait_text("[data-testid=right-sizing-note]", "not enough history")
        .await;

    // 30 samples: the card polls once a minute, so reload once the API has them.
    let path = format!("/api/v1/containers/{name}/recommendation");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while daemon.http("GET", &path, &headers, None).json()["items"]
        .as_array()
        .is_none_or(Vec::is_empty)
    {
        assert!(std::time::Instant::now() < deadline, "no recommendation");
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    }
    b.open(&base, &format!("/containers/{name}")).await;
    let cpu = b
        .wait_for("[data-testid=recommendation][data-knob=cpus][data-action=decrease]")
        .await;
    let line = cpu.text().await.unwrap();
    // The 0.1 floor, or more where starting the shell took a burst of CPU.
    assert!(line.contains("cpus 1.5 → 0."), "{line}");
    let mem = b
        .wait_for("[data-testid=recommendation][data-knob=memory_max][data-action=decrease]")
        .await;
    assert!(mem.text().await.unwrap().contains("memory 512M → "));
    b.client
        .execute(
            "document.querySelector('[data-testid=right-sizing]').scrollIntoView()",
            vec![],
        )
        .await
        .unwrap();
    b.screenshot("right-sizing-card").await;

    b.click("[data-testid=apply-recommendation]").await;
    b.wait_for("[data-testid=recommendation-applied]").await;
    let c = daemon
        .http("GET", &format!("/api/v1/containers/{name}"), &headers, None)
        .json();
    let cpus = c["limits"]["cpus"].as_f64().unwrap();
    assert!((0.1..=0.75).contains(&cpus), "{c}");
    let mem = c["limits"]["memory_max"].as_u64().unwrap();
    assert!(mem < 512 << 20, "{c}");
    // The kernel's view (`GET …/limits` reads the cgroup) agrees.
    let k = daemon
        .http(
            "GET",
            &format!("/api/v1/containers/{name}/limits"),
            &headers,
            None,
        )
        .json();
    assert_eq!(k["memory_max"].as_u64(), Some(mem), "{k}");
    // An ordinary re-limit: on the timeline, with undo.
    b.wait_text("[data-testid=limit-change]", &format!("cpus 1.5 → {cpus}"))
        .await;
    b.wait_for("[data-testid=undo-change]").await;
    b.client
        .execute(
            "document.querySelector('[data-testid=right-sizing]').scrollIntoView()",
            vec![],
        )
        .await
        .unwrap();
    b.screenshot("right-sizing-applied").await;

    // The team's page has the same card for the pool; without ceilings its lines are
    // information only, and there is nothing to apply.
    let team = "lazy-team";
    let r = daemon.http(
        "GET",
        &format!("/api/v1/teams/{team}/recommendation"),
        &headers,
        None,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["patch"], serde_json::json!({}), "{}", r.body);
    b.open(&base, &format!("/teams/{team}")).await;
    b.wait_text(
        "[data-testid=right-sizing] [data-testid=recommendation][data-knob=cpus]",
        "cpus no limit: p95 use",
    )
    .await;
    let buttons = b
        .wait_js(
            "document.querySelectorAll('[data-testid=apply-recommendation]').length",
            5,
            serde_json::Value::is_number,
        )
        .await;
    assert_eq!(buttons, serde_json::json!(0), "nothing to apply");
    b.client
        .execute(
            "document.querySelector('[data-testid=right-sizing]').scrollIntoView()",
            vec![],
        )
        .await
        .unwrap();
    b.screenshot("right-sizing-team").await;

    let r = daemon.http(
        "DELETE",
        &format!("/api/v1/containers/{name}?force=true"),
        &headers,
        None,
    );
    assert_eq!(r.status, 204, "{}", r.body);
    b.close().await;
}
