//! Layer-2 isolation on the bridge: containers of different teams share `corral0`, so without
//! a filter a container with a raw socket could claim a neighbour's address (ARP spoofing) or
//! talk to another team's containers directly.
//!
//! Where `nft` works (the default; independent of the NAT backend): `table bridge <table>`,
//! rebuilt atomically from the bridge's ports on every attach and detach —
//! - `prerouting` (every frame a container sends, to the host or to another port): from a
//!   container's port only its own MAC as Ethernet source, only IPv4, ARP and IPv6, IPv4 and
//!   ARP only with its own address (ARP also with its own MAC as sender), IPv6 only from its
//!   own address or link-local — libvirt's `clean-traffic`;
//! - `forward` (frames between ports, floods included): a port of one team never sends to a
//!   port of another team; ports of the same team talk as before.
//!
//! Where `nft` is missing (an iptables-only host has no bridge-family filter, and ebtables is
//! not assumed), every container port is set `isolated on` (`IFLA_BRPORT_ISOLATED`): isolated
//! ports cannot send to one another at all, only to the host (the bridge) and beyond it. That
//! is stricter than per-team isolation — containers of the same team cannot reach each other on
//! the bridge either — and has no anti-spoofing; the default capability set no longer holds
//! NET_RAW, so a container cannot forge frames in the first place.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::{NetworkError, nat};

/// How bridge ports are kept apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum L2Mode {
    /// nftables bridge filter when `nft` works, else isolated ports.
    #[default]
    Auto,
    /// Isolated ports even where nft works (tests use it to cover iptables-only hosts).
    Isolated,
}

/// The filter in force on the bridge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum L2Filter {
    /// `table bridge <table>` through this `nft`.
    Nft(std::path::PathBuf),
    /// Every container port `isolated on`.
    Isolated,
}

impl L2Filter {
    /// Chooses the filter for `mode` (runs `nft` once). Blocking.
    pub fn detect(mode: L2Mode) -> Self {
        match mode {
            L2Mode::Isolated => Self::Isolated,
            L2Mode::Auto => {
                let Some(bin) = nat::nft_binary() else {
                    return Self::Isolated;
                };
                // Every expression the filter uses, checked by the kernel without a commit (a
                // kernel lacking one, e.g. `nft_meta_bridge`, answers ENOENT).
                let probe = ruleset(
                    "corral_probe",
                    &[Port {
                        veth: "corral-probe".into(),
                        mac: [0x02, 0, 0, 0, 0, 1],
                        ip: Ipv4Addr::new(10, 0, 0, 1),
                        ip6: Some(Ipv6Addr::LOCALHOST),
                        team: "probe".into(),
                    }],
                );
                match nat::run(&bin, &["--check", "-f", "-"], Some(&probe)) {
                    Ok(_) => Self::Nft(bin),
                    Err(e) => {
                        tracing::warn!(error = %e, "nftables cannot filter the bridge; isolating its ports instead");
                        Self::Isolated
                    }
                }
            }
        }
    }
}

impl std::fmt::Display for L2Filter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Nft(_) => "nftables bridge filter (anti-spoofing, teams apart)",
            Self::Isolated => "isolated bridge ports",
        })
    }
}

/// One container's port on the bridge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Port {
    /// Host end of its veth.
    pub veth: String,
    /// MAC of the container's `eth0`.
    pub mac: [u8; 6],
    pub ip: Ipv4Addr,
    pub ip6: Option<Ipv6Addr>,
    pub team: String,
}

fn mac(m: &[u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Our bridge-family table for `ports`, replacing the old one in one transaction.
pub fn ruleset(table: &str, ports: &[Port]) -> String {
    let mut pre = String::new();
    for p in ports {
        let (i, m, ip) = (&p.veth, mac(&p.mac), p.ip);
        let ip6 = match p.ip6 {
            Some(a) => format!("{a}, fe80::/10"),
            None => "fe80::/10".into(),
        };
        for rule in [
            format!("ether saddr != {m} drop"),
            "ether type != { ip, arp, ip6 } drop".to_owned(),
            format!("ether type ip ip saddr != {ip} drop"),
            format!("ether type arp arp saddr ether != {m} drop"),
            format!("ether type arp arp saddr ip != {ip} drop"),
            format!("ether type ip6 ip6 saddr != {{ {ip6} }} drop"),
        ] {
            pre.push_str(&format!("\t\tiifname \"{i}\" {rule}\n"));
        }
    }
    let mut teams: Vec<&str> = ports.iter().map(|p| p.team.as_str()).collect();
    teams.sort_unstable();
    teams.dedup();
    let mut fwd = String::new();
    for team in teams {
        let set = ports
            .iter()
            .filter(|p| p.team == team)
            .map(|p| format!("\"{}\"", p.veth))
            .collect::<Vec<_>>()
            .join(", ");
        fwd.push_str(&format!(
            "\t\tiifname {{ {set} }} oifname != {{ {set} }} drop\n"
        ));
    }
    format!(
        "table bridge {table} {{}}\n\
         delete table bridge {table}\n\
         table bridge {table} {{\n\
         \tchain prerouting {{\n\
         \t\ttype filter hook prerouting priority filter; policy accept;\n\
         {pre}\
         \t}}\n\
         \tchain forward {{\n\
         \t\ttype filter hook forward priority filter; policy accept;\n\
         {fwd}\
         \t}}\n\
         }}\n"
    )
}

/// Installs the filter for `ports` (the nft table; isolated ports are set per port by
/// [`super::link::set_isolated`]). Blocking.
pub fn install(filter: &L2Filter, table: &str, ports: &[Port]) -> Result<(), NetworkError> {
    match filter {
        L2Filter::Nft(bin) => nat::run(bin, &["-f", "-"], Some(&ruleset(table, ports))).map(drop),
        L2Filter::Isolated => Ok(()),
    }
}

/// Removes our bridge table if there is one (absent is fine). Blocking.
pub fn remove(table: &str) -> Result<(), NetworkError> {
    let Some(bin) = nat::nft_binary() else {
        return Ok(());
    };
    if nat::run(&bin, &["list", "tables", "bridge"], None).is_err() {
        return Ok(());
    }
    let text = format!("table bridge {table} {{}}\ndelete table bridge {table}\n");
    nat::run(&bin, &["-f", "-"], Some(&text)).map(drop)
}

/// Whether our bridge table exists. Blocking.
pub fn exists(table: &str) -> bool {
    nat::nft_binary()
        .is_some_and(|bin| nat::run(&bin, &["list", "table", "bridge", table], None).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_port_sends_only_its_own_addresses_and_teams_stay_apart() {
        let port = |veth: &str, last: u8, team: &str| Port {
            veth: veth.into(),
            mac: [0x02, 0, 0, 0, 0, last],
            ip: Ipv4Addr::new(10, 88, 0, last),
            ip6: None,
            team: team.into(),
        };
        let r = ruleset(
            "corral",
            &[
                port("vc-a1", 2, "a"),
                port("vc-a2", 3, "a"),
                port("vc-b1", 4, "b"),
            ],
        );
        assert!(r.starts_with("table bridge corral {}\ndelete table bridge corral\n"));
        for want in [
            "iifname \"vc-a1\" ether saddr != 02:00:00:00:00:02 drop",
            "iifname \"vc-a1\" ether type arp arp saddr ip != 10.88.0.2 drop",
            "iifname \"vc-a1\" ether type arp arp saddr ether != 02:00:00:00:00:02 drop",
            "iifname \"vc-b1\" ether type ip ip saddr != 10.88.0.4 drop",
            "iifname \"vc-b1\" ether type ip6 ip6 saddr != { fe80::/10 } drop",
            "iifname { \"vc-a1\", \"vc-a2\" } oifname != { \"vc-a1\", \"vc-a2\" } drop",
            "iifname { \"vc-b1\" } oifname != { \"vc-b1\" } drop",
        ] {
            assert!(r.contains(want), "{want}\n{r}");
        }
        // No ports: an empty table (still valid nft).
        assert!(ruleset("corral", &[]).contains("chain forward {"));
    }
}
