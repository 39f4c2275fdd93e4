//! Wire types: the JSON the daemon's API speaks, shared by the backend and the dashboard.
//!
//! Architecture invariant: this crate depends on serde only, so it builds for
//! `wasm32-unknown-unknown`. Domain types live in the backend and are converted at the HTTP edge.

pub mod billing;

use serde::{Deserialize, Serialize};

/// `GET /api/v1/health`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Health {
    /// Always `"ok"` when the daemon answers.
    pub status: String,
    /// The daemon's version (`CARGO_PKG_VERSION`).
    pub version: String,
    /// `"v2"`, `"v1"` or `"hybrid"`; `None` until the cgroup engine has looked at the host.
    pub cgroup_mode: Option<String>,
}

/// Every error the API returns: the UI shows `message` next to `field` when one is named.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiError {
    /// A stable machine-readable code, e.g. `invalid_value`, `not_found`.
    pub code: String,
    /// A human-readable message, lowercase, naming the value and what is allowed.
    pub message: String,
    /// The request field the error is about, when there is one (e.g. `limits.memory_max`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_error_omits_absent_field() {
        let e = ApiError {
            code: "not_found".into(),
            message: "no such container".into(),
            field: None,
        };
        assert_eq!(
            serde_json::to_string(&e).unwrap(),
            r#"{"code":"not_found","message":"no such container"}"#
        );
    }

    #[test]
    fn health_rejects_unknown_fields() {
        let r: Result<Health, _> =
            serde_json::from_str(r#"{"status":"ok","version":"1","cgroup_mode":null,"x":1}"#);
        assert!(r.is_err());
    }
}
