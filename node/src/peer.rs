//! `Peer`: one region's replica on this store. It owns the Raft node over the region's
//! `PeerStorage` and the proposals and reads waiting on it; it proposes, and serves reads
//! from the applied state. Applying committed entries is in `apply.rs`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use prometheus_client::metrics::counter::Counter;
use tinykv_proto::api::{KvError, KvOp, KvResponse, KvResult, ReadMode};
use tinykv_raft::{ConfChange, Config as RaftConfig, RawNode, StateRole};
use tinykv_storage::{PeerStorage, Region, RegionEpoch};

use crate::cmd::{CmdBody, RaftCmd, WriteOp};
use crate::hibernation::Hibernation;
use crate::proposals::ProposalQueue;
use crate::read_queue::ReadQueue;
use crate::read_views::ReadViews;
use crate::reply::{PendingRead, Reply};

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
    /// The applied index of the apply state last written to disk (it may trail the applied
    /// index by a run of writes; see `apply.rs`).
    pub apply_state_written: u64,
    /// The store's count of proposals that reached the log (a metric).
    pub proposed: Counter,
}

impl Peer {
    pub fn new(
        meta: tinykv_storage::Peer,
        storage: PeerStorage,
        mut config: RaftConfig,
        proposed: Counter,
    ) -> Result<Peer, tinykv_raft::Error> {
        config.id = meta.id;
        let applied = storage.applied_index();
        config.applied = applied;
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
            apply_state_written: applied,
            proposed,
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

    /// The ids of the region's other members (voters and learners).
    pub fn other_members(&self) -> Vec<u64> {
        self.region()
            .peers
            .iter()
            .map(|p| p.id)
            .filter(|id| *id != self.meta.id)
            .collect()
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

    /// On a leader, the other peers that cannot catch up from its log: in snapshot state, or
    /// known to hold no more than what it compacted away. Just after an election every
    /// follower shows as matched 0 until it answers, so they show here for a moment too.
    pub fn pending_peers(&self) -> Vec<u64> {
        if !self.is_leader() {
            return Vec::new();
        }
        let truncated = self.raw.store().truncated_state().index;
        let own = self.meta.id;
        let status = self.raw.status();
        let mut out: Vec<u64> = status
            .progress
            .iter()
            .filter(|(id, p)| {
                *id != own
                    && (p.state == tinykv_raft::ProgressState::Snapshot || p.matched < truncated)
            })
            .map(|(id, _)| *id)
            .collect();
        out.sort_unstable();
        out
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

    /// The transport lost `store_id`. If this peer follows a leader there, it campaigns soon,
    /// ranked among the voters elsewhere by peer id so that they do not split the vote.
    pub fn on_leader_store_lost(&mut self, store_id: u64) {
        let raft = self.raw.raft();
        let leader = raft.leader_id();
        if raft.role() != StateRole::Follower
            || leader == 0
            || self.peer_by_id(leader).map(|p| p.store_id) != Some(store_id)
        {
            return;
        }
        let me = raft.id();
        let mut remaining: Vec<u64> = raft
            .conf_state()
            .voters
            .into_iter()
            .filter(|v| self.peer_by_id(*v).is_some_and(|p| p.store_id != store_id))
            .collect();
        remaining.sort_unstable();
        if let Some(rank) = remaining.iter().position(|v| *v == me) {
            self.raw.report_leader_unreachable(rank);
        }
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
                self.proposed.inc();
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
                self.proposed.inc();
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

    /// Serves a read from the applied state (after ReadIndex, or directly for a stale read),
    /// if the region's range is still the one the request was routed to (`epoch`).
    pub fn read(
        &self,
        engines: &tinykv_storage::Engines,
        views: &ReadViews,
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
            KvOp::OpenView { start } => {
                if !region.contains(start) {
                    return Err(key_not_in_region(start, region));
                }
                let view = views.open(engines.read_view(), start, &region.end_key)?;
                Ok(KvResponse::ViewOpened {
                    view,
                    region: region.clone(),
                    applied: self.raw.store().applied_index(),
                })
            }
            KvOp::Put { .. }
            | KvOp::Delete { .. }
            | KvOp::DeleteRange { .. }
            | KvOp::Cas { .. }
            | KvOp::ViewScan { .. }
            | KvOp::CloseView { .. }
            | KvOp::RenewViews { .. } => Err(KvError::BadRequest(
                "not a read the raft loop serves".into(),
            )),
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
        } | KvOp::OpenView { .. }
    )
}
