//! `corral network [ls]` and `corral network inspect [NETWORK]`: the bridge, its subnet and NAT
//! (`GET /api/v1/network`) and the addresses and published ports of the containers the caller
//! may see (`GET /api/v1/containers?all=true`; the route's own endpoint list is for admins).

use anyhow::bail;
use clap::{Args, Subcommand};

use crate::client::Client;

#[derive(Debug, Args)]
pub struct NetworkArgs {
    #[command(subcommand)]
    pub cmd: Option<NetworkCmd>,
}

#[derive(Debug, Subcommand)]
pub enum NetworkCmd {
    /// The networks a container can join: the bridge, host and none (the default).
    Ls,
    /// One network: its settings and the containers on it, with addresses and published ports.
    Inspect {
        /// `bridge` (or the bridge's name), `host` or `none`.
        #[arg(default_value = "bridge")]
        network: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

pub async fn network(client: &Client, a: &NetworkArgs) -> anyhow::Result<()> {
    let info: wire::NetworkInfo = client.get("/api/v1/network").await?;
    match &a.cmd {
        None | Some(NetworkCmd::Ls) => {
            let dash = |v: Option<&String>| v.cloned().unwrap_or_else(|| "-".to_owned());
            println!(
                "{:<12} {:<8} {:<18} {:<24} L2 FILTER",
                "NAME", "DRIVER", "SUBNET", "NAT"
            );
            println!(
                "{:<12} {:<8} {:<18} {:<24} {}",
                info.bridge,
                "bridge",
                info.subnet
                    .clone()
                    .unwrap_or_else(|| "(at first use)".to_owned()),
                if info.nat {
                    dash(info.nat_backend.as_ref())
                } else {
                    "off".to_owned()
                },
                dash(info.l2_filter.as_ref())
            );
            println!("{:<12} {:<8} {:<18} {:<24} -", "host", "host", "-", "-");
            println!("{:<12} {:<8} {:<18} {:<24} -", "none", "null", "-", "-");
        }
        Some(NetworkCmd::Inspect { network, json }) => {
            let mode = match network.as_str() {
                "host" | "none" => network.as_str(),
                n if n == "bridge" || *n == info.bridge => "bridge",
                other => bail!(
                    "no network {other:?}: the networks are bridge ({}), host and none",
                    info.bridge
                ),
            };
            let list: Vec<wire::Container> = client.get("/api/v1/containers?all=true").await?;
            let on: Vec<(&wire::Container, &wire::ContainerNetwork)> = list
                .iter()
                .filter_map(|c| c.network.as_ref().map(|n| (c, n)))
                .filter(|(_, n)| n.mode == mode)
                .collect();
            if *json {
                let containers: Vec<serde_json::Value> = on
                    .iter()
                    .map(|(c, n)| {
                        serde_json::json!({"name": c.name, "id": c.id, "team": c.team,
                            "status": c.status, "network": n})
                    })
                    .collect();
                let mut doc = serde_json::json!({"name": network, "mode": mode,
                    "containers": containers});
                if mode == "bridge" {
                    doc["bridge"] = serde_json::to_value(&info)?;
                }
                println!("{}", serde_json::to_string_pretty(&doc)?);
                return Ok(());
            }
            if mode == "bridge" {
                println!("Bridge:    {}", info.bridge);
                println!(
                    "Subnet:    {}",
                    info.subnet.as_deref().unwrap_or("(chosen at first use)")
                );
                println!(
                    "NAT:       {}",
                    match (&info.nat, &info.nat_backend) {
                        (true, Some(b)) => b.as_str(),
                        (true, None) => "on",
                        (false, _) => "off (no bridged container)",
                    }
                );
                if let Some(f) = &info.l2_filter {
                    println!("L2 filter: {f}");
                }
                println!();
            }
            println!(
                "{:<20} {:<12} {:<9} {:<18} {:<22} PORTS",
                "CONTAINER", "TEAM", "STATUS", "IPV4", "IPV6"
            );
            for (c, n) in on {
                let ports: Vec<String> = n.ports.iter().map(ToString::to_string).collect();
                println!(
                    "{:<20} {:<12} {:<9} {:<18} {:<22} {}",
                    c.name,
                    c.team,
                    c.status,
                    n.ip_address.as_deref().map_or_else(
                        || "-".to_owned(),
                        |a| format!("{a}/{}", n.ip_prefix_len.unwrap_or(32))
                    ),
                    n.ipv6_address.as_deref().unwrap_or("-"),
                    ports.join(", ")
                );
            }
        }
    }
    Ok(())
}
