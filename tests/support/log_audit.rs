//! The committed Raft log itself, audited while the nemesis runs: every store is polled for
//! the committed entries of every region it hosts (before log GC deletes them), and the
//! entries are collected by region and index. A client history can look linearizable while
//! one write stands twice in the log (a resent write committed again after its first copy
//! survived a leader change); this finds it. It also checks that two stores never hold
//! different committed entries at one index of a region.
//!
//! A put that reached a region's log after the region split away its key is refused when it
//! applies (its epoch is older than the region's) and the client sends it to the new region:
//! it stands twice in the logs but applied once. Such a put is recognized the way every
//! replica does: an entry earlier in the same log was proposed at a newer version, or is a
//! split proposed at the put's version or later.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tinykv_client::Client;
use tinykv_node::cmd::{CmdBody, RaftCmd, WriteOp};
use tinykv_proto::api::{AdminRequest, AdminResponse, RaftEntry, RaftEntryType};

/// One committed entry as the audit saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Seen {
    term: u64,
    /// The epoch version the command was proposed at, and whether it is a split.
    version: u64,
    split: bool,
    /// The entry's type and bytes: two stores must agree on them.
    entry_type: RaftEntryType,
    data: bytes::Bytes,
    /// The puts it carries, as (key, value).
    puts: Vec<(String, String)>,
}

#[derive(Default)]
struct State {
    entries: BTreeMap<(u64, u64), Seen>,
    /// Indices where two stores reported different committed entries.
    conflicts: Vec<String>,
}

/// Collects committed entries from every store it is given, until dropped.
pub struct LogAudit {
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    admin: Client,
    rt: tokio::runtime::Handle,
}

/// A put's key and value, and the (region, index) pairs where it applied.
pub type Duplicate = (String, String, Vec<(u64, u64)>);

/// What the audit found.
#[derive(Debug)]
pub struct AuditReport {
    /// Committed entries seen, and the span of indices they fall in (summed over regions).
    pub seen: usize,
    pub span: usize,
    pub regions: usize,
    /// (region, index) pairs in their region's span no store was seen holding (deleted on
    /// every store between two polls), the first few of them.
    pub missed: usize,
    pub missed_sample: Vec<(u64, u64)>,
    pub puts: usize,
    /// Puts refused at apply because their region had split meanwhile (sent again elsewhere).
    pub refused_puts: usize,
    /// Puts whose (key, value) applied at more than one (region, index).
    pub duplicates: Vec<Duplicate>,
    pub conflicts: Vec<String>,
}

impl LogAudit {
    pub fn new(admin: Client, rt: tokio::runtime::Handle) -> LogAudit {
        LogAudit {
            state: Arc::default(),
            stop: Arc::new(AtomicBool::new(false)),
            admin,
            rt,
        }
    }

    /// Polls the store at `addr` from now on, every region it hosts.
    pub fn watch(&self, addr: SocketAddr) {
        let (state, stop, admin) = (self.state.clone(), self.stop.clone(), self.admin.clone());
        self.rt.spawn(async move {
            let mut next: BTreeMap<u64, u64> = BTreeMap::new();
            while !stop.load(Ordering::Relaxed) {
                // Down, paused, or partitioned from this process: the other stores are polled
                // meanwhile.
                let Ok(AdminResponse::Cluster(info)) =
                    admin.admin(addr, AdminRequest::Cluster).await
                else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                let mut caught_up = true;
                for region in info.regions {
                    let region_id = region.region.id;
                    let from = next.get(&region_id).copied().unwrap_or(0);
                    let req = AdminRequest::RaftEntries {
                        region_id,
                        from,
                        to: 0,
                    };
                    let Ok(AdminResponse::RaftEntries(entries)) = admin.admin(addr, req).await
                    else {
                        continue;
                    };
                    if let Some(last) = entries.last() {
                        next.insert(region_id, last.index + 1);
                        caught_up = false;
                    }
                    record(&state, addr, region_id, entries);
                }
                if caught_up {
                    // Caught up with this store's commit indices; new entries come at the
                    // pace of the clients.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        });
    }

    /// Stops polling and reports on the entries up to each region's `commits`.
    pub fn finish(self, commits: &BTreeMap<u64, u64>) -> AuditReport {
        self.stop.store(true, Ordering::Relaxed);
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let mut regions: BTreeMap<u64, (u64, u64)> = BTreeMap::new();
        for (region, index) in state.entries.keys() {
            let span = regions.entry(*region).or_insert((*index, *index));
            span.0 = span.0.min(*index);
            span.1 = span.1.max(*index);
        }
        for (region, commit) in commits {
            if let Some(span) = regions.get_mut(region) {
                span.1 = span.1.max(*commit);
            }
        }
        let mut missed = Vec::new();
        let mut span = 0;
        for (region, (first, last)) in &regions {
            span += (last + 1 - first) as usize;
            missed.extend(
                (*first..=*last)
                    .filter(|i| !state.entries.contains_key(&(*region, *i)))
                    .map(|i| (*region, i)),
            );
        }
        let mut at: BTreeMap<(String, String), Vec<(u64, u64)>> = BTreeMap::new();
        let (mut puts, mut refused_puts) = (0, 0);
        let mut newest: BTreeMap<u64, u64> = BTreeMap::new();
        for ((region, index), seen) in &state.entries {
            // The version the region had at least reached before this entry, by its own log.
            let reached = newest.entry(*region).or_insert(0);
            let refused = seen.version < *reached;
            *reached = (*reached).max(seen.version + u64::from(seen.split));
            for put in &seen.puts {
                puts += 1;
                if refused {
                    refused_puts += 1;
                } else {
                    at.entry(put.clone()).or_default().push((*region, *index));
                }
            }
        }
        let duplicates = at
            .into_iter()
            .filter(|(_, indices)| indices.len() > 1)
            .map(|((k, v), indices)| (k, v, indices))
            .collect();
        AuditReport {
            seen: state.entries.len(),
            span,
            regions: regions.len(),
            missed: missed.len(),
            missed_sample: missed.into_iter().take(10).collect(),
            puts,
            refused_puts,
            duplicates,
            conflicts: state.conflicts.clone(),
        }
    }
}

impl Drop for LogAudit {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn record(state: &Mutex<State>, addr: SocketAddr, region: u64, entries: Vec<RaftEntry>) {
    let mut state = state.lock().unwrap_or_else(|e| e.into_inner());
    for e in entries {
        let cmd = (e.entry_type == RaftEntryType::Normal && !e.data.is_empty())
            .then(|| RaftCmd::decode(&e.data).ok())
            .flatten();
        let seen = Seen {
            term: e.term,
            version: cmd.as_ref().map_or(0, |c| c.epoch.version),
            split: matches!(
                cmd,
                Some(RaftCmd {
                    body: CmdBody::Split { .. },
                    ..
                })
            ),
            entry_type: e.entry_type,
            puts: cmd.map(puts_of).unwrap_or_default(),
            data: e.data,
        };
        match state.entries.get(&(region, e.index)) {
            Some(before) if *before != seen => {
                let text = format!(
                    "region {region} index {}: {addr} holds term {} {:?}, another store held \
                     term {} {:?}",
                    e.index, seen.term, seen.puts, before.term, before.puts
                );
                state.conflicts.push(text);
            }
            Some(_) => {}
            None => {
                state.entries.insert((region, e.index), seen);
            }
        }
    }
}

fn puts_of(cmd: RaftCmd) -> Vec<(String, String)> {
    match cmd {
        RaftCmd {
            body: CmdBody::Write(ops),
            ..
        } => ops
            .into_iter()
            .filter_map(|op| match op {
                // A compare-and-swap stands in the log once, like a put, whether it matches or not.
                WriteOp::Put { key, value } | WriteOp::Cas { key, value, .. } => Some((
                    String::from_utf8_lossy(&key).into_owned(),
                    String::from_utf8_lossy(&value).into_owned(),
                )),
                WriteOp::Delete { .. } | WriteOp::DeleteRange { .. } => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}
