//! The API types the pages use, all from `wire` (one place to see what the dashboard reads).

pub use wire::{
    Container, ContainerProcess, CreateContainer, ExecRequest, ExecResult, Image, Limits,
    PullImage, Pulled,
};

pub use wire::billing::{BillingReport, History, LiveStats, RateCard, RateCards};

pub use wire::events::{ContainerEvent, Event};
