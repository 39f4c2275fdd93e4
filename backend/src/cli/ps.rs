//! `corral ps`: the table, `-q` (ids only), `--filter` and docker's `--format` Go-template
//! subset (`{{.ID}}`, `{{.Names}}`, `{{.Label "k"}}`, `{{json .}}`, a `table ` prefix with
//! headers, `\t`). Pure: the daemon's list in, text out.

use anyhow::bail;
use clap::Args;

#[derive(Debug, Args)]
pub struct PsArgs {
    /// Also created and exited containers.
    #[arg(short, long)]
    pub all: bool,
    /// Print only container ids (full ids: every command takes them, as names).
    #[arg(short, long)]
    pub quiet: bool,
    /// Filter: label=KEY, label=KEY=VALUE, name=PART, status=created|running|paused|exited,
    /// team=TEAM, id=PREFIX (repeatable; all must hold; a status filter implies -a).
    #[arg(short, long = "filter", value_name = "KEY=VALUE")]
    pub filter: Vec<String>,
    /// A Go template like docker's: {{.ID}} {{.Names}} {{.Image}} {{.Command}} {{.CreatedAt}}
    /// {{.Ports}} {{.Status}} {{.State}} {{.Team}} {{.Labels}} {{.Label "KEY"}} {{json .}};
    /// `table ` prints a header row and aligns `\t`-separated columns. `json` alone is
    /// `{{json .}}`.
    #[arg(long, value_name = "TEMPLATE")]
    pub format: Option<String>,
}

/// The fields a template may name, in `{{json .}}` order.
const FIELDS: [&str; 10] = [
    "ID",
    "Names",
    "Image",
    "Command",
    "CreatedAt",
    "Ports",
    "Status",
    "State",
    "Team",
    "Labels",
];

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Text(String),
    /// One of [`FIELDS`] (`Name` is read as `Names`).
    Field(&'static str),
    Label(String),
    Json,
}

#[derive(Debug, Clone, PartialEq)]
enum Filter {
    Label(String, Option<String>),
    Name(String),
    Status(String),
    Team(String),
    Id(String),
}

/// How `ps` prints, parsed from its flags before anything is asked of the daemon.
#[derive(Debug)]
pub struct View {
    all: bool,
    quiet: bool,
    table: bool,
    template: Option<Vec<Part>>,
    filters: Vec<Filter>,
}

impl View {
    pub fn new(a: &PsArgs) -> anyhow::Result<Self> {
        let filters = a
            .filter
            .iter()
            .map(|f| parse_filter(f))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let (table, template) = match a.format.as_deref() {
            None => (false, None),
            Some("json") => (false, Some(vec![Part::Json])),
            Some(f) => {
                let (table, body) = match f.strip_prefix("table") {
                    Some(rest) if rest.is_empty() || rest.starts_with([' ', '\t']) => {
                        (true, rest.trim_start_matches([' ', '\t']))
                    }
                    _ => (false, f),
                };
                let parts = parse_template(body)?;
                // `--format table` alone is the default table.
                (table, (!parts.is_empty()).then_some(parts))
            }
        };
        Ok(Self {
            all: a.all || filters.iter().any(|f| matches!(f, Filter::Status(_))),
            quiet: a.quiet,
            table,
            template,
            filters,
        })
    }

    /// Whether to ask the daemon for every container, not only running and paused ones.
    pub fn all(&self) -> bool {
        self.all
    }

    /// The output for `list` (`now` in Unix seconds, for docker's "Up 5 minutes").
    pub fn render(&self, list: &[wire::Container], now: i64) -> anyhow::Result<String> {
        let shown: Vec<&wire::Container> = list
            .iter()
            .filter(|c| self.filters.iter().all(|f| matches(f, c)))
            .collect();
        if self.quiet {
            return Ok(shown.iter().map(|c| format!("{}\n", c.id)).collect());
        }
        let Some(template) = &self.template else {
            return Ok(default_table(&shown));
        };
        let mut rows: Vec<String> = Vec::new();
        if self.table {
            rows.push(
                template
                    .iter()
                    .map(|p| match p {
                        Part::Text(t) => t.clone(),
                        Part::Field(f) => header(f).to_owned(),
                        Part::Label(k) => k.to_uppercase(),
                        Part::Json => String::new(),
                    })
                    .collect(),
            );
        }
        for c in shown {
            let mut row = String::new();
            for p in template {
                match p {
                    Part::Text(t) => row.push_str(t),
                    Part::Field(f) => row.push_str(&field(c, f, now)),
                    Part::Label(k) => row.push_str(c.spec.labels.get(k).map_or("", String::as_str)),
                    Part::Json => {
                        let obj: serde_json::Map<String, serde_json::Value> = FIELDS
                            .iter()
                            .map(|f| ((*f).to_owned(), field(c, f, now).into()))
                            .collect();
                        row.push_str(&serde_json::Value::Object(obj).to_string());
                    }
                }
            }
            rows.push(row);
        }
        Ok(if self.table {
            align(&rows)
        } else {
            rows.iter().map(|r| format!("{r}\n")).collect()
        })
    }
}

fn parse_filter(f: &str) -> anyhow::Result<Filter> {
    let bad = || {
        anyhow::anyhow!(
            "--filter: {f:?} is not KEY=VALUE with KEY one of label, name, status, team, id"
        )
    };
    let (k, v) = f.split_once('=').ok_or_else(bad)?;
    Ok(match k {
        "label" => match v.split_once('=') {
            Some((k, v)) => Filter::Label(k.to_owned(), Some(v.to_owned())),
            None => Filter::Label(v.to_owned(), None),
        },
        "name" => Filter::Name(v.to_owned()),
        "status" => {
            if !["created", "running", "paused", "exited"].contains(&v) {
                bail!("--filter: status {v:?} is not one of created, running, paused, exited");
            }
            Filter::Status(v.to_owned())
        }
        "team" => Filter::Team(v.to_owned()),
        "id" => Filter::Id(v.to_owned()),
        _ => return Err(bad()),
    })
}

fn matches(f: &Filter, c: &wire::Container) -> bool {
    match f {
        Filter::Label(k, v) => c
            .spec
            .labels
            .get(k)
            .is_some_and(|have| v.as_ref().is_none_or(|v| v == have)),
        Filter::Name(n) => c.name.contains(n.as_str()),
        Filter::Status(s) => c.status == *s,
        Filter::Team(t) => c.team == *t,
        Filter::Id(p) => c.id.starts_with(p.as_str()),
    }
}

/// Splits a template into text and actions; anything it does not know is an error naming
/// `--format` and the fields it knows.
fn parse_template(t: &str) -> anyhow::Result<Vec<Part>> {
    let allowed = || {
        let mut a: Vec<String> = FIELDS.iter().map(|f| format!(".{f}")).collect();
        a.push(".Name".into());
        a.push(".Label \"KEY\"".into());
        a.push("json .".into());
        a.join(", ")
    };
    // Docker's escapes: `\t` and `\n` typed literally on the command line.
    let t = t.replace("\\t", "\t").replace("\\n", "\n");
    let mut parts = Vec::new();
    let mut rest = t.as_str();
    while let Some(open) = rest.find("{{") {
        if open > 0 {
            parts.push(Part::Text(rest[..open].to_owned()));
        }
        let Some(close) = rest[open..].find("}}") else {
            bail!("--format: an action opened with {{{{ is never closed with }}}}");
        };
        let action = rest[open + 2..open + close].trim();
        let words: Vec<&str> = action.split_whitespace().collect();
        parts.push(match words.as_slice() {
            ["json", "."] => Part::Json,
            [".Name"] => Part::Field("Names"),
            [f] if f.starts_with('.') && FIELDS.contains(&&f[1..]) => Part::Field(
                FIELDS
                    .iter()
                    .find(|x| **x == &f[1..])
                    .copied()
                    .unwrap_or("ID"),
            ),
            [".Label", key] if key.len() >= 2 && key.starts_with('"') && key.ends_with('"') => {
                Part::Label(key[1..key.len() - 1].to_owned())
            }
            _ => bail!(
                "--format: unknown field {{{{{action}}}}}: allowed are {}",
                allowed()
            ),
        });
        rest = &rest[open + close + 2..];
    }
    if !rest.is_empty() {
        parts.push(Part::Text(rest.to_owned()));
    }
    Ok(parts)
}

fn header(field: &str) -> &'static str {
    match field {
        "ID" => "CONTAINER ID",
        "Names" => "NAMES",
        "Image" => "IMAGE",
        "Command" => "COMMAND",
        "CreatedAt" => "CREATED AT",
        "Ports" => "PORTS",
        "Status" => "STATUS",
        "State" => "STATE",
        "Team" => "TEAM",
        _ => "LABELS",
    }
}

fn field(c: &wire::Container, name: &str, now: i64) -> String {
    match name {
        "ID" => c.id.clone(),
        "Names" => c.name.clone(),
        "Image" => c.image.clone(),
        "Command" => format!("{:?}", c.command.join(" ")),
        "CreatedAt" => crate::metering::calendar::format_time(c.created_at),
        "Ports" => ports(c),
        "Status" => status(c, now),
        "State" => c.status.clone(),
        "Team" => c.team.clone(),
        _ => c
            .spec
            .labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(","),
    }
}

/// As `docker ps`: `127.0.0.1:8080->80/tcp, ...`.
fn ports(c: &wire::Container) -> String {
    c.network.as_ref().map_or_else(String::new, |n| {
        let p: Vec<String> = n.ports.iter().map(ToString::to_string).collect();
        p.join(", ")
    })
}

/// Docker's status column: `Up 5 minutes`, `Up 3 seconds (Paused)`, `Exited (0) 2 hours ago`,
/// `Created`.
fn status(c: &wire::Container, now: i64) -> String {
    let since = |t: Option<i64>| human_duration(now - t.unwrap_or(now));
    match c.status.as_str() {
        "running" => format!("Up {}", since(c.started_at)),
        "paused" => format!("Up {} (Paused)", since(c.started_at)),
        "exited" => format!(
            "Exited ({}) {} ago",
            c.exit_code.unwrap_or(0),
            since(c.finished_at)
        ),
        "created" => "Created".to_owned(),
        other => other.to_owned(),
    }
}

/// Docker's `HumanDuration`.
fn human_duration(secs: i64) -> String {
    let s = secs.max(0);
    match s {
        0 => "Less than a second".to_owned(),
        1 => "1 second".to_owned(),
        2..60 => format!("{s} seconds"),
        60..120 => "About a minute".to_owned(),
        120..3600 => format!("{} minutes", s / 60),
        3600..7200 => "About an hour".to_owned(),
        7200..172_800 => format!("{} hours", s / 3600),
        172_800..1_209_600 => format!("{} days", s / 86_400),
        1_209_600..5_184_000 => format!("{} weeks", s / 604_800),
        5_184_000..63_072_000 => format!("{} months", s / 2_592_000),
        _ => format!("{} years", s / 31_536_000),
    }
}

/// Columns separated by tabs, padded to the widest cell plus 3 (docker's tabwriter).
fn align(rows: &[String]) -> String {
    let cells: Vec<Vec<&str>> = rows.iter().map(|r| r.split('\t').collect()).collect();
    let mut widths: Vec<usize> = Vec::new();
    for row in &cells {
        for (i, c) in row.iter().enumerate() {
            let w = c.chars().count();
            match widths.get_mut(i) {
                Some(x) => *x = (*x).max(w),
                None => widths.push(w),
            }
        }
    }
    let mut out = String::new();
    for row in &cells {
        let mut line = String::new();
        for (i, c) in row.iter().enumerate() {
            line.push_str(c);
            if i + 1 < row.len() {
                let pad = widths[i] + 3 - c.chars().count();
                line.push_str(&" ".repeat(pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn default_table(list: &[&wire::Container]) -> String {
    let mut out = format!(
        "{:<20} {:<12} {:<28} {:<14} {:<8} {:<24} COMMAND\n",
        "NAME", "ID", "IMAGE", "STATUS", "PID", "PORTS"
    );
    for c in list {
        let status = match (c.status.as_str(), c.exit_code) {
            ("exited", Some(code)) => format!("exited ({code})"),
            (s, _) => s.to_owned(),
        };
        out.push_str(&format!(
            "{:<20} {:<12} {:<28} {:<14} {:<8} {:<24} {}\n",
            c.name,
            &c.id[..c.id.len().min(12)],
            c.image,
            status,
            c.pid.map(|p| p.to_string()).unwrap_or_default(),
            ports(c),
            c.command.join(" ")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container(name: &str, status: &str, labels: &[(&str, &str)]) -> wire::Container {
        let spec: wire::CreateContainer = serde_json::from_value(serde_json::json!({
            "labels": labels.iter().map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<std::collections::BTreeMap<_, _>>(),
        }))
        .unwrap();
        wire::Container {
            id: format!("{name}-0123456789abcdef"),
            name: name.into(),
            team: "default".into(),
            image: "busybox:latest".into(),
            command: vec!["sleep".into(), "100".into()],
            status: status.into(),
            exit_code: (status == "exited").then_some(3),
            pid: None,
            created_at: 1_800_000_000,
            started_at: Some(1_800_000_000),
            finished_at: Some(1_800_000_100),
            restart_count: 0,
            limits: Default::default(),
            spec,
            network: None,
            team_limits: None,
            effective_limits: None,
        }
    }

    fn render(format: Option<&str>, filter: &[&str], quiet: bool) -> anyhow::Result<String> {
        let args = PsArgs {
            all: true,
            quiet,
            filter: filter.iter().map(|f| f.to_string()).collect(),
            format: format.map(str::to_owned),
        };
        let list = [
            container("web", "running", &[("tier", "front")]),
            container("db", "exited", &[("tier", "back"), ("owner", "ann")]),
        ];
        View::new(&args)?.render(&list, 1_800_000_300)
    }

    #[test]
    fn templates() {
        assert_eq!(
            render(
                Some("{{.Names}}\\t{{.State}} {{.Label \"tier\"}}"),
                &[],
                false
            )
            .unwrap(),
            "web\trunning front\ndb\texited back\n"
        );
        assert_eq!(
            render(
                Some("table {{.Name}}\\t{{.Status}}\\t{{.Labels}}"),
                &[],
                false
            )
            .unwrap(),
            format!(
                "{:<8}{:<27}LABELS\n{:<8}{:<27}tier=front\n{:<8}{:<27}owner=ann,tier=back\n",
                "NAMES", "STATUS", "web", "Up 5 minutes", "db", "Exited (3) 3 minutes ago"
            )
        );
        let json = render(Some("{{json .}}"), &["name=web"], false).unwrap();
        let v: serde_json::Value = serde_json::from_str(json.trim()).unwrap();
        assert_eq!(v["Names"], "web");
        assert_eq!(v["Command"], "\"sleep 100\"");
        assert_eq!(v["Labels"], "tier=front");
        assert_eq!(render(Some("json"), &[], false).unwrap().lines().count(), 2);
    }

    #[test]
    fn table_aligns_columns() {
        let out = render(Some("table {{.Names}}\\t{{.State}}"), &[], false).unwrap();
        assert_eq!(out, "NAMES   STATE\nweb     running\ndb      exited\n");
    }

    #[test]
    fn quiet_and_filters() {
        assert_eq!(
            render(None, &["label=tier=back"], true).unwrap(),
            "db-0123456789abcdef\n"
        );
        assert_eq!(
            render(None, &["label=owner"], true)
                .unwrap()
                .lines()
                .count(),
            1
        );
        assert_eq!(
            render(None, &["status=running"], true)
                .unwrap()
                .lines()
                .count(),
            1
        );
        assert_eq!(
            render(None, &["team=default"], true)
                .unwrap()
                .lines()
                .count(),
            2
        );
        let e = render(None, &["colour=red"], true).unwrap_err().to_string();
        assert!(e.starts_with("--filter: "), "{e}");
        let e = render(None, &["status=dead"], true)
            .unwrap_err()
            .to_string();
        assert!(e.contains("created, running, paused, exited"), "{e}");
    }

    #[test]
    fn unknown_fields_are_named() {
        let e = render(Some("{{.Nope}}"), &[], false)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("--format: unknown field {{.Nope}}"), "{e}");
        assert!(e.contains(".Names") && e.contains(".Label \"KEY\""), "{e}");
        let e = render(Some("{{.ID"), &[], false).unwrap_err().to_string();
        assert!(e.starts_with("--format: "), "{e}");
    }

    #[test]
    fn durations() {
        assert_eq!(human_duration(0), "Less than a second");
        assert_eq!(human_duration(59), "59 seconds");
        assert_eq!(human_duration(90), "About a minute");
        assert_eq!(human_duration(7200), "2 hours");
        assert_eq!(human_duration(3 * 86_400), "3 days");
    }
}
