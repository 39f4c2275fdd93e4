//! Image upload through real HTTP: `POST /api/v1/images/import` with the file as the body.
//! An admin's upload is imported (named by `?tag=`) and its file removed; a refused, oversized,
//! broken-off or stalled upload leaves no file in the state directory and an audit row; only
//! admins upload; other routes keep their 1 MiB body cap.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::{
    io::{Read, Write},
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use tests::{Daemon, RawResponse, TempDir, rootfs::docker_save};

/// An upload of `body` as `token` (`application/x-tar`, its length announced).
fn upload(d: &Daemon, token: &str, query: &str, body: &[u8]) -> RawResponse {
    let auth = format!("Bearer {token}");
    d.http_bytes(
        "POST",
        &format!("/api/v1/images/import{query}"),
        &[
            ("authorization", &auth),
            ("content-type", "application/x-tar"),
        ],
        body,
    )
}

#[track_caller]
fn expect(r: &RawResponse, status: u16, what: &str) {
    assert_eq!(r.status, status, "{what}: {}", r.body);
}

/// The files in the image store's temporary directory (uploads land there).
fn tmp_files(d: &Daemon) -> Vec<String> {
    std::fs::read_dir(d.state.path().join("state/images/tmp"))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Waits until the temporary directory is empty (the daemon notices a broken-off upload when
/// its connection closes).
#[track_caller]
fn wait_no_upload(d: &Daemon, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !tmp_files(d).is_empty() {
        assert!(Instant::now() < deadline, "{what}: left {:?}", tmp_files(d));
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn audit_imports(d: &Daemon, admin: &str) -> Vec<Value> {
    let auth = format!("Bearer {admin}");
    let r = d.http(
        "GET",
        "/api/v1/audit?action=image.import&limit=1000",
        &[("authorization", &auth)],
        None,
    );
    expect(&r, 200, "audit");
    r.json().as_array().unwrap().clone()
}

#[test]
fn upload_imports_and_refusals_leave_nothing() {
    let d = Daemon::start_with(&["--max-upload-size", "4M"]);
    let admin = d.admin_token();
    let dir = TempDir::new("corral-it-upload");
    let tarball = dir.path().join("bb.tar");
    docker_save(&tarball, "bb:1", &["sh", "-c", "echo up"]);
    let file = std::fs::read(&tarball).unwrap();
    assert!(file.len() > 1 << 20, "above the 1 MiB cap of other routes");

    // Uploaded over TCP (a remote client): imported, also named by ?tag=, the file removed.
    let r = upload(&d, &admin, "?tag=up:2&filename=bb.tar", &file);
    expect(&r, 201, "admin uploads");
    let tags: Vec<String> = serde_json::from_value(r.json()["tags"].clone()).unwrap();
    assert_eq!(tags, ["bb:1", "up:2"]);
    assert!(tmp_files(&d).is_empty(), "{:?}", tmp_files(&d));
    let rows = audit_imports(&d, &admin);
    let ok = rows
        .iter()
        .find(|r| r["target"] == "image:upload:bb.tar" && r["result"] == "ok")
        .unwrap_or_else(|| panic!("{rows:#?}"));
    let after: Value = serde_json::from_str(ok["after"].as_str().unwrap()).unwrap();
    assert_eq!(after["image"]["tags"], json!(["bb:1", "up:2"]));

    // An operator may not upload; nothing of the body is kept.
    let auth = format!("Bearer {admin}");
    let r = d.http(
        "POST",
        "/api/v1/users",
        &[("authorization", &auth), ("content-type", "application/json")],
        Some(
            &json!({"name": "op", "role": "operator", "teams": [], "password": "a long password 123"})
                .to_string(),
        ),
    );
    expect(&r, 201, "user");
    let op = d.token_for("op");
    expect(&upload(&d, &op, "", &file), 403, "operator uploads");

    // Malformed query: 400 naming the field, before the body is read.
    let r = upload(&d, &admin, "?tag=no%20spaces", &file);
    expect(&r, 400, "bad tag");
    assert_eq!(r.json()["field"], "tag");
    let r = upload(&d, &admin, "?filename=a%2Fb.tar", &file);
    expect(&r, 400, "bad file name");
    assert_eq!(r.json()["field"], "filename");
    let r = upload(&d, &admin, "?colour=red", &file);
    expect(&r, 400, "unknown parameter");

    // Larger than --max-upload-size: announced → 413 at once; chunked → 413 when it passes.
    let big = vec![0u8; 5 << 20];
    let r = upload(&d, &admin, "", &big);
    expect(&r, 413, "announced too large");
    assert_eq!(r.code(), "too_large");
    assert!(
        r.json()["message"].as_str().unwrap().contains("4 MiB"),
        "{}",
        r.body
    );
    let r = chunked_upload(&d, &admin, &big);
    assert!(r.starts_with("HTTP/1.1 413"), "{r}");
    wait_no_upload(&d, "chunked too large");

    // Not an image: 400, nothing kept.
    let r = upload(&d, &admin, "?filename=junk.tar", b"not a tarball at all");
    expect(&r, 400, "junk");
    let r = upload(&d, &admin, "", b"");
    expect(&r, 400, "empty");
    assert_eq!(r.json()["field"], "body");

    // Broken off half-way: the client closes after 1 MiB of an announced 3 MiB.
    let mut s = std::net::TcpStream::connect(d.url().trim_start_matches("http://")).unwrap();
    write!(
        s,
        "POST /api/v1/images/import?filename=cut.tar HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {admin}\r\nContent-Type: application/x-tar\r\nContent-Length: {}\r\n\r\n",
        d.url().trim_start_matches("http://"),
        3 << 20
    )
    .unwrap();
    s.write_all(&file[..1 << 20]).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(tmp_files(&d).len(), 1, "the upload is being written");
    drop(s);
    wait_no_upload(&d, "broken off");

    // Every refusal is in the audit log; the store holds the one image.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let rows = audit_imports(&d, &admin);
        let failed = rows.iter().filter(|r| r["result"] != "ok").count();
        if failed >= 8 || Instant::now() > deadline {
            assert!(failed >= 8, "{rows:#?}");
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let r = d.http("GET", "/api/v1/images", &[("authorization", &auth)], None);
    assert_eq!(r.json().as_array().unwrap().len(), 1);

    // Other routes keep their cap.
    let r = d.http_bytes(
        "POST",
        "/api/v1/containers",
        &[
            ("authorization", &auth),
            ("content-type", "application/json"),
        ],
        &vec![b' '; 2 << 20],
    );
    expect(&r, 413, "a 2 MiB container spec");
    assert!(tmp_files(&d).is_empty());
}

/// An upload without Content-Length (chunked); the answer's head.
fn chunked_upload(d: &Daemon, token: &str, body: &[u8]) -> String {
    let host = d.url().trim_start_matches("http://").to_owned();
    let mut s = std::net::TcpStream::connect(&host).unwrap();
    write!(
        s,
        "POST /api/v1/images/import HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/x-tar\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    for c in body.chunks(256 << 10) {
        if write!(s, "{:x}\r\n", c.len())
            .and_then(|()| s.write_all(c))
            .and_then(|()| s.write_all(b"\r\n"))
            .is_err()
        {
            break; // answered early and closed
        }
    }
    let _ = s.write_all(b"0\r\n\r\n");
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// `POST /api/v1/images/pull` and `/registries/login|logout` (issue 18) without a registry:
/// admins only (and audited); a malformed reference or registry is a 400 naming the field;
/// an unreachable registry a 424 `registry_unreachable` at once; credentials are never
/// stored for a registry that did not accept them. (`kernel::registry_pull` pulls from a
/// real registry.)
#[test]
fn pull_and_registry_login_are_admin_only_and_name_the_cause() {
    let d = Daemon::start();
    let admin = d.admin_token();
    let auth = format!("Bearer {admin}");
    let post = |token: &str, path: &str, body: Value| {
        let auth = format!("Bearer {token}");
        d.http(
            "POST",
            path,
            &[
                ("authorization", &auth),
                ("content-type", "application/json"),
            ],
            Some(&body.to_string()),
        )
    };
    let r = d.http(
        "POST",
        "/api/v1/users",
        &[("authorization", &auth), ("content-type", "application/json")],
        Some(
            &json!({"name": "op", "role": "operator", "teams": [], "password": "a long password 123"})
                .to_string(),
        ),
    );
    expect(&r, 201, "user");
    let op = d.token_for("op");
    // A closed loopback port: refused at once, no public registry involved.
    let unreachable = json!({"reference": "127.0.0.1:1/app:1"});
    expect(
        &post(&op, "/api/v1/images/pull", unreachable.clone()),
        403,
        "operator pulls",
    );
    let login = json!({"registry": "127.0.0.1:1", "username": "u", "password": "p"});
    expect(
        &post(&op, "/api/v1/registries/login", login.clone()),
        403,
        "operator logs in",
    );

    let r = post(
        &admin,
        "/api/v1/images/pull",
        json!({"reference": "Bad Ref"}),
    );
    expect(&r, 400, "bad reference");
    assert_eq!(r.json()["field"], "reference");
    let r = post(
        &admin,
        "/api/v1/images/pull",
        json!({"reference": "x", "extra": 1}),
    );
    expect(&r, 400, "unknown field");

    let t = Instant::now();
    let r = post(&admin, "/api/v1/images/pull", unreachable);
    expect(&r, 424, "unreachable registry");
    assert_eq!(r.json()["code"], "registry_unreachable");
    assert!(
        r.json()["message"]
            .as_str()
            .unwrap()
            .contains("cannot reach 127.0.0.1:1"),
        "{}",
        r.body
    );
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());

    let r = post(&admin, "/api/v1/registries/login", login);
    expect(&r, 424, "login to an unreachable registry");
    assert!(!d.state.path().join("state/registries/auth.json").exists());
    let r = post(
        &admin,
        "/api/v1/registries/login",
        json!({"registry": "a/b", "username": "u", "password": "p"}),
    );
    expect(&r, 400, "bad registry");
    assert_eq!(r.json()["field"], "registry");
    let r = post(
        &admin,
        "/api/v1/registries/logout",
        json!({"registry": "127.0.0.1:1"}),
    );
    expect(&r, 200, "logout");
    assert_eq!(r.json()["status"], "Not logged in to 127.0.0.1:1");

    let r = d.http(
        "GET",
        "/api/v1/audit?limit=100",
        &[("authorization", &auth)],
        None,
    );
    let rows: Vec<Value> = serde_json::from_str(&r.body).unwrap();
    for (action, actor, result) in [
        ("image.pull", "op", "denied"),
        ("image.pull", "admin", "failed"),
        ("registry.login", "op", "denied"),
        ("registry.login", "admin", "failed"),
        ("registry.logout", "admin", "ok"),
    ] {
        assert!(
            rows.iter()
                .any(|r| r["action"] == action && r["actor"] == actor && r["result"] == result),
            "no {action} {result} row of {actor}: {rows:#?}"
        );
    }
}
