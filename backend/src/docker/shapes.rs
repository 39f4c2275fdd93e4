//! Corral's containers, images and host in the Docker Engine API's JSON shapes (the fields the
//! docker CLI reads; names and types as in moby's `api/types`).

use serde_json::{Value, json};

/// Docker's id: 64 hex digits. Corral's are 32: repeated, so the CLI's 12-digit column still
/// shows the id's own first 12.
pub fn docker_id(id: &str) -> String {
    if id.len() >= 64 {
        id.to_owned()
    } else {
        let mut s = id.to_owned();
        while s.len() < 64 {
            s.push_str(id);
        }
        s.truncate(64);
        s
    }
}

fn rfc3339(secs: Option<i64>) -> String {
    match secs {
        Some(s) if s > 0 => crate::metering::calendar::format_time(s),
        _ => "0001-01-01T00:00:00Z".into(),
    }
}

/// `docker version`'s server part.
pub fn version(host: &wire::HostInfo) -> Value {
    json!({
        "Platform": {"Name": "Corral"},
        "Components": [{
            "Name": "Engine",
            "Version": crate::VERSION,
            "Details": {"ApiVersion": super::API_VERSION, "MinAPIVersion": super::MIN_API_VERSION,
                        "Os": "linux", "Arch": std::env::consts::ARCH, "KernelVersion": host.kernel},
        }],
        "Version": crate::VERSION,
        "ApiVersion": super::API_VERSION,
        "MinAPIVersion": super::MIN_API_VERSION,
        "GitCommit": "corral",
        "GoVersion": "none (Rust)",
        "Os": "linux",
        "Arch": go_arch(),
        "KernelVersion": host.kernel,
        "BuildTime": "",
    })
}

fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// `docker info`: counts, the cgroup version and driver as they are, the state directory.
pub fn info(
    host: &wire::HostInfo,
    containers: &[wire::Container],
    images: usize,
    state_dir: &std::path::Path,
) -> Value {
    let count = |s: &str| containers.iter().filter(|c| c.status == s).count();
    let hostname = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_default();
    let os = std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("PRETTY_NAME="))
                .map(|v| v.trim_matches('"').to_owned())
        })
        .unwrap_or_else(|| "Linux".into());
    let mut v = json!({
        "ID": "corral",
        "Containers": containers.len(),
        "ContainersRunning": count("running"),
        "ContainersPaused": count("paused"),
        "ContainersStopped": containers.len() - count("running") - count("paused"),
        "Images": images,
        "Driver": "overlay",
        "DriverStatus": [["Backing", "overlayfs, one read-only layer per image layer"]],
        "Plugins": {"Volume": [], "Network": ["bridge", "host", "none"], "Log": ["corral"]},
        "MemoryLimit": true,
        "SwapLimit": true,
        "CpuCfsPeriod": true,
        "CpuCfsQuota": true,
        "CPUShares": true,
        "CPUSet": true,
        "PidsLimit": true,
        "OomKillDisable": false,
        "IPv4Forwarding": true,
    });
    let more = json!({
        "Debug": false,
        "NFd": 0,
        "NGoroutines": 0,
        "SystemTime": crate::metering::calendar::format_time(crate::metering::sampler::wall_ms() / 1000),
        "LoggingDriver": "corral",
        "CgroupDriver": "cgroupfs",
        "CgroupVersion": if host.cgroup_mode == "v2" { "2" } else { "1" },
        "NEventsListener": 0,
        "KernelVersion": host.kernel,
        "OperatingSystem": os,
        "OSType": "linux",
        "Architecture": std::env::consts::ARCH,
        "NCPU": host.cpus,
        "MemTotal": host.memory_bytes,
        "IndexServerAddress": "",
        "RegistryConfig": {"IndexConfigs": {}, "InsecureRegistryCIDRs": [], "Mirrors": []},
        "DockerRootDir": state_dir.display().to_string(),
        "Name": hostname,
        "Labels": [format!("corral.cgroup-mode={}", host.cgroup_mode)],
        "ExperimentalBuild": false,
        "ServerVersion": crate::VERSION,
        "Runtimes": {"corral": {"path": "corral"}},
        "DefaultRuntime": "corral",
        "LiveRestoreEnabled": true,
        "Isolation": "",
        "InitBinary": "",
        "SecurityOptions": ["name=seccomp,profile=builtin", "name=no-new-privileges", "name=cgroupns"],
        "Warnings": [],
    });
    if let (Value::Object(a), Value::Object(b)) = (&mut v, more) {
        a.extend(b);
    }
    v
}

fn state(c: &wire::Container) -> &str {
    match c.status.as_str() {
        "creating" => "created",
        s => s,
    }
}

/// "Up 5 minutes", "Exited (3) 2 hours ago", "Created", "Up 1 second (Paused)".
pub fn status_line(c: &wire::Container, now: i64) -> String {
    let ago = |t: Option<i64>| human((now - t.unwrap_or(now)).max(0));
    match c.status.as_str() {
        "running" => format!("Up {}", ago(c.started_at)),
        "paused" => format!("Up {} (Paused)", ago(c.started_at)),
        "exited" => format!(
            "Exited ({}) {} ago",
            c.exit_code.unwrap_or(0),
            ago(c.finished_at)
        ),
        _ => "Created".into(),
    }
}

/// Docker's `HumanDuration`.
fn human(secs: i64) -> String {
    match secs {
        s if s < 1 => "Less than a second".into(),
        1 => "1 second".into(),
        s if s < 60 => format!("{s} seconds"),
        s if s < 120 => "About a minute".into(),
        s if s < 3600 => format!("{} minutes", s / 60),
        s if s < 7200 => "About an hour".into(),
        s if s < 48 * 3600 => format!("{} hours", s / 3600),
        s if s < 7 * 86400 * 2 => format!("{} days", s / 86400),
        s if s < 30 * 86400 * 3 => format!("{} weeks", s / (7 * 86400)),
        s if s < 365 * 86400 * 2 => format!("{} months", s / (30 * 86400)),
        s => format!("{} years", s / (365 * 86400)),
    }
}

fn ports(c: &wire::Container) -> Vec<Value> {
    c.network
        .as_ref()
        .map(|n| {
            n.ports
                .iter()
                .map(|p| {
                    json!({"IP": p.host_ip, "PrivatePort": p.container_port,
                           "PublicPort": p.host_port, "Type": p.proto})
                })
                .collect()
        })
        .unwrap_or_default()
}

fn labels(c: &wire::Container) -> Value {
    let mut l = serde_json::Map::new();
    for (k, v) in &c.spec.labels {
        l.insert(k.clone(), json!(v));
    }
    l.insert("corral.team".into(), json!(c.team));
    Value::Object(l)
}

fn network_mode(c: &wire::Container) -> String {
    c.network
        .as_ref()
        .map(|n| n.mode.clone())
        .unwrap_or_else(|| "none".into())
}

/// One row of `GET /containers/json`.
pub fn summary(c: &wire::Container, now: i64) -> Value {
    json!({
        "Id": docker_id(&c.id),
        "Names": [format!("/{}", c.name)],
        "Image": c.image,
        "ImageID": "",
        "Command": c.command.join(" "),
        "Created": c.created_at,
        "Ports": ports(c),
        "Labels": labels(c),
        "State": state(c),
        "Status": status_line(c, now),
        "HostConfig": {"NetworkMode": network_mode(c)},
        "NetworkSettings": {"Networks": {}},
        "Mounts": [],
    })
}

/// `GET /containers/{id}/json`.
pub fn inspect(c: &wire::Container) -> Value {
    let l = &c.limits;
    let (path, args) = match c.command.split_first() {
        Some((p, a)) => (p.clone(), a.to_vec()),
        None => (String::new(), Vec::new()),
    };
    let restart = c.spec.restart.clone().unwrap_or_else(|| "no".into());
    let (restart_name, restart_max) = match restart.split_once(':') {
        Some((n, m)) => (n.to_owned(), m.parse::<u64>().unwrap_or(0)),
        None => (restart.clone(), 0),
    };
    let none = wire::ContainerNetwork {
        mode: "none".into(),
        bridge: None,
        ip_address: None,
        ip_prefix_len: None,
        gateway: None,
        ipv6_address: None,
        ipv6_prefix_len: None,
        ipv6_gateway: None,
        ports: Vec::new(),
    };
    let net = c.network.clone().unwrap_or(none);
    json!({
        "Id": docker_id(&c.id),
        "Created": rfc3339(Some(c.created_at)),
        "Path": path,
        "Args": args,
        "State": {
            "Status": state(c),
            "Running": c.status == "running" || c.status == "paused",
            "Paused": c.status == "paused",
            "Restarting": false,
            "OOMKilled": false,
            "Dead": false,
            "Pid": c.pid.unwrap_or(0),
            "ExitCode": c.exit_code.unwrap_or(0),
            "Error": "",
            "StartedAt": rfc3339(c.started_at),
            "FinishedAt": rfc3339(c.finished_at),
        },
        "Image": c.image,
        "Name": format!("/{}", c.name),
        "RestartCount": c.restart_count,
        "Driver": "overlay",
        "Platform": "linux",
        "HostConfig": {
            "NetworkMode": network_mode(c),
            "RestartPolicy": {"Name": restart_name, "MaximumRetryCount": restart_max},
            "AutoRemove": c.spec.auto_remove,
            "Memory": l.memory_max.unwrap_or(0),
            "MemoryReservation": l.memory_low.unwrap_or(0),
            "MemorySwap": match (l.memory_max, l.swap_max) {
                (Some(m), Some(s)) => (m + s) as i64,
                _ => 0,
            },
            "NanoCpus": l.cpus.map_or(0, |c| (c * 1e9) as i64),
            "CpuShares": l.cpu_weight.map_or(0, |w| w * 1024 / 100),
            "CpusetCpus": l.cpuset_cpus.clone().unwrap_or_default(),
            "CpusetMems": l.cpuset_mems.clone().unwrap_or_default(),
            "PidsLimit": l.pids_max.map_or(0, |p| p as i64),
            "BlkioWeight": 0,
            "Privileged": false,
            "ReadonlyRootfs": false,
            "CgroupnsMode": "private",
        },
        "Config": {
            "Hostname": c.spec.hostname.clone().unwrap_or_else(|| c.name.clone()),
            "User": c.spec.user.clone().unwrap_or_default(),
            "Tty": c.spec.tty,
            "OpenStdin": c.spec.open_stdin,
            "StdinOnce": false,
            "AttachStdin": false,
            "Env": c.spec.env.iter().map(|e| match e.split_once('=') {
                Some((k, _)) => format!("{k}=…"),
                None => e.clone(),
            }).collect::<Vec<_>>(),
            "Cmd": c.command,
            "Image": c.image,
            "WorkingDir": c.spec.workdir.clone().unwrap_or_default(),
            "Labels": labels(c),
            "StopTimeout": c.spec.stop_timeout.unwrap_or(10),
        },
        "NetworkSettings": {
            "IPAddress": net.ip_address.clone().unwrap_or_default(),
            "IPPrefixLen": net.ip_prefix_len.unwrap_or(0),
            "Gateway": net.gateway.clone().unwrap_or_default(),
            "Ports": Value::Object(net.ports.iter().map(|p| (
                format!("{}/{}", p.container_port, p.proto),
                json!([{"HostIp": p.host_ip, "HostPort": p.host_port.to_string()}]),
            )).collect()),
            "Networks": {},
        },
        "Mounts": c.spec.mounts.iter().map(|m| json!({
            "Type": if m.kind == "tmpfs" { "tmpfs" } else { "bind" },
            "Source": m.source.clone().unwrap_or_default(),
            "Destination": m.destination,
            "RW": !m.readonly,
        })).collect::<Vec<_>>(),
    })
}

/// One row of `GET /images/json`.
pub fn image_summary(i: &wire::Image) -> Value {
    json!({
        "Id": i.id,
        "ParentId": "",
        "RepoTags": i.tags,
        "RepoDigests": [],
        "Created": i.created_at,
        "Size": i.size,
        "SharedSize": -1,
        "VirtualSize": i.size,
        "Labels": {},
        "Containers": -1,
    })
}

/// `GET /images/{name}/json`.
pub fn image_inspect(i: &wire::Image) -> Value {
    json!({
        "Id": i.id,
        "RepoTags": i.tags,
        "RepoDigests": [],
        "Created": rfc3339(Some(i.created_at)),
        "Size": i.size,
        "VirtualSize": i.size,
        "Os": "linux",
        "Architecture": go_arch(),
        "RootFS": {"Type": "layers", "Layers": i.layers},
        "Config": {},
    })
}

/// `POST /containers/{id}/update` (`docker update`) as Corral's limits patch: `NanoCpus` (or
/// `CpuQuota`/`CpuPeriod`), `Memory`, `MemorySwap`, `MemoryReservation`, `PidsLimit`,
/// `CpusetCpus`, `CpusetMems`, `CpuShares`, `BlkioWeight`; 0 leaves a knob as it is (Docker's
/// "unset"), and a knob Corral does not have is refused by name.
pub fn update_patch(v: &Value) -> Result<wire::LimitsPatch, String> {
    use wire::Setting;
    let Value::Object(o) = v else {
        return Err("the body must be a JSON object".into());
    };
    let num = |k: &str| o.get(k).and_then(Value::as_i64).filter(|n| *n != 0);
    let text = |k: &str| o.get(k).and_then(Value::as_str).filter(|s| !s.is_empty());
    let mut p = wire::LimitsPatch::default();
    if let Some(n) = num("NanoCpus") {
        p.cpus = Setting::Set(n as f64 / 1e9);
    } else if let (Some(q), Some(per)) = (num("CpuQuota"), num("CpuPeriod")) {
        p.cpus = if q < 0 {
            Setting::Clear
        } else {
            Setting::Set(q as f64 / per as f64)
        };
    }
    if let Some(m) = num("Memory") {
        p.memory_max = if m < 0 {
            Setting::Clear
        } else {
            Setting::Set(m as u64)
        };
    }
    if let Some(s) = num("MemorySwap") {
        p.swap_max = match (s, num("Memory")) {
            (-1, _) => Setting::Clear,
            (s, Some(m)) if s >= m => Setting::Set((s - m) as u64),
            (s, _) => {
                return Err(format!(
                    "MemorySwap {s}: with Corral give Memory too (swap = MemorySwap - Memory)"
                ));
            }
        };
    }
    if let Some(r) = num("MemoryReservation") {
        p.memory_low = Setting::Set(r as u64);
    }
    if let Some(n) = num("PidsLimit") {
        p.pids_max = if n < 0 {
            Setting::Clear
        } else {
            Setting::Set(n as u64)
        };
    }
    if let Some(c) = text("CpusetCpus") {
        p.cpuset_cpus = Setting::Set(c.to_owned());
    }
    if let Some(c) = text("CpusetMems") {
        p.cpuset_mems = Setting::Set(c.to_owned());
    }
    if let Some(s) = num("CpuShares") {
        p.cpu_weight = Setting::Set(((s as u64) * 100 / 1024).clamp(1, 10_000));
    }
    if let Some(w) = num("BlkioWeight") {
        p.io_weight = Setting::Set(((w as u64) * 10).clamp(1, 10_000));
    }
    for k in [
        "KernelMemory",
        "CpuRealtimePeriod",
        "CpuRealtimeRuntime",
        "MemorySwappiness",
        "OomKillDisable",
    ] {
        if o.get(k).is_some_and(|v| {
            !v.is_null() && v != &json!(0) && v != &json!(false) && v != &json!(-1)
        }) {
            return Err(format!("{k} is not supported by Corral"));
        }
    }
    Ok(p)
}

/// `filters={"name":["web"],"status":["exited"],"label":["k=v"],"id":["…"]}` of `docker ps`.
#[derive(Debug, Default)]
pub struct Filters {
    name: Vec<String>,
    status: Vec<String>,
    label: Vec<String>,
    id: Vec<String>,
}

/// The lists of a `filters` query parameter (`{"name":["web"]}`, or `{"name":{"web":true}}` from
/// older clients), key by key; `None` or `""` is no filter. Shared by `docker ps` and `docker
/// events`.
pub fn filter_lists(raw: Option<&str>) -> Result<Vec<(String, Vec<String>)>, String> {
    let Some(raw) = raw.filter(|r| !r.is_empty()) else {
        return Ok(Vec::new());
    };
    let Ok(Value::Object(map)) = serde_json::from_str::<Value>(raw) else {
        return Err(format!("invalid filters {raw:?}: a JSON object expected"));
    };
    map.into_iter()
        .map(|(k, vals)| {
            let list = match vals {
                Value::Array(a) => a
                    .into_iter()
                    .filter_map(|x| x.as_str().map(str::to_owned))
                    .collect(),
                Value::Object(o) => o.into_iter().map(|(k, _)| k).collect(),
                _ => return Err(format!("filter {k}: expected a list")),
            };
            Ok((k, list))
        })
        .collect()
}

impl Filters {
    pub fn parse(raw: Option<&str>) -> Result<Self, String> {
        let mut f = Self::default();
        for (k, list) in filter_lists(raw)? {
            match k.as_str() {
                "name" => f.name = list,
                "status" => f.status = list,
                "label" => f.label = list,
                "id" => f.id = list,
                other => {
                    return Err(format!(
                        "invalid filter '{other}': Corral's docker API filters by name, status, label and id"
                    ));
                }
            }
        }
        Ok(f)
    }

    /// A status filter may ask for stopped containers without `all`.
    pub fn wants_stopped(&self) -> bool {
        self.status.iter().any(|s| s != "running")
    }

    pub fn matches(&self, c: &wire::Container) -> bool {
        let any = |list: &[String], f: &dyn Fn(&str) -> bool| {
            list.is_empty() || list.iter().any(|x| f(x))
        };
        any(&self.name, &|n| c.name.contains(n.trim_start_matches('/')))
            && any(&self.status, &|s| state(c) == s)
            && any(&self.id, &|i| {
                c.id.starts_with(i) || docker_id(&c.id).starts_with(i)
            })
            && self.label.iter().all(|l| {
                let labels = labels(c);
                match l.split_once('=') {
                    Some((k, v)) => labels.get(k).and_then(Value::as_str) == Some(v),
                    None => labels.get(l.as_str()).is_some(),
                }
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_docker() {
        assert_eq!(human(0), "Less than a second");
        assert_eq!(human(5), "5 seconds");
        assert_eq!(human(90), "About a minute");
        assert_eq!(human(600), "10 minutes");
        assert_eq!(human(5000), "About an hour");
        assert_eq!(human(10 * 3600), "10 hours");
    }

    #[test]
    fn ids_are_64_hex_digits_keeping_ours_first() {
        let id = "0123456789abcdef0123456789abcdef";
        let d = docker_id(id);
        assert_eq!(d.len(), 64);
        assert!(d.starts_with(id));
    }

    #[test]
    fn filters_take_both_spellings_and_refuse_unknown_ones() {
        let f = Filters::parse(Some(r#"{"name":["web"],"status":{"exited":true}}"#)).unwrap();
        assert_eq!(f.name, vec!["web"]);
        assert_eq!(f.status, vec!["exited"]);
        assert!(f.wants_stopped());
        assert!(Filters::parse(Some(r#"{"ancestor":["x"]}"#)).is_err());
        assert!(Filters::parse(None).unwrap().name.is_empty());
    }
}
