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

/// The containers page's "Checkpoints" card: a stored checkpoint (planted in the state
/// directory, as one taken where criu works would lie there: this host cannot take one) is
/// listed; its Restore answers with the daemon's refusal and criu's reason; Remove removes it,
/// through the API, from the disk and from the card. Screenshot `checkpoints`.
#[tokio::test]
async fn stored_checkpoints_are_listed_restorable_and_removable() {
    let daemon = Daemon::start();
    daemon.admin_token();
    let c = daemon.unix_client();
    let host: wire::HostInfo = containers::call(&c, hyper::Method::GET, "/api/v1/host", None)
        .await
        .expect("host");
    let Some(b) = Browser::start().await else {
        return;
    };
    let name = tests::unique("gone");
    let dir = daemon.state.path().join("state/checkpoints").join(&name);
    std::fs::create_dir_all(dir.join("images")).expect("checkpoint dir");
    std::fs::write(
        dir.join("checkpoint.json"),
        serde_json::json!({"version": 1, "id": "0123456789abcdef", "name": name,
            "team": "default", "spec": {"image": "busybox:latest", "command": ["sleep", "1"]},
            "created_at": 1_800_000_000, "pipes": [], "external_netns": false,
            "criu_version": "3.17.1"})
        .to_string(),
    )
    .expect("meta");
    let listed: Vec<wire::StoredCheckpoint> =
        containers::call(&c, hyper::Method::GET, "/api/v1/checkpoints", None)
            .await
            .expect("list");
    assert!(
        listed
            .iter()
            .any(|s| s.name == name && s.image == "busybox:latest")
    );

    let base = daemon.url();
    b.sign_in(&base, ADMIN, ADMIN_PASSWORD).await;
    b.open(&base, "/containers").await;
    b.wait_text("[data-testid=checkpoint-row]", &name).await;
    if !host.checkpoint.available {
        b.click("[data-testid=checkpoint-restore]").await;
        b.wait_text(
            "[data-testid=checkpoints] .error-box[data-code=checkpoint_unavailable]",
            &host.checkpoint.reason,
        )
        .await;
    }
    let shot = b.screenshot("checkpoints").await;
    eprintln!("screenshot: {}", shot.display());
    b.click("[data-testid=checkpoint-remove]").await;
    b.wait_text(
        "[data-testid=checkpoints-outcome]",
        &format!("Removed the checkpoint of {name}."),
    )
    .await;
    let listed: Vec<wire::StoredCheckpoint> =
        containers::call(&c, hyper::Method::GET, "/api/v1/checkpoints", None)
            .await
            .expect("list");
    assert!(listed.iter().all(|s| s.name != name), "removed: {listed:?}");
    assert!(!dir.exists(), "gone from the disk");
    b.close().await;
}
