//! `GET /containers/{id}/stats`: the metering sampler's live reading of a container in
//! Docker's stats shape, so `docker stats` shows the numbers Corral meters and bills.
//!
//! The CLI computes CPU % as Δcontainer ÷ Δsystem × online CPUs from `cpu_stats` and
//! `precpu_stats`. The sampler already knows the rate over its last interval, so the previous
//! reading is put one interval back at that rate and the system clock runs at online CPUs ×
//! wall time: the CLI's CPU % is then exactly the sampler's `cpu_cores × 100`. Memory is the
//! cgroup's current use (no page-cache subtraction: Corral bills what the cgroup holds).

use std::{collections::HashMap, time::Duration};

use axum::{
    body::Body,
    extract::{Path, Query, State},
    http::header,
    response::{IntoResponse, Response},
};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

use super::{DockerError, manager, resolve, shapes};
use crate::{
    http::AppState,
    metering::sampler::{LiveStat, container_subject, wall_ms},
};

#[derive(Debug, serde::Deserialize)]
pub struct StatsQuery {
    stream: Option<String>,
    #[serde(flatten)]
    _rest: HashMap<String, String>,
}

/// What one stats object is made of besides the live reading.
struct Fixed {
    id: String,
    name: String,
    cpus: u64,
    host_memory: u64,
    pids_limit: u64,
    interval_ns: u64,
}

pub async fn container_stats(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<StatsQuery>,
) -> Result<Response, DockerError> {
    let name = resolve(&state, &id).await?;
    let c = manager(&state)?.get(&name).await?;
    let host = super::host(&state).await?;
    let metering = state.metering().cloned();
    let interval = metering
        .as_ref()
        .map_or(Duration::from_secs(1), |m| m.config().interval);
    let fixed = Fixed {
        id: shapes::docker_id(&c.id),
        name: format!("/{}", c.name),
        cpus: u64::from(host.cpus.max(1)),
        host_memory: host.memory_bytes,
        pids_limit: c.limits.pids_max.unwrap_or(0),
        interval_ns: interval.as_nanos() as u64,
    };
    let subject = container_subject(&c.id);
    let read = move || {
        let live = metering
            .as_ref()
            .and_then(|m| m.live().into_iter().find(|l| l.subject == subject));
        stats(&fixed, live.as_ref(), wall_ms())
    };
    let streaming = !matches!(q.stream.as_deref(), Some("0" | "false" | "False"));
    if !streaming {
        return Ok((
            [(header::CONTENT_TYPE, "application/json")],
            format!("{}\n", read()),
        )
            .into_response());
    }
    // One object per sampler interval, while the client reads and the container exists.
    let (rd, mut wr) = tokio::io::duplex(64 * 1024);
    let m = manager(&state)?.clone();
    let mut closed = state.events().watch_closed();
    tokio::spawn(async move {
        loop {
            if wr
                .write_all(format!("{}\n", read()).as_bytes())
                .await
                .is_err()
            {
                return;
            }
            tokio::select! {
                () = tokio::time::sleep(interval) => {}
                _ = closed.wait_for(|c| *c) => return,
            }
            if m.get(&name).await.is_err() {
                return;
            }
        }
    });
    let body = Body::from_stream(super::stream::reader_stream(rd));
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// One Docker stats object from the live reading (zeros when there is none: not running).
fn stats(f: &Fixed, live: Option<&LiveStat>, now_ms: i64) -> Value {
    let (total_ns, pre_ns, mem, mem_limit, pids, rbytes, wbytes, throttled_ns, mono) = match live {
        Some(l) => {
            let c = &l.reading.counters;
            let total = c.cpu_usec.saturating_mul(1000);
            let used = (l.rates.cpu_cores * f.interval_ns as f64).round() as u64;
            (
                total,
                total.saturating_sub(used),
                c.memory_current,
                l.memory_max.unwrap_or(f.host_memory),
                c.pids_current,
                c.io_rbytes,
                c.io_wbytes,
                c.throttled_usec.saturating_mul(1000),
                l.reading.mono_ns,
            )
        }
        None => (0, 0, 0, f.host_memory, 0, 0, 0, 0, 0),
    };
    let system = mono.saturating_mul(f.cpus);
    let pre_system = mono.saturating_sub(f.interval_ns).saturating_mul(f.cpus);
    let rfc = |ms: i64| crate::metering::calendar::format_time(ms / 1000);
    let cpu = |usage: u64, system: u64| {
        json!({
            "cpu_usage": {"total_usage": usage, "usage_in_kernelmode": 0, "usage_in_usermode": 0},
            "system_cpu_usage": system,
            "online_cpus": f.cpus,
            "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": throttled_ns},
        })
    };
    json!({
        "id": f.id,
        "name": f.name,
        "read": rfc(now_ms),
        "preread": rfc(now_ms - (f.interval_ns / 1_000_000) as i64),
        "num_procs": 0,
        "pids_stats": {"current": pids, "limit": f.pids_limit},
        "cpu_stats": cpu(total_ns, system),
        "precpu_stats": if live.is_some() { cpu(pre_ns, pre_system) } else { json!({"cpu_usage": {"total_usage": 0}, "throttling_data": {}}) },
        "memory_stats": if live.is_some() { json!({"usage": mem, "limit": mem_limit, "stats": {}}) } else { json!({}) },
        "blkio_stats": {"io_service_bytes_recursive": [
            {"major": 0, "minor": 0, "op": "read", "value": rbytes},
            {"major": 0, "minor": 0, "op": "write", "value": wbytes},
        ]},
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metering::account::{Counters, Rates, Reading};

    #[test]
    fn the_clis_cpu_percentage_is_the_samplers_cores() {
        let f = Fixed {
            id: "x".into(),
            name: "/x".into(),
            cpus: 2,
            host_memory: 1 << 30,
            pids_limit: 10,
            interval_ns: 1_000_000_000,
        };
        let live = LiveStat {
            subject: "c:x".into(),
            kind: crate::metering::sampler::SubjectKind::Team("t".into()),
            reading: Reading {
                boot_id: String::new(),
                mono_ns: 50_000_000_000,
                wall_ms: 0,
                generation: 1,
                counters: Counters {
                    cpu_usec: 9_000_000,
                    memory_current: 5 << 20,
                    pids_current: 3,
                    ..Default::default()
                },
                reserved: Default::default(),
            },
            rates: Rates {
                cpu_cores: 0.25,
                ..Default::default()
            },
            memory_max: Some(64 << 20),
            cpus_reserved: 0.0,
            pressure: [None; 3],
            pressure_total_usec: [[None; 2]; 3],
        };
        let v = stats(&f, Some(&live), 1_700_000_000_000);
        let n = |p: &str| v.pointer(p).and_then(Value::as_u64).unwrap() as f64;
        // What docker/cli's calculateCPUPercentUnix does.
        let cpu_delta =
            n("/cpu_stats/cpu_usage/total_usage") - n("/precpu_stats/cpu_usage/total_usage");
        let sys_delta = n("/cpu_stats/system_cpu_usage") - n("/precpu_stats/system_cpu_usage");
        let pct = cpu_delta / sys_delta * n("/cpu_stats/online_cpus") * 100.0;
        assert!((pct - 25.0).abs() < 1e-6, "{pct}");
        assert_eq!(n("/memory_stats/usage"), (5u64 << 20) as f64);
        assert_eq!(n("/memory_stats/limit"), (64u64 << 20) as f64);
        assert_eq!(n("/pids_stats/current"), 3.0);
    }
}
