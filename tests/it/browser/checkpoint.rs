//! The container page's "Checkpoint" card, in Chromium against a real daemon: where `criu
//! check` fails (this host), the card says so in criu's words, and its Checkpoint button
//! answers with the daemon's refusal (503 `checkpoint_unavailable`, the same reason) while the
//! container runs on unchanged. Screenshot `checkpoint`.

use tests::{
    ADMIN, ADMIN_PASSWORD, Daemon,
    browser::Browser,
    containers::{self, Reaper},
};

#[tokio::test]
async fn the_checkpoint_card_shows_why_not_and_the_refusal() {
    let daemon = Daemon::start();
    let _reaper = Reaper::new(&daemon);
    daemon.admin_token();
    let c = daemon.unix_client();
    let host: wire::HostInfo = containers::call(&c, hyper::Method::GET, "/api/v1/host", None)
        .await
        .expect("host");
    if host.checkpoint.available {
        println!("criu check passes here: no refusal to show");
        return;
    }
    let Some(b) = Browser::start().await else {
        return;
    };
    let rootfs = tests::rootfs::Rootfs::new();
    let name = containers::sleeper(&daemon, &rootfs, "ckpt").await;
    let pid = containers::get(&c, &name).await.pid;
    let reason = host.checkpoint.reason.clone();

    let base = daemon.url();
    b.sign_in(&base, ADMIN, ADMIN_PASSWORD).await;
    b.open(&base, &format!("/containers/{name}")).await;
    b.wait_for(".page-head [data-status=running]").await;
    b.wait_text("[data-testid=checkpoint-support]", &reason)
        .await;
    b.click("[data-testid=checkpoint-stop]").await;
    b.wait_text(
        "[data-testid=checkpoint] .error-box[data-code=checkpoint_unavailable]",
        &reason,
    )
    .await;
    b.client
        .execute(
            "document.querySelector('[data-testid=checkpoint]').scrollIntoView()",
            vec![],
        )
        .await
        .expect("scroll to the card");
    let shot = b.screenshot("checkpoint").await;
    eprintln!("screenshot: {}", shot.display());
    let after = containers::get(&c, &name).await;
    assert_eq!((after.status.as_str(), after.pid), ("running", pid));
    containers::remove(&c, &name).await;
    b.close().await;
}
