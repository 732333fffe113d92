//! `raft state|log` (online through a node's admin service, or offline from a stopped node's data
//! dir, printed the same way), and the leader-side admin verbs `snapshot trigger`, `compact log`
//! and `transfer-leader`.

use std::net::SocketAddr;
use std::path::Path;

use serde_json::json;
use tinykv_client::{Client, ClientError};
use tinykv_node::inspect;
use tinykv_proto::api::{AdminRequest, AdminResponse, LogEntryInfo, PeerStatus, RaftStateInfo};

use crate::args::{GlobalArgs, Output, RaftCmd};
use crate::commands::offline::{inspect_error, open_offline};
use crate::connect;
use crate::exit::{CliError, CliResult, Exit};
use crate::output::{Table, print_json};

/// At most this many entries per `raft log`, the same cap the node applies online.
const MAX_LOG_ENTRIES: u64 = 1000;

pub async fn run(global: &GlobalArgs, data_dir: Option<&Path>, cmd: RaftCmd) -> CliResult {
    match cmd {
        RaftCmd::State { region, store } => match data_dir {
            Some(dir) => {
                let engines = open_offline(dir)?;
                let state =
                    inspect::raft_state(&engines, region).map_err(|e| inspect_error(dir, e))?;
                print_state(global.output, &state);
            }
            None => match admin_on(global, store, AdminRequest::RaftState { region_id: region })
                .await?
            {
                AdminResponse::RaftState(status) => print_live_state(global.output, &status),
                other => return Err(unexpected(&other)),
            },
        },
        RaftCmd::Log {
            region,
            store,
            from,
            to,
        } => {
            let (from, to) = (from.unwrap_or(0), to.unwrap_or(0));
            let entries = match data_dir {
                Some(dir) => {
                    let engines = open_offline(dir)?;
                    inspect::raft_log(&engines, region, from, to, MAX_LOG_ENTRIES)
                        .map_err(|e| inspect_error(dir, e))?
                }
                None => {
                    let req = AdminRequest::RaftLog {
                        region_id: region,
                        from,
                        to,
                    };
                    match admin_on(global, store, req).await? {
                        AdminResponse::RaftLog(entries) => entries,
                        other => return Err(unexpected(&other)),
                    }
                }
            };
            print_log(global.output, region, &entries);
        }
    }
    Ok(())
}

pub async fn snapshot_trigger(global: &GlobalArgs, region: u64) -> CliResult {
    leader_admin(
        global,
        region,
        AdminRequest::SnapshotTrigger { region_id: region },
    )
    .await?;
    done(
        global.output,
        &format!("region {region}: the leader is building a snapshot"),
    );
    Ok(())
}

pub async fn compact_log(global: &GlobalArgs, region: u64) -> CliResult {
    leader_admin(
        global,
        region,
        AdminRequest::CompactLog { region_id: region },
    )
    .await?;
    done(
        global.output,
        &format!("region {region}: log compaction proposed"),
    );
    Ok(())
}

pub async fn transfer_leader(global: &GlobalArgs, region: u64, store: u64) -> CliResult {
    let req = AdminRequest::TransferLeader {
        region_id: region,
        to_store: store,
    };
    leader_admin(global, region, req).await?;
    done(
        global.output,
        &format!("region {region}: leadership is moving to store {store}"),
    );
    Ok(())
}

fn done(output: Output, message: &str) {
    match output {
        Output::Json => print_json(&json!({ "ok": true, "message": message })),
        Output::Table => println!("{message}"),
    }
}

async fn leader_admin(
    global: &GlobalArgs,
    region: u64,
    req: AdminRequest,
) -> CliResult<AdminResponse> {
    let client = connect::client(global).await?;
    Ok(client.admin_leader(region, req).await?)
}

/// Online inspection asks one node about its own peer: store `store`, or else the node named
/// first in `-e`.
async fn admin_on(
    global: &GlobalArgs,
    store: Option<u64>,
    req: AdminRequest,
) -> CliResult<AdminResponse> {
    let client = connect::client(global).await?;
    let addr = match store {
        Some(id) => store_addr(&client, id).await?,
        None => client.endpoints()[0],
    };
    client.admin(addr, req).await.map_err(|e| {
        let unreachable = matches!(e, ClientError::Unreachable { .. });
        let err = CliError::from(e);
        match (unreachable, store) {
            (true, None) => err.hint(
                "the first node of -e is asked about its own peer: `--store ID` asks another \
                 store, `--data-dir DIR` reads a stopped node's data dir",
            ),
            (true, Some(_)) => err.hint("`--data-dir DIR` reads a stopped node's data dir"),
            _ => err,
        }
    })
}

/// Where store `id` serves, as the cluster lists it.
async fn store_addr(client: &Client, id: u64) -> CliResult<SocketAddr> {
    let info = client.cluster().await?;
    let known: Vec<String> = info.stores.iter().map(|s| s.store_id.to_string()).collect();
    let store = info
        .stores
        .iter()
        .find(|s| s.store_id == id)
        .ok_or_else(|| {
            CliError::new(
                Exit::NotFound,
                format!(
                    "store {id} is not in the cluster (stores: {})",
                    known.join(", ")
                ),
            )
            .hint("`tinykv cluster status` lists the stores")
        })?;
    store.addr.parse().map_err(|e| {
        CliError::failed(format!(
            "the cluster lists store {id} at {:?}, not an address: {e}",
            store.addr
        ))
    })
}

fn unexpected(answer: &AdminResponse) -> CliError {
    CliError::failed(format!("the node gave an unexpected answer: {answer:?}"))
        .hint("the node and this tinykv may be of different versions")
}

fn print_state(output: Output, s: &RaftStateInfo) {
    match output {
        Output::Json => print_json(&json!(s)),
        Output::Table => state_table(s).print(),
    }
}

/// A running peer's state, its role and, on a leader, what it knows of every other peer: the
/// place to look when one follower stays behind.
fn print_live_state(output: Output, status: &PeerStatus) {
    match output {
        Output::Json => {
            let mut doc = json!(status.state);
            doc["role"] = json!(status.role);
            doc["leader_peer"] = json!(status.leader_peer);
            doc["hibernating"] = json!(status.hibernating);
            doc["progress"] = json!(status.progress);
            print_json(&doc);
        }
        Output::Table => {
            let mut t = state_table(&status.state);
            t.row(vec!["role".into(), status.role.clone()]);
            t.row(vec!["leader_peer".into(), status.leader_peer.to_string()]);
            t.row(vec!["hibernating".into(), status.hibernating.to_string()]);
            t.print();
            if status.progress.is_empty() {
                return;
            }
            println!();
            let mut t = Table::new(&[
                "PEER", "MATCHED", "NEXT", "STATE", "PAUSED", "SNAPSHOT", "ACTIVE", "LEARNER",
            ]);
            for p in &status.progress {
                t.row(vec![
                    p.peer.to_string(),
                    p.matched.to_string(),
                    p.next.to_string(),
                    p.state.clone(),
                    yes_no(p.paused),
                    p.pending_snapshot.to_string(),
                    yes_no(p.recent_active),
                    yes_no(p.learner),
                ]);
            }
            t.print();
        }
    }
}

fn yes_no(b: bool) -> String {
    if b { "yes" } else { "no" }.to_string()
}

fn state_table(s: &RaftStateInfo) -> Table {
    let mut t = Table::new(&["FIELD", "VALUE"]);
    for (name, value) in [
        ("region", s.region),
        ("peer", s.peer),
        ("term", s.term),
        ("vote", s.vote),
        ("commit", s.commit),
        ("applied", s.applied),
        ("truncated_index", s.truncated_index),
        ("truncated_term", s.truncated_term),
        ("last_index", s.last_index),
        ("last_term", s.last_term),
    ] {
        t.row(vec![name.to_string(), value.to_string()]);
    }
    t
}

fn print_log(output: Output, region: u64, entries: &[LogEntryInfo]) {
    match output {
        Output::Json => print_json(&json!({ "region": region, "entries": entries })),
        Output::Table => {
            let mut t = Table::new(&["INDEX", "TERM", "TYPE", "SIZE", "SUMMARY"]);
            for e in entries {
                t.row(vec![
                    e.index.to_string(),
                    e.term.to_string(),
                    e.entry_type.clone(),
                    e.size.to_string(),
                    e.summary.clone(),
                ]);
            }
            t.print();
        }
    }
}
