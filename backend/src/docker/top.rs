//! `GET /containers/{id}/top` (`docker top NAME`): the container's processes from
//! [`crate::runtime::Manager::top`] — the same reading as Corral's `GET
//! /api/v1/containers/{name}/top` — in `ps -ef`'s columns with host PIDs, as dockerd answers
//! with its default `ps_args`. Other `ps` options are refused with a 400: Corral does not run
//! `ps`.

use axum::{
    Json,
    extract::{Path, Query, State},
    http::StatusCode,
};
use serde_json::{Value, json};

use super::DockerError;
use crate::{
    http::AppState,
    runtime::{
        RuntimeError,
        top::{TITLES, ps_row},
    },
};

#[derive(Debug, serde::Deserialize)]
pub(super) struct TopQuery {
    ps_args: Option<String>,
}

/// The `ps` arguments Corral answers: none, or `-ef` (what dockerd uses when none are given).
pub(super) fn check_ps_args(args: Option<&str>) -> Result<(), DockerError> {
    match args.map(str::trim) {
        None | Some("" | "-ef" | "-e -f" | "ef") => Ok(()),
        Some(other) => Err(DockerError(
            StatusCode::BAD_REQUEST,
            format!(
                "ps_args {other:?} are not supported by Corral's Docker API: it lists ps -ef's \
                 columns (UID PID PPID C STIME TTY TIME CMD) only"
            ),
        )),
    }
}

/// `{"Titles": […], "Processes": [[…], …]}`.
pub(super) fn shape(procs: &[wire::ContainerProcess], now: i64) -> Value {
    json!({
        "Titles": TITLES,
        "Processes": procs.iter().map(|p| ps_row(p, now)).collect::<Vec<_>>(),
    })
}

pub(super) async fn container_top(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<TopQuery>,
) -> Result<Json<Value>, DockerError> {
    check_ps_args(q.ps_args.as_deref())?;
    let name = super::resolve(&state, &id).await?;
    let procs = super::manager(&state)?
        .top(&name)
        .await
        .map_err(|e| match e {
            RuntimeError::Conflict { name, .. } => DockerError(
                StatusCode::CONFLICT,
                format!("Container {name} is not running"),
            ),
            e => e.into(),
        })?;
    let now = crate::metering::sampler::wall_ms() / 1000;
    Ok(Json(shape(&procs, now)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_ps_ef_is_answered() {
        assert!(check_ps_args(None).is_ok());
        assert!(check_ps_args(Some("")).is_ok());
        assert!(check_ps_args(Some("-ef")).is_ok());
        let e = check_ps_args(Some("aux")).unwrap_err();
        assert_eq!(e.0, StatusCode::BAD_REQUEST);
        assert!(e.1.contains("\"aux\""), "{}", e.1);
    }

    #[test]
    fn the_shape_has_dockers_titles_and_one_row_per_process() {
        let p = wire::ContainerProcess {
            pid: 4242,
            ppid: 4200,
            uid: 0,
            user: "root".into(),
            cpu_percent: 1,
            started_at: 1_796_407_740,
            tty: Some("pts/0".into()),
            cpu_seconds: 61.0,
            command: "sleep 300".into(),
        };
        let v = shape(&[p], 1_796_407_800);
        assert_eq!(
            v["Titles"],
            json!(["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"])
        );
        assert_eq!(
            v["Processes"],
            json!([[
                "root",
                "4242",
                "4200",
                "1",
                "18:09",
                "pts/0",
                "00:01:01",
                "sleep 300"
            ]])
        );
    }
}
