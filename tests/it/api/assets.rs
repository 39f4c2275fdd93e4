use tests::Daemon;

#[test]
fn dashboard_shell_assets_and_headers() {
    let daemon = Daemon::start();
    let index = daemon.http("GET", "/", &[], None);
    assert_eq!(index.status, 200);
    assert_eq!(index.header("cache-control"), Some("no-cache"));
    assert!(
        index
            .header("content-type")
            .unwrap()
            .starts_with("text/html")
    );
    let csp = index.header("content-security-policy").expect("csp");
    assert!(
        csp.contains("script-src 'self' 'wasm-unsafe-eval'")
            && csp.contains("frame-ancestors 'none'")
    );
    assert_eq!(index.header("x-frame-options"), Some("DENY"));

    // Deep links get the same shell (client-side routing).
    let deep = daemon.http("GET", "/containers/web", &[], None);
    assert_eq!(deep.status, 200);
    assert_eq!(deep.body, index.body);

    let html = index.body.clone();
    if let Some(start) = html.find("/assets/corral-") {
        // Built with the dashboard: the hashed module is immutable and compressed on request.
        let end = start + html[start..].find(".js").expect("module name") + 3;
        let js = daemon.http(
            "GET",
            &html[start..end],
            &[("Accept-Encoding", "gzip")],
            None,
        );
        assert_eq!(js.status, 200);
        assert_eq!(
            js.header("cache-control"),
            Some("public, max-age=31536000, immutable")
        );
        assert_eq!(js.header("content-encoding"), Some("gzip"));
        let wasm_path = html[start..end].replace(".js", "_bg.wasm");
        let wasm = daemon.http("GET", &wasm_path, &[], None);
        assert_eq!(wasm.header("content-type"), Some("application/wasm"));
        assert_eq!(&wasm.body.as_bytes()[..4], b"\0asm");
        // The lazily loaded pages' loader sits beside the module, as immutable as it.
        let dir = html[start..end].rsplit_once('/').expect("a directory").0;
        let split = daemon.http("GET", &format!("{dir}/split.js"), &[], None);
        assert_eq!(split.status, 200);
        assert_eq!(
            split.header("cache-control"),
            Some("public, max-age=31536000, immutable")
        );
    }
    // A missing hashed asset is a 404, never the HTML shell.
    assert_eq!(
        daemon
            .http("GET", "/assets/corral-0000.js", &[], None)
            .status,
        404
    );
    // The API never falls back to the shell (unknown paths answer JSON: 401 before 404).
    let api = daemon.http("GET", "/api/v1/nope", &[], None);
    assert_eq!(api.status, 401);
    assert!(
        api.header("content-type")
            .unwrap()
            .starts_with("application/json")
    );
    // Only GET and HEAD reach the shell.
    let auth = format!("Bearer {}", daemon.admin_token());
    let post = daemon.http(
        "POST",
        "/",
        &[("Authorization", &auth), ("X-Corral-Client", "test")],
        None,
    );
    assert_eq!(post.status, 405);
}
