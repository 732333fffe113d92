//! The safety checker: it is told what the nodes of one run do (who leads which term, what
//! each node persists and applies, what reads return) and what their stored logs hold, and
//! reports the first observation that breaks a Raft invariant.
//!
//! It keeps its own record of the whole run, independent of any node, so it notices a node
//! that forgets (a crash) as well as one that lies. It knows nothing of the simulation driving
//! it, which lets a test feed it a hand-made broken history.

use std::collections::BTreeMap;
use std::fmt;

use bytes::Bytes;
use tinykv_raft::{Entry, EntryType, HardState, ReadState, Storage, StorageError};

/// The property an observation broke.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Invariant {
    /// At most one leader per term over the whole run.
    ElectionSafety,
    /// Entries with the same index and term are preceded by identical entries.
    LogMatching,
    /// A leader holds every entry committed before its term.
    LeaderCompleteness,
    /// No two nodes apply different entries (or reach different states) at one index.
    StateMachineSafety,
    /// A node's commit index never moves back, not even across a restart.
    CommitMonotonic,
    /// A node's persisted term never moves back and its vote in a term never changes.
    DurableVote,
    /// A node applies only committed entries.
    AppliedWithinCommit,
    /// A node applies each index once, in order.
    ApplyOrder,
    /// A read index covers everything committed before the read was asked for.
    ReadLinearizability,
    /// A client proposal is applied only where it was proposed (its index and term).
    ProposalPlacement,
    /// Raft handed the driver something it cannot carry out (a gap in the log, an
    /// undecodable snapshot, a failed step).
    Driver,
    /// After the faults stop, the group elects a stable leader and converges.
    Liveness,
    /// The code under test panicked.
    Panic,
}

impl Invariant {
    pub fn name(self) -> &'static str {
        match self {
            Invariant::ElectionSafety => "election-safety",
            Invariant::LogMatching => "log-matching",
            Invariant::LeaderCompleteness => "leader-completeness",
            Invariant::StateMachineSafety => "state-machine-safety",
            Invariant::CommitMonotonic => "commit-monotonic",
            Invariant::DurableVote => "durable-term-and-vote",
            Invariant::AppliedWithinCommit => "applied-within-commit",
            Invariant::ApplyOrder => "apply-once-in-order",
            Invariant::ReadLinearizability => "read-index-linearizable",
            Invariant::ProposalPlacement => "proposal-placement",
            Invariant::Driver => "driver-contract",
            Invariant::Liveness => "liveness",
            Invariant::Panic => "panic",
        }
    }
}

#[derive(Clone, Debug)]
pub struct Violation {
    pub invariant: Invariant,
    pub detail: String,
}

impl Violation {
    pub fn new(invariant: Invariant, detail: impl Into<String>) -> Violation {
        Violation {
            invariant,
            detail: detail.into(),
        }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.invariant.name(), self.detail)
    }
}

pub type Check = Result<(), Violation>;

/// What is known about the entry applied at one index.
#[derive(Clone, Debug)]
struct AppliedIndex {
    /// Unknown when the index was only ever reached by installing a snapshot.
    entry: Option<EntryFingerprint>,
    /// The state machine's chain right after this index.
    chain: u64,
    /// A term no lower than the one in which the entry was committed: the first applier's
    /// term (it heard of the commit from a leader of that term or an earlier one). Leaders of
    /// later terms must hold the entry.
    committed_by_term: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct EntryFingerprint {
    term: u64,
    entry_type: EntryType,
    data: Bytes,
}

impl EntryFingerprint {
    fn of(entry: &Entry) -> EntryFingerprint {
        EntryFingerprint {
            term: entry.term,
            entry_type: entry.entry_type,
            data: entry.data.clone(),
        }
    }
}

#[derive(Clone, Debug, Default)]
struct NodeRecord {
    applied: u64,
    persisted: HardState,
    /// While the node leads `term`, applied indices up to here were found in its log; leaders
    /// never drop entries, so they need no second look.
    completeness_checked: Option<(u64, u64)>,
}

#[derive(Debug, Default)]
pub struct Checker {
    leaders: BTreeMap<u64, u64>,
    applied: BTreeMap<u64, AppliedIndex>,
    nodes: BTreeMap<u64, NodeRecord>,
    /// Read request context → highest commit index anywhere when it was asked.
    reads: BTreeMap<Bytes, u64>,
    max_commit: u64,
}

impl Checker {
    pub fn new() -> Checker {
        Checker::default()
    }

    /// A node joins the run with a state machine at `applied` (whose chain is `chain`) and
    /// `persisted` hard state.
    pub fn register_node(
        &mut self,
        id: u64,
        applied: u64,
        chain: u64,
        persisted: HardState,
    ) -> Check {
        let node = self.nodes.entry(id).or_default();
        node.applied = applied;
        node.persisted = persisted;
        self.max_commit = self.max_commit.max(persisted.commit);
        if applied > 0 {
            self.record_state(id, applied, chain)?;
        }
        Ok(())
    }

    /// `id` acts as leader of `term`.
    pub fn observe_leader(&mut self, id: u64, term: u64) -> Check {
        match self.leaders.insert(term, id) {
            Some(other) if other != id => Err(Violation::new(
                Invariant::ElectionSafety,
                format!("nodes {other} and {id} both lead term {term}"),
            )),
            _ => Ok(()),
        }
    }

    /// `id` made `hs` durable.
    pub fn observe_persisted_hard_state(&mut self, id: u64, hs: HardState) -> Check {
        let node = self.nodes.entry(id).or_default();
        let prev = node.persisted;
        if hs.commit < prev.commit {
            return Err(Violation::new(
                Invariant::CommitMonotonic,
                format!(
                    "node {id} persisted commit {} after {}",
                    hs.commit, prev.commit
                ),
            ));
        }
        if hs.term < prev.term {
            return Err(Violation::new(
                Invariant::DurableVote,
                format!("node {id} persisted term {} after {}", hs.term, prev.term),
            ));
        }
        if hs.term == prev.term && prev.vote != 0 && hs.vote != prev.vote {
            return Err(Violation::new(
                Invariant::DurableVote,
                format!(
                    "node {id} changed its vote in term {} from {} to {}",
                    hs.term, prev.vote, hs.vote
                ),
            ));
        }
        node.persisted = hs;
        self.max_commit = self.max_commit.max(hs.commit);
        Ok(())
    }

    /// `id`, in term `node_term`, applied `entry`, after which its chain is `chain`.
    pub fn observe_apply(&mut self, id: u64, entry: &Entry, chain: u64, node_term: u64) -> Check {
        let node = self.nodes.entry(id).or_default();
        if entry.index != node.applied + 1 {
            return Err(Violation::new(
                Invariant::ApplyOrder,
                format!(
                    "node {id} applied index {} right after index {}",
                    entry.index, node.applied
                ),
            ));
        }
        node.applied = entry.index;
        let seen = EntryFingerprint::of(entry);
        match self.applied.get_mut(&entry.index) {
            None => {
                self.applied.insert(
                    entry.index,
                    AppliedIndex {
                        entry: Some(seen),
                        chain,
                        committed_by_term: node_term,
                    },
                );
                Ok(())
            }
            Some(known) => {
                match &known.entry {
                    Some(first) if *first != seen => {
                        return Err(Violation::new(
                            Invariant::StateMachineSafety,
                            format!(
                                "node {id} applied {:?} at index {} where {:?} was applied before",
                                seen, entry.index, first
                            ),
                        ));
                    }
                    Some(_) => {}
                    None => {
                        known.entry = Some(seen);
                        known.committed_by_term = node_term;
                    }
                }
                if known.chain != chain {
                    return Err(Violation::new(
                        Invariant::StateMachineSafety,
                        format!(
                            "node {id} reached another state at index {} than other nodes",
                            entry.index
                        ),
                    ));
                }
                Ok(())
            }
        }
    }

    /// `id` replaced its state machine with a snapshot's, at `index` with chain `chain`.
    pub fn observe_snapshot_restore(&mut self, id: u64, index: u64, chain: u64) -> Check {
        let node = self.nodes.entry(id).or_default();
        if index <= node.applied {
            return Err(Violation::new(
                Invariant::ApplyOrder,
                format!(
                    "node {id} installed a snapshot at index {index} with index {} already applied",
                    node.applied
                ),
            ));
        }
        node.applied = index;
        self.record_state(id, index, chain)
    }

    fn record_state(&mut self, id: u64, index: u64, chain: u64) -> Check {
        match self.applied.get(&index) {
            Some(known) if known.chain != chain => Err(Violation::new(
                Invariant::StateMachineSafety,
                format!("node {id} holds another state at index {index} than other nodes"),
            )),
            Some(_) => Ok(()),
            None => {
                self.applied.insert(
                    index,
                    AppliedIndex {
                        entry: None,
                        chain,
                        committed_by_term: u64::MAX,
                    },
                );
                Ok(())
            }
        }
    }

    pub fn check_applied_within_commit(&self, id: u64, applied: u64, commit: u64) -> Check {
        if applied > commit {
            return Err(Violation::new(
                Invariant::AppliedWithinCommit,
                format!("node {id} applied index {applied} but its commit index is {commit}"),
            ));
        }
        Ok(())
    }

    /// Compares the stored logs of two nodes over the indices both hold.
    pub fn check_log_matching(&self, a_id: u64, a: &[Entry], b_id: u64, b: &[Entry]) -> Check {
        let (Some(a_first), Some(b_first)) = (a.first(), b.first()) else {
            return Ok(());
        };
        let (Some(a_last), Some(b_last)) = (a.last(), b.last()) else {
            return Ok(());
        };
        let lo = a_first.index.max(b_first.index);
        let hi = a_last.index.min(b_last.index);
        if lo > hi {
            return Ok(());
        }
        let (Some(ea), Some(eb)) = (span(a, lo, hi), span(b, lo, hi)) else {
            return Err(Violation::new(
                Invariant::LogMatching,
                format!("the stored log of node {a_id} or {b_id} has holes in {lo}..={hi}"),
            ));
        };
        for (k, (x, y)) in ea.iter().zip(eb).enumerate() {
            let want = lo + k as u64;
            if x.index != want || y.index != want {
                return Err(Violation::new(
                    Invariant::LogMatching,
                    format!(
                        "the stored log of node {a_id} or {b_id} is not contiguous at index {want}"
                    ),
                ));
            }
        }
        let Some(top) = (0..ea.len()).rev().find(|&k| ea[k].term == eb[k].term) else {
            return Ok(());
        };
        if let Some(k) = (0..=top).find(|&k| ea[k] != eb[k]) {
            return Err(Violation::new(
                Invariant::LogMatching,
                format!(
                    "nodes {a_id} and {b_id} agree on index {} (term {}) but differ at index {}: {:?} vs {:?}",
                    lo + top as u64,
                    ea[top].term,
                    lo + k as u64,
                    ea[k],
                    eb[k]
                ),
            ));
        }
        Ok(())
    }

    /// `id` leads `term` with stored log `log`: every entry committed in an earlier term must
    /// be in it, or behind its snapshot.
    pub fn check_leader_completeness(&mut self, id: u64, term: u64, log: &impl Storage) -> Check {
        let node = self.nodes.entry(id).or_default();
        let from = match node.completeness_checked {
            Some((t, upto)) if t == term => upto + 1,
            _ => 1,
        };
        let mut upto = from.saturating_sub(1);
        for (&index, known) in self.applied.range(from..) {
            upto = index;
            let Some(entry) = &known.entry else { continue };
            if known.committed_by_term >= term {
                continue;
            }
            match log.term(index) {
                Ok(t) if t == entry.term => {}
                Err(StorageError::Compacted) => {}
                found => {
                    return Err(Violation::new(
                        Invariant::LeaderCompleteness,
                        format!(
                            "node {id} leads term {term} but holds {found:?} at index {index}, where an entry of \
                             term {} was committed by term {}",
                            entry.term, known.committed_by_term
                        ),
                    ));
                }
            }
        }
        node.completeness_checked = Some((term, upto));
        Ok(())
    }

    /// A read index was asked for with context `ctx`.
    pub fn observe_read_request(&mut self, ctx: Bytes) {
        self.reads.insert(ctx, self.max_commit);
    }

    /// `id` was told it may serve the read `rs` once it has applied `rs.index`.
    pub fn observe_read_state(&self, id: u64, rs: &ReadState) -> Check {
        let Some(&needed) = self.reads.get(&rs.request_ctx) else {
            return Err(Violation::new(
                Invariant::ReadLinearizability,
                format!(
                    "node {id} answered a read nobody asked for: {:?}",
                    rs.request_ctx
                ),
            ));
        };
        if rs.index < needed {
            return Err(Violation::new(
                Invariant::ReadLinearizability,
                format!(
                    "node {id} answered read {:?} with index {} but index {needed} was committed before it was asked",
                    rs.request_ctx, rs.index
                ),
            ));
        }
        Ok(())
    }
}

/// The entries of `log` (which starts at its first entry's index) for `lo..=hi`.
fn span(log: &[Entry], lo: u64, hi: u64) -> Option<&[Entry]> {
    let first = log.first()?.index;
    let start = usize::try_from(lo.checked_sub(first)?).ok()?;
    let end = usize::try_from(hi.checked_sub(first)?).ok()?;
    log.get(start..=end)
}
