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
