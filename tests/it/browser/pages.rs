//! The dashboard's admin pages in Chromium against a real daemon: first-run setup through the
//! link the daemon printed, then the overview, host cgroups, users & tokens and the audit log,
//! at desktop and phone width, light and dark. Screenshots go to the artifacts dir.

use tests::{ADMIN_PASSWORD, Daemon, browser::Browser};

#[tokio::test]
async fn setup_link_then_admin_pages() {
    let daemon = Daemon::start();
    let Some(b) = Browser::start().await else {
        return;
    };
    let base = daemon.url();
    let token = daemon
        .setup_token()
        .expect("the daemon printed a setup link");

    // First-run setup from the one-time link; the token never leaves the fragment.
    b.open(&base, &format!("/setup#{}", token.trim())).await;
    b.wait_for("[data-testid=create-admin]").await;
    let url = b.client.current_url().await.unwrap();
    assert_eq!(
        url.fragment(),
        None,
        "the token is dropped from the address bar"
    );
    b.fill("#f-password", ADMIN_PASSWORD).await;
    b.fill("#f-repeat", "something else").await;
    b.click("[data-testid=create-admin]").await;
    b.wait_text("[data-field=repeat]", "differ").await;
    b.fill("#f-repeat", ADMIN_PASSWORD).await;
    b.screenshot("setup").await;
    b.click("[data-testid=create-admin]").await;

    // Overview: capacity, the cgroup mode and the capability matrix.
    b.wait_for("[data-testid=cap-cpu]").await;
    b.wait_text("[data-testid=whoami]", "admin").await;
    let mode = b
        .wait_for("[data-testid=cgroup-mode]")
        .await
        .text()
        .await
        .unwrap();
    assert!(
        ["cgroup v2", "cgroup v1", "cgroup hybrid"].contains(&mode.as_str()),
        "{mode}"
    );
    b.wait_for("[data-testid=capabilities] tbody tr").await;
    b.screenshot("overview").await;

    // Host cgroups: the tree, with Corral's own subtree marked.
    b.open(&base, "/cgroups").await;
    b.wait_for("[data-testid=cgroup-tree] tbody tr").await;
    b.wait_for("[data-testid=cgroup-tree] tr.corral").await;
    b.screenshot("cgroups").await;
    // Collapsing the root hides its children.
    let rows_before = b
        .client
        .find_all(fantoccini::Locator::Css(
            "[data-testid=cgroup-tree] tbody tr",
        ))
        .await
        .unwrap()
        .len();
    b.click("[data-testid=cgroup-tree] tbody tr:first-child .twisty")
        .await;
    b.wait_js(
        "document.querySelectorAll('[data-testid=cgroup-tree] tbody tr').length",
        10,
        |v| v.as_u64() == Some(1),
    )
    .await;
    assert!(rows_before > 1);

    // Users & tokens: the admin is listed; creating a token shows its secret once.
    b.open(&base, "/users").await;
    b.wait_for("[data-testid=users-table] tr[data-user=admin]")
        .await;
    b.fill(".inline-form #f-name", "browser-test").await;
    b.click(".inline-form button[type=submit]").await;
    let secret = b
        .wait_for("[data-testid=token-secret]")
        .await
        .text()
        .await
        .unwrap();
    assert!(secret.len() > 20, "token secret shown: {secret}");
    b.wait_text("[data-testid=tokens-table]", "browser-test")
        .await;
    b.screenshot("users").await;

    // Audit log: the setup and the token are recorded.
    b.open(&base, "/audit").await;
    b.wait_text("[data-testid=audit-table]", "token").await;
    b.screenshot("audit").await;

    // The other pages render (empty, or "not available" on a daemon without those APIs).
    b.open(&base, "/containers").await;
    b.wait_for(".page-head h1").await;
    b.wait_for(".empty-state, [data-code], [data-testid=containers-table]")
        .await;
    b.screenshot("containers-empty").await;
    b.open(&base, "/billing").await;
    b.wait_for("[data-testid=rate-card] .field, [data-testid=rate-card] [data-code]")
        .await;
    b.screenshot("billing-empty").await;
    b.open(&base, "/containers/new").await;
    b.wait_for("[data-testid=new-form]").await;
    b.screenshot("new-container").await;

    // Phone width and the dark theme.
    b.client.set_window_size(390, 844).await.unwrap();
    b.open(&base, "/").await;
    b.wait_for("[data-testid=cap-cpu]").await;
    b.screenshot("overview-phone").await;
    // On a short page the top bar stays a bar (it used to stretch into a 170 px band).
    b.open(&base, "/containers").await;
    b.wait_for(".empty-state, [data-code], [data-testid=containers-table]")
        .await;
    let bar = b
        .wait_js(
            "document.querySelector('.side').getBoundingClientRect().height",
            5,
            |v| v.as_f64().is_some(),
        )
        .await;
    assert!(
        bar.as_f64().is_some_and(|h| h < 80.0),
        "top bar {bar} px high"
    );
    b.screenshot("containers-phone").await;
    b.open(&base, "/").await;
    b.client.set_window_size(1280, 900).await.unwrap();
    b.click("[data-testid=theme]").await;
    b.wait_js("document.documentElement.dataset.theme", 5, |v| {
        v.is_string()
    })
    .await;
    b.wait_for("[data-testid=capabilities] tbody tr").await;
    b.screenshot("overview-dark").await;

    // Sign out, then back in with the password; `next` brings us back to the page we asked for.
    b.click("[data-testid=sign-out]").await;
    b.wait_for("[data-testid=sign-in]").await;
    b.open(&base, "/cgroups").await;
    b.wait_for("[data-testid=sign-in]").await;
    b.fill("#f-name", "admin").await;
    b.fill("#f-password", "wrong password").await;
    b.click("[data-testid=sign-in]").await;
    b.wait_for("[data-testid=login-error]").await;
    b.fill("#f-password", ADMIN_PASSWORD).await;
    b.click("[data-testid=sign-in]").await;
    b.wait_for("[data-testid=cgroup-tree]").await;
    assert_eq!(b.client.current_url().await.unwrap().path(), "/cgroups");
    b.close().await;
}

/// Benchmark (prints, never fails on speed): time from navigation start to the app's first
/// render, cold (fresh profile) and warm (cached WASM), plus the embedded WASM size.
#[tokio::test]
async fn first_render_benchmark() {
    let daemon = Daemon::start();
    let Some(b) = Browser::start().await else {
        return;
    };
    let base = daemon.url();
    let mut rows = Vec::new();
    for run in ["cold", "warm 1", "warm 2", "warm 3"] {
        b.open(&base, "/login").await;
        let ms = b.first_render_ms().await;
        let wasm = b
            .wait_js(
                "(performance.getEntriesByType('resource').find(e => e.name.endsWith('.wasm')) || {}).transferSize",
                5,
                |_| true,
            )
            .await;
        rows.push((run, ms, wasm.as_u64().unwrap_or(0)));
    }
    println!("\n| load | navigation start → first render (ms) | wasm transferred (bytes) |");
    println!("|---|---:|---:|");
    for (run, ms, bytes) in rows {
        println!("| {run} | {ms:.0} | {bytes} |");
    }
    b.close().await;
}
