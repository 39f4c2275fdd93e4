//! Corral: runs, limits and meters containers on one Linux host, and serves a JSON API and the
//! dashboard. See ARCHITECTURE.md for the codemap.
//!
//! Architecture invariant: the daemon is `daemon::serve`; everything else under `cli` is a client
//! of a running daemon and reaches it only through `client::Client`.

pub mod auth;
pub mod budget;
pub mod cgroup;
pub mod cli;
pub mod client;
pub mod config;
pub mod daemon;
pub mod docker;
pub mod events;
pub mod fault;
pub mod http;
pub mod image;
pub mod ledger;
pub mod metering;
pub mod network;
pub mod recommend;
pub mod registry;
pub mod runtime;
pub mod store;
pub mod teams;
pub mod tls;
pub mod webhook;

/// The version every component reports.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
