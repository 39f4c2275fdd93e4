//! The image store: images imported from a `docker save` tarball or an OCI image layout
//! (directory or tar) into a content-addressed store under `<state>/images`.
//!
//! - `layers/<hex>/`: one unpacked layer per uncompressed-tar digest (the config's diff_id),
//!   shared by every image that has it. Whiteouts are converted to overlayfs's form (a 0/0
//!   character device; `trusted.overlay.opaque=y` for opaque directories), so a container's
//!   rootfs is an overlay of the layer directories.
//! - the `images` table: id (`sha256:` of the config), tags, layers (bottom first), and the
//!   runtime part of the config (env, entrypoint, cmd, workdir, user).
//!
//! An archive's members are read as regular files only, never through a symlink or from a
//! device ([`archive`]); metadata files are read under a size cap, layers under a cap of
//! uncompressed bytes ([`limits`]). Every blob is verified against its digest as it streams
//! and a layer enters the store only once both its digests match; nothing of a failed import
//! stays. In layers, entries with absolute paths, `..`, or a path through a symlink are
//! refused; hard links must stay inside the layer; whiteouts must name an entry.

mod archive;
mod limits;
pub(crate) mod unpack;

use std::{
    fs,
    io::{self, Read},
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use rusqlite::params;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::store::Store;
use archive::Members;
pub use limits::{
    Capped, DEFAULT_MAX_IMPORT_SIZE, DEFAULT_MAX_LAYER_SIZE, DEFAULT_MAX_UPLOAD_SIZE, Limits,
    MAX_METADATA_SIZE, show as show_size,
};
pub use unpack::{UnpackError, unpack_layer};

/// Errors of the image store.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("no such image: {0}")]
    NotFound(String),
    #[error("invalid image {path}: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error("digest mismatch in {path}: expected {expected}, got {actual}")]
    Digest {
        path: PathBuf,
        expected: String,
        actual: String,
    },
    #[error("image {path} is too large: {message}")]
    TooLarge { path: PathBuf, message: String },
    #[error("layer {path}: {source}")]
    Unpack { path: PathBuf, source: UnpackError },
    #[error("cannot {action} {path}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("image {0} is used by container {1}")]
    InUse(String, String),
    #[error("database query failed")]
    Sql(#[from] rusqlite::Error),
}

fn io_err(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> ImageError {
    let path = path.to_owned();
    move |source| ImageError::Io {
        action,
        path,
        source,
    }
}

fn too_large(path: &Path, message: impl Into<String>) -> ImageError {
    ImageError::TooLarge {
        path: path.to_owned(),
        message: message.into(),
    }
}

fn invalid(path: &Path, message: impl Into<String>) -> ImageError {
    ImageError::Invalid {
        path: path.to_owned(),
        message: message.into(),
    }
}

/// What a container needs from an image.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, Deserialize)]
pub struct RuntimeConfig {
    #[serde(default)]
    pub env: Vec<String>,
    #[serde(default)]
    pub entrypoint: Vec<String>,
    #[serde(default)]
    pub cmd: Vec<String>,
    #[serde(default)]
    pub workdir: String,
    #[serde(default)]
    pub user: String,
}

/// An image resolved for a container.
#[derive(Debug, Clone, Default)]
pub struct ResolvedImage {
    pub id: String,
    /// Unpacked layer directories, topmost first (overlayfs lowerdir order).
    pub layers: Vec<PathBuf>,
    pub env: Vec<String>,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub workdir: String,
    pub user: String,
}

/// How far an import is, as [`ImageStore::import`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// The outer tarball is being unpacked: `current` of `total` bytes of the file read.
    Unpack { current: u64, total: u64 },
    /// Layer `index` (1-based) of `count`, digest `id`: `current` of `total` bytes of its blob
    /// read. A layer already in the store is still read once (its digest is verified).
    Layer {
        index: u32,
        count: u32,
        id: String,
        current: u64,
        total: u64,
    },
    /// An image is stored.
    Imported { id: String, tags: Vec<String> },
}

/// Bytes between two progress reports while a file is read.
const PROGRESS_STEP: u64 = 256 << 10;

/// A reader that reports how many bytes passed through it, every [`PROGRESS_STEP`] and at EOF.
struct Counting<'a, R> {
    inner: R,
    bytes: u64,
    reported: u64,
    eof: bool,
    tick: &'a mut dyn FnMut(u64),
}

impl<'a, R> Counting<'a, R> {
    fn new(inner: R, tick: &'a mut dyn FnMut(u64)) -> Self {
        tick(0);
        Self {
            inner,
            bytes: 0,
            reported: 0,
            eof: false,
            tick,
        }
    }
}

impl<R: Read> Read for Counting<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bytes += n as u64;
        if (n == 0 && !self.eof) || self.bytes - self.reported >= PROGRESS_STEP {
            self.eof = n == 0;
            self.reported = self.bytes;
            (self.tick)(self.bytes);
        }
        Ok(n)
    }
}

/// What names an import's images beyond the names they carry.
struct Naming<'a> {
    /// `--tag`: `name` or `name:tag`.
    extra_tag: Option<&'a str>,
    /// The file's name without its extensions, as an image name ([`file_stem`]).
    stem: String,
    /// A pull's layout: a layer whose diff_id is stored may have no blob
    /// ([`ImageStore::import_pulled`]).
    stored_may_be_absent: bool,
}

impl Naming<'_> {
    /// The name an OCI layout's bare `org.opencontainers.image.ref.name` tag `tag` gives its
    /// image (what `skopeo copy … oci-archive:x.tar:latest` writes, the spec's "tag only" form):
    /// `--tag NAME` without a tag of its own → `NAME:tag`; `--tag NAME:T` → just that (it is
    /// added as usual); no `--tag` → the file's stem, `x.tar` → `x:tag`.
    fn bare_tag_name(&self, tag: &str) -> String {
        match self.extra_tag {
            Some(t) if !has_tag(t) => format!("{t}:{tag}"),
            Some(t) => t.to_owned(),
            None => format!("{}:{tag}", self.stem),
        }
    }
}

/// Whether a `ref.name` annotation is a tag alone (`latest`, `v1.2`), not a reference: no
/// repository separator `/` and no `:` (the spec allows both forms).
fn is_bare_tag(r: &str) -> bool {
    !r.is_empty() && !r.contains(['/', ':', '@'])
}

/// Whether `reference`'s last path component carries a `:tag` (`localhost:5000/app` has none).
fn has_tag(reference: &str) -> bool {
    reference
        .rsplit('/')
        .next()
        .is_some_and(|last| last.contains(':'))
}

/// An image name from a file's name: extensions (`.tar`, `.tar.gz`, `.tgz`, `.oci`, …) cut,
/// lowercased, anything but `[a-z0-9._-]` made `-`; `image` when nothing is left.
pub fn file_stem(file: &str) -> String {
    let base = file.rsplit('/').next().unwrap_or(file);
    let mut stem = base;
    while let Some((head, ext)) = stem.rsplit_once('.') {
        if head.is_empty()
            || !matches!(
                ext.to_ascii_lowercase().as_str(),
                "tar" | "gz" | "tgz" | "zst" | "zstd" | "oci" | "docker" | "xz"
            )
        {
            break;
        }
        stem = head;
    }
    let name: String = stem
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    let name = name.trim_matches(|c| "._-".contains(c));
    if name.is_empty() {
        "image".to_owned()
    } else {
        name.to_owned()
    }
}

/// The bytes of the files under `dir` (regular files and symlinks by their length, a hard
/// link once), as `docker system df` counts a layer or a container's writable layer; 0 when
/// it does not exist. Symlinks are not followed and other filesystems are not entered.
pub fn tree_size(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(top) = fs::symlink_metadata(dir) else {
        return 0;
    };
    let mut seen = std::collections::HashSet::new();
    let mut total = 0u64;
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let Ok(m) = e.metadata() else { continue };
            if m.is_dir() {
                if m.dev() == top.dev() {
                    stack.push(e.path());
                }
            } else if (m.is_file() || m.is_symlink())
                && (m.nlink() < 2 || seen.insert((m.dev(), m.ino())))
            {
                total += m.len();
            }
        }
    }
    total
}

/// A row of the images table: id, tags, diff_ids (bottom first), config, size, created_at.
type ImageRow = (String, Vec<String>, Vec<String>, RuntimeConfig, u64, i64);

/// The store, cheap to clone.
#[derive(Clone)]
pub struct ImageStore {
    store: Store,
    root: PathBuf,
    limits: Limits,
    /// Held by an import and by a removal: a removal never collects a layer an import has
    /// just stored, and a failed import removes only layers nothing else uses.
    lock: Arc<Mutex<()>>,
}

/// A reader that hashes what passes through it.
struct HashReader<R> {
    inner: R,
    hasher: Sha256,
    bytes: u64,
}

impl<R: Read> HashReader<R> {
    fn new(inner: R) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            bytes: 0,
        }
    }
    /// Reads what is left and returns `sha256:<hex>`.
    fn finish(mut self) -> io::Result<(String, u64)> {
        io::copy(&mut self, &mut io::sink())?;
        Ok((
            format!("sha256:{}", hex(&self.hasher.finalize())),
            self.bytes,
        ))
    }
}

impl<R: Read> Read for HashReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn sha256_bytes(b: &[u8]) -> String {
    format!("sha256:{}", hex(&Sha256::digest(b)))
}

/// `sha256:<64 hex>` → the hex part, refusing anything else (it becomes a path).
fn digest_hex(d: &str) -> Option<&str> {
    let h = d.strip_prefix("sha256:")?;
    (h.len() == 64
        && h.bytes()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()))
    .then_some(h)
}

/// Opens a layer blob, undoing gzip or zstd (recognised by their magic bytes).
fn decompressed<'a, R: io::BufRead + 'a>(mut r: R) -> io::Result<Box<dyn Read + 'a>> {
    let head = r.fill_buf()?;
    if head.starts_with(&[0x1f, 0x8b]) {
        Ok(Box::new(flate2::bufread::MultiGzDecoder::new(r)))
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        let d = ruzstd::decoding::StreamingDecoder::new(r)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("zstd: {e}")))?;
        Ok(Box::new(d))
    } else {
        Ok(Box::new(r))
    }
}

#[derive(Debug, Deserialize)]
struct DockerManifestEntry {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags", default)]
    repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers")]
    layers: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct Descriptor {
    #[serde(rename = "mediaType", default)]
    media_type: String,
    digest: String,
    #[serde(default)]
    annotations: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
struct OciIndex {
    manifests: Vec<Descriptor>,
}

#[derive(Debug, Deserialize)]
struct OciManifest {
    config: Descriptor,
    layers: Vec<Descriptor>,
}

#[derive(Debug, Deserialize)]
struct ImageConfigFile {
    #[serde(default)]
    config: Option<ContainerConfig>,
    rootfs: RootFs,
}

#[derive(Debug, Deserialize, Default)]
struct ContainerConfig {
    #[serde(rename = "Env", default)]
    env: Option<Vec<String>>,
    #[serde(rename = "Entrypoint", default)]
    entrypoint: Option<Vec<String>>,
    #[serde(rename = "Cmd", default)]
    cmd: Option<Vec<String>>,
    #[serde(rename = "WorkingDir", default)]
    working_dir: Option<String>,
    #[serde(rename = "User", default)]
    user: Option<String>,
}

#[derive(Debug, Deserialize)]
struct RootFs {
    diff_ids: Vec<String>,
}

/// One layer to import: its member in the archive, the digest of its bytes when the manifest
/// gives one (OCI blobs), and the digest the uncompressed tar must have.
struct LayerSource {
    member: String,
    blob_digest: Option<String>,
    diff_id: String,
}

/// An image of the archive, read and checked, whose layers are not stored yet.
struct Plan {
    id: String,
    cfg: ImageConfigFile,
    layers: Vec<LayerSource>,
    tags: Vec<String>,
}

/// A temporary directory removed on drop.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn random_hex() -> String {
    let mut b = [0u8; 8];
    if let Ok(mut f) = fs::File::open("/dev/urandom") {
        let _ = f.read_exact(&mut b);
    }
    hex(&b)
}

/// Reads the metadata member `name` (at most [`MAX_METADATA_SIZE`]), which must hash to
/// `expected` (`sha256:<hex>`).
fn read_verified(members: &Members, name: &str, expected: &str) -> Result<Vec<u8>, ImageError> {
    let data = members
        .read_small(name, MAX_METADATA_SIZE)?
        .ok_or_else(|| invalid(members.source(), format!("member {name:?} is missing")))?;
    let actual = sha256_bytes(&data);
    if actual != expected {
        return Err(ImageError::Digest {
            path: members.source().join(name),
            expected: expected.to_owned(),
            actual,
        });
    }
    Ok(data)
}

/// `blobs/sha256/<hex>` → `sha256:<hex>`: a blob's name is its digest.
fn digest_of_name(name: &Path) -> Option<String> {
    let h = name.strip_prefix("blobs/sha256").ok()?.to_str()?;
    let d = format!("sha256:{h}");
    digest_hex(&d).is_some().then_some(d)
}

impl ImageStore {
    /// The store under `state_dir/images`. What an import left in `images/tmp` when the daemon
    /// died is removed here (no import runs yet).
    pub fn new(store: Store, state_dir: &Path) -> Result<Self, ImageError> {
        let root = state_dir.join("images");
        for d in [root.join("layers"), root.join("tmp")] {
            fs::create_dir_all(&d).map_err(io_err("create", &d))?;
        }
        let tmp = root.join("tmp");
        for e in fs::read_dir(&tmp).map_err(io_err("read", &tmp))?.flatten() {
            let p = e.path();
            let r = match e.file_type() {
                Ok(t) if t.is_dir() => fs::remove_dir_all(&p),
                _ => fs::remove_file(&p),
            };
            r.map_err(io_err("remove", &p))?;
        }
        Ok(Self {
            store,
            root,
            limits: Limits::default(),
            lock: Arc::new(Mutex::new(())),
        })
    }

    /// A fresh path under the store's temporary directory for an uploaded file (emptied at
    /// daemon start, like an import's other temporary files).
    pub fn upload_path(&self) -> PathBuf {
        self.root
            .join("tmp")
            .join(format!("upload-{}", random_hex()))
    }

    /// The same store, importing under `limits`.
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    fn layer_dir(&self, diff_id: &str) -> Option<PathBuf> {
        digest_hex(diff_id).map(|h| self.root.join("layers").join(h))
    }

    /// Imports a `docker save` tarball or an OCI layout (directory or tar). `progress` hears
    /// how many bytes of the file, then of each layer, were read. Returns the imported images.
    ///
    /// `extra_tag` (`--tag`) names every image of the file, besides the names it carries.
    /// `source_name` is the file's name as the user knows it (an upload's; else `path`'s):
    /// see [`bare_tag_name`] for what it names.
    ///
    /// All or nothing: when an import fails, the layers it added and its temporary files are
    /// removed. Imports (and removals) run one at a time.
    pub fn import(
        &self,
        path: &Path,
        extra_tag: Option<&str>,
        source_name: Option<&str>,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<Vec<wire::Image>, ImageError> {
        let _one_at_a_time = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut added = Vec::new();
        let source_name = source_name
            .map(str::to_owned)
            .or_else(|| path.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_default();
        let naming = Naming {
            extra_tag,
            stem: file_stem(&source_name),
            stored_may_be_absent: false,
        };
        let r = self.import_locked(path, &naming, progress, &mut added);
        if r.is_err() {
            self.drop_unused(&added);
        }
        r
    }

    /// Imports the OCI layout directory a registry pull wrote (`registry::pull`), through the
    /// same checks as any import. The one difference: a layer blob the pull did not download
    /// because the store already holds its diff_id may be absent (docker's "Already exists");
    /// the config, verified against the manifest's digest, names the layer.
    pub fn import_pulled(
        &self,
        dir: &Path,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<Vec<wire::Image>, ImageError> {
        let _one_at_a_time = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut added = Vec::new();
        let naming = Naming {
            extra_tag: None,
            stem: "image".to_owned(),
            stored_may_be_absent: true,
        };
        let r = self.import_locked(dir, &naming, progress, &mut added);
        if r.is_err() {
            self.drop_unused(&added);
        }
        r
    }

    /// A fresh directory path under the store's temporary directory for a pull's OCI layout
    /// (emptied at daemon start, like an import's other temporary files).
    pub fn pull_path(&self) -> PathBuf {
        self.root.join("tmp").join(format!("pull-{}", random_hex()))
    }

    /// Whether the layer with this diff_id (`sha256:<hex>`) is stored.
    pub fn has_layer(&self, diff_id: &str) -> bool {
        self.layer_dir(diff_id).is_some_and(|d| d.is_dir())
    }

    /// The stored image with id `id` if it carries the tag `name`.
    pub fn tagged(&self, id: &str, name: &str) -> Result<Option<wire::Image>, ImageError> {
        Ok(self
            .list()?
            .into_iter()
            .find(|i| i.id == id && i.tags.iter().any(|t| t == name))
            .filter(|i| i.layers.iter().all(|l| self.has_layer(l))))
    }

    fn import_locked(
        &self,
        path: &Path,
        naming: &Naming<'_>,
        progress: &mut dyn FnMut(Progress),
        added: &mut Vec<PathBuf>,
    ) -> Result<Vec<wire::Image>, ImageError> {
        let meta = fs::metadata(path).map_err(io_err("open", path))?;
        let members = if meta.is_dir() {
            Members::directory(path)?
        } else if meta.is_file() {
            let dir = self.root.join("tmp").join(random_hex());
            let f = fs::File::open(path).map_err(io_err("open", path))?;
            let total = meta.len();
            let mut tick = |current| progress(Progress::Unpack { current, total });
            let mut counted = Counting::new(f, &mut tick);
            let r = decompressed(io::BufReader::new(&mut counted)).map_err(io_err("read", path))?;
            let members = Members::unpack(r, path, &dir, &self.limits)?;
            // The tar reader stops at the end-of-archive marker: the rest is padding.
            io::copy(&mut counted, &mut io::sink()).map_err(io_err("read", path))?;
            members
        } else {
            return Err(invalid(
                path,
                "is neither a regular file (a tarball) nor a directory (an OCI layout)",
            ));
        };
        let plans = if let Some(data) = members.read_small("manifest.json", MAX_METADATA_SIZE)? {
            Self::docker_plans(&members, &data, naming.extra_tag)?
        } else if let Some(data) = members.read_small("index.json", MAX_METADATA_SIZE)? {
            Self::oci_plans(&members, &data, naming)?
        } else {
            return Err(invalid(
                path,
                "neither a docker save tarball (manifest.json) nor an OCI layout (index.json)",
            ));
        };
        let mut budget = self.limits.max_import_size;
        let mut stored = Vec::new();
        for plan in &plans {
            let count = u32::try_from(plan.layers.len()).unwrap_or(u32::MAX);
            let mut size = 0u64;
            for (i, l) in plan.layers.iter().enumerate() {
                let index = u32::try_from(i + 1).unwrap_or(u32::MAX);
                let id = l.diff_id.clone();
                let mut tick = |current, total| {
                    progress(Progress::Layer {
                        index,
                        count,
                        id: id.clone(),
                        current,
                        total,
                    })
                };
                if naming.stored_may_be_absent
                    && self.has_layer(&l.diff_id)
                    && members.open(&l.member)?.is_none()
                {
                    size += self.layer_dir(&l.diff_id).map_or(0, |d| tree_size(&d));
                    continue;
                }
                size += self.import_layer(&members, l, &mut tick, &mut budget, added)?;
            }
            stored.push(size);
        }
        drop(members);
        let mut images = Vec::new();
        for (plan, size) in plans.into_iter().zip(stored) {
            images.push(self.store_image(plan, size, progress)?);
        }
        Ok(images)
    }

    /// The images of a docker save tarball's manifest.json.
    fn docker_plans(
        members: &Members,
        data: &[u8],
        extra_tag: Option<&str>,
    ) -> Result<Vec<Plan>, ImageError> {
        let mpath = members.source().join("manifest.json");
        let entries: Vec<DockerManifestEntry> = serde_json::from_slice(data)
            .map_err(|e| invalid(&mpath, format!("manifest.json: {e}")))?;
        if entries.is_empty() {
            return Err(invalid(&mpath, "manifest.json lists no image"));
        }
        let mut plans = Vec::new();
        for e in entries {
            let cpath = members.source().join(&e.config);
            let config = members
                .read_small(&e.config, MAX_METADATA_SIZE)?
                .ok_or_else(|| invalid(&cpath, "the config named by manifest.json is missing"))?;
            let id = sha256_bytes(&config);
            // The config's file name is its digest (`<hex>.json` or `blobs/sha256/<hex>`).
            let named = Path::new(&e.config)
                .file_name()
                .and_then(|n| n.to_str())
                .map(|n| n.trim_end_matches(".json").to_owned())
                .unwrap_or_default();
            if named.len() == 64 && format!("sha256:{named}") != id {
                return Err(ImageError::Digest {
                    path: cpath,
                    expected: format!("sha256:{named}"),
                    actual: id,
                });
            }
            let cfg: ImageConfigFile = serde_json::from_slice(&config)
                .map_err(|err| invalid(&cpath, format!("image config: {err}")))?;
            if cfg.rootfs.diff_ids.len() != e.layers.len() {
                return Err(invalid(&cpath, "layer count differs from rootfs.diff_ids"));
            }
            let layers = e
                .layers
                .iter()
                .zip(&cfg.rootfs.diff_ids)
                .map(|(l, diff)| LayerSource {
                    member: l.clone(),
                    blob_digest: None,
                    diff_id: diff.clone(),
                })
                .collect();
            let mut tags = e.repo_tags.unwrap_or_default();
            tags.extend(extra_tag.map(str::to_owned));
            plans.push(Plan {
                id,
                cfg,
                layers,
                tags,
            });
        }
        Ok(plans)
    }

    /// The images of an OCI layout's index.json (nested indexes followed one level).
    fn oci_plans(
        members: &Members,
        data: &[u8],
        naming: &Naming<'_>,
    ) -> Result<Vec<Plan>, ImageError> {
        let ipath = members.source().join("index.json");
        // oci-layout says nothing we need, but it is a member like the others.
        members.read_small("oci-layout", MAX_METADATA_SIZE)?;
        let index: OciIndex = serde_json::from_slice(data)
            .map_err(|e| invalid(&ipath, format!("index.json: {e}")))?;
        let blob = |d: &str| -> Result<String, ImageError> {
            let h = digest_hex(d).ok_or_else(|| invalid(&ipath, format!("bad digest {d:?}")))?;
            Ok(format!("blobs/sha256/{h}"))
        };
        let mut manifests: Vec<(Descriptor, Vec<String>)> = Vec::new();
        for m in index.manifests {
            let tag = match (
                m.annotations.get("io.containerd.image.name"),
                m.annotations.get("org.opencontainers.image.ref.name"),
            ) {
                (Some(full), _) => Some(full.clone()),
                (None, Some(r)) if is_bare_tag(r) => Some(naming.bare_tag_name(r)),
                (None, r) => r.cloned(),
            };
            if m.media_type.contains("image.index") {
                let p = blob(&m.digest)?;
                let nested: OciIndex =
                    serde_json::from_slice(&read_verified(members, &p, &m.digest)?)
                        .map_err(|e| invalid(&members.source().join(&p), format!("index: {e}")))?;
                for n in nested.manifests {
                    manifests.push((n, tag.iter().cloned().collect()));
                }
            } else {
                manifests.push((m, tag.into_iter().collect()));
            }
        }
        if manifests.is_empty() {
            return Err(invalid(&ipath, "index.json lists no manifest"));
        }
        let mut plans = Vec::new();
        for (m, mut tags) in manifests {
            let p = blob(&m.digest)?;
            let manifest: OciManifest =
                serde_json::from_slice(&read_verified(members, &p, &m.digest)?)
                    .map_err(|e| invalid(&members.source().join(&p), format!("manifest: {e}")))?;
            let cp = blob(&manifest.config.digest)?;
            let config = read_verified(members, &cp, &manifest.config.digest)?;
            let cfg: ImageConfigFile = serde_json::from_slice(&config)
                .map_err(|e| invalid(&members.source().join(&cp), format!("image config: {e}")))?;
            if cfg.rootfs.diff_ids.len() != manifest.layers.len() {
                return Err(invalid(
                    &members.source().join(&cp),
                    "layer count differs from rootfs.diff_ids",
                ));
            }
            let mut layers = Vec::new();
            for (l, diff) in manifest.layers.iter().zip(&cfg.rootfs.diff_ids) {
                layers.push(LayerSource {
                    member: blob(&l.digest)?,
                    blob_digest: Some(l.digest.clone()),
                    diff_id: diff.clone(),
                });
            }
            if let Some(t) = naming.extra_tag
                && !tags
                    .iter()
                    .any(|have| have == t || have.starts_with(&format!("{t}:")))
            {
                tags.push(t.to_owned());
            }
            plans.push(Plan {
                id: manifest.config.digest.clone(),
                cfg,
                layers,
                tags,
            });
        }
        Ok(plans)
    }

    /// Removes the layers in `added` that no image uses (those of a failed import).
    fn drop_unused(&self, added: &[PathBuf]) {
        let used: std::collections::BTreeSet<String> = self
            .rows()
            .map(|rows| rows.into_iter().flat_map(|r| r.2).collect())
            .unwrap_or_default();
        for dir in added {
            let name = dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if !used.contains(&format!("sha256:{name}"))
                && let Err(e) = fs::remove_dir_all(dir)
            {
                tracing::warn!(layer = %dir.display(), error = %e, "cannot remove a layer of a failed import");
            }
        }
    }

    /// Records an image whose layers are stored.
    fn store_image(
        &self,
        plan: Plan,
        size: u64,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<wire::Image, ImageError> {
        let Plan {
            id,
            cfg,
            layers,
            tags,
        } = plan;
        let id = id.as_str();
        let diff_ids: Vec<String> = layers.into_iter().map(|l| l.diff_id).collect();
        let c = cfg.config.as_ref();
        let rc = RuntimeConfig {
            env: c.and_then(|c| c.env.clone()).unwrap_or_default(),
            entrypoint: c.and_then(|c| c.entrypoint.clone()).unwrap_or_default(),
            cmd: c.and_then(|c| c.cmd.clone()).unwrap_or_default(),
            workdir: c.and_then(|c| c.working_dir.clone()).unwrap_or_default(),
            user: c.and_then(|c| c.user.clone()).unwrap_or_default(),
        };
        let tags: Vec<String> = tags
            .into_iter()
            .map(|t| {
                if t.contains(':') {
                    t
                } else {
                    format!("{t}:latest")
                }
            })
            .collect();
        let created_at = crate::runtime::state::now();
        let conn = self.store.lock();
        // A tag names one image: take it away from any other.
        let mut stmt = conn.prepare("SELECT id, tags FROM images")?;
        let others: Vec<(String, String)> = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?;
        drop(stmt);
        for (oid, otags) in others {
            if oid == id {
                continue;
            }
            let list: Vec<String> = serde_json::from_str(&otags).unwrap_or_default();
            let kept: Vec<&String> = list.iter().filter(|t| !tags.contains(t)).collect();
            if kept.len() != list.len() {
                conn.execute(
                    "UPDATE images SET tags = ?2 WHERE id = ?1",
                    params![oid, serde_json::to_string(&kept).unwrap_or_default()],
                )?;
            }
        }
        let existing: Option<String> = conn
            .query_row("SELECT tags FROM images WHERE id = ?1", [id], |r| r.get(0))
            .ok();
        let mut all_tags: Vec<String> = existing
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default();
        for t in &tags {
            if !all_tags.contains(t) {
                all_tags.push(t.clone());
            }
        }
        conn.execute(
            "INSERT INTO images (id, tags, layers, config, size, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT(id) DO UPDATE SET tags = excluded.tags",
            params![
                id,
                serde_json::to_string(&all_tags).unwrap_or_default(),
                serde_json::to_string(&diff_ids).unwrap_or_default(),
                serde_json::to_string(&rc).unwrap_or_default(),
                size as i64,
                created_at
            ],
        )?;
        drop(conn);
        progress(Progress::Imported {
            id: id.to_owned(),
            tags: all_tags.clone(),
        });
        Ok(wire::Image {
            id: id.to_owned(),
            tags: all_tags,
            layers: diff_ids,
            size,
            created_at,
        })
    }

    /// Unpacks one layer into `layers/<diff hex>` unless it is there already, under the cap
    /// `min(max_layer_size, budget)` of uncompressed bytes. The blob's digest is checked before
    /// it is unpacked when the tarball's unpacking hashed it; both digests are checked as it
    /// streams, and the layer enters the store only when they match. `added` hears the
    /// directory of a layer this import added. Returns the uncompressed size.
    fn import_layer(
        &self,
        members: &Members,
        l: &LayerSource,
        tick: &mut dyn FnMut(u64, u64),
        budget: &mut u64,
        added: &mut Vec<PathBuf>,
    ) -> Result<u64, ImageError> {
        let shown = members.source().join(&l.member);
        let target = self
            .layer_dir(&l.diff_id)
            .ok_or_else(|| invalid(&shown, format!("bad diff_id {:?}", l.diff_id)))?;
        if let Some(d) = &l.blob_digest
            && digest_hex(d).is_none()
        {
            return Err(invalid(&shown, format!("bad digest {d:?}")));
        }
        let member = members.open_required(&l.member)?;
        let blob_digest = l
            .blob_digest
            .clone()
            .or_else(|| digest_of_name(&member.name));
        if let (Some(expected), Some(actual)) = (&blob_digest, members.digest(&member.name))
            && expected != actual
        {
            return Err(ImageError::Digest {
                path: shown,
                expected: expected.clone(),
                actual: actual.to_owned(),
            });
        }
        let exists = target.is_dir();
        let tmp = self
            .root
            .join("tmp")
            .join(format!("layer-{}", random_hex()));
        let _scratch = Scratch(tmp.clone());
        if !exists {
            fs::create_dir(&tmp).map_err(io_err("create", &tmp))?;
        }
        let total = member.size;
        let mut tick = |current| tick(current, total);
        let mut raw = HashReader::new(Counting::new(member.file, &mut tick));
        let (cap, flag) = if *budget < self.limits.max_layer_size {
            (*budget, "--max-import-size")
        } else {
            (self.limits.max_layer_size, "--max-layer-size")
        };
        let (tripped, r) = {
            let r = decompressed(io::BufReader::new(&mut raw)).map_err(io_err("read", &shown));
            match r {
                Err(e) => (None, Err(e)),
                Ok(r) => {
                    let (capped, tripped) = Capped::new(r, cap);
                    let mut plain = HashReader::new(capped);
                    let unpacked = if exists {
                        Ok(())
                    } else {
                        unpack_layer(&mut plain, &tmp, true).map_err(|source| ImageError::Unpack {
                            path: shown.clone(),
                            source,
                        })
                    };
                    let r = unpacked.and_then(|()| plain.finish().map_err(io_err("read", &shown)));
                    (Some(tripped), r)
                }
            }
        };
        if tripped.is_some_and(|t| t.get()) {
            return Err(too_large(
                members.source(),
                format!(
                    "layer {:?} unpacks to more than {flag} ({})",
                    l.member,
                    limits::show(cap)
                ),
            ));
        }
        let (diff, size) = r?;
        let (blob, _) = raw.finish().map_err(io_err("read", &shown))?;
        if let Some(d) = &blob_digest
            && &blob != d
        {
            return Err(ImageError::Digest {
                path: shown,
                expected: d.clone(),
                actual: blob,
            });
        }
        if diff != l.diff_id {
            return Err(ImageError::Digest {
                path: shown,
                expected: l.diff_id.clone(),
                actual: diff,
            });
        }
        *budget = budget.saturating_sub(size);
        if !exists {
            fs::rename(&tmp, &target).map_err(io_err("store layer", &target))?;
            added.push(target);
        }
        Ok(size)
    }

    fn rows(&self) -> Result<Vec<ImageRow>, ImageError> {
        let conn = self.store.lock();
        let mut stmt = conn.prepare(
            "SELECT id, tags, layers, config, size, created_at FROM images ORDER BY created_at, id",
        )?;
        let rows = stmt.query_map([], |r| {
            let tags: String = r.get(1)?;
            let layers: String = r.get(2)?;
            let config: String = r.get(3)?;
            Ok((
                r.get::<_, String>(0)?,
                serde_json::from_str(&tags).unwrap_or_default(),
                serde_json::from_str(&layers).unwrap_or_default(),
                serde_json::from_str(&config).unwrap_or_default(),
                r.get::<_, i64>(4)? as u64,
                r.get::<_, i64>(5)?,
            ))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn list(&self) -> Result<Vec<wire::Image>, ImageError> {
        Ok(self
            .rows()?
            .into_iter()
            .map(|(id, tags, layers, _, size, created_at)| wire::Image {
                id,
                tags,
                layers,
                size,
                created_at,
            })
            .collect())
    }

    /// Bytes on disk of each stored layer, by diff_id (`sha256:<hex>`), as [`tree_size`]
    /// counts them; a layer whose directory is missing counts 0.
    pub fn layer_sizes(&self) -> Result<std::collections::BTreeMap<String, u64>, ImageError> {
        let mut sizes = std::collections::BTreeMap::new();
        for (_, _, layers, ..) in self.rows()? {
            for l in layers {
                if let std::collections::btree_map::Entry::Vacant(e) = sizes.entry(l) {
                    let size = self.layer_dir(e.key()).map_or(0, |d| tree_size(&d));
                    e.insert(size);
                }
            }
        }
        Ok(sizes)
    }

    /// The id `reference` names: `name:tag`, `name` (`:latest`), `sha256:<hex>` or a hex prefix
    /// of at least 6 characters.
    fn find(&self, reference: &str) -> Result<(String, Vec<String>, RuntimeConfig), ImageError> {
        let rows = self.rows()?;
        let with_tag = if reference.contains(':') && !reference.starts_with("sha256:") {
            reference.to_owned()
        } else {
            format!("{reference}:latest")
        };
        let hexref = reference.strip_prefix("sha256:").unwrap_or(reference);
        let mut hits = rows.into_iter().filter(|(id, tags, ..)| {
            id == reference
                || tags.iter().any(|t| *t == with_tag || t == reference)
                || (hexref.len() >= 6
                    && hexref.bytes().all(|c| c.is_ascii_hexdigit())
                    && id.trim_start_matches("sha256:").starts_with(hexref))
        });
        match (hits.next(), hits.next()) {
            (Some((id, _, layers, rc, ..)), None) => Ok((id, layers, rc)),
            _ => Err(ImageError::NotFound(reference.to_owned())),
        }
    }

    /// Finds an image for a container.
    pub fn resolve(&self, reference: &str) -> Result<ResolvedImage, ImageError> {
        let (id, layers, rc) = self.find(reference)?;
        let mut dirs = Vec::new();
        for l in layers.iter().rev() {
            let d = self
                .layer_dir(l)
                .filter(|d| d.is_dir())
                .ok_or_else(|| invalid(&self.root, format!("layer {l} of {id} is missing")))?;
            dirs.push(d);
        }
        if dirs.is_empty() {
            // overlayfs needs a lower layer: an image without layers is an empty directory.
            let empty = self.root.join("empty");
            fs::create_dir_all(&empty).map_err(io_err("create", &empty))?;
            dirs.push(empty);
        }
        Ok(ResolvedImage {
            id,
            layers: dirs,
            env: rc.env,
            entrypoint: rc.entrypoint,
            cmd: rc.cmd,
            workdir: rc.workdir,
            user: rc.user,
        })
    }

    /// Removes an image and every layer no other image uses. `in_use` names a container that
    /// still uses the image (by id), if any.
    pub fn remove(
        &self,
        reference: &str,
        in_use: impl Fn(&str) -> Option<String>,
    ) -> Result<(), ImageError> {
        let _no_import = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let (id, _, _) = self.find(reference)?;
        if let Some(c) = in_use(&id) {
            return Err(ImageError::InUse(reference.to_owned(), c));
        }
        self.store
            .lock()
            .execute("DELETE FROM images WHERE id = ?1", [&id])?;
        let keep: std::collections::BTreeSet<String> = self
            .rows()?
            .into_iter()
            .flat_map(|r| r.2)
            .filter_map(|d| digest_hex(&d).map(str::to_owned))
            .collect();
        let layers = self.root.join("layers");
        if let Ok(rd) = fs::read_dir(&layers) {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if !keep.contains(&name) {
                    fs::remove_dir_all(e.path()).map_err(io_err("remove", &e.path()))?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod naming_tests {
    use super::*;

    #[test]
    fn bare_tags_are_tags() {
        assert!(is_bare_tag("latest"));
        assert!(is_bare_tag("v1.2"));
        assert!(!is_bare_tag("alpine:3.20"));
        assert!(!is_bare_tag("docker.io/library/alpine"));
        assert!(!is_bare_tag(""));
        let n = |t| Naming {
            extra_tag: t,
            stem: file_stem("/tmp/My App.oci.tar.gz"),
            stored_may_be_absent: false,
        };
        assert_eq!(n(None).bare_tag_name("latest"), "my-app:latest");
        assert_eq!(n(Some("web")).bare_tag_name("v2"), "web:v2");
        assert_eq!(n(Some("web:prod")).bare_tag_name("v2"), "web:prod");
        assert_eq!(
            n(Some("localhost:5000/web")).bare_tag_name("v2"),
            "localhost:5000/web:v2"
        );
    }

    #[test]
    fn file_stems() {
        for (file, stem) in [
            ("x.tar", "x"),
            ("busybox.tar.gz", "busybox"),
            ("app-1.0.tgz", "app-1.0"),
            ("dir/Alpine_3.oci", "alpine_3"),
            (".tar", "tar"),
            ("-.tar", "image"),
            ("", "image"),
            ("ünï.tar", "n"),
        ] {
            assert_eq!(file_stem(file), stem, "{file}");
        }
    }
}
