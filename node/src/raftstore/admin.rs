//! Operator requests: membership changes, splits, leader transfer, log compaction, and the
//! inspection answers of `status.rs`.

use tinykv_proto::api::{AdminRequest, AdminResponse, AdminResult, KvError};
use tokio::sync::oneshot;

use crate::reply::Reply;

use super::membership::PeerChange;
use super::status::peer_status;
use super::store::Store;
use super::tick::maybe_compact;

impl Store {
    pub(super) fn on_admin(&mut self, req: AdminRequest, reply: oneshot::Sender<AdminResult>) {
        let result = match req {
            AdminRequest::Cluster => Ok(AdminResponse::Cluster(self.cluster_info())),
            AdminRequest::StoreStatus => Ok(AdminResponse::StoreStatus(self.store_status())),
            AdminRequest::RaftState { region_id } => self
                .peers
                .get(&region_id)
                .map(|p| AdminResponse::RaftState(peer_status(p, self.alive_window())))
                .ok_or(KvError::RegionNotFound { region_id }),
            AdminRequest::RaftLog {
                region_id,
                from,
                to,
            } => self.raft_log(region_id, from, to),
            AdminRequest::RegionChecksum { region_id } => self.region_checksum(region_id),
            AdminRequest::RaftEntries {
                region_id,
                from,
                to,
            } => self.raft_entries(region_id, from, to),
            AdminRequest::TransferLeader {
                region_id,
                to_store,
            } => {
                let election_timeout = self.config.raft.election_timeout();
                match self.leader_peer(region_id) {
                    Err(e) => Err(e),
                    // A transfer while a split applies could leave the new regions without the
                    // leader that campaigns for them: it waits until the split applied.
                    Ok(peer) if peer.epoch_change_in_flight() => Err(KvError::ServerBusy),
                    Ok(peer) => match peer.region().peer_on_store(to_store) {
                        None => Err(KvError::BadRequest(format!(
                            "region {region_id} has no peer on store {to_store}"
                        ))),
                        Some(target) if target.is_learner() => Err(KvError::BadRequest(format!(
                            "the peer of region {region_id} on store {to_store} is a learner; \
                             only a voter can lead (promote it first)"
                        ))),
                        // Proposals wait while a transfer runs: one to a peer that is gone
                        // (a store killed since the driver last heard from it) would stop
                        // the region's writes until it timed out, and the operator would
                        // start it again.
                        Some(target) if !peer.is_alive(target.id, election_timeout) => {
                            Err(KvError::BadRequest(format!(
                                "the peer of region {region_id} on store {to_store} has not been \
                                 heard from within {election_timeout:?}; leadership cannot move \
                                 to it now"
                            )))
                        }
                        Some(target) => {
                            peer.raw.transfer_leader(target.id);
                            Ok(AdminResponse::Done)
                        }
                    },
                }
            }
            AdminRequest::CompactLog { region_id } => {
                match self.leader_peer(region_id) {
                    Err(e) => Err(e),
                    Ok(peer) => {
                        // Answered when the compaction applies (or at once if there is none).
                        maybe_compact(peer, None, Some(Reply::Admin(reply)));
                        return;
                    }
                }
            }
            AdminRequest::SnapshotTrigger { region_id } => match self.peers.get(&region_id) {
                None => Err(KvError::RegionNotFound { region_id }),
                Some(peer) => {
                    let applied = peer.raw.store().applied_index();
                    // Asking is what starts a build; the answer is "not yet" until it is done.
                    match tinykv_raft::Storage::snapshot(peer.raw.store(), applied) {
                        Ok(_) | Err(tinykv_raft::StorageError::SnapshotTemporarilyUnavailable) => {
                            Ok(AdminResponse::Done)
                        }
                        Err(e) => Err(KvError::Storage(e.to_string())),
                    }
                }
            },
            AdminRequest::AddLearner {
                region_id,
                store_id,
                peer_id,
                addr,
            } => {
                let change = PeerChange::AddLearner { peer_id, addr };
                return self.change_peer(region_id, store_id, change, reply);
            }
            AdminRequest::PromoteLearner {
                region_id,
                store_id,
            } => {
                return self.change_peer(region_id, store_id, PeerChange::Promote, reply);
            }
            AdminRequest::RemovePeer {
                region_id,
                store_id,
            } => {
                return self.change_peer(region_id, store_id, PeerChange::Remove, reply);
            }
            AdminRequest::AllocIds { count } => return self.alloc_ids(count, reply),
            AdminRequest::SplitRegion {
                region_id,
                epoch,
                split_keys,
                new_regions,
            } => return self.propose_split(region_id, epoch, split_keys, new_regions, reply),
            AdminRequest::PlacementHeartbeat(hb) => self.on_placement_heartbeat(hb),
            AdminRequest::Placement(req) => return self.on_placement_request(req, reply),
            // The admin service answers these itself, off the raft loop.
            AdminRequest::SetFaults(_) | AdminRequest::ClearFaults => {
                Err(KvError::FaultInjection {
                    reason: "fault requests are served by the admin service, not the raft loop"
                        .into(),
                })
            }
        };
        let _ = reply.send(result);
    }

    /// How recently a peer must have been heard from to count as alive: two election timeouts.
    pub(super) fn alive_window(&self) -> std::time::Duration {
        self.config.raft.base_tick_interval.0 * (2 * self.config.raft.election_timeout_ticks as u32)
    }
}
