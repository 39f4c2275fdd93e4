//! The image store: images imported from `docker save` tarballs or OCI image layouts into a
//! content-addressed store under `<state>/images`.

use std::path::{Path, PathBuf};

use crate::store::Store;

/// Errors of the image store.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("no such image: {0}")]
    NotFound(String),
    #[error("invalid image {path}: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error("cannot {action} {path}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("image {0} is used by container {1}")]
    InUse(String, String),
    #[error("database query failed")]
    Sql(#[from] rusqlite::Error),
}

/// What a container needs from an image.
#[derive(Debug, Clone, Default)]
pub struct ResolvedImage {
    pub id: String,
    /// Unpacked layer directories, topmost first.
    pub layers: Vec<PathBuf>,
    pub env: Vec<String>,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub workdir: String,
    pub user: String,
}

/// The store, cheap to clone.
#[derive(Clone)]
pub struct ImageStore {
    store: Store,
    root: PathBuf,
}

impl ImageStore {
    pub fn new(store: Store, state_dir: &Path) -> Result<Self, ImageError> {
        let root = state_dir.join("images");
        std::fs::create_dir_all(root.join("layers")).map_err(|source| ImageError::Io {
            action: "create",
            path: root.clone(),
            source,
        })?;
        Ok(Self { store, root })
    }

    /// Finds an image by `name:tag`, `name` (tag `latest`), `sha256:<hex>` or a unique prefix.
    pub fn resolve(&self, reference: &str) -> Result<ResolvedImage, ImageError> {
        let _ = (&self.store, &self.root);
        Err(ImageError::NotFound(reference.to_owned()))
    }
}
