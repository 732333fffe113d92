//! `Store`: every region peer of this node, and the loop that drives them. The loop takes a
//! batch of messages, ticks and requests from its channel, hands each to its handler, then runs
//! one ready round over the regions that had work (`ready.rs`).

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use tinykv_proto::api::{KvError, StoreAddr};
use tinykv_raft::{Config as RaftConfig, SnapshotStatus};
use tinykv_storage::{Engines, PeerState, PeerStorage, StorageError, StoreAddress, WorkerHandles};
use tinykv_transport::{Endpoint, Received};
use tokio::sync::mpsc;
use tracing::{error, info, warn};

use crate::config::NodeConfig;
use crate::message::RaftMessage;
use crate::metrics::Metrics;
use crate::peer::Peer;
use crate::read_views::ReadViews;

use super::auto_split::AutoSplit;
use super::background::Background;
use super::disk_space::{self, DiskSpaceGuard, StoreFailure};
use super::heartbeat::PlacementReporter;
use super::msg::StoreMsg;
use super::outbox::Outbox;
use super::pending_votes::PendingVotes;
use super::raft_config::raft_config;
use super::ranges::RegionRanges;
use super::unreachable::StoreBackoff;
use crate::placement_host::PlacementHost;

/// The most messages the loop takes before it processes readies.
pub(super) const MAX_BATCH: usize = 4096;

pub(crate) struct Store {
    pub(super) store_id: u64,
    pub(super) cluster_id: u64,
    pub(super) addr: SocketAddr,
    pub(super) config: Arc<NodeConfig>,
    pub(super) raft_config: RaftConfig,
    pub(super) engines: Engines,
    pub(super) workers: WorkerHandles,
    pub(super) endpoint: Arc<Endpoint<RaftMessage>>,
    pub(super) runtime: tokio::runtime::Handle,
    /// What the handlers started on the runtime and wait to hear from.
    pub(super) background: Background,
    pub(super) peers: BTreeMap<u64, Peer>,
    pub(super) directory: BTreeMap<u64, String>,
    pub(super) ticks: u64,
    pub(super) gc_every_ticks: u64,
    /// About a second of ticks: how often the region gauges of the metrics are set.
    pub(super) gauge_every_ticks: u64,
    pub(super) started: Instant,
    pub(super) disk: DiskSpaceGuard,
    pub(super) outbox: Outbox,
    pub(super) snapshots_sent: u64,
    pub(super) snapshots_received: u64,
    /// Stores recorded as started (region 1's replicated registry), and those whose record
    /// this store proposed as region 1's leader and has not seen applied yet.
    pub(super) started_stores: std::collections::BTreeSet<u64>,
    pub(super) registering: std::collections::BTreeSet<u64>,
    /// The initialized regions of this store by key range.
    pub(super) ranges: RegionRanges,
    pub(super) pending_votes: PendingVotes,
    pub(super) splits: AutoSplit,
    /// Regions touched since the last ready round (stepped, proposed to, ticked): the round
    /// looks at these only, so a round costs what the regions with work cost, not what every
    /// region of the store would. A tick touches every region that is not hibernating.
    pub(super) active: BTreeSet<u64>,
    /// Regions whose snapshot data the snapshot worker is writing, with the ready that brought
    /// the snapshot. Such a peer is held (no steps, ticks, readies or requests) while the rest of
    /// the store goes on; its ready continues in the first round after the data is in place.
    pub(super) installing: BTreeMap<u64, tinykv_raft::Ready>,
    /// Reports of unreachable stores to their regions, at most one per backoff.
    pub(super) unreachable: StoreBackoff,
    /// Lookups of store addresses this store does not know (`resolve.rs`).
    pub(super) address_lookups: StoreBackoff,
    pub(super) all_active: bool,
    pub(super) metrics: Arc<Metrics>,
    /// Views a backup opened here, which the client service reads off this loop.
    pub(super) views: Arc<ReadViews>,
    /// The placement driver, while this store leads region 1.
    pub(super) placement: Option<PlacementHost>,
    pub(super) reporter: PlacementReporter,
}

pub(crate) struct StoreParts {
    pub store_id: u64,
    pub cluster_id: u64,
    pub addr: SocketAddr,
    pub config: Arc<NodeConfig>,
    pub engines: Engines,
    pub workers: WorkerHandles,
    pub endpoint: Arc<Endpoint<RaftMessage>>,
    pub runtime: tokio::runtime::Handle,
    pub tx: mpsc::Sender<StoreMsg>,
    pub metrics: Arc<Metrics>,
    pub views: Arc<ReadViews>,
}

impl Store {
    /// Loads every region of this store and creates its peer.
    pub(crate) fn open(parts: StoreParts) -> Result<Store, StorageError> {
        let splits = AutoSplit::start(&parts.config, &parts.engines, parts.addr, &parts.tx)?;
        let raft_config = raft_config(&parts.config);
        let tick_ms = parts.config.raft.base_tick_interval.0.as_millis().max(1);
        let ticks_per_gc = parts.config.raft.log_gc_tick_interval.0.as_millis() / tick_ms;
        let disk = DiskSpaceGuard::new(
            parts.config.data_dir.clone(),
            parts.config.storage.reserve_space.0,
            parts.config.raft.base_tick_interval.0,
        );
        let outbox = Outbox {
            endpoint: parts.endpoint.clone(),
            background: Background::new(parts.runtime.clone()),
            tx: parts.tx,
            snap_dir: parts.engines.snap_dir().to_path_buf(),
            snapshot_rate: parts.config.snapshot.max_bytes_per_sec.0,
            queued: BTreeMap::new(),
            metrics: parts.metrics.clone(),
        };
        let mut store = Store {
            store_id: parts.store_id,
            cluster_id: parts.cluster_id,
            addr: parts.addr,
            config: parts.config,
            raft_config,
            engines: parts.engines,
            workers: parts.workers,
            endpoint: parts.endpoint,
            background: Background::new(parts.runtime.clone()),
            runtime: parts.runtime,
            peers: BTreeMap::new(),
            directory: BTreeMap::new(),
            ticks: 0,
            gc_every_ticks: (ticks_per_gc as u64).max(1),
            gauge_every_ticks: (1000 / tick_ms).max(1) as u64,
            started: Instant::now(),
            disk,
            outbox,
            snapshots_sent: 0,
            snapshots_received: 0,
            started_stores: std::collections::BTreeSet::new(),
            registering: std::collections::BTreeSet::new(),
            ranges: RegionRanges::default(),
            pending_votes: PendingVotes::default(),
            splits,
            active: BTreeSet::new(),
            installing: BTreeMap::new(),
            unreachable: StoreBackoff::default(),
            address_lookups: StoreBackoff::default(),
            all_active: true,
            metrics: parts.metrics,
            views: parts.views,
            placement: None,
            reporter: PlacementReporter::default(),
        };
        store.started_stores = store.engines.started_stores()?.into_iter().collect();
        for rec in store.engines.store_addrs()? {
            store.learn_addr(rec.store_id, &rec.addr);
        }
        store.learn_addr(store.store_id, &store.addr.to_string());
        let cleared = store.engines.clear_tombstone_leftovers()?;
        if !cleared.is_empty() {
            info!(regions = ?cleared, "deleted what a crash left of removed peers");
        }
        for state in store.engines.regions()? {
            if state.state == PeerState::Tombstone {
                continue;
            }
            let region_id = state.region.id;
            let storage =
                PeerStorage::open(store.engines.clone(), store.workers.clone(), region_id)?;
            let meta = match state.region.peer_on_store(store.store_id) {
                Some(p) => p,
                None => {
                    // An uninitialized peer (reset after a lost snapshot): its id comes with the
                    // leader's next message.
                    warn!(
                        region = region_id,
                        "region has no peer on this store; waiting for the leader"
                    );
                    continue;
                }
            };
            match Peer::new(
                meta,
                storage,
                store.raft_config.clone(),
                store.metrics.proposals.clone(),
            ) {
                Ok(peer) => {
                    info!(region = region_id, peer = meta.id, "peer loaded");
                    if peer.raw.store().is_initialized() {
                        store.ranges.insert(peer.region());
                    }
                    store.peers.insert(region_id, peer);
                }
                Err(e) => {
                    return Err(StorageError::InvalidRequest(format!(
                        "region {region_id}: {e}"
                    )));
                }
            }
        }
        // A single-voter region elects itself at once instead of waiting a timeout.
        for peer in store.peers.values_mut() {
            if peer.region().peers.len() == 1 && peer.region().peers[0].id == peer.meta.id {
                let _ = peer.raw.campaign();
            }
        }
        Ok(store)
    }

    /// The loop: runs until `Shutdown` or the channel closes, or until storage fails, which it
    /// returns.
    pub(crate) fn run(mut self, mut rx: mpsc::Receiver<StoreMsg>) -> Option<StoreFailure> {
        let mut failure = None;
        // The transport spawns its link tasks on the runtime of whoever sends first.
        let runtime = self.runtime.clone();
        let _guard = runtime.enter();
        while let Some(first) = rx.blocking_recv() {
            let mut handled = self.handle(first);
            let mut taken = 1;
            while matches!(handled, Ok(false)) && taken < MAX_BATCH {
                match rx.try_recv() {
                    Ok(msg) => {
                        handled = self.handle(msg);
                        taken += 1;
                    }
                    Err(_) => break,
                }
            }
            let mut stop = matches!(handled, Ok(true));
            if let Err(e) = handled.and_then(|_| self.process_readies()) {
                // A failed fsync or a poisoned database: nothing acknowledged can be trusted to be
                // durable past this point, so stop serving rather than answer wrongly.
                error!(error = %e, "storage failed; the store stops");
                failure = Some(disk_space::diagnose(
                    &self.config.data_dir,
                    self.config.storage.reserve_space.0,
                    &e,
                ));
                stop = true;
            }
            if stop {
                break;
            }
        }
        let err = match &failure {
            Some(f) => KvError::Storage(format!(
                "the store stopped to keep its data intact ({}); a write in flight may or may not \
                 have taken effect",
                f.cause
            )),
            None => KvError::Storage("the store is shutting down".into()),
        };
        for peer in self.peers.values_mut() {
            peer.fail_all(&err);
        }
        rx.close();
        while let Ok(msg) = rx.try_recv() {
            match msg {
                StoreMsg::Kv { reply, .. } => {
                    let _ = reply.send(Err(err.clone()));
                }
                StoreMsg::Admin { reply, .. } => {
                    let _ = reply.send(Err(err.clone()));
                }
                _ => {}
            }
        }
        info!(store = self.store_id, "raft loop stopped");
        failure
    }

    /// Handles one message: `Ok(true)` to stop, an error when storage failed.
    pub(super) fn handle(&mut self, msg: StoreMsg) -> Result<bool, StorageError> {
        match msg {
            StoreMsg::Raft(batch) => {
                for Received {
                    from_store,
                    message,
                } in batch
                {
                    self.active.insert(message.region_id);
                    self.on_raft_message(from_store, message)?;
                }
            }
            StoreMsg::Snapshot(snap) => {
                self.active.insert(snap.header.region_id);
                self.on_snapshot_received(snap)?
            }
            StoreMsg::SnapshotSent {
                region_id,
                to_peer,
                ok,
            } => {
                self.active.insert(region_id);
                self.snapshots_sent += u64::from(ok);
                if let Some(peer) = self.peers.get_mut(&region_id) {
                    let status = if ok {
                        SnapshotStatus::Finish
                    } else {
                        SnapshotStatus::Failure
                    };
                    peer.raw.report_snapshot(to_peer, status);
                }
            }
            StoreMsg::Unreachable(store_id) => {
                self.look_up_if_unknown(store_id);
                if !self.unreachable.should_act(store_id, Instant::now()) {
                    return Ok(false);
                }
                let mut regions = Vec::new();
                for (region_id, peer) in self.peers.iter_mut() {
                    if let Some(p) = peer.region().peer_on_store(store_id) {
                        peer.raw.report_unreachable(p.id);
                        regions.push(*region_id);
                    }
                }
                // A hibernating region cannot tell a lost store on its own: with no ticks,
                // the followers of a dead leader would never start an election. Once awake,
                // a follower whose leader was there campaigns at once rather than waiting out
                // an election timeout it has in effect already waited.
                for region_id in regions {
                    self.active.insert(region_id);
                    self.wake(region_id, Some(store_id));
                    if let Some(peer) = self.peers.get_mut(&region_id) {
                        peer.on_leader_store_lost(store_id);
                    }
                }
            }
            StoreMsg::Tick => self.on_tick(),
            StoreMsg::Health(reply) => {
                let _ = reply.send(self.region_health());
            }
            StoreMsg::Kv { req, reply } => {
                self.active.insert(req.region_id);
                // A follower asked too: its leader may be gone without a store being lost
                // (paused), and only a ticking follower can elect another.
                self.wake(req.region_id, None);
                self.on_kv(req, reply)
            }
            StoreMsg::Admin { req, reply } => {
                // Rare, and some touch several regions (a split creates peers).
                self.all_active = true;
                self.on_admin(req, reply)
            }
            StoreMsg::Addresses(addrs) => {
                let mut new = Vec::new();
                for a in addrs {
                    if self.directory.get(&a.store_id) != Some(&a.addr)
                        && self.learn_addr(a.store_id, &a.addr)
                    {
                        new.push(StoreAddress {
                            store_id: a.store_id,
                            addr: a.addr,
                        });
                    }
                }
                if let Err(e) = self.engines.put_store_addrs(&new) {
                    warn!(error = %e, "cannot record store addresses");
                }
            }
            StoreMsg::SplitChecked(result) => self.on_split_checked(result),
            StoreMsg::SplitDone { region_id } => self.splits.done(region_id),
            StoreMsg::PlacementAnswered { answer, sent } => {
                self.all_active = true;
                self.on_placement_answer(answer, sent)
            }
            StoreMsg::PlacementIds(ids) => self.on_placement_ids(ids),
            StoreMsg::Shutdown => return Ok(true),
        }
        Ok(false)
    }

    /// Records where a store is; false when the address does not parse.
    pub(super) fn learn_addr(&mut self, store_id: u64, addr: &str) -> bool {
        match addr.parse::<SocketAddr>() {
            Ok(sa) => {
                if store_id != self.store_id {
                    self.endpoint.set_peer_addr(store_id, sa);
                }
                self.directory.insert(store_id, addr.to_string());
                true
            }
            Err(_) => {
                warn!(
                    store = store_id,
                    addr, "ignoring an unparsable store address"
                );
                false
            }
        }
    }

    pub(super) fn not_leader(&self, region_id: u64) -> KvError {
        let leader = self
            .peers
            .get(&region_id)
            .and_then(Peer::leader_store)
            .map(|store_id| StoreAddr {
                store_id,
                addr: self.directory.get(&store_id).cloned().unwrap_or_default(),
            });
        KvError::NotLeader { region_id, leader }
    }

    /// This store's peer of `region_id` when it leads the region; otherwise the error that
    /// sends the caller on (`RegionNotFound`, or `NotLeader` naming the leader when known).
    pub(super) fn leader_peer(&mut self, region_id: u64) -> Result<&mut Peer, KvError> {
        match self.peers.get(&region_id) {
            None => return Err(KvError::RegionNotFound { region_id }),
            Some(peer) if !peer.is_leader() => return Err(self.not_leader(region_id)),
            Some(_) => {}
        }
        self.peers
            .get_mut(&region_id)
            .ok_or(KvError::RegionNotFound { region_id })
    }
}
