//! Validation of a create request: names, paths, mounts, limits, environment, privileges —
//! each refusal names its field and what is allowed.

use super::*;

/// Parses `TERM`, `SIGTERM` or `15`.
pub fn parse_signal(s: &str) -> Result<Signal, RuntimeError> {
    let bad = || RuntimeError::invalid("signal", format!("unknown signal {s:?}"));
    if let Ok(n) = s.parse::<i32>() {
        return Signal::try_from(n).map_err(|_| bad());
    }
    let up = s.to_ascii_uppercase();
    let full = if up.starts_with("SIG") {
        up
    } else {
        format!("SIG{up}")
    };
    full.parse::<Signal>().map_err(|_| bad())
}

/// What a request asks of the user namespace.
#[derive(Debug, Clone, Copy)]
pub(super) enum UsernsRequest {
    Auto,
    Fixed(IdRange),
}

/// The parts of a validated request the monitor needs.
pub(super) struct Validated {
    pub(super) userns: Option<UsernsRequest>,
    pub(super) lower: Vec<PathBuf>,
    pub(super) args: Vec<String>,
    pub(super) env: Vec<String>,
    pub(super) cwd: String,
    pub(super) uid: u32,
    pub(super) gid: u32,
    pub(super) mounts: Vec<MountConfig>,
    pub(super) net_ns: bool,
    pub(super) restart: RestartPolicy,
    /// The lower layer is a host directory (`rootfs`), not an imported image.
    pub(super) host_rootfs: bool,
}

impl Validated {
    /// What of this (validated, normalized) spec reaches into the host: `(field, reason)`.
    /// Only admins may create such containers.
    pub(super) fn privileged(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if self.host_rootfs {
            out.push((
                "rootfs".to_owned(),
                "a host directory as root filesystem needs admin: use an image".to_owned(),
            ));
        }
        for (i, m) in self.mounts.iter().enumerate() {
            if let MountConfig::Bind { .. } = m {
                out.push((
                    format!("mounts[{i}]"),
                    "bind mounts of host paths need admin".to_owned(),
                ));
            }
        }
        if !self.net_ns {
            out.push((
                "network".to_owned(),
                "the host network needs admin".to_owned(),
            ));
        }
        if let Some(UsernsRequest::Fixed(_)) = self.userns {
            out.push((
                "userns".to_owned(),
                "choosing the host range needs admin: use auto".to_owned(),
            ));
        }
        out
    }
}

/// Names of containers and teams: 1-64 of `[A-Za-z0-9_.-]`, starting alphanumeric.
pub fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
}

pub(in crate::runtime) fn check_env(e: &str, field: &str) -> Result<(), RuntimeError> {
    match e.split_once('=') {
        Some((k, _)) if !k.is_empty() && !k.contains('\0') && !e.contains('\0') => Ok(()),
        _ => Err(RuntimeError::invalid(
            field,
            format!("{e:?} is not KEY=VALUE"),
        )),
    }
}

/// A mount destination must not be `/` nor at or under /proc, /sys or /dev (for every user).
/// `p` is already absolute and free of `..`.
pub(super) fn check_mount_destination(p: &str, field: &str) -> Result<(), RuntimeError> {
    let mut comps = p.split('/').filter(|c| !c.is_empty() && *c != ".");
    let refused = match comps.next() {
        None => true,
        Some(first) => crate::runtime::config::RUNTIME_OWNED_DIRS.contains(&first),
    };
    if refused {
        return Err(RuntimeError::invalid(
            field,
            format!(
                "{p:?} is not allowed: a mount must not be / nor at or under /proc, /sys or \
                 /dev (the runtime mounts those); choose another absolute path"
            ),
        ));
    }
    Ok(())
}

/// Resolves a bind source once, at create: its canonical path (every symlink followed now,
/// never again) and the identity of the file there, opened without following symlinks.
pub(super) fn bind_source(
    src: &Path,
) -> Result<(PathBuf, crate::runtime::config::SourceId), String> {
    let canon = fs::canonicalize(src).map_err(|e| format!("cannot resolve: {e}"))?;
    let (_, id) = crate::runtime::config::open_bind_source(&canon)?;
    Ok((canon, id))
}

pub(super) fn check_container_path(p: &str, field: &str) -> Result<(), RuntimeError> {
    if !p.starts_with('/') || p.split('/').any(|c| c == "..") || p.contains('\0') {
        return Err(RuntimeError::invalid(
            field,
            format!("{p:?} must be an absolute path without .."),
        ));
    }
    Ok(())
}

/// Checks limit values (ranges the kernel would reject are reported per field).
pub fn validate_limits(l: &wire::Limits) -> Result<(), RuntimeError> {
    if let Some(c) = l.cpus
        && !(c.is_finite() && (0.01..=1024.0).contains(&c))
    {
        return Err(RuntimeError::invalid(
            "limits.cpus",
            format!("{c} must be between 0.01 and 1024 (or max: no limit)"),
        ));
    }
    for (f, w) in [
        ("limits.cpu_weight", l.cpu_weight),
        ("limits.io_weight", l.io_weight),
    ] {
        if let Some(w) = w
            && !(1..=10000).contains(&w)
        {
            return Err(RuntimeError::invalid(
                f,
                format!("{w} must be between 1 and 10000 (or max: the default, 100)"),
            ));
        }
    }
    for line in &l.io_max {
        if let Err(e) = crate::cgroup::parse_io_max_line(line) {
            return Err(RuntimeError::invalid("limits.io_max", e.to_string()));
        }
    }
    for (f, v) in [
        ("limits.memory_max", l.memory_max),
        ("limits.memory_high", l.memory_high),
    ] {
        if let Some(v) = v
            && v < (1 << 20)
        {
            return Err(RuntimeError::invalid(
                f,
                format!(
                    "{v} bytes is below the 1 MiB minimum: it must be at least 1048576 (or max: no limit)"
                ),
            ));
        }
    }
    if let (Some(min), Some(max)) = (l.memory_min, l.memory_max)
        && min > max
    {
        return Err(RuntimeError::invalid(
            "limits.memory_min",
            format!(
                "{min} bytes must be at most memory_max ({max} bytes): a protection cannot exceed the limit"
            ),
        ));
    }
    if let Some(p) = l.pids_max
        && (!(1..=4_194_304).contains(&p))
    {
        return Err(RuntimeError::invalid(
            "limits.pids_max",
            format!("{p} must be between 1 and 4194304 (or max: no limit)"),
        ));
    }
    for (f, c) in [
        ("limits.cpuset_cpus", &l.cpuset_cpus),
        ("limits.cpuset_mems", &l.cpuset_mems),
    ] {
        let Some(c) = c else { continue };
        let ok = !c.is_empty()
            && c.split(',').all(|part| {
                let mut it = part.splitn(2, '-');
                let a = it.next().and_then(|x| x.parse::<u32>().ok());
                match (a, it.next()) {
                    (Some(_), None) => true,
                    (Some(a), Some(b)) => b.parse::<u32>().is_ok_and(|b| b >= a),
                    _ => false,
                }
            });
        if !ok {
            return Err(RuntimeError::invalid(
                f,
                format!("{c:?} is not a list: it must be like 0-2,4 (or max: the parent's)"),
            ));
        }
    }
    Ok(())
}

pub(super) fn validate(
    req: &mut wire::CreateContainer,
    images: &ImageStore,
) -> Result<Validated, RuntimeError> {
    if let Some(n) = &req.name
        && !valid_name(n)
    {
        return Err(RuntimeError::invalid(
            "name",
            format!("{n:?} must be 1-64 of [A-Za-z0-9_.-], starting alphanumeric"),
        ));
    }
    if let Some(t) = &req.team
        && !valid_name(t)
    {
        return Err(RuntimeError::invalid(
            "team",
            format!("{t:?} must be 1-64 of [A-Za-z0-9_.-], starting alphanumeric"),
        ));
    }
    let mut env: Vec<String> = Vec::new();
    let mut args = req.command.clone();
    let mut cwd = req.workdir.clone();
    let mut user = req.user.clone();
    let host_rootfs = req.rootfs.is_some();
    let lower = match (&req.image, &req.rootfs) {
        (Some(_), Some(_)) | (None, None) => {
            return Err(RuntimeError::invalid(
                "image",
                "give exactly one of image and rootfs",
            ));
        }
        (None, Some(r)) => {
            let p = Path::new(r);
            if !p.is_absolute() || r.contains([',', ':', '\0']) || r.split('/').any(|c| c == "..") {
                return Err(RuntimeError::invalid(
                    "rootfs",
                    format!("{r:?} must be an absolute path without ',', ':' or .."),
                ));
            }
            if !p.is_dir() {
                return Err(RuntimeError::invalid(
                    "rootfs",
                    format!("{r} is not a directory"),
                ));
            }
            vec![p.to_owned()]
        }
        (Some(i), None) => {
            let img = images.resolve(i).map_err(|e| match e {
                crate::image::ImageError::NotFound(_) => {
                    RuntimeError::invalid("image", format!("no such image: {i}"))
                }
                other => RuntimeError::Image(other),
            })?;
            env.extend(img.env.iter().cloned());
            if args.is_empty() {
                args = img
                    .entrypoint
                    .iter()
                    .chain(img.cmd.iter())
                    .cloned()
                    .collect();
            } else if !img.entrypoint.is_empty() {
                args = img.entrypoint.iter().chain(args.iter()).cloned().collect();
            }
            if cwd.is_none() && !img.workdir.is_empty() {
                cwd = Some(img.workdir.clone());
            }
            if user.is_none() && !img.user.is_empty() {
                user = Some(img.user.clone());
            }
            img.layers
        }
    };
    if args.is_empty() || args[0].is_empty() {
        return Err(RuntimeError::invalid(
            "command",
            "must not be empty (and the image has no default)",
        ));
    }
    if args.iter().any(|a| a.contains('\0')) {
        return Err(RuntimeError::invalid(
            "command",
            "must not contain NUL bytes",
        ));
    }
    for e in &req.env {
        check_env(e, "env")?;
    }
    for e in &req.env {
        let key = e.split('=').next().unwrap_or("");
        env.retain(|x| x.split('=').next() != Some(key));
        env.push(e.clone());
    }
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.insert(0, format!("PATH={DEFAULT_PATH}"));
    }
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push("HOME=/root".into());
    }
    let cwd = cwd.unwrap_or_else(|| "/".into());
    check_container_path(&cwd, "workdir")?;
    if let Some(h) = &req.hostname {
        let ok = !h.is_empty()
            && h.len() <= 63
            && h.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
        if !ok {
            return Err(RuntimeError::invalid(
                "hostname",
                format!("{h:?} must be 1-63 of [A-Za-z0-9.-]"),
            ));
        }
    }
    let (uid, gid) = match user.as_deref() {
        None | Some("") => (0, 0),
        Some(u) => {
            let (a, b) = u.split_once(':').unwrap_or((u, u));
            match (a.parse::<u32>(), b.parse::<u32>()) {
                (Ok(a), Ok(b)) => (a, b),
                _ => {
                    return Err(RuntimeError::invalid(
                        "user",
                        format!("{u:?} must be numeric uid[:gid]"),
                    ));
                }
            }
        }
    };
    let mut mounts = Vec::new();
    for (i, m) in req.mounts.iter_mut().enumerate() {
        let field = format!("mounts[{i}]");
        check_container_path(&m.destination, &format!("{field}.destination"))?;
        check_mount_destination(&m.destination, &format!("{field}.destination"))?;
        match m.kind.as_str() {
            "bind" => {
                let field = format!("{field}.source");
                let src = m
                    .source
                    .as_deref()
                    .ok_or_else(|| RuntimeError::invalid(&field, "a bind mount needs a source"))?;
                if !Path::new(src).is_absolute() || !Path::new(src).exists() {
                    return Err(RuntimeError::invalid(
                        &field,
                        format!("{src:?} must be an existing absolute path"),
                    ));
                }
                let (source, id) = bind_source(Path::new(src))
                    .map_err(|why| RuntimeError::invalid(&field, format!("{src:?}: {why}")))?;
                // The record shows what is mounted: the canonical path.
                m.source = Some(source.to_str().map(str::to_owned).ok_or_else(|| {
                    RuntimeError::invalid(
                        &field,
                        format!(
                            "{src:?} resolves to {}, which is not UTF-8",
                            source.display()
                        ),
                    )
                })?);
                mounts.push(MountConfig::Bind {
                    source,
                    destination: m.destination.clone(),
                    readonly: m.readonly,
                    id: Some(id),
                });
            }
            "tmpfs" => mounts.push(MountConfig::Tmpfs {
                destination: m.destination.clone(),
            }),
            other => {
                return Err(RuntimeError::invalid(
                    &format!("{field}.type"),
                    format!("{other:?} must be bind or tmpfs"),
                ));
            }
        }
    }
    if let Some(s) = req.network.as_deref() {
        s.parse::<crate::network::NetworkMode>().map_err(|_| {
            RuntimeError::invalid("network", format!("{s:?} must be none, host or bridge"))
        })?;
    }
    crate::network::PortSpec::parse_all(&req.ports).map_err(net_err(""))?;
    let mode = network_mode(req);
    if mode != crate::network::NetworkMode::Bridge && !req.ports.is_empty() {
        return Err(RuntimeError::invalid(
            "ports",
            format!("publishing ports needs network bridge, not {mode}"),
        ));
    }
    let net_ns = mode != crate::network::NetworkMode::Host;
    let restart = match req.restart.as_deref() {
        None => RestartPolicy::No,
        Some(s) => RestartPolicy::parse(s).ok_or_else(|| {
            RuntimeError::invalid(
                "restart",
                format!("{s:?} must be no, on-failure[:N] or always"),
            )
        })?,
    };
    if req.auto_remove && restart != RestartPolicy::No {
        return Err(RuntimeError::invalid(
            "restart",
            "auto_remove and a restart policy exclude each other",
        ));
    }
    if let Some(t) = req.stop_timeout
        && t > 3600
    {
        return Err(RuntimeError::invalid(
            "stop_timeout",
            format!("{t} must be at most 3600 seconds"),
        ));
    }
    for k in req.labels.keys() {
        if k.is_empty() || k.len() > 128 {
            return Err(RuntimeError::invalid(
                "labels",
                format!("label key {k:?} must be 1-128 characters"),
            ));
        }
    }
    let userns = match req.userns.as_deref() {
        None => None,
        Some("auto") => Some(UsernsRequest::Auto),
        Some(s) => Some(UsernsRequest::Fixed(IdRange::parse(s).ok_or_else(
            || {
                RuntimeError::invalid(
                    "userns",
                    format!("{s:?} must be auto or HOST_UID[:SIZE] (HOST_UID > 0, within 32 bits)"),
                )
            },
        )?)),
    };
    if userns.is_some() && !Path::new("/proc/self/ns/user").exists() {
        return Err(RuntimeError::invalid(
            "userns",
            "this kernel has no user namespaces",
        ));
    }
    if req.limits.pids_max.is_none() {
        req.limits.pids_max = Some(DEFAULT_PIDS_MAX);
    }
    validate_limits(&req.limits)?;
    Ok(Validated {
        userns,
        lower,
        args,
        env,
        cwd,
        uid,
        gid,
        mounts,
        net_ns,
        restart,
        host_rootfs,
    })
}

/// The network mode of a request (`NetworkMode::of_spec`).
pub(super) fn network_mode(req: &wire::CreateContainer) -> crate::network::NetworkMode {
    crate::network::NetworkMode::of_spec(req.network.as_deref(), !req.ports.is_empty())
}

/// Network errors as runtime errors: bad or busy ports name their field.
pub(super) fn net_err(name: &str) -> impl Fn(crate::network::NetworkError) -> RuntimeError + '_ {
    use crate::network::NetworkError as E;
    move |e| match e {
        E::InvalidPort {
            field,
            value,
            reason,
        } => RuntimeError::invalid(&field, format!("{value:?}: {reason}")),
        e @ (E::PortInUse { .. } | E::PortsNeedBridge(_) | E::InvalidMode { .. }) => {
            RuntimeError::invalid("ports", e.to_string())
        }
        e => RuntimeError::Start {
            name: name.to_owned(),
            message: e.to_string(),
        },
    }
}
