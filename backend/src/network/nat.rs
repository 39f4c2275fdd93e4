//! Outbound NAT with nftables, in a table of our own (`table ip corral` by default). Nothing
//! else is ever touched: the ruleset is replaced atomically with `nft -f -` (create-if-missing,
//! delete, re-add in one transaction) and removed with `delete table`.
//!
//! The `nft` binary is the interface here (the nf_tables netlink protocol has no maintained
//! Rust crate); only this file runs it.

use std::{io::Write, path::PathBuf, process::Stdio};

use super::{NetworkError, subnet::Subnet};

/// Where the nft binary is looked up (first hit wins); `$CORRAL_NFT` overrides.
const NFT_PATHS: &[&str] = &["/usr/sbin/nft", "/sbin/nft", "/usr/bin/nft", "/bin/nft"];

/// The nft binary, if the host has one.
pub fn nft_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("CORRAL_NFT") {
        return Some(PathBuf::from(p));
    }
    NFT_PATHS.iter().map(PathBuf::from).find(|p| p.exists())
}

/// The ruleset: masquerade what leaves the subnet through any other interface, and let the
/// bridge's traffic through our forward hook.
pub fn ruleset(table: &str, bridge: &str, subnet: Subnet) -> String {
    format!(
        "table ip {table} {{}}\n\
         delete table ip {table}\n\
         table ip {table} {{\n\
         \tchain postrouting {{\n\
         \t\ttype nat hook postrouting priority srcnat; policy accept;\n\
         \t\tip saddr {subnet} oifname != \"{bridge}\" masquerade\n\
         \t}}\n\
         \tchain forward {{\n\
         \t\ttype filter hook forward priority filter; policy accept;\n\
         \t\tiifname \"{bridge}\" accept\n\
         \t\toifname \"{bridge}\" ct state established,related accept\n\
         \t}}\n\
         }}\n"
    )
}

fn run(args: &[&str], stdin: Option<&str>) -> Result<(), NetworkError> {
    let nft = nft_binary().ok_or(NetworkError::NftMissing)?;
    let mut child = std::process::Command::new(&nft)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| NetworkError::Io {
            path: nft.clone(),
            source,
        })?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes())
            .map_err(|source| NetworkError::Io {
                path: nft.clone(),
                source,
            })?;
    }
    let out = child
        .wait_with_output()
        .map_err(|source| NetworkError::Io {
            path: nft.clone(),
            source,
        })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(NetworkError::Nft {
            args: args.join(" "),
            message: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        })
    }
}

/// Installs (or replaces) our table. Blocking: call from `spawn_blocking`.
pub fn install(table: &str, bridge: &str, subnet: Subnet) -> Result<(), NetworkError> {
    run(&["-f", "-"], Some(&ruleset(table, bridge, subnet)))
}

/// Removes our table if it exists. Blocking.
pub fn remove(table: &str) -> Result<(), NetworkError> {
    if nft_binary().is_none() {
        return Ok(());
    }
    // `table X {}` then `delete table X` in one transaction: no error when it is absent.
    run(
        &["-f", "-"],
        Some(&format!("table ip {table} {{}}\ndelete table ip {table}\n")),
    )
}

/// Whether our table exists. Blocking.
pub fn exists(table: &str) -> bool {
    nft_binary().is_some() && run(&["list", "table", "ip", table], None).is_ok()
}

const IP_FORWARD: &str = "/proc/sys/net/ipv4/ip_forward";

/// Turns on IPv4 forwarding; returns the previous value so it can be put back.
pub fn enable_forwarding() -> Result<bool, NetworkError> {
    let io = |source| NetworkError::Io {
        path: IP_FORWARD.into(),
        source,
    };
    let was = std::fs::read_to_string(IP_FORWARD).map_err(io)?.trim() == "1";
    if !was {
        std::fs::write(IP_FORWARD, "1").map_err(io)?;
    }
    Ok(was)
}

/// Restores IPv4 forwarding to off (only called when we turned it on).
pub fn disable_forwarding() {
    let _ = std::fs::write(IP_FORWARD, "0");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ruleset_touches_only_our_table() {
        let r = ruleset("corral", "corral0", "10.88.0.0/24".parse().unwrap());
        assert!(r.starts_with("table ip corral {}\ndelete table ip corral\n"));
        assert!(r.contains("ip saddr 10.88.0.0/24 oifname != \"corral0\" masquerade"));
        for line in r
            .lines()
            .filter(|l| l.starts_with("table") || l.starts_with("delete"))
        {
            assert!(line.contains(" corral"), "{line}");
        }
    }
}
