//! `corral events`: follows `GET /api/v1/events` (Server-Sent Events) and prints one line per
//! lifecycle or budget event until Ctrl-C, like `docker events`. The stats snapshots the stream
//! also carries (one per sampling tick) are skipped unless `--stats`.

use anyhow::bail;
use clap::Args;
use wire::events::Event;

use crate::{client::Client, metering::calendar::format_time};

#[derive(Debug, Args)]
pub struct EventsArgs {
    /// Only this container's events (name).
    #[arg(long)]
    pub container: Option<String>,
    /// Only this team's events.
    #[arg(long)]
    pub team: Option<String>,
    /// Also print the live stats snapshots (one line per container and tick).
    #[arg(long)]
    pub stats: bool,
    /// Print each event's JSON (one object a line) instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Reassembles SSE messages from the stream's chunks: `event:`/`data:` lines up to a blank line.
#[derive(Default)]
struct Sse {
    line: Vec<u8>,
    data: String,
}

impl Sse {
    /// Feeds a chunk; calls `on_data` with the `data:` of every complete message.
    fn feed(&mut self, chunk: &[u8], on_data: &mut impl FnMut(&str)) {
        for &b in chunk {
            if b != b'\n' {
                self.line.push(b);
                continue;
            }
            let line = String::from_utf8_lossy(&self.line)
                .trim_end_matches('\r')
                .to_owned();
            self.line.clear();
            if line.is_empty() {
                if !self.data.is_empty() {
                    on_data(&self.data);
                    self.data.clear();
                }
            } else if let Some(d) = line.strip_prefix("data:") {
                if !self.data.is_empty() {
                    self.data.push('\n');
                }
                self.data.push_str(d.strip_prefix(' ').unwrap_or(d));
            }
            // `id:`, `event:` and `: keep-alive` comments: the data says it all.
        }
    }
}

pub async fn events(client: &Client, a: &EventsArgs) -> anyhow::Result<()> {
    let mut sse = Sse::default();
    let mut bad = None;
    let mut out = std::io::stdout();
    let streamed = client.stream("/api/v1/events", |chunk| {
        sse.feed(
            chunk,
            &mut |data| match serde_json::from_str::<Event>(data) {
                Ok(e) => {
                    for line in lines(&e, a) {
                        use std::io::Write;
                        let _ = writeln!(out, "{line}");
                    }
                }
                Err(e) => bad = Some(e.to_string()),
            },
        );
    });
    tokio::select! {
        r = streamed => r?,
        _ = tokio::signal::ctrl_c() => return Ok(()),
    }
    if let Some(e) = bad {
        bail!("the daemon sent an event that is not valid: {e}");
    }
    bail!("the daemon ended the event stream (stopped, or the session or token ended)")
}

/// The lines one event prints under `a`'s filters (none when filtered out).
fn lines(e: &Event, a: &EventsArgs) -> Vec<String> {
    let json = |v: &Event| serde_json::to_string(v).unwrap_or_default();
    match e {
        Event::Container(c) => {
            if a.container.as_ref().is_some_and(|n| *n != c.name)
                || a.team.as_ref().is_some_and(|t| *t != c.team)
            {
                return Vec::new();
            }
            if a.json {
                return vec![json(e)];
            }
            let mut line = format!(
                "{} container {} {} (team={}, status={}",
                format_time(c.ts.div_euclid(1000)),
                c.action,
                c.name,
                c.team,
                c.status
            );
            if let Some(code) = c.exit_code {
                line.push_str(&format!(", exit_code={code}"));
            }
            if let Some(actor) = &c.actor {
                line.push_str(&format!(", by={actor}"));
            }
            line.push(')');
            vec![line]
        }
        Event::Budget(b) => {
            if a.container.is_some() || a.team.as_ref().is_some_and(|t| *t != b.team) {
                return Vec::new();
            }
            if a.json {
                return vec![json(e)];
            }
            let step = |s: Option<usize>| s.map_or_else(|| "none".to_owned(), |i| i.to_string());
            vec![format!(
                "{} budget {} {} (step {} -> {}, {:.1} %: {})",
                format_time(b.ts.div_euclid(1000)),
                b.action,
                b.team,
                step(b.from_step),
                step(b.to_step),
                b.percent,
                b.reason
            )]
        }
        Event::Stats(s) if a.stats => s
            .stats
            .iter()
            .filter(|l| {
                a.container.as_ref().is_none_or(|n| *n == l.name)
                    && a.team.as_ref().is_none_or(|t| *t == l.team)
            })
            .map(|l| {
                if a.json {
                    serde_json::to_string(l).unwrap_or_default()
                } else {
                    format!(
                        "{} stats {} {} (team={}, cpu={:.3} cores, mem={} B, pids={})",
                        format_time(l.ts.div_euclid(1000)),
                        l.kind,
                        l.name,
                        l.team,
                        l.cpu_cores,
                        l.mem_bytes,
                        l.pids
                    )
                }
            })
            .collect(),
        Event::Stats(_) => Vec::new(),
        Event::Reset if a.json => vec![json(e)],
        Event::Reset => vec!["reset: events were missed; list again with corral ps -a".to_owned()],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_span_chunks() {
        let mut sse = Sse::default();
        let mut got = Vec::new();
        let stream = b": keep-alive\n\nid: 7\nevent: container\ndata: {\"a\":1}\n\nid: 8\r\ndata: x\r\ndata: y\r\n\r\n";
        for chunk in stream.chunks(5) {
            sse.feed(chunk, &mut |d| got.push(d.to_owned()));
        }
        assert_eq!(got, ["{\"a\":1}", "x\ny"]);
    }

    #[test]
    fn filters_and_text() {
        let e = Event::Container(wire::events::ContainerEvent {
            name: "web".into(),
            id: None,
            team: "blue".into(),
            action: "died".into(),
            status: "exited".into(),
            exit_code: Some(3),
            actor: None,
            ts: 1_800_000_000_000,
        });
        let args = |container: Option<&str>| EventsArgs {
            container: container.map(str::to_owned),
            team: None,
            stats: false,
            json: false,
        };
        assert_eq!(
            lines(&e, &args(None)),
            ["2027-01-15T08:00:00Z container died web (team=blue, status=exited, exit_code=3)"]
        );
        assert!(lines(&e, &args(Some("db"))).is_empty());
        let stats = Event::Stats(wire::billing::LiveStats::default());
        assert!(lines(&stats, &args(None)).is_empty());
    }
}
