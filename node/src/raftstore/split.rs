//! Splitting a region on this store: measuring the regions it leads and starting a split of
//! one grown too large (ids from the cluster's allocator, then the split proposal), the
//! leader's checks before it proposes a split, and what the store does once a split applied
//! (create the new regions' peers, index their ranges, let the new leaders campaign at once,
//! hand them the votes that arrived before they existed).

use bytes::Bytes;
use tinykv_client::Client;
use tinykv_proto::api::{AdminRequest, AdminResult, KvError, NewRegionIds};
use tinykv_storage::{PeerStorage, RegionEpoch, StorageError};
use tokio::sync::oneshot;
use tracing::{debug, info, warn};

use super::msg::StoreMsg;
use super::store::Store;
use crate::apply::AppliedSplit;
use crate::cmd::{CmdBody, RaftCmd};
use crate::peer::Peer;
use crate::reply::Reply;
use crate::split_check::SplitCheckResult;

impl Store {
    /// Proposes splitting `region_id` at `split_keys` under the ids in `new_regions`, if this
    /// store leads it, its epoch is still `epoch`, and nothing else changes it meanwhile (no
    /// other split or membership change in flight, no snapshot being built or installed).
    /// `reply` is answered with the resulting regions once the split applied.
    pub(super) fn propose_split(
        &mut self,
        region_id: u64,
        epoch: RegionEpoch,
        split_keys: Vec<Bytes>,
        new_regions: Vec<NewRegionIds>,
        reply: oneshot::Sender<AdminResult>,
    ) {
        let peer = match self.leader_peer(region_id) {
            Ok(peer) => peer,
            Err(e) => {
                let _ = reply.send(Err(e));
                return;
            }
        };
        let region = peer.region().clone();
        if region.epoch != epoch {
            let _ = reply.send(Err(KvError::EpochNotMatch {
                regions: vec![region],
            }));
            return;
        }
        if let Err(reason) = crate::split::split_region(&region, &split_keys, &new_regions) {
            let _ = reply.send(Err(KvError::BadRequest(reason)));
            return;
        }
        let storage = peer.raw.store();
        if peer.epoch_change_in_flight()
            || storage.is_generating_snapshot()
            || storage.is_applying_snapshot()
        {
            let _ = reply.send(Err(KvError::ServerBusy));
            return;
        }
        let cmd = RaftCmd {
            region_id,
            epoch,
            body: CmdBody::Split {
                split_keys,
                new_regions,
            },
        };
        if let Some(index) = peer.propose_cmd(cmd, Reply::Admin(reply)) {
            peer.epoch_change_index = index;
            // Followers create the new regions' peers when they apply the split: they must
            // learn its commit at once for the new leaders' campaigns to find voters.
            peer.raw.broadcast_commit_of(index);
        }
    }

    /// After a split applied: the split region's new range, and a peer for every new region
    /// this apply created. The new peers campaign at once when this store led the split region
    /// (every new peer starts at the same log position, so this one wins unless it is cut off).
    pub(super) fn on_split_applied(
        &mut self,
        split: AppliedSplit,
        was_leader: bool,
    ) -> Result<(), StorageError> {
        self.ranges.insert(&split.derived);
        if let Some(parent) = self.peers.get_mut(&split.derived.id) {
            // Measured before it shrank: measured again at the next interval.
            parent.approximate = None;
        }
        for region in split.new.iter().filter(|r| split.created.contains(&r.id)) {
            let Some(meta) = region.peer_on_store(self.store_id) else {
                continue;
            };
            let storage = PeerStorage::open(self.engines.clone(), self.workers.clone(), region.id)?;
            let mut peer = match Peer::new(
                meta,
                storage,
                self.raft_config.clone(),
                self.metrics.proposals.clone(),
            ) {
                Ok(p) => p,
                Err(e) => {
                    warn!(region = region.id, error = %e, "cannot create the peer of a new region");
                    continue;
                }
            };
            if was_leader && let Err(e) = peer.raw.campaign() {
                debug!(region = region.id, error = %e, "new region did not campaign");
            }
            info!(
                region = region.id,
                peer = meta.id,
                "peer of a new region created by a split"
            );
            self.ranges.insert(region);
            self.peers.insert(region.id, peer);
            self.active.insert(region.id);
            for (from_store, msg) in self.pending_votes.take(region.id) {
                self.on_raft_message(from_store, msg)?;
            }
        }
        Ok(())
    }
}

impl Store {
    /// Queues split checks: every region that grew by a step, and at each interval every
    /// region this store leads that was written to since its last check or never measured.
    pub(super) fn schedule_split_checks(&mut self) {
        let due: Vec<u64> = if self.ticks.is_multiple_of(self.splits.every_ticks) {
            self.splits.grown.clear();
            self.peers
                .iter()
                .filter(|(_, p)| p.is_leader() && (p.size_diff > 0 || p.approximate.is_none()))
                .map(|(id, _)| *id)
                .collect()
        } else {
            std::mem::take(&mut self.splits.grown)
        };
        for region_id in due {
            let Some(peer) = self.peers.get_mut(&region_id) else {
                continue;
            };
            if self.splits.checking.contains(&region_id)
                || !peer.is_leader()
                || !peer.raw.store().is_initialized()
            {
                continue;
            }
            if !self.splits.checker.schedule(peer.region().clone()) {
                break;
            }
            self.splits.checking.insert(region_id);
            peer.size_diff = 0;
        }
    }

    /// Records what a check measured and, when the region is over its limits and this store
    /// still leads it unchanged, starts splitting it.
    pub(super) fn on_split_checked(&mut self, result: SplitCheckResult) {
        let region_id = result.region_id;
        self.splits.checking.remove(&region_id);
        let Ok(size) = result.size else {
            return;
        };
        let Some(peer) = self.peers.get_mut(&region_id) else {
            return;
        };
        peer.approximate = Some((size.size, size.keys));
        if size.split_keys.is_empty()
            || !peer.is_leader()
            || peer.region().epoch != result.epoch
            || self.splits.splitting.contains(&region_id)
        {
            return;
        }
        let peers = peer.region().peers.len();
        let split_keys: Vec<Bytes> = size.split_keys.into_iter().map(Bytes::from).collect();
        info!(
            region = region_id,
            size = size.size,
            keys = size.keys,
            split_keys = split_keys.len(),
            "region is over its size; splitting"
        );
        self.splits.splitting.insert(region_id);
        let tx = self.splits.tx.clone();
        let ids = self.splits.ids.clone();
        let config = self.splits.client_config.clone();
        let epoch = result.epoch;
        self.background.spawn(async move {
            let asked = async {
                let client = ids
                    .get_or_try_init(|| Client::connect(config))
                    .await
                    .map_err(|e| e.to_string())?;
                let count = tinykv_proto::split::ids_needed(split_keys.len(), peers);
                let count = u32::try_from(count).map_err(|e| e.to_string())?;
                let first = client.alloc_ids(count).await.map_err(|e| e.to_string())?;
                let (reply, answer) = oneshot::channel();
                let req = AdminRequest::SplitRegion {
                    region_id,
                    epoch,
                    new_regions: tinykv_proto::split::deal_ids(first, split_keys.len(), peers),
                    split_keys,
                };
                tx.send(StoreMsg::Admin { req, reply })
                    .await
                    .map_err(|_| "the store stopped".to_string())?;
                match answer.await {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(_) => Err("the store stopped".to_string()),
                }
            };
            if let Err(reason) = asked.await {
                warn!(region = region_id, %reason, "automatic split not done");
            }
            let _ = tx.send(StoreMsg::SplitDone { region_id }).await;
        });
    }
}
