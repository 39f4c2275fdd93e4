//! Outbound NAT and the bridge's forward filter, with nftables where the host has it and
//! iptables where that is what it has.
//!
//! The forward filter: what comes from the bridge is let through (outbound, to the host's other
//! links); what goes to the bridge only when it answers a connection a container made
//! (`ct state established,related`). A new connection *into* the bridge from anywhere else (a
//! LAN peer that routes the subnet via this host, another bridge) is dropped: published ports
//! are served by a userland proxy in the daemon (`ports.rs`), which reaches the container from
//! the host itself (OUTPUT, not FORWARD), so nothing legitimate is forwarded in.
//!
//! The admin's firewall keeps the last word:
//! - nftables: a table of our own (`table ip corral` by default), replaced atomically with
//!   `nft -f -` (create-if-missing, delete, re-add in one transaction) and removed with
//!   `delete table`. Its forward chain hooks in at priority `filter + 10`, after the admin's
//!   own `filter`-priority chains: their drops are final before ours run (a drop in any base
//!   chain is final in nftables, an accept only ends its own chain).
//! - iptables (`iptables-nft` or `iptables-legacy`): chains of our own, `<table>-nat` in the
//!   `nat` table and `<table>-fwd` in `filter`, each reached by one jump rule at the top of
//!   `POSTROUTING` / `FORWARD`, and — Docker's `DOCKER-USER` — `<table>-user`, the admin's
//!   chain: jumped to from `FORWARD` *before* `<table>-fwd`, created once and never flushed or
//!   deleted by us, so rules put there (`iptables -A corral-user ... -j ACCEPT|DROP`) decide
//!   before ours and survive our reinstalls and restarts. Removal deletes exactly our jump
//!   rules and our two other chains.
//!
//! Nothing else is ever touched. The binaries are the interface here (the nf_tables netlink
//! protocol has no maintained Rust crate); only this file runs them (`l2.rs` through [`run`]).
//! Port publishing needs no rule: it is a userland proxy (see `ports.rs`).

use std::{
    fmt,
    io::Write,
    path::{Path, PathBuf},
    process::Stdio,
};

use super::{
    NetworkError,
    subnet::{Subnet, Subnet6},
};

/// Where binaries are looked up (first hit wins).
const SBIN: &[&str] = &["/usr/sbin", "/sbin", "/usr/bin", "/bin"];

/// The longest iptables chain name (`XT_EXTENSION_MAXNAMELEN` - 1).
const CHAIN_MAX: usize = 28;

fn find(name: &str) -> Option<PathBuf> {
    SBIN.iter()
        .map(|d| Path::new(d).join(name))
        .find(|p| p.exists())
}

/// The nft binary, if the host has one; `$CORRAL_NFT` overrides.
pub fn nft_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("CORRAL_NFT") {
        return Some(PathBuf::from(p));
    }
    find("nft")
}

/// Which NAT implementation to use (`corral serve --nat`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum NatChoice {
    /// nftables when `nft` is installed and the kernel answers it, else iptables.
    #[default]
    Auto,
    Nft,
    /// The host's `iptables` (whichever variant it points to).
    Iptables,
    IptablesNft,
    IptablesLegacy,
}

/// A usable NAT implementation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    Nft(PathBuf),
    /// An iptables binary and its variant as `iptables -V` names it (`nf_tables`, `legacy`).
    Iptables {
        bin: PathBuf,
        variant: String,
    },
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Backend::Nft(_) => f.write_str("nftables"),
            Backend::Iptables { variant, .. } => write!(f, "iptables ({variant})"),
        }
    }
}

/// Runs `bin args`, feeding `stdin`; stdout on success, the trimmed stderr as the error.
pub(super) fn run(bin: &Path, args: &[&str], stdin: Option<&str>) -> Result<String, NetworkError> {
    let io = |source| NetworkError::Io {
        path: bin.to_owned(),
        source,
    };
    let mut child = std::process::Command::new(bin)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(io)?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes()).map_err(io)?;
    }
    let out = child.wait_with_output().map_err(io)?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(NetworkError::Nat {
            args: format!("{} {}", bin.display(), args.join(" ")),
            message: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        })
    }
}

/// An iptables binary that answers on the `nat` table, with its variant.
fn iptables(name: &str) -> Option<Backend> {
    let bin = find(name)?;
    let version = run(&bin, &["-V"], None).ok()?;
    let variant = version
        .split_once('(')
        .and_then(|(_, v)| v.split_once(')'))
        .map_or("unknown", |(v, _)| v)
        .to_owned();
    run(&bin, &["-w", "-t", "nat", "-S", "POSTROUTING"], None).ok()?;
    Some(Backend::Iptables { bin, variant })
}

impl Backend {
    /// The implementation `choice` asks for, if the host has it and the kernel answers it.
    /// Blocking (runs the binaries once).
    pub fn detect(choice: NatChoice) -> Option<Backend> {
        let nft = || {
            let bin = nft_binary()?;
            run(&bin, &["list", "tables"], None).ok()?;
            Some(Backend::Nft(bin))
        };
        match choice {
            NatChoice::Auto => nft()
                .or_else(|| iptables("iptables"))
                .or_else(|| iptables("iptables-nft"))
                .or_else(|| iptables("iptables-legacy")),
            NatChoice::Nft => nft(),
            NatChoice::Iptables => iptables("iptables"),
            NatChoice::IptablesNft => iptables("iptables-nft"),
            NatChoice::IptablesLegacy => iptables("iptables-legacy"),
        }
    }

    /// Installs (or replaces) our rules, for IPv6 too with `subnet6`. Blocking: call from
    /// `spawn_blocking`.
    pub fn install(
        &self,
        table: &str,
        bridge: &str,
        subnet: Subnet,
        subnet6: Option<Subnet6>,
    ) -> Result<(), NetworkError> {
        match self {
            Backend::Nft(bin) => run(
                bin,
                &["-f", "-"],
                Some(&ruleset(table, bridge, subnet, subnet6)),
            )
            .map(drop),
            Backend::Iptables { bin, .. } => {
                let (nat, fwd) = chains(table)?;
                let user = user_chain(table)?;
                self.remove(table)?;
                ensure_user_chain(bin, &user)?;
                let mut rules: Vec<(PathBuf, Vec<String>)> =
                    ipt_rules(&nat, &fwd, &user, bridge, &subnet.to_string())
                        .into_iter()
                        .map(|r| (bin.clone(), r))
                        .collect();
                if let Some(net6) = subnet6 {
                    let bin6 = ip6tables(bin).ok_or_else(|| NetworkError::Nat {
                        args: format!("{} for {net6}", bin.display()),
                        message: "no ip6tables next to it".into(),
                    })?;
                    ensure_user_chain(&bin6, &user)?;
                    rules.extend(
                        ipt_rules(&nat, &fwd, &user, bridge, &net6.to_string())
                            .into_iter()
                            .map(|r| (bin6.clone(), r)),
                    );
                }
                let made = rules.iter().try_for_each(|(bin, rule)| {
                    let args: Vec<&str> = rule.iter().map(String::as_str).collect();
                    run(bin, &args, None).map(drop)
                });
                if made.is_err() {
                    let _ = self.remove(table);
                }
                made
            }
        }
    }

    /// Removes our rules if they exist. Blocking.
    pub fn remove(&self, table: &str) -> Result<(), NetworkError> {
        match self {
            // `table X {}` then `delete table X` in one transaction: no error when absent.
            // Both families; a kernel without IPv6 tables refuses `ip6`: then `ip` alone.
            Backend::Nft(bin) => run(
                bin,
                &["-f", "-"],
                Some(&delete_tables(table, &["ip", "ip6"])),
            )
            .or_else(|_| run(bin, &["-f", "-"], Some(&delete_tables(table, &["ip"]))))
            .map(drop),
            Backend::Iptables { bin, .. } => {
                ipt_remove(bin, table)?;
                ip6tables(bin).map_or(Ok(()), |b| ipt_remove(&b, table))
            }
        }
    }

    /// Whether two backends keep rules in the same place: `iptables` and `iptables-nft` both
    /// write the nf_tables variant's tables.
    fn same_store(&self, other: &Backend) -> bool {
        match (self, other) {
            (Backend::Nft(_), Backend::Nft(_)) => true,
            (Backend::Iptables { variant: a, .. }, Backend::Iptables { variant: b, .. }) => a == b,
            _ => false,
        }
    }

    /// Whether any of our rules exist. Blocking.
    pub fn exists(&self, table: &str) -> bool {
        match self {
            Backend::Nft(bin) => ["ip", "ip6"]
                .iter()
                .any(|family| run(bin, &["list", "table", family, table], None).is_ok()),
            Backend::Iptables { bin, .. } => chains(table).is_ok_and(|(nat, fwd)| {
                std::iter::once(bin.clone()).chain(ip6tables(bin)).any(|b| {
                    ipt_chain_exists(&b, "nat", &nat) || ipt_chain_exists(&b, "filter", &fwd)
                })
            }),
        }
    }
}

/// The backends that can hold rules of ours: nft and iptables-nft, each when its binary is
/// there and nf_tables answers (a host may have iptables but no `nft`), iptables-legacy only
/// when the legacy `nat` table exists (so probing loads no legacy module).
fn present() -> Vec<Backend> {
    let mut out = Vec::new();
    out.extend(Backend::detect(NatChoice::Nft));
    out.extend(Backend::detect(NatChoice::IptablesNft));
    let legacy_nat = std::fs::read_to_string("/proc/net/ip_tables_names")
        .is_ok_and(|s| s.lines().any(|l| l == "nat"));
    if legacy_nat {
        out.extend(Backend::detect(NatChoice::IptablesLegacy));
    }
    out
}

/// Whether NAT can be installed on this host at all (any backend).
pub fn available() -> bool {
    Backend::detect(NatChoice::Auto).is_some()
}

/// Removes our rules from every backend present (a daemon restarted with another `--nat` leaves
/// nothing behind either). Blocking.
pub fn remove(table: &str) -> Result<(), NetworkError> {
    present()
        .iter()
        .filter(|b| b.exists(table))
        .try_for_each(|b| b.remove(table))
}

/// Removes our rules from every backend but the one that keeps them where `keep` does (an
/// earlier daemon's, left under another `--nat` by a kill -9). Blocking.
pub fn remove_others(table: &str, keep: &Backend) -> Result<(), NetworkError> {
    present()
        .iter()
        .filter(|b| !b.same_store(keep) && b.exists(table))
        .try_for_each(|b| b.remove(table))
}

/// Whether our rules exist in any backend. Blocking.
pub fn exists(table: &str) -> bool {
    present().iter().any(|b| b.exists(table))
}

/// Deletes our tables of `families` in one transaction, with no error when absent (each is
/// declared empty first).
fn delete_tables(table: &str, families: &[&str]) -> String {
    families
        .iter()
        .map(|f| format!("table {f} {table} {{}}\ndelete table {f} {table}\n"))
        .collect()
}

/// One family's table: masquerade what leaves the subnet through any other interface; forward
/// what the bridge sends and the answers to it, drop new connections into the bridge. The
/// forward chain runs after the admin's `filter`-priority chains (`filter + 10`).
fn family_table(family: &str, table: &str, bridge: &str, subnet: &str) -> String {
    format!(
        "table {family} {table} {{\n\
         \tchain postrouting {{\n\
         \t\ttype nat hook postrouting priority srcnat; policy accept;\n\
         \t\t{family} saddr {subnet} oifname != \"{bridge}\" masquerade\n\
         \t}}\n\
         \tchain forward {{\n\
         \t\ttype filter hook forward priority filter + 10; policy accept;\n\
         \t\toifname \"{bridge}\" ct state established,related accept\n\
         \t\tiifname \"{bridge}\" accept\n\
         \t\toifname \"{bridge}\" drop\n\
         \t}}\n\
         }}\n"
    )
}

/// The nftables ruleset, replacing ours atomically: `table ip` for `subnet`, and `table ip6`
/// for `subnet6` when given.
pub fn ruleset(table: &str, bridge: &str, subnet: Subnet, subnet6: Option<Subnet6>) -> String {
    let families: &[&str] = if subnet6.is_some() {
        &["ip", "ip6"]
    } else {
        &["ip"]
    };
    let mut r = delete_tables(table, families);
    r.push_str(&family_table("ip", table, bridge, &subnet.to_string()));
    if let Some(net6) = subnet6 {
        r.push_str(&family_table("ip6", table, bridge, &net6.to_string()));
    }
    r
}

/// The ip6tables binary of the same variant as `bin` (`iptables-legacy` → `ip6tables-legacy`).
fn ip6tables(bin: &Path) -> Option<PathBuf> {
    let name = bin.file_name()?.to_str()?.strip_prefix("iptables")?;
    Some(bin.with_file_name(format!("ip6tables{name}"))).filter(|p| p.exists())
}

/// Our iptables chain names for `table`: `<table>-nat` and `<table>-fwd`.
pub fn chains(table: &str) -> Result<(String, String), NetworkError> {
    let (nat, fwd) = (format!("{table}-nat"), format!("{table}-fwd"));
    check_chain_name(&nat)?;
    Ok((nat, fwd))
}

/// The admin's chain (Docker's `DOCKER-USER`): `<table>-user`.
pub fn user_chain(table: &str) -> Result<String, NetworkError> {
    let user = format!("{table}-user");
    check_chain_name(&user)?;
    Ok(user)
}

fn check_chain_name(name: &str) -> Result<(), NetworkError> {
    if name.len() > CHAIN_MAX {
        return Err(NetworkError::Nat {
            args: format!("iptables -N {name}"),
            message: format!("chain name longer than {CHAIN_MAX} characters"),
        });
    }
    Ok(())
}

/// Creates the admin's chain unless it exists; never flushes it.
fn ensure_user_chain(bin: &Path, user: &str) -> Result<(), NetworkError> {
    if ipt_chain_exists(bin, "filter", user) {
        return Ok(());
    }
    match run(bin, &["-w", "-t", "filter", "-N", user], None) {
        // Made by a concurrent install in between: fine.
        Err(_) if ipt_chain_exists(bin, "filter", user) => Ok(()),
        other => other.map(drop),
    }
}

/// The iptables commands (arguments) that install the same rules as [`ruleset`], the admin's
/// chain `user` (which must exist) jumped to first.
pub fn ipt_rules(nat: &str, fwd: &str, user: &str, bridge: &str, subnet: &str) -> Vec<Vec<String>> {
    let s = subnet;
    let rules: [&[&str]; 9] = [
        &["-t", "nat", "-N", nat],
        &[
            "-t",
            "nat",
            "-A",
            nat,
            "-s",
            s,
            "!",
            "-o",
            bridge,
            "-j",
            "MASQUERADE",
        ],
        &["-t", "nat", "-I", "POSTROUTING", "1", "-j", nat],
        &["-t", "filter", "-N", fwd],
        &[
            "-t",
            "filter",
            "-A",
            fwd,
            "-o",
            bridge,
            "-m",
            "conntrack",
            "--ctstate",
            "ESTABLISHED,RELATED",
            "-j",
            "ACCEPT",
        ],
        &["-t", "filter", "-A", fwd, "-i", bridge, "-j", "ACCEPT"],
        &["-t", "filter", "-A", fwd, "-o", bridge, "-j", "DROP"],
        &["-t", "filter", "-I", "FORWARD", "1", "-j", fwd],
        // Inserted last at 1: evaluated before our chain.
        &["-t", "filter", "-I", "FORWARD", "1", "-j", user],
    ];
    rules
        .iter()
        .map(|r| {
            std::iter::once("-w")
                .chain(r.iter().copied())
                .map(str::to_owned)
                .collect()
        })
        .collect()
}

fn ipt_chain_exists(bin: &Path, table: &str, chain: &str) -> bool {
    run(bin, &["-w", "-t", table, "-S", chain], None).is_ok()
}

/// Deletes our jump rules (to the admin's chain too) and our chains, absent ones being fine.
/// The admin's chain itself stays, with whatever rules the admin put there.
fn ipt_remove(bin: &Path, table: &str) -> Result<(), NetworkError> {
    let (nat, fwd) = chains(table)?;
    let user = user_chain(table)?;
    if ipt_chain_exists(bin, "filter", &user) {
        while run(
            bin,
            &["-w", "-t", "filter", "-D", "FORWARD", "-j", &user],
            None,
        )
        .is_ok()
        {}
    }
    for (t, hook, chain) in [("nat", "POSTROUTING", &nat), ("filter", "FORWARD", &fwd)] {
        if !ipt_chain_exists(bin, t, chain) {
            continue;
        }
        // Every jump to our chain (a crash between two installs could leave two).
        while run(bin, &["-w", "-t", t, "-D", hook, "-j", chain], None).is_ok() {}
        run(bin, &["-w", "-t", t, "-F", chain], None)?;
        run(bin, &["-w", "-t", t, "-X", chain], None)?;
    }
    Ok(())
}

/// Deletes the admin's chain `<table>-user` (with its rules) from every iptables backend
/// present. The daemon never calls this — the chain is the admin's; tests do, for their
/// throw-away tables. Blocking.
pub fn remove_user_chain(table: &str) -> Result<(), NetworkError> {
    let user = user_chain(table)?;
    for b in present() {
        if let Backend::Iptables { bin, .. } = b {
            for bin in std::iter::once(bin.clone()).chain(ip6tables(&bin)) {
                if ipt_chain_exists(&bin, "filter", &user) {
                    while run(
                        &bin,
                        &["-w", "-t", "filter", "-D", "FORWARD", "-j", &user],
                        None,
                    )
                    .is_ok()
                    {}
                    run(&bin, &["-w", "-t", "filter", "-F", &user], None)?;
                    run(&bin, &["-w", "-t", "filter", "-X", &user], None)?;
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ruleset_touches_only_our_table() {
        let r = ruleset(
            "corral",
            "corral0",
            "10.88.0.0/24".parse().unwrap(),
            Some("fd42::/64".parse().unwrap()),
        );
        assert!(r.contains("ip6 saddr fd42::/64 oifname != \"corral0\" masquerade"));
        assert!(r.starts_with("table ip corral {}\ndelete table ip corral\n"));
        assert!(r.contains("ip saddr 10.88.0.0/24 oifname != \"corral0\" masquerade"));
        for line in r
            .lines()
            .filter(|l| l.starts_with("table") || l.starts_with("delete"))
        {
            assert!(line.contains(" corral"), "{line}");
        }
    }

    #[test]
    fn iptables_rules_only_jump_to_our_chains() {
        let (nat, fwd) = chains("corral").unwrap();
        let user = user_chain("corral").unwrap();
        assert_eq!((nat.as_str(), fwd.as_str()), ("corral-nat", "corral-fwd"));
        let rules = ipt_rules(&nat, &fwd, &user, "corral0", "10.88.0.0/24");
        let text: Vec<String> = rules.iter().map(|r| r.join(" ")).collect();
        assert!(text.contains(
            &"-w -t nat -A corral-nat -s 10.88.0.0/24 ! -o corral0 -j MASQUERADE".to_owned()
        ));
        // The only rules in the host's chains are the jumps to ours.
        for t in &text {
            if t.contains("POSTROUTING") || t.contains("FORWARD") {
                assert!(
                    t.ends_with("-j corral-nat")
                        || t.ends_with("-j corral-fwd")
                        || t.ends_with("-j corral-user"),
                    "{t}"
                );
            } else {
                assert!(t.contains(" corral-"), "{t}");
            }
        }
        assert!(chains("corral_it_4294967295_c1234").is_err());
        // The admin's chain is jumped to first, and new connections into the bridge dropped.
        let forward: Vec<&String> = text.iter().filter(|t| t.contains("FORWARD")).collect();
        assert_eq!(
            forward,
            [
                "-w -t filter -I FORWARD 1 -j corral-fwd",
                "-w -t filter -I FORWARD 1 -j corral-user"
            ]
        );
        assert!(text.contains(&"-w -t filter -A corral-fwd -o corral0 -j DROP".to_owned()));
        assert!(
            !text
                .iter()
                .any(|t| t.contains("-N corral-user") || t.contains("-F"))
        );
    }

    #[test]
    fn nft_forward_chain_runs_after_the_admins_and_drops_new_inbound() {
        let r = ruleset("corral", "corral0", "10.88.0.0/24".parse().unwrap(), None);
        let fwd = &r[r.find("chain forward").unwrap()..];
        assert!(fwd.contains("priority filter + 10;"), "{fwd}");
        let est = fwd.find("oifname \"corral0\" ct state established,related accept");
        let drop = fwd.find("oifname \"corral0\" drop");
        assert!(est.is_some() && drop.is_some() && est < drop, "{fwd}");
    }
}
