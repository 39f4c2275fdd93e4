//! `GET /api/v1/events` through real HTTP against a real daemon with real containers: 401
//! without credentials, 403 for a foreign Host or Origin, lifecycle events of a container's
//! create/start/stop/remove as they happen, live stats from the sampler, resume with
//! `Last-Event-ID` (the missed events, or `reset`), and team isolation in both.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::{
    io::{Read, Write},
    net::TcpStream,
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use tests::{Daemon, containers::Reaper, rootfs::Rootfs};

/// One SSE message.
#[derive(Debug, Clone)]
struct Msg {
    id: String,
    event: String,
    data: Value,
}

impl Msg {
    fn is(&self, action: &str, name: &str) -> bool {
        self.event == "container" && self.data["action"] == action && self.data["name"] == name
    }
}

/// A raw HTTP/1.1 event stream: de-chunks the body and splits it into SSE messages.
struct Stream {
    sock: TcpStream,
    raw: Vec<u8>,
    body: Vec<u8>,
    ended: bool,
    /// Every message received so far, in order.
    seen: Vec<Msg>,
    /// Comments (keep-alives) received so far.
    comments: usize,
}

/// Opens the stream with `headers`; `Err` holds the status and body of a refusal.
fn open(d: &Daemon, headers: &[(&str, &str)]) -> Result<Stream, (u16, String)> {
    let mut sock = TcpStream::connect(("127.0.0.1", d.port)).unwrap();
    let mut req = "GET /api/v1/events HTTP/1.1\r\n".to_owned();
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        req.push_str(&format!("Host: 127.0.0.1:{}\r\n", d.port));
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("Accept: text/event-stream\r\n\r\n");
    sock.write_all(req.as_bytes()).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut raw = Vec::new();
    let split = loop {
        if let Some(p) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break p;
        }
        assert!(Instant::now() < deadline, "no response head");
        let mut buf = [0u8; 4096];
        match sock.read(&mut buf) {
            Ok(0) => panic!("closed before a response head"),
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
    };
    let head = String::from_utf8_lossy(&raw[..split]).to_lowercase();
    let status: u16 = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap();
    let rest = raw[split + 4..].to_vec();
    if status != 200 {
        // Error answers are small and complete (content-length): read what is there.
        let mut s = Stream {
            sock,
            raw: Vec::new(),
            body: rest,
            ended: false,
            seen: Vec::new(),
            comments: 0,
        };
        let until = Instant::now() + Duration::from_secs(2);
        while Instant::now() < until && serde_json::from_slice::<Value>(&s.body).is_err() {
            let mut buf = [0u8; 4096];
            match s.sock.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => s.body.extend_from_slice(&buf[..n]),
                Err(_) => {}
            }
        }
        return Err((status, String::from_utf8_lossy(&s.body).into_owned()));
    }
    assert!(
        head.contains("content-type: text/event-stream"),
        "event stream content type: {head}"
    );
    assert!(
        !head.contains("content-encoding"),
        "the stream is never compressed: {head}"
    );
    assert!(head.contains("transfer-encoding: chunked"), "{head}");
    Ok(Stream {
        sock,
        raw: rest,
        body: Vec::new(),
        ended: false,
        seen: Vec::new(),
        comments: 0,
    })
}

impl Stream {
    /// Moves complete chunks from `raw` to `body`.
    fn dechunk(&mut self) {
        while let Some(pos) = self.raw.windows(2).position(|w| w == b"\r\n") {
            let line = String::from_utf8_lossy(&self.raw[..pos]).into_owned();
            let size = usize::from_str_radix(line.split(';').next().unwrap().trim(), 16).unwrap();
            if size == 0 {
                self.ended = true;
                self.raw.clear();
                return;
            }
            let start = pos + 2;
            if self.raw.len() < start + size + 2 {
                return;
            }
            self.body.extend_from_slice(&self.raw[start..start + size]);
            self.raw.drain(..start + size + 2);
        }
    }

    /// The next complete message in `body`, skipping comments (keep-alives).
    fn parse(&mut self) -> Option<Msg> {
        loop {
            let end = self.body.windows(2).position(|w| w == b"\n\n")?;
            let block = String::from_utf8_lossy(&self.body[..end]).into_owned();
            self.body.drain(..end + 2);
            let (mut id, mut event, mut data) = (String::new(), String::new(), String::new());
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("id:") {
                    id = v.trim().to_owned();
                } else if let Some(v) = line.strip_prefix("event:") {
                    event = v.trim().to_owned();
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push_str(v.trim_start());
                }
            }
            if event.is_empty() && data.is_empty() {
                self.comments += block.lines().filter(|l| l.starts_with(':')).count();
                continue;
            }
            let data: Value = serde_json::from_str(&data).unwrap();
            assert_eq!(
                data["type"],
                event.as_str(),
                "event: matches the data's type"
            );
            let m = Msg { id, event, data };
            self.seen.push(m.clone());
            return Some(m);
        }
    }

    /// The next message, or `None` after `timeout` (or at the end of the stream).
    fn next(&mut self, timeout: Duration) -> Option<Msg> {
        let deadline = Instant::now() + timeout;
        loop {
            self.dechunk();
            if let Some(m) = self.parse() {
                return Some(m);
            }
            if self.ended || Instant::now() >= deadline {
                return None;
            }
            let mut buf = [0u8; 16384];
            match self.sock.read(&mut buf) {
                Ok(0) => self.ended = true,
                Ok(n) => {
                    self.raw.extend_from_slice(&buf[..n]);
                    self.dechunk();
                }
                Err(_) => {}
            }
        }
    }

    /// The first message received so far that matches, else reads until one does; panics
    /// after `timeout`.
    #[track_caller]
    fn wait(&mut self, timeout: Duration, what: &str, pred: impl Fn(&Msg) -> bool) -> Msg {
        if let Some(m) = self.seen.iter().find(|m| pred(m)) {
            return m.clone();
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next(left) {
                Some(m) if pred(&m) => return m,
                Some(_) => {}
                None => panic!("no {what} within {timeout:?}; seen: {:#?}", self.seen),
            }
        }
    }

    /// Everything that arrives within `time`.
    fn drain(&mut self, time: Duration) {
        let deadline = Instant::now() + time;
        while let Some(_m) = self.next(deadline.saturating_duration_since(Instant::now())) {}
    }

    /// Names of the containers this stream was told about, in lifecycle events and stats.
    fn names(&self) -> Vec<String> {
        let mut out = Vec::new();
        for m in &self.seen {
            match m.event.as_str() {
                "container" => out.push(m.data["name"].as_str().unwrap().to_owned()),
                "stats" => {
                    for s in m.data["stats"].as_array().unwrap() {
                        out.push(format!(
                            "{}:{}",
                            s["kind"].as_str().unwrap(),
                            s["name"].as_str().unwrap()
                        ));
                        out.push(format!("team:{}", s["team"].as_str().unwrap()));
                    }
                }
                _ => {}
            }
        }
        out
    }
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// One JSON request as `token`.
fn call(d: &Daemon, token: &str, method: &str, path: &str, body: Option<Value>) -> Value {
    let auth = bearer(token);
    let mut headers = vec![("authorization", auth.as_str())];
    if body.is_some() {
        headers.push(("content-type", "application/json"));
    }
    let body = body.map(|b| b.to_string());
    let r = d.http(method, path, &headers, body.as_deref());
    assert!(
        (200..300).contains(&r.status),
        "{method} {path}: {} {}",
        r.status,
        r.body
    );
    if r.body.is_empty() {
        Value::Null
    } else {
        r.json()
    }
}

#[test]
fn events_need_credentials_a_known_host_and_the_same_origin() {
    let d = Daemon::start();
    let token = d.admin_token();
    let auth = bearer(&token);

    let (status, body) = open(&d, &[]).err().expect("refused without credentials");
    assert_eq!(status, 401, "{body}");
    let (status, body) = open(&d, &[("authorization", "Bearer not-a-token")])
        .err()
        .expect("refused with a bad token");
    assert_eq!(status, 401, "{body}");
    let (status, body) = open(&d, &[("authorization", &auth), ("host", "evil.example:80")])
        .err()
        .expect("refused for a foreign host");
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("bad_host"), "{body}");
    let (status, body) = open(
        &d,
        &[("authorization", &auth), ("origin", "http://evil.example")],
    )
    .err()
    .expect("refused for a foreign origin");
    assert_eq!(status, 403, "{body}");
    let (status, _) = open(
        &d,
        &[("authorization", &auth), ("sec-fetch-site", "cross-site")],
    )
    .err()
    .expect("refused cross-site");
    assert_eq!(status, 403);

    // Accepted: same origin, and over the name localhost too. A stream starts with stats.
    let origin = format!("http://127.0.0.1:{}", d.port);
    let mut s = open(
        &d,
        &[
            ("authorization", &auth),
            ("origin", &origin),
            ("accept-encoding", "gzip, br"),
        ],
    )
    .unwrap();
    let first = s.next(Duration::from_secs(5)).expect("a first message");
    assert_eq!(first.event, "stats", "{first:?}");
    assert!(first.id.parse::<u64>().is_ok(), "numeric id: {first:?}");
    let host = format!("localhost:{}", d.port);
    let mut s = open(&d, &[("authorization", &auth), ("host", &host)]).unwrap();
    assert_eq!(s.next(Duration::from_secs(5)).unwrap().event, "stats");
}

#[test]
fn lifecycle_and_stats_stream_resume_and_stay_within_the_callers_teams() {
    let d = Daemon::start_with(&["--sample-interval", "1"]);
    let _reaper = Reaper::new(&d);
    let admin = d.admin_token();
    for t in ["team-a", "team-b"] {
        call(
            &d,
            &admin,
            "POST",
            "/api/v1/teams",
            Some(json!({"name": t})),
        );
    }
    for (u, role, team) in [
        ("view-a", "viewer", "team-a"),
        ("op-b", "operator", "team-b"),
    ] {
        let body =
            json!({"name": u, "role": role, "teams": [team], "password": "a long password 123"});
        call(&d, &admin, "POST", "/api/v1/users", Some(body));
    }
    let (view_a, op_b) = (d.token_for("view-a"), d.token_for("op-b"));
    let rootfs = Rootfs::new();
    let root = rootfs.path().display().to_string();

    let mut all = open(&d, &[("authorization", &bearer(&admin))]).unwrap();
    let mut a = open(&d, &[("authorization", &bearer(&view_a))]).unwrap();
    let mut b = open(&d, &[("authorization", &bearer(&op_b))]).unwrap();
    let t = Duration::from_secs(20);
    let before = all.wait(t, "first stats", |m| m.event == "stats");

    // Team A's container: created, started, stopped (with its exit code), as they happen.
    let c = call(
        &d,
        &admin,
        "POST",
        "/api/v1/containers",
        Some(json!({"name": "ev-a", "team": "team-a", "rootfs": root,
                    "command": ["sleep", "1000"], "start": true})),
    );
    assert_eq!(c["status"], "running");
    let created = all.wait(t, "created", |m| m.is("created", "ev-a"));
    assert_eq!(created.data["team"], "team-a");
    assert_eq!(created.data["status"], "created");
    assert_eq!(created.data["actor"], "admin");
    let started = all.wait(t, "started", |m| m.is("started", "ev-a"));
    assert_eq!(started.data["status"], "running");
    assert!(
        started.id.parse::<u64>().unwrap() > created.id.parse::<u64>().unwrap(),
        "ids grow: {created:?} {started:?}"
    );
    // Live stats from the sampler, with the new container in them.
    let stats = all.wait(t, "stats of ev-a", |m| {
        m.event == "stats"
            && m.data["stats"].as_array().unwrap().iter().any(|s| {
                s["name"] == "ev-a" && s["kind"] == "container" && s["pids"].as_u64() >= Some(1)
            })
    });
    assert_eq!(stats.data["interval_secs"], 1.0);

    // Team B's container, made by its operator.
    call(
        &d,
        &admin,
        "POST",
        "/api/v1/containers",
        Some(json!({"name": "ev-b", "team": "team-b", "rootfs": root,
                    "command": ["sleep", "1000"], "start": true})),
    );
    call(
        &d,
        &admin,
        "POST",
        "/api/v1/containers/ev-a/stop",
        Some(json!({"timeout": 0})),
    );
    let stopped = all.wait(t, "stopped", |m| m.is("stopped", "ev-a"));
    assert_eq!(stopped.data["status"], "exited");
    assert_eq!(
        stopped.data["exit_code"], 137,
        "SIGKILL after a 0 s timeout"
    );
    assert_eq!(stopped.data["actor"], "admin");
    all.wait(t, "ev-b started", |m| m.is("started", "ev-b"));
    // A live re-limit: `updated`, naming who asked.
    call(
        &d,
        &admin,
        "PATCH",
        "/api/v1/containers/ev-b/limits",
        Some(json!({"pids_max": 100})),
    );
    let updated = all.wait(t, "ev-b updated", |m| m.is("updated", "ev-b"));
    assert_eq!(updated.data["status"], "running");
    assert_eq!(updated.data["actor"], "admin");

    // Each team's members get their team's events and stats, and nothing of the other team.
    a.wait(t, "ev-a stopped for viewer A", |m| m.is("stopped", "ev-a"));
    b.wait(t, "ev-b started for operator B", |m| {
        m.is("started", "ev-b")
    });
    b.wait(t, "ev-b stats for operator B", |m| {
        m.event == "stats"
            && m.data["stats"]
                .as_array()
                .unwrap()
                .iter()
                .any(|s| s["name"] == "ev-b")
    });
    a.drain(Duration::from_millis(2500));
    b.drain(Duration::from_millis(500));
    let (na, nb) = (a.names(), b.names());
    assert!(na.iter().any(|n| n == "ev-a"), "{na:?}");
    assert!(
        na.iter()
            .all(|n| !n.contains("ev-b") && !n.contains("team-b")),
        "viewer A sees team B: {na:?}"
    );
    assert!(nb.iter().any(|n| n == "ev-b"), "{nb:?}");
    assert!(
        nb.iter()
            .all(|n| !n.contains("ev-a") && !n.contains("team-a")),
        "operator B sees team A: {nb:?}"
    );
    assert!(
        a.seen.iter().filter(|m| m.event == "stats").count() >= 2,
        "viewer A gets stats: {:#?}",
        a.seen
    );

    // Resume: an admin that saw only `before` gets every lifecycle event since, in order.
    drop(all);
    call(&d, &admin, "DELETE", "/api/v1/containers/ev-a", None);
    let mut r = open(
        &d,
        &[
            ("authorization", &bearer(&admin)),
            ("last-event-id", &before.id),
        ],
    )
    .unwrap();
    let mut replayed = Vec::new();
    loop {
        let m = r.next(Duration::from_secs(5)).expect("replay, then stats");
        if m.event == "stats" {
            break;
        }
        assert_eq!(m.event, "container", "{m:?}");
        replayed.push(format!(
            "{} {}",
            m.data["name"].as_str().unwrap(),
            m.data["action"].as_str().unwrap()
        ));
    }
    assert_eq!(
        replayed,
        [
            "ev-a created",
            "ev-a started",
            "ev-b created",
            "ev-b started",
            "ev-a stopped",
            "ev-b updated",
            "ev-a removed"
        ],
        "missed events replayed in order"
    );
    // The viewer resuming from the same id gets only team A's part of it.
    let mut ra = open(
        &d,
        &[
            ("authorization", &bearer(&view_a)),
            ("last-event-id", &before.id),
        ],
    )
    .unwrap();
    let mut got = Vec::new();
    while let Some(m) = ra.next(Duration::from_secs(5)) {
        if m.event == "stats" {
            break;
        }
        got.push(format!(
            "{} {}",
            m.data["name"].as_str().unwrap(),
            m.data["action"].as_str().unwrap()
        ));
    }
    assert_eq!(
        got,
        [
            "ev-a created",
            "ev-a started",
            "ev-a stopped",
            "ev-a removed"
        ]
    );
    // A resumed stream is live too, and its ids continue where the replay ended.
    let last = r.seen.last().unwrap().id.clone();
    call(
        &d,
        &admin,
        "POST",
        "/api/v1/containers/ev-b/stop",
        Some(json!({"timeout": 0})),
    );
    let m = r.wait(t, "ev-b stopped", |m| m.is("stopped", "ev-b"));
    assert!(m.id.parse::<u64>().unwrap() > last.parse::<u64>().unwrap());
    // An id this daemon never gave out (an earlier run's, or garbage): reset, then stats.
    for id in ["1", "not-a-number", "99999999999999999"] {
        let mut x = open(
            &d,
            &[("authorization", &bearer(&admin)), ("last-event-id", id)],
        )
        .unwrap();
        let m = x.next(Duration::from_secs(5)).unwrap();
        assert_eq!(m.event, "reset", "Last-Event-ID {id}: {m:?}");
        assert_eq!(m.data, json!({"type": "reset"}));
        assert_eq!(x.next(Duration::from_secs(5)).unwrap().event, "stats");
    }
    // A revoked token's stream ends (re-checked every 10 s).
    let tokens = call(&d, &admin, "GET", "/api/v1/tokens", None);
    let id = tokens
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["user"] == "op-b")
        .map(|t| t["id"].as_i64().unwrap())
        .max()
        .unwrap();
    call(&d, &admin, "DELETE", &format!("/api/v1/tokens/{id}"), None);
    b.drain(Duration::from_secs(12));
    assert!(b.ended, "the stream of a revoked token ends");
}

#[test]
fn a_stream_outlives_the_request_timeout_with_keep_alives_and_ends_at_shutdown() {
    let mut d = Daemon::start();
    let mut s = open(&d, &[("authorization", &bearer(&d.admin_token()))]).unwrap();
    assert_eq!(s.next(Duration::from_secs(5)).unwrap().event, "stats");
    // Longer than the 30 s request timeout (which must time only the answer's head).
    s.drain(Duration::from_secs(35));
    assert!(!s.ended, "the stream is still open after 35 s");
    assert!(
        s.comments >= 2,
        "a keep-alive comment every 15 s, got {}",
        s.comments
    );
    // SIGTERM: the daemon ends open streams and exits cleanly (it is SIGKILLed after 15 s
    // otherwise, which is not a success).
    let status = d.stop();
    assert!(status.success(), "clean exit with a stream open: {status}");
    s.drain(Duration::from_secs(2));
    assert!(s.ended, "the stream ended with the daemon");
}

/// An OOM kill inside a running container is announced as `oom` — by the sampler, which reads
/// the kernel's OOM-kill counter, whether or not a stream was open before — and the container
/// keeps running (only the process that outgrew the limit died).
#[test]
fn an_oom_kill_inside_a_running_container_is_announced() {
    let d = Daemon::start_with(&["--sample-interval", "1"]);
    let _reaper = Reaper::new(&d);
    let admin = d.admin_token();
    let rootfs = Rootfs::new();
    let root = rootfs.path().display().to_string();
    // `tail` must hold the whole newline-free input (address space capped at 256 MiB, against
    // a 32 MiB limit). It makes itself the OOM killer's first choice, so the victim is never
    // the shell; it reads /dev/zero itself, since a writer into its pipe still charging pipe
    // pages after tail was reaped is a second OOM, whose victim is the shell (seen under load).
    let c = call(
        &d,
        &admin,
        "POST",
        "/api/v1/containers",
        Some(json!({"name": "ev-oom", "rootfs": root,
                    "command": ["sh", "-c", "(echo 1000 > /proc/self/oom_score_adj; ulimit -v 262144; exec tail /dev/zero); sleep 1000"],
                    "limits": {"memory_max": 32 << 20}, "start": true})),
    );
    assert_eq!(c["status"], "running");
    let mut s = open(&d, &[("authorization", &bearer(&admin))]).unwrap();
    let oom = s.wait(Duration::from_secs(30), "oom of ev-oom", |m| {
        m.is("oom", "ev-oom")
    });
    assert_eq!(oom.data["status"], "running", "{:#?}", s.seen);
    assert_eq!(oom.data["team"], "default");
    let got = call(&d, &admin, "GET", "/api/v1/containers/ev-oom", None);
    assert_eq!(got["status"], "running", "the shell outlived its pipeline");
    // Each kill is announced once.
    s.drain(Duration::from_secs(3));
    let n = s.seen.iter().filter(|m| m.is("oom", "ev-oom")).count();
    assert_eq!(n, 1, "{:#?}", s.seen);

    // A kill right before the container ends is still announced — by the final reading if no
    // tick saw it — and before `died`, as Docker orders them.
    call(
        &d,
        &admin,
        "POST",
        "/api/v1/containers",
        Some(
            json!({"name": "ev-oom-end", "rootfs": rootfs.path().display().to_string(),
                    "command": ["sh", "-c", "(echo 1000 > /proc/self/oom_score_adj; ulimit -v 262144; exec tail /dev/zero)"],
                    "limits": {"memory_max": 32 << 20}, "start": true}),
        ),
    );
    let died = s.wait(Duration::from_secs(30), "ev-oom-end died", |m| {
        m.is("died", "ev-oom-end")
    });
    assert_eq!(died.data["exit_code"], 137, "tail's SIGKILL");
    let ooms: Vec<_> = s
        .seen
        .iter()
        .filter(|m| m.is("oom", "ev-oom-end"))
        .collect();
    assert_eq!(ooms.len(), 1, "{:#?}", s.seen);
    assert!(
        ooms[0].id.parse::<u64>().unwrap() < died.id.parse::<u64>().unwrap(),
        "oom before died: {ooms:?} {died:?}"
    );
}
