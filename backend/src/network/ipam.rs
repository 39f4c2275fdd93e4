//! Address management in SQLite: an endpoint row holds its address until it is removed, so a
//! restarted daemon never hands out an address still in use. Blocking: call from
//! `spawn_blocking`.

use std::{net::Ipv4Addr, path::PathBuf};

use rusqlite::{OptionalExtension, params};

use super::{NetworkError, ports::PortSpec, subnet::Subnet};
use crate::store::Store;

/// A row of `network_endpoints`.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub owner: String,
    /// The owner's team: bridge ports of different teams are kept apart.
    pub team: String,
    pub bridge: Option<String>,
    pub address: Option<Ipv4Addr>,
    pub netns: PathBuf,
    pub veth: Option<String>,
    pub ports: Vec<PortSpec>,
}

/// The subnet recorded for `bridge`, if any.
pub fn stored_subnet(store: &Store, bridge: &str) -> Result<Option<Subnet>, NetworkError> {
    let s: Option<String> = store
        .lock()
        .query_row(
            "SELECT subnet FROM networks WHERE bridge = ?1",
            [bridge],
            |r| r.get(0),
        )
        .optional()?;
    s.map(|s| s.parse()).transpose()
}

/// Records the subnet of `bridge` (replacing an older choice).
pub fn store_subnet(store: &Store, bridge: &str, subnet: Subnet) -> Result<(), NetworkError> {
    store.lock().execute(
        "INSERT INTO networks (bridge, subnet) VALUES (?1, ?2)
         ON CONFLICT (bridge) DO UPDATE SET subnet = excluded.subnet",
        params![bridge, subnet.to_string()],
    )?;
    Ok(())
}

/// Forgets the subnet of `bridge` (when its last endpoint is gone and it was not configured).
pub fn forget_subnet(store: &Store, bridge: &str) -> Result<(), NetworkError> {
    store
        .lock()
        .execute("DELETE FROM networks WHERE bridge = ?1", [bridge])?;
    Ok(())
}

/// Inserts the endpoint; with `subnet`, first picks the lowest free address in it (in the same
/// transaction, so two attaches never get the same address).
pub fn insert(
    store: &Store,
    ep: &Endpoint,
    subnet: Option<Subnet>,
) -> Result<Option<Ipv4Addr>, NetworkError> {
    let mut conn = store.lock();
    let tx = conn.transaction()?;
    let exists: bool = tx
        .query_row(
            "SELECT 1 FROM network_endpoints WHERE owner = ?1",
            [&ep.owner],
            |_| Ok(()),
        )
        .optional()?
        .is_some();
    if exists {
        return Err(NetworkError::AlreadyAttached(ep.owner.clone()));
    }
    let address = match (subnet, &ep.bridge) {
        (Some(net), Some(bridge)) => {
            let mut st = tx.prepare(
                "SELECT address FROM network_endpoints WHERE bridge = ?1 AND address IS NOT NULL",
            )?;
            let used: std::collections::HashSet<Ipv4Addr> = st
                .query_map([bridge], |r| r.get::<_, String>(0))?
                .filter_map(|a| a.ok()?.parse().ok())
                .collect();
            drop(st);
            Some(
                net.hosts()
                    .find(|ip| !used.contains(ip))
                    .ok_or(NetworkError::SubnetExhausted(net))?,
            )
        }
        _ => None,
    };
    let ports = serde_json::to_string(&ep.ports).unwrap_or_else(|_| "[]".into());
    tx.execute(
        "INSERT INTO network_endpoints (owner, bridge, address, netns, veth, ports, team)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            ep.owner,
            ep.bridge,
            address.map(|a| a.to_string()),
            ep.netns.to_string_lossy(),
            ep.veth,
            ports,
            ep.team
        ],
    )?;
    tx.commit()?;
    Ok(address)
}

/// Removes the endpoint row, releasing its address.
pub fn remove(store: &Store, owner: &str) -> Result<(), NetworkError> {
    store
        .lock()
        .execute("DELETE FROM network_endpoints WHERE owner = ?1", [owner])?;
    Ok(())
}

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Endpoint> {
    let address: Option<String> = r.get(2)?;
    let netns: String = r.get(3)?;
    let ports: String = r.get(5)?;
    Ok(Endpoint {
        owner: r.get(0)?,
        team: r.get(6)?,
        bridge: r.get(1)?,
        address: address.and_then(|a| a.parse().ok()),
        netns: PathBuf::from(netns),
        veth: r.get(4)?,
        ports: serde_json::from_str(&ports).unwrap_or_default(),
    })
}

const COLUMNS: &str = "owner, bridge, address, netns, veth, ports, team";

/// The endpoint of `owner`.
pub fn get(store: &Store, owner: &str) -> Result<Option<Endpoint>, NetworkError> {
    Ok(store
        .lock()
        .query_row(
            &format!("SELECT {COLUMNS} FROM network_endpoints WHERE owner = ?1"),
            [owner],
            row,
        )
        .optional()?)
}

/// Every endpoint (on `bridge` only, when given).
pub fn list(store: &Store, bridge: Option<&str>) -> Result<Vec<Endpoint>, NetworkError> {
    let conn = store.lock();
    let mut st = conn.prepare(&format!(
        "SELECT {COLUMNS} FROM network_endpoints WHERE ?1 IS NULL OR bridge = ?1 ORDER BY owner"
    ))?;
    let rows = st.query_map([bridge], row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(owner: &str) -> Endpoint {
        Endpoint {
            owner: owner.into(),
            team: "default".into(),
            bridge: Some("br-test".into()),
            address: None,
            netns: PathBuf::from(format!("/run/netns/test-{owner}")),
            veth: Some(format!("vc-{owner}")),
            ports: Vec::new(),
        }
    }

    #[test]
    fn allocates_unique_addresses_releases_and_runs_out() {
        let dir = std::env::temp_dir().join(format!("corral-ipam-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let store = Store::open(&dir.join("corral.db")).unwrap();
        let net: Subnet = "10.99.0.0/29".parse().unwrap(); // .2 ..= .6: five addresses
        let mut got = Vec::new();
        for i in 0..5 {
            got.push(
                insert(&store, &endpoint(&format!("c{i}")), Some(net))
                    .unwrap()
                    .unwrap(),
            );
        }
        assert_eq!(got[0], Ipv4Addr::new(10, 99, 0, 2));
        assert_eq!(got[4], Ipv4Addr::new(10, 99, 0, 6));
        let e = insert(&store, &endpoint("c5"), Some(net)).unwrap_err();
        assert!(
            e.to_string()
                .contains("no free address left in 10.99.0.0/29"),
            "{e}"
        );
        assert!(matches!(
            insert(&store, &endpoint("c1"), Some(net)),
            Err(NetworkError::AlreadyAttached(_))
        ));
        remove(&store, "c2").unwrap();
        let again = insert(&store, &endpoint("c5"), Some(net)).unwrap().unwrap();
        assert_eq!(again, got[2], "the released address is reused");
        // A reopened store (a restarted daemon) sees the same allocations.
        drop(store);
        let store = Store::open(&dir.join("corral.db")).unwrap();
        assert_eq!(list(&store, Some("br-test")).unwrap().len(), 5);
        assert_eq!(get(&store, "c5").unwrap().unwrap().address, Some(got[2]));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
