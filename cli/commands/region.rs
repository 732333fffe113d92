//! `region list|show|locate|split`: every store is asked for the regions it hosts, and each
//! region is shown as its leader describes it. With `--data-dir`, `list|show|locate` read a
//! stopped store's own regions and store directory instead.

use serde_json::{Value, json};
use tinykv_client::RegionCheck;
use tinykv_proto::api::{ClusterInfo, RegionInfo};

use std::path::Path;

use tinykv_node::inspect::{self, StoredRegion};

use crate::args::{CheckKind, GlobalArgs, Output, RegionCmd};
use crate::commands::offline::{inspect_error, open_offline};
use crate::connect;
use crate::exit::{CliError, CliResult, Exit};
use crate::output::{Table, bytes_json, bytes_text, human_bytes, print_json};

pub async fn run(global: &GlobalArgs, data_dir: Option<&Path>, cmd: RegionCmd) -> CliResult {
    if let Some(dir) = data_dir {
        return offline(global.output, dir, &cmd);
    }
    let client = connect::client(global).await?;
    if let RegionCmd::Split { region, split_keys } = &cmd {
        return split(global, &client, *region, split_keys).await;
    }
    if let RegionCmd::Check { kind, max_replicas } = &cmd {
        return check(global, &client, *kind, *max_replicas).await;
    }
    let info = client.cluster().await?;
    let all = client.regions().await?;
    let regions: Vec<&RegionInfo> = match &cmd {
        RegionCmd::Show { id } => {
            let r = all.iter().find(|r| r.region.id == *id).ok_or_else(|| {
                CliError::new(Exit::NotFound, format!("region {id} does not exist"))
                    .hint("list the regions with `tinykv region list`")
            })?;
            vec![r]
        }
        RegionCmd::Locate { key } => {
            let r = all
                .iter()
                .find(|r| r.region.contains(key.as_bytes()))
                .ok_or_else(|| {
                    CliError::new(Exit::NotFound, format!("no region holds key {key:?}"))
                        .hint("a region that just split may not be known yet; try again")
                })?;
            vec![r]
        }
        RegionCmd::List | RegionCmd::Split { .. } | RegionCmd::Check { .. } => all.iter().collect(),
    };
    if global.output == Output::Json {
        match cmd {
            RegionCmd::List => {
                let list: Vec<Value> = regions.iter().map(|r| region_json(r)).collect();
                print_json(&json!({ "regions": list }));
            }
            _ => print_json(&region_json(regions[0])),
        }
    } else {
        region_table(&info, &regions).print();
    }
    Ok(())
}

async fn split(
    global: &GlobalArgs,
    client: &tinykv_client::Client,
    region: u64,
    split_keys: &[String],
) -> CliResult {
    let keys = split_keys.iter().map(|k| k.clone().into()).collect();
    let regions = client.split_region(region, keys).await?;
    if global.output == Output::Json {
        let list: Vec<Value> = regions
            .iter()
            .map(|r| {
                json!({
                    "id": r.id,
                    "start": bytes_json(&r.start_key),
                    "end": bytes_json(&r.end_key),
                    "epoch": { "version": r.epoch.version, "conf_ver": r.epoch.conf_ver },
                })
            })
            .collect();
        print_json(&json!({ "regions": list }));
    } else {
        let mut table = Table::new(&["ID", "START", "END", "EPOCH"]);
        for r in &regions {
            table.row(vec![
                r.id.to_string(),
                key_bound(&r.start_key),
                key_bound(&r.end_key),
                format!("v{}/c{}", r.epoch.version, r.epoch.conf_ver),
            ]);
        }
        table.print();
    }
    Ok(())
}

async fn check(
    global: &GlobalArgs,
    client: &tinykv_client::Client,
    kind: CheckKind,
    max_replicas: usize,
) -> CliResult {
    let check = match kind {
        CheckKind::Missing => RegionCheck::Missing,
        CheckKind::Extra => RegionCheck::Extra,
        CheckKind::Down => RegionCheck::Down,
        CheckKind::Pending => RegionCheck::Pending,
    };
    let found = client.region_check(check, max_replicas).await?;
    let peer_list = |peers: &[tinykv_proto::Peer]| -> Vec<Value> {
        peers
            .iter()
            .map(|p| json!({ "id": p.id, "store": p.store_id, "role": role_name(p.role) }))
            .collect()
    };
    if global.output == Output::Json {
        let list: Vec<Value> = found
            .iter()
            .map(|f| {
                let mut v = region_json(&f.region);
                v["voters"] = json!(voters(&f.region));
                v["matched_peers"] = json!(peer_list(&f.peers));
                v
            })
            .collect();
        print_json(&json!({ "max_replicas": max_replicas, "regions": list }));
        return Ok(());
    }
    let mut table = Table::new(&["ID", "START", "END", "EPOCH", "VOTERS", "LEADER", "PEERS"]);
    for f in &found {
        let r = &f.region;
        let peers = if f.peers.is_empty() {
            peers_text(&r.region.peers)
        } else {
            peers_text(&f.peers)
        };
        table.row(vec![
            r.region.id.to_string(),
            key_bound(&r.region.start_key),
            key_bound(&r.region.end_key),
            format!("v{}/c{}", r.region.epoch.version, r.region.epoch.conf_ver),
            format!("{}/{max_replicas}", voters(r)),
            r.leader_store
                .map_or("none".to_string(), |s| format!("store {s}")),
            peers,
        ]);
    }
    table.print();
    Ok(())
}

fn voters(r: &RegionInfo) -> usize {
    r.region
        .peers
        .iter()
        .filter(|p| p.role == tinykv_proto::PeerRole::Voter)
        .count()
}

pub fn role_name(role: tinykv_proto::PeerRole) -> &'static str {
    match role {
        tinykv_proto::PeerRole::Voter => "voter",
        tinykv_proto::PeerRole::Learner => "learner",
    }
}

pub fn region_json(r: &RegionInfo) -> Value {
    let peers: Vec<Value> = r
        .region
        .peers
        .iter()
        .map(|p| json!({ "id": p.id, "store": p.store_id, "role": role_name(p.role) }))
        .collect();
    json!({
        "id": r.region.id,
        "start": bytes_json(&r.region.start_key),
        "end": bytes_json(&r.region.end_key),
        "epoch": { "version": r.region.epoch.version, "conf_ver": r.region.epoch.conf_ver },
        "peers": peers,
        "leader_store": r.leader_store,
        "applied": r.applied,
        "approximate_size": r.approximate_size,
        "approximate_keys": r.approximate_keys,
    })
}

fn region_table(info: &ClusterInfo, regions: &[&RegionInfo]) -> Table {
    let mut table = Table::new(&[
        "ID", "START", "END", "EPOCH", "PEERS", "LEADER", "APPLIED", "SIZE", "KEYS",
    ]);
    for r in regions {
        let leader = match r.leader_store {
            Some(store) => {
                let addr = info
                    .stores
                    .iter()
                    .find(|s| s.store_id == store)
                    .map(|s| s.addr.as_str());
                format!("store {store} ({})", addr.unwrap_or("?"))
            }
            None => "none".to_string(),
        };
        table.row(vec![
            r.region.id.to_string(),
            key_bound(&r.region.start_key),
            key_bound(&r.region.end_key),
            format!("v{}/c{}", r.region.epoch.version, r.region.epoch.conf_ver),
            peers_text(&r.region.peers),
            leader,
            r.applied.to_string(),
            human_bytes(r.approximate_size),
            r.approximate_keys.to_string(),
        ]);
    }
    table
}

/// `id@storeN` for each peer, learners marked.
fn peers_text(peers: &[tinykv_proto::Peer]) -> String {
    let peers: Vec<String> = peers
        .iter()
        .map(|p| {
            let learner = if p.is_learner() { " (learner)" } else { "" };
            format!("{}@store{}{learner}", p.id, p.store_id)
        })
        .collect();
    peers.join(",")
}

fn key_bound(key: &[u8]) -> String {
    if key.is_empty() {
        "-".to_string()
    } else {
        bytes_text(key)
    }
}

/// `region list|show|locate` over a stopped store's data dir: the regions it holds (tombstones
/// too), measured by a pass over their keys, and the store addresses it recorded.
fn offline(output: Output, dir: &Path, cmd: &RegionCmd) -> CliResult {
    let engines = open_offline(dir)?;
    let all = inspect::regions(&engines).map_err(|e| inspect_error(dir, e))?;
    let (store_id, stores) = inspect::stores(&engines).map_err(|e| inspect_error(dir, e))?;
    let live = |r: &&StoredRegion| r.state != "tombstone";
    let regions: Vec<&StoredRegion> = match cmd {
        RegionCmd::List => all.iter().collect(),
        RegionCmd::Show { id } => {
            let r = all
                .iter()
                .find(|r| r.info.region.id == *id)
                .ok_or_else(|| {
                    CliError::new(
                        Exit::NotFound,
                        format!("region {id} is not in this data dir ({})", dir.display()),
                    )
                    .hint("`tinykv region list --data-dir DIR` names its regions")
                })?;
            vec![r]
        }
        RegionCmd::Locate { key } => {
            let r = all
                .iter()
                .filter(live)
                .find(|r| r.info.region.contains(key.as_bytes()))
                .ok_or_else(|| {
                    CliError::new(
                        Exit::NotFound,
                        format!("no region of this data dir holds key {key:?}"),
                    )
                    .hint("each store holds only some regions; try another store's data dir")
                })?;
            vec![r]
        }
        RegionCmd::Split { .. } => {
            return Err(CliError::new(
                Exit::Usage,
                "a split is proposed to a running region's leader",
            )
            .hint("pass -e HOST:PORT instead of --data-dir"));
        }
        RegionCmd::Check { .. } => {
            return Err(
                CliError::new(Exit::Usage, "a check asks the running regions' leaders")
                    .hint("pass -e HOST:PORT instead of --data-dir"),
            );
        }
    };
    match output {
        Output::Json => {
            let json_of = |r: &StoredRegion| {
                let mut v = region_json(&r.info);
                v["state"] = json!(r.state);
                v
            };
            match cmd {
                RegionCmd::List => {
                    let list: Vec<Value> = regions.iter().map(|r| json_of(r)).collect();
                    let stores: Vec<Value> = stores
                        .iter()
                        .map(|s| json!({ "store_id": s.store_id, "addr": s.addr }))
                        .collect();
                    print_json(&json!({ "store_id": store_id, "regions": list, "stores": stores }));
                }
                _ => print_json(&json_of(regions[0])),
            }
        }
        Output::Table => {
            let mut table = Table::new(&[
                "ID", "START", "END", "EPOCH", "PEERS", "STATE", "APPLIED", "SIZE", "KEYS",
            ]);
            for r in &regions {
                table.row(vec![
                    r.info.region.id.to_string(),
                    key_bound(&r.info.region.start_key),
                    key_bound(&r.info.region.end_key),
                    format!(
                        "v{}/c{}",
                        r.info.region.epoch.version, r.info.region.epoch.conf_ver
                    ),
                    peers_text(&r.info.region.peers),
                    r.state.to_string(),
                    r.info.applied.to_string(),
                    human_bytes(r.info.approximate_size),
                    r.info.approximate_keys.to_string(),
                ]);
            }
            table.print();
            if matches!(cmd, RegionCmd::List) {
                let known: Vec<String> = stores
                    .iter()
                    .map(|s| format!("store {} at {}", s.store_id, s.addr))
                    .collect();
                println!("\nstore {store_id} knows: {}", known.join(", "));
            }
        }
    }
    Ok(())
}
