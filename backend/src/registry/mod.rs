//! Pulling images from registries (the OCI distribution protocol), issue 18.
//!
//! A pull resolves the reference's manifest (OCI and Docker v2 schema 2 manifests and
//! indexes/manifest lists, asked for with `Accept`; from an index the host's platform,
//! `linux/amd64` here), checks every digest (manifest, config, each layer blob as it streams),
//! writes what it fetched as an OCI image layout under `<state>/images/tmp/pull-*`, and hands
//! that layout to the image store's import ([`ImageStore::import_pulled`]): the same limits,
//! member checks, digest checks and layer sharing as `corral image import`. Layers the store
//! already holds (by diff_id) are not downloaded.
//!
//! - [`reference`]: `docker pull`'s reference grammar (Docker Hub defaults, `library/`).
//! - [`transport`]: HTTP/1.1 over hyper; HTTPS verified against the system roots, plain HTTP
//!   only to `--insecure-registry` hosts.
//! - [`session`]: one repository — bearer tokens (anonymous or with credentials) and basic
//!   auth, manifests, blobs streamed to disk with `Range` resume.
//! - [`auth`]: `corral login`'s credentials file (0600) and `~/.docker/config.json`.
//!
//! Architecture invariant: nothing reaches the image store before its digest matched, and
//! the store imports a pull only through its ordinary import.

pub mod auth;
pub mod reference;
mod session;
pub mod transport;

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
};

use serde::Deserialize;

use crate::image::{ImageError, ImageStore, Progress};
pub use auth::{CredentialStore, Credentials};
pub use reference::{Reference, normalize_registry};
use session::{Served, Session};
use transport::Transport;

/// Where the system's trusted CA certificates are (Debian's `ca-certificates`).
pub const SYSTEM_ROOTS: &str = "/etc/ssl/certs/ca-certificates.crt";

/// Why a pull (or login) failed.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("invalid reference {reference:?}: {message}")]
    BadReference { reference: String, message: String },
    #[error("invalid registry {0:?}: give HOST or HOST:PORT")]
    BadRegistry(String),
    #[error("{what} is not in the registry: {detail}")]
    NotFound { what: String, detail: String },
    #[error(
        "{registry} refused access to {repository}{}: {detail}",
        if *with_credentials { " with the stored credentials" } else { " without credentials (try `corral login`)" }
    )]
    Unauthorized {
        registry: String,
        repository: String,
        with_credentials: bool,
        detail: String,
    },
    #[error(
        "{registry} is rate-limiting pulls{}: {detail}",
        retry_after.as_ref().map(|r| format!(" (retry after {r})")).unwrap_or_default()
    )]
    RateLimited {
        registry: String,
        retry_after: Option<String>,
        detail: String,
    },
    #[error("no matching platform: {wanted} is not in the index of {reference} (available: {})", if available.is_empty() { "none".to_owned() } else { available.join(", ") })]
    NoMatchingPlatform {
        reference: String,
        wanted: String,
        available: Vec<String>,
    },
    #[error("digest mismatch in {what}: expected {expected}, got {actual}")]
    DigestMismatch {
        what: String,
        expected: String,
        actual: String,
    },
    #[error(
        "TLS with {host} failed: {message}{}",
        if *insecure_hint { format!("; if this registry speaks plain HTTP, start the daemon with --insecure-registry {host}") } else { String::new() }
    )]
    Tls {
        host: String,
        message: String,
        insecure_hint: bool,
    },
    #[error(
        "refusing plain HTTP to {url}: only registries listed with `corral serve --insecure-registry HOST:PORT` are spoken to without TLS"
    )]
    PlainHttp { url: String },
    #[error("cannot reach {host}: {message}")]
    Unreachable { host: String, message: String },
    #[error("the download from {host} broke off: {message}")]
    Broken { host: String, message: String },
    #[error("{host} answered {status}: {message}")]
    Upstream {
        host: String,
        status: u16,
        message: String,
    },
    #[error("{reference}: {message}")]
    Unsupported { reference: String, message: String },
    #[error("the registry credentials in {path}: {message}")]
    Credentials { path: PathBuf, message: String },
    #[error("cannot write {path}: {message}")]
    Io { path: PathBuf, message: String },
    #[error(transparent)]
    Image(#[from] ImageError),
}

impl RegistryError {
    /// The stable code an API answer names the cause with.
    pub fn code(&self) -> &'static str {
        match self {
            RegistryError::BadReference { .. } | RegistryError::BadRegistry(_) => "invalid_value",
            RegistryError::NotFound { .. } => "image_unknown",
            RegistryError::Unauthorized { .. } => "registry_unauthorized",
            RegistryError::RateLimited { .. } => "registry_rate_limited",
            RegistryError::NoMatchingPlatform { .. } => "no_matching_platform",
            RegistryError::DigestMismatch { .. } => "digest_mismatch",
            RegistryError::Tls { .. } => "registry_tls",
            RegistryError::PlainHttp { .. } => "registry_insecure",
            RegistryError::Unreachable { .. } | RegistryError::Broken { .. } => {
                "registry_unreachable"
            }
            RegistryError::Upstream { .. } => "registry_error",
            RegistryError::Unsupported { .. } => "image_unsupported",
            RegistryError::Credentials { .. } | RegistryError::Io { .. } => "internal",
            RegistryError::Image(ImageError::Digest { .. }) => "digest_mismatch",
            RegistryError::Image(ImageError::NotFound(_)) => "image_unknown",
            RegistryError::Image(
                ImageError::Invalid { .. }
                | ImageError::TooLarge { .. }
                | ImageError::Unpack { .. }
                | ImageError::InUse(..),
            ) => "image_invalid",
            RegistryError::Image(_) => "internal",
        }
    }
}

/// What a pull reports, in `docker pull`'s words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullEvent {
    /// The layer's short id (12 hex digits), or the tag for `Pulling from`.
    pub id: Option<String>,
    pub status: String,
    pub current: u64,
    pub total: u64,
}

impl PullEvent {
    fn line(status: impl Into<String>) -> Self {
        Self {
            id: None,
            status: status.into(),
            current: 0,
            total: 0,
        }
    }
    fn layer(id: &str, status: &str) -> Self {
        Self {
            id: Some(id.to_owned()),
            status: status.to_owned(),
            current: 0,
            total: 0,
        }
    }
}

/// A pull's outcome.
#[derive(Debug, Clone)]
pub struct Pulled {
    pub name: String,
    pub digest: String,
    pub up_to_date: bool,
    pub downloaded: u64,
    pub image: wire::Image,
}

impl From<Pulled> for wire::Pulled {
    fn from(p: Pulled) -> Self {
        wire::Pulled {
            name: p.name,
            digest: p.digest,
            up_to_date: p.up_to_date,
            downloaded: p.downloaded,
            image: p.image,
        }
    }
}

/// The daemon's registry settings: trusted roots, insecure registries, credentials.
#[derive(Debug, Clone)]
pub struct Registries {
    transport: Transport,
    creds: CredentialStore,
}

#[derive(Debug, Deserialize)]
struct Platform {
    #[serde(default)]
    architecture: String,
    #[serde(default)]
    os: String,
    #[serde(default)]
    variant: Option<String>,
}

#[derive(Debug, Deserialize)]
struct IndexEntry {
    #[serde(rename = "mediaType", default)]
    media_type: String,
    digest: String,
    #[serde(default)]
    platform: Option<Platform>,
}

#[derive(Debug, Deserialize)]
struct Index {
    manifests: Vec<IndexEntry>,
}

#[derive(Debug, Deserialize)]
struct Blob {
    #[serde(rename = "mediaType", default)]
    media_type: String,
    digest: String,
    size: u64,
}

#[derive(Debug, Deserialize)]
struct Manifest {
    #[serde(rename = "schemaVersion", default)]
    schema_version: u32,
    config: Blob,
    layers: Vec<Blob>,
}

#[derive(Debug, Deserialize)]
struct ConfigRootFs {
    diff_ids: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct ConfigFile {
    rootfs: ConfigRootFs,
}

/// The platform this host runs: `linux/amd64`, `linux/arm64`, … as an index names it.
pub fn host_platform() -> (&'static str, &'static str) {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    };
    ("linux", arch)
}

fn is_index(s: &Served) -> bool {
    s.media_type.contains("image.index") || s.media_type.contains("manifest.list")
}

/// Layer types the import can unpack (tar, gzip, zstd; Docker's gzip type).
fn layer_type_ok(t: &str) -> bool {
    matches!(
        t,
        "application/vnd.oci.image.layer.v1.tar"
            | "application/vnd.oci.image.layer.v1.tar+gzip"
            | "application/vnd.oci.image.layer.v1.tar+zstd"
            | "application/vnd.docker.image.rootfs.diff.tar.gzip"
            | "application/vnd.docker.image.rootfs.diff.tar"
            | ""
    )
}

/// Picks the host's platform from an index: `(os, arch)`; the available ones when absent.
fn pick<'i>(index: &'i Index, (os, arch): (&str, &str)) -> Result<&'i IndexEntry, Vec<String>> {
    let hit = index.manifests.iter().find(|m| {
        m.platform.as_ref().is_some_and(|p| {
            p.os == os
                && p.architecture == arch
                && (arch != "arm64" || p.variant.as_deref().is_none_or(|v| v == "v8"))
        }) && !m.media_type.contains("index")
    });
    hit.ok_or_else(|| {
        index
            .manifests
            .iter()
            .filter_map(|m| m.platform.as_ref())
            .filter(|p| p.os != "unknown")
            .map(|p| match &p.variant {
                Some(v) => format!("{}/{}/{v}", p.os, p.architecture),
                None => format!("{}/{}", p.os, p.architecture),
            })
            .collect()
    })
}

/// A temporary directory removed on drop.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn short(digest: &str) -> String {
    let h = digest.trim_start_matches("sha256:");
    h[..h.len().min(12)].to_owned()
}

impl Registries {
    /// `roots`: PEM bundle of trusted CAs ([`SYSTEM_ROOTS`]); `insecure`: the
    /// `--insecure-registry` hosts; credentials under `state_dir/registries`, and the daemon
    /// user's `~/.docker/config.json`.
    pub fn new(state_dir: &Path, roots: &Path, insecure: &[String]) -> Self {
        // Normalized by the flag's parser; a name that does not normalize is kept as given.
        let set: BTreeSet<String> = insecure
            .iter()
            .map(|i| normalize_registry(i).unwrap_or_else(|_| i.clone()))
            .collect();
        let docker_config = std::env::var_os("DOCKER_CONFIG")
            .map(|d| PathBuf::from(d).join("config.json"))
            .or_else(|| {
                std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker/config.json"))
            });
        Self {
            transport: Transport::new(roots, set),
            creds: CredentialStore::new(state_dir, docker_config),
        }
    }

    pub fn credentials(&self) -> &CredentialStore {
        &self.creds
    }

    /// `corral login`: checks the credentials against `registry`'s `/v2/` and stores them.
    pub async fn login(&self, registry: &str, creds: Credentials) -> Result<String, RegistryError> {
        let registry = normalize_registry(registry)?;
        let mut s = Session::root(&self.transport, &registry, creds.clone());
        s.check_login().await?;
        self.creds.set(&registry, &creds)?;
        Ok(registry)
    }

    /// `corral logout`: forgets `registry`'s credentials; the normalized name and whether
    /// there were any.
    pub fn logout(&self, registry: &str) -> Result<(String, bool), RegistryError> {
        let registry = normalize_registry(registry)?;
        let had = self.creds.remove(&registry)?;
        Ok((registry, had))
    }

    /// Pulls `reference` into `images`, telling `on` how far it is.
    pub async fn pull(
        &self,
        images: &ImageStore,
        reference: &str,
        on: &mut (dyn FnMut(PullEvent) + Send),
    ) -> Result<Pulled, RegistryError> {
        let r = Reference::parse(reference)?;
        let creds = self.creds.get(&r.registry)?;
        let mut s = Session::new(&self.transport, &r, creds);
        let shown = r.to_string();
        let top = s.manifest(r.manifest_ref(), &shown).await?;
        if let Some(d) = &r.digest
            && *d != top.digest
        {
            return Err(RegistryError::DigestMismatch {
                what: format!("the manifest of {shown}"),
                expected: d.clone(),
                actual: top.digest,
            });
        }
        let top_digest = top.digest.clone();
        let chosen = if is_index(&top) {
            let index: Index =
                serde_json::from_slice(&top.bytes).map_err(|e| RegistryError::Unsupported {
                    reference: shown.clone(),
                    message: format!("the index is not valid JSON: {e}"),
                })?;
            let platform = host_platform();
            let entry =
                pick(&index, platform).map_err(|available| RegistryError::NoMatchingPlatform {
                    reference: shown.clone(),
                    wanted: format!("{}/{}", platform.0, platform.1),
                    available,
                })?;
            if !reference::digest_ok(&entry.digest) {
                return Err(RegistryError::Unsupported {
                    reference: shown.clone(),
                    message: format!("the index names a manifest by {:?}", entry.digest),
                });
            }
            let m = s
                .manifest(&entry.digest, &format!("{shown} ({})", entry.digest))
                .await?;
            if m.digest != entry.digest {
                return Err(RegistryError::DigestMismatch {
                    what: format!("the {}/{} manifest of {shown}", platform.0, platform.1),
                    expected: entry.digest.clone(),
                    actual: m.digest,
                });
            }
            if is_index(&m) {
                return Err(RegistryError::Unsupported {
                    reference: shown.clone(),
                    message: "the index names another index for this platform".into(),
                });
            }
            m
        } else {
            top
        };
        if chosen.media_type.contains("distribution.manifest.v1") {
            return Err(RegistryError::Unsupported {
                reference: shown,
                message: "Docker schema 1 manifests are not supported (push the image again with a current client)".into(),
            });
        }
        let manifest: Manifest =
            serde_json::from_slice(&chosen.bytes).map_err(|e| RegistryError::Unsupported {
                reference: shown.clone(),
                message: format!("the manifest is not an image manifest: {e}"),
            })?;
        if manifest.schema_version != 2 {
            return Err(RegistryError::Unsupported {
                reference: shown,
                message: format!("schemaVersion {} (2 expected)", manifest.schema_version),
            });
        }
        if !manifest.config.media_type.is_empty()
            && !manifest.config.media_type.contains("image.config")
            && !manifest.config.media_type.contains("container.image")
        {
            return Err(RegistryError::Unsupported {
                reference: shown,
                message: format!(
                    "not a container image (its config is {})",
                    manifest.config.media_type
                ),
            });
        }
        for l in &manifest.layers {
            if !layer_type_ok(&l.media_type) {
                return Err(RegistryError::Unsupported {
                    reference: shown,
                    message: format!(
                        "layer {} has an unsupported type {}",
                        l.digest, l.media_type
                    ),
                });
            }
            if !reference::digest_ok(&l.digest) {
                return Err(RegistryError::Unsupported {
                    reference: shown,
                    message: format!("a layer digest {:?} is not sha256", l.digest),
                });
            }
        }
        if !reference::digest_ok(&manifest.config.digest) {
            return Err(RegistryError::Unsupported {
                reference: shown,
                message: format!(
                    "the config digest {:?} is not sha256",
                    manifest.config.digest
                ),
            });
        }
        let tag_shown = r
            .tag
            .clone()
            .unwrap_or_else(|| short(r.digest.as_deref().unwrap_or_default()));
        on(PullEvent {
            id: Some(tag_shown),
            status: format!("Pulling from {}", r.repository),
            current: 0,
            total: 0,
        });
        // The image id is the config's digest: an image the store has under this name
        // needs nothing more from the registry.
        let name = r.stored_name();
        let id = manifest.config.digest.clone();
        let store = images.clone();
        let (id2, name2) = (id.clone(), name.clone());
        let have = tokio::task::spawn_blocking(move || store.tagged(&id2, &name2))
            .await
            .map_err(|e| RegistryError::Io {
                path: PathBuf::from("images"),
                message: e.to_string(),
            })??;
        if let Some(image) = have {
            on(PullEvent::line(format!("Digest: {top_digest}")));
            on(PullEvent::line(format!(
                "Status: Image is up to date for {name}"
            )));
            return Ok(Pulled {
                name,
                digest: top_digest,
                up_to_date: true,
                downloaded: 0,
                image,
            });
        }

        let config = s
            .small_blob(&manifest.config.digest, &format!("the config of {shown}"))
            .await?;
        let cfg: ConfigFile =
            serde_json::from_slice(&config).map_err(|e| RegistryError::Unsupported {
                reference: shown.clone(),
                message: format!("the image config: {e}"),
            })?;
        if cfg.rootfs.diff_ids.len() != manifest.layers.len() {
            return Err(RegistryError::Unsupported {
                reference: shown,
                message: "the config's rootfs.diff_ids and the manifest's layers differ in number"
                    .into(),
            });
        }
        // Room and size caps before anything is downloaded.
        let limits = images.limits();
        let mut wanted = Vec::new();
        let mut total = 0u64;
        for (l, diff) in manifest.layers.iter().zip(&cfg.rootfs.diff_ids) {
            let id = short(&l.digest);
            if images.has_layer(diff) {
                on(PullEvent::layer(&id, "Already exists"));
                continue;
            }
            if l.size > limits.max_layer_size {
                return Err(RegistryError::Image(ImageError::TooLarge {
                    path: PathBuf::from(&shown),
                    message: format!(
                        "layer {} is {} bytes, more than --max-layer-size ({})",
                        l.digest,
                        l.size,
                        crate::image::show_size(limits.max_layer_size)
                    ),
                }));
            }
            total = total.saturating_add(l.size);
            on(PullEvent::layer(&id, "Pulling fs layer"));
            wanted.push(l);
        }
        if total > limits.max_import_size {
            return Err(RegistryError::Image(ImageError::TooLarge {
                path: PathBuf::from(&shown),
                message: format!(
                    "its layers are {total} bytes, more than --max-import-size ({})",
                    crate::image::show_size(limits.max_import_size)
                ),
            }));
        }
        let dir = images.pull_path();
        let io = |p: &Path| {
            let p = p.to_owned();
            move |e: std::io::Error| RegistryError::Io {
                path: p,
                message: e.to_string(),
            }
        };
        let blobs = dir.join("blobs/sha256");
        std::fs::create_dir_all(&blobs).map_err(io(&blobs))?;
        let _scratch = Scratch(dir.clone());
        if let Ok(v) = nix::sys::statvfs::statvfs(&dir) {
            let free = v.blocks_available().saturating_mul(v.fragment_size());
            if free < total.saturating_add(crate::auth::audit::RESERVE_BYTES) {
                return Err(RegistryError::Io {
                    path: dir.clone(),
                    message: format!(
                        "{} MiB free, the pull needs {} MiB (and {} MiB are kept for the audit log)",
                        free >> 20,
                        total.div_ceil(1 << 20),
                        crate::auth::audit::RESERVE_BYTES >> 20
                    ),
                });
            }
        }
        let mut downloaded = 0u64;
        let started = std::time::Instant::now();
        for l in &wanted {
            let id = short(&l.digest);
            let hex = l.digest.trim_start_matches("sha256:");
            let size = l.size;
            let mut tick = |current| {
                on(PullEvent {
                    id: Some(id.clone()),
                    status: "Downloading".into(),
                    current,
                    total: size,
                })
            };
            s.blob_to_file(
                &l.digest,
                size,
                &blobs.join(hex),
                &format!("layer {} of {shown}", l.digest),
                &mut tick,
            )
            .await?;
            downloaded += size;
            on(PullEvent::layer(&id, "Verifying Checksum"));
            on(PullEvent::layer(&id, "Download complete"));
        }
        let write = |name: &str, data: &[u8]| -> Result<(), RegistryError> {
            let p = dir.join(name);
            std::fs::write(&p, data).map_err(io(&p))
        };
        write(
            &format!(
                "blobs/sha256/{}",
                chosen.digest.trim_start_matches("sha256:")
            ),
            &chosen.bytes,
        )?;
        write(
            &format!("blobs/sha256/{}", id.trim_start_matches("sha256:")),
            &config,
        )?;
        write("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        let media_type = if chosen.media_type.is_empty() {
            "application/vnd.oci.image.manifest.v1+json".to_owned()
        } else {
            chosen.media_type.clone()
        };
        let index = serde_json::json!({
            "schemaVersion": 2,
            "manifests": [{
                "mediaType": media_type,
                "digest": chosen.digest,
                "size": chosen.bytes.len(),
                "annotations": {"io.containerd.image.name": name},
            }],
        });
        write("index.json", index.to_string().as_bytes())?;

        let download_time = started.elapsed();
        // The import: every digest again, the layer caps, the member and path checks.
        let shorts: Vec<String> = manifest.layers.iter().map(|l| short(&l.digest)).collect();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<PullEvent>();
        let store = images.clone();
        let layout = dir.clone();
        let import = tokio::task::spawn_blocking(move || {
            let mut last = std::time::Instant::now();
            let mut progress = |p: Progress| {
                if let Progress::Layer {
                    index,
                    current,
                    total,
                    ..
                } = p
                {
                    let due = current == 0
                        || current >= total
                        || last.elapsed() >= std::time::Duration::from_millis(100);
                    if due {
                        last = std::time::Instant::now();
                        let id = shorts
                            .get(index.saturating_sub(1) as usize)
                            .cloned()
                            .unwrap_or_default();
                        let _ = tx.send(PullEvent {
                            id: Some(id),
                            status: "Extracting".into(),
                            current,
                            total,
                        });
                    }
                }
            };
            store.import_pulled(&layout, &mut progress)
        });
        let mut import = std::pin::pin!(import);
        let images_out = loop {
            tokio::select! {
                ev = rx.recv() => if let Some(ev) = ev { on(ev) },
                r = &mut import => {
                    while let Ok(ev) = rx.try_recv() {
                        on(ev);
                    }
                    break r.map_err(|e| RegistryError::Io {
                        path: dir.clone(),
                        message: e.to_string(),
                    })??;
                }
            }
        };
        for l in &wanted {
            on(PullEvent::layer(&short(&l.digest), "Pull complete"));
        }
        tracing::info!(
            image = %name,
            downloaded,
            download_ms = download_time.as_millis() as u64,
            import_ms = (started.elapsed() - download_time).as_millis() as u64,
            "pulled"
        );
        let image = images_out
            .into_iter()
            .next()
            .ok_or_else(|| RegistryError::Image(ImageError::NotFound(name.clone())))?;
        on(PullEvent::line(format!("Digest: {top_digest}")));
        on(PullEvent::line(format!(
            "Status: Downloaded newer image for {name}"
        )));
        Ok(Pulled {
            name,
            digest: top_digest,
            up_to_date: false,
            downloaded,
            image,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(json: &str) -> Index {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn the_host_platform_is_picked_from_an_index() {
        let i = index(
            r#"{"manifests": [
                {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "sha256:a", "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
                {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "sha256:b", "platform": {"os": "linux", "architecture": "amd64"}},
                {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "sha256:c", "platform": {"os": "unknown", "architecture": "unknown"}}
            ]}"#,
        );
        assert_eq!(pick(&i, ("linux", "amd64")).unwrap().digest, "sha256:b");
        assert_eq!(pick(&i, ("linux", "arm64")).unwrap().digest, "sha256:a");
        assert_eq!(
            pick(&i, ("linux", "s390x")).unwrap_err(),
            vec!["linux/arm64/v8".to_owned(), "linux/amd64".to_owned()]
        );
        let e = RegistryError::NoMatchingPlatform {
            reference: "x".into(),
            wanted: "linux/amd64".into(),
            available: vec!["linux/arm64/v8".into()],
        };
        assert!(
            e.to_string()
                .contains("no matching platform: linux/amd64 is not in the index of x (available: linux/arm64/v8)"),
            "{e}"
        );
    }

    #[test]
    fn messages_name_the_way_out() {
        let e = RegistryError::Tls {
            host: "127.0.0.1:5000".into(),
            message: "received corrupt message".into(),
            insecure_hint: true,
        };
        assert!(
            e.to_string().contains("--insecure-registry 127.0.0.1:5000"),
            "{e}"
        );
        let e = RegistryError::Unauthorized {
            registry: "r".into(),
            repository: "a".into(),
            with_credentials: false,
            detail: "UNAUTHORIZED".into(),
        };
        assert!(e.to_string().contains("corral login"), "{e}");
        assert_eq!(e.code(), "registry_unauthorized");
        let e = RegistryError::RateLimited {
            registry: "docker.io".into(),
            retry_after: Some("60".into()),
            detail: "TOOMANYREQUESTS".into(),
        };
        assert!(e.to_string().contains("retry after 60"), "{e}");
    }
}
