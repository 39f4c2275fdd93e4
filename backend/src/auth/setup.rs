//! First start: while no admin exists, the daemon prints a one-time setup link
//! (`http://127.0.0.1:PORT/setup#TOKEN`; the fragment never reaches a server log) and also
//! writes the token to `<state-dir>/setup-token` (0600). `POST /api/v1/setup` with that token
//! creates the first admin, once. A restart before that prints a new link.

use std::{io::Write, net::SocketAddr, os::unix::fs::OpenOptionsExt, path::PathBuf};

use super::{Auth, AuthError, db, secret};
use crate::http::AppState;

pub(super) struct Pending {
    digest: [u8; 32],
    file: PathBuf,
}

/// Name of the file holding the setup token inside the state directory.
pub const SETUP_TOKEN_FILE: &str = "setup-token";

/// Prepares the auth layer at daemon start: computes the dummy hash (so the first login of an
/// unknown user costs no more than a real one) and, when no admin exists, opens setup: prints and
/// logs the link and writes the token file.
pub async fn start(state: &AppState, local: SocketAddr) -> Result<(), AuthError> {
    state.auth().dummy_hash().await?;
    let admins = db::run(state.store(), |c| db::count_admins(c)).await?;
    let file = state.config().state_dir.join(SETUP_TOKEN_FILE);
    if admins > 0 {
        let _ = std::fs::remove_file(&file);
        return Ok(());
    }
    let token = secret::new_secret("")?;
    write_private(&file, &token)
        .map_err(|e| AuthError::Internal(format!("cannot write {}: {e}", file.display())))?;
    let host = if local.ip().is_unspecified() {
        SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), local.port())
    } else {
        local
    };
    let scheme = if state.auth().config().tls {
        "https"
    } else {
        "http"
    };
    let link = format!("{scheme}://{host}/setup#{token}");
    *state
        .auth()
        .inner
        .setup
        .lock()
        .unwrap_or_else(|p| p.into_inner()) = Some(Pending {
        digest: secret::digest(&token),
        file,
    });
    println!("No admin account yet. Create it once at: {link}");
    tracing::warn!(%link, "no admin account yet: open the one-time setup link");
    Ok(())
}

fn write_private(path: &std::path::Path, contents: &str) -> std::io::Result<()> {
    let _ = std::fs::remove_file(path);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(contents.as_bytes())?;
    f.sync_all()
}

impl Auth {
    /// Whether a setup link is open (the caller also checks that no admin exists).
    pub(crate) fn setup_pending(&self) -> bool {
        self.inner
            .setup
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
    }

    /// Whether `token` is the open setup token (compared in constant time).
    pub(crate) fn setup_token_matches(&self, token: &str) -> bool {
        let guard = self.inner.setup.lock().unwrap_or_else(|p| p.into_inner());
        guard
            .as_ref()
            .is_some_and(|p| secret::constant_time_eq(&p.digest, &secret::digest(token)))
    }

    /// Closes setup for good (the admin exists now).
    pub(crate) fn close_setup(&self) {
        let pending = self
            .inner
            .setup
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(p) = pending {
            let _ = std::fs::remove_file(&p.file);
        }
    }
}
