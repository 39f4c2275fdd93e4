//! `POST /containers/create`: a Docker `ContainerConfig` + `HostConfig` read into Corral's
//! [`wire::CreateContainer`], and created through Corral's own create (team placement, audit,
//! the same validation). What Corral cannot do is refused by its Docker field name, never
//! dropped silently.
//!
//! Mapping, where it is not one to one:
//! - `Labels["corral.team"]` places the container in that team (the default team otherwise).
//! - `PortBindings` with no `HostIp` publish on 127.0.0.1 (Corral's default; Docker's is
//!   0.0.0.0 — give `-p 0.0.0.0:8080:80` for that). A random host port is refused.
//! - `Binds` take host paths (`/src:/dst[:ro]`); named volumes are refused.
//! - `RestartPolicy` `unless-stopped` runs as `always`, with a warning.
//! - `Entrypoint` replaces an image without one; overriding an image's own is refused.

use axum::{
    Json,
    extract::{Query, State},
    http::StatusCode,
};
use serde_json::{Map, Value, json};

use super::{DockerError, manager, root, shapes};
use crate::http::AppState;

/// The label naming a container's team.
pub const TEAM_LABEL: &str = "corral.team";

#[derive(Debug, serde::Deserialize)]
pub struct CreateQuery {
    name: Option<String>,
    #[serde(flatten)]
    _rest: std::collections::HashMap<String, String>,
}

pub async fn container_create(
    State(state): State<AppState>,
    Query(q): Query<CreateQuery>,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<Value>), DockerError> {
    let v: Value = serde_json::from_slice(&body)
        .map_err(|e| DockerError(StatusCode::BAD_REQUEST, format!("invalid JSON: {e}")))?;
    let name = q.name.as_deref().map(|n| n.trim_start_matches('/'));
    let image = v.get("Image").and_then(Value::as_str).unwrap_or_default();
    if image.is_empty() {
        return Err(DockerError(
            StatusCode::BAD_REQUEST,
            "Image: an image is required (Corral runs images it has: docker images)".into(),
        ));
    }
    // The CLI pulls on a 404 in Docker's words; anything else about the image is a 400.
    let resolved = {
        let images = manager(&state)?.images().clone();
        let image = image.to_owned();
        tokio::task::spawn_blocking(move || images.resolve(&image))
            .await
            .map_err(|e| DockerError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
    };
    let image_entrypoint = match resolved {
        Ok(r) => r.entrypoint,
        Err(crate::image::ImageError::NotFound(_)) => {
            return Err(DockerError(
                StatusCode::NOT_FOUND,
                format!("No such image: {}", with_tag(image)),
            ));
        }
        Err(e) => return Err(DockerError(StatusCode::BAD_REQUEST, e.to_string())),
    };
    let (req, warnings) = request(name, &v, &image_entrypoint)
        .map_err(|e| DockerError(StatusCode::BAD_REQUEST, e))?;
    let c = crate::http::create_container(&state, &root(), req).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"Id": shapes::docker_id(&c.id), "Warnings": warnings})),
    ))
}

/// `busybox` → `busybox:latest`, as Docker names a missing image.
fn with_tag(image: &str) -> String {
    let last = image.rsplit('/').next().unwrap_or(image);
    if last.contains(':') || image.contains('@') {
        image.to_owned()
    } else {
        format!("{image}:latest")
    }
}

/// A string list that Docker may also send as one string or `null`.
fn strings(v: Option<&Value>, field: &str) -> Result<Vec<String>, String> {
    match v {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(vec![s.clone()]),
        Some(Value::Array(a)) => a
            .iter()
            .map(|x| {
                x.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| format!("{field}: every entry must be a string"))
            })
            .collect(),
        Some(_) => Err(format!("{field}: must be a list of strings")),
    }
}

fn text(o: &Map<String, Value>, k: &str) -> Option<String> {
    o.get(k)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// Host settings Corral has no counterpart for: refused when set to anything but their default.
const REFUSED_HOST: &[&str] = &[
    "Privileged",
    "CapAdd",
    "CapDrop",
    "Devices",
    "DeviceRequests",
    "DeviceCgroupRules",
    "SecurityOpt",
    "PidMode",
    "IpcMode",
    "UTSMode",
    "CgroupnsMode",
    "Cgroup",
    "CgroupParent",
    "VolumesFrom",
    "Links",
    "Dns",
    "DnsOptions",
    "DnsSearch",
    "ExtraHosts",
    "GroupAdd",
    "Sysctls",
    "Runtime",
    "Isolation",
    "VolumeDriver",
    "PublishAllPorts",
    "ReadonlyRootfs",
    "Ulimits",
    "OomScoreAdj",
    "ShmSize",
    "StorageOpt",
    "CpuCount",
    "CpuPercent",
];

/// A value Docker sends for "not set".
fn unset(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty() || s == "private" || s == "default" || s == "host-private",
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
    }
}

/// The Docker create body as Corral's request, and Docker's `Warnings`.
pub fn request(
    name: Option<&str>,
    v: &Value,
    image_entrypoint: &[String],
) -> Result<(wire::CreateContainer, Vec<String>), String> {
    let Value::Object(o) = v else {
        return Err("the body must be a JSON object".into());
    };
    let empty = Map::new();
    let host = match o.get("HostConfig") {
        None | Some(Value::Null) => &empty,
        Some(Value::Object(h)) => h,
        Some(_) => return Err("HostConfig: must be an object".into()),
    };
    for k in REFUSED_HOST {
        if host.get(*k).is_some_and(|v| !unset(v)) {
            return Err(format!("HostConfig.{k} is not supported by Corral"));
        }
    }
    let mut warnings = Vec::new();
    let mut req = wire::CreateContainer {
        name: name.map(str::to_owned),
        image: text(o, "Image"),
        env: strings(o.get("Env"), "Env")?,
        workdir: text(o, "WorkingDir"),
        hostname: text(o, "Hostname"),
        user: text(o, "User"),
        tty: o.get("Tty").and_then(Value::as_bool).unwrap_or(false),
        open_stdin: o.get("OpenStdin").and_then(Value::as_bool).unwrap_or(false),
        ..Default::default()
    };

    // Entrypoint + Cmd; Corral puts an image's entrypoint in front of a given command itself.
    let cmd = strings(o.get("Cmd"), "Cmd")?;
    let entrypoint = strings(o.get("Entrypoint"), "Entrypoint")?;
    let entrypoint: Vec<String> = entrypoint.into_iter().filter(|s| !s.is_empty()).collect();
    if entrypoint.is_empty() || entrypoint == image_entrypoint {
        req.command = cmd;
    } else if image_entrypoint.is_empty() {
        req.command = entrypoint.into_iter().chain(cmd).collect();
    } else {
        return Err(format!(
            "Entrypoint: overriding the image's entrypoint ({}) is not supported by Corral",
            image_entrypoint.join(" ")
        ));
    }

    if let Some(Value::Object(labels)) = o.get("Labels") {
        for (k, v) in labels {
            let v = v
                .as_str()
                .ok_or_else(|| format!("Labels.{k}: must be a string"))?;
            req.labels.insert(k.clone(), v.to_owned());
        }
    }
    req.team = req.labels.get(TEAM_LABEL).cloned();
    if let Some(t) = o.get("StopTimeout").and_then(Value::as_i64) {
        req.stop_timeout = Some(
            u64::try_from(t)
                .ok()
                .filter(|t| *t <= 3600)
                .ok_or("StopTimeout: 0 to 3600 seconds")?,
        );
    }
    if let Some(sig) = text(o, "StopSignal")
        && !matches!(sig.as_str(), "SIGTERM" | "TERM" | "15")
    {
        return Err("StopSignal: Corral stops with SIGTERM only".into());
    }

    // Limits: the same reading as `docker update`.
    req.limits =
        shapes::update_patch(&Value::Object(host.clone()))?.merge(&wire::Limits::default());

    // Binds and Mounts.
    for (i, b) in strings(host.get("Binds"), "HostConfig.Binds")?
        .iter()
        .enumerate()
    {
        req.mounts
            .push(bind(b).map_err(|e| format!("HostConfig.Binds[{i}]: {e}"))?);
    }
    if let Some(Value::Array(ms)) = host.get("Mounts") {
        for (i, m) in ms.iter().enumerate() {
            req.mounts
                .push(mount(m).map_err(|e| format!("HostConfig.Mounts[{i}]: {e}"))?);
        }
    }
    if let Some(Value::Object(t)) = host.get("Tmpfs") {
        for (dst, opts) in t {
            if opts.as_str().is_some_and(|s| !s.is_empty()) {
                return Err(format!(
                    "HostConfig.Tmpfs[{dst}]: tmpfs options are not supported by Corral"
                ));
            }
            req.mounts.push(wire::Mount {
                kind: "tmpfs".into(),
                source: None,
                destination: dst.clone(),
                readonly: false,
            });
        }
    }

    // Network and ports.
    req.network = match host.get("NetworkMode").and_then(Value::as_str) {
        None | Some("" | "default") => None,
        Some(m @ ("bridge" | "host" | "none")) => Some(m.to_owned()),
        Some(other) => {
            return Err(format!(
                "HostConfig.NetworkMode {other:?}: Corral has bridge, host and none"
            ));
        }
    };
    if let Some(Value::Object(pb)) = host.get("PortBindings") {
        for (port, binds) in pb {
            let binds = match binds {
                Value::Null => continue,
                Value::Array(a) => a,
                _ => return Err(format!("HostConfig.PortBindings[{port}]: must be a list")),
            };
            for b in binds {
                let ip = b.get("HostIp").and_then(Value::as_str).unwrap_or_default();
                let hp = b
                    .get("HostPort")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                if hp.is_empty() {
                    return Err(format!(
                        "HostConfig.PortBindings[{port}]: a random host port is not supported by \
                         Corral; give HOST:CONTAINER (-p 8080:80)"
                    ));
                }
                req.ports.push(if ip.is_empty() {
                    format!("{hp}:{port}")
                } else if ip.contains(':') {
                    format!("[{ip}]:{hp}:{port}")
                } else {
                    format!("{ip}:{hp}:{port}")
                });
            }
        }
    }
    if !req.ports.is_empty() && req.network.is_none() {
        req.network = Some("bridge".into());
    }

    // Restart policy and --rm.
    if let Some(Value::Object(rp)) = host.get("RestartPolicy") {
        let retries = rp
            .get("MaximumRetryCount")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        req.restart = match rp.get("Name").and_then(Value::as_str).unwrap_or_default() {
            "" | "no" => None,
            "always" => Some("always".into()),
            "unless-stopped" => {
                warnings.push(
                    "RestartPolicy unless-stopped runs as always under Corral (a stopped \
                     container stays stopped either way)"
                        .to_owned(),
                );
                Some("always".into())
            }
            "on-failure" if retries > 0 => Some(format!("on-failure:{retries}")),
            "on-failure" => Some("on-failure".into()),
            other => {
                return Err(format!(
                    "HostConfig.RestartPolicy.Name {other:?}: no, always, unless-stopped or \
                     on-failure"
                ));
            }
        };
    }
    req.auto_remove = host
        .get("AutoRemove")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    Ok((req, warnings))
}

/// `/host:/ctr[:ro|rw]`.
fn bind(b: &str) -> Result<wire::Mount, String> {
    let parts: Vec<&str> = b.split(':').collect();
    let (src, dst, opts) = match parts.as_slice() {
        [s, d] => (*s, *d, ""),
        [s, d, o] => (*s, *d, *o),
        _ => return Err(format!("{b:?} must be /host/path:/container/path[:ro]")),
    };
    if !src.starts_with('/') {
        return Err(format!(
            "{src:?}: named volumes are not supported by Corral; bind a host path"
        ));
    }
    let mut readonly = false;
    for o in opts.split(',').filter(|o| !o.is_empty()) {
        match o {
            "ro" => readonly = true,
            "rw" | "z" | "Z" | "rprivate" | "private" => {}
            other => return Err(format!("option {other:?}: ro or rw")),
        }
    }
    Ok(wire::Mount {
        kind: "bind".into(),
        source: Some(src.to_owned()),
        destination: dst.to_owned(),
        readonly,
    })
}

/// One `HostConfig.Mounts` entry: bind or tmpfs.
fn mount(m: &Value) -> Result<wire::Mount, String> {
    let s = |k: &str| m.get(k).and_then(Value::as_str).unwrap_or_default();
    let readonly = m.get("ReadOnly").and_then(Value::as_bool).unwrap_or(false);
    match s("Type") {
        "bind" => Ok(wire::Mount {
            kind: "bind".into(),
            source: Some(s("Source").to_owned()),
            destination: s("Target").to_owned(),
            readonly,
        }),
        "tmpfs" => Ok(wire::Mount {
            kind: "tmpfs".into(),
            source: None,
            destination: s("Target").to_owned(),
            readonly,
        }),
        other => Err(format!(
            "type {other:?} is not supported by Corral: bind or tmpfs"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_docker_run_body_reads_into_corrals_request() {
        let body = json!({
            "Image": "busybox", "Cmd": ["sh", "-c", "echo hi"], "Env": ["A=1"],
            "Labels": {"corral.team": "blue", "x": "y"}, "Tty": true, "OpenStdin": true,
            "HostConfig": {
                "NanoCpus": 500_000_000, "Memory": 67_108_864, "PidsLimit": 50,
                "CpusetCpus": "0", "Binds": ["/srv/data:/data:ro"],
                "PortBindings": {"80/tcp": [{"HostIp": "", "HostPort": "8080"}]},
                "RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": 3},
                "NetworkMode": "default", "Privileged": false, "CapAdd": null,
            }
        });
        let (r, w) = request(Some("web"), &body, &[]).unwrap();
        assert!(w.is_empty());
        assert_eq!(r.name.as_deref(), Some("web"));
        assert_eq!(r.team.as_deref(), Some("blue"));
        assert_eq!(r.command, ["sh", "-c", "echo hi"]);
        assert_eq!(r.limits.cpus, Some(0.5));
        assert_eq!(r.limits.memory_max, Some(64 << 20));
        assert_eq!(r.limits.pids_max, Some(50));
        assert_eq!(r.limits.cpuset_cpus.as_deref(), Some("0"));
        assert_eq!(r.mounts[0].source.as_deref(), Some("/srv/data"));
        assert!(r.mounts[0].readonly);
        assert_eq!(r.ports, ["8080:80/tcp"]);
        assert_eq!(r.network.as_deref(), Some("bridge"));
        assert_eq!(r.restart.as_deref(), Some("on-failure:3"));
        assert!(r.tty && r.open_stdin);
    }

    #[test]
    fn what_corral_cannot_do_is_refused_by_name() {
        for (host, field) in [
            (json!({"Privileged": true}), "HostConfig.Privileged"),
            (json!({"CapAdd": ["NET_ADMIN"]}), "HostConfig.CapAdd"),
            (json!({"Binds": ["vol:/data"]}), "named volumes"),
            (json!({"NetworkMode": "container:x"}), "NetworkMode"),
            (
                json!({"PortBindings": {"80/tcp": [{"HostPort": ""}]}}),
                "random host port",
            ),
            (json!({"KernelMemory": 1}), "KernelMemory"),
        ] {
            let e = request(None, &json!({"Image": "x", "HostConfig": host}), &[]).unwrap_err();
            assert!(e.contains(field), "{e}");
        }
        let e = request(
            None,
            &json!({"Image": "x", "Entrypoint": ["b"]}),
            &["a".into()],
        )
        .unwrap_err();
        assert!(e.contains("Entrypoint"), "{e}");
    }

    #[test]
    fn names_of_missing_images_carry_a_tag() {
        assert_eq!(with_tag("busybox"), "busybox:latest");
        assert_eq!(with_tag("localhost:5000/x"), "localhost:5000/x:latest");
        assert_eq!(with_tag("x:1"), "x:1");
    }
}
