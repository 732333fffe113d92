//! `RawNode`: the driver-facing face of Raft. The driver feeds it ticks, messages and
//! proposals, and collects a [`Ready`] of work to do: persist, send, apply.
//!
//! The cycle, repeated:
//! 1. `tick()` on every base tick; `step(msg)` for every message from a peer;
//!    `propose`/`propose_conf_change`/`read_index`/`transfer_leader` for local requests.
//!    Step everything that is waiting before taking the ready: a leader composes its appends
//!    when `ready()` is called, so the proposals and commits of one round reach each follower
//!    in one append.
//! 2. When `has_ready()`, take `ready()`. Then, in this order:
//!    a. `immediate_messages` may be sent at once (or with the others in c);
//!    b. if `snapshot` is set, install it in storage;
//!    c. append `entries` to storage (replacing any conflicting suffix) and persist `hard_state`
//!    if set, durably, before anything below;
//!    d. send `messages`;
//!    e. apply `committed_entries` in order (calling `apply_conf_change` for conf changes);
//!    f. hand `read_states` to waiting readers once applied index ≥ their index.
//! 3. `advance(ready)`.

use bytes::Bytes;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::message::{
    ConfChange, ConfState, Entry, EntryType, HardState, Message, MessageType, Snapshot,
};
use crate::raft::Raft;
use crate::storage::Storage;

/// The role a node plays.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum StateRole {
    #[default]
    Follower,
    PreCandidate,
    Candidate,
    Leader,
}

/// State that need not be persisted: who leads and which role this node plays.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SoftState {
    /// 0 when no leader is known.
    pub leader_id: u64,
    pub role: StateRole,
}

/// A read-index answer: once the applied index reaches `index`, reads for `request_ctx` are
/// linearizable.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReadState {
    pub index: u64,
    pub request_ctx: Bytes,
}

/// What became of a snapshot sent to a peer (reported by the driver).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SnapshotStatus {
    Finish,
    Failure,
}

/// The work a node hands to its driver. See the module docs for the order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Ready {
    /// Set when leader or role changed since the last ready.
    pub soft_state: Option<SoftState>,
    /// Set when term, vote or commit changed since the last ready.
    pub hard_state: Option<HardState>,
    pub read_states: Vec<ReadState>,
    /// Entries to append to stable storage.
    pub entries: Vec<Entry>,
    /// A snapshot to install before appending `entries`.
    pub snapshot: Option<Snapshot>,
    /// Committed entries to apply, in order.
    pub committed_entries: Vec<Entry>,
    /// Messages to send once `entries` and `hard_state` are durable.
    pub messages: Vec<Message>,
    /// Messages that may be sent before this ready is durable: a leader's appends and
    /// heartbeats in a term and vote it persisted earlier. Sending them first lets followers
    /// write while the leader writes. The driver must still make this ready durable before it
    /// steps anything else: the leader counts its own new entries as replicated.
    pub immediate_messages: Vec<Message>,
    /// True when `entries` or `hard_state` (term or vote) must be fsynced before sending.
    pub must_sync: bool,
    /// Set when committed entries are due but storage could not read them (the error's
    /// text): none were handed out and `has_ready` stays true, so a driver that ignores this
    /// stalls. Storage that cannot read its own committed log is broken; treat it as failed.
    pub committed_entries_unreadable: Option<String>,
}

/// Replication state of one peer, as the leader tracks it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProgressState {
    Probe,
    Replicate,
    Snapshot,
}

/// What the leader knows of one peer's log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerProgress {
    pub matched: u64,
    pub next_idx: u64,
    pub state: ProgressState,
    /// The snapshot index sent while in `Snapshot` state, else 0.
    pub pending_snapshot: u64,
    pub recent_active: bool,
    pub is_learner: bool,
    /// The leader sends this peer nothing new until it answers (a probe out, the inflight
    /// window full, or a snapshot in flight).
    pub paused: bool,
}

/// A snapshot of a node's Raft state, for inspection.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Status {
    pub id: u64,
    pub hard_state: HardState,
    pub soft_state: SoftState,
    pub applied: u64,
    pub first_index: u64,
    pub last_index: u64,
    pub conf_state: ConfState,
    /// Per peer, on a leader only.
    pub progress: Vec<(u64, PeerProgress)>,
}

/// Where a proposal landed in the log: it is committed when an entry with this index and this
/// term is applied; an entry with the same index and another term means it was overwritten.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Proposed {
    pub index: u64,
    pub term: u64,
}

/// How many `max_size_per_msg` worth of committed entries one `Ready` hands out at most, so a
/// node catching up applies in bounded batches.
const COMMITTED_BATCH_FACTOR: u64 = 16;

/// A Raft node driven from outside.
pub struct RawNode<S: Storage> {
    raft: Raft<S>,
    /// What the last accepted `Ready` reported, to tell what changed since.
    prev_soft_state: SoftState,
    prev_hard_state: HardState,
    max_committed_size: u64,
    /// What the last `ready()` handed out. `advance` settles from this rather than from the
    /// `Ready` it is given back, so a driver that moved fields out of it (to apply entries
    /// without copying them) cannot leave Raft thinking they were never applied.
    handed_out: Option<HandedOut>,
}

#[derive(Clone, Copy, Debug)]
struct HandedOut {
    soft_state: Option<SoftState>,
    hard_state: Option<HardState>,
    snapshot_index: Option<u64>,
    last_entry: Option<(u64, u64)>,
    last_committed: Option<u64>,
}

impl<S: Storage> RawNode<S> {
    /// A node over `storage`; its membership is the storage's conf state, or `config.peers`
    /// when storage has none.
    pub fn new(config: &Config, storage: S) -> Result<RawNode<S>> {
        let raft = Raft::new(config, storage)?;
        let prev_soft_state = raft.soft_state();
        let prev_hard_state = raft.hard_state();
        Ok(RawNode {
            raft,
            prev_soft_state,
            prev_hard_state,
            max_committed_size: config
                .max_size_per_msg
                .saturating_mul(COMMITTED_BATCH_FACTOR),
            handed_out: None,
        })
    }

    /// The state machine, for inspection.
    pub fn raft(&self) -> &Raft<S> {
        &self.raft
    }

    /// One base tick: drives election timeouts, heartbeats, check quorum and snapshot timeouts.
    pub fn tick(&mut self) {
        self.raft.tick();
    }

    /// Start an election now (local Hup).
    pub fn campaign(&mut self) -> Result<()> {
        self.raft
            .step(Message::new(MessageType::Hup, self.raft.id, self.raft.id))
    }

    /// Append `data` as a normal entry. Only a leader accepts; otherwise `ProposalDropped`.
    pub fn propose(&mut self, data: Bytes) -> Result<Proposed> {
        self.propose_entry(Entry {
            entry_type: EntryType::Normal,
            data,
            ..Entry::default()
        })
    }

    /// Propose a single-peer membership change. `ProposalDropped` while another is pending
    /// (proposed but not yet applied) or when not leader.
    pub fn propose_conf_change(&mut self, cc: ConfChange) -> Result<Proposed> {
        let data = cc.encode();
        self.propose_entry(Entry {
            entry_type: EntryType::ConfChange,
            data,
            ..Entry::default()
        })
    }

    fn propose_entry(&mut self, entry: Entry) -> Result<Proposed> {
        let id = self.raft.id;
        self.raft.step(Message {
            entries: vec![entry],
            ..Message::new(MessageType::Propose, id, id)
        })?;
        Ok(Proposed {
            index: self.raft.last_index(),
            term: self.raft.term,
        })
    }

    /// Followers learn at once when `index` commits, even with
    /// [`crate::Config::skip_bcast_commit`]: for an entry they must act on promptly (a split).
    /// Ignored unless leader; forgotten when leadership changes.
    pub fn broadcast_commit_of(&mut self, index: u64) {
        self.raft.broadcast_commit_of(index);
    }

    /// On a leader whose group is at rest, the index it rests at: every peer holds the whole
    /// log, all of it is committed and applied here, and no proposal, read, snapshot or leader
    /// transfer is under way. The node uses it to decide that a group may hibernate.
    pub fn settled_index(&self) -> Option<u64> {
        self.raft.settled_index()
    }

    /// On a leader, sends a heartbeat round now; nothing otherwise.
    pub fn ping(&mut self) {
        self.raft.ping();
    }

    /// Apply a committed conf change to the node's membership; returns the new membership.
    pub fn apply_conf_change(&mut self, cc: &ConfChange) -> ConfState {
        self.raft.apply_conf_change(cc)
    }

    /// Step a message that came from a peer. Local kinds are `StepLocalMsg`; responses from
    /// peers outside the group are `StepPeerNotFound`.
    pub fn step(&mut self, msg: Message) -> Result<()> {
        if msg.msg_type.is_local() {
            return Err(Error::StepLocalMsg(msg.msg_type));
        }
        if msg.msg_type.is_response() && !self.raft.prs.contains(msg.from) {
            return Err(Error::StepPeerNotFound(msg.from));
        }
        self.raft.step(msg)
    }

    /// Hand leadership to `transferee` (on the leader; a follower forwards the request).
    pub fn transfer_leader(&mut self, transferee: u64) {
        let m = Message::new(MessageType::TransferLeader, transferee, self.raft.id);
        // Only proposals can fail, and this is not one.
        let _ = self.raft.step(m);
    }

    /// Ask for a read index; the answer comes as a `ReadState` with the same `ctx`. `ctx`
    /// should be unique among outstanding requests and, in Safe mode, non-empty (heartbeat
    /// answers are matched to the request by it); a request that cannot be served now (no
    /// leader known) is dropped and the caller retries.
    pub fn read_index(&mut self, ctx: Bytes) {
        let id = self.raft.id;
        let m = Message {
            context: ctx,
            ..Message::new(MessageType::ReadIndex, id, id)
        };
        let _ = self.raft.step(m);
    }

    /// The transport could not reach `id`: the leader goes back to probing it.
    pub fn report_unreachable(&mut self, id: u64) {
        self.raft.report_unreachable(id);
    }

    /// The transport lost the store of this follower's leader; `rank` is this peer's place
    /// among the voters that remain. See [`crate::Raft`]'s `leader_unreachable`.
    pub fn report_leader_unreachable(&mut self, rank: usize) {
        self.raft.leader_unreachable(rank);
    }

    /// The snapshot sent to `id` finished or failed.
    pub fn report_snapshot(&mut self, id: u64, status: SnapshotStatus) {
        self.raft.report_snapshot(id, status);
    }

    pub fn has_ready(&self) -> bool {
        let r = &self.raft;
        r.soft_state() != self.prev_soft_state
            || r.hard_state() != self.prev_hard_state
            || !r.msgs.is_empty()
            || r.has_pending_broadcast()
            || !r.read_states.is_empty()
            || !r.raft_log.unstable_entries().is_empty()
            || r.raft_log.pending_snapshot().is_some()
            || r.raft_log.has_next_entries()
    }

    /// The work to do now. Committed entries that cannot be read from storage are not handed
    /// out; the ready says why in `committed_entries_unreadable`, and everything else in it
    /// (entries, hard state, messages) is as usual.
    pub fn ready(&mut self) -> Ready {
        let r = &mut self.raft;
        r.flush_broadcast();
        let soft_state = r.soft_state();
        let hard_state = r.hard_state();
        let entries = r.raft_log.unstable_entries().to_vec();
        let term_or_vote_changed = hard_state.term != self.prev_hard_state.term
            || hard_state.vote != self.prev_hard_state.vote;
        let must_sync = !entries.is_empty() || term_or_vote_changed;
        let snapshot = r.raft_log.pending_snapshot().cloned();
        let mut messages = std::mem::take(&mut r.msgs);
        // A message in a term not yet durable could outlive a crash that forgets the term (and
        // the node could then lead the same term again with another log): those wait.
        let immediate_messages = if term_or_vote_changed || snapshot.is_some() {
            Vec::new()
        } else {
            let (now, later) = messages.into_iter().partition(|m: &Message| {
                matches!(m.msg_type, MessageType::Append | MessageType::Heartbeat)
            });
            messages = later;
            now
        };
        let (committed_entries, committed_entries_unreadable) =
            match r.raft_log.next_entries(Some(self.max_committed_size)) {
                Ok(entries) => (entries, None),
                Err(e) => (Vec::new(), Some(e.to_string())),
            };
        let ready = Ready {
            soft_state: (soft_state != self.prev_soft_state).then_some(soft_state),
            hard_state: (hard_state != self.prev_hard_state).then_some(hard_state),
            read_states: std::mem::take(&mut r.read_states),
            entries,
            snapshot,
            committed_entries,
            messages,
            immediate_messages,
            must_sync,
            committed_entries_unreadable,
        };
        self.handed_out = Some(HandedOut {
            soft_state: ready.soft_state,
            hard_state: ready.hard_state,
            snapshot_index: ready.snapshot.as_ref().map(|s| s.metadata.index),
            last_entry: ready.entries.last().map(|e| (e.index, e.term)),
            last_committed: ready.committed_entries.last().map(|e| e.index),
        });
        ready
    }

    /// The driver has done everything `ready` asked.
    ///
    /// What is marked persisted and applied is what the last `ready()` handed out, whatever the
    /// driver left in `ready` (it may have moved entries or messages out of it).
    pub fn advance(&mut self, ready: Ready) {
        let done = self.handed_out.take().unwrap_or(HandedOut {
            soft_state: ready.soft_state,
            hard_state: ready.hard_state,
            snapshot_index: ready.snapshot.as_ref().map(|s| s.metadata.index),
            last_entry: ready.entries.last().map(|e| (e.index, e.term)),
            last_committed: ready.committed_entries.last().map(|e| e.index),
        });
        if let Some(ss) = done.soft_state {
            self.prev_soft_state = ss;
        }
        if let Some(hs) = done.hard_state {
            self.prev_hard_state = hs;
        }
        let log = &mut self.raft.raft_log;
        if let Some(index) = done.snapshot_index {
            log.stable_snap_to(index);
            log.applied_to(index);
        }
        if let Some((index, term)) = done.last_entry {
            log.stable_to(index, term);
        }
        if let Some(index) = done.last_committed {
            log.applied_to(index);
        }
    }

    /// The index of a snapshot accepted from the leader that the driver has not installed yet.
    pub fn pending_snapshot_index(&self) -> Option<u64> {
        self.raft
            .raft_log
            .pending_snapshot()
            .map(|s| s.metadata.index)
    }

    pub fn status(&self) -> Status {
        let r = &self.raft;
        let progress = if r.role == StateRole::Leader {
            r.prs
                .progress
                .iter()
                .map(|(id, p)| (*id, p.to_public()))
                .collect()
        } else {
            Vec::new()
        };
        Status {
            id: r.id,
            hard_state: r.hard_state(),
            soft_state: r.soft_state(),
            applied: r.raft_log.applied,
            first_index: r.raft_log.first_index().unwrap_or(0),
            last_index: r.raft_log.last_index(),
            conf_state: r.prs.conf_state(),
            progress,
        }
    }

    pub fn store(&self) -> &S {
        self.raft.store()
    }

    pub fn mut_store(&mut self) -> &mut S {
        self.raft.mut_store()
    }
}
