//! `corral prometheus config` and `corral prometheus rules`: what one Prometheus needs to scrape
//! a fleet of Corral hosts (issue 19). Printed locally, no daemon asked.
//!
//! Each host has its own users and API tokens, so the scrape config has one job per host, each
//! with its token file; the series tell the hosts apart by their `host` label (`corral serve
//! --host-id`), and the recording rules (`prometheus-rules.yml`) sum them per team.

use clap::{Args, Subcommand};

/// The recording rules, as shipped.
pub const RULES: &str = include_str!("prometheus-rules.yml");

#[derive(Debug, Args)]
pub struct PrometheusArgs {
    #[command(subcommand)]
    pub cmd: PrometheusCmd,
}

#[derive(Debug, Subcommand)]
pub enum PrometheusCmd {
    /// A prometheus.yml scraping these hosts: one job per host, each with its own token file.
    Config {
        /// A host as HOST_ID=ADDRESS (its `--host-id` and the host:port of its `--listen`);
        /// repeat for each host.
        #[arg(long = "target", value_name = "HOST_ID=ADDR", required = true)]
        targets: Vec<String>,
        /// Where each host's API token lies (`corral token create` on that host); `{host}` is
        /// replaced by the host id.
        #[arg(
            long,
            value_name = "PATH",
            default_value = "/etc/prometheus/corral-{host}.token"
        )]
        token_file: String,
        /// `https` (the hosts' `--tls-cert`, trusted by Prometheus) or `http` (loopback or an
        /// SSH tunnel only).
        #[arg(long, default_value = "https")]
        scheme: String,
        /// Scrape and rule-evaluation interval, e.g. 15s or 1m.
        #[arg(long, default_value = "15s")]
        interval: String,
        /// The rules file the config loads (`corral prometheus rules > PATH`).
        #[arg(
            long,
            value_name = "PATH",
            default_value = "/etc/prometheus/corral-rules.yml"
        )]
        rules_file: String,
    },
    /// Recording rules: CPU cores, memory and this month's cost per team across the fleet.
    Rules,
}

/// Runs `corral prometheus …`.
pub fn run(a: &PrometheusArgs) -> anyhow::Result<()> {
    match &a.cmd {
        PrometheusCmd::Rules => print!("{RULES}"),
        PrometheusCmd::Config {
            targets,
            token_file,
            scheme,
            interval,
            rules_file,
        } => print!(
            "{}",
            config(targets, token_file, scheme, interval, rules_file)?
        ),
    }
    Ok(())
}

/// A YAML string scalar, single-quoted (a `'` doubled): safe for any path or address.
fn quoted(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// `15s`, `1m`, `500ms`, `2h`: Prometheus' duration, one unit.
fn valid_interval(s: &str) -> bool {
    let digits = s.chars().take_while(char::is_ascii_digit).count();
    digits > 0 && matches!(&s[digits..], "ms" | "s" | "m" | "h")
}

/// The scrape config for `targets` (`HOST_ID=ADDR`).
pub fn config(
    targets: &[String],
    token_file: &str,
    scheme: &str,
    interval: &str,
    rules_file: &str,
) -> anyhow::Result<String> {
    anyhow::ensure!(
        matches!(scheme, "http" | "https"),
        "--scheme: {scheme:?} is neither https nor http"
    );
    anyhow::ensure!(
        valid_interval(interval),
        "--interval: {interval:?} is not a duration like 15s, 1m or 500ms"
    );
    let mut out = format!(
        "# Written by `corral prometheus config`: one job per Corral host, each with its own\n\
         # API token. Series carry `host` and `team`; {rules} sums them per team.\n\
         global:\n  scrape_interval: {interval}\n  evaluation_interval: {interval}\n\
         rule_files:\n  - {rules}\nscrape_configs:\n",
        rules = quoted(rules_file)
    );
    let mut seen = std::collections::HashSet::new();
    for t in targets {
        let (host, addr) = t.split_once('=').ok_or_else(|| {
            anyhow::anyhow!("--target: {t:?} is not HOST_ID=ADDRESS (e.g. node-1=10.0.0.5:7700)")
        })?;
        crate::config::parse_host_id(host).map_err(|e| anyhow::anyhow!("--target: {e}"))?;
        anyhow::ensure!(
            !addr.is_empty() && !addr.contains(['/', ' ', '\'']),
            "--target: {addr:?} is not a host:port address"
        );
        anyhow::ensure!(seen.insert(host), "--target: host id {host} is given twice");
        out.push_str(&format!(
            "  - job_name: {job}\n    scheme: {scheme}\n    metrics_path: /metrics\n    \
             authorization:\n      type: Bearer\n      credentials_file: {token}\n    \
             static_configs:\n      - targets: [{addr}]\n",
            job = quoted(&format!("corral-{host}")),
            token = quoted(&token_file.replace("{host}", host)),
            addr = quoted(addr),
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_job_per_host_with_its_token_file() {
        let text = config(
            &["a=10.0.0.1:7700".into(), "b=10.0.0.2:7700".into()],
            "/etc/prometheus/corral-{host}.token",
            "https",
            "15s",
            "/etc/prometheus/corral-rules.yml",
        )
        .expect("config");
        assert!(text.contains("  - job_name: 'corral-a'\n"), "{text}");
        assert!(text.contains("credentials_file: '/etc/prometheus/corral-b.token'"));
        assert!(text.contains("targets: ['10.0.0.2:7700']"));
        for (targets, scheme, interval) in [
            (vec!["a"], "https", "15s"),
            (vec!["a=x", "a=y"], "https", "15s"),
            (vec!["a b=x"], "https", "15s"),
            (vec!["a=x"], "ftp", "15s"),
            (vec!["a=x"], "https", "15"),
        ] {
            let t: Vec<String> = targets.iter().map(|s| (*s).to_owned()).collect();
            assert!(
                config(&t, "f", scheme, interval, "r").is_err(),
                "{targets:?}"
            );
        }
    }
}
