//! The daemon side of containers.
pub struct Manager;
