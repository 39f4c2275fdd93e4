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

/// A host's containers through the hub, in Chromium: the admin opens a host from the hosts
/// table, is told the hub has no token for it, sets a host admin's token in the form, sees
/// the host's container and freezes and thaws it with the buttons, the host's own API
/// showing each state, and reads its output with the Logs button. The host serves plain HTTP on loopback (allowed for a loopback URL).
#[tokio::test]
async fn an_admin_sets_a_hosts_token_and_freezes_its_container_from_the_hub() {
    use tests::{
        containers::{Reaper, add_team, create, get},
        rootfs::Rootfs,
    };
    let Some(b) = Browser::start().await else {
        return;
    };
    let pg = Postgres::start();
    let host = pg.daemon_on_port("node-b", |port| {
        vec!["--advertise-url".into(), format!("http://127.0.0.1:{port}")]
    });
    let hub = pg.daemon("hub-2", None, &["--hub"]);
    hub.admin_token();
    let _reapers = (Reaper::new(&host), Reaper::new(&hub));
    let ch = host.unix_client();
    let team = tests::unique("bfw");
    add_team(&ch, &team).await;
    let rootfs = Rootfs::new();
    let name = tests::unique("bfwjob");
    create(
        &ch,
        serde_json::json!({"name": name, "team": team, "rootfs": rootfs.path(),
            "command": ["sh", "-c", "echo fleet-browser-hello; exec sleep 1000"], "start": true}),
    )
    .await;
    host.add_user("boss", "admin", &[]);
    let token = host.token_for("boss");

    let base = hub.url();
    b.sign_in(&base, ADMIN, ADMIN_PASSWORD).await;
    b.open(&base, "/fleet").await;
    b.click("[data-testid=fleet-hosts] tr[data-host=node-b] [data-testid=host-containers]")
        .await;
    b.wait_for("[data-testid=fleet-host-panel][data-host=node-b] [data-testid=no-host-token]")
        .await;
    b.fill("#f-token", &token).await;
    b.click("[data-testid=set-token]").await;
    b.wait_text("[data-testid=host-token-state]", "boss").await;
    let row = format!("[data-testid=fleet-containers] tr[data-name=\"{name}\"]");
    b.wait_for(&format!("{row}[data-status=running]")).await;
    b.click(&format!("{row} [data-action=freeze]")).await;
    b.wait_for(&format!("{row}[data-status=paused]")).await;
    assert_eq!(get(&ch, &name).await.status, "paused");
    let shot = b.screenshot("fleet-host").await;
    eprintln!("screenshot: {}", shot.display());
    b.click(&format!("{row} [data-action=thaw]")).await;
    b.wait_for(&format!("{row}[data-status=running]")).await;
    assert_eq!(get(&ch, &name).await.status, "running");
    b.click(&format!("{row} [data-action=logs]")).await;
    b.wait_text("[data-testid=fleet-logs]", "fleet-browser-hello")
        .await;
    b.close().await;
}
