use tests::{Daemon, browser::Browser};

/// The embedded WASM app loads, renders, and talks to the API. A build that compiles but throws
/// in the browser fails here.
#[tokio::test]
async fn dashboard_renders_in_chromium() {
    let daemon = Daemon::start();
    let Some(browser) = Browser::start().await else {
        return;
    };
    browser.client.goto(&daemon.url()).await.unwrap();
    let status = browser.wait_for("[data-testid=daemon-status]").await;
    assert_eq!(status.text().await.unwrap(), "ok");
    let version = browser.wait_for("[data-testid=daemon-version]").await;
    assert_eq!(version.text().await.unwrap(), backend::VERSION);
    let err = browser
        .client
        .find(fantoccini::Locator::Css("body"))
        .await
        .unwrap()
        .attr("data-app-error")
        .await
        .unwrap();
    assert_eq!(err, None, "the app reported a start-up error");
    browser.screenshot("overview").await;

    // A deep link is served the app shell (SPA fallback) and routed on the client.
    browser
        .client
        .goto(&format!("{}/no/such/page", daemon.url()))
        .await
        .unwrap();
    browser.wait_for("#brand").await;
    browser.close().await;
}
