//! The container page's "Processes" card, in Chromium against a real daemon and kernel: a
//! running `sleep 1000` is listed with the host PID and command that
//! `GET /api/v1/containers/{name}/top` answers (and the container's own PID); a second process
//! started inside it appears without a reload (the card polls while shown); frozen, the card
//! says so and still lists them; killed, it shows the "not running" note. Screenshot
//! `processes`.

use std::time::{Duration, Instant};

use hyper::Method;
use tests::{
    ADMIN, ADMIN_PASSWORD, Daemon,
    browser::Browser,
    containers::{self, Reaper},
};

/// The rows the card shows: (PID cell, command cell) in page order.
const ROWS_JS: &str = "Array.from(document.querySelectorAll('[data-testid=process]'))\
     .map(r => [r.querySelector('[data-testid=process-pid]').textContent.trim(),\
                r.querySelector('[data-testid=process-command]').textContent.trim()])";

async fn top(c: &backend::client::Client, name: &str) -> Vec<wire::ContainerProcess> {
    containers::call(
        c,
        Method::GET,
        &format!("/api/v1/containers/{name}/top"),
        None,
    )
    .await
    .expect("GET …/top")
}

/// Waits until the card's rows are exactly the API's processes (PID and command each).
async fn wait_rows(b: &Browser, want: &[wire::ContainerProcess]) {
    let want: Vec<(String, String)> = want
        .iter()
        .map(|p| (p.pid.to_string(), p.command.clone()))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let v = b
            .client
            .execute(&format!("return {ROWS_JS};"), vec![])
            .await
            .expect("read the process rows");
        let rows: Vec<(String, String)> = serde_json::from_value(v).unwrap_or_default();
        if rows == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the card never showed {want:?} (last: {rows:?})"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn the_processes_card_lists_the_containers_processes() {
    let daemon = Daemon::start();
    let _reaper = Reaper::new(&daemon);
    daemon.admin_token();
    let Some(b) = Browser::start().await else {
        return;
    };
    let c = daemon.unix_client();
    let rootfs = tests::rootfs::Rootfs::new();
    let name = containers::sleeper(&daemon, &rootfs, "top").await;
    let pid = containers::get(&c, &name).await.pid.expect("a running pid");

    let procs = top(&c, &name).await;
    assert_eq!(procs.len(), 1, "{procs:?}");
    assert_eq!(procs[0].pid, pid, "top lists the container's host PID");
    assert_eq!(procs[0].command, "sleep 1000");

    let base = daemon.url();
    b.sign_in(&base, ADMIN, ADMIN_PASSWORD).await;
    b.open(&base, &format!("/containers/{name}")).await;
    b.wait_for(".page-head [data-status=running]").await;
    wait_rows(&b, &procs).await;
    b.wait_text("[data-testid=processes-count]", "1 process")
        .await;
    b.client
        .execute(
            "document.querySelector('[data-testid=processes]').scrollIntoView()",
            vec![],
        )
        .await
        .expect("scroll to the processes");
    let shot = b.screenshot("processes").await;
    eprintln!("screenshot: {}", shot.display());

    // A second process, left running in the background: the card shows it at its next poll.
    let r = containers::exec(
        &c,
        &name,
        &["/bin/sh", "-c", "sleep 999 </dev/null >/dev/null 2>&1 &"],
    )
    .await;
    assert_eq!(r.exit_code, 0, "{r:?}");
    let procs = top(&c, &name).await;
    assert!(
        procs
            .iter()
            .any(|p| p.command == "sleep 999" && p.pid != pid),
        "{procs:?}"
    );
    wait_rows(&b, &procs).await;
    b.wait_text("[data-testid=processes-count]", "2 processes")
        .await;

    // Frozen: still listed, with a note.
    containers::action(&c, &name, "freeze").await;
    b.wait_for("[data-testid=processes-paused]").await;
    wait_rows(&b, &procs).await;

    // Killed: nothing to list, and the card says why.
    containers::action(&c, &name, "kill").await;
    b.wait_text("[data-testid=processes-note]", "not running")
        .await;
    assert!(
        b.client
            .find_all(fantoccini::Locator::Css("[data-testid=process]"))
            .await
            .expect("find rows")
            .is_empty(),
        "no process rows once the container is gone"
    );
    b.close().await;
}
