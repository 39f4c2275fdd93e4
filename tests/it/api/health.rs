use tests::Daemon;

#[tokio::test]
async fn health_over_tcp_and_unix_socket() {
    let mut daemon = Daemon::start();
    for client in [daemon.tcp_client(None), daemon.unix_client()] {
        let h: wire::Health = client.get("/api/v1/health").await.unwrap();
        assert_eq!(h.status, "ok");
        assert_eq!(h.version, backend::VERSION);
    }
    let mode = std::fs::metadata(&daemon.socket).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
        0o600
    );
    assert!(
        daemon.stop().success(),
        "graceful shutdown on SIGTERM: {}",
        daemon.log()
    );
    assert!(!daemon.socket.exists(), "socket removed at shutdown");
}

#[tokio::test]
async fn unknown_api_path_is_json_404() {
    let daemon = Daemon::start();
    let err = daemon
        .unix_client()
        .get::<serde_json::Value>("/api/v1/nope")
        .await
        .unwrap_err();
    match err {
        backend::client::ClientError::Api { status, code, .. } => {
            assert_eq!(status.as_u16(), 404);
            assert_eq!(code, "not_found");
        }
        other => panic!("unexpected {other:?}"),
    }
}
