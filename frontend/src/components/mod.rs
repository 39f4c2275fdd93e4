//! Reusable pieces: charts, polling, the process list, the terminal, and the small UI parts
//! every page shares.

pub mod chart;
pub mod checkpoint;
pub mod events;
pub mod limits;
pub mod poll;
pub mod processes;
pub mod recommend;
pub mod terminal;
pub mod ui;
