//! One page per file.

pub mod audit;
pub mod billing;
pub mod cgroups;
pub mod container;
pub mod containers;
pub mod login;
pub mod overview;
pub mod team;
pub mod users;
