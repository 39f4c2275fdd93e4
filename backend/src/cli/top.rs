//! `corral top NAME`: the processes of a running container (`GET
//! /api/v1/containers/{name}/top`) in `ps -ef`'s columns, with host PIDs, like `docker top`.

use clap::Args;

use crate::{
    client::Client,
    metering::sampler::wall_ms,
    runtime::top::{TITLES, ps_row},
};

#[derive(Debug, Args)]
pub struct TopArgs {
    /// Container name or id.
    pub name: String,
    /// Print the daemon's JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

pub async fn top(client: &Client, a: &TopArgs) -> anyhow::Result<()> {
    let procs: Vec<wire::ContainerProcess> = client
        .get(&format!(
            "/api/v1/containers/{}/top",
            super::billing::enc(&a.name)
        ))
        .await?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&procs)?);
        return Ok(());
    }
    let now = wall_ms() / 1000;
    let rows: Vec<Vec<String>> = procs.iter().map(|p| ps_row(p, now)).collect();
    print!("{}", super::table(&TITLES, &rows));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_as_wide_as_their_widest_cell() {
        let row = |pid: &str, cmd: &str| {
            ["root", pid, "1", "0", "18:09", "?", "00:00:00", cmd]
                .map(str::to_owned)
                .to_vec()
        };
        let t = crate::cli::table(&TITLES, &[row("7", "sleep 300"), row("123456", "sh")]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines[0], "UID   PID     PPID  C  STIME  TTY  TIME      CMD");
        assert_eq!(
            lines[1],
            "root  7       1     0  18:09  ?    00:00:00  sleep 300"
        );
        assert_eq!(lines[2], "root  123456  1     0  18:09  ?    00:00:00  sh");
    }
}
