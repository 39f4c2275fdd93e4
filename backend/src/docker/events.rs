//! `GET /events` (`docker events`): Corral's lifecycle events from the event hub
//! ([`crate::events`]) as dockerd's stream of JSON objects, one a line.
//!
//! - Corral's actions become Docker's: created → `create`, started → `start`, stopped →
//!   `die` then `stop`, died → `die`, killed → `kill`, paused → `pause`, unpaused → `unpause`,
//!   updated → `update`, restarted → `restart`, removed → `destroy`, oom → `oom`. Budget events
//!   have no Docker form and are left out.
//! - `Actor.ID` is the container's id (in Docker's 64 digits); `Actor.Attributes` holds
//!   `name`, `image` and the container's labels, and `exitCode` on `die`. The image and
//!   labels are looked up when the event is sent and remembered by name for the stream's
//!   life: a container removed before the stream first saw it has no image or labels in its
//!   `destroy`.
//! - `since` replays what the hub still holds (its ring: the last [`crate::events::RING`]
//!   events of this daemon run) from that time on; `until` ends the stream at that time (at
//!   once when it has passed). `filters`: `type` (only `container` matches anything),
//!   `event`, `container` (name or id prefix), `image`, `label`; others are refused.
//! - The stream ends when the daemon shuts down (the hub's close), and its task when the
//!   client goes away.

use std::{collections::HashMap, time::Duration};

use axum::{
    body::Body,
    extract::{Query, State},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use serde_json::{Value, json};
use wire::events::ContainerEvent;

use super::DockerError;
use crate::{events::Lifecycle, http::AppState};

/// Docker's actions for one of Corral's, in dockerd's order.
pub(super) fn actions(corral: &str) -> &'static [&'static str] {
    match corral {
        "created" => &["create"],
        "started" => &["start"],
        "stopped" => &["die", "stop"],
        "died" => &["die"],
        "killed" => &["kill"],
        "paused" => &["pause"],
        "unpaused" => &["unpause"],
        "updated" => &["update"],
        "restarted" => &["restart"],
        "removed" => &["destroy"],
        "oom" => &["oom"],
        _ => &[],
    }
}

/// A Docker API time: Unix seconds with an optional fraction (`1733335740.5`), as the CLI
/// sends `--since`/`--until` (it converts durations and dates itself); in milliseconds.
pub(super) fn parse_time(raw: &str) -> Result<i64, String> {
    let bad = || format!("invalid time {raw:?}: Unix seconds (with a fraction) expected");
    let (secs, frac) = raw.split_once('.').unwrap_or((raw, ""));
    let secs: i64 = secs.parse().map_err(|_| bad())?;
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let ms = format!("{frac:0<3}")[..3]
        .parse::<i64>()
        .map_err(|_| bad())?;
    Ok(secs.saturating_mul(1000).saturating_add(ms))
}

/// The container a stream has seen: what an event's `Actor` needs.
#[derive(Debug, Clone, Default)]
pub(super) struct Seen {
    pub id: String,
    pub image: String,
    pub labels: Vec<(String, String)>,
}

/// `filters={"type":["container"],"event":["start"],"container":["web"],…}`.
#[derive(Debug, Default)]
pub(super) struct Filters {
    kind: Vec<String>,
    event: Vec<String>,
    container: Vec<String>,
    image: Vec<String>,
    label: Vec<String>,
}

impl Filters {
    pub(super) fn parse(raw: Option<&str>) -> Result<Self, String> {
        let mut f = Self::default();
        for (k, list) in super::shapes::filter_lists(raw)? {
            match k.as_str() {
                "type" => f.kind = list,
                "event" => f.event = list,
                "container" => f.container = list,
                "image" => f.image = list,
                "label" => f.label = list,
                other => {
                    return Err(format!(
                        "invalid filter '{other}': Corral's docker events filter by type, event, \
                         container, image and label"
                    ));
                }
            }
        }
        Ok(f)
    }

    /// Whether the Docker event `action` of `name` (seen as `seen`) passes.
    fn matches(&self, action: &str, name: &str, seen: &Seen) -> bool {
        let any = |list: &[String], f: &dyn Fn(&str) -> bool| {
            list.is_empty() || list.iter().any(|x| f(x))
        };
        any(&self.kind, &|k| k == "container")
            && any(&self.event, &|e| e == action)
            && any(&self.container, &|c| {
                c == name || (!seen.id.is_empty() && seen.id.starts_with(c))
            })
            && any(&self.image, &|i| {
                seen.image == i || seen.image == format!("{i}:latest")
            })
            && self.label.iter().all(|l| match l.split_once('=') {
                Some((k, v)) => seen.labels.iter().any(|(a, b)| a == k && b == v),
                None => seen.labels.iter().any(|(a, _)| a == l),
            })
    }
}

/// dockerd's JSON for one action of `e`.
pub(super) fn shape(e: &ContainerEvent, action: &str, seen: &Seen) -> Value {
    let id = match (&e.id, seen.id.is_empty()) {
        (Some(id), _) => super::shapes::docker_id(id),
        (None, false) => seen.id.clone(),
        (None, true) => e.name.clone(),
    };
    let mut attrs = serde_json::Map::new();
    for (k, v) in &seen.labels {
        attrs.insert(k.clone(), json!(v));
    }
    attrs.insert("image".into(), json!(seen.image));
    attrs.insert("name".into(), json!(e.name));
    if action == "die" {
        attrs.insert(
            "exitCode".into(),
            json!(e.exit_code.unwrap_or(0).to_string()),
        );
    }
    json!({
        "status": action,
        "id": id,
        "from": seen.image,
        "Type": "container",
        "Action": action,
        "Actor": {"ID": id, "Attributes": attrs},
        "scope": "local",
        "time": e.ts.div_euclid(1000),
        "timeNano": (e.ts as i128 * 1_000_000) as i64,
    })
}

#[derive(Debug, serde::Deserialize)]
pub(super) struct EventsQuery {
    since: Option<String>,
    until: Option<String>,
    filters: Option<String>,
}

/// One stream's state: its filters and what it knows of containers by name.
struct Stream {
    state: AppState,
    filters: Filters,
    until: Option<i64>,
    seen: HashMap<String, Seen>,
    tx: tokio::sync::mpsc::Sender<Vec<u8>>,
}

impl Stream {
    async fn seen(&mut self, name: &str) -> Seen {
        if let Some(m) = self.state.containers()
            && let Ok(c) = m.get(name).await
        {
            let mut labels: Vec<(String, String)> = c
                .spec
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            labels.push(("corral.team".into(), c.team.clone()));
            let s = Seen {
                id: super::shapes::docker_id(&c.id),
                image: c.image,
                labels,
            };
            self.seen.insert(name.to_owned(), s.clone());
            return s;
        }
        self.seen.get(name).cloned().unwrap_or_default()
    }

    /// Sends `e`'s Docker events that pass; `false` when the stream is over (past `until`,
    /// or the client went away).
    async fn send(&mut self, e: &Lifecycle) -> bool {
        let Lifecycle::Container(e) = e else {
            return true;
        };
        if self.until.is_some_and(|u| e.ts > u) {
            return false;
        }
        let acts = actions(&e.action);
        if acts.is_empty() {
            return true;
        }
        let mut seen = self.seen(&e.name).await;
        if let Some(id) = &e.id {
            seen.id = super::shapes::docker_id(id);
        }
        for a in acts {
            if self.filters.matches(a, &e.name, &seen) {
                let mut line = shape(e, a, &seen).to_string().into_bytes();
                line.push(b'\n');
                if self.tx.send(line).await.is_err() {
                    return false;
                }
            }
        }
        true
    }

    async fn run(mut self, since: Option<i64>) {
        let hub = self.state.events().clone();
        let mut closed = hub.watch_closed();
        let mut head = hub.watch_head();
        head.borrow_and_update();
        let mut cursor = match since {
            Some(since) => {
                let (kept, last) = hub.kept();
                for (_, e) in kept {
                    let at = match e.as_ref() {
                        Lifecycle::Container(c) => c.ts,
                        Lifecycle::Budget(_) => continue,
                    };
                    if at >= since && !self.send(&e).await {
                        return;
                    }
                }
                last
            }
            None => hub.head(),
        };
        let now = crate::metering::sampler::wall_ms();
        let left = |until: i64| Duration::from_millis(until.saturating_sub(now).max(0) as u64);
        let deadline = tokio::time::sleep(self.until.map_or(Duration::from_secs(1 << 40), left));
        tokio::pin!(deadline);
        loop {
            if *closed.borrow() {
                return;
            }
            tokio::select! {
                _ = closed.changed() => return,
                _ = &mut deadline => return,
                _ = self.tx.closed() => return,
                r = head.changed() => {
                    if r.is_err() {
                        return;
                    }
                    match hub.since(cursor) {
                        crate::events::Since::Replay { events, head } => {
                            cursor = head;
                            for (_, e) in events {
                                if !self.send(&e).await {
                                    return;
                                }
                            }
                        }
                        // Events left the ring before this stream read them: go on from now.
                        crate::events::Since::Reset { head } => cursor = head,
                    }
                }
            }
        }
    }
}

/// `GET /events`.
pub(super) async fn events(
    State(state): State<AppState>,
    Query(q): Query<EventsQuery>,
) -> Result<Response, DockerError> {
    let bad = |m: String| DockerError(StatusCode::BAD_REQUEST, m);
    let filters = Filters::parse(q.filters.as_deref()).map_err(bad)?;
    let since = q
        .since
        .as_deref()
        .filter(|s| !s.is_empty())
        .map(parse_time)
        .transpose()
        .map_err(bad)?;
    let until = q
        .until
        .as_deref()
        .filter(|s| !s.is_empty())
        .map(parse_time)
        .transpose()
        .map_err(bad)?;
    let (tx, rx) = tokio::sync::mpsc::channel::<Vec<u8>>(64);
    let stream = Stream {
        state,
        filters,
        until,
        seen: HashMap::new(),
        tx,
    };
    tokio::spawn(stream.run(since));
    let lines = futures::stream::unfold(rx, |mut rx| async move {
        let line = rx.recv().await?;
        Some((Ok::<_, std::convert::Infallible>(line), rx))
    });
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(lines),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(action: &str, exit: Option<i32>) -> ContainerEvent {
        ContainerEvent {
            name: "web".into(),
            id: Some("0123456789abcdef0123456789abcdef".into()),
            team: "t".into(),
            action: action.into(),
            status: "exited".into(),
            exit_code: exit,
            actor: None,
            ts: 1_733_335_740_123,
        }
    }

    #[test]
    fn corral_actions_become_dockers() {
        assert_eq!(actions("stopped"), ["die", "stop"]);
        assert_eq!(actions("removed"), ["destroy"]);
        assert_eq!(actions("created"), ["create"]);
        assert!(actions("budget").is_empty());
    }

    #[test]
    fn times_are_unix_seconds_with_a_fraction() {
        assert_eq!(parse_time("1733335740"), Ok(1_733_335_740_000));
        assert_eq!(parse_time("1733335740.5"), Ok(1_733_335_740_500));
        assert_eq!(parse_time("1733335740.123456789"), Ok(1_733_335_740_123));
        assert!(parse_time("10m").is_err());
        assert!(parse_time("1.x").is_err());
    }

    #[test]
    fn events_have_dockers_shape() {
        let seen = Seen {
            id: "ab".repeat(32),
            image: "busybox:latest".into(),
            labels: vec![("tier".into(), "web".into())],
        };
        let v = shape(&ev("died", Some(3)), "die", &seen);
        assert_eq!(v["Type"], "container");
        assert_eq!(v["Action"], "die");
        assert_eq!(
            v["Actor"]["ID"],
            "0123456789abcdef".repeat(4),
            "the event's own id"
        );
        assert_eq!(v["Actor"]["Attributes"]["name"], "web");
        assert_eq!(v["Actor"]["Attributes"]["image"], "busybox:latest");
        assert_eq!(v["Actor"]["Attributes"]["exitCode"], "3");
        assert_eq!(v["Actor"]["Attributes"]["tier"], "web");
        assert_eq!(v["scope"], "local");
        assert_eq!(v["time"], 1_733_335_740);
        assert_eq!(v["timeNano"], 1_733_335_740_123_000_000_i64);
        // Without an id (an event of an older hub): what the stream saw, else the name.
        let old = ContainerEvent {
            id: None,
            ..ev("removed", None)
        };
        assert_eq!(
            shape(&old, "destroy", &seen)["Actor"]["ID"],
            "ab".repeat(32)
        );
        let v = shape(&old, "destroy", &Seen::default());
        assert_eq!(v["Actor"]["ID"], "web");
        assert!(v["Actor"]["Attributes"].get("exitCode").is_none());
    }

    #[test]
    fn filters_pick_by_type_event_container_image_and_label() {
        let seen = Seen {
            id: "abcdef".into(),
            image: "busybox:latest".into(),
            labels: vec![("tier".into(), "web".into())],
        };
        let f = |raw: &str| Filters::parse(Some(raw)).unwrap();
        assert!(f(r#"{"type":["container"]}"#).matches("start", "web", &seen));
        assert!(!f(r#"{"type":["image"]}"#).matches("start", "web", &seen));
        assert!(f(r#"{"event":{"die":true}}"#).matches("die", "web", &seen));
        assert!(!f(r#"{"event":["die"]}"#).matches("start", "web", &seen));
        assert!(f(r#"{"container":["abc"]}"#).matches("start", "web", &seen));
        assert!(f(r#"{"container":["web"]}"#).matches("start", "web", &seen));
        assert!(!f(r#"{"container":["db"]}"#).matches("start", "web", &seen));
        assert!(f(r#"{"image":["busybox"]}"#).matches("start", "web", &seen));
        assert!(f(r#"{"label":["tier=web"]}"#).matches("start", "web", &seen));
        assert!(!f(r#"{"label":["tier=db"]}"#).matches("start", "web", &seen));
        assert!(Filters::parse(Some(r#"{"network":["x"]}"#)).is_err());
        assert!(Filters::parse(None).unwrap().matches("start", "web", &seen));
    }
}
