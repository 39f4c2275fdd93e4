//! `GET /api/v1/network` against a real daemon: the bridge settings, and credentials required.

use tests::Daemon;

#[tokio::test]
async fn network_info_shows_the_bridge_and_needs_credentials() {
    let daemon = Daemon::start_with(&["--bridge", "corral-itapi", "--subnet", "10.215.0.0/24"]);
    let n: wire::NetworkInfo = daemon.admin_client().get("/api/v1/network").await.unwrap();
    assert_eq!(n.bridge, "corral-itapi");
    assert_eq!(n.subnet.as_deref(), Some("10.215.0.0/24"));
    assert!(!n.nat, "no NAT before the first bridged container");
    assert_eq!(n.nat_backend, None);
    assert!(n.endpoints.is_empty());
    let r = daemon.http("GET", "/api/v1/network", &[], None);
    assert_eq!(r.status, 401, "{r:?}");
}
