//! A group of Raft nodes over `MemStorage`, driven the way a real node drives `RawNode`, with
//! every observation passed to the [`Checker`].
//!
//! Each node's `MemStorage` is exactly what it has persisted: the driver appends a ready's
//! entries and hard state (and installs its snapshot) before it sends the ready's messages. The
//! state machine is persisted with its applied index on every apply. A crash keeps those two and
//! loses everything else; a restart builds a new `RawNode` from them.

use bytes::Bytes;
use tinykv_raft::{
    ConfChange, Config, EntryType, Error, HardState, MemStorage, Message, MessageType, RawNode,
    ReadOnlyOption, Snapshot, SnapshotMetadata, SnapshotStatus, SoftState, StateRole, Storage,
};

use super::checker::{Check, Checker, Invariant, Violation};
use super::network::{Envelope, Network};
use super::rng::SimRng;
use super::state_machine::{StateMachine, chain_step, proposal_data, proposal_id};

/// The Raft settings of one run (the same for every node of the run).
#[derive(Clone, Copy, Debug)]
pub struct RaftParams {
    pub election_tick: usize,
    pub heartbeat_tick: usize,
    pub check_quorum: bool,
    pub pre_vote: bool,
    pub max_size_per_msg: u64,
    pub max_inflight_msgs: usize,
    pub snapshot_pending_timeout_ticks: usize,
    pub skip_bcast_commit: bool,
}

/// The index and term of the snapshot every founding member is bootstrapped from. Starting the
/// log after it means a node that joins later always receives a snapshot, which is how it
/// learns the founding membership.
const BOOTSTRAP_INDEX: u64 = 1;
const BOOTSTRAP_TERM: u64 = 1;

enum Life {
    Up(Box<RawNode<MemStorage>>),
    Down(MemStorage),
}

pub struct SimNode {
    pub id: u64,
    life: Life,
    /// Durable: survives crashes.
    pub sm: StateMachine,
    /// Bumped on every restart; a report about a message goes only to the process that sent it.
    pub incarnation: u64,
    /// The node's hard state as of its last ready.
    pub hard_state: HardState,
    pub soft_state: SoftState,
}

impl SimNode {
    pub fn is_up(&self) -> bool {
        matches!(self.life, Life::Up(_))
    }

    pub fn is_leader(&self) -> bool {
        self.is_up() && self.soft_state.role == StateRole::Leader
    }

    /// What the node has persisted (for a running node, its storage as Raft sees it).
    pub fn storage(&self) -> &MemStorage {
        match &self.life {
            Life::Up(raw) => raw.store(),
            Life::Down(storage) => storage,
        }
    }

    fn raw(&mut self) -> Option<&mut RawNode<MemStorage>> {
        match &mut self.life {
            Life::Up(raw) => Some(raw),
            Life::Down(_) => None,
        }
    }
}

/// A client proposal as the client saw it accepted.
#[derive(Clone, Copy, Debug)]
pub struct ProposalRecord {
    pub node: u64,
    pub index: u64,
    pub term: u64,
    /// The proposing node applied an entry with this index and term: the client got its answer.
    pub acked: bool,
}

/// How far to carry out a ready before the node crashes (or not at all).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// Send the messages allowed before persisting, and nothing else.
    AfterImmediateSend,
    /// Persist the snapshot, entries and hard state only.
    AfterPersist,
    /// Persist and send, then apply only the first `apply` committed entries.
    AfterSend { apply: usize },
    /// Do everything and advance.
    Complete,
}

/// What becomes of a message taken off the network.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fate {
    Deliver,
    Duplicate,
    Lose,
}

/// What a run exercised, to judge coverage; never part of a verdict.
#[derive(Clone, Copy, Debug, Default)]
pub struct Coverage {
    pub elections_won: u64,
    pub entries_applied: u64,
    pub snapshots_installed: u64,
    pub conf_changes_applied: u64,
    pub reads_answered: u64,
    pub restarts: u64,
}

impl Coverage {
    pub fn add(&mut self, other: &Coverage) {
        self.elections_won += other.elections_won;
        self.entries_applied += other.entries_applied;
        self.snapshots_installed += other.snapshots_installed;
        self.conf_changes_applied += other.conf_changes_applied;
        self.reads_answered += other.reads_answered;
        self.restarts += other.restarts;
    }
}

pub struct Cluster {
    /// Node `id` is at `nodes[id - 1]`.
    pub nodes: Vec<SimNode>,
    pub net: Network,
    pub checker: Checker,
    /// Proposal `id` is at `proposals[id - 1]`.
    pub proposals: Vec<ProposalRecord>,
    params: RaftParams,
    /// Nodes whose stored log changed since log matching was last checked.
    log_dirty: Vec<bool>,
    reads_asked: u64,
    pub coverage: Coverage,
}

fn driver(detail: String) -> Violation {
    Violation::new(Invariant::Driver, detail)
}

impl Cluster {
    /// `members` founding voters `1..=members` and spare ids up to `universe`, which start empty
    /// and outside the group until a conf change adds them.
    pub fn new(
        members: u64,
        universe: u64,
        params: RaftParams,
        rng: &mut SimRng,
    ) -> Result<Cluster, Violation> {
        let voters: Vec<u64> = (1..=members).collect();
        let mut cluster = Cluster {
            nodes: Vec::new(),
            net: Network::new(),
            checker: Checker::new(),
            proposals: Vec::new(),
            params,
            log_dirty: vec![true; universe as usize],
            reads_asked: 0,
            coverage: Coverage::default(),
        };
        for id in 1..=universe {
            let mut storage = MemStorage::new();
            let sm = if id <= members {
                let sm = StateMachine::bootstrapped(BOOTSTRAP_INDEX, voters.clone());
                let snapshot = Snapshot {
                    data: sm.encode(),
                    metadata: SnapshotMetadata {
                        conf_state: sm.conf_state.clone(),
                        index: BOOTSTRAP_INDEX,
                        term: BOOTSTRAP_TERM,
                    },
                };
                storage
                    .apply_snapshot(snapshot)
                    .map_err(|e| driver(format!("bootstrap of node {id}: {e}")))?;
                sm
            } else {
                StateMachine::uninitialized()
            };
            cluster
                .checker
                .register_node(id, sm.applied, sm.chain, storage.hard_state())?;
            cluster.nodes.push(SimNode {
                id,
                life: Life::Down(storage),
                sm,
                incarnation: 0,
                hard_state: HardState::default(),
                soft_state: SoftState::default(),
            });
            cluster.start(id, rng)?;
        }
        Ok(cluster)
    }

    pub fn node(&self, id: u64) -> &SimNode {
        &self.nodes[(id - 1) as usize]
    }

    pub fn ids(&self) -> impl Iterator<Item = u64> + '_ {
        self.nodes.iter().map(|n| n.id)
    }

    pub fn up_ids(&self) -> Vec<u64> {
        self.nodes
            .iter()
            .filter(|n| n.is_up())
            .map(|n| n.id)
            .collect()
    }

    pub fn down_ids(&self) -> Vec<u64> {
        self.nodes
            .iter()
            .filter(|n| !n.is_up())
            .map(|n| n.id)
            .collect()
    }

    /// Running nodes that believe they lead, highest term first.
    pub fn leaders(&self) -> Vec<u64> {
        let mut leaders: Vec<&SimNode> = self.nodes.iter().filter(|n| n.is_leader()).collect();
        leaders.sort_by_key(|n| std::cmp::Reverse(n.hard_state.term));
        leaders.iter().map(|n| n.id).collect()
    }

    /// The membership as of the most advanced state machine: the best guess at the committed
    /// configuration that the simulation can make without asking Raft.
    pub fn committed_members(&self) -> Vec<u64> {
        let most_applied = self
            .nodes
            .iter()
            .max_by_key(|n| (n.sm.applied, std::cmp::Reverse(n.id)));
        let Some(node) = most_applied else {
            return Vec::new();
        };
        let cs = &node.sm.conf_state;
        let mut members: Vec<u64> = cs.voters.iter().chain(&cs.learners).copied().collect();
        members.sort_unstable();
        members
    }

    fn start(&mut self, id: u64, rng: &mut SimRng) -> Check {
        let params = self.params;
        let node = &mut self.nodes[(id - 1) as usize];
        let Life::Down(storage) = &mut node.life else {
            return Ok(());
        };
        let mut storage = std::mem::take(storage);
        // The membership Raft restarts with is the storage's; it must be the one at the applied
        // index, which only the state machine knows when entries were applied after the last
        // snapshot. Snapshotting the state machine here is a pure function of persisted state.
        let snapshot_index = storage
            .snapshot(0)
            .map_err(|e| driver(format!("node {id} snapshot on restart: {e}")))?
            .metadata
            .index;
        if node.sm.applied > snapshot_index {
            storage
                .create_snapshot(
                    node.sm.applied,
                    Some(node.sm.conf_state.clone()),
                    node.sm.encode(),
                )
                .map_err(|e| {
                    driver(format!(
                        "node {id} cannot snapshot applied index {}: {e}",
                        node.sm.applied
                    ))
                })?;
        }
        let config = Config {
            id,
            peers: Vec::new(),
            election_tick: params.election_tick,
            heartbeat_tick: params.heartbeat_tick,
            applied: node.sm.applied,
            max_size_per_msg: params.max_size_per_msg,
            max_inflight_msgs: params.max_inflight_msgs,
            check_quorum: params.check_quorum,
            pre_vote: params.pre_vote,
            read_only_option: ReadOnlyOption::Safe,
            snapshot_pending_timeout_ticks: params.snapshot_pending_timeout_ticks,
            seed: rng.next_u64(),
            skip_bcast_commit: params.skip_bcast_commit,
        };
        node.hard_state = storage.hard_state();
        node.soft_state = SoftState::default();
        node.incarnation += 1;
        let raw = RawNode::new(&config, storage)
            .map_err(|e| driver(format!("node {id} failed to start: {e}")))?;
        node.life = Life::Up(Box::new(raw));
        Ok(())
    }

    /// Crashes `id`: only what it persisted survives.
    pub fn crash(&mut self, id: u64) {
        let node = &mut self.nodes[(id - 1) as usize];
        if let Life::Up(raw) = &node.life {
            let persisted = raw.store().clone();
            node.life = Life::Down(persisted);
            node.soft_state = SoftState::default();
        }
    }

    pub fn restart(&mut self, id: u64, rng: &mut SimRng) -> Check {
        self.start(id, rng)?;
        self.coverage.restarts += 1;
        self.log_dirty[(id - 1) as usize] = true;
        Ok(())
    }

    pub fn tick(&mut self, id: u64) {
        if let Some(raw) = self.nodes[(id - 1) as usize].raw() {
            raw.tick();
        }
    }

    pub fn campaign(&mut self, id: u64) -> Check {
        let Some(raw) = self.nodes[(id - 1) as usize].raw() else {
            return Ok(());
        };
        match raw.campaign() {
            Ok(()) | Err(Error::ProposalDropped) => Ok(()),
            Err(e) => Err(driver(format!("node {id} failed to campaign: {e}"))),
        }
    }

    /// Proposes a new client entry on `id`; returns its proposal id when accepted.
    pub fn propose(&mut self, id: u64) -> Result<Option<u64>, Violation> {
        let proposal = self.proposals.len() as u64 + 1;
        let Some(raw) = self.nodes[(id - 1) as usize].raw() else {
            return Ok(None);
        };
        match raw.propose(proposal_data(proposal)) {
            Ok(p) => {
                self.proposals.push(ProposalRecord {
                    node: id,
                    index: p.index,
                    term: p.term,
                    acked: false,
                });
                Ok(Some(proposal))
            }
            Err(Error::ProposalDropped) => Ok(None),
            Err(e) => Err(driver(format!("node {id} failed to propose: {e}"))),
        }
    }

    pub fn propose_conf_change(&mut self, id: u64, cc: ConfChange) -> Check {
        let Some(raw) = self.nodes[(id - 1) as usize].raw() else {
            return Ok(());
        };
        match raw.propose_conf_change(cc) {
            Ok(_) | Err(Error::ProposalDropped) => Ok(()),
            Err(e) => Err(driver(format!(
                "node {id} failed to propose a conf change: {e}"
            ))),
        }
    }

    pub fn transfer_leader(&mut self, id: u64, transferee: u64) {
        if let Some(raw) = self.nodes[(id - 1) as usize].raw() {
            raw.transfer_leader(transferee);
        }
    }

    pub fn read_index(&mut self, id: u64) {
        self.reads_asked += 1;
        let ctx = Bytes::from(format!("read-{}", self.reads_asked));
        let Cluster { nodes, checker, .. } = self;
        if let Some(raw) = nodes[(id - 1) as usize].raw() {
            checker.observe_read_request(ctx.clone());
            raw.read_index(ctx);
        }
    }

    /// Snapshots `id`'s state machine at its applied index into its storage and compacts the
    /// log up to `keep` entries below it.
    pub fn compact(&mut self, id: u64, keep: u64) -> Check {
        let idx = (id - 1) as usize;
        let node = &mut self.nodes[idx];
        let applied = node.sm.applied;
        let Life::Up(raw) = &mut node.life else {
            return Ok(());
        };
        let storage = raw.mut_store();
        let snapshot_index = storage
            .snapshot(0)
            .map_err(|e| driver(format!("node {id} snapshot: {e}")))?
            .metadata
            .index;
        if applied > snapshot_index {
            storage
                .create_snapshot(applied, Some(node.sm.conf_state.clone()), node.sm.encode())
                .map_err(|e| {
                    driver(format!(
                        "node {id} cannot snapshot applied index {applied}: {e}"
                    ))
                })?;
        }
        let compacted = storage
            .first_index()
            .map_err(|e| driver(format!("node {id} first index: {e}")))?
            - 1;
        let target = applied.saturating_sub(keep).max(compacted + 1);
        if target <= applied {
            storage.compact(target).map_err(|e| {
                driver(format!(
                    "node {id} cannot compact to {target} (applied {applied}): {e}"
                ))
            })?;
            self.log_dirty[idx] = true;
        }
        Ok(())
    }

    /// Carries a message to its destination, or loses it. A lost snapshot is reported failed to
    /// its sender and a message lost to a partition or a dead peer reports the peer
    /// unreachable, as a transport would.
    pub fn deliver(&mut self, env: Envelope, fate: Fate) -> Check {
        let (from, to) = (env.sender, env.msg.to);
        if to == 0 || to > self.nodes.len() as u64 {
            return Ok(());
        }
        let is_snapshot = env.msg.msg_type == MessageType::Snapshot;
        let link_down = !self.net.connected(from, to) || !self.node(to).is_up();
        if link_down || fate == Fate::Lose {
            if is_snapshot {
                self.report_to_sender(&env, |raw| raw.report_snapshot(to, SnapshotStatus::Failure));
            } else if link_down {
                self.report_to_sender(&env, |raw| raw.report_unreachable(to));
            }
            return Ok(());
        }
        if fate == Fate::Duplicate {
            self.net.send(env.clone());
        }
        let msg_type = env.msg.msg_type;
        let Some(raw) = self.nodes[(to - 1) as usize].raw() else {
            return Ok(());
        };
        match raw.step(env.msg.clone()) {
            Ok(()) | Err(Error::StepPeerNotFound(_)) | Err(Error::ProposalDropped) => {}
            Err(e) => {
                return Err(driver(format!(
                    "node {to} failed to step {msg_type:?} from {from}: {e}"
                )));
            }
        }
        if is_snapshot {
            self.report_to_sender(&env, |raw| raw.report_snapshot(to, SnapshotStatus::Finish));
        }
        Ok(())
    }

    fn report_to_sender(&mut self, env: &Envelope, report: impl FnOnce(&mut RawNode<MemStorage>)) {
        let Some(node) = self.nodes.get_mut((env.sender as usize).wrapping_sub(1)) else {
            return;
        };
        if node.incarnation != env.sender_incarnation {
            return;
        }
        if let Some(raw) = node.raw() {
            report(raw);
        }
    }

    /// Handles every ready of every running node.
    pub fn drain_all(&mut self) -> Check {
        for idx in 0..self.nodes.len() {
            // A bounded number of rounds: each one does real work, but a node that kept
            // producing readies forever must not hang the run; the next step resumes it.
            for _ in 0..16 {
                let has_ready = matches!(&self.nodes[idx].life, Life::Up(raw) if raw.has_ready());
                if !has_ready {
                    break;
                }
                self.process_ready(idx, Stop::Complete)?;
            }
        }
        Ok(())
    }

    /// Takes one ready from node `nodes[idx]` and carries it out in the documented order, up to
    /// `stop`.
    pub fn process_ready(&mut self, idx: usize, stop: Stop) -> Check {
        let Cluster {
            nodes,
            net,
            checker,
            proposals,
            log_dirty,
            coverage,
            ..
        } = self;
        let universe = nodes.len() as u64;
        let node = &mut nodes[idx];
        let id = node.id;
        let Life::Up(raw) = &mut node.life else {
            return Ok(());
        };
        if !raw.has_ready() {
            return Ok(());
        }
        let rd = raw.ready();
        // A leader's appends may leave before the ready is durable (a crash can follow).
        send_all(net, id, node.incarnation, universe, &rd.immediate_messages)?;
        if stop == Stop::AfterImmediateSend {
            return Ok(());
        }
        if let Some(ss) = rd.soft_state {
            if ss.role == StateRole::Leader && node.soft_state.role != StateRole::Leader {
                coverage.elections_won += 1;
            }
            node.soft_state = ss;
        }

        if let Some(snapshot) = &rd.snapshot {
            let index = snapshot.metadata.index;
            raw.mut_store()
                .apply_snapshot(snapshot.clone())
                .map_err(|e| {
                    driver(format!("node {id} cannot install snapshot at {index}: {e}"))
                })?;
            let Some(mut sm) = StateMachine::decode(&snapshot.data) else {
                return Err(driver(format!(
                    "node {id} got a snapshot at {index} with undecodable data"
                )));
            };
            if sm.applied != index {
                return Err(driver(format!(
                    "node {id} got a snapshot at {index} holding a state machine at {}",
                    sm.applied
                )));
            }
            checker.observe_snapshot_restore(id, index, sm.chain)?;
            sm.conf_state = snapshot.metadata.conf_state.clone();
            node.sm = sm;
            coverage.snapshots_installed += 1;
            log_dirty[idx] = true;
        }
        if !rd.entries.is_empty() {
            raw.mut_store().append(&rd.entries).map_err(|e| {
                driver(format!(
                    "node {id} cannot append {} entries: {e}",
                    rd.entries.len()
                ))
            })?;
            log_dirty[idx] = true;
        }
        if let Some(hs) = rd.hard_state {
            raw.mut_store().set_hard_state(hs);
        }
        if rd.hard_state.is_some() || rd.snapshot.is_some() {
            let persisted = raw.store().hard_state();
            checker.observe_persisted_hard_state(id, persisted)?;
            node.hard_state = persisted;
        }
        if node.soft_state.role == StateRole::Leader {
            checker.observe_leader(id, node.hard_state.term)?;
        }
        if stop == Stop::AfterPersist {
            return Ok(());
        }

        send_all(net, id, node.incarnation, universe, &rd.messages)?;

        let apply_limit = match stop {
            Stop::AfterSend { apply } => apply,
            _ => usize::MAX,
        };
        let term = node.hard_state.term;
        for entry in rd.committed_entries.iter().take(apply_limit) {
            let chain = chain_step(node.sm.chain, entry);
            checker.observe_apply(id, entry, chain, term)?;
            if entry.entry_type == EntryType::ConfChange && !entry.data.is_empty() {
                let Some(cc) = ConfChange::decode(&entry.data) else {
                    return Err(driver(format!(
                        "node {id} applied an undecodable conf change at {}",
                        entry.index
                    )));
                };
                node.sm.conf_state = raw.apply_conf_change(&cc);
                coverage.conf_changes_applied += 1;
            }
            node.sm.apply(entry);
            coverage.entries_applied += 1;
            if let Some(proposal) = proposal_id(entry) {
                let record = proposal
                    .checked_sub(1)
                    .and_then(|i| proposals.get_mut(i as usize));
                let Some(record) = record else {
                    return Err(Violation::new(
                        Invariant::ProposalPlacement,
                        format!(
                            "node {id} applied unknown proposal {proposal} at {}",
                            entry.index
                        ),
                    ));
                };
                if (record.index, record.term) != (entry.index, entry.term) {
                    return Err(Violation::new(
                        Invariant::ProposalPlacement,
                        format!(
                            "node {id} applied proposal {proposal} at index {} term {}, but it was proposed at \
                             index {} term {}",
                            entry.index, entry.term, record.index, record.term
                        ),
                    ));
                }
                if record.node == id {
                    record.acked = true;
                }
            }
        }
        if stop != Stop::Complete {
            return Ok(());
        }
        for rs in &rd.read_states {
            checker.observe_read_state(id, rs)?;
            coverage.reads_answered += 1;
        }
        raw.advance(rd);
        Ok(())
    }

    /// The invariants over the state of every node, checked after every step.
    pub fn check_state(&mut self) -> Check {
        let Cluster {
            nodes,
            checker,
            log_dirty,
            ..
        } = self;
        for node in nodes.iter() {
            if node.is_up() {
                checker.check_applied_within_commit(
                    node.id,
                    node.sm.applied,
                    node.storage().hard_state().commit,
                )?;
            }
            if node.is_leader() {
                checker.check_leader_completeness(node.id, node.hard_state.term, node.storage())?;
            }
        }
        for i in 0..nodes.len() {
            for j in i + 1..nodes.len() {
                if log_dirty[i] || log_dirty[j] {
                    checker.check_log_matching(
                        nodes[i].id,
                        nodes[i].storage().all_entries(),
                        nodes[j].id,
                        nodes[j].storage().all_entries(),
                    )?;
                }
            }
        }
        log_dirty.iter_mut().for_each(|d| *d = false);
        Ok(())
    }

    /// One line per node, for traces and failure reports.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        for node in &self.nodes {
            let storage = node.storage();
            let role = match (node.is_up(), node.soft_state.role) {
                (false, _) => "down",
                (true, StateRole::Leader) => "leader",
                (true, StateRole::Candidate) => "candidate",
                (true, StateRole::PreCandidate) => "precandidate",
                (true, StateRole::Follower) => "follower",
            };
            let hs = storage.hard_state();
            out.push_str(&format!(
                "  n{} {role} term={} vote={} commit={} applied={} log={}..={} voters={:?} learners={:?} lead={}\n",
                node.id,
                hs.term,
                hs.vote,
                hs.commit,
                node.sm.applied,
                storage.first_index().unwrap_or(0),
                storage.last_index().unwrap_or(0),
                node.sm.conf_state.voters,
                node.sm.conf_state.learners,
                node.soft_state.leader_id,
            ));
        }
        out.push_str(&format!(
            "  network: {} in flight, {}\n",
            self.net.len(),
            self.net.describe_partition()
        ));
        out
    }
}

/// Puts `msgs` from node `id` on the network, refusing what a node must never send.
fn send_all(
    net: &mut Network,
    id: u64,
    incarnation: u64,
    universe: u64,
    msgs: &[Message],
) -> Check {
    for msg in msgs {
        let to_known = msg.to != 0 && msg.to <= universe;
        // Forwarded requests keep the requester as `from`, so its answer goes straight back.
        let forwarded = matches!(
            msg.msg_type,
            MessageType::ReadIndex | MessageType::TransferLeader
        );
        if (msg.from != id && !forwarded) || msg.to == id || !to_known || msg.msg_type.is_local() {
            return Err(driver(format!("node {id} asked to send {msg:?}")));
        }
        net.send(Envelope {
            msg: msg.clone(),
            sender: id,
            sender_incarnation: incarnation,
        });
    }
    Ok(())
}
