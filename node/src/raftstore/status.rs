//! Inspection answers: the cluster and store status, a region's Raft state, log and checksum.

use tinykv_proto::api::{
    AdminResponse, AdminResult, ClusterInfo, KvError, LogEntryInfo, PeerProgressInfo, PeerStatus,
    RaftEntry, RaftEntryType, RegionInfo, SnapshotTransfer, StoreAddr, StoreStatus,
};
use tinykv_raft::{ConfChange, Entry, EntryType, ProgressState, StateRole};

use crate::cmd::{ChangePeer, RaftCmd};
use crate::peer::Peer;

use super::msg::RegionHealth;
use super::store::Store;

/// The most log entries one `raft log` answer describes.
pub(super) const MAX_LOG_ENTRIES: u64 = 1000;

/// About the most entry bytes one `RaftEntries` answer carries.
pub(super) const MAX_LOG_BYTES: usize = 4 * 1024 * 1024;

impl Store {
    /// Counts the regions, those led here and those whose peer knows no leader (a
    /// pre-candidate or candidate: electing, or cut off for an election timeout; an
    /// uninitialized peer), and sets the region gauges of the metrics to them.
    pub(super) fn region_health(&self) -> RegionHealth {
        let mut health = RegionHealth {
            regions: self.peers.len() as u64,
            ..RegionHealth::default()
        };
        for (region_id, peer) in &self.peers {
            let soft = peer.raw.raft().soft_state();
            if soft.role == StateRole::Leader {
                health.leaders += 1;
            }
            if soft.leader_id == 0 {
                health.without_leader.push(*region_id);
            }
        }
        let m = &self.metrics;
        let gauge = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        m.regions.set(gauge(health.regions));
        m.leaders.set(gauge(health.leaders));
        m.regions_without_leader
            .set(gauge(health.without_leader.len() as u64));
        health
    }

    pub(super) fn cluster_info(&self) -> ClusterInfo {
        ClusterInfo {
            cluster_id: self.cluster_id,
            store_id: self.store_id,
            stores: self
                .directory
                .iter()
                .map(|(id, addr)| StoreAddr {
                    store_id: *id,
                    addr: addr.clone(),
                })
                .collect(),
            regions: self
                .peers
                .values()
                .filter(|p| p.raw.store().is_initialized())
                .map(region_info)
                .collect(),
            started_stores: self.started_stores.iter().copied().collect(),
        }
    }

    pub(super) fn store_status(&self) -> StoreStatus {
        StoreStatus {
            store_id: self.store_id,
            addr: self.addr.to_string(),
            peers: self
                .peers
                .values()
                .map(|p| peer_status(p, self.alive_window()))
                .collect(),
            leader_of: self
                .peers
                .values()
                .filter(|p| p.is_leader())
                .map(Peer::region_id)
                .collect(),
            disk_bytes: 0,
            uptime_secs: self.started.elapsed().as_secs(),
            snapshots_sent: self.snapshots_sent,
            snapshots_received: self.snapshots_received,
            receiving: self
                .endpoint
                .incoming_snapshots()
                .into_iter()
                .map(|s| SnapshotTransfer {
                    region_id: s.region_id,
                    from_store: s.from_store,
                    bytes: s.received,
                    total: s.total,
                })
                .collect(),
            regions_without_leader: self.region_health().without_leader,
            version: crate::build().to_string(),
        }
    }

    pub(super) fn raft_log(&self, region_id: u64, from: u64, to: u64) -> AdminResult {
        let peer = self
            .peers
            .get(&region_id)
            .ok_or(KvError::RegionNotFound { region_id })?;
        let first = peer.raw.store().truncated_state().index + 1;
        let last = peer.raw.store().raft_state().last_index;
        let from = from.max(first);
        let to = if to == 0 { last } else { to.min(last) };
        let to = to.min(from.saturating_add(MAX_LOG_ENTRIES - 1));
        if from > to {
            return Ok(AdminResponse::RaftLog(Vec::new()));
        }
        let entries = self
            .engines
            .log_entries(region_id, from, to + 1)
            .map_err(|e| KvError::Storage(e.to_string()))?;
        Ok(AdminResponse::RaftLog(
            entries.iter().map(describe_entry).collect(),
        ))
    }

    pub(super) fn raft_entries(&self, region_id: u64, from: u64, to: u64) -> AdminResult {
        let peer = self
            .peers
            .get(&region_id)
            .ok_or(KvError::RegionNotFound { region_id })?;
        // From the first entry still on disk: log GC deletes compacted entries a little after
        // the truncated index moved past them, and they were committed all the same.
        let commit = peer.raw.store().raft_state().hard_state.commit;
        let stored = self
            .engines
            .first_stored_index(region_id)
            .map_err(|e| KvError::Storage(e.to_string()))?;
        let first = stored.unwrap_or(peer.raw.store().truncated_state().index + 1);
        let from = from.max(first);
        let to = if to == 0 { commit } else { to.min(commit) };
        let to = to.min(from.saturating_add(MAX_LOG_ENTRIES - 1));
        if from > to {
            return Ok(AdminResponse::RaftEntries(Vec::new()));
        }
        let mut entries = self
            .engines
            .log_entries(region_id, from, to + 1)
            .map_err(|e| KvError::Storage(e.to_string()))?;
        let mut bytes = 0usize;
        // The first entry always goes, so a caller paging through the log never stalls.
        let keep = entries
            .iter()
            .take_while(|e| {
                bytes += e.data.len();
                bytes <= MAX_LOG_BYTES
            })
            .count()
            .max(1);
        entries.truncate(keep);
        Ok(AdminResponse::RaftEntries(
            entries.into_iter().map(wire_entry).collect(),
        ))
    }

    pub(super) fn region_checksum(&self, region_id: u64) -> AdminResult {
        if self.installing.contains_key(&region_id) {
            return Err(KvError::ServerBusy);
        }
        let peer = self
            .peers
            .get(&region_id)
            .ok_or(KvError::RegionNotFound { region_id })?;
        let region = peer.region();
        let view = self.engines.read_view();
        let rows = view
            .scan(&region.start_key, &region.end_key, usize::MAX)
            .map_err(|e| KvError::Storage(e.to_string()))?;
        let mut h = crc32fast::Hasher::new();
        for (k, v) in &rows {
            h.update(&(k.len() as u64).to_be_bytes());
            h.update(k);
            h.update(&(v.len() as u64).to_be_bytes());
            h.update(v);
        }
        Ok(AdminResponse::Checksum {
            applied: peer.raw.store().applied_index(),
            crc32: h.finalize(),
            keys: rows.len() as u64,
        })
    }
}

pub(super) fn region_info(peer: &Peer) -> RegionInfo {
    let (approximate_size, approximate_keys) = peer.approximate.unwrap_or_default();
    RegionInfo {
        region: peer.region().clone(),
        leader_store: peer.leader_store(),
        applied: peer.raw.store().applied_index(),
        approximate_size,
        approximate_keys,
    }
}

pub(super) fn peer_status(peer: &Peer, alive_window: std::time::Duration) -> PeerStatus {
    let status = peer.raw.status();
    let storage = peer.raw.store();
    let raft_state = storage.raft_state();
    PeerStatus {
        state: crate::inspect::raft_state_info(
            peer.region_id(),
            peer.meta.id,
            raft_state,
            storage.apply_state(),
        ),
        role: role_name(status.soft_state.role).to_string(),
        leader_peer: status.soft_state.leader_id,
        pending_proposals: peer.proposals.len() as u64,
        down_peers: if peer.is_leader() {
            peer.down_peers(alive_window)
        } else {
            Vec::new()
        },
        hibernating: peer.sleep.is_asleep(),
        progress: status
            .progress
            .iter()
            .filter(|(id, _)| *id != peer.meta.id)
            .map(|(id, p)| PeerProgressInfo {
                peer: *id,
                matched: p.matched,
                next: p.next_idx,
                state: progress_state_name(p.state).to_string(),
                paused: p.paused,
                pending_snapshot: p.pending_snapshot,
                recent_active: p.recent_active,
                learner: p.is_learner,
            })
            .collect(),
        pending_peers: peer.pending_peers(),
    }
}

fn progress_state_name(state: ProgressState) -> &'static str {
    match state {
        ProgressState::Probe => "probe",
        ProgressState::Replicate => "replicate",
        ProgressState::Snapshot => "snapshot",
    }
}

pub(crate) fn role_name(role: StateRole) -> &'static str {
    match role {
        StateRole::Leader => "leader",
        StateRole::Follower => "follower",
        StateRole::Candidate => "candidate",
        StateRole::PreCandidate => "pre-candidate",
    }
}

pub(crate) fn describe_entry(e: &tinykv_raft::Entry) -> LogEntryInfo {
    let (entry_type, summary) = match e.entry_type {
        tinykv_raft::EntryType::Normal if e.data.is_empty() => ("noop", "leader no-op".to_string()),
        tinykv_raft::EntryType::Normal => match RaftCmd::decode(&e.data) {
            Ok(cmd) => ("normal", cmd.summary()),
            Err(err) => ("normal", format!("undecodable: {err}")),
        },
        tinykv_raft::EntryType::ConfChange => match ConfChange::decode(&e.data) {
            Some(cc) => {
                let store = ChangePeer::decode(&cc.context)
                    .map(|c| format!(" on store {}", c.store_id))
                    .unwrap_or_default();
                (
                    "conf-change",
                    format!("{:?} peer {}{store}", cc.change_type, cc.node_id),
                )
            }
            None => ("conf-change", "undecodable".to_string()),
        },
    };
    LogEntryInfo {
        index: e.index,
        term: e.term,
        entry_type: entry_type.to_string(),
        size: e.data.len() as u64,
        summary,
    }
}

/// A stored entry as a `RaftEntries` answer carries it (tinykv-proto's copy of the type, which
/// encodes to the same bytes).
fn wire_entry(e: Entry) -> RaftEntry {
    RaftEntry {
        entry_type: match e.entry_type {
            EntryType::Normal => RaftEntryType::Normal,
            EntryType::ConfChange => RaftEntryType::ConfChange,
        },
        term: e.term,
        index: e.index,
        data: e.data,
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use tinykv_proto::api;

    use super::*;

    /// Tools read `RaftEntries` answers as the Raft core's entries; the copy in tinykv-proto
    /// must keep encoding the same way.
    #[test]
    fn wire_entries_encode_as_raft_entries() {
        for entry_type in [EntryType::Normal, EntryType::ConfChange] {
            let entry = Entry {
                entry_type,
                term: 3,
                index: 300,
                data: Bytes::from_static(b"cmd"),
            };
            let bytes = api::encode(&entry);
            assert_eq!(api::encode(&wire_entry(entry.clone())), bytes);
            let back: Entry =
                api::decode("entry", &api::encode(&wire_entry(entry.clone()))).unwrap();
            assert_eq!(back, entry);
        }
    }
}
