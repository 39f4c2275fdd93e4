//! How much an import may read and write: caps on each layer's uncompressed bytes, on the
//! whole import, and on the metadata files held in memory; and the reader that enforces a cap
//! while the bytes stream (a gzip or zstd bomb is stopped at the cap, not at the end).

use std::{
    cell::Cell,
    io::{self, Read},
    rc::Rc,
};

/// Default of `corral serve --max-layer-size`: 16 GiB.
pub const DEFAULT_MAX_LAYER_SIZE: u64 = 16 << 30;
/// Default of `corral serve --max-import-size`: 64 GiB.
pub const DEFAULT_MAX_IMPORT_SIZE: u64 = 64 << 30;
/// Default of `corral serve --max-upload-size`: 8 GiB.
pub const DEFAULT_MAX_UPLOAD_SIZE: u64 = 8 << 30;
/// The most a manifest.json, index.json, oci-layout, image manifest or image config may hold
/// (they are read whole into memory): 8 MiB, far above any real one.
pub const MAX_METADATA_SIZE: u64 = 8 << 20;

/// The caps an import works under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Uncompressed bytes of one layer, and bytes of one member of an image tarball.
    pub max_layer_size: u64,
    /// Bytes of an import as a whole: the unpacked tarball's members, and all its layers
    /// uncompressed.
    pub max_import_size: u64,
    /// Bytes of an uploaded image file (`POST /api/v1/images/import` with the file as body).
    pub max_upload_size: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_layer_size: DEFAULT_MAX_LAYER_SIZE,
            max_import_size: DEFAULT_MAX_IMPORT_SIZE,
            max_upload_size: DEFAULT_MAX_UPLOAD_SIZE,
        }
    }
}

/// `16 GiB`, `64 MiB`, `1000 bytes`: a limit as users typed it.
pub fn show(bytes: u64) -> String {
    for (unit, shift) in [("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10)] {
        if bytes >= 1 << shift && bytes.is_multiple_of(1 << shift) {
            return format!("{} {unit}", bytes >> shift);
        }
    }
    format!("{bytes} bytes")
}

/// A reader that fails once more than `limit` bytes came through it, and says so in `tripped`
/// (the tar reader wraps the error; the flag is how the import tells a cap from a bad file).
pub struct Capped<R> {
    inner: R,
    left: u64,
    tripped: Rc<Cell<bool>>,
}

impl<R> Capped<R> {
    pub fn new(inner: R, limit: u64) -> (Self, Rc<Cell<bool>>) {
        let tripped = Rc::new(Cell::new(false));
        (
            Capped {
                inner,
                left: limit,
                tripped: tripped.clone(),
            },
            tripped,
        )
    }
}

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            // One byte more tells a stream that ends exactly at the cap from one that goes on.
            let mut probe = [0u8; 1];
            if self.inner.read(&mut probe)? == 0 {
                return Ok(0);
            }
            self.tripped.set(true);
            return Err(io::Error::other(
                "the uncompressed layer exceeds its size limit",
            ));
        }
        let want = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        self.left -= n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn capped_passes_up_to_the_limit_and_trips_after() {
        let data = vec![7u8; 1000];
        let (mut r, tripped) = Capped::new(&data[..], 1000);
        let mut out = Vec::new();
        r.read_to_end(&mut out).unwrap();
        assert_eq!(out.len(), 1000);
        assert!(!tripped.get());
        let (mut r, tripped) = Capped::new(&data[..], 999);
        assert!(r.read_to_end(&mut Vec::new()).is_err());
        assert!(tripped.get());
    }

    #[test]
    fn limits_show_as_typed() {
        assert_eq!(show(16 << 30), "16 GiB");
        assert_eq!(show(64 << 20), "64 MiB");
        assert_eq!(show(1536 << 20), "1536 MiB");
        assert_eq!(show(1000), "1000 bytes");
    }
}
