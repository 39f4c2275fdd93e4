//! Wire types of containers and images (`/api/v1/containers`, `/api/v1/images`).

use serde::{Deserialize, Serialize};

/// Integer fields also accept whole floats (`10.0`): JSON Schema counts them as integers, and
/// JavaScript clients may send them.
pub(crate) mod whole {
    use std::fmt;

    use serde::{
        Deserializer,
        de::{self, Visitor},
    };

    struct Whole;

    impl<'de> Visitor<'de> for Whole {
        type Value = Option<u64>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a non-negative integer")
        }
        fn visit_none<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_any(Whole)
        }
        fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
            Ok(Some(v))
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
            u64::try_from(v)
                .map(Some)
                .map_err(|_| E::invalid_value(de::Unexpected::Signed(v), &self))
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
            // 2^64: every whole float below it fits.
            if v.fract() == 0.0 && (0.0..18_446_744_073_709_551_616.0).contains(&v) {
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                Ok(Some(v as u64))
            } else {
                Err(E::invalid_value(de::Unexpected::Float(v), &self))
            }
        }
    }

    pub fn opt_u64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
        d.deserialize_option(Whole)
    }

    /// A non-negative id that fits an `i64` (database row ids).
    pub fn opt_id<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
        opt_u64(d)?
            .map(|v| {
                i64::try_from(v).map_err(|_| {
                    de::Error::invalid_value(de::Unexpected::Unsigned(v), &"an id below 2^63")
                })
            })
            .transpose()
    }
}

/// Resource limits of a container. Every field is optional: absent means "no limit" (the
/// kernel's default). A re-limit (`PATCH /api/v1/containers/{name}/limits`) takes a
/// [`crate::LimitsPatch`] with the same fields, where absent keeps and `null`/`"max"` removes.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// CPUs worth of time per period, e.g. `0.5`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 0.01, maximum = 1024.0))]
    pub cpus: Option<f64>,
    /// CPUs the container may run on, e.g. `0-1,3`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(
        feature = "openapi",
        schema(pattern = r"^[0-9]+(-[0-9]+)?(,[0-9]+(-[0-9]+)?)*$")
    )]
    pub cpuset_cpus: Option<String>,
    /// Relative CPU weight, 1..=10000 (cgroup v2 scale; default 100).
    #[serde(
        default,
        deserialize_with = "whole::opt_u64",
        skip_serializing_if = "Option::is_none"
    )]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 10000))]
    pub cpu_weight: Option<u64>,
    /// Hard memory limit in bytes.
    #[serde(
        default,
        deserialize_with = "whole::opt_u64",
        skip_serializing_if = "Option::is_none"
    )]
    #[cfg_attr(feature = "openapi", schema(minimum = 1048576))]
    pub memory_max: Option<u64>,
    /// Memory throttling threshold in bytes.
    #[serde(
        default,
        deserialize_with = "whole::opt_u64",
        skip_serializing_if = "Option::is_none"
    )]
    #[cfg_attr(feature = "openapi", schema(minimum = 1048576))]
    pub memory_high: Option<u64>,
    /// Most processes and threads at once.
    #[serde(
        default,
        deserialize_with = "whole::opt_u64",
        skip_serializing_if = "Option::is_none"
    )]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 4194304))]
    pub pids_max: Option<u64>,
    /// Memory nodes the group may allocate from, e.g. `0`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(
        feature = "openapi",
        schema(pattern = r"^[0-9]+(-[0-9]+)?(,[0-9]+(-[0-9]+)?)*$")
    )]
    pub cpuset_mems: Option<String>,
    /// Best-effort memory protection in bytes (`memory.low`; v1 soft limit).
    #[serde(
        default,
        deserialize_with = "whole::opt_u64",
        skip_serializing_if = "Option::is_none"
    )]
    #[cfg_attr(feature = "openapi", schema(minimum = 0))]
    pub memory_low: Option<u64>,
    /// Hard memory protection in bytes (`memory.min`): never reclaimed, even under global
    /// pressure. cgroup v2 only (v1 has no equivalent, so a host with a v1 memory controller
    /// refuses it); at most `memory_max` when both are set.
    #[serde(
        default,
        deserialize_with = "whole::opt_u64",
        skip_serializing_if = "Option::is_none"
    )]
    #[cfg_attr(feature = "openapi", schema(minimum = 0))]
    pub memory_min: Option<u64>,
    /// Swap in bytes on top of the memory (`memory.swap.max`; v1 memsw = memory + swap, which
    /// needs `memory_max`).
    #[serde(
        default,
        deserialize_with = "whole::opt_u64",
        skip_serializing_if = "Option::is_none"
    )]
    #[cfg_attr(feature = "openapi", schema(minimum = 0))]
    pub swap_max: Option<u64>,
    /// Relative IO weight, 1..=10000 (cgroup v2 scale; default 100).
    #[serde(
        default,
        deserialize_with = "whole::opt_u64",
        skip_serializing_if = "Option::is_none"
    )]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 10000))]
    pub io_weight: Option<u64>,
    /// Per-device IO limits, one line per device as `io.max` writes them:
    /// `MAJ:MIN [rbps=N] [wbps=N] [riops=N] [wiops=N]` (`max` for no limit).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<crate::formats::IoMaxLine>))]
    pub io_max: Vec<String>,
}

/// A bind mount or a tmpfs inside the container.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mount {
    /// `bind` or `tmpfs`.
    #[serde(rename = "type")]
    #[cfg_attr(feature = "openapi", schema(pattern = r"^(bind|tmpfs)$"))]
    pub kind: String,
    /// Host path of a bind mount; absent for tmpfs. Resolved once at create: the container
    /// shows (and binds) its canonical path, and refuses to start if the file there changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Absolute path inside the container; not `/` and not at or under `/proc`, `/sys` or
    /// `/dev`.
    #[cfg_attr(feature = "openapi", schema(pattern = r"^/"))]
    pub destination: String,
    #[serde(default)]
    pub readonly: bool,
}

/// `POST /api/v1/containers`: create (and with `start`, start) a container.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateContainer {
    /// Unique name: 1-64 of `[a-zA-Z0-9_.-]`, starting alphanumeric. Generated when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(
        feature = "openapi",
        schema(pattern = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    )]
    pub name: Option<String>,
    /// Team (a cgroup level), same rules as names; default `default`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(
        feature = "openapi",
        schema(pattern = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    )]
    pub team: Option<String>,
    /// An imported image (name:tag or id); exactly one of `image` and `rootfs`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// An absolute host directory used as the read-only lower layer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rootfs: Option<String>,
    /// Command and arguments; the image's entrypoint+cmd when empty.
    #[serde(default)]
    pub command: Vec<String>,
    /// `KEY=VALUE` pairs.
    #[serde(default)]
    pub env: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(pattern = r"^/"))]
    pub workdir: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(pattern = r"^[A-Za-z0-9.-]{1,63}$"))]
    pub hostname: Option<String>,
    /// `uid[:gid]`, numeric.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(pattern = r"^[0-9]+(:[0-9]+)?$"))]
    pub user: Option<String>,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub mounts: Vec<Mount>,
    /// `none` (own network namespace with loopback), `host`, or `bridge` (the Corral bridge,
    /// NAT, published ports). Default `none`, or `bridge` when ports are published.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(pattern = r"^(none|host|bridge)$"))]
    pub network: Option<String>,
    /// Published ports, `[IP:]HOST:CONTAINER[/tcp|/udp]`; bound to 127.0.0.1 unless an address
    /// is given.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<String>,
    /// `no`, `on-failure[:N]` or `always`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(
        feature = "openapi",
        schema(pattern = r"^(no|always|on-failure(:[0-9]+)?)$")
    )]
    pub restart: Option<String>,
    /// Seconds between SIGTERM and SIGKILL on stop; default 10.
    #[serde(
        default,
        deserialize_with = "whole::opt_u64",
        skip_serializing_if = "Option::is_none"
    )]
    #[cfg_attr(feature = "openapi", schema(maximum = 3600))]
    pub stop_timeout: Option<u64>,
    /// Remove the container once it has exited.
    #[serde(default)]
    pub auto_remove: bool,
    /// Start it right away.
    #[serde(default)]
    pub start: bool,
    #[serde(default)]
    pub labels: std::collections::BTreeMap<String, String>,
    /// A user namespace: container root is mapped to an unprivileged host range. `auto` picks a
    /// free range of 65536 ids; `HOST_UID[:SIZE]` (admins) names one (size default 65536).
    /// Stored as the resolved `HOST_UID:SIZE`; no two containers' ranges overlap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(
        feature = "openapi",
        schema(pattern = r"^(auto|[0-9]{1,10}(:[0-9]{1,10})?)$")
    )]
    pub userns: Option<String>,
    /// A pseudo-terminal for the process (`docker run -t`): its output is a terminal's, read
    /// through `GET /containers/{name}/attach` and the log; the container's monitor owns it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tty: bool,
    /// Keep the process's stdin open for attached clients (`docker run -i`); otherwise it
    /// reads /dev/null.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub open_stdin: bool,
}

/// A container as the API shows it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Container {
    pub id: String,
    pub name: String,
    pub team: String,
    /// The image reference or `rootfs:<dir>`.
    pub image: String,
    pub command: Vec<String>,
    /// `creating` (only while a create runs, or until a daemon restart sweeps an interrupted one),
    /// `created`, `running`, `paused`, `exited`.
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// PID of the container's init on the host, while running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<i32>,
    /// Unix seconds.
    pub created_at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<i64>,
    pub restart_count: u32,
    pub limits: Limits,
    pub spec: CreateContainer,
    /// Network mode, addresses and published ports (absent from servers that predate it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<crate::ContainerNetwork>,
    /// The team's pooled ceilings as the kernel enforces them (`GET /containers/{name}` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team_limits: Option<Limits>,
    /// What is in force for the container: per field the tighter of its own limit and its
    /// team's (`GET /containers/{name}` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effective_limits: Option<Limits>,
}

/// `POST /api/v1/containers/{name}/stop`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StopContainer {
    /// Seconds to wait after SIGTERM before SIGKILL; the container's own timeout when absent.
    #[cfg_attr(feature = "openapi", schema(maximum = 3600))]
    #[serde(
        default,
        deserialize_with = "whole::opt_u64",
        skip_serializing_if = "Option::is_none"
    )]
    pub timeout: Option<u64>,
}

/// `POST /api/v1/containers/{name}/undo`: which limit change to take back.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UndoLimits {
    /// The id of a `container.update` or `container.undo` row of the container's timeline
    /// (`GET /api/v1/containers/{name}/events`); absent: the latest limit change.
    #[serde(
        default,
        deserialize_with = "whole::opt_id",
        skip_serializing_if = "Option::is_none"
    )]
    #[cfg_attr(feature = "openapi", schema(minimum = 0))]
    pub event: Option<i64>,
}

/// `POST /api/v1/containers/{name}/kill`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KillContainer {
    /// A signal name (`TERM`, `SIGKILL`) or number; default `KILL`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<String>,
}

/// `POST /api/v1/containers/{name}/exec`: runs a command inside the running container.
///
/// With `Accept: application/x-ndjson` the output streams as it is produced (`ExecFrame`
/// lines) and is never held whole by the daemon; without it the answer is one `ExecResult`
/// with each stream capped at 1 MiB.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecRequest {
    pub command: Vec<String>,
    #[serde(default)]
    pub env: Vec<String>,
    /// Seconds after which the command and every process it started are killed. Streamed: no
    /// default (like `docker exec`), 1..=86400. Plain JSON: the answer must come within the
    /// API's 30 s request timeout, so 1..=25, default 25.
    #[serde(
        default,
        deserialize_with = "whole::opt_u64",
        skip_serializing_if = "Option::is_none"
    )]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 86400))]
    pub timeout: Option<u64>,
}

/// The most bytes of each stream (stdout, stderr) a plain JSON exec answer holds; the command
/// is killed when one of them passes it, and the answer says `truncated`.
pub const EXEC_OUTPUT_CAP: usize = 1 << 20;

/// The most seconds a plain JSON exec may run (the API answers 408 after 30 s).
pub const EXEC_JSON_MAX_TIMEOUT: u64 = 25;

/// The most seconds a streamed exec's `timeout` may name (one day).
pub const EXEC_MAX_TIMEOUT: u64 = 86_400;

/// The plain JSON answer of an exec (without `Accept: application/x-ndjson`).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecResult {
    /// The command's exit code; 128 + N when a signal N ended it (137 when Corral killed it).
    pub exit_code: i32,
    /// At most 1 MiB (1048576 bytes), invalid UTF-8 replaced by U+FFFD.
    pub stdout: String,
    /// At most 1 MiB (1048576 bytes), invalid UTF-8 replaced by U+FFFD.
    pub stderr: String,
    /// A stream passed 1 MiB: the output is cut there and the command was killed (stream the
    /// output with `Accept: application/x-ndjson` to get all of it).
    #[serde(default)]
    pub truncated: bool,
    /// `timeout` passed and the command was killed.
    #[serde(default)]
    pub timed_out: bool,
}

/// Which output stream an [`ExecFrame`] carries.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExecStream {
    Stdout,
    Stderr,
}

/// One line of a streamed exec (`Accept: application/x-ndjson`): `{"stream":"stdout","data":
/// BASE64}` frames in the order the daemon read them, then exactly one last line: `{"exit_code":
/// N}` (with `timed_out` when the timeout killed the command), or `{"error": ApiError}`. The
/// same objects are meant to travel as WebSocket text messages for an interactive exec.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecFrame {
    /// The stream `data` came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<ExecStream>,
    /// Output bytes, standard base64 with padding (output is binary; nothing is lost).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
    /// Last line: the command's exit code (128 + N when signal N ended it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// Last line, with `exit_code`: `timeout` passed and the command was killed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub timed_out: bool,
    /// Last line when the exec failed after the answer had begun.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<crate::ApiError>,
}

/// `POST /api/v1/images/import`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportImage {
    /// Path on the daemon's host of a `docker save` tarball or an OCI image layout (dir or tar).
    #[cfg_attr(feature = "openapi", schema(pattern = r"^/"))]
    pub path: String,
    /// Extra name:tag to give the image.
    #[cfg_attr(feature = "openapi", schema(pattern = r"^[A-Za-z0-9._/:@-]{1,255}$"))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
}

/// Media type of the streamed import: one [`ImportProgress`] JSON object per line.
pub const NDJSON: &str = "application/x-ndjson";

/// One line of `POST /api/v1/images/import` when the request's `Accept` asks for
/// `application/x-ndjson` (as `docker load` streams its progress). The last line has `status`
/// `done` (with `image`) or `error` (with `error`).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportProgress {
    /// `unpack` (reading the tarball), `layer` (reading and unpacking one layer), `imported`
    /// (one image of the file stored), `done` or `error`.
    pub status: String,
    /// Bytes read so far of the file (`unpack`) or of the layer's blob (`layer`).
    #[serde(default)]
    pub current: u64,
    /// Size in bytes of the file or of the layer's blob.
    #[serde(default)]
    pub total: u64,
    /// 1-based number of the layer (`layer`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layer: Option<u32>,
    /// How many layers the image has (`layer`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layers: Option<u32>,
    /// The layer's diff_id (`layer`) or the image's id (`imported`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The first imported image (`done`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<Image>,
    /// Why the import failed (`error`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<crate::ApiError>,
}

impl ImportProgress {
    pub fn new(status: &str) -> Self {
        Self {
            status: status.to_owned(),
            current: 0,
            total: 0,
            layer: None,
            layers: None,
            id: None,
            image: None,
            error: None,
        }
    }
}

/// An image in the store.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Image {
    /// `sha256:<hex>` of the image config.
    pub id: String,
    pub tags: Vec<String>,
    pub layers: Vec<String>,
    /// Bytes of the unpacked layers.
    pub size: u64,
    pub created_at: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_may_be_whole_floats() {
        let l: Limits = serde_json::from_str(r#"{"pids_max": 10.0, "memory_max": 1e9}"#).unwrap();
        assert_eq!(l.pids_max, Some(10));
        assert_eq!(l.memory_max, Some(1_000_000_000));
        let l: Limits = serde_json::from_str(r#"{"pids_max": null}"#).unwrap();
        assert_eq!(l.pids_max, None);
        // Parsed exactly (serde_json's `float_roundtrip`): the fast parser read this whole
        // number as 1899340468376523.25 and rejected it, as schemathesis found.
        let l: Limits = serde_json::from_str(r#"{"memory_high": 1899340468376523.0}"#).unwrap();
        assert_eq!(l.memory_high, Some(1_899_340_468_376_523));
        for bad in [
            r#"{"pids_max": 1.5}"#,
            r#"{"pids_max": -1}"#,
            r#"{"pids_max": "1"}"#,
        ] {
            assert!(serde_json::from_str::<Limits>(bad).is_err(), "{bad}");
        }
        // The undo's event id too (schemathesis sent `{"event": 266.0}`).
        let u: UndoLimits = serde_json::from_str(r#"{"event": 266.0}"#).unwrap();
        assert_eq!(u.event, Some(266));
        for bad in [
            r#"{"event": -1}"#,
            r#"{"event": 1e19}"#,
            r#"{"event": 2.5}"#,
        ] {
            assert!(serde_json::from_str::<UndoLimits>(bad).is_err(), "{bad}");
        }
    }
}
