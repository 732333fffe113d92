//! Membership changes a region's leader proposes, and the checks that make them safe (etcd's
//! and TiKV's rules): a store joins as a learner under an allocated peer id and is promoted
//! once it has caught up; a leader never removes itself, nor a voter whose removal would leave
//! no live quorum. Also the cluster's id allocator, which region 1's leader serves.

use tinykv_proto::api::{AdminResponse, AdminResult, ConfChangeRefusal, KvError, MAX_ALLOC_IDS};
use tinykv_raft::{ConfChange, ConfChangeType};
use tokio::sync::oneshot;

use super::store::Store;
use crate::cmd::{ChangePeer, CmdBody, RaftCmd};
use crate::peer::Peer;
use crate::reply::Reply;

/// A membership change an operator (or a joining store) asks a region's leader for.
pub(super) enum PeerChange {
    AddLearner { peer_id: u64, addr: String },
    Promote,
    Remove,
}

impl Store {
    /// Proposes `change` of the peer on `store_id` in `region_id`; `reply` is answered once it
    /// applied, or at once when there is nothing to do or the change is refused.
    pub(super) fn change_peer(
        &mut self,
        region_id: u64,
        store_id: u64,
        change: PeerChange,
        reply: oneshot::Sender<AdminResult>,
    ) {
        let alive_window = self.alive_window();
        let max_lag = self.config.raft.learner_max_lag;
        if let Err(e) = self.leader_peer(region_id) {
            let _ = reply.send(Err(e));
            return;
        }
        // Borrowed from `peers` alone: the store's address book is written below.
        let Some(peer) = self.peers.get_mut(&region_id) else {
            return;
        };
        let region = peer.region().clone();
        let existing = region.peer_on_store(store_id);
        let refused = |refusal| Err(KvError::ConfChangeRefused { region_id, refusal });
        let (change_type, target, addr) = match (change, existing) {
            // Done already: the store holds a peer (a retry, or a join that finished).
            (PeerChange::AddLearner { .. }, Some(_)) | (PeerChange::Remove, None) => {
                let _ = reply.send(Ok(AdminResponse::Done));
                return;
            }
            (PeerChange::Promote, Some(p)) if !p.is_learner() => {
                let _ = reply.send(Ok(AdminResponse::Done));
                return;
            }
            (PeerChange::AddLearner { peer_id, addr }, None) => {
                if peer_id == 0 || peer.peer_by_id(peer_id).is_some() {
                    let _ = reply.send(refused(ConfChangeRefusal::StalePeerId { peer_id }));
                    return;
                }
                if let Ok(sa) = addr.parse() {
                    // The new store must be reachable before the change commits: the leader
                    // starts replicating to it as soon as it applies.
                    self.endpoint.set_peer_addr(store_id, sa);
                    self.directory.insert(store_id, addr.clone());
                }
                let learner = tinykv_storage::Peer::learner(peer_id, store_id);
                (ConfChangeType::AddLearnerNode, learner, addr)
            }
            (PeerChange::Promote, None) => {
                let _ = reply.send(refused(ConfChangeRefusal::NoLearner { store_id }));
                return;
            }
            (PeerChange::Promote, Some(p)) => {
                if let Err(refusal) = check_promotion(peer, p, max_lag) {
                    let _ = reply.send(refused(refusal));
                    return;
                }
                let addr = self.directory.get(&store_id).cloned().unwrap_or_default();
                (ConfChangeType::AddNode, p, addr)
            }
            (PeerChange::Remove, Some(p)) => {
                if let Err(refusal) = check_removal(peer, p, alive_window) {
                    let _ = reply.send(refused(refusal));
                    return;
                }
                let addr = self.directory.get(&store_id).cloned().unwrap_or_default();
                (ConfChangeType::RemoveNode, p, addr)
            }
        };
        if peer.epoch_change_in_flight() {
            // A split (or another change) of this region has not applied yet: its outcome
            // decides the epoch this change must be checked against.
            let _ = reply.send(Err(KvError::ServerBusy));
            return;
        }
        let context = ChangePeer {
            peer_id: target.id,
            store_id,
            addr,
        }
        .encode();
        let cc = ConfChange {
            change_type,
            node_id: target.id,
            context,
        };
        peer.propose_conf_change(cc, Reply::Admin(reply));
    }

    /// Proposes an allocation of `count` ids to region 1, which keeps the cluster's allocator;
    /// answered with the ids once the allocation applied.
    pub(super) fn alloc_ids(&mut self, count: u32, reply: oneshot::Sender<AdminResult>) {
        let region_id = tinykv_storage::CLUSTER_REGION_ID;
        if count == 0 || count > MAX_ALLOC_IDS {
            let _ = reply.send(Err(KvError::BadRequest(format!(
                "ids are allocated 1 to {MAX_ALLOC_IDS} at a time, not {count}"
            ))));
            return;
        }
        match self.leader_peer(region_id) {
            Err(e) => {
                let _ = reply.send(Err(e));
            }
            Ok(peer) => {
                let cmd = RaftCmd {
                    region_id,
                    epoch: peer.region().epoch,
                    body: CmdBody::AllocIds { count },
                };
                peer.propose_cmd(cmd, Reply::Admin(reply));
            }
        }
    }
}

/// Whether the leader `peer` may propose removing `target`: never itself (it would drop what
/// it serves when it applies the change, and a two-voter region could wait forever for its
/// vote), and only while the voters that remain have a live quorum (etcd's strict
/// reconfiguration check).
fn check_removal(
    peer: &Peer,
    target: tinykv_storage::Peer,
    window: std::time::Duration,
) -> Result<(), ConfChangeRefusal> {
    if target.id == peer.meta.id {
        return Err(ConfChangeRefusal::RemovesLeader {
            store_id: target.store_id,
        });
    }
    let status = peer.raw.status();
    let remaining: Vec<u64> = status
        .conf_state
        .voters
        .iter()
        .copied()
        .filter(|id| *id != target.id)
        .collect();
    let live = remaining
        .iter()
        .filter(|id| peer.is_alive(**id, window))
        .count();
    let quorum = remaining.len() / 2 + 1;
    if live < quorum {
        return Err(ConfChangeRefusal::LosesQuorum {
            store_id: target.store_id,
            voters: remaining.len(),
            live,
            quorum,
        });
    }
    Ok(())
}

/// Whether the leader `peer` may promote its learner `target`: only once the learner's log is
/// within `max_lag` entries of the leader's, so that it can acknowledge appends as soon as it
/// counts toward the quorum (etcd's "learner not ready" check).
fn check_promotion(
    peer: &Peer,
    target: tinykv_storage::Peer,
    max_lag: u64,
) -> Result<(), ConfChangeRefusal> {
    let status = peer.raw.status();
    let matched = status
        .progress
        .iter()
        .find(|(id, _)| *id == target.id)
        .map_or(0, |(_, p)| p.matched);
    if matched.saturating_add(max_lag) < status.last_index || matched == 0 {
        return Err(ConfChangeRefusal::LearnerBehind {
            store_id: target.store_id,
            matched,
            last_index: status.last_index,
            max_lag,
        });
    }
    Ok(())
}
