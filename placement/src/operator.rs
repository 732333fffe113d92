//! An operator: the sequence of membership changes and leader transfers that takes one region
//! from the shape it has to the shape a scheduler wants. Each step is a single Raft change the
//! region's leader proposes; a step counts as done when a heartbeat shows its effect, so an
//! operator survives lost instructions and leader changes by re-sending what is missing.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use tinykv_proto::region::RegionEpoch;

use crate::region_meta::RegionMeta;

/// One change to a region.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Step {
    /// Add a learner with a new peer id on `store`. Done once the learner has caught up (it is
    /// no longer reported pending): promoting a learner that lags would leave the group
    /// waiting on it for quorum.
    AddLearner { store: u64, peer_id: u64 },
    /// Make the learner `peer_id` on `store` a voter.
    PromoteLearner { store: u64, peer_id: u64 },
    /// Remove the region's peer on `store`, whatever its role.
    RemovePeer { store: u64 },
    /// Hand leadership from the peer on `from_store` to the voter on `to_store`.
    TransferLeader { from_store: u64, to_store: u64 },
}

impl Step {
    /// Whether the region as reported shows this step's effect.
    pub fn is_done(&self, meta: &RegionMeta) -> bool {
        match *self {
            Step::AddLearner { store, peer_id } => meta
                .region
                .peer_on_store(store)
                .is_some_and(|p| p.id == peer_id && !meta.is_pending(peer_id)),
            Step::PromoteLearner { store, peer_id } => meta
                .region
                .peer_on_store(store)
                .is_some_and(|p| p.id == peer_id && !p.is_learner()),
            Step::RemovePeer { store } => !meta.holds_store(store),
            Step::TransferLeader { to_store, .. } => meta.leader_store() == Some(to_store),
        }
    }

    /// Whether the step changes the region's membership, which moves its `conf_ver` by one.
    pub fn changes_membership(&self) -> bool {
        !matches!(self, Step::TransferLeader { .. })
    }
}

/// Who made an operator, and so why.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum OperatorKind {
    /// The replica checker: a region short of replicas, with one too many, or with one on a
    /// store that is down or being retired.
    Replica,
    BalanceLeader,
    BalanceRegion,
    /// Built by hand, by an operator of the cluster.
    Admin,
}

/// The per-store budgets an operator draws from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum StoreLimitKind {
    /// Leadership moving to or from the store.
    Leader,
    /// A replica added to (a snapshot sent to) or removed from the store.
    Region,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Operator {
    /// Assigned by the operator controller when it admits the operator; 0 before.
    pub id: u64,
    pub region_id: u64,
    /// The region's epoch when the operator was built: a region whose `version` moved (a
    /// split or merge) is no longer the region the operator was planned for.
    pub region_epoch: RegionEpoch,
    pub kind: OperatorKind,
    pub steps: Vec<Step>,
}

impl Operator {
    /// An operator for the region as `meta` shows it, not yet admitted.
    pub fn new(meta: &RegionMeta, kind: OperatorKind, steps: Vec<Step>) -> Operator {
        Operator {
            id: 0,
            region_id: meta.id(),
            region_epoch: meta.region.epoch,
            kind,
            steps,
        }
    }

    /// How far `conf_ver` may move while this operator runs: one per membership step. A
    /// region further along was changed by someone else.
    pub fn membership_step_count(&self) -> u64 {
        self.steps.iter().filter(|s| s.changes_membership()).count() as u64
    }

    /// Whether the operator only moves leadership (no data is copied).
    pub fn is_leader_only(&self) -> bool {
        self.membership_step_count() == 0
    }

    /// The stores whose `kind` budget this operator uses while it runs.
    pub fn stores_touched(&self, kind: StoreLimitKind) -> BTreeSet<u64> {
        let mut stores = BTreeSet::new();
        for step in &self.steps {
            match (*step, kind) {
                (Step::AddLearner { store, .. }, StoreLimitKind::Region)
                | (Step::RemovePeer { store }, StoreLimitKind::Region) => {
                    stores.insert(store);
                }
                (
                    Step::TransferLeader {
                        from_store,
                        to_store,
                    },
                    StoreLimitKind::Leader,
                ) => {
                    stores.insert(from_store);
                    stores.insert(to_store);
                }
                _ => {}
            }
        }
        stores
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::meta;
    use tinykv_proto::region::Peer;

    #[test]
    fn steps_are_done_when_the_region_shows_them() {
        let mut m = meta(1, b"", b"", &[1, 2, 3], 10);
        let add = Step::AddLearner {
            store: 4,
            peer_id: 104,
        };
        let promote = Step::PromoteLearner {
            store: 4,
            peer_id: 104,
        };
        assert!(!add.is_done(&m));
        m.region.peers.push(Peer::learner(104, 4));
        m.pending_peers.push(Peer::learner(104, 4));
        assert!(
            !add.is_done(&m),
            "a learner still catching up is not added yet"
        );
        m.pending_peers.clear();
        assert!(add.is_done(&m) && !promote.is_done(&m));
        m.region.peers[3] = Peer::voter(104, 4);
        assert!(promote.is_done(&m));

        let transfer = Step::TransferLeader {
            from_store: 1,
            to_store: 4,
        };
        assert!(!transfer.is_done(&m));
        m.leader = Some(104);
        assert!(transfer.is_done(&m));
        let remove = Step::RemovePeer { store: 1 };
        assert!(!remove.is_done(&m));
        m.region.peers.remove(0);
        assert!(remove.is_done(&m));
    }

    #[test]
    fn an_operator_names_the_stores_it_loads() {
        let m = meta(1, b"", b"", &[1, 2, 3], 10);
        let op = Operator::new(
            &m,
            OperatorKind::BalanceRegion,
            vec![
                Step::AddLearner {
                    store: 4,
                    peer_id: 9,
                },
                Step::PromoteLearner {
                    store: 4,
                    peer_id: 9,
                },
                Step::TransferLeader {
                    from_store: 1,
                    to_store: 4,
                },
                Step::RemovePeer { store: 1 },
            ],
        );
        assert_eq!(op.membership_step_count(), 3);
        assert!(!op.is_leader_only());
        assert_eq!(
            op.stores_touched(StoreLimitKind::Region),
            BTreeSet::from([1, 4])
        );
        assert_eq!(
            op.stores_touched(StoreLimitKind::Leader),
            BTreeSet::from([1, 4])
        );
    }
}
