//! `GET /api/v1/openapi.json` documents every route the daemon serves: each path below is
//! served (root over the unix socket is admin) and documented with the answer it really gives.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use serde_json::Value;
use tests::Daemon;

/// Routes without path parameters that had been served but not documented; each must now be
/// both.
const ONCE_MISSING: [&str; 4] = [
    "/api/v1/host",
    "/api/v1/host/cgroups",
    "/api/v1/network",
    "/metrics",
];

#[test]
fn every_route_is_documented_as_it_answers() {
    let d = Daemon::start();
    let doc = d.unix_http("GET", "/api/v1/openapi.json", &[], None).json();
    let paths = doc["paths"].as_object().unwrap();
    for p in ONCE_MISSING {
        assert!(paths[p]["get"].is_object(), "{p} is not documented");
    }
    // Every documented GET without parameters answers 200 with the documented media type.
    for (path, item) in paths {
        let Some(get) = item.get("get") else { continue };
        if path.contains('{') || path.ends_with("/events") || path.contains("/setup") {
            // Parameters, an endless stream, or a one-time link.
            continue;
        }
        let r = d.unix_http("GET", path, &[], None);
        if path.starts_with("/api/v1/fleet/") {
            // A hub's routes (kernel::fleet_ledger runs one): here, the documented refusal.
            assert_eq!(r.status, 404, "GET {path}: {}", r.body);
            assert!(r.body.contains("not_a_hub"), "GET {path}: {}", r.body);
            assert!(
                get["responses"]["404"].is_object(),
                "{path}: 404 documented"
            );
            continue;
        }
        assert_eq!(r.status, 200, "GET {path}: {}", r.body);
        let media = r
            .header("content-type")
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_owned();
        let content = &get["responses"]["200"]["content"];
        assert!(
            content.get(&media).is_some(),
            "GET {path} answers {media}, documented {content}"
        );
    }
    // `/metrics` is plain text, under its own path, not under /api/v1.
    assert!(!paths.contains_key("/api/v1/metrics"));
    // The create body's network knows every mode the runtime takes.
    let network = &doc["components"]["schemas"]["CreateContainer"]["properties"]["network"];
    let text: Value = network.clone();
    assert!(text.to_string().contains("bridge"), "{text}");
}
