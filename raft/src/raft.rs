//! The Raft state machine: roles and elections, log replication, snapshots, membership changes,
//! leader transfer and ReadIndex. It only reacts to [`Raft::step`] and [`Raft::tick`]; what it
//! wants done comes out as messages and as changes to its log, which [`crate::RawNode`] turns
//! into a `Ready`.

use bytes::Bytes;

use crate::config::{Config, ReadOnlyOption};
use crate::error::{Error, Result, StorageError};
use crate::message::{
    ConfChange, ConfChangeType, ConfState, Entry, EntryType, HardState, Message, MessageType,
    Snapshot,
};
use crate::progress::Progress;
use crate::raft_log::RaftLog;
use crate::raw_node::{ProgressState, ReadState, SnapshotStatus, SoftState, StateRole};
use crate::read_only::ReadOnly;
use crate::rng::SplitMix64;
use crate::storage::Storage;
use crate::tracker::{ProgressTracker, VoteResult};

/// The `context` of a vote request that a leader transfer triggered: such a request passes the
/// leader lease of its voters, since the current leader itself asked for it.
pub const CAMPAIGN_TRANSFER_CONTEXT: &[u8] = b"tinykv/campaign-transfer";

/// No log or term gets anywhere near 2^63; a message claiming more comes from a corrupt or
/// hostile peer, and adopting it would overflow index arithmetic or freeze the term.
const MAX_PLAUSIBLE: u64 = u64::MAX >> 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CampaignKind {
    PreElection,
    Election,
    Transfer,
}

/// One Raft peer. Drive it through [`crate::RawNode`]; the read accessors here serve
/// inspection and tests.
pub struct Raft<S: Storage> {
    pub(crate) id: u64,
    pub(crate) term: u64,
    pub(crate) vote: u64,
    pub(crate) raft_log: RaftLog<S>,
    pub(crate) prs: ProgressTracker,
    pub(crate) role: StateRole,
    pub(crate) leader_id: u64,
    pub(crate) lead_transferee: Option<u64>,
    /// Index of the last conf change entry the leader proposed; another may be proposed only
    /// once this one is applied.
    pub(crate) pending_conf_index: u64,
    pub(crate) msgs: Vec<Message>,
    /// A leader's appends to every follower are owed (after proposals, a commit or an election)
    /// and go out in [`Raft::flush_broadcast`] at the end of the round of steps.
    bcast_pending: bool,
    /// See [`Config::skip_bcast_commit`].
    skip_bcast_commit: bool,
    /// Indices whose commit followers must learn at once even when commits are not broadcast:
    /// membership changes and what [`Raft::broadcast_commit_of`] named.
    commit_barriers: Vec<u64>,
    pub(crate) read_states: Vec<ReadState>,
    read_only: ReadOnly,
    /// Read requests that arrived before this leader committed an entry of its own term.
    pending_read_requests: Vec<Message>,
    pub(crate) election_elapsed: usize,
    heartbeat_elapsed: usize,
    pub(crate) randomized_election_timeout: usize,
    pub(crate) election_tick: usize,
    heartbeat_tick: usize,
    pub(crate) check_quorum: bool,
    pub(crate) pre_vote: bool,
    read_only_option: ReadOnlyOption,
    max_msg_size: u64,
    max_inflight: usize,
    snapshot_pending_timeout: usize,
    rng: SplitMix64,
}

fn is_vote_request(t: MessageType) -> bool {
    matches!(t, MessageType::RequestVote | MessageType::RequestPreVote)
}

fn broken_storage(what: String) -> Error {
    Error::Storage(StorageError::Other(what.into()))
}

impl<S: Storage> Raft<S> {
    /// A follower over `store`, restored from its hard state and membership (or `config.peers`
    /// when storage has no membership).
    pub fn new(config: &Config, store: S) -> Result<Raft<S>> {
        config.validate()?;
        let initial = store.initial_state()?;
        let raft_log = RaftLog::new(store)?;
        let cs = initial.conf_state;
        let (voters, learners) = if cs.voters.is_empty() && cs.learners.is_empty() {
            (config.peers.clone(), Vec::new())
        } else {
            (cs.voters, cs.learners)
        };
        // Mixing the id in keeps nodes that share a seed from timing out in lockstep.
        let seed = config.seed ^ config.id.wrapping_mul(0xD6E8_FEB8_6659_FD93);
        let mut r = Raft {
            id: config.id,
            term: 0,
            vote: 0,
            raft_log,
            prs: ProgressTracker::default(),
            role: StateRole::Follower,
            leader_id: 0,
            lead_transferee: None,
            pending_conf_index: 0,
            msgs: Vec::new(),
            bcast_pending: false,
            skip_bcast_commit: config.skip_bcast_commit,
            commit_barriers: Vec::new(),
            read_states: Vec::new(),
            read_only: ReadOnly::default(),
            pending_read_requests: Vec::new(),
            election_elapsed: 0,
            heartbeat_elapsed: 0,
            randomized_election_timeout: config.election_tick,
            election_tick: config.election_tick,
            heartbeat_tick: config.heartbeat_tick,
            check_quorum: config.check_quorum,
            pre_vote: config.pre_vote,
            read_only_option: config.read_only_option,
            max_msg_size: config.max_size_per_msg,
            max_inflight: config.max_inflight_msgs,
            snapshot_pending_timeout: config.snapshot_pending_timeout_ticks,
            rng: SplitMix64::new(seed),
        };
        let next = r.raft_log.last_index() + 1;
        for id in learners {
            r.prs.insert(id, Progress::new(next, r.max_inflight, true));
        }
        for id in voters {
            r.prs.insert(id, Progress::new(next, r.max_inflight, false));
        }
        let hs = initial.hard_state;
        if !hs.is_empty() {
            if hs.commit > r.raft_log.last_index() {
                return Err(broken_storage(format!(
                    "hard state commit {} is past the last stored index {}",
                    hs.commit,
                    r.raft_log.last_index()
                )));
            }
            r.raft_log.commit_to(hs.commit);
            r.term = hs.term;
            r.vote = hs.vote;
        }
        if config.applied > 0 {
            if config.applied > r.raft_log.committed {
                return Err(Error::ConfigInvalid(format!(
                    "applied index {} is past the commit index {}",
                    config.applied, r.raft_log.committed
                )));
            }
            r.raft_log.applied_to(config.applied);
        }
        r.become_follower(r.term, 0);
        Ok(r)
    }

    pub fn id(&self) -> u64 {
        self.id
    }

    pub fn term(&self) -> u64 {
        self.term
    }

    /// The peer voted for in the current term, or 0.
    pub fn vote(&self) -> u64 {
        self.vote
    }

    pub fn role(&self) -> StateRole {
        self.role
    }

    /// The known leader of the current term, or 0.
    pub fn leader_id(&self) -> u64 {
        self.leader_id
    }

    pub fn committed(&self) -> u64 {
        self.raft_log.committed
    }

    pub fn applied(&self) -> u64 {
        self.raft_log.applied
    }

    pub fn last_index(&self) -> u64 {
        self.raft_log.last_index()
    }

    /// The term of the entry at `index` in this node's log (stable or not).
    pub fn log_term(&self, index: u64) -> Result<u64> {
        Ok(self.raft_log.term(index)?)
    }

    /// Entries `[lo, hi)` of this node's log, stable or not.
    pub fn log_entries(&self, lo: u64, hi: u64) -> Result<Vec<Entry>> {
        Ok(self.raft_log.slice(lo, hi, None)?)
    }

    /// The peer a leader transfer is handing leadership to, if one is under way.
    pub fn lead_transferee(&self) -> Option<u64> {
        self.lead_transferee
    }

    pub fn conf_state(&self) -> ConfState {
        self.prs.conf_state()
    }

    /// Whether this node is a voter, and so may campaign.
    pub fn promotable(&self) -> bool {
        self.prs.is_voter(self.id)
    }

    pub fn soft_state(&self) -> SoftState {
        SoftState {
            leader_id: self.leader_id,
            role: self.role,
        }
    }

    pub fn hard_state(&self) -> HardState {
        HardState {
            term: self.term,
            vote: self.vote,
            commit: self.raft_log.committed,
        }
    }

    pub fn store(&self) -> &S {
        &self.raft_log.store
    }

    pub fn mut_store(&mut self) -> &mut S {
        &mut self.raft_log.store
    }

    // ----- sending -----

    /// Queues `m` for the driver. Vote messages carry their term explicitly (a pre-vote asks
    /// for a term not yet entered); a forwarded ReadIndex carries none, like a local request.
    fn send(&mut self, mut m: Message) {
        if m.from == 0 {
            m.from = self.id;
        }
        let explicit_term = matches!(
            m.msg_type,
            MessageType::RequestVote
                | MessageType::RequestPreVote
                | MessageType::RequestVoteResponse
                | MessageType::RequestPreVoteResponse
                | MessageType::ReadIndex
        );
        if !explicit_term {
            m.term = self.term;
        }
        self.msgs.push(m);
    }

    fn send_to(&mut self, msg_type: MessageType, to: u64) {
        self.send(Message::new(msg_type, self.id, to));
    }

    fn send_append(&mut self, to: u64) {
        self.maybe_send_append(to, true);
    }

    /// Sends `to` the entries it lacks (or a snapshot when they are compacted). Returns whether
    /// a message went out; `send_if_empty` also sends an append with no entries, which carries
    /// the commit index or probes.
    fn maybe_send_append(&mut self, to: u64, send_if_empty: bool) -> bool {
        let Some(pr) = self.prs.get(to) else {
            return false;
        };
        if pr.is_paused() {
            return false;
        }
        let next = pr.next_idx.max(1);
        let prev = next - 1;
        let log_term = self.raft_log.term(prev);
        let ents = self.raft_log.entries(next, Some(self.max_msg_size));
        match (log_term, ents) {
            (Ok(log_term), Ok(entries)) => {
                if entries.is_empty() && !send_if_empty {
                    return false;
                }
                if let (Some(last), Some(pr)) =
                    (entries.last().map(|e| e.index), self.prs.get_mut(to))
                {
                    match pr.state {
                        ProgressState::Replicate => {
                            pr.optimistic_update(last);
                            pr.ins.add(last);
                        }
                        ProgressState::Probe => pr.probe_sent = true,
                        ProgressState::Snapshot => {}
                    }
                }
                if let Some(pr) = self.prs.get_mut(to) {
                    pr.appended = true;
                }
                let commit = self.raft_log.committed;
                self.send(Message {
                    index: prev,
                    log_term,
                    entries,
                    commit,
                    ..Message::new(MessageType::Append, self.id, to)
                });
                true
            }
            (Err(StorageError::Compacted), _) | (_, Err(StorageError::Compacted)) => {
                self.send_snapshot(to, prev)
            }
            // Anything else is transient or a storage fault; the next heartbeat answer or
            // proposal retries.
            _ => false,
        }
    }

    fn send_snapshot(&mut self, to: u64, prev: u64) -> bool {
        let request_index = self.raft_log.first_index().map_or(prev, |f| f - 1);
        let snapshot = match self.raft_log.store.snapshot(request_index) {
            Ok(s) if !s.is_empty() => s,
            // Temporarily unavailable (being generated) or not there yet: ask again later.
            _ => return false,
        };
        let Some(pr) = self.prs.get_mut(to) else {
            return false;
        };
        pr.become_snapshot(snapshot.metadata.index);
        self.send(Message {
            snapshot: Some(snapshot),
            ..Message::new(MessageType::Snapshot, self.id, to)
        });
        true
    }

    fn peer_ids(&self) -> Vec<u64> {
        self.prs
            .progress
            .keys()
            .copied()
            .filter(|id| *id != self.id)
            .collect()
    }

    /// Owes every follower the entries it lacks and the commit index. Sent by
    /// [`Raft::flush_broadcast`], so the proposals and commits of one round of steps cost one
    /// append per follower instead of one each: a follower then writes, fsyncs and answers once.
    pub(crate) fn bcast_append(&mut self) {
        self.bcast_pending = true;
    }

    /// Whether [`Raft::flush_broadcast`] has appends to send.
    pub(crate) fn has_pending_broadcast(&self) -> bool {
        self.bcast_pending
    }

    /// Sends what [`Raft::bcast_append`] owes: every follower gets its missing entries, and an
    /// append carrying the current commit index unless one already queued carries it.
    pub(crate) fn flush_broadcast(&mut self) {
        if !std::mem::take(&mut self.bcast_pending) || self.role != StateRole::Leader {
            return;
        }
        let committed = self.raft_log.committed;
        let tell_commit = self.should_bcast_commit();
        for id in self.peer_ids() {
            while self.maybe_send_append(id, false) {}
            let told = self
                .msgs
                .iter()
                .any(|m| m.to == id && m.msg_type == MessageType::Append && m.commit >= committed);
            if !told && tell_commit {
                self.send_append(id);
            }
        }
    }

    /// Whether a commit-only append goes out now: always unless commits are skipped, and then
    /// when a barrier index has just committed (its followers must act on it promptly: apply a
    /// membership change, create the regions of a split).
    fn should_bcast_commit(&mut self) -> bool {
        if !self.skip_bcast_commit {
            return true;
        }
        let committed = self.raft_log.committed;
        let before = self.commit_barriers.len();
        self.commit_barriers.retain(|&i| i > committed);
        self.commit_barriers.len() != before
    }

    /// Followers learn at once when `index` commits, even with `skip_bcast_commit`.
    pub(crate) fn broadcast_commit_of(&mut self, index: u64) {
        if self.role == StateRole::Leader && index > self.raft_log.committed {
            self.commit_barriers.push(index);
        }
    }

    /// The log index at which this leader's group is at rest, or `None`. At rest means every
    /// peer holds the whole log, all of it is committed and applied here, and no proposal,
    /// read, snapshot or leader transfer is under way: until something new happens the group
    /// needs no ticks, so the node may let it hibernate.
    pub(crate) fn settled_index(&self) -> Option<u64> {
        if self.role != StateRole::Leader
            || self.lead_transferee.is_some()
            || self.bcast_pending
            || !self.msgs.is_empty()
            || !self.read_states.is_empty()
            || !self.pending_read_requests.is_empty()
            || self.read_only.pending_count() > 0
            || !self.raft_log.unstable_entries().is_empty()
            || self.raft_log.pending_snapshot().is_some()
        {
            return None;
        }
        let last = self.raft_log.last_index();
        if self.raft_log.committed != last || self.raft_log.applied != last {
            return None;
        }
        self.prs
            .progress
            .values()
            // A follower probed since it was reported unreachable holds everything all the same;
            // the next append takes it back to replicating.
            .all(|p| p.matched == last && p.state != ProgressState::Snapshot)
            .then_some(last)
    }

    /// A leader sends a heartbeat round now (waking from hibernation: followers learn it is
    /// alive before their election timers run out). Nothing otherwise.
    pub(crate) fn ping(&mut self) {
        if self.role == StateRole::Leader {
            self.heartbeat_elapsed = 0;
            self.bcast_heartbeat(false);
        }
    }

    /// The heartbeat round; `skip_appended` leaves out the peers sent an append since the last
    /// round unless a read waits for confirmation.
    fn bcast_heartbeat(&mut self, skip_appended: bool) {
        // Repeating the newest pending read's context lets a later round confirm it if the
        // first round was lost.
        let ctx = self.read_only.last_pending_request_ctx();
        let skip_appended = skip_appended && ctx.is_none();
        self.bcast_heartbeat_with_ctx(ctx.unwrap_or_default(), skip_appended);
    }

    /// Sends every peer a heartbeat carrying `ctx`. With `skip_appended`, a peer sent an append
    /// since the last round is left out: the append reset its election timer and its answer
    /// counts the peer as active, so a region under load sends no heartbeats (with hundreds
    /// of busy regions they were a tenth of a store's messages). What the heartbeat would add
    /// is a newer commit index; under load the next append carries it, and once appends stop
    /// the round after next does (followers learn a last commit within two heartbeat
    /// intervals instead of one; barrier indices are broadcast at once). Each round clears the
    /// record, so a peer whose appends stopped, were lost or filled its inflight window hears
    /// a heartbeat, which answers by resuming it, no later than the next round.
    fn bcast_heartbeat_with_ctx(&mut self, ctx: Bytes, skip_appended: bool) {
        for id in self.peer_ids() {
            let Some(pr) = self.prs.get_mut(id) else {
                continue;
            };
            let appended = std::mem::take(&mut pr.appended);
            if skip_appended && appended {
                continue;
            }
            // Never tell a peer to commit past what it is known to hold.
            let commit = pr.matched.min(self.raft_log.committed);
            self.send(Message {
                commit,
                context: ctx.clone(),
                ..Message::new(MessageType::Heartbeat, self.id, id)
            });
        }
    }

    // ----- role changes -----

    fn reset_randomized_election_timeout(&mut self) {
        self.randomized_election_timeout = self
            .rng
            .gen_range(self.election_tick, 2 * self.election_tick);
    }

    fn reset(&mut self, term: u64) {
        if self.term != term {
            self.term = term;
            self.vote = 0;
        }
        self.leader_id = 0;
        self.election_elapsed = 0;
        self.heartbeat_elapsed = 0;
        self.reset_randomized_election_timeout();
        self.lead_transferee = None;
        self.prs.reset_votes();
        let last = self.raft_log.last_index();
        let self_id = self.id;
        for (id, pr) in self.prs.progress.iter_mut() {
            pr.reset(last + 1);
            if *id == self_id {
                pr.matched = last;
            }
        }
        self.pending_conf_index = 0;
        self.bcast_pending = false;
        self.commit_barriers.clear();
        self.read_only = ReadOnly::default();
        self.pending_read_requests.clear();
    }

    pub(crate) fn become_follower(&mut self, term: u64, leader_id: u64) {
        self.reset(term);
        self.role = StateRole::Follower;
        self.leader_id = leader_id;
    }

    pub(crate) fn become_pre_candidate(&mut self) {
        // A pre-candidate keeps its term and vote: it only asks whether it could win.
        self.role = StateRole::PreCandidate;
        self.prs.reset_votes();
        self.leader_id = 0;
        self.election_elapsed = 0;
        self.reset_randomized_election_timeout();
    }

    pub(crate) fn become_candidate(&mut self) {
        self.reset(self.term.saturating_add(1));
        self.vote = self.id;
        self.role = StateRole::Candidate;
    }

    pub(crate) fn become_leader(&mut self) {
        self.reset(self.term);
        self.leader_id = self.id;
        self.role = StateRole::Leader;
        let self_id = self.id;
        if let Some(pr) = self.prs.get_mut(self_id) {
            pr.become_replicate();
            pr.recent_active = true;
        }
        self.pending_conf_index = self.last_unapplied_conf_change();
        if self.pending_conf_index > self.raft_log.committed {
            // A membership change the last leader proposed and did not see commit: followers
            // must learn its commit at once, as if this leader had proposed it.
            self.commit_barriers.push(self.pending_conf_index);
        }
        self.append_entry(vec![Entry::default()]);
    }

    /// The first entry not yet applied; entries a pending snapshot covers come applied with it.
    fn first_unapplied_index(&self) -> u64 {
        let first = self.raft_log.first_index().unwrap_or(0);
        (self.raft_log.applied + 1).max(first)
    }

    /// The index of the newest conf change not yet applied; the log's last index if the log
    /// cannot be read (safe: it only delays the next conf change).
    fn last_unapplied_conf_change(&self) -> u64 {
        let lo = self.first_unapplied_index();
        let hi = self.raft_log.last_index() + 1;
        match self.raft_log.slice(lo, hi, None) {
            Ok(ents) => ents
                .iter()
                .rev()
                .find(|e| e.entry_type == EntryType::ConfChange)
                .map_or(0, |e| e.index),
            Err(_) => self.raft_log.last_index(),
        }
    }

    fn has_unapplied_conf_changes(&self) -> bool {
        let lo = self.first_unapplied_index();
        let hi = self.raft_log.committed + 1;
        match self.raft_log.slice(lo, hi, None) {
            Ok(ents) => ents.iter().any(|e| e.entry_type == EntryType::ConfChange),
            Err(_) => true,
        }
    }

    // ----- elections -----

    fn hup(&mut self, transfer: bool) {
        if self.role == StateRole::Leader || !self.promotable() {
            return;
        }
        // A conf change committed but not applied may change who votes; wait for it.
        if self.has_unapplied_conf_changes() {
            return;
        }
        let kind = if transfer {
            CampaignKind::Transfer
        } else if self.pre_vote {
            CampaignKind::PreElection
        } else {
            CampaignKind::Election
        };
        self.campaign(kind);
    }

    fn campaign(&mut self, kind: CampaignKind) {
        let (vote_type, term) = if kind == CampaignKind::PreElection {
            self.become_pre_candidate();
            (MessageType::RequestPreVote, self.term.saturating_add(1))
        } else {
            self.become_candidate();
            (MessageType::RequestVote, self.term)
        };
        let self_id = self.id;
        if self.prs.record_vote(self_id, true) == VoteResult::Won {
            // A single voter wins at once.
            if kind == CampaignKind::PreElection {
                self.campaign(CampaignKind::Election);
            } else {
                self.become_leader();
            }
            return;
        }
        let index = self.raft_log.last_index();
        let log_term = self.raft_log.last_term();
        let context = if kind == CampaignKind::Transfer {
            Bytes::from_static(CAMPAIGN_TRANSFER_CONTEXT)
        } else {
            Bytes::new()
        };
        let voters: Vec<u64> = self.prs.voter_ids().filter(|id| *id != self_id).collect();
        for id in voters {
            self.send(Message {
                term,
                index,
                log_term,
                context: context.clone(),
                ..Message::new(vote_type, self_id, id)
            });
        }
    }

    fn handle_vote_request(&mut self, m: Message) {
        let is_pre = m.msg_type == MessageType::RequestPreVote;
        let resp_type = if is_pre {
            MessageType::RequestPreVoteResponse
        } else {
            MessageType::RequestVoteResponse
        };
        let can_vote = self.vote == m.from
            || (self.vote == 0 && self.leader_id == 0)
            || (is_pre && m.term > self.term);
        if can_vote && self.raft_log.is_up_to_date(m.index, m.log_term) {
            // A pre-vote grant names the term asked about, so the pre-candidate can match it.
            self.send(Message {
                term: m.term,
                ..Message::new(resp_type, self.id, m.from)
            });
            if !is_pre {
                self.election_elapsed = 0;
                self.vote = m.from;
            }
        } else {
            self.send(Message {
                term: self.term,
                reject: true,
                ..Message::new(resp_type, self.id, m.from)
            });
        }
    }

    fn poll(&mut self, m: &Message) {
        match self.prs.record_vote(m.from, !m.reject) {
            VoteResult::Won => {
                if self.role == StateRole::PreCandidate {
                    self.campaign(CampaignKind::Election);
                } else {
                    self.become_leader();
                    self.bcast_append();
                }
            }
            VoteResult::Lost => self.become_follower(self.term, 0),
            VoteResult::Pending => {}
        }
    }

    // ----- ticks -----

    /// Advances the logical clock by one tick.
    pub fn tick(&mut self) {
        match self.role {
            StateRole::Leader => self.tick_heartbeat(),
            _ => self.tick_election(),
        }
    }

    fn tick_election(&mut self) {
        self.election_elapsed += 1;
        if self.promotable() && self.election_elapsed >= self.randomized_election_timeout {
            self.election_elapsed = 0;
            self.hup(false);
        }
    }

    fn tick_heartbeat(&mut self) {
        self.heartbeat_elapsed += 1;
        self.election_elapsed += 1;
        if self.election_elapsed >= self.election_tick {
            self.election_elapsed = 0;
            if self.check_quorum {
                if !self.prs.quorum_active(self.id) {
                    self.become_follower(self.term, 0);
                    return;
                }
                let self_id = self.id;
                for (id, pr) in self.prs.progress.iter_mut() {
                    if *id != self_id {
                        pr.recent_active = false;
                    }
                }
            }
            // A transfer that did not finish within an election timeout has failed.
            self.lead_transferee = None;
        }
        let timeout = self.snapshot_pending_timeout;
        for pr in self.prs.progress.values_mut() {
            if pr.state == ProgressState::Snapshot {
                pr.snapshot_ticks += 1;
                if pr.snapshot_ticks >= timeout {
                    pr.pending_snapshot = 0;
                    pr.become_probe();
                }
            }
        }
        if self.heartbeat_elapsed >= self.heartbeat_tick {
            self.heartbeat_elapsed = 0;
            self.bcast_heartbeat(true);
        }
    }

    // ----- stepping -----

    /// Handles one message, local or from a peer.
    pub fn step(&mut self, m: Message) -> Result<()> {
        if m.term > MAX_PLAUSIBLE {
            return Ok(());
        }
        if m.term == 0 {
            // Local, or a forwarded read request: no term to reconcile.
        } else if m.term > self.term {
            if is_vote_request(m.msg_type) {
                let forced = m.context.as_ref() == CAMPAIGN_TRANSFER_CONTEXT;
                let in_lease = self.check_quorum
                    && self.leader_id != 0
                    && self.election_elapsed < self.election_tick;
                if in_lease && !forced {
                    // A live leader exists: this voter may be partitioned away from it and must
                    // not disrupt it.
                    return Ok(());
                }
            }
            match m.msg_type {
                MessageType::RequestPreVote => {}
                MessageType::RequestPreVoteResponse if !m.reject => {}
                MessageType::Append | MessageType::Heartbeat | MessageType::Snapshot => {
                    self.become_follower(m.term, m.from)
                }
                _ => self.become_follower(m.term, 0),
            }
        } else if m.term < self.term {
            match m.msg_type {
                MessageType::Append | MessageType::Heartbeat => {
                    // Tell a stale leader about the newer term so it steps down.
                    self.send_to(MessageType::AppendResponse, m.from);
                }
                MessageType::RequestPreVote => {
                    let reject = Message {
                        term: self.term,
                        reject: true,
                        ..Message::new(MessageType::RequestPreVoteResponse, self.id, m.from)
                    };
                    self.send(reject);
                }
                _ => {}
            }
            return Ok(());
        }

        match m.msg_type {
            MessageType::Hup => {
                self.hup(false);
                Ok(())
            }
            MessageType::RequestVote | MessageType::RequestPreVote => {
                self.handle_vote_request(m);
                Ok(())
            }
            _ => match self.role {
                StateRole::Leader => self.step_leader(m),
                StateRole::Candidate | StateRole::PreCandidate => self.step_candidate(m),
                StateRole::Follower => self.step_follower(m),
            },
        }
    }

    fn step_leader(&mut self, m: Message) -> Result<()> {
        match m.msg_type {
            MessageType::Beat => self.bcast_heartbeat(false),
            MessageType::Propose => return self.handle_propose(m),
            MessageType::ReadIndex => self.handle_read_index(m),
            MessageType::TransferLeader => self.handle_transfer_leader(m.from),
            MessageType::AppendResponse => self.handle_append_response(&m),
            MessageType::HeartbeatResponse => self.handle_heartbeat_response(&m),
            _ => {}
        }
        Ok(())
    }

    fn step_candidate(&mut self, m: Message) -> Result<()> {
        match m.msg_type {
            MessageType::Propose => return Err(Error::ProposalDropped),
            MessageType::Append => {
                self.become_follower(m.term, m.from);
                self.handle_append(m);
            }
            MessageType::Heartbeat => {
                self.become_follower(m.term, m.from);
                self.handle_heartbeat(m);
            }
            MessageType::Snapshot => {
                self.become_follower(m.term, m.from);
                self.handle_snapshot(m);
            }
            MessageType::RequestPreVoteResponse if self.role == StateRole::PreCandidate => {
                self.poll(&m)
            }
            MessageType::RequestVoteResponse if self.role == StateRole::Candidate => self.poll(&m),
            _ => {}
        }
        Ok(())
    }

    fn step_follower(&mut self, mut m: Message) -> Result<()> {
        match m.msg_type {
            MessageType::Propose => return Err(Error::ProposalDropped),
            MessageType::Append => {
                self.election_elapsed = 0;
                self.leader_id = m.from;
                self.handle_append(m);
            }
            MessageType::Heartbeat => {
                self.election_elapsed = 0;
                self.leader_id = m.from;
                self.handle_heartbeat(m);
            }
            MessageType::Snapshot => {
                self.election_elapsed = 0;
                self.leader_id = m.from;
                self.handle_snapshot(m);
            }
            // Forwarded to the leader; without one the request is dropped and the caller
            // retries.
            MessageType::TransferLeader | MessageType::ReadIndex if self.leader_id != 0 => {
                m.to = self.leader_id;
                self.send(m);
            }
            MessageType::TimeoutNow => self.hup(true),
            MessageType::ReadIndexResponse => self.read_states.push(ReadState {
                index: m.index,
                request_ctx: m.context,
            }),
            _ => {}
        }
        Ok(())
    }

    // ----- follower side of replication -----

    fn handle_append(&mut self, m: Message) {
        let contiguous = m
            .entries
            .iter()
            .enumerate()
            .all(|(i, e)| m.index.checked_add(i as u64 + 1) == Some(e.index));
        if !contiguous {
            return;
        }
        let committed = self.raft_log.committed;
        if m.index < committed {
            self.send(Message {
                index: committed,
                ..Message::new(MessageType::AppendResponse, self.id, m.from)
            });
            return;
        }
        match self
            .raft_log
            .maybe_append(m.index, m.log_term, m.commit, &m.entries)
        {
            Some(last) => self.send(Message {
                index: last,
                ..Message::new(MessageType::AppendResponse, self.id, m.from)
            }),
            None => {
                let probe = m.index.min(self.raft_log.last_index());
                let (hint_index, hint_term) =
                    self.raft_log.find_conflict_by_term(probe, m.log_term);
                self.send(Message {
                    index: m.index,
                    reject: true,
                    reject_hint: hint_index,
                    log_term: hint_term,
                    ..Message::new(MessageType::AppendResponse, self.id, m.from)
                });
            }
        }
    }

    fn handle_heartbeat(&mut self, m: Message) {
        self.raft_log.commit_to(m.commit);
        self.send(Message {
            context: m.context,
            ..Message::new(MessageType::HeartbeatResponse, self.id, m.from)
        });
    }

    fn handle_snapshot(&mut self, m: Message) {
        let Some(snapshot) = m.snapshot else {
            return;
        };
        let index = if self.restore(snapshot) {
            self.raft_log.last_index()
        } else {
            self.raft_log.committed
        };
        self.send(Message {
            index,
            ..Message::new(MessageType::AppendResponse, self.id, m.from)
        });
    }

    /// Installs `snapshot` if it brings news; returns whether it did.
    fn restore(&mut self, snapshot: Snapshot) -> bool {
        let (index, term) = (snapshot.metadata.index, snapshot.metadata.term);
        // The log must be able to continue after the snapshot.
        if index <= self.raft_log.committed || index > MAX_PLAUSIBLE {
            return false;
        }
        if self.raft_log.match_term(index, term) {
            // The log already holds it; only the commit index was behind.
            self.raft_log.commit_to(index);
            return false;
        }
        let cs = snapshot.metadata.conf_state.clone();
        self.raft_log.restore(snapshot);
        self.prs.clear();
        let next = self.raft_log.last_index() + 1;
        for id in cs.learners {
            self.prs
                .insert(id, Progress::new(next, self.max_inflight, true));
        }
        for id in cs.voters {
            self.prs
                .insert(id, Progress::new(next, self.max_inflight, false));
        }
        true
    }

    // ----- leader side -----

    fn handle_propose(&mut self, m: Message) -> Result<()> {
        if m.entries.is_empty() || self.lead_transferee.is_some() || !self.prs.contains(self.id) {
            return Err(Error::ProposalDropped);
        }
        let mut pending = self.pending_conf_index;
        let last = self.raft_log.last_index();
        for (i, e) in m.entries.iter().enumerate() {
            if e.entry_type == EntryType::ConfChange {
                if pending > self.raft_log.applied {
                    return Err(Error::ProposalDropped);
                }
                pending = last + 1 + i as u64;
                self.commit_barriers.push(pending);
            }
        }
        self.pending_conf_index = pending;
        self.append_entry(m.entries);
        self.bcast_append();
        Ok(())
    }

    fn append_entry(&mut self, mut ents: Vec<Entry>) {
        let last = self.raft_log.last_index();
        for (i, e) in ents.iter_mut().enumerate() {
            e.term = self.term;
            e.index = last + 1 + i as u64;
        }
        let new_last = self.raft_log.append(&ents);
        let self_id = self.id;
        // The driver persists entries before sending anything, so the leader's own copy counts.
        if let Some(pr) = self.prs.get_mut(self_id) {
            pr.maybe_update(new_last);
        }
        self.maybe_commit();
    }

    /// Advances commit to what a quorum holds, if that entry is of this term.
    fn maybe_commit(&mut self) -> bool {
        let mci = self.prs.quorum_matched();
        if !self.raft_log.maybe_commit(mci, self.term) {
            return false;
        }
        if self.committed_entry_in_current_term() && !self.pending_read_requests.is_empty() {
            for req in std::mem::take(&mut self.pending_read_requests) {
                self.process_read_index(req);
            }
        }
        true
    }

    fn committed_entry_in_current_term(&self) -> bool {
        self.raft_log.term_or_zero(self.raft_log.committed) == self.term
    }

    fn handle_append_response(&mut self, m: &Message) {
        let last = self.raft_log.last_index();
        let Some(pr) = self.prs.get_mut(m.from) else {
            return;
        };
        pr.recent_active = true;
        if m.reject {
            let mut next_probe = m.reject_hint;
            if m.log_term > 0 {
                next_probe = self
                    .raft_log
                    .find_conflict_by_term(m.reject_hint, m.log_term)
                    .0;
            }
            let Some(pr) = self.prs.get_mut(m.from) else {
                return;
            };
            if pr.maybe_decr_to(m.index, next_probe) {
                if pr.state == ProgressState::Replicate {
                    pr.become_probe();
                }
                self.send_append(m.from);
            }
            return;
        }
        if m.index > last {
            // Acknowledges entries this leader never had: not from this term's log.
            return;
        }
        let old_paused = pr.is_paused();
        if !pr.maybe_update(m.index) {
            return;
        }
        match pr.state {
            ProgressState::Probe => pr.become_replicate(),
            ProgressState::Snapshot if pr.matched >= pr.pending_snapshot => {
                pr.become_probe();
                pr.become_replicate();
            }
            ProgressState::Replicate => pr.ins.free_to(m.index),
            ProgressState::Snapshot => {}
        }
        let matched = pr.matched;
        if self.maybe_commit() {
            self.bcast_append();
        } else if old_paused {
            self.send_append(m.from);
        }
        // Fill the window while entries remain (the size limit may have cut the last append).
        while self.maybe_send_append(m.from, false) {}
        if self.lead_transferee == Some(m.from) && matched == self.raft_log.last_index() {
            self.send_to(MessageType::TimeoutNow, m.from);
        }
    }

    fn handle_heartbeat_response(&mut self, m: &Message) {
        let last = self.raft_log.last_index();
        let Some(pr) = self.prs.get_mut(m.from) else {
            return;
        };
        pr.recent_active = true;
        pr.probe_sent = false;
        if pr.state == ProgressState::Replicate && pr.ins.full() {
            pr.ins.free_first_one();
        }
        if pr.matched < last {
            self.send_append(m.from);
        }
        if self.read_only_option != ReadOnlyOption::Safe || m.context.is_empty() {
            return;
        }
        let Some(acks) = self.read_only.recv_ack(m.from, &m.context) else {
            return;
        };
        if !self.prs.has_quorum(acks.iter()) {
            return;
        }
        for status in self.read_only.advance(&m.context) {
            self.respond_read(status.req, status.index);
        }
    }

    fn handle_read_index(&mut self, m: Message) {
        let self_id = self.id;
        if self.prs.voter_count() == 1 && self.prs.is_voter(self_id) {
            let committed = self.raft_log.committed;
            self.respond_read(m, committed);
            return;
        }
        if self.read_only_option == ReadOnlyOption::Safe && m.context.is_empty() {
            // Heartbeat answers are matched to a request by its context; without one the
            // request could never be confirmed.
            return;
        }
        if !self.committed_entry_in_current_term() {
            // Until then this leader's commit index may be behind the group's.
            self.pending_read_requests.push(m);
            return;
        }
        self.process_read_index(m);
    }

    fn process_read_index(&mut self, m: Message) {
        let committed = self.raft_log.committed;
        match self.read_only_option {
            ReadOnlyOption::Safe => {
                let ctx = m.context.clone();
                self.read_only.add_request(committed, m, self.id);
                self.bcast_heartbeat_with_ctx(ctx, false);
            }
            ReadOnlyOption::LeaseBased => self.respond_read(m, committed),
        }
    }

    fn respond_read(&mut self, req: Message, index: u64) {
        if req.from == 0 || req.from == self.id {
            self.read_states.push(ReadState {
                index,
                request_ctx: req.context,
            });
        } else {
            self.send(Message {
                index,
                context: req.context,
                ..Message::new(MessageType::ReadIndexResponse, self.id, req.from)
            });
        }
    }

    fn handle_transfer_leader(&mut self, transferee: u64) {
        if !self.prs.is_voter(transferee) {
            return;
        }
        if let Some(current) = self.lead_transferee {
            if current == transferee {
                return;
            }
            self.lead_transferee = None;
        }
        if transferee == self.id {
            return;
        }
        // The transfer must finish within one election timeout.
        self.election_elapsed = 0;
        self.lead_transferee = Some(transferee);
        let up_to_date = self
            .prs
            .get(transferee)
            .is_some_and(|p| p.matched == self.raft_log.last_index());
        if up_to_date {
            self.send_to(MessageType::TimeoutNow, transferee);
        } else {
            self.send_append(transferee);
        }
    }

    // ----- driver reports -----

    /// The transport lost the leader's store: this follower forgets its leader (so its lease no
    /// longer turns votes away and clients are told no leader is known) and campaigns
    /// `1 + rank × heartbeat_tick` ticks from now unless a leader is heard from first. Waiting
    /// out a whole election timeout would add nothing (the loss is already known) and a
    /// hibernating group would first have to sleep through it. `rank` orders the voters that
    /// remain, so the first one's election is over before the next would start: two followers
    /// campaigning in the same tick split the vote and both wait a full timeout again.
    pub(crate) fn leader_unreachable(&mut self, rank: usize) {
        if self.role != StateRole::Follower || self.leader_id == 0 || !self.promotable() {
            return;
        }
        self.leader_id = 0;
        let delay = 1 + rank.saturating_mul(self.heartbeat_tick);
        let campaign_at = self.randomized_election_timeout.saturating_sub(delay);
        self.election_elapsed = self.election_elapsed.max(campaign_at);
    }

    pub(crate) fn report_unreachable(&mut self, id: u64) {
        if self.role != StateRole::Leader {
            return;
        }
        // Proposals wait while leadership moves; to a peer that cannot be reached it will not
        // move, so the wait would last until the transfer timed out.
        if self.lead_transferee == Some(id) {
            self.lead_transferee = None;
        }
        if let Some(pr) = self.prs.get_mut(id)
            && pr.state == ProgressState::Replicate
        {
            pr.become_probe();
        }
    }

    pub(crate) fn report_snapshot(&mut self, id: u64, status: SnapshotStatus) {
        if self.role != StateRole::Leader {
            return;
        }
        let Some(pr) = self.prs.get_mut(id) else {
            return;
        };
        if pr.state != ProgressState::Snapshot {
            return;
        }
        if status == SnapshotStatus::Failure {
            pr.pending_snapshot = 0;
        }
        pr.become_probe();
        // Wait for the peer's next answer (or a heartbeat round) before probing again.
        pr.probe_sent = true;
    }

    // ----- membership -----

    /// Applies a committed conf change; returns the new membership.
    pub fn apply_conf_change(&mut self, cc: &ConfChange) -> ConfState {
        match cc.change_type {
            ConfChangeType::AddNode => self.add_node(cc.node_id, false),
            ConfChangeType::AddLearnerNode => self.add_node(cc.node_id, true),
            ConfChangeType::RemoveNode => self.remove_node(cc.node_id),
        }
        self.prs.conf_state()
    }

    fn add_node(&mut self, id: u64, learner: bool) {
        if id == 0 {
            return;
        }
        if let Some(pr) = self.prs.get_mut(id) {
            // Promotion only: a voter is never demoted to a learner by a one-peer change.
            if pr.is_learner && !learner {
                pr.is_learner = false;
            }
            return;
        }
        let mut pr = Progress::new(self.raft_log.last_index() + 1, self.max_inflight, learner);
        // A new peer gets a full election timeout before check quorum counts it as silent.
        pr.recent_active = true;
        self.prs.insert(id, pr);
    }

    fn remove_node(&mut self, id: u64) {
        self.prs.remove(id);
        if self.role != StateRole::Leader {
            return;
        }
        if id == self.id {
            self.become_follower(self.term, 0);
            return;
        }
        if self.lead_transferee == Some(id) {
            self.lead_transferee = None;
        }
        // The quorum may have shrunk enough to commit what was waiting.
        if self.prs.voter_count() > 0 && self.maybe_commit() {
            self.bcast_append();
        }
    }
}
