//! The image store.

/// Errors of the image store.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("no such image: {0}")]
    NotFound(String),
}
