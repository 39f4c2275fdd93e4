//! `corral serve`: opens the store, binds the TCP and unix listeners, and serves the router on
//! both until SIGTERM or SIGINT, then drains in-flight requests and exits.

use std::{
    fs, io,
    os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt},
    path::{Path, PathBuf},
};

use tokio::{
    net::{TcpListener, UnixListener},
    sync::watch,
};

use crate::{
    cgroup::{CgroupError, Cgroups},
    config::Config,
    http::{self, AppState},
    store::{Store, StoreError},
};

/// Errors that stop the daemon from starting.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("cannot create state directory {path}")]
    StateDir { path: PathBuf, source: io::Error },
    #[error(
        "state directory {path} is mode {mode:o}, writable by other users: chmod 700 it (corral \
         does not change the mode of a directory it did not create)"
    )]
    StateDirMode { path: PathBuf, mode: u32 },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Metering(#[from] crate::metering::MeteringError),
    #[error("cannot set up cgroups")]
    Cgroups(#[from] CgroupError),
    #[error("cannot listen on {addr}")]
    Listen { addr: String, source: io::Error },
    #[error("another daemon is already listening on {path}")]
    SocketInUse { path: PathBuf },
    #[error("server failed")]
    Serve(#[source] io::Error),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    #[error(transparent)]
    Ledger(#[from] crate::ledger::LedgerArgError),
    #[error("cannot turn on the ledger outbox: {0}")]
    Outbox(String),
}

/// Runs the daemon until a shutdown signal arrives.
pub async fn serve(mut config: Config) -> Result<(), DaemonError> {
    // Plain HTTP off loopback is refused before anything is created.
    config.check_listen()?;
    let tls = match config.tls.files() {
        Some((cert, key)) => Some(crate::tls::acceptor(cert, key)?),
        None => None,
    };
    if tls.is_none() && !config.listen.ip().is_loopback() {
        tracing::warn!(listen = %config.listen, "--insecure-http: serving plain HTTP off loopback; passwords, cookies and tokens cross the network in clear text");
    }
    // The shared ledger's flags (and its password file) before anything is created.
    let ledger = config.ledger.check(
        config.host_id.as_deref(),
        std::env::var("CORRAL_LEDGER_PASSWORD").ok(),
    )?;
    if let Some(l) = &ledger {
        // /metrics, `corral info` and the hub all name this host alike.
        config.host_id = Some(l.host_id.clone());
    }
    crate::runtime::raise_open_file_limit();
    // The control plane is not the OOM killer's best target (containers are, see
    // `runtime::init::CONTAINER_OOM_SCORE_ADJ`).
    if let Err(e) =
        crate::runtime::init::set_oom_score_adj(crate::runtime::init::DAEMON_OOM_SCORE_ADJ)
    {
        tracing::warn!(error = %e, "cannot lower the daemon's oom_score_adj");
    }
    // Sized from the raised limit: half of it for the published-port proxies, at most.
    crate::network::ports::configure(config.network.proxy);
    // Handlers first: a SIGTERM that arrives while we start must shut down cleanly, not kill.
    let shutdown = Shutdown::install().map_err(DaemonError::Serve)?;
    create_private_dir(&config.state_dir)?;
    let db = config.db_path();
    let store = tokio::task::spawn_blocking(move || Store::open(&db))
        .await
        .expect("store open task does not panic")?;

    let tcp = TcpListener::bind(config.listen)
        .await
        .map_err(|source| DaemonError::Listen {
            addr: config.listen.to_string(),
            source,
        })?;
    let local = tcp.local_addr().map_err(DaemonError::Serve)?;
    // Browsers then send the listen address as Host (the allowlist's DNS-rebinding defence),
    // and session cookies are marked Secure over HTTPS.
    if let Some(host) = config.listen_host(local) {
        config.auth.allowed_hosts.push(host);
    }
    config.auth.tls = tls.is_some();
    let unix = match &config.socket {
        Some(path) => Some(bind_socket(path)?),
        None => None,
    };
    let docker_unix = match &config.docker_socket {
        Some(path) => Some(bind_socket(path)?),
        None => None,
    };

    // Detect the host's cgroups and create Corral's subtree in every hierarchy.
    let subtree = config.cgroup_root.clone();
    let cgroups = tokio::task::spawn_blocking(move || Cgroups::host(&subtree))
        .await
        .expect("cgroup detection task does not panic")?;
    let cgroups = std::sync::Arc::new(cgroups);
    tracing::info!(mode = %cgroups.mode(), subtree = cgroups.subtree(), "cgroups ready");
    // `criu check` takes a moment: asked now, in the background, so `corral info` and the
    // first checkpoint need not wait for it.
    tokio::task::spawn_blocking(crate::runtime::checkpoint::support);

    let metering = {
        let store = store.clone();
        let config = crate::metering::MeteringConfig {
            interval: config.sample_interval,
            ledger_flush: config.ledger_flush,
            retention: config.retention,
            ..Default::default()
        };
        tokio::task::spawn_blocking(move || crate::metering::Metering::new(store, config))
            .await
            .expect("metering open task does not panic")?
    };
    metering.set_cgroups(cgroups.clone());
    let sampler = metering.start()?;
    let mut state = AppState::new(config.clone(), store.clone(), cgroups.clone())
        .with_metering(metering.clone());
    // Every team's cgroup with its pooled ceilings and the budget steps in force (loaded
    // first, so the pools write both at once: a restart never lifts a step for a moment),
    // before the runtime may remove empty ones; then every team is metered for its whole life
    // (history and /metrics without containers too).
    {
        let (pools, store, governor, metering) = (
            state.pools().clone(),
            store.clone(),
            state.governor().clone(),
            metering.clone(),
        );
        let restored = tokio::task::spawn_blocking(move || {
            let conn = store.lock();
            if let Err(e) = governor.restore(&conn) {
                tracing::error!(error = %e, "cannot restore the team budgets' steps");
            }
            // A failed restore still leaves the teams whose pools exist worth metering.
            let restored = pools.restore(&conn);
            let teams: Vec<String> = conn
                .prepare("SELECT name FROM teams")?
                .query_map([], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            drop(conn);
            for team in teams {
                metering.meter_team(&team);
            }
            restored
        })
        .await
        .expect("team pool restore task does not panic");
        if let Err(e) = restored {
            tracing::error!(error = %e, "cannot restore the team pools");
        }
    }
    match crate::runtime::manager::start_manager(
        &config,
        store,
        cgroups.clone(),
        state.network().clone(),
        Some(metering.clone()),
    )
    .await
    {
        Ok(containers) => state = state.with_containers(containers),
        Err(e) => tracing::error!(error = %e, "container runtime unavailable"),
    }
    let (stop_tx, stop_rx) = watch::channel(false);
    // The shared ledger: the outbox on (queueing the ledger so far, the first time), then
    // the shipper, woken by every ledger flush.
    let ledger = match ledger {
        Some(cfg) => {
            let (store, governor) = (state.store().clone(), state.governor().clone());
            let metering = state.metering().cloned();
            let l = tokio::task::spawn_blocking(move || {
                crate::ledger::Ledger::new(cfg, store, governor, metering)
            })
            .await
            .expect("ledger open task does not panic")
            .map_err(DaemonError::Outbox)?;
            l.start(stop_rx.clone());
            tracing::info!(ledger = %l.config().display(), host_id = %l.config().host_id, hub = l.config().hub, "shipping the usage ledger");
            state = state.with_ledger(l.clone());
            Some(l)
        }
        None => None,
    };
    let app = http::app(state.clone());
    // Budgets: evaluated after every ledger flush, and once now (a period may have ended
    // while the daemon was down).
    {
        let governor = state.governor().clone();
        let waker = governor.clone();
        metering.on_flush(Box::new(move || {
            waker.wake();
            if let Some(l) = &ledger {
                l.wake();
            }
        }));
        governor.start(stop_rx.clone());
        governor.wake();
    }

    tracing::info!(listen = %local, tls = tls.is_some(), socket = ?config.socket, state_dir = %config.state_dir.display(), "corral daemon ready");
    let scheme = if tls.is_some() { "https" } else { "http" };
    println!(
        "Corral {} is listening on {scheme}://{local}/",
        crate::VERSION
    );
    if let Err(e) = crate::auth::start(&state, local).await {
        tracing::error!(error = %e, "cannot open the first-run setup");
    }

    let (tcp_app, tcp_stop) = (app.clone(), stopped(stop_rx.clone()));
    let docker_stop = stopped(stop_rx.clone());
    let tcp_server = async move {
        match tls {
            Some(acceptor) => {
                let listener = crate::tls::TlsListener::new(tcp, acceptor)?;
                axum::serve(listener, tcp_app)
                    .with_graceful_shutdown(tcp_stop)
                    .await
            }
            None => {
                axum::serve(tcp, tcp_app)
                    .with_graceful_shutdown(tcp_stop)
                    .await
            }
        }
    };
    let unix_server = async {
        match unix {
            Some(listener) => {
                // Connect-info carries the peer's SO_PEERCRED: root is admin, others refused.
                axum::serve(
                    listener,
                    app.into_make_service_with_connect_info::<crate::auth::UnixPeer>(),
                )
                .with_graceful_shutdown(stopped(stop_rx))
                .await
            }
            None => Ok(()),
        }
    };
    let docker_server = async {
        match docker_unix {
            Some(listener) => {
                // The Docker Engine API: root peers only, like docker.sock.
                axum::serve(
                    listener,
                    crate::docker::app(state.clone())
                        .into_make_service_with_connect_info::<crate::auth::UnixPeer>(),
                )
                .with_graceful_shutdown(docker_stop)
                .await
            }
            None => Ok(()),
        }
    };
    let signals = async {
        shutdown.wait().await;
        tracing::info!("shutting down");
        // Open event streams end, or the graceful shutdown would wait for them forever.
        state.events().close();
        let _ = stop_tx.send(true);
    };
    let (tcp_result, unix_result, docker_result, ()) =
        tokio::join!(tcp_server, unix_server, docker_server, signals);
    for path in [&config.socket, &config.docker_socket]
        .into_iter()
        .flatten()
    {
        let _ = fs::remove_file(path);
    }
    metering.stop();
    let _ = tokio::task::spawn_blocking(move || sampler.join()).await;
    // Proxies closed, NAT table removed; links of running containers stay.
    state.network().shutdown().await;
    // Leave the subtree if containers still live in it; they outlive the daemon.
    if let Ok(Err(e)) = tokio::task::spawn_blocking(move || cgroups.remove_subtree_if_empty()).await
    {
        tracing::warn!(error = %e, "cannot remove the empty cgroup subtree");
    }
    tcp_result.map_err(DaemonError::Serve)?;
    unix_result.map_err(DaemonError::Serve)?;
    docker_result.map_err(DaemonError::Serve)?;
    Ok(())
}

async fn stopped(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}

/// SIGTERM and SIGINT, caught from the start of `serve`.
struct Shutdown {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Shutdown {
    fn install() -> io::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    async fn wait(mut self) {
        tokio::select! {
            _ = self.term.recv() => {},
            _ = self.int.recv() => {},
        }
    }
}

/// Creates `path` and its missing parents with mode 0700; returns whether `path` itself was
/// created. A directory that exists keeps its mode: Corral only tightens directories it
/// created (`--socket /tmp/c.sock` must not turn /tmp into 0700).
fn ensure_dir(path: &Path) -> Result<bool, DaemonError> {
    let err = |path: &Path| {
        let path = path.to_owned();
        move |source| DaemonError::StateDir { path, source }
    };
    let mut missing = Vec::new();
    let mut at = Some(path);
    while let Some(p) = at {
        if p.as_os_str().is_empty() {
            break;
        }
        match fs::metadata(p) {
            Ok(m) if m.is_dir() => break,
            Ok(_) => {
                return Err(err(p)(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    "exists and is not a directory",
                )));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                missing.push(p);
                at = p.parent();
            }
            Err(e) => return Err(err(p)(e)),
        }
    }
    for dir in missing.iter().rev() {
        match fs::DirBuilder::new().mode(0o700).create(dir) {
            // Ours: exactly 0700, whatever the umask.
            Ok(()) => {
                fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(err(dir))?
            }
            // Made by someone else meanwhile: not ours to change.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(err(dir)(e)),
        }
    }
    Ok(missing.first() == Some(&path))
}

/// The state directory: created 0700 when missing. One that exists is left as it is, but
/// refused when others may write to it (they could swap the database), and warned about when
/// others may read it.
fn create_private_dir(path: &Path) -> Result<(), DaemonError> {
    if ensure_dir(path)? {
        return Ok(());
    }
    let mode = fs::metadata(path)
        .map_err(|source| DaemonError::StateDir {
            path: path.to_owned(),
            source,
        })?
        .permissions()
        .mode();
    if mode & 0o022 != 0 {
        return Err(DaemonError::StateDirMode {
            path: path.to_owned(),
            mode: mode & 0o7777,
        });
    }
    if mode & 0o077 != 0 {
        tracing::warn!(path = %path.display(), mode = format!("{:o}", mode & 0o7777), "the state directory is readable by other users: chmod 700 it (corral does not change directories it did not create)");
    }
    Ok(())
}

/// Binds the unix socket 0600 (inside a 0700 directory when Corral creates it). A stale socket file left by a crashed
/// daemon is replaced; a live one is an error.
fn bind_socket(path: &Path) -> Result<UnixListener, DaemonError> {
    let listen_err = |source| DaemonError::Listen {
        addr: path.display().to_string(),
        source,
    };
    if let Some(dir) = path.parent() {
        // A missing directory is created 0700; an existing one (e.g. /tmp) is left alone: the
        // socket itself is 0600 and root-only by SO_PEERCRED.
        ensure_dir(dir)?;
    }
    if let Ok(meta) = fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            return Err(listen_err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "exists and is not a socket",
            )));
        }
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(DaemonError::SocketInUse {
                path: path.to_owned(),
            });
        }
        fs::remove_file(path).map_err(listen_err)?;
    }
    let listener = UnixListener::bind(path).map_err(listen_err)?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o600)).map_err(listen_err)?;
    Ok(listener)
}
