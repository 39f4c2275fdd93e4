//! Daemon configuration: the `corral serve` flags and their installed defaults.

use std::{net::SocketAddr, path::PathBuf};

/// Installed default for `--listen`: loopback only, reached remotely through `ssh -L`.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7700";
/// Installed default for `--socket`: the CLI's way in (0600, in a 0700 directory).
pub const DEFAULT_SOCKET: &str = "/run/corral/corral.sock";
/// Installed default for `--state-dir`: the SQLite database and per-container state.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/corral";
/// Installed default for `--cgroup-root`: the subtree Corral owns in every hierarchy.
pub const DEFAULT_CGROUP_ROOT: &str = "corral";
/// Installed default for `--sample-interval`, seconds.
pub const DEFAULT_SAMPLE_INTERVAL: &str = "5";

/// Everything `corral serve` needs to know.
#[derive(Debug, Clone)]
pub struct Config {
    /// TCP address of the HTTP API and dashboard.
    pub listen: SocketAddr,
    /// Path of the unix socket; `None` disables it.
    pub socket: Option<PathBuf>,
    /// Path of the Docker Engine API socket (`--docker-socket`); `None` (the default) disables
    /// it.
    pub docker_socket: Option<PathBuf>,
    /// Directory holding `corral.db` and container state (created 0700).
    pub state_dir: PathBuf,
    /// Name of Corral's own cgroup subtree.
    pub cgroup_root: String,
    /// Host allowlist and session timeouts.
    pub auth: crate::auth::AuthConfig,
    /// Time between metering samples (1 s to 1 h).
    pub sample_interval: std::time::Duration,
    /// How often the metering ledger is written (and budgets evaluated); 30 s installed.
    pub ledger_flush: std::time::Duration,
    /// How long each metering history tier is kept.
    pub retention: crate::metering::store::Retention,
    /// Bridge name and subnet.
    pub network: crate::network::NetworkArgs,
    /// HTTPS on the TCP listener; required off loopback.
    pub tls: TlsArgs,
    /// Memory limit (bytes) of every container created without one (`--default-memory`);
    /// `None`: no default.
    pub default_memory: Option<u64>,
    /// Size caps of image imports.
    pub images: ImageArgs,
    /// This host's name in a fleet (`--host-id`): the `host` label of `/metrics`.
    pub host_id: Option<String>,
    /// The shared ledger's flags (`--ledger`, `--hub`, ...), checked when the daemon starts.
    pub ledger: crate::ledger::LedgerArgs,
}

/// `--host-id`: a name as containers and teams have (so it is a safe label value and path).
pub fn parse_host_id(s: &str) -> Result<String, String> {
    if crate::runtime::manager::valid_name(s) {
        Ok(s.to_owned())
    } else {
        Err(format!(
            "{s:?} is no host id: 1-64 of A-Z a-z 0-9 _ . -, starting with a letter or digit"
        ))
    }
}

/// The `corral serve` flags capping image imports.
#[derive(Debug, Clone, clap::Args)]
pub struct ImageArgs {
    /// Largest uncompressed layer (and largest file of an image tarball) an image import
    /// accepts, e.g. 16G or 512M. A layer that unpacks to more (a gzip or zstd bomb) is
    /// refused as soon as it passes the cap, and nothing of the import is kept.
    #[arg(long, value_name = "SIZE", default_value = "16G", value_parser = parse_image_size)]
    pub max_layer_size: u64,
    /// Most bytes one image import may unpack in all: the tarball's files plus every layer
    /// uncompressed.
    #[arg(long, value_name = "SIZE", default_value = "64G", value_parser = parse_image_size)]
    pub max_import_size: u64,
    /// Largest image file `corral image import` (or the dashboard) may upload; it is written
    /// to the state directory while it arrives, then imported and removed.
    #[arg(long, value_name = "SIZE", default_value = "8G", value_parser = parse_image_size)]
    pub max_upload_size: u64,
    /// A registry `corral pull` may speak plain HTTP to (no TLS), as HOST:PORT; repeat for
    /// more. Every other registry is spoken to over HTTPS, verified against the system's
    /// roots — localhost included, unless listed here.
    #[arg(long = "insecure-registry", value_name = "HOST:PORT", value_parser = parse_registry)]
    pub insecure_registry: Vec<String>,
}

/// `--insecure-registry`: `HOST[:PORT]`, normalized as credentials are.
fn parse_registry(s: &str) -> Result<String, String> {
    crate::registry::normalize_registry(s).map_err(|e| e.to_string())
}

impl Default for ImageArgs {
    fn default() -> Self {
        let l = crate::image::Limits::default();
        ImageArgs {
            max_layer_size: l.max_layer_size,
            max_import_size: l.max_import_size,
            max_upload_size: l.max_upload_size,
            insecure_registry: Vec::new(),
        }
    }
}

impl ImageArgs {
    pub fn limits(&self) -> crate::image::Limits {
        crate::image::Limits {
            max_layer_size: self.max_layer_size,
            max_import_size: self.max_import_size,
            max_upload_size: self.max_upload_size,
        }
    }
}

/// `16G`, `512M`, `1048576` (powers of 1024); at least 1 MiB.
fn parse_image_size(s: &str) -> Result<u64, String> {
    match crate::cgroup::parse_size("size", s) {
        Ok(crate::cgroup::Max::Limit(n)) if n >= 1 << 20 => Ok(n),
        _ => Err(format!(
            "{s:?} is not a size of at least 1M like 512M or 16G (powers of 1024)"
        )),
    }
}

/// The `corral serve` flags for HTTPS on the TCP listener.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct TlsArgs {
    /// PEM certificate (chain) to serve HTTPS on --listen; needs --tls-key. Required when
    /// --listen is not a loopback address.
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert (PKCS#8, PKCS#1 or SEC1).
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Serve plain HTTP on a --listen address that is not loopback. Anyone on that network can
    /// then read passwords, session cookies and API tokens: use TLS or `ssh -L` instead.
    #[arg(long)]
    pub insecure_http: bool,
}

impl TlsArgs {
    /// The certificate and key, when HTTPS is configured.
    pub fn files(&self) -> Option<(&std::path::Path, &std::path::Path)> {
        Some((self.tls_cert.as_deref()?, self.tls_key.as_deref()?))
    }
}

/// Parses `--default-memory`: a size such as `512M` or `2G` (at least 1 MiB).
pub fn parse_default_memory(s: &str) -> Result<u64, String> {
    use crate::cgroup::{Max, parse_size};
    match parse_size("default_memory", s) {
        Ok(Max::Limit(v)) if v >= 1 << 20 => Ok(v),
        Ok(Max::Limit(v)) => Err(format!("{v} bytes is below the 1 MiB minimum")),
        Ok(Max::Unlimited) => Err("leave --default-memory out for no default limit".into()),
        Err(e) => Err(e.to_string()),
    }
}

/// A configuration `corral serve` refuses.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "--listen {addr} is not a loopback address: give --tls-cert and --tls-key (PEM) to serve \
         HTTPS there, or --insecure-http to serve plain HTTP anyway"
    )]
    PlainHttpOffLoopback { addr: SocketAddr },
}

impl Config {
    /// The path of the SQLite database inside the state directory.
    pub fn db_path(&self) -> PathBuf {
        self.state_dir.join("corral.db")
    }

    /// Off loopback the TCP listener speaks TLS, unless `--insecure-http` says otherwise.
    pub fn check_listen(&self) -> Result<(), ConfigError> {
        if self.listen.ip().is_loopback() || self.tls.files().is_some() || self.tls.insecure_http {
            return Ok(());
        }
        Err(ConfigError::PlainHttpOffLoopback { addr: self.listen })
    }

    /// Host header names the listen address itself adds to the allowlist: its IP with its
    /// port, when it is a specific address other than 127.0.0.1 and ::1 (always allowed).
    pub fn listen_host(&self, local: SocketAddr) -> Option<String> {
        let ip = local.ip();
        if ip.is_unspecified()
            || ip == std::net::Ipv4Addr::LOCALHOST
            || ip == std::net::Ipv6Addr::LOCALHOST
        {
            return None;
        }
        Some(local.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(listen: &str, tls: TlsArgs) -> Config {
        Config {
            listen: listen.parse().expect("addr"),
            socket: None,
            docker_socket: None,
            state_dir: PathBuf::from("/nonexistent"),
            cgroup_root: "x".into(),
            auth: Default::default(),
            sample_interval: std::time::Duration::from_secs(5),
            ledger_flush: std::time::Duration::from_secs(30),
            retention: Default::default(),
            network: Default::default(),
            tls,
            default_memory: None,
            images: Default::default(),
            host_id: None,
            ledger: Default::default(),
        }
    }

    #[test]
    fn host_ids_are_names() {
        assert_eq!(parse_host_id("node-1.dc"), Ok("node-1.dc".to_owned()));
        for bad in ["", "-x", "a b", "a/b", "..", &"x".repeat(65)] {
            assert!(parse_host_id(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn image_sizes_parse_with_units_and_refuse_tiny_ones() {
        assert_eq!(parse_image_size("16G"), Ok(16 << 30));
        assert_eq!(parse_image_size("64M"), Ok(64 << 20));
        for bad in ["10", "0", "lots", "max", "-1G"] {
            let e = parse_image_size(bad).unwrap_err();
            assert!(e.contains("at least 1M"), "{bad}: {e}");
        }
    }

    #[test]
    fn plain_http_only_on_loopback_unless_asked() {
        let files = TlsArgs {
            tls_cert: Some("c.pem".into()),
            tls_key: Some("k.pem".into()),
            insecure_http: false,
        };
        let insecure = TlsArgs {
            insecure_http: true,
            ..Default::default()
        };
        for ok in ["127.0.0.1:7700", "127.0.0.2:1", "[::1]:7700"] {
            assert!(
                config(ok, TlsArgs::default()).check_listen().is_ok(),
                "{ok}"
            );
        }
        for off in ["0.0.0.0:7700", "192.168.1.5:7700", "[::]:7700"] {
            let e = config(off, TlsArgs::default()).check_listen();
            let msg = e.err().map(|e| e.to_string()).unwrap_or_default();
            assert!(
                msg.contains("--tls-cert") && msg.contains("--insecure-http"),
                "{msg}"
            );
            assert!(config(off, files.clone()).check_listen().is_ok());
            assert!(config(off, insecure.clone()).check_listen().is_ok());
        }
        let c = config("127.0.0.1:7700", TlsArgs::default());
        let at = |s: &str| c.listen_host(s.parse().expect("addr"));
        assert_eq!(at("127.0.0.1:7700"), None);
        assert_eq!(at("0.0.0.0:7700"), None);
        assert_eq!(at("127.0.0.2:8443").as_deref(), Some("127.0.0.2:8443"));
        assert_eq!(at("[fd00::1]:8443").as_deref(), Some("[fd00::1]:8443"));
    }
}
