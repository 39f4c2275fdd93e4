//! Wire types of right-sizing: `GET /api/v1/containers/{name}/recommendation` and
//! `GET /api/v1/teams/{name}/recommendation`.

use serde::{Deserialize, Serialize};

use crate::LimitsPatch;

/// What a recommendation is about.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RecommendationScope {
    Container,
    Team,
}

/// What to do with one limit.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RecommendationAction {
    Increase,
    Decrease,
    /// Leave it (also: information about a knob without a limit).
    Keep,
}

/// One limit's recommendation.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecommendationItem {
    /// The field of [`crate::Limits`]: `cpus`, `memory_max` or `pids_max`.
    pub knob: String,
    pub action: RecommendationAction,
    /// The limit now, in the knob's unit (cores, bytes, count); absent: no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current: Option<f64>,
    /// The limit proposed (the current one for `keep`); absent: no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recommended: Option<f64>,
    /// One line with the figures behind it, e.g.
    /// `cpus 2 → 0.6: p95 use 0.42 cores, peak 0.5, throttled 0 %`.
    pub line: String,
}

/// Limits recommended from a container's or a team pool's stored history.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recommendation {
    pub scope: RecommendationScope,
    /// Container or team name.
    pub name: String,
    /// The window asked for, seconds.
    pub window_secs: u64,
    /// Where the history read starts (the window's start or the first sample), Unix seconds.
    pub from: i64,
    /// Points of history with samples.
    pub samples: u64,
    /// Fewest points a recommendation needs.
    pub min_samples: u64,
    /// Why there are no items (`not enough history: 12 samples, need 30`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    pub items: Vec<RecommendationItem>,
    /// The limits patch that applies every increase and decrease: send it to
    /// `PATCH /api/v1/containers/{name}/limits` (or the team's); `{}` when nothing changes.
    pub patch: LimitsPatch,
}
