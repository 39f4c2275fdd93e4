//! The Fleet page, in Chromium: on a hub over a real PostgreSQL (`tests::postgres`) it lists
//! the hub itself as a host that is up, the fleet's CPU chart and this month's fleet
//! statement with its total; on a
//! daemon that is not a hub it says how to start one. Each shows its own shipping (none, or
//! "shipping" to the hub's PostgreSQL). Screenshot `fleet`.

use tests::{ADMIN, ADMIN_PASSWORD, Daemon, browser::Browser, postgres::Postgres};

#[tokio::test]
async fn the_fleet_page_lists_hosts_and_the_statement_or_says_how_to_start_a_hub() {
    let plain = Daemon::start();
    plain.admin_token();
    let Some(b) = Browser::start().await else {
        return;
    };
    let base = plain.url();
    b.sign_in(&base, ADMIN, ADMIN_PASSWORD).await;
    b.open(&base, "/fleet").await;
    b.wait_text("[data-testid=not-a-hub]", "--hub").await;
    b.wait_text("[data-testid=ledger-off]", "--ledger").await;

    let pg = Postgres::start();
    let hub = pg.daemon("hub-1", None, &["--hub"]);
    hub.admin_token();
    let base = hub.url();
    b.sign_in(&base, ADMIN, ADMIN_PASSWORD).await;
    b.open(&base, "/fleet").await;
    b.wait_for("[data-testid=fleet-hosts] tr[data-host=hub-1][data-state=up]")
        .await;
    b.wait_for("[data-testid=fleet-total]").await;
    b.wait_for("[data-testid=fleet-chart-cpu]").await;
    b.wait_text("[data-testid=ledger-state]", "shipping").await;
    let shot = b.screenshot("fleet").await;
    eprintln!("screenshot: {}", shot.display());
    b.close().await;
}
