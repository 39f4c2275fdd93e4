//! A container's life in the dashboard, in Chromium against a real daemon and the real kernel:
//! start it from the form (the server's validation error shown beside the field), watch its CPU
//! chart move, re-limit it and see the new quota line, freeze it and see the CPU flatten, see
//! the team's usage on the bill and download the CSV statement.

use std::{fs, path::Path};

use tests::{ADMIN, ADMIN_PASSWORD, Daemon, TempDir, browser::Browser};

/// A busybox root filesystem (busybox-static from the host).
fn busybox_rootfs() -> Option<TempDir> {
    let bin = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .map(Path::new)
        .find(|p| p.is_file())?;
    let dir = TempDir::new("corral-it-rootfs");
    let root = dir.path();
    for d in ["bin", "etc", "tmp", "root", "proc", "sys", "dev"] {
        fs::create_dir_all(root.join(d)).expect("rootfs dir");
    }
    fs::copy(bin, root.join("bin/busybox")).expect("copy busybox");
    for applet in ["sh", "echo", "sleep", "cat", "ps", "true"] {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).expect("applet link");
    }
    fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").expect("passwd");
    Some(dir)
}

/// A daemon with metering (1 s samples) and its admin set up.
fn daemon_with_containers() -> Daemon {
    let daemon = Daemon::start_with(&["--sample-interval", "1"]);
    daemon.admin_token();
    daemon
}

async fn chart_attr(b: &Browser, chart: &str, attr: &str) -> String {
    b.wait_for(&format!("[data-testid={chart}]"))
        .await
        .attr(attr)
        .await
        .expect("read attribute")
        .unwrap_or_default()
}

#[tokio::test]
async fn container_lifecycle_charts_and_bill() {
    let daemon = daemon_with_containers();
    let Some(rootfs) = busybox_rootfs() else {
        eprintln!("skipping: busybox-static is not installed");
        return;
    };
    let Some(b) = Browser::start().await else {
        return;
    };
    let base = daemon.url();
    let name = tests::unique("burner").replace('_', "-");

    b.sign_in(&base, ADMIN, ADMIN_PASSWORD).await;
    b.wait_for("[data-testid=cap-cpu]").await;

    // The form: a client-side check, then the server's error beside its field.
    b.open(&base, "/containers/new").await;
    b.wait_for("[data-testid=new-form]").await;
    b.fill("#f-name", &name).await;
    b.click("[data-testid=source-rootfs]").await;
    b.fill("#f-rootfs", &rootfs.path().display().to_string())
        .await;
    b.fill("#f-command", "sh -c \"echo started; while :; do :; done\"")
        .await;
    b.fill("#f-limits-memory_max", "lots").await;
    b.click("[data-testid=create]").await;
    b.wait_text("[data-field='limits.memory_max']", "not a size")
        .await;
    b.fill("#f-limits-memory_max", "64M").await;
    b.fill("#f-limits-cpus", "-1").await;
    b.click("[data-testid=create]").await;
    let err = b.wait_for("[data-field='limits.cpus']:not(:empty)").await;
    let msg = err.text().await.unwrap();
    assert!(!msg.is_empty(), "the server's message is shown beside CPUs");
    b.screenshot("new-container-errors").await;
    // A bad published port: the server names the entry, shown beside the ports field.
    b.fill("#f-limits-cpus", "0.5").await;
    b.fill("#f-ports", "8080:80, 99999:80").await;
    b.click("[data-testid=create]").await;
    b.wait_text("[data-field=ports]", "port 2:").await;
    b.screenshot("new-container-port-error").await;
    b.fill("#f-ports", "").await;
    b.click("[data-testid=create]").await;

    // The detail page: the CPU chart moves up to the 0.5 quota line.
    b.wait_text("[data-testid=container-name]", &name).await;
    b.wait_for(".page-head [data-status=running]").await;
    wait_metered(&b, &daemon, &name).await;
    // Live numbers come over the event stream (the page says so; it would say `polling` if
    // the stream were refused or went stale).
    // Pressure is drawn from the stored history (then the live tail) where the host reports
    // it per cgroup; elsewhere the page says there is none.
    let psi = b
        .client
        .execute_async(
            "const [done] = arguments; fetch('/api/v1/host').then(r => r.json()).then(h => done(h.psi))",
            vec![],
        )
        .await
        .expect("read host facts");
    if psi == true {
        b.wait_for("[data-testid=chart-psi]").await;
        // The history API carries the pressure the chart draws.
        let q = format!(
            "const [done] = arguments; fetch('/api/v1/containers/{name}/history?range=15m')\
             .then(r => r.json()).then(h => done(h.points.filter(p => p.cpu_pressure !== undefined).length))"
        );
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let n = b
                .client
                .execute_async(&q, vec![])
                .await
                .expect("read history");
            if n.as_u64().is_some_and(|n| n > 0) {
                eprintln!("history points with cpu pressure: {n}");
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no pressure in the stored history after 60 s"
            );
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        }
        // The chart's cpu series has points (history plus live tail).
        b.wait_js(
            "(document.querySelector('[data-testid=chart-psi] .series.s1 polyline')\
               ?.getAttribute('points') || '').trim().split(' ').filter(x => x).length",
            60,
            |v| v.as_u64().is_some_and(|n| n >= 2),
        )
        .await;
        b.client
            .execute(
                "document.querySelector('[data-testid=chart-psi]').scrollIntoView()",
                vec![],
            )
            .await
            .expect("scroll to the pressure chart");
        b.screenshot("container-pressure").await;
        b.client
            .execute("window.scrollTo(0, 0)", vec![])
            .await
            .expect("scroll back");
    } else {
        b.wait_text("[data-testid=psi-note]", "no pressure data on this host")
            .await;
    }
    b.wait_js(
        "document.querySelector('.page-head [data-testid=live-state]').dataset.state",
        30,
        |v| v.as_str() == Some("live"),
    )
    .await;
    b.wait_js(
        "parseFloat(document.querySelector('[data-testid=live-cpu]').textContent)",
        30,
        |v| v.as_f64().is_some_and(|c| c > 20.0),
    )
    .await;
    b.wait_js(
        "+document.querySelector('[data-testid=chart-cpu]').dataset.last",
        60,
        |v| v.as_f64().is_some_and(|c| c > 0.2),
    )
    .await;
    assert_eq!(chart_attr(&b, "chart-cpu", "data-levels").await, "0.5");
    b.wait_text("[data-testid=logs]", "started").await;
    b.screenshot("container").await;

    // Re-limit: the form holds the stored limits (every knob, grouped) and sends only what
    // changed: the kernel's defaults (every CPU, weight 100) must not become pinned limits.
    let form = b.wait_for("[data-testid=relimit]").await;
    // A knob this host cannot set says so beside its field.
    let high = b
        .client
        .execute_async(
            "const [done] = arguments; fetch('/api/v1/host').then(r => r.json())\
             .then(h => done(h.knobs.find(k => k.name === 'memory_high').available))",
            vec![],
        )
        .await
        .expect("read host knobs");
    if high == false {
        b.wait_text("[data-testid=relimit] [data-group=Memory]", "Unavailable")
            .await;
    }
    b.wait_for("[data-testid=relimit] [data-group=IO]").await;
    // The whole form, however tall: a window tall enough, and a screenshot of the element.
    let (w, h) = b.client.get_window_size().await.expect("window size");
    b.client
        .set_window_size(w as u32, 2600)
        .await
        .expect("tall window");
    let png = form.screenshot().await.expect("screenshot the form");
    b.client
        .set_window_size(w as u32, h as u32)
        .await
        .expect("window size back");
    fs::write(
        tests::browser::artifacts_dir().join("container-relimit-form.png"),
        png,
    )
    .expect("write the form's screenshot");
    b.fill("#f-limits-cpus", "0.25").await;
    b.click("[data-testid=apply-limits]").await;
    b.wait_for("[data-testid=limits-saved]").await;
    b.wait_js(
        "document.querySelector('[data-testid=chart-cpu]').dataset.levels",
        20,
        |v| v.as_str() == Some("0.25"),
    )
    .await;
    let spec = b
        .client
        .execute_async(
            &format!(
                "const [done] = arguments; fetch('/api/v1/containers/{name}')\
                 .then(r => r.json()).then(c => done(c.spec.limits))"
            ),
            vec![],
        )
        .await
        .expect("read the container");
    assert_eq!(spec["cpus"], 0.25, "{spec}");
    for untouched in ["cpuset_cpus", "cpu_weight", "io_weight", "cpuset_mems"] {
        assert!(
            spec.get(untouched).is_none(),
            "only CPUs changed, yet {untouched} was pinned: {spec}"
        );
    }
    // The change is drawn on the charts as an annotation and listed (who, when, old → new,
    // from the container's timeline), with an undo that puts the old quota back.
    b.wait_for("[data-testid=chart-cpu] .mark").await;
    b.wait_text("[data-testid=limit-change]", "cpus 0.5 → 0.25")
        .await;
    b.screenshot("container-relimited").await;
    b.click("[data-testid=undo-change]").await;
    b.wait_js(
        "document.querySelector('[data-testid=chart-cpu]').dataset.levels",
        20,
        |v| v.as_str() == Some("0.5"),
    )
    .await;
    b.wait_text("[data-testid=limit-changes]", "undid").await;

    // Freeze: the state says so and the CPU line drops to (almost) nothing.
    b.click("[data-action=freeze]").await;
    b.wait_for(".page-head [data-status=paused]").await;
    b.wait_js(
        "+document.querySelector('[data-testid=chart-cpu]').dataset.last",
        60,
        |v| v.as_f64().is_some_and(|c| c < 0.05),
    )
    .await;
    b.screenshot("container-frozen").await;

    // The list shows it frozen.
    b.open(&base, "/containers").await;
    b.wait_for(&format!(
        "[data-testid=containers-table] tr[data-name='{name}'][data-status=paused]"
    ))
    .await;
    b.screenshot("containers").await;

    // A change made elsewhere (here: the API) reaches the open list through the event stream:
    // the row turns within `wait_for`'s 20 s, before the 30 s safety-net poll of a live page.
    b.wait_js(
        "document.querySelector('.page-head [data-testid=live-state]').dataset.state",
        30,
        |v| v.as_str() == Some("live"),
    )
    .await;
    let auth = format!("Bearer {}", daemon.admin_token());
    let thaw = daemon.http(
        "POST",
        &format!("/api/v1/containers/{name}/thaw"),
        &[("authorization", &auth)],
        None,
    );
    assert_eq!(thaw.status, 200, "{}", thaw.body);
    b.wait_for(&format!(
        "[data-testid=containers-table] tr[data-name='{name}'][data-status=running]"
    ))
    .await;

    // Exec runs inside the container and shows its output.
    b.open(&base, &format!("/containers/{name}")).await;
    b.wait_for(".page-head [data-status=running]").await;
    b.fill("#f-command", "echo hello from inside").await;
    b.click("[data-testid=exec]").await;
    b.wait_text("[data-testid=exec-result]", "hello from inside")
        .await;
    b.screenshot("container-exec").await;

    // The bill: the team used CPU this month; the statement downloads as CSV.
    bill_and_csv(&b, &base).await;

    // Clean up through the UI: remove (confirmed).
    b.click(".page-head [data-testid=remove]").await;
    b.click(".page-head [data-testid=confirm-yes]").await;
    b.wait_for("[data-testid=containers-table], .empty-state")
        .await;
    b.close().await;
    drop(rootfs);
}

/// Waits (up to 20 s) until the daemon's metering sees the container (its history answers);
/// fails with the answer and the daemon's log otherwise.
async fn wait_metered(b: &Browser, daemon: &Daemon, name: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let answer = b
            .client
            .execute_async(
                "const [n, done] = arguments; fetch('/api/v1/containers/' + n + '/history?range=15m').then(r => r.text().then(t => done([r.status, t])))",
                vec![serde_json::json!(name)],
            )
            .await
            .expect("fetch history");
        if answer[0] == 200 {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "metering never saw {name}: history answers {answer}\ndaemon log:\n{}",
            daemon.log()
        );
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}

async fn bill_and_csv(b: &Browser, base: &str) {
    b.open(base, "/billing").await;
    let usage = b
        .wait_js(
            "[...document.querySelectorAll('[data-testid=teams-bill] tbody tr td:nth-child(2)')].map(td => +td.textContent).reduce((a, b) => a + b, 0)",
            90,
            |v| v.as_f64().is_some_and(|c| c > 0.0),
        )
        .await;
    assert!(usage.as_f64().is_some_and(|u| u > 0.0), "{usage}");
    // The cost-per-day chart labels each day once (five even steps used to repeat dates).
    let days = b
        .wait_js(
            "[...document.querySelectorAll('[data-testid=chart-cost] text.x')].map(t => t.textContent)",
            60,
            |v| v.as_array().is_some_and(|a| !a.is_empty()),
        )
        .await;
    let days: Vec<&str> = days
        .as_array()
        .expect("labels")
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    let mut unique = days.clone();
    unique.dedup();
    assert_eq!(unique, days, "one label per day");
    assert!(
        days.iter().all(|d| d.len() == 5 && d.as_bytes()[2] == b'-'),
        "MM-DD dates: {days:?}"
    );
    let href = b
        .wait_for("[data-testid=csv]")
        .await
        .attr("href")
        .await
        .expect("read href")
        .expect("csv link");
    assert!(href.starts_with("/api/v1/billing/statements/"), "{href}");
    let csv = b
        .client
        .execute_async(
            "const [href, done] = arguments; fetch(href).then(r => r.text().then(t => done([r.status, r.headers.get('content-type'), t])));",
            vec![serde_json::json!(href)],
        )
        .await
        .expect("fetch the csv");
    assert_eq!(csv[0], 200, "{csv}");
    assert!(
        csv[1].as_str().unwrap_or("").starts_with("text/csv"),
        "{csv}"
    );
    assert!(csv[2].as_str().unwrap_or("").lines().count() > 1, "{csv}");
    b.screenshot("billing").await;

    b.client.back().await.expect("back to the container");
    b.wait_for(".page-head [data-status=running]").await;
}
