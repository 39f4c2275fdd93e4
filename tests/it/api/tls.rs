//! HTTPS on the TCP listener: a daemon on 127.0.0.2 with a certificate generated here answers
//! real TLS requests (with the listen address in its Host allowlist and `Secure` session
//! cookies), plain HTTP to the same port gets no HTTP answer, and a listen address off loopback
//! without a certificate is refused at start with a message naming the flags.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::{
    io::{Read, Write},
    net::{IpAddr, Ipv4Addr, SocketAddr},
    process::{Child, Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use tests::{TempDir, corral_bin, remove_cgroup_subtree, unique};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::{
    TlsConnector,
    rustls::{
        ClientConfig, RootCertStore,
        crypto::aws_lc_rs,
        pki_types::{CertificateDer, ServerName},
    },
};

const IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);

/// `corral serve` with TLS, stopped (SIGTERM) and its cgroup subtree removed on drop.
struct TlsDaemon {
    child: Child,
    addr: SocketAddr,
    state: TempDir,
    cgroup_root: String,
}

impl Drop for TlsDaemon {
    fn drop(&mut self) {
        tests::terminate(&mut self.child);
        remove_cgroup_subtree(&self.cgroup_root);
    }
}

fn free_port_on(ip: Ipv4Addr) -> u16 {
    std::net::TcpListener::bind((ip, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn connector(cert: &CertificateDer<'static>) -> TlsConnector {
    let mut roots = RootCertStore::empty();
    roots.add(cert.clone()).unwrap();
    let mut config = ClientConfig::builder_with_provider(Arc::new(aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    TlsConnector::from(Arc::new(config))
}

/// One HTTPS request; returns the status line's code, the lowercased head and the body.
async fn https(
    tls: &TlsConnector,
    addr: SocketAddr,
    host: &str,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> std::io::Result<(u16, String, String)> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let mut s = tls
        .connect(ServerName::IpAddress(IpAddr::V4(IP).into()), tcp)
        .await?;
    assert_eq!(
        s.get_ref().1.alpn_protocol(),
        Some(&b"http/1.1"[..]),
        "ALPN"
    );
    let body = body.unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nX-Corral-Client: test\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await?;
    let mut raw = Vec::new();
    // The server may close without close_notify after the answer: keep what arrived.
    let _ = s.read_to_end(&mut raw).await;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Ok((status, head.to_lowercase(), rest.to_owned()))
}

/// One HTTPS GET with a `Cookie` header; returns status, lowercased head and body.
async fn https_cookie(
    tls: &TlsConnector,
    addr: SocketAddr,
    host: &str,
    path: &str,
    cookie: &str,
) -> std::io::Result<(u16, String, String)> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let mut s = tls
        .connect(ServerName::IpAddress(IpAddr::V4(IP).into()), tcp)
        .await?;
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nCookie: {cookie}\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await?;
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw).await;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Ok((status, head.to_lowercase(), rest.to_owned()))
}

#[tokio::test]
async fn https_off_the_default_address_with_a_configured_certificate() {
    let state = TempDir::new("corral-it-tls");
    let key = rcgen::generate_simple_self_signed(vec!["localhost".into(), IP.to_string()]).unwrap();
    let (cert_pem, key_pem) = (state.path().join("cert.pem"), state.path().join("key.pem"));
    std::fs::write(&cert_pem, key.cert.pem()).unwrap();
    std::fs::write(&key_pem, key.signing_key.serialize_pem()).unwrap();
    let cert_der = key.cert.der().clone();

    let addr = SocketAddr::new(IP.into(), free_port_on(IP));
    let cgroup_root = unique("corral-it");
    let log = std::fs::File::create(state.path().join("daemon.log")).unwrap();
    let child = Command::new(corral_bin())
        .arg("serve")
        .args(["--listen", &addr.to_string()])
        .arg("--tls-cert")
        .arg(&cert_pem)
        .arg("--tls-key")
        .arg(&key_pem)
        .arg("--socket")
        .arg(state.path().join("run/corral.sock"))
        .arg("--state-dir")
        .arg(state.path().join("state"))
        .args(["--cgroup-root", &cgroup_root])
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let mut d = TlsDaemon {
        child,
        addr,
        state,
        cgroup_root,
    };
    let tls = connector(&cert_der);
    let host = addr.to_string();

    // Health over real TLS, the listen address accepted as Host.
    let deadline = Instant::now() + Duration::from_secs(20);
    let (status, _, body) = loop {
        match https(&tls, d.addr, &host, "GET", "/api/v1/health", None).await {
            Ok(r) if r.0 == 200 => break r,
            _ => {}
        }
        if let Some(s) = d.child.try_wait().unwrap() {
            panic!(
                "daemon exited with {s}: {}",
                std::fs::read_to_string(d.state.path().join("daemon.log")).unwrap_or_default()
            );
        }
        assert!(Instant::now() < deadline, "no HTTPS health answer");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(status, 200);
    assert!(body.contains("\"status\":\"ok\""), "{body}");

    // The Host allowlist still holds over TLS; localhost stays allowed.
    let (status, _, body) = https(&tls, d.addr, "evil.example", "GET", "/api/v1/health", None)
        .await
        .unwrap();
    assert_eq!(status, 403, "{body}");
    let local = format!("localhost:{}", addr.port());
    let (status, _, _) = https(&tls, d.addr, &local, "GET", "/api/v1/health", None)
        .await
        .unwrap();
    assert_eq!(status, 200);
    // 401 without credentials, as over plain HTTP.
    let (status, _, _) = https(&tls, d.addr, &host, "GET", "/api/v1/containers", None)
        .await
        .unwrap();
    assert_eq!(status, 401);

    // First-run setup over HTTPS: the session cookie is Secure.
    let token = std::fs::read_to_string(d.state.path().join("state/setup-token")).unwrap();
    let setup = serde_json::json!({"token": token.trim(), "name": "admin", "password": "a long password 123"});
    let (status, head, body) = https(
        &tls,
        d.addr,
        &host,
        "POST",
        "/api/v1/setup",
        Some(&setup.to_string()),
    )
    .await
    .unwrap();
    assert_eq!(status, 201, "{body}");
    // Under TLS the cookie is `__Host-`: Secure, Path=/, no Domain, so no sibling host and no
    // plain-HTTP page can set or shadow it.
    let cookie = head
        .lines()
        .find(|l| l.starts_with("set-cookie: __host-corral_session="))
        .unwrap_or_else(|| panic!("no __Host- session cookie: {head}"));
    assert!(cookie.contains("; secure"), "{cookie}");
    assert!(
        cookie.contains("; path=/;") || cookie.ends_with("; path=/"),
        "{cookie}"
    );
    assert!(!cookie.contains("domain"), "{cookie}");
    assert!(
        cookie.contains("httponly") && cookie.contains("samesite=strict"),
        "{cookie}"
    );
    let sid = cookie["set-cookie: __host-corral_session=".len()..]
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    // (Session ids are lowercase hex: lowercasing the head kept it.)
    let addr = d.addr;
    let me = |cookie: String| {
        let (tls, host) = (tls.clone(), host.clone());
        async move {
            https_cookie(&tls, addr, &host, "/api/v1/me", &cookie)
                .await
                .unwrap()
        }
    };
    let (status, _, body) = me(format!("__Host-corral_session={sid}")).await;
    assert_eq!(status, 200, "{body}");
    // A plain-named cookie (as a sibling host or a plain-HTTP page could plant) is not read.
    let (status, _, _) = me(format!("corral_session={sid}")).await;
    assert_eq!(status, 401);
    // Two session cookies: refused.
    let (status, _, body) = me(format!(
        "__Host-corral_session={sid}; __Host-corral_session=planted"
    ))
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("duplicate_session_cookie"), "{body}");

    // Plain HTTP to the HTTPS port: no HTTP answer, the connection just ends.
    let mut plain = std::net::TcpStream::connect(d.addr).unwrap();
    plain
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    plain
        .write_all(format!("GET /api/v1/health HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes())
        .unwrap();
    let mut raw = Vec::new();
    let _ = plain.read_to_end(&mut raw);
    assert!(
        !raw.starts_with(b"HTTP/"),
        "plain HTTP got an HTTP answer: {:?}",
        String::from_utf8_lossy(&raw)
    );
    // A client that does not trust the certificate cannot talk to it.
    let other = rcgen::generate_simple_self_signed(vec![IP.to_string()]).unwrap();
    let stranger = connector(other.cert.der());
    assert!(
        https(&stranger, d.addr, &host, "GET", "/api/v1/health", None)
            .await
            .is_err(),
        "a certificate the client does not trust is refused"
    );
    // And the daemon still serves afterwards.
    let (status, _, _) = https(&tls, d.addr, &host, "GET", "/api/v1/health", None)
        .await
        .unwrap();
    assert_eq!(status, 200);

    // The CLI over https://, verified against the daemon's certificate.
    let https_host = format!("https://{host}");
    let cli = |args: &[&str]| {
        Command::new(corral_bin())
            .args(["--host", &https_host])
            .args(args)
            .env_remove("CORRAL_TOKEN")
            .env_remove("CORRAL_TLS_CA")
            .output()
            .unwrap()
    };
    let ca = cert_pem.to_str().unwrap();
    let out = cli(&["--tls-ca", ca, "version"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("Daemon: "), "{out:?}");
    // The API answers over it (401: the CLI gave no token).
    let out = cli(&["--tls-ca", ca, "ps"]);
    assert!(!out.status.success(), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr).to_lowercase();
    assert!(
        err.contains("credential") || err.contains("authenticat"),
        "{err}"
    );
    // Without a CA the CLI says which flag it needs; with a stranger's it refuses the daemon.
    let out = cli(&["version"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("--tls-ca") && err.contains("CORRAL_TLS_CA"),
        "{err}"
    );
    let stranger_pem = d.state.path().join("stranger.pem");
    std::fs::write(&stranger_pem, other.cert.pem()).unwrap();
    let out = cli(&["--tls-ca", stranger_pem.to_str().unwrap(), "version"]);
    assert!(!out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot connect"),
        "{out:?}"
    );
}

#[test]
fn plain_http_off_loopback_is_refused_at_start() {
    let state = TempDir::new("corral-it-tls");
    let out = Command::new(corral_bin())
        .arg("serve")
        .args(["--listen", "0.0.0.0:0"])
        .arg("--socket")
        .arg(state.path().join("run/corral.sock"))
        .arg("--state-dir")
        .arg(state.path().join("state"))
        .args(["--cgroup-root", &unique("corral-it")])
        .env("RUST_BACKTRACE", "0")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--listen 0.0.0.0:0 is not a loopback address")
            && err.contains("--tls-cert")
            && err.contains("--insecure-http"),
        "{err}"
    );
    assert!(
        !state.path().join("state").exists(),
        "nothing is created before the refusal"
    );
    // A certificate without its key is a usage error.
    let out = Command::new(corral_bin())
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--tls-cert",
            "/nonexistent.pem",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--tls-key"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
