use tests::{Daemon, browser::Browser};

/// The embedded WASM app loads and renders; signed out, every page leads to the sign-in page.
/// A build that compiles but throws in the browser fails here.
#[tokio::test]
async fn dashboard_renders_in_chromium() {
    let daemon = Daemon::start();
    let Some(browser) = Browser::start().await else {
        return;
    };
    browser.client.goto(&daemon.url()).await.unwrap();
    browser.wait_for("[data-testid=sign-in]").await;
    let url = browser.client.current_url().await.unwrap();
    assert_eq!(
        url.path(),
        "/login",
        "signed out, / leads to the sign-in page"
    );
    let err = browser
        .client
        .find(fantoccini::Locator::Css("body"))
        .await
        .unwrap()
        .attr("data-app-error")
        .await
        .unwrap();
    assert_eq!(err, None, "the app reported a start-up error");
    // The daemon has no admin yet: the sign-in page points at the setup link.
    browser.wait_text(".notice", "setup link").await;
    browser.screenshot("sign-in").await;

    // A deep link is served the app shell (SPA fallback) and routed on the client.
    browser
        .client
        .goto(&format!("{}/no/such/page", daemon.url()))
        .await
        .unwrap();
    browser.wait_for("#brand").await;
    browser.close().await;
}

/// The signed-in pages are split into lazily loaded modules (issue 17): landing on the overview
/// after signing in fetches the overview's module and not the container pages' or the admin
/// pages' modules; following the side bar to the containers (no page load) fetches that
/// module, and it renders. A build without the split loads everything up front and fails here.
#[tokio::test]
async fn page_modules_are_fetched_when_a_page_is_first_shown() {
    let daemon = Daemon::start();
    let Some(b) = on_the_overview(&daemon).await else {
        return;
    };
    let fetched = async || -> Vec<String> {
        let names = b
            .wait_js(
                "performance.getEntriesByType('resource').map(e => e.name)\
                 .filter(n => n.endsWith('.wasm')).map(n => n.split('/').pop())",
                5,
                |_| true,
            )
            .await;
        serde_json::from_value(names).expect("a list of names")
    };
    let landing = fetched().await;
    let has = |names: &[String], module: &str| names.iter().any(|n| n.contains(module));
    assert!(has(&landing, "corral_bg.wasm"), "{landing:?}");
    assert!(has(&landing, "overview_module"), "{landing:?}");
    assert!(!has(&landing, "container_module"), "{landing:?}");
    assert!(!has(&landing, "admin_module"), "{landing:?}");

    b.click("nav a[href='/containers']").await;
    b.wait_for("[data-testid=new-container]").await;
    let after = fetched().await;
    assert!(has(&after, "container_module"), "{after:?}");
    assert!(!has(&after, "admin_module"), "{after:?}");
    assert_eq!(
        after
            .iter()
            .filter(|n| n.contains("corral_bg.wasm"))
            .count(),
        1,
        "a client-side move, not a page load: {after:?}"
    );
    b.close().await;
}

/// A page whose module is gone — the daemon was upgraded while the page was open, so its
/// build's directory no longer exists — loads once more, at the link followed, into the
/// daemon's build; when that build
/// cannot load the module either, the page says the dashboard stopped and offers a reload,
/// instead of silently not answering. (The fault-injection build answers 404 for the admin
/// pages' module.)
#[tokio::test]
async fn a_page_whose_module_is_gone_reloads_once_then_says_so() {
    let daemon = Daemon::start_with_env(&[], &[("CORRAL_FAULT_ASSETS_GONE", "admin_module")]);
    let Some(b) = on_the_overview(&daemon).await else {
        return;
    };
    b.client
        .execute("window.corralBefore = true;", vec![])
        .await
        .expect("mark the first document");
    b.click("nav a[href='/images']").await;
    b.wait_text("[data-testid=app-stopped]", "Reload the page")
        .await;
    let seen = b
        .wait_js(
            "[location.pathname, window.corralBefore === undefined, \
             Object.keys(sessionStorage).some(k => k.startsWith('corral-reloaded-for'))]",
            5,
            |_| true,
        )
        .await;
    assert_eq!(
        seen,
        serde_json::json!(["/images", true, true]),
        "loaded once more, at the link followed, before giving up"
    );
    b.screenshot("app-stopped").await;
    b.close().await;
}

/// A browser signed in as the admin, on the overview (its module loaded); `None` without
/// Chromium.
async fn on_the_overview(daemon: &Daemon) -> Option<Browser> {
    daemon.admin_token();
    let b = Browser::start().await?;
    b.sign_in(&daemon.url(), tests::ADMIN, tests::ADMIN_PASSWORD)
        .await;
    b.wait_for("[data-testid=daemon-status]").await;
    Some(b)
}
