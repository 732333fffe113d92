//! Splitting a region on this store: measuring the regions it leads and starting a split of
//! one grown too large (ids from the cluster's allocator, then the split proposal), the
//! leader's checks before it proposes a split, and what the store does once a split applied
//! (create the new regions' peers, index their ranges, let the new leaders campaign at once,
//! hand them the votes that arrived before they existed).

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;

use bytes::Bytes;
use tinykv_raft::MessageType;
use tinykv_storage::{PeerStorage, RegionEpoch, SplitLimits, StorageError};
use tinykv_transport::TlsFiles;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};

use super::{Store, StoreMsg, StoreParts};
use crate::api::{AdminRequest, AdminResult, KvError, NewRegionIds};
use crate::client::{Client, ClientConfig};
use crate::cmd::{CmdBody, RaftCmd};
use crate::message::RaftMessage;
use crate::peer::{AppliedSplit, Peer, Reply};
use crate::split_check::{SplitCheckResult, SplitChecker};

/// The most vote messages kept for regions a split has not created on this store yet.
const MAX_PENDING_VOTES: usize = 256;

/// Vote requests of new regions that arrived before the split that creates them applied here
/// (TiKV's pending messages): handed to the new peer as soon as it exists, so the new region
/// elects without waiting out an election timeout.
#[derive(Debug, Default)]
pub(crate) struct PendingVotes {
    votes: VecDeque<(u64, RaftMessage)>,
}

impl PendingVotes {
    /// Keeps `msg` if it asks for a vote; the oldest is dropped when full.
    pub fn keep(&mut self, from_store: u64, msg: &RaftMessage) {
        if !matches!(
            msg.message.msg_type,
            MessageType::RequestVote | MessageType::RequestPreVote
        ) {
            return;
        }
        if self.votes.len() >= MAX_PENDING_VOTES {
            self.votes.pop_front();
        }
        self.votes.push_back((from_store, msg.clone()));
    }

    /// Takes the votes kept for `region_id`.
    pub fn take(&mut self, region_id: u64) -> Vec<(u64, RaftMessage)> {
        let mut mine = Vec::new();
        self.votes.retain(|(from, m)| {
            let is_mine = m.region_id == region_id;
            if is_mine {
                mine.push((*from, m.clone()));
            }
            !is_mine
        });
        mine
    }
}

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
        let not_leader = self.not_leader(region_id);
        let Some(peer) = self.peers.get_mut(&region_id) else {
            let _ = reply.send(Err(KvError::RegionNotFound { region_id }));
            return;
        };
        if !peer.is_leader() {
            let _ = reply.send(Err(not_leader));
            return;
        }
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
            let mut peer = match Peer::new(meta, storage, self.raft_config.clone()) {
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

/// What a store needs to split its regions on its own: the split-check worker, which regions
/// are being measured or split, and a client for the cluster's id allocator.
pub(crate) struct AutoSplit {
    checker: SplitChecker,
    /// Regions being measured, and regions whose split is being asked for (neither is started
    /// twice at once).
    checking: HashSet<u64>,
    splitting: HashSet<u64>,
    /// Regions that grew by `growth_step` bytes since their last check: measured at the next
    /// tick rather than at the next interval.
    grown: Vec<u64>,
    growth_step: u64,
    every_ticks: u64,
    ids: Arc<tokio::sync::OnceCell<Client>>,
    client_config: ClientConfig,
    tx: mpsc::Sender<StoreMsg>,
}

/// The most split keys one automatic split proposes; a region still too large is cut again
/// at its next check.
const MAX_AUTO_SPLIT_KEYS: usize = 10;

impl AutoSplit {
    pub fn start(parts: &StoreParts) -> Result<AutoSplit, StorageError> {
        let c = &parts.config.region;
        let limits = SplitLimits {
            split_size: c.split_size.0,
            max_size: c.max_size.0,
            split_keys: c.split_keys,
            max_keys: c.max_keys,
            max_split_keys: MAX_AUTO_SPLIT_KEYS,
        };
        let tx = parts.tx.clone();
        let checker = SplitChecker::start(parts.engines.clone(), limits, move |result| {
            tx.blocking_send(StoreMsg::SplitChecked(result)).is_ok()
        })
        .map_err(|source| StorageError::Io {
            path: parts.config.data_dir.clone(),
            source,
        })?;
        let tick = parts.config.raft.base_tick_interval.0.as_millis().max(1);
        let every_ticks = (c.split_check_interval.0.as_millis() / tick).max(1) as u64;
        let tls = &parts.config.tls;
        Ok(AutoSplit {
            checker,
            checking: HashSet::new(),
            splitting: HashSet::new(),
            grown: Vec::new(),
            growth_step: (c.split_size.0 / 16).max(1),
            every_ticks,
            ids: Arc::new(tokio::sync::OnceCell::new()),
            client_config: ClientConfig {
                endpoints: vec![parts.addr],
                tls: TlsFiles {
                    ca: tls.ca.clone(),
                    cert: tls.cert.clone(),
                    key: tls.key.clone(),
                },
                timeout: parts.config.request_timeout.0,
            },
            tx: parts.tx.clone(),
        })
    }

    /// After `peer` applied entries: a leader whose region grew by a step is measured soon.
    pub fn note_growth(&mut self, region_id: u64, peer: Option<&Peer>) {
        if let Some(peer) = peer
            && peer.is_leader()
            && peer.size_diff >= self.growth_step
            && !self.checking.contains(&region_id)
            && !self.grown.contains(&region_id)
        {
            self.grown.push(region_id);
        }
    }

    pub fn done(&mut self, region_id: u64) {
        self.splitting.remove(&region_id);
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
        self.runtime.spawn(async move {
            let asked = async {
                let client = ids
                    .get_or_try_init(|| Client::connect(config))
                    .await
                    .map_err(|e| e.to_string())?;
                let count = crate::split::ids_needed(split_keys.len(), peers);
                let count = u32::try_from(count).map_err(|e| e.to_string())?;
                let first = client.alloc_ids(count).await.map_err(|e| e.to_string())?;
                let (reply, answer) = oneshot::channel();
                let req = AdminRequest::SplitRegion {
                    region_id,
                    epoch,
                    new_regions: crate::split::deal_ids(first, split_keys.len(), peers),
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
