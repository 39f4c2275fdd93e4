//! What containers hold on disk: the size of each one's writable layer (its overlay upper
//! directory), for the Docker API's `docker system df`.

use super::{Manager, RuntimeError};

impl Manager {
    /// Every container with the bytes of its writable layer ([`crate::image::tree_size`] of
    /// its upper directory; 0 for a container on a host directory, which has none).
    pub async fn writable_sizes(&self) -> Result<Vec<(wire::Container, u64)>, RuntimeError> {
        let list = self.list(true).await?;
        let m = self.clone();
        tokio::task::spawn_blocking(move || {
            list.into_iter()
                .map(|c| {
                    let size = crate::image::tree_size(&m.container_dir(&c.id).upper());
                    (c, size)
                })
                .collect()
        })
        .await
        .map_err(|e| RuntimeError::Io {
            action: "measure",
            path: "the writable layers".into(),
            source: std::io::Error::other(e),
        })
    }
}
