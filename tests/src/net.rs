//! Bridged test daemons: each gets a bridge (`corral-it…`), subnet, veth prefix (`vc-it`) and
//! NAT table (`corral_it_…`) of its own, and a [`NetGuard`] removes them after a failed test.

use std::{
    fs,
    path::{Path, PathBuf},
    sync::atomic::{AtomicU32, Ordering},
};

use crate::Daemon;

static N: AtomicU32 = AtomicU32::new(0);

/// A daemon on a network of its own (IPv6 too when `ipv6`), with more `corral serve` flags;
/// returns (daemon, bridge, NAT table).
pub fn bridged_daemon(ipv6: bool, extra: &[&str]) -> (Daemon, String, String) {
    let n = N.fetch_add(1, Ordering::Relaxed);
    let pid = std::process::id();
    let bridge = format!(
        "corral-it{:x}",
        (pid.wrapping_mul(16).wrapping_add(8 + n)) & 0xfffff
    );
    let table = format!("corral_it_{pid}_c{n}");
    let subnet = format!("10.214.{}.0/24", (pid % 16) * 16 + n % 16);
    let subnet6 = format!("fd42:{:x}:c{n:x}::/64", pid & 0xffff);
    let mut args = vec![
        "--bridge",
        &bridge,
        "--subnet",
        &subnet,
        "--veth-prefix",
        "vc-it",
        "--nft-table",
        &table,
    ];
    if ipv6 {
        args.extend(["--subnet6", &subnet6]);
    }
    args.extend_from_slice(extra);
    let d = Daemon::start_with(&args);
    (d, bridge, table)
}

/// The network namespace of container `id`.
pub fn netns(id: &str) -> PathBuf {
    Path::new("/run/netns").join(format!("corral-{id}"))
}

/// Whether a network link named `name` exists.
pub fn link_exists(name: &str) -> bool {
    Path::new("/sys/class/net").join(name).exists()
}

/// Removes what a failed test left: the containers' namespaces, the bridge, the NAT rules.
/// Declare it after the daemon and before the `Reaper`, so it runs once the processes are dead.
pub struct NetGuard {
    containers: PathBuf,
    bridge: String,
    table: String,
}

impl NetGuard {
    pub fn new(d: &Daemon, bridge: &str, table: &str) -> Self {
        NetGuard {
            containers: d.state.path().join("state/containers"),
            bridge: bridge.to_owned(),
            table: table.to_owned(),
        }
    }
}

impl Drop for NetGuard {
    fn drop(&mut self) {
        if let Ok(rd) = fs::read_dir(&self.containers) {
            for e in rd.flatten() {
                let id = e.file_name().to_string_lossy().into_owned();
                let _ = backend::network::netns::remove(&netns(&id));
            }
        }
        if link_exists(&self.bridge) {
            // Over netlink on a thread of its own (this may run inside a tokio test).
            let bridge = self.bridge.clone();
            let _ = std::thread::spawn(move || {
                let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                else {
                    return;
                };
                rt.block_on(async {
                    if let Ok(h) = backend::network::link::connect() {
                        let _ = backend::network::link::delete(&h, &bridge).await;
                    }
                });
            })
            .join();
        }
        let _ = backend::network::nat::remove(&self.table);
    }
}
