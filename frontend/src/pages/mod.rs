//! One page per file.

pub mod account;
pub mod audit;
pub mod billing;
pub mod cgroups;
pub mod container;
pub mod containers;
pub mod fleet;
pub mod images;
pub mod login;
pub mod network;
pub mod overview;
pub mod team;
pub mod users;
