//! `Peer`: one region's replica on this store. It owns the Raft node over the region's
//! `PeerStorage`, the proposals and reads waiting on it, and turns committed entries into
//! writes of an apply batch.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tinykv_proto::api::{
    AdminResponse, AdminResult, KvError, KvOp, KvResponse, KvResult, ReadMode,
};
use tinykv_raft::{
    ConfChange, ConfChangeType, Config as RaftConfig, Entry, EntryType, RawNode, StateRole,
};
use tinykv_storage::{
    ApplyBatch, PeerRole, PeerState, PeerStorage, RaftApplyState, Region, RegionEpoch,
    RegionLocalState,
};
use tokio::sync::oneshot;
use tracing::{debug, info, warn};

use crate::cmd::{ChangePeer, CmdBody, RaftCmd, WriteOp};
use crate::hibernation::Hibernation;
use crate::proposals::ProposalQueue;
use crate::read_queue::ReadQueue;

/// Where the answer to a proposal goes.
#[derive(Debug)]
pub(crate) enum Reply {
    Kv(oneshot::Sender<KvResult>),
    Admin(oneshot::Sender<AdminResult>),
}

impl Reply {
    pub(crate) fn fail(self, err: KvError) {
        // A caller that gave up (timed out) dropped its receiver; nothing to tell it.
        match self {
            Reply::Kv(tx) => {
                let _ = tx.send(Err(err));
            }
            Reply::Admin(tx) => {
                let _ = tx.send(Err(err));
            }
        }
    }

    /// Answers success (also when there was nothing to do).
    pub(crate) fn done(self) {
        match self {
            Reply::Kv(tx) => {
                let _ = tx.send(Ok(KvResponse::Written));
            }
            Reply::Admin(tx) => {
                let _ = tx.send(Ok(AdminResponse::Done));
            }
        }
    }
}

/// A linearizable read waiting for its ReadIndex round.
#[derive(Debug)]
pub(crate) struct PendingRead {
    pub op: KvOp,
    /// The epoch the request was routed with: a split between the ReadIndex round and the
    /// read must not serve a shrunk range as if it were the whole one.
    pub epoch: Option<RegionEpoch>,
    pub reply: oneshot::Sender<KvResult>,
}

/// The outcome of applying one entry, answered once the apply batch is committed.
#[derive(Debug)]
pub(crate) enum Answer {
    Done(Reply),
    Failed(Reply, KvError),
    /// An admin proposal with an answer of its own (allocated ids).
    With(Reply, AdminResponse),
}

impl Answer {
    pub(crate) fn send(self) {
        match self {
            Answer::Done(r) => r.done(),
            Answer::Failed(r, e) => r.fail(e),
            Answer::With(Reply::Admin(tx), resp) => {
                let _ = tx.send(Ok(resp));
            }
            Answer::With(r, _) => r.done(),
        }
    }
}

/// Where a cluster founded before the id allocator existed starts allocating: above every
/// peer id the earlier scheme (`(conf_ver + 1) × 1,000,000 + store id`) could have given,
/// since `conf_ver` has only grown since. Computed from the replicated region, so every
/// replica starts at the same id.
fn legacy_id_floor(region: &Region) -> u64 {
    region
        .epoch
        .conf_ver
        .saturating_add(2)
        .saturating_mul(1_000_000)
}

/// A membership change this store must act on after the apply batch is committed.
#[derive(Debug)]
pub(crate) struct AppliedChange {
    pub store_id: u64,
    pub addr: String,
    pub added: bool,
}

/// What applying a ready's committed entries produced for the store.
#[derive(Debug, Default)]
pub(crate) struct ApplyOutcome {
    pub answers: Vec<Answer>,
    pub changes: Vec<AppliedChange>,
    /// This peer was removed from its region: destroy it after the batch is committed.
    pub removed_self: bool,
    /// Stores recorded as started.
    pub started: Vec<u64>,
    /// Splits applied, in log order.
    pub splits: Vec<AppliedSplit>,
}

/// A split applied on this store: the region as it is now and the regions it created. Only the
/// new regions in `created` were written by this apply: one this store already had (a peer
/// created by a message of the new region's leader before the split applied here) is left to
/// be filled by that leader's snapshot, since it may have voted already.
#[derive(Debug)]
pub(crate) struct AppliedSplit {
    pub derived: Region,
    pub new: Vec<Region>,
    pub created: Vec<u64>,
}

pub(crate) struct Peer {
    pub meta: tinykv_storage::Peer,
    pub raw: RawNode<PeerStorage>,
    pub proposals: ProposalQueue<Reply>,
    pub reads: ReadQueue<PendingRead>,
    /// Every peer this one has heard of (region members and message senders), so that a peer
    /// created by a message can answer before it knows its region.
    peer_cache: HashMap<u64, tinykv_storage::Peer>,
    /// When each peer's last message arrived: which voters are alive, for the strict
    /// reconfiguration check.
    heard: HashMap<u64, Instant>,
    pub leader_peer: u64,
    pub role: StateRole,
    /// Set once this peer's own removal applied; the store destroys it.
    pub removed: bool,
    /// The id allocator's next id as applied here (region 1 only); `None` until first used,
    /// and again after a snapshot replaced the state machine.
    pub next_id: Option<u64>,
    /// The log index of the last split or membership change this peer proposed as leader:
    /// no other is proposed until that one applied (one epoch change in flight at a time).
    pub epoch_change_index: u64,
    /// Bytes of user data written by entries applied since the last split check.
    pub size_diff: u64,
    /// The region's user data (bytes, keys) as the last split check measured it.
    pub approximate: Option<(u64, u64)>,
    /// Approximate bytes of the log entries kept (applied since the last compaction, scaled
    /// down by each compaction; 0 after a restart), for `raft.log-gc-size-limit`.
    pub log_size: u64,
    /// Whether this peer ticks; see `hibernation.rs`.
    pub sleep: Hibernation,
}

impl Peer {
    pub fn new(
        meta: tinykv_storage::Peer,
        storage: PeerStorage,
        mut config: RaftConfig,
    ) -> Result<Peer, tinykv_raft::Error> {
        config.id = meta.id;
        config.applied = storage.applied_index();
        config.seed = meta.id ^ (meta.store_id << 32) ^ storage.region_id().rotate_left(17);
        let mut peer_cache = HashMap::new();
        for p in &storage.region().peers {
            peer_cache.insert(p.id, *p);
        }
        let raw = RawNode::new(&config, storage)?;
        Ok(Peer {
            meta,
            raw,
            proposals: ProposalQueue::default(),
            reads: ReadQueue::new(meta.id),
            peer_cache,
            heard: HashMap::new(),
            leader_peer: 0,
            role: StateRole::Follower,
            removed: false,
            next_id: None,
            epoch_change_index: 0,
            size_diff: 0,
            approximate: None,
            log_size: 0,
            sleep: Hibernation::Awake,
        })
    }

    pub fn region(&self) -> &Region {
        self.raw.store().region()
    }

    pub fn region_id(&self) -> u64 {
        self.raw.store().region_id()
    }

    pub fn is_leader(&self) -> bool {
        self.role == StateRole::Leader
    }

    pub fn remember_peer(&mut self, peer: tinykv_storage::Peer) {
        if peer.id != 0 && peer.store_id != 0 {
            self.peer_cache.insert(peer.id, peer);
        }
    }

    /// A message from `peer_id` arrived just now.
    pub fn heard_from(&mut self, peer_id: u64) {
        self.heard.insert(peer_id, Instant::now());
    }

    /// Whether `peer_id` is this peer or was heard from within `window`. While the region
    /// hibernates every member counts as alive: the loss of a store wakes the region, and the
    /// peers on that store then count as heard from when it went to sleep.
    pub fn is_alive(&self, peer_id: u64, window: Duration) -> bool {
        peer_id == self.meta.id
            || (self.sleep.is_asleep() && self.region().peers.iter().any(|p| p.id == peer_id))
            || self
                .heard
                .get(&peer_id)
                .is_some_and(|t| t.elapsed() < window)
    }

    /// Counts every member as heard from just now, except those on `lost_store`: the region
    /// wakes from hibernation, during which nothing was heard and nobody was lost but them.
    pub fn heard_from_all_but(&mut self, lost_store: Option<u64>) {
        let now = Instant::now();
        for p in &self.raw.store().region().peers {
            if p.id != self.meta.id && Some(p.store_id) != lost_store {
                self.heard.insert(p.id, now);
            }
        }
    }

    /// The region's peers not heard from within `window`.
    pub fn down_peers(&self, window: Duration) -> Vec<u64> {
        self.region()
            .peers
            .iter()
            .map(|p| p.id)
            .filter(|id| !self.is_alive(*id, window))
            .collect()
    }

    pub fn peer_by_id(&self, id: u64) -> Option<tinykv_storage::Peer> {
        self.region()
            .peers
            .iter()
            .copied()
            .find(|p| p.id == id)
            .or_else(|| self.peer_cache.get(&id).copied())
    }

    pub fn leader_store(&self) -> Option<u64> {
        if self.leader_peer == 0 {
            return None;
        }
        self.peer_by_id(self.leader_peer).map(|p| p.store_id)
    }

    /// Proposes a write; the answer comes when it applies.
    pub fn propose_write(&mut self, ops: Vec<WriteOp>, reply: Reply) {
        let cmd = RaftCmd {
            region_id: self.region_id(),
            epoch: self.region().epoch,
            body: CmdBody::Write(ops),
        };
        self.propose_cmd(cmd, reply);
    }

    /// Proposes `cmd`; the log index it got, if it reached the log.
    pub fn propose_cmd(&mut self, cmd: RaftCmd, reply: Reply) -> Option<u64> {
        match self.raw.propose(cmd.encode()) {
            Ok(p) => {
                for stale in self.proposals.push(p.index, p.term, reply) {
                    stale.fail(KvError::StaleCommand);
                }
                return Some(p.index);
            }
            Err(tinykv_raft::Error::ProposalDropped) if self.is_leader() => {
                reply.fail(KvError::ServerBusy)
            }
            // Never reached the log: the caller may send it to the leader.
            Err(tinykv_raft::Error::ProposalDropped) => reply.fail(KvError::NotLeader {
                region_id: self.region_id(),
                leader: None,
            }),
            Err(e) => reply.fail(KvError::Storage(e.to_string())),
        }
        None
    }

    pub fn propose_conf_change(&mut self, cc: ConfChange, reply: Reply) {
        match self.raw.propose_conf_change(cc) {
            Ok(p) => {
                for stale in self.proposals.push(p.index, p.term, reply) {
                    stale.fail(KvError::StaleCommand);
                }
                self.epoch_change_index = p.index;
            }
            Err(tinykv_raft::Error::ProposalDropped) => reply.fail(KvError::ServerBusy),
            Err(e) => reply.fail(KvError::Storage(e.to_string())),
        }
    }

    /// Whether a split or membership change this peer proposed has not applied yet.
    pub fn epoch_change_in_flight(&self) -> bool {
        self.epoch_change_index > self.raw.store().applied_index()
    }

    /// Applies committed entries into `batch`. Entries are applied in order; the apply state
    /// (applied index, truncated state) goes into the same batch.
    pub fn apply_entries(&mut self, entries: &[Entry], batch: &mut ApplyBatch) -> ApplyOutcome {
        let mut out = ApplyOutcome::default();
        let Some(last) = entries.last() else {
            return out;
        };
        let region_id = self.region_id();
        let mut apply_state: RaftApplyState = *self.raw.store().apply_state();
        let mut region = self.region().clone();
        let mut region_changed = false;
        for entry in entries {
            let settled = self.proposals.settle(entry.index, entry.term);
            for stale in settled.stale {
                out.answers
                    .push(Answer::Failed(stale, KvError::StaleCommand));
            }
            let reply = settled.done;
            // What this entry's command sees as applied: a CompactLog up to an index inside this
            // batch (a follower catching up applies hundreds at once) must not be refused as
            // beyond the applied index.
            apply_state.applied_index = entry.index;
            self.log_size += entry.data.len() as u64;
            let result = match entry.entry_type {
                EntryType::Normal if entry.data.is_empty() => Ok(None),
                EntryType::Normal => {
                    let splits = out.splits.len();
                    let r = self.apply_cmd(entry, &mut region, batch, &mut apply_state, &mut out);
                    region_changed |= out.splits.len() != splits;
                    r
                }
                EntryType::ConfChange => {
                    let r = self.apply_conf_change(entry, &mut region, &mut out);
                    region_changed = true;
                    r.map(|()| None)
                }
            };
            if let Some(reply) = reply {
                out.answers.push(match result {
                    Ok(None) => Answer::Done(reply),
                    Ok(Some(resp)) => Answer::With(reply, resp),
                    Err(e) => Answer::Failed(reply, e),
                });
            }
        }
        apply_state.applied_index = last.index;
        batch.set_apply_state(region_id, apply_state);
        if region_changed {
            let state = if out.removed_self {
                PeerState::Tombstone
            } else {
                PeerState::Normal
            };
            batch.set_region_state(RegionLocalState { state, region });
        }
        out
    }

    fn apply_cmd(
        &mut self,
        entry: &Entry,
        region: &mut Region,
        batch: &mut ApplyBatch,
        apply_state: &mut RaftApplyState,
        out: &mut ApplyOutcome,
    ) -> Result<Option<AdminResponse>, KvError> {
        let cmd = match RaftCmd::decode(&entry.data) {
            Ok(cmd) => cmd,
            Err(e) => {
                // Every node skips the same undecodable entry, so replicas stay identical.
                warn!(region = region.id, index = entry.index, error = %e, "skipping an undecodable entry");
                return Err(KvError::Api(e));
            }
        };
        if cmd.region_id != region.id {
            return Err(KvError::RegionNotFound {
                region_id: cmd.region_id,
            });
        }
        match cmd.body {
            CmdBody::Write(ops) => {
                if cmd.epoch.version != region.epoch.version {
                    return Err(KvError::EpochNotMatch {
                        regions: vec![region.clone()],
                    });
                }
                for op in &ops {
                    let key = match op {
                        WriteOp::Put { key, .. } | WriteOp::Delete { key } => key,
                    };
                    if !region.contains(key) {
                        return Err(key_not_in_region(key, region));
                    }
                }
                for op in ops {
                    let r = match op {
                        WriteOp::Put { key, value } => {
                            self.size_diff += (key.len() + value.len()) as u64;
                            batch.put(region, &key, &value)
                        }
                        WriteOp::Delete { key } => batch.delete(region, &key),
                    };
                    r.map_err(|e| KvError::Storage(e.to_string()))?;
                }
                Ok(None)
            }
            CmdBody::CompactLog { index, term } => {
                let first = apply_state.truncated_state.index + 1;
                if apply_state.compact_to(index, term) {
                    self.log_size = crate::log_gc::size_after_compaction(
                        self.log_size,
                        first,
                        apply_state.applied_index,
                        index,
                    );
                    debug!(region = region.id, index, term, "log compacted");
                }
                Ok(None)
            }
            CmdBody::StoreStarted { store_id } => {
                batch.set_store_started(store_id);
                out.started.push(store_id);
                Ok(None)
            }
            CmdBody::AllocIds { count } => {
                let (first, count) = self.apply_alloc_ids(count, region, batch)?;
                Ok(Some(AdminResponse::Ids { first, count }))
            }
            CmdBody::Split {
                split_keys,
                new_regions,
            } => {
                if cmd.epoch != region.epoch {
                    return Err(KvError::EpochNotMatch {
                        regions: vec![region.clone()],
                    });
                }
                let (derived, new) = crate::split::split_region(region, &split_keys, &new_regions)
                    .map_err(KvError::BadRequest)?;
                let mut created = Vec::new();
                for r in &new {
                    let existing = self
                        .raw
                        .store()
                        .engines()
                        .region_state(r.id)
                        .map_err(|e| KvError::Storage(e.to_string()))?;
                    if existing.is_none() {
                        batch.init_split_region(r);
                        created.push(r.id);
                    } else {
                        info!(
                            region = r.id,
                            "the split's new region exists on this store already; \
                             it is left to its leader's snapshot"
                        );
                    }
                }
                info!(
                    region = region.id,
                    index = entry.index,
                    new = ?new.iter().map(|r| r.id).collect::<Vec<_>>(),
                    "region split"
                );
                *region = derived.clone();
                let mut regions = vec![derived.clone()];
                regions.extend(new.iter().cloned());
                out.splits.push(AppliedSplit {
                    derived,
                    new,
                    created,
                });
                Ok(Some(AdminResponse::Split { regions }))
            }
        }
    }

    fn apply_conf_change(
        &mut self,
        entry: &Entry,
        region: &mut Region,
        out: &mut ApplyOutcome,
    ) -> Result<(), KvError> {
        let Some(cc) = ConfChange::decode(&entry.data) else {
            warn!(
                region = region.id,
                index = entry.index,
                "skipping an undecodable conf change"
            );
            return Err(KvError::Storage("undecodable conf change".into()));
        };
        let change = ChangePeer::decode(&cc.context).ok();
        if cc.change_type == ConfChangeType::RemoveNode {
            self.apply_removal(&cc, change, region, out);
            return Ok(());
        }
        let Some(change) = change else {
            warn!(
                region = region.id,
                index = entry.index,
                "add-peer without its store; ignored"
            );
            return Err(KvError::Storage("add-peer without its store".into()));
        };
        let learner = cc.change_type == ConfChangeType::AddLearnerNode;
        let existing = region
            .peers
            .iter_mut()
            .find(|p| p.id == cc.node_id || p.store_id == change.store_id);
        match existing {
            Some(p) if p.id == cc.node_id && p.is_learner() && !learner => {
                p.role = PeerRole::Voter;
                region.epoch.conf_ver += 1;
                info!(
                    region = region.id,
                    peer = p.id,
                    store = p.store_id,
                    "learner promoted"
                );
            }
            Some(p) => {
                // Already there (a retried proposal), or the store holds another peer of the
                // region: nothing changes, and Raft's membership stays the region's.
                debug!(
                    region = region.id,
                    peer = cc.node_id,
                    existing = p.id,
                    "add-peer changes nothing"
                );
                return Ok(());
            }
            None => {
                let peer = if learner {
                    tinykv_storage::Peer::learner(cc.node_id, change.store_id)
                } else {
                    tinykv_storage::Peer::voter(cc.node_id, change.store_id)
                };
                region.peers.push(peer);
                region.epoch.conf_ver += 1;
                self.remember_peer(peer);
                info!(
                    region = region.id,
                    peer = peer.id,
                    store = peer.store_id,
                    role = ?peer.role,
                    "peer added"
                );
                out.changes.push(AppliedChange {
                    store_id: change.store_id,
                    addr: change.addr,
                    added: true,
                });
            }
        }
        self.raw.apply_conf_change(&cc);
        Ok(())
    }

    fn apply_removal(
        &mut self,
        cc: &ConfChange,
        change: Option<ChangePeer>,
        region: &mut Region,
        out: &mut ApplyOutcome,
    ) {
        let store_id = change
            .map(|c| c.store_id)
            .or_else(|| self.peer_by_id(cc.node_id).map(|p| p.store_id));
        let before = region.peers.len();
        region.peers.retain(|p| p.id != cc.node_id);
        if region.peers.len() != before {
            region.epoch.conf_ver += 1;
            info!(region = region.id, peer = cc.node_id, "peer removed");
            if let Some(store_id) = store_id {
                out.changes.push(AppliedChange {
                    store_id,
                    addr: String::new(),
                    added: false,
                });
            }
        }
        if cc.node_id == self.meta.id {
            out.removed_self = true;
            self.removed = true;
        }
        self.raw.apply_conf_change(cc);
    }

    /// Hands out `count` ids from the cluster's allocator, which region 1 keeps. Every replica
    /// computes the same range from the same log, so the allocation is as durable as its entry.
    fn apply_alloc_ids(
        &mut self,
        count: u32,
        region: &Region,
        batch: &mut ApplyBatch,
    ) -> Result<(u64, u32), KvError> {
        if region.id != tinykv_storage::CLUSTER_REGION_ID {
            return Err(KvError::Storage(format!(
                "region {} keeps no id allocator",
                region.id
            )));
        }
        let next = match self.next_id {
            Some(n) => n,
            None => self
                .raw
                .store()
                .engines()
                .id_alloc()
                .map_err(|e| KvError::Storage(e.to_string()))?
                .map_or_else(|| legacy_id_floor(region), |a| a.next_id),
        };
        let end = next.saturating_add(u64::from(count));
        self.next_id = Some(end);
        batch.set_id_alloc(tinykv_storage::IdAllocState { next_id: end });
        Ok((next, count))
    }

    /// Serves a read from the applied state (after ReadIndex, or directly for a stale read),
    /// if the region's range is still the one the request was routed to (`epoch`).
    pub fn read(
        &self,
        engines: &tinykv_storage::Engines,
        op: &KvOp,
        epoch: Option<RegionEpoch>,
    ) -> KvResult {
        let region = self.region();
        if epoch.is_some_and(|e| e.version != region.epoch.version) {
            return Err(KvError::EpochNotMatch {
                regions: vec![region.clone()],
            });
        }
        match op {
            KvOp::Get { key, .. } => {
                if !region.contains(key) {
                    return Err(key_not_in_region(key, region));
                }
                engines
                    .get(key)
                    .map(|v| KvResponse::Value(v.map(Bytes::from)))
                    .map_err(|e| KvError::Storage(e.to_string()))
            }
            KvOp::Scan {
                start, end, limit, ..
            } => {
                let start: &[u8] = if start.as_ref() < region.start_key.as_slice() {
                    &region.start_key
                } else {
                    start
                };
                let end: &[u8] = match (end.is_empty(), region.end_key.is_empty()) {
                    (true, _) => &region.end_key,
                    (false, true) => end,
                    (false, false) => std::cmp::min(end.as_ref(), region.end_key.as_slice()),
                };
                if !end.is_empty() && start >= end {
                    return Ok(KvResponse::Pairs {
                        pairs: Vec::new(),
                        more: false,
                    });
                }
                let limit = (*limit).max(1) as usize;
                let rows = engines
                    .scan(start, end, limit + 1)
                    .map_err(|e| KvError::Storage(e.to_string()))?;
                let more = rows.len() > limit;
                let pairs = rows
                    .into_iter()
                    .take(limit)
                    .map(|(k, v)| (Bytes::from(k), Bytes::from(v)))
                    .collect();
                Ok(KvResponse::Pairs { pairs, more })
            }
            KvOp::Put { .. } | KvOp::Delete { .. } => {
                Err(KvError::Storage("a write is not a read".into()))
            }
        }
    }

    /// Answers everything waiting with `err` (the peer stops or loses leadership).
    pub fn fail_reads(&mut self, err: &KvError) {
        for r in self.reads.take_all() {
            let _ = r.reply.send(Err(err.clone()));
        }
    }

    /// Answers everything waiting on a peer removed from its region. Reads never happened and
    /// may go elsewhere; proposals reached the log and may still commit under another leader,
    /// so their outcome is unknown (answering `RegionNotFound` made clients send them again).
    pub fn fail_removed(&mut self) {
        let region_id = self.region_id();
        self.fail_reads(&KvError::RegionNotFound { region_id });
        for p in self.proposals.take_all() {
            p.fail(KvError::OutcomeUnknown {
                region_id,
                reason: "this store's peer was removed from the region before the proposal applied"
                    .into(),
            });
        }
    }

    pub fn fail_all(&mut self, err: &KvError) {
        self.fail_reads(err);
        for p in self.proposals.take_all() {
            p.fail(err.clone());
        }
    }
}

pub(crate) fn key_not_in_region(key: &Bytes, region: &Region) -> KvError {
    KvError::KeyNotInRegion {
        key: key.clone(),
        region_id: region.id,
        regions: vec![region.clone()],
    }
}

/// Whether an op reads with ReadIndex.
pub(crate) fn is_linearizable_read(op: &KvOp) -> bool {
    matches!(
        op,
        KvOp::Get {
            read: ReadMode::Linearizable,
            ..
        } | KvOp::Scan {
            read: ReadMode::Linearizable,
            ..
        }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A cluster founded before the allocator gave peer ids `(conf_ver + 1) × 1,000,000 +
    /// store id` at each change; its first allocation must start above all of them.
    #[test]
    fn a_legacy_cluster_allocates_above_every_id_it_gave() {
        for conf_ver in [1u64, 2, 7, 1_000] {
            let region = Region {
                id: 1,
                epoch: tinykv_storage::RegionEpoch {
                    conf_ver,
                    version: 1,
                },
                ..Region::default()
            };
            // The largest id the old scheme could have given by this `conf_ver`: a change
            // proposed at `conf_ver - 1`, on the largest store id below the stride.
            let largest_given = conf_ver * 1_000_000 + 999_999;
            assert!(legacy_id_floor(&region) > largest_given);
        }
    }
}
