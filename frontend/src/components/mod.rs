//! Reusable pieces: charts, polling, and the small UI parts every page shares.

pub mod chart;
pub mod events;
pub mod limits;
pub mod poll;
pub mod recommend;
pub mod ui;
