//! One page per file.

pub mod overview;
