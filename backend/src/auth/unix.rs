//! The peer of a unix-socket connection (SO_PEERCRED), as axum connect-info.
//!
//! The daemon serves the unix socket with
//! `app.into_make_service_with_connect_info::<UnixPeer>()`; the middleware treats a request that
//! carries `ConnectInfo<UnixPeer>` as coming over the socket and every other request as TCP.

use axum::extract::connect_info::Connected;
use axum::serve::IncomingStream;
use tokio::net::UnixListener;

/// Credentials of the process at the other end of the unix socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnixPeer {
    /// `None` when the kernel would not say (treated as not root).
    pub uid: Option<u32>,
    pub pid: Option<i32>,
}

impl Connected<IncomingStream<'_, UnixListener>> for UnixPeer {
    fn connect_info(stream: IncomingStream<'_, UnixListener>) -> Self {
        match stream.io().peer_cred() {
            Ok(cred) => UnixPeer {
                uid: Some(cred.uid()),
                pid: cred.pid(),
            },
            Err(e) => {
                tracing::warn!(error = %e, "cannot read unix socket peer credentials");
                UnixPeer {
                    uid: None,
                    pid: None,
                }
            }
        }
    }
}
