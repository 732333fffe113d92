//! The step sequences schedulers build operators from. Every replacement adds before it
//! removes (learner, promotion, then removal), so a region never has fewer voters during a
//! move than before it; and a leader is moved off a store before its peer there is removed,
//! since a leader does not remove itself.

use crate::operator::{Operator, OperatorKind, Step};
use crate::region_meta::RegionMeta;

/// Where new peer ids come from. Peer ids are unique across the cluster and never reused, so
/// only the node can hand them out (from the replicated allocator); the driver asks for one
/// per new peer. `None` means none is at hand right now, and no operator needing one is made.
/// An id taken for an operator the controller then refuses is simply never used.
pub trait PeerIdSource {
    fn next_peer_id(&mut self) -> Option<u64>;
}

impl<F: FnMut() -> Option<u64>> PeerIdSource for F {
    fn next_peer_id(&mut self) -> Option<u64> {
        self()
    }
}

/// A new voter on `target`: a learner first, promoted once it has caught up.
pub fn add_replica(
    meta: &RegionMeta,
    kind: OperatorKind,
    target: u64,
    ids: &mut dyn PeerIdSource,
) -> Option<Operator> {
    let peer_id = ids.next_peer_id()?;
    Some(Operator::new(
        meta,
        kind,
        vec![
            Step::AddLearner {
                store: target,
                peer_id,
            },
            Step::PromoteLearner {
                store: target,
                peer_id,
            },
        ],
    ))
}

/// The replica on `source` moved to `target`. When `source` leads, leadership goes to the new
/// voter before the old one is removed.
pub fn move_replica(
    meta: &RegionMeta,
    kind: OperatorKind,
    source: u64,
    target: u64,
    ids: &mut dyn PeerIdSource,
) -> Option<Operator> {
    let mut operator = add_replica(meta, kind, target, ids)?;
    if meta.leader_store() == Some(source) {
        operator.steps.push(Step::TransferLeader {
            from_store: source,
            to_store: target,
        });
    }
    operator.steps.push(Step::RemovePeer { store: source });
    Some(operator)
}

/// The replica on `store` removed; `new_leader` must be given when `store` leads.
pub fn remove_replica(
    meta: &RegionMeta,
    kind: OperatorKind,
    store: u64,
    new_leader: Option<u64>,
) -> Option<Operator> {
    let mut steps = Vec::new();
    if meta.leader_store() == Some(store) {
        steps.push(Step::TransferLeader {
            from_store: store,
            to_store: new_leader?,
        });
    }
    steps.push(Step::RemovePeer { store });
    Some(Operator::new(meta, kind, steps))
}

/// Leadership moved from the current leader's store to `target`.
pub fn transfer_leader(meta: &RegionMeta, kind: OperatorKind, target: u64) -> Option<Operator> {
    let from_store = meta.leader_store()?;
    Some(Operator::new(
        meta,
        kind,
        vec![Step::TransferLeader {
            from_store,
            to_store: target,
        }],
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::{ids_from, meta};

    #[test]
    fn moving_the_leaders_replica_hands_leadership_over_first() {
        let m = meta(1, b"", b"", &[1, 2, 3], 10);
        let mut ids = ids_from(50);
        let op = move_replica(&m, OperatorKind::BalanceRegion, 1, 4, &mut ids).unwrap();
        assert_eq!(
            op.steps,
            vec![
                Step::AddLearner {
                    store: 4,
                    peer_id: 50
                },
                Step::PromoteLearner {
                    store: 4,
                    peer_id: 50
                },
                Step::TransferLeader {
                    from_store: 1,
                    to_store: 4
                },
                Step::RemovePeer { store: 1 },
            ]
        );
        let op = move_replica(&m, OperatorKind::BalanceRegion, 2, 4, &mut ids).unwrap();
        assert_eq!(op.steps.len(), 3, "a follower moves without a transfer");
        assert!(remove_replica(&m, OperatorKind::Replica, 1, None).is_none());
        let mut no_ids = || None;
        assert!(add_replica(&m, OperatorKind::Replica, 4, &mut no_ids).is_none());
    }
}
