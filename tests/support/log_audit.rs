//! The committed Raft log itself, audited while the nemesis runs: every store is polled for
//! the committed entries of region 1 it still keeps (before log GC deletes them), and the
//! entries are collected by index. A client history can look linearizable while one write
//! stands twice in the log (a resent write committed again after its first copy survived a
//! leader change); this finds it. It also checks that two stores never hold different
//! committed entries at one index.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tinykv_node::Client;
use tinykv_node::api::{AdminRequest, AdminResponse};
use tinykv_node::cmd::{CmdBody, RaftCmd, WriteOp};

/// One committed entry as the audit saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Seen {
    term: u64,
    /// The entry's type and bytes: two stores must agree on them.
    entry_type: tinykv_raft::EntryType,
    data: bytes::Bytes,
    /// The puts it carries, as (key, value).
    puts: Vec<(String, String)>,
}

#[derive(Default)]
struct State {
    entries: BTreeMap<u64, Seen>,
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

/// What the audit found.
#[derive(Debug)]
pub struct AuditReport {
    /// Committed indices seen, and the range they fall in.
    pub seen: usize,
    pub first: u64,
    pub last: u64,
    /// Indices in `first..=last` no store was seen holding (deleted on every store between
    /// two polls), the first few of them.
    pub missed: usize,
    pub missed_sample: Vec<u64>,
    pub puts: usize,
    /// Puts whose (key, value) stands at more than one index, with the indices.
    pub duplicates: Vec<(String, String, Vec<u64>)>,
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

    /// Polls the store at `addr` from now on.
    pub fn watch(&self, addr: SocketAddr) {
        let (state, stop, admin) = (self.state.clone(), self.stop.clone(), self.admin.clone());
        self.rt.spawn(async move {
            let mut next = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let req = AdminRequest::RaftEntries {
                    region_id: 1,
                    from: next,
                    to: 0,
                };
                let entries = match admin.admin(addr, req).await {
                    Ok(AdminResponse::RaftEntries(e)) => e,
                    // Down, paused, partitioned from this process, or not hosting the region:
                    // the other stores are polled meanwhile.
                    _ => {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                if let Some(last) = entries.last() {
                    next = last.index + 1;
                }
                let empty = entries.is_empty();
                record(&state, addr, entries);
                if empty {
                    // Caught up with this store's commit index; new entries come at the pace
                    // of the clients.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        });
    }

    /// Stops polling and reports on the entries up to `commit`.
    pub fn finish(self, commit: u64) -> AuditReport {
        self.stop.store(true, Ordering::Relaxed);
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let first = state.entries.keys().next().copied().unwrap_or(0);
        let last = commit.max(state.entries.keys().last().copied().unwrap_or(0));
        let missed: Vec<u64> = (first..=last)
            .filter(|i| !state.entries.contains_key(i))
            .collect();
        let mut at: BTreeMap<(String, String), Vec<u64>> = BTreeMap::new();
        let mut puts = 0;
        for (index, seen) in &state.entries {
            for put in &seen.puts {
                puts += 1;
                at.entry(put.clone()).or_default().push(*index);
            }
        }
        let duplicates = at
            .into_iter()
            .filter(|(_, indices)| indices.len() > 1)
            .map(|((k, v), indices)| (k, v, indices))
            .collect();
        AuditReport {
            seen: state.entries.len(),
            first,
            last,
            missed: missed.len(),
            missed_sample: missed.into_iter().take(10).collect(),
            puts,
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

fn record(state: &Mutex<State>, addr: SocketAddr, entries: Vec<tinykv_raft::Entry>) {
    let mut state = state.lock().unwrap_or_else(|e| e.into_inner());
    for e in entries {
        let seen = Seen {
            term: e.term,
            entry_type: e.entry_type,
            puts: puts_of(&e),
            data: e.data,
        };
        match state.entries.get(&e.index) {
            Some(before) if *before != seen => {
                let text = format!(
                    "index {}: {addr} holds term {} {:?}, another store held term {} {:?}",
                    e.index, seen.term, seen.puts, before.term, before.puts
                );
                state.conflicts.push(text);
            }
            Some(_) => {}
            None => {
                state.entries.insert(e.index, seen);
            }
        }
    }
}

fn puts_of(e: &tinykv_raft::Entry) -> Vec<(String, String)> {
    if e.entry_type != tinykv_raft::EntryType::Normal || e.data.is_empty() {
        return Vec::new();
    }
    match RaftCmd::decode(&e.data) {
        Ok(RaftCmd {
            body: CmdBody::Write(ops),
            ..
        }) => ops
            .into_iter()
            .filter_map(|op| match op {
                WriteOp::Put { key, value } => Some((
                    String::from_utf8_lossy(&key).into_owned(),
                    String::from_utf8_lossy(&value).into_owned(),
                )),
                WriteOp::Delete { .. } => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}
