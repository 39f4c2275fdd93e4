//! The dashboard's counterparts of API capabilities, in Chromium against a real daemon: the
//! Images page (upload with progress, removal refused while a container uses the image), the
//! new-container form's user, working directory, restart, volumes and labels (client checks
//! beside their fields) and the container's full spec on its page, the Host page's network card, kill of a frozen container,
//! team membership editing, changing one's own password, and a pull from a registry.
//! Screenshots `images`, `images-pull`, `images-remove-refused`, `new-container-more`, `container-spec`, `host-network`, `container-killed`,
//! `team-members` and `account-password` in the artifacts dir.

use serde_json::json;
use tests::{
    ADMIN, ADMIN_PASSWORD, Daemon, TempDir,
    browser::Browser,
    call,
    containers::Reaper,
    net::{NetGuard, bridged_daemon},
    rootfs::{Rootfs, docker_save},
};

#[tokio::test]
async fn images_page_uploads_and_removes() {
    let daemon = Daemon::start();
    let _reaper = Reaper::new(&daemon);
    let admin = daemon.admin_token();
    let Some(b) = Browser::start().await else {
        return;
    };
    let base = daemon.url();
    let dir = TempDir::new("corral-it-upload");
    let tarball = dir.path().join("bb.tar");
    docker_save(&tarball, "bb:1", &["sh", "-c", "echo up; exec sleep 1000"]);

    b.sign_in(&base, ADMIN, ADMIN_PASSWORD).await;
    b.click("nav a[href='/images']").await;
    b.wait_text(".empty-state", "No images").await;
    // A bad name is refused by the daemon and shown beside its field; nothing is imported.
    let input = b.wait_for("[data-testid=image-file]").await;
    input
        .send_keys(&tarball.display().to_string())
        .await
        .expect("choose the file");
    b.fill("#f-tag", "no spaces").await;
    b.click("[data-testid=upload]").await;
    b.wait_text("[data-field=tag]", "must be name[:tag]").await;
    b.fill("#f-tag", "web").await;
    b.click("[data-testid=upload]").await;
    b.wait_text("[data-testid=upload-done]", "bb:1, web:latest")
        .await;
    b.wait_text(
        "[data-testid=images-table] tr[data-image='bb:1']",
        "web:latest",
    )
    .await;
    b.screenshot("images").await;

    // In use: the removal is refused and the page says why.
    let r = call(
        &daemon,
        &admin,
        "POST",
        "/api/v1/containers",
        Some(json!({"name": "uses-bb", "image": "bb:1", "start": true})),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    b.click("tr[data-image='bb:1'] [data-testid=remove-image]")
        .await;
    b.click("tr[data-image='bb:1'] [data-testid=confirm-yes]")
        .await;
    b.wait_text(".error-box", "used by container uses-bb").await;
    b.screenshot("images-remove-refused").await;
    let r = call(
        &daemon,
        &admin,
        "DELETE",
        "/api/v1/containers/uses-bb?force=true",
        None,
    );
    assert_eq!(r.status, 204, "{}", r.body);
    b.click("tr[data-image='bb:1'] [data-testid=remove-image]")
        .await;
    b.click("tr[data-image='bb:1'] [data-testid=confirm-yes]")
        .await;
    b.wait_text(".empty-state", "No images").await;
    let r = call(&daemon, &admin, "GET", "/api/v1/images", None);
    assert_eq!(r.json(), json!([]));
    b.close().await;
}

/// The Images page's pull (issue 18): from a real local registry (`tests::registry`), the
/// outcome shown and the image listed; an unknown tag's refusal under the field. Screenshot
/// `images-pull`.
#[tokio::test]
async fn images_page_pulls_from_a_registry() {
    if !tests::registry::Registry::available() {
        // Only the VM lacks it, and the VM runs no browser tests.
        panic!("docker-registry and skopeo are needed (cargo xtask test installs them)");
    }
    let reg = tests::registry::Registry::start();
    reg.push_busybox("web:1", &["echo", "hi"]);
    let daemon = Daemon::start_with(&["--insecure-registry", &reg.addr()]);
    let _reaper = Reaper::new(&daemon);
    let admin = daemon.admin_token();
    let Some(b) = Browser::start().await else {
        return;
    };
    let base = daemon.url();
    b.sign_in(&base, ADMIN, ADMIN_PASSWORD).await;
    b.click("nav a[href='/images']").await;
    b.wait_text(".empty-state", "No images").await;

    let missing = format!("{}/web:nope", reg.addr());
    b.fill("#f-reference", &missing).await;
    b.click("[data-testid=pull]").await;
    b.wait_text("[data-field=reference]", "is not in the registry")
        .await;

    let image = format!("{}/web:1", reg.addr());
    b.fill("#f-reference", &image).await;
    b.click("[data-testid=pull]").await;
    b.wait_text("[data-testid=pull-done]", "Downloaded newer image for")
        .await;
    b.wait_text(
        &format!("[data-testid=images-table] tr[data-image='{image}']"),
        &image,
    )
    .await;
    b.screenshot("images-pull").await;
    b.fill("#f-reference", &image).await;
    b.click("[data-testid=pull]").await;
    b.wait_text("[data-testid=pull-done]", "up to date").await;
    let r = call(&daemon, &admin, "GET", "/api/v1/images", None);
    assert_eq!(r.json().as_array().map(Vec::len), Some(1), "{}", r.body);
    b.close().await;
}

#[tokio::test]
async fn new_container_form_spec_card_and_kill_of_a_frozen_container() {
    let daemon = Daemon::start();
    let _reaper = Reaper::new(&daemon);
    let admin = daemon.admin_token();
    let Some(b) = Browser::start().await else {
        return;
    };
    let base = daemon.url();
    let rootfs = tests::rootfs::Rootfs::new();
    let vol = TempDir::new("corral-it-vol");
    let name = tests::unique("spec").replace('_', "-");

    b.sign_in(&base, ADMIN, ADMIN_PASSWORD).await;
    b.open(&base, "/containers/new").await;
    b.wait_for("[data-testid=new-form]").await;
    b.fill("#f-name", &name).await;
    b.click("[data-testid=source-rootfs]").await;
    b.fill("#f-rootfs", &rootfs.path().display().to_string())
        .await;
    b.fill("#f-command", "sleep 1000").await;
    b.fill("#f-env", "GREETING=hi").await;
    b.fill("#f-user", "1000:1000").await;
    b.fill("#f-workdir", "/tmp").await;
    b.click("#f-restart option[value=on-failure]").await;
    // Client checks, beside their fields: a label without `=`, a volume of four parts.
    b.fill("#f-labels", "project=web\njunk").await;
    b.fill("#f-volumes", "a:b:c:d").await;
    b.click("[data-testid=create]").await;
    b.wait_text("[data-field=labels]", "must be KEY=value")
        .await;
    b.wait_text("[data-field=mounts]", "volume 1:").await;
    // The server's refusal of a volume is shown beside the volumes too.
    b.fill("#f-labels", "project=web\ntier=front").await;
    b.fill("#f-volumes", "/scratch\n/no/such/dir/here:/data")
        .await;
    b.click("[data-testid=create]").await;
    b.wait_text("[data-field=mounts]", "volume 2:").await;
    b.fill(
        "#f-volumes",
        &format!("/scratch\n{}:/data:ro", vol.path().display()),
    )
    .await;
    b.screenshot("new-container-more").await;
    b.click("[data-testid=create]").await;

    // The page shows the whole spec, as inspect has it.
    b.wait_text("[data-testid=container-name]", &name).await;
    b.wait_for(".page-head [data-status=running]").await;
    b.wait_text("[data-testid=spec-user]", "1000:1000").await;
    b.wait_text("[data-testid=spec-workdir]", "/tmp").await;
    b.wait_text("[data-testid=spec-restart]", "on-failure")
        .await;
    b.wait_text("[data-testid=spec-labels]", "tier=front").await;
    b.wait_text("[data-testid=spec-env]", "GREETING=hi").await;
    b.wait_text("[data-testid=spec-mounts]", "/data (ro)").await;
    b.wait_text("[data-testid=spec-mounts]", "tmpfs → /scratch")
        .await;
    b.client
        .execute(
            "document.querySelector('[data-testid=spec]').scrollIntoView()",
            vec![],
        )
        .await
        .expect("scroll to the spec");
    b.screenshot("container-spec").await;
    b.client
        .execute("window.scrollTo(0, 0)", vec![])
        .await
        .expect("scroll back");
    let r = call(
        &daemon,
        &admin,
        "GET",
        &format!("/api/v1/containers/{name}"),
        None,
    );
    let spec = &r.json()["spec"];
    assert_eq!(spec["user"], "1000:1000", "{spec}");
    assert_eq!(spec["workdir"], "/tmp", "{spec}");
    assert_eq!(spec["restart"], "on-failure", "{spec}");
    assert_eq!(spec["labels"], json!({"project": "web", "tier": "front"}));
    let mounts = spec["mounts"].as_array().expect("mounts");
    assert_eq!(mounts.len(), 2, "{spec}");
    assert_eq!(mounts[0]["type"], "tmpfs");
    assert_eq!(mounts[1]["destination"], "/data");
    assert_eq!(mounts[1]["readonly"], true);

    // Kill of a frozen container: offered while paused, it ends exited (137).
    b.click("[data-action=freeze]").await;
    b.wait_for(".page-head [data-status=paused]").await;
    b.click(".page-head [data-testid=kill]").await;
    b.click(".page-head [data-testid=confirm-yes]").await;
    b.wait_for(".page-head [data-status=exited]").await;
    b.screenshot("container-killed").await;
    let r = call(
        &daemon,
        &admin,
        "GET",
        &format!("/api/v1/containers/{name}"),
        None,
    );
    assert_eq!(r.json()["exit_code"], 137, "{}", r.body);
    let r = call(
        &daemon,
        &admin,
        "DELETE",
        &format!("/api/v1/containers/{name}?force=true"),
        None,
    );
    assert_eq!(r.status, 204, "{}", r.body);
    b.close().await;
}

#[tokio::test]
async fn team_membership_and_own_password() {
    let daemon = Daemon::start();
    let admin = daemon.admin_token();
    let Some(b) = Browser::start().await else {
        return;
    };
    let base = daemon.url();
    for t in ["crew", "other"] {
        let r = call(
            &daemon,
            &admin,
            "POST",
            "/api/v1/teams",
            Some(json!({"name": t})),
        );
        assert_eq!(r.status, 201, "{}", r.body);
    }
    let r = call(
        &daemon,
        &admin,
        "POST",
        "/api/v1/users",
        Some(
            json!({"name": "sam", "role": "operator", "teams": ["other"], "password": "a long password 123"}),
        ),
    );
    assert_eq!(r.status, 201, "{}", r.body);

    b.sign_in(&base, ADMIN, ADMIN_PASSWORD).await;
    b.open(&base, "/teams/crew").await;
    b.wait_text("[data-testid=member-list]", "No members").await;
    b.click("[data-testid=add-member-pick] option[value=sam]")
        .await;
    b.click("[data-testid=add-member]").await;
    b.wait_for("[data-testid=member-list] [data-member=sam]")
        .await;
    let r = call(&daemon, &admin, "GET", "/api/v1/users", None);
    let sam = r
        .json()
        .as_array()
        .expect("users")
        .iter()
        .find(|u| u["name"] == "sam")
        .cloned()
        .expect("sam");
    assert_eq!(
        sam["teams"],
        json!(["crew", "other"]),
        "kept the other team"
    );
    b.screenshot("team-members").await;
    b.click("[data-member=sam] [data-testid=remove-member]")
        .await;
    b.click("[data-member=sam] [data-testid=confirm-yes]").await;
    b.wait_text("[data-testid=member-list]", "No members").await;
    let r = call(&daemon, &admin, "GET", "/api/v1/users", None);
    assert!(
        r.body.contains(r#""name":"sam""#) && !r.body.contains("crew"),
        "{}",
        r.body
    );

    // Own password: from the user in the side bar. A wrong current one is refused beside its
    // field, two different new ones before anything is sent; then it changes.
    b.click("[data-testid=whoami]").await;
    b.wait_for("[data-testid=password-form]").await;
    b.fill("#f-current_password", "not my password").await;
    b.fill("#f-new_password", "a brand new passphrase").await;
    b.fill("#f-new_password_again", "a brand new passphrase")
        .await;
    b.click("[data-testid=change-password]").await;
    b.wait_for("[data-field=current_password]:not(:empty)")
        .await;
    b.fill("#f-current_password", ADMIN_PASSWORD).await;
    b.fill("#f-new_password_again", "something else").await;
    b.click("[data-testid=change-password]").await;
    b.wait_text("[data-field=new_password_again]", "differ")
        .await;
    b.fill("#f-new_password_again", "a brand new passphrase")
        .await;
    b.click("[data-testid=change-password]").await;
    b.wait_for("[data-testid=password-changed]").await;
    b.screenshot("account-password").await;
    // The session goes on; the new password signs in, the old one no longer does.
    b.open(&base, "/account").await;
    b.wait_for("[data-testid=password-form]").await;
    let login = |password: &str| {
        daemon
            .http(
                "POST",
                "/api/v1/login",
                &[
                    ("content-type", "application/json"),
                    ("x-corral-client", "test"),
                ],
                Some(&json!({"name": ADMIN, "password": password}).to_string()),
            )
            .status
    };
    assert_eq!(login("a brand new passphrase"), 200);
    assert_eq!(login(ADMIN_PASSWORD), 401);
    b.close().await;
}

/// The Host page's network card: the bridge and subnet, and a bridged container by name with
/// its address and published port (`corral network inspect`'s counterpart).
#[tokio::test]
async fn network_card_lists_bridged_containers() {
    let (daemon, bridge, table) = bridged_daemon(false, &[]);
    let _net = NetGuard::new(&daemon, &bridge, &table);
    let _reaper = Reaper::new(&daemon);
    let Some(b) = Browser::start().await else {
        return;
    };
    let rootfs = Rootfs::new();
    let root = rootfs.path().display().to_string();
    let name = tests::unique("netcard").replace('_', "-");
    let port = tests::free_port();
    daemon.corral(&[
        "run",
        "-d",
        "--name",
        &name,
        "-p",
        &format!("127.0.0.1:{port}:80"),
        "--rootfs",
        &root,
        "sleep",
        "100",
    ]);
    let admin = daemon.admin_token();
    let c = call(
        &daemon,
        &admin,
        "GET",
        &format!("/api/v1/containers/{name}"),
        None,
    )
    .json();
    let ip = c["network"]["ip_address"]
        .as_str()
        .expect("a bridge address")
        .to_owned();
    let base = daemon.url();
    b.sign_in(&base, ADMIN, ADMIN_PASSWORD).await;
    b.open(&base, "/cgroups").await;
    b.wait_text("[data-testid=net-bridge]", &bridge).await;
    b.wait_text("[data-testid=net-endpoints]", &name).await;
    b.wait_text("[data-testid=net-endpoints]", &ip).await;
    b.wait_text("[data-testid=net-endpoints]", &format!("127.0.0.1:{port}"))
        .await;
    b.client
        .execute(
            "document.querySelector('[data-testid=network-card]').scrollIntoView()",
            vec![],
        )
        .await
        .expect("scroll to the network card");
    b.screenshot("host-network").await;
    daemon.corral(&["rm", "-f", &name]);
    b.close().await;
}
