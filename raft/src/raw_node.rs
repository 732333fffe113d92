//! `RawNode`: the driver-facing face of Raft. The driver feeds it ticks, messages and
//! proposals, and collects a [`Ready`] of work to do: persist, send, apply.
//!
//! The cycle, repeated:
//! 1. `tick()` on every base tick; `step(msg)` for every message from a peer;
//!    `propose`/`propose_conf_change`/`read_index`/`transfer_leader` for local requests.
//! 2. When `has_ready()`, take `ready()`. Then, in this order:
//!    a. if `snapshot` is set, install it in storage;
//!    b. append `entries` to storage (replacing any conflicting suffix) and persist `hard_state`
//!       if set, durably, before anything below;
//!    c. send `messages`;
//!    d. apply `committed_entries` in order (calling `apply_conf_change` for conf changes);
//!    e. hand `read_states` to waiting readers once applied index ≥ their index.
//! 3. `advance(ready)`.

use bytes::Bytes;

use crate::config::Config;
use crate::error::Result;
use crate::message::{ConfChange, ConfState, Entry, HardState, Message, Snapshot};
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
    /// True when `entries` or `hard_state` (term or vote) must be fsynced before sending.
    pub must_sync: bool,
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

/// A Raft node driven from outside.
pub struct RawNode<S: Storage> {
    _storage: std::marker::PhantomData<S>,
}

impl<S: Storage> RawNode<S> {
    /// A node over `storage`; its membership is the storage's conf state, or `config.peers`
    /// when storage has none.
    pub fn new(config: &Config, storage: S) -> Result<RawNode<S>> {
        let _ = (config, storage);
        todo!()
    }

    /// One base tick: drives election timeouts, heartbeats, check quorum and snapshot timeouts.
    pub fn tick(&mut self) {
        todo!()
    }

    /// Start an election now (local Hup).
    pub fn campaign(&mut self) -> Result<()> {
        todo!()
    }

    /// Append `data` as a normal entry. Only a leader accepts; otherwise `ProposalDropped`.
    pub fn propose(&mut self, data: Bytes) -> Result<Proposed> {
        let _ = data;
        todo!()
    }

    /// Propose a single-peer membership change. `ProposalDropped` while another is pending
    /// (proposed but not yet applied) or when not leader.
    pub fn propose_conf_change(&mut self, cc: ConfChange) -> Result<Proposed> {
        let _ = cc;
        todo!()
    }

    /// Apply a committed conf change to the node's membership; returns the new membership.
    pub fn apply_conf_change(&mut self, cc: &ConfChange) -> ConfState {
        let _ = cc;
        todo!()
    }

    /// Step a message that came from a peer. Local kinds are `StepLocalMsg`; responses from
    /// peers outside the group are `StepPeerNotFound`.
    pub fn step(&mut self, msg: Message) -> Result<()> {
        let _ = msg;
        todo!()
    }

    /// Hand leadership to `transferee` (on the leader; a follower forwards the request).
    pub fn transfer_leader(&mut self, transferee: u64) {
        let _ = transferee;
        todo!()
    }

    /// Ask for a read index; the answer comes as a `ReadState` with the same `ctx`.
    pub fn read_index(&mut self, ctx: Bytes) {
        let _ = ctx;
        todo!()
    }

    /// The transport could not reach `id`: the leader goes back to probing it.
    pub fn report_unreachable(&mut self, id: u64) {
        let _ = id;
        todo!()
    }

    /// The snapshot sent to `id` finished or failed.
    pub fn report_snapshot(&mut self, id: u64, status: SnapshotStatus) {
        let _ = (id, status);
        todo!()
    }

    pub fn has_ready(&self) -> bool {
        todo!()
    }

    pub fn ready(&mut self) -> Ready {
        todo!()
    }

    /// The driver has done everything `ready` asked.
    pub fn advance(&mut self, ready: Ready) {
        let _ = ready;
        todo!()
    }

    pub fn status(&self) -> Status {
        todo!()
    }

    pub fn store(&self) -> &S {
        todo!()
    }

    pub fn mut_store(&mut self) -> &mut S {
        todo!()
    }
}
