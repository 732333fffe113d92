//! `Store`: every region peer of this node and the raft loop that drives them. The loop runs on
//! its own thread: it takes a batch of messages, ticks and requests, steps the peers, gathers
//! every peer's `Ready`, persists them all in one batch with one fsync (group commit), sends the
//! messages, applies committed entries in one apply batch, and answers proposals and reads.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use tinykv_raft::{
    ConfChange, Config as RaftConfig, MessageType, Ready, SnapshotStatus, StateRole,
};
use tinykv_storage::{
    Engines, PeerState, PeerStorage, SnapshotApplyStatus, SnapshotDescriptor, StorageError,
    StoreAddress, WorkerHandles,
};
use tinykv_transport::{Endpoint, Received, ReceivedSnapshot, SnapshotMeta};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, error, info, warn};

use crate::api::{
    AdminRequest, AdminResponse, AdminResult, ClusterInfo, KvError, KvOp, KvRequest, KvResult,
    LogEntryInfo, PeerStatus, RegionInfo, SnapshotTransfer, StoreAddr, StoreStatus,
};
use crate::cmd::{ChangePeer, CmdBody, RaftCmd, WriteOp};
use crate::config::NodeConfig;
use crate::log_gc::{GcLimits, LogView, compact_index};
use crate::message::RaftMessage;
use crate::peer::{Peer, PendingRead, Reply, is_linearizable_read};
use crate::split_check::SplitCheckResult;

mod disk_space;
mod membership;
mod ranges;
mod split;
use disk_space::DiskSpaceGuard;
pub(crate) use disk_space::{StoreFailure, check_reserve_fits};
pub(crate) use membership::MAX_ALLOC_IDS;
use membership::PeerChange;
use ranges::RegionRanges;
use split::PendingVotes;

/// The most messages the loop takes before it processes readies.
const MAX_BATCH: usize = 4096;
/// The most log entries one `raft log` answer describes.
const MAX_LOG_ENTRIES: u64 = 1000;
/// About the most entry bytes one `RaftEntries` answer carries.
const MAX_LOG_BYTES: usize = 4 * 1024 * 1024;
/// The most regions an `EpochNotMatch` or `KeyNotInRegion` answer names.
const MAX_ROUTE_HINTS: usize = 32;
/// What the raft loop is asked to do.
#[derive(Debug)]
pub(crate) enum StoreMsg {
    Raft(Box<Received<RaftMessage>>),
    Snapshot(ReceivedSnapshot),
    SnapshotSent {
        region_id: u64,
        to_peer: u64,
        ok: bool,
    },
    Unreachable(u64),
    Tick,
    Kv {
        req: KvRequest,
        reply: oneshot::Sender<KvResult>,
    },
    Admin {
        req: AdminRequest,
        reply: oneshot::Sender<AdminResult>,
    },
    /// Learned store addresses (join, or another store's directory).
    Addresses(Vec<StoreAddr>),
    /// The split-check worker measured a region.
    SplitChecked(SplitCheckResult),
    /// A split this store started on its own has been answered (applied or refused).
    SplitDone {
        region_id: u64,
    },
    Shutdown,
}

pub(crate) struct Store {
    store_id: u64,
    cluster_id: u64,
    addr: SocketAddr,
    config: Arc<NodeConfig>,
    raft_config: RaftConfig,
    engines: Engines,
    workers: WorkerHandles,
    endpoint: Arc<Endpoint<RaftMessage>>,
    runtime: tokio::runtime::Handle,
    peers: BTreeMap<u64, Peer>,
    directory: BTreeMap<u64, String>,
    ticks: u64,
    gc_every_ticks: u64,
    started: Instant,
    disk: DiskSpaceGuard,
    outbox: Outbox,
    snapshots_sent: u64,
    snapshots_received: u64,
    /// Stores recorded as started (region 1's replicated registry), and those whose record
    /// this store proposed as region 1's leader and has not seen applied yet.
    started_stores: std::collections::BTreeSet<u64>,
    registering: std::collections::BTreeSet<u64>,
    /// The initialized regions of this store by key range.
    ranges: RegionRanges,
    pending_votes: PendingVotes,
    splits: split::AutoSplit,
    /// Regions touched since the last ready round (stepped, proposed to, ticked): the round
    /// looks at these only, so a round costs what the regions with work cost, not what every
    /// region of the store would. A tick touches every region.
    active: BTreeSet<u64>,
    all_active: bool,
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
}

pub(crate) fn raft_config(config: &NodeConfig) -> RaftConfig {
    RaftConfig {
        election_tick: config.raft.election_timeout_ticks,
        heartbeat_tick: config.raft.heartbeat_ticks,
        max_size_per_msg: config.raft.max_size_per_msg.0,
        max_inflight_msgs: config.raft.max_inflight_msgs,
        check_quorum: config.raft.check_quorum,
        pre_vote: config.raft.pre_vote,
        // Every snapshot send ends in a report within `snapshot_send_timeout`, which grows with
        // the snapshot: Raft's own timeout is only a backstop, and one shorter than a large
        // snapshot's transfer would make the leader build and send it again meanwhile.
        snapshot_pending_timeout_ticks: ticks_in(config, SNAPSHOT_PENDING_BACKSTOP),
        ..RaftConfig::default()
    }
}

/// How many ticks of `config` make `d` (at least one).
fn ticks_in(config: &NodeConfig, d: std::time::Duration) -> usize {
    let tick = config.raft.base_tick_interval.0.as_millis().max(1);
    usize::try_from(d.as_millis() / tick)
        .unwrap_or(usize::MAX)
        .max(1)
}

/// Raft's backstop for a snapshot send that never reported.
const SNAPSHOT_PENDING_BACKSTOP: std::time::Duration = std::time::Duration::from_secs(3600);
/// The slowest rate a snapshot send is given time for when the rate is not limited lower.
const SNAPSHOT_FLOOR_RATE: u64 = 10 * 1024 * 1024;

/// How long sending a snapshot of `size` bytes may take at `rate` bytes a second (0:
/// unlimited): twice what its bytes need at that rate or at a 10 MiB/s floor, whichever is
/// slower, plus a minute for connecting and the receiver's checks.
fn snapshot_send_timeout(size: u64, rate: u64) -> std::time::Duration {
    let rate = if rate == 0 {
        SNAPSHOT_FLOOR_RATE
    } else {
        rate.min(SNAPSHOT_FLOOR_RATE)
    };
    std::time::Duration::from_secs(60 + 2 * size.div_ceil(rate))
}

impl Store {
    /// Loads every region of this store and creates its peer.
    pub fn open(parts: StoreParts) -> Result<Store, StorageError> {
        let splits = split::AutoSplit::start(&parts)?;
        let raft_config = raft_config(&parts.config);
        let ticks_per_gc = parts.config.raft.log_gc_tick_interval.0.as_millis()
            / parts.config.raft.base_tick_interval.0.as_millis().max(1);
        let disk = DiskSpaceGuard::new(
            parts.config.data_dir.clone(),
            parts.config.storage.reserve_space.0,
            parts.config.raft.base_tick_interval.0,
        );
        let outbox = Outbox {
            endpoint: parts.endpoint.clone(),
            runtime: parts.runtime.clone(),
            tx: parts.tx,
            snap_dir: parts.engines.snap_dir().to_path_buf(),
            snapshot_rate: parts.config.snapshot.max_bytes_per_sec.0,
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
            runtime: parts.runtime,
            peers: BTreeMap::new(),
            directory: BTreeMap::new(),
            ticks: 0,
            gc_every_ticks: (ticks_per_gc as u64).max(1),
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
            all_active: true,
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
            match Peer::new(meta, storage, store.raft_config.clone()) {
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
    pub fn run(mut self, mut rx: mpsc::Receiver<StoreMsg>) -> Option<StoreFailure> {
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
    fn handle(&mut self, msg: StoreMsg) -> Result<bool, StorageError> {
        match msg {
            StoreMsg::Raft(received) => {
                let Received {
                    from_store,
                    message,
                } = *received;
                self.active.insert(message.region_id);
                self.on_raft_message(from_store, message)?;
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
                for (region_id, peer) in self.peers.iter_mut() {
                    if let Some(p) = peer.region().peer_on_store(store_id) {
                        peer.raw.report_unreachable(p.id);
                        self.active.insert(*region_id);
                    }
                }
            }
            StoreMsg::Tick => {
                self.all_active = true;
                self.on_tick()
            }
            StoreMsg::Kv { req, reply } => {
                self.active.insert(req.region_id);
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
            StoreMsg::Shutdown => return Ok(true),
        }
        Ok(false)
    }

    /// Records where a store is; false when the address does not parse.
    fn learn_addr(&mut self, store_id: u64, addr: &str) -> bool {
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

    /// Steps a peer's message, creating or replacing this store's peer when the message says
    /// so. Only a failed write is an error; a bad message is logged and dropped.
    fn on_raft_message(&mut self, from_store: u64, msg: RaftMessage) -> Result<(), StorageError> {
        if msg.from_peer.store_id != from_store {
            warn!(
                from_store,
                claimed = msg.from_peer.store_id,
                "dropping a raft message whose sender is not its store"
            );
            return Ok(());
        }
        if msg.to_peer.store_id != self.store_id {
            warn!(
                to_store = msg.to_peer.store_id,
                "dropping a raft message for another store"
            );
            return Ok(());
        }
        let region_id = msg.region_id;
        if self.is_replaced_by(region_id, &msg) {
            info!(
                region = region_id,
                new_peer = msg.to_peer.id,
                "this store's peer was removed and added back; the old peer makes way"
            );
            self.destroy_peer(region_id)?;
        }
        if !self.peers.contains_key(&region_id) && !self.maybe_create_peer(&msg) {
            if msg.message.msg_type == MessageType::Snapshot
                && let Some(snap) = &msg.message.snapshot
            {
                // No peer takes it: its file would stay until the disk fills.
                remove_received(&tinykv_storage::snapshot::received_path(
                    self.engines.snap_dir(),
                    region_id,
                    snap.metadata.term,
                    snap.metadata.index,
                ));
            }
            return Ok(());
        }
        let Some(peer) = self.peers.get_mut(&region_id) else {
            return Ok(());
        };
        if msg.to_peer.id != peer.meta.id {
            debug!(
                region = region_id,
                to = msg.to_peer.id,
                me = peer.meta.id,
                "dropping a message for another peer id"
            );
            return Ok(());
        }
        let snapshot = (msg.message.msg_type == MessageType::Snapshot).then(|| {
            let m = msg.message.snapshot.as_ref().map(|s| s.metadata.clone());
            m.unwrap_or_default()
        });
        let received = snapshot.as_ref().map(|m| {
            tinykv_storage::snapshot::received_path(
                self.engines.snap_dir(),
                region_id,
                m.term,
                m.index,
            )
        });
        let checked = received.as_ref().map(|path| {
            check_snapshot(&msg, path).and_then(|region| {
                let overlapping: Vec<u64> = self
                    .ranges
                    .overlapping(&region.start_key, &region.end_key)
                    .into_iter()
                    .filter(|id| *id != region_id)
                    .collect();
                if overlapping.is_empty() {
                    Ok(())
                } else {
                    // Installing it would give two regions of this store one key. The local
                    // one is behind a split (or merge) the snapshot's region went through;
                    // once it catches up the overlap is gone and the leader's next send takes.
                    Err(format!(
                        "its range overlaps regions {overlapping:?} of this store"
                    ))
                }
            })
        });
        if let (Some(path), Some(Err(reason))) = (&received, checked) {
            // Raft would accept it and the store could not install it: refuse it here. The
            // leader sends another when its pending-snapshot timeout passes.
            warn!(region = region_id, from = msg.from_peer.store_id, %reason, "refusing a snapshot");
            remove_received(path);
            return Ok(());
        }
        peer.remember_peer(msg.from_peer);
        peer.heard_from(msg.from_peer.id);
        if let Err(e) = peer.raw.step(msg.message) {
            debug!(region = region_id, error = %e, "message not stepped");
        }
        if let (Some(meta), Some(path)) = (snapshot, received)
            && peer.raw.pending_snapshot_index() != Some(meta.index)
        {
            // Raft did not take it (stale, or not newer than what this peer has): its file
            // would otherwise stay until the disk fills.
            debug!(
                region = region_id,
                index = meta.index,
                "snapshot not taken; file removed"
            );
            remove_received(&path);
        }
        Ok(())
    }

    /// Drops this store's peer of `region_id` and everything it kept: it was removed from the
    /// region (or replaced by a newer peer of this store). Only a failed write is an error.
    fn destroy_peer(&mut self, region_id: u64) -> Result<(), StorageError> {
        let Some(mut peer) = self.peers.remove(&region_id) else {
            return Ok(());
        };
        self.ranges.remove(region_id);
        peer.fail_removed();
        if !peer.raw.store().is_initialized() {
            // Never filled: no range and no data of its own, and its term and vote are kept
            // for the peer that replaces it.
            return Ok(());
        }
        self.engines.destroy_peer_data(peer.region())
    }

    /// Whether this store's peer of `region_id` is an older incarnation than the one `msg`
    /// is addressed to: the store was removed and added back while the peer did not learn
    /// of it. It must make way for the new peer.
    fn is_replaced_by(&self, region_id: u64, msg: &RaftMessage) -> bool {
        self.peers.get(&region_id).is_some_and(|peer| {
            msg.to_peer.id > peer.meta.id && msg.epoch.conf_ver > peer.region().epoch.conf_ver
        })
    }

    /// Creates an uninitialized peer for a region this store does not have yet, when a leader
    /// (or a candidate) reaches out to it.
    fn maybe_create_peer(&mut self, msg: &RaftMessage) -> bool {
        let kind = msg.message.msg_type;
        let initial = matches!(
            kind,
            MessageType::Append
                | MessageType::Heartbeat
                | MessageType::Snapshot
                | MessageType::RequestVote
                | MessageType::RequestPreVote
        );
        if !initial || msg.to_peer.id == 0 {
            return false;
        }
        let overlapping: Vec<u64> = self
            .ranges
            .overlapping(&msg.start_key, &msg.end_key)
            .into_iter()
            .filter(|id| *id != msg.region_id)
            .collect();
        if !overlapping.is_empty() {
            // A region of this store still holds part of the range: most likely the region
            // this one was split from, whose split has not applied here yet. Applying it
            // creates this peer; a peer created now could vote and then be overwritten.
            debug!(
                region = msg.region_id,
                overlapping = ?overlapping,
                "not creating a peer whose range a local region still holds"
            );
            self.pending_votes.keep(msg.from_peer.store_id, msg);
            return false;
        }
        match self.engines.region_state(msg.region_id) {
            Ok(Some(state))
                if state.state == PeerState::Tombstone
                    && !tombstone_yields(&state.region, self.store_id, msg) =>
            {
                debug!(
                    region = msg.region_id,
                    to = msg.to_peer.id,
                    "ignoring a message of a region this store left"
                );
                return false;
            }
            Ok(Some(state)) if state.state == PeerState::Tombstone => {
                info!(
                    region = msg.region_id,
                    peer = msg.to_peer.id,
                    "this store was added back to a region it had left"
                );
            }
            Ok(_) => {}
            Err(e) => {
                warn!(region = msg.region_id, error = %e, "cannot read region state");
                return false;
            }
        }
        let storage = match PeerStorage::new_uninitialized(
            self.engines.clone(),
            self.workers.clone(),
            msg.region_id,
        ) {
            Ok(s) => s,
            Err(e) => {
                warn!(region = msg.region_id, error = %e, "cannot create a peer");
                return false;
            }
        };
        match Peer::new(msg.to_peer, storage, self.raft_config.clone()) {
            Ok(mut peer) => {
                peer.remember_peer(msg.from_peer);
                info!(
                    region = msg.region_id,
                    peer = msg.to_peer.id,
                    "peer created for a message from the leader"
                );
                self.peers.insert(msg.region_id, peer);
                true
            }
            Err(e) => {
                warn!(region = msg.region_id, error = %e, "cannot create a peer");
                false
            }
        }
    }

    fn on_snapshot_received(&mut self, snap: ReceivedSnapshot) -> Result<(), StorageError> {
        let msg: RaftMessage = match crate::api::decode("snapshot context", &snap.header.context) {
            Ok(m) => m,
            Err(e) => {
                warn!(from = snap.from_store, error = %e, "dropping a snapshot with a bad context");
                let _ = std::fs::remove_file(&snap.path);
                return Ok(());
            }
        };
        let h = &snap.header;
        let target = tinykv_storage::snapshot::received_path(
            self.engines.snap_dir(),
            h.region_id,
            h.term,
            h.index,
        );
        if let Err(e) = std::fs::rename(&snap.path, &target) {
            warn!(error = %e, path = %snap.path.display(), "cannot move a received snapshot into place");
            let _ = std::fs::remove_file(&snap.path);
            return Ok(());
        }
        info!(
            region = h.region_id,
            index = h.index,
            term = h.term,
            bytes = h.size,
            "snapshot received"
        );
        self.snapshots_received += 1;
        self.on_raft_message(snap.from_store, msg)
    }

    fn on_tick(&mut self) {
        self.ticks += 1;
        self.disk.on_tick(self.ticks);
        let gc = self.ticks.is_multiple_of(self.gc_every_ticks);
        let r = &self.config.raft;
        let limits = GcLimits {
            threshold: r.log_gc_threshold,
            count_limit: r.log_gc_count_limit,
            size_limit: r.log_gc_size_limit.0,
        };
        for peer in self.peers.values_mut() {
            peer.raw.tick();
            if gc && peer.is_leader() {
                maybe_compact(peer, Some(limits), None);
            }
        }
        self.schedule_split_checks();
        if gc {
            prune_generated_snapshots(self.engines.snap_dir());
            // A record proposed but lost (leadership moved) is proposed again.
            self.registering.clear();
        }
        self.record_started_stores();
    }

    /// As region 1's leader, records every store it hears from that the registry lacks, so
    /// that a founding store coming back with an empty data dir can be told it lost its data.
    fn record_started_stores(&mut self) {
        let window = self.alive_window();
        let Some(peer) = self.peers.get_mut(&crate::FIRST_REGION_ID) else {
            return;
        };
        if !peer.is_leader() {
            return;
        }
        let new: Vec<u64> = peer
            .region()
            .peers
            .iter()
            .filter(|p| peer.is_alive(p.id, window))
            .map(|p| p.store_id)
            .filter(|s| !self.started_stores.contains(s) && !self.registering.contains(s))
            .collect();
        for store_id in new {
            let cmd = RaftCmd {
                region_id: peer.region_id(),
                epoch: peer.region().epoch,
                body: CmdBody::StoreStarted { store_id },
            };
            match peer.raw.propose(cmd.encode()) {
                Ok(_) => {
                    self.registering.insert(store_id);
                }
                Err(e) => debug!(store = store_id, error = %e, "store record not proposed"),
            }
        }
    }

    fn on_kv(&mut self, req: KvRequest, reply: oneshot::Sender<KvResult>) {
        if let Err(e) = self.check_route(&req) {
            let _ = reply.send(Err(e));
            return;
        }
        let Some(peer) = self.peers.get_mut(&req.region_id) else {
            return;
        };
        let stale_read = !req.op.is_write() && !is_linearizable_read(&req.op);
        if stale_read {
            let _ = reply.send(peer.read(&self.engines, &req.op, req.epoch));
            return;
        }
        if !peer.is_leader() {
            let _ = reply.send(Err(self.not_leader(req.region_id)));
            return;
        }
        // Refused before proposing, so the client knows the write did not happen. Entries that
        // free space (CompactLog) and Raft appends from a leader are not client writes.
        if req.op.is_write()
            && let Some(err) = self.disk.refusal(self.store_id)
        {
            let _ = reply.send(Err(err));
            return;
        }
        match req.op {
            KvOp::Put { key, value } => {
                peer.propose_write(vec![WriteOp::Put { key, value }], Reply::Kv(reply))
            }
            KvOp::Delete { key } => {
                peer.propose_write(vec![WriteOp::Delete { key }], Reply::Kv(reply))
            }
            op => peer.reads.push(PendingRead {
                op,
                epoch: req.epoch,
                reply,
            }),
        }
    }

    /// Whether `req` reached the region it was routed to: the region is here and initialized,
    /// its epoch is the one the client saw, and it holds the key. Errors name the regions this
    /// store holds around the key, so the client fixes its cache from the answer.
    fn check_route(&self, req: &KvRequest) -> Result<(), KvError> {
        let region_id = req.region_id;
        let region = match self.peers.get(&region_id) {
            Some(peer) if peer.raw.store().is_initialized() => peer.region(),
            _ => return Err(KvError::RegionNotFound { region_id }),
        };
        let (start, end): (&[u8], Vec<u8>) = match &req.op {
            KvOp::Get { key, .. } | KvOp::Put { key, .. } | KvOp::Delete { key } => {
                let mut end = key.to_vec();
                end.push(0);
                (key, end)
            }
            KvOp::Scan { start, end, .. } => (start, end.to_vec()),
        };
        let around = || self.regions_around(region, start, &end);
        if req.epoch.is_some_and(|e| e.version != region.epoch.version) {
            return Err(KvError::EpochNotMatch { regions: around() });
        }
        if let KvOp::Get { key, .. } | KvOp::Put { key, .. } | KvOp::Delete { key } = &req.op
            && !region.contains(key)
        {
            let mut err = crate::peer::key_not_in_region(key, region);
            if let KvError::KeyNotInRegion { regions, .. } = &mut err {
                *regions = around();
            }
            return Err(err);
        }
        Ok(())
    }

    /// `region` and the initialized regions of this store that share a key with
    /// `[start, end)`, at most `MAX_ROUTE_HINTS` of them.
    fn regions_around(
        &self,
        region: &tinykv_storage::Region,
        start: &[u8],
        end: &[u8],
    ) -> Vec<tinykv_storage::Region> {
        let mut out = vec![region.clone()];
        for id in self.ranges.overlapping(start, end) {
            if out.len() >= MAX_ROUTE_HINTS {
                break;
            }
            if id != region.id
                && let Some(p) = self.peers.get(&id)
            {
                out.push(p.region().clone());
            }
        }
        out
    }

    fn not_leader(&self, region_id: u64) -> KvError {
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

    fn on_admin(&mut self, req: AdminRequest, reply: oneshot::Sender<AdminResult>) {
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
                let not_leader = self.not_leader(region_id);
                match self.peers.get_mut(&region_id) {
                    None => Err(KvError::RegionNotFound { region_id }),
                    Some(peer) if !peer.is_leader() => Err(not_leader),
                    // A transfer while a split applies could leave the new regions without the
                    // leader that campaigns for them: it waits until the split applied.
                    Some(peer) if peer.epoch_change_in_flight() => Err(KvError::ServerBusy),
                    Some(peer) => match peer.region().peer_on_store(to_store) {
                        None => Err(KvError::BadRequest(format!(
                            "region {region_id} has no peer on store {to_store}"
                        ))),
                        Some(target) if target.is_learner() => Err(KvError::BadRequest(format!(
                            "the peer of region {region_id} on store {to_store} is a learner; \
                             only a voter can lead (promote it first)"
                        ))),
                        Some(target) => {
                            peer.raw.transfer_leader(target.id);
                            Ok(AdminResponse::Done)
                        }
                    },
                }
            }
            AdminRequest::CompactLog { region_id } => {
                let not_leader = self.not_leader(region_id);
                match self.peers.get_mut(&region_id) {
                    None => Err(KvError::RegionNotFound { region_id }),
                    Some(peer) if !peer.is_leader() => Err(not_leader),
                    Some(peer) => {
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
    fn alive_window(&self) -> std::time::Duration {
        self.config.raft.base_tick_interval.0 * (2 * self.config.raft.election_timeout_ticks as u32)
    }

    fn cluster_info(&self) -> ClusterInfo {
        ClusterInfo {
            cluster_id: self.cluster_id,
            store_id: self.store_id,
            stores: self
                .directory
                .iter()
                .map(|(id, addr)| StoreAddr {
                    store_id: *id,
                    addr: addr.clone(),
                })
                .collect(),
            regions: self
                .peers
                .values()
                .filter(|p| p.raw.store().is_initialized())
                .map(region_info)
                .collect(),
            started_stores: self.started_stores.iter().copied().collect(),
        }
    }

    fn store_status(&self) -> StoreStatus {
        StoreStatus {
            store_id: self.store_id,
            addr: self.addr.to_string(),
            peers: self
                .peers
                .values()
                .map(|p| peer_status(p, self.alive_window()))
                .collect(),
            leader_of: self
                .peers
                .values()
                .filter(|p| p.is_leader())
                .map(Peer::region_id)
                .collect(),
            disk_bytes: 0,
            uptime_secs: self.started.elapsed().as_secs(),
            snapshots_sent: self.snapshots_sent,
            snapshots_received: self.snapshots_received,
            receiving: self
                .endpoint
                .incoming_snapshots()
                .into_iter()
                .map(|s| SnapshotTransfer {
                    region_id: s.region_id,
                    from_store: s.from_store,
                    bytes: s.received,
                    total: s.total,
                })
                .collect(),
        }
    }

    fn raft_log(&self, region_id: u64, from: u64, to: u64) -> AdminResult {
        let peer = self
            .peers
            .get(&region_id)
            .ok_or(KvError::RegionNotFound { region_id })?;
        let first = peer.raw.store().truncated_state().index + 1;
        let last = peer.raw.store().raft_state().last_index;
        let from = from.max(first);
        let to = if to == 0 { last } else { to.min(last) };
        let to = to.min(from.saturating_add(MAX_LOG_ENTRIES - 1));
        if from > to {
            return Ok(AdminResponse::RaftLog(Vec::new()));
        }
        let entries = self
            .engines
            .log_entries(region_id, from, to + 1)
            .map_err(|e| KvError::Storage(e.to_string()))?;
        Ok(AdminResponse::RaftLog(
            entries.iter().map(describe_entry).collect(),
        ))
    }

    fn raft_entries(&self, region_id: u64, from: u64, to: u64) -> AdminResult {
        let peer = self
            .peers
            .get(&region_id)
            .ok_or(KvError::RegionNotFound { region_id })?;
        // From the first entry still on disk: log GC deletes compacted entries a little after
        // the truncated index moved past them, and they were committed all the same.
        let commit = peer.raw.store().raft_state().hard_state.commit;
        let stored = self
            .engines
            .first_stored_index(region_id)
            .map_err(|e| KvError::Storage(e.to_string()))?;
        let first = stored.unwrap_or(peer.raw.store().truncated_state().index + 1);
        let from = from.max(first);
        let to = if to == 0 { commit } else { to.min(commit) };
        let to = to.min(from.saturating_add(MAX_LOG_ENTRIES - 1));
        if from > to {
            return Ok(AdminResponse::RaftEntries(Vec::new()));
        }
        let mut entries = self
            .engines
            .log_entries(region_id, from, to + 1)
            .map_err(|e| KvError::Storage(e.to_string()))?;
        let mut bytes = 0usize;
        // The first entry always goes, so a caller paging through the log never stalls.
        let keep = entries
            .iter()
            .take_while(|e| {
                bytes += e.data.len();
                bytes <= MAX_LOG_BYTES
            })
            .count()
            .max(1);
        entries.truncate(keep);
        Ok(AdminResponse::RaftEntries(entries))
    }

    fn region_checksum(&self, region_id: u64) -> AdminResult {
        let peer = self
            .peers
            .get(&region_id)
            .ok_or(KvError::RegionNotFound { region_id })?;
        let region = peer.region();
        let view = self.engines.read_view();
        let rows = view
            .scan(&region.start_key, &region.end_key, usize::MAX)
            .map_err(|e| KvError::Storage(e.to_string()))?;
        let mut h = crc32fast::Hasher::new();
        for (k, v) in &rows {
            h.update(&(k.len() as u64).to_be_bytes());
            h.update(k);
            h.update(&(v.len() as u64).to_be_bytes());
            h.update(v);
        }
        Ok(AdminResponse::Checksum {
            applied: peer.raw.store().applied_index(),
            crc32: h.finalize(),
            keys: rows.len() as u64,
        })
    }

    /// Persists every peer's ready in one batch (one fsync), sends, applies, answers.
    fn process_readies(&mut self) -> Result<(), StorageError> {
        let active: Vec<u64> = if std::mem::take(&mut self.all_active) {
            self.active.clear();
            self.peers.keys().copied().collect()
        } else {
            std::mem::take(&mut self.active).into_iter().collect()
        };
        for region_id in &active {
            let Some(peer) = self.peers.get_mut(region_id) else {
                continue;
            };
            let soft = peer.raw.raft().soft_state();
            let term = peer.raw.raft().hard_state().term;
            if let Some(ctx) = peer.reads.start_round(term) {
                // Raft's own role, not the one the last ready reported: a peer that stepped down
                // in this round's steps would forward the round to the new leader.
                if soft.role == StateRole::Leader {
                    peer.raw.read_index(ctx);
                } else {
                    let err = KvError::NotLeader {
                        region_id: peer.region_id(),
                        leader: None,
                    };
                    peer.fail_reads(&err);
                }
            }
        }
        let mut readies: Vec<(u64, Ready)> = Vec::new();
        let mut batch = self.engines.raft_batch();
        let mut must_sync = false;
        for &region_id in &active {
            let Some(peer) = self.peers.get_mut(&region_id) else {
                continue;
            };
            if !peer.raw.has_ready() {
                continue;
            }
            let mut ready = peer.raw.ready();
            if let Some(detail) = ready.committed_entries_unreadable.take() {
                return Err(StorageError::LogUnreadable { region_id, detail });
            }
            must_sync |= ready.must_sync || ready.snapshot.is_some();
            peer.raw.store().save_ready(&mut batch, &ready)?;
            // A leader's appends go out before our fsync, so followers write while we do. Safe
            // because this loop finishes the fsync below before it steps any answer to them.
            let now = std::mem::take(&mut ready.immediate_messages);
            self.outbox.send(peer, now);
            readies.push((region_id, ready));
        }
        if readies.is_empty() {
            return Ok(());
        }
        let mut persisted = if must_sync {
            self.engines.commit(batch)?
        } else {
            self.engines.commit_without_fsync(batch)?
        };

        let mut apply_batch = self.engines.apply_batch();
        let mut outcomes = Vec::new();
        for (region_id, ready) in readies.iter_mut() {
            let Some(peer) = self.peers.get_mut(region_id) else {
                continue;
            };
            peer.raw.mut_store().post_persist(&mut persisted)?;
            if let Some(snap) = &ready.snapshot {
                match peer.raw.mut_store().wait_snapshot_apply() {
                    SnapshotApplyStatus::Failed(e) => return Err(e),
                    status => info!(region = *region_id, ?status, "snapshot installed"),
                }
                let m = &snap.metadata;
                let file = tinykv_storage::snapshot::received_path(
                    self.engines.snap_dir(),
                    *region_id,
                    m.term,
                    m.index,
                );
                if let Err(e) = std::fs::remove_file(&file)
                    && e.kind() != std::io::ErrorKind::NotFound
                {
                    warn!(error = %e, path = %file.display(), "cannot remove an applied snapshot file");
                }
                for p in peer.region().peers.clone() {
                    peer.remember_peer(p);
                }
                self.ranges.insert(peer.region());
                // The snapshot replaced the state machine, the allocator of region 1 with it.
                peer.next_id = None;
            }
            if let Some(ss) = ready.soft_state {
                let was_leader = peer.is_leader();
                peer.leader_peer = ss.leader_id;
                peer.role = ss.role;
                if was_leader && ss.role != StateRole::Leader {
                    let err = KvError::NotLeader {
                        region_id: *region_id,
                        leader: None,
                    };
                    peer.fail_reads(&err);
                    // Their entries may still commit under the next leader or vanish: the
                    // outcome is unknown, and waiting for a log that may never reach their
                    // indices would leave callers hanging.
                    for p in peer.proposals.take_all() {
                        p.fail(KvError::StaleCommand);
                    }
                }
                if ss.role == StateRole::Leader {
                    info!(region = *region_id, peer = peer.meta.id, "became leader");
                }
            }
            let msgs = std::mem::take(&mut ready.messages);
            self.outbox.send(peer, msgs);
            for rs in std::mem::take(&mut ready.read_states) {
                peer.reads.confirm(&rs.request_ctx, rs.index);
            }
            // `advance` learns the applied index from these entries: leave them in the ready.
            if !ready.committed_entries.is_empty() {
                outcomes.push((
                    *region_id,
                    peer.apply_entries(&ready.committed_entries, &mut apply_batch),
                ));
            }
        }
        let applied = self.engines.commit_apply(apply_batch)?;
        for (region_id, outcome) in outcomes {
            let mut was_leader = false;
            if let Some(peer) = self.peers.get_mut(&region_id) {
                peer.raw.mut_store().post_apply(&applied)?;
                was_leader = peer.is_leader();
            }
            for split in outcome.splits {
                self.on_split_applied(split, was_leader)?;
            }
            self.splits
                .note_growth(region_id, self.peers.get(&region_id));
            for store_id in outcome.started {
                self.registering.remove(&store_id);
                self.started_stores.insert(store_id);
            }
            for change in outcome.changes {
                if change.added && self.learn_addr(change.store_id, &change.addr) {
                    let rec = StoreAddress {
                        store_id: change.store_id,
                        addr: change.addr,
                    };
                    if let Err(e) = self.engines.put_store_addrs(&[rec]) {
                        warn!(error = %e, "cannot record a store address");
                    }
                }
            }
            for answer in outcome.answers {
                answer.send();
            }
        }
        for (region_id, ready) in readies {
            let Some(peer) = self.peers.get_mut(&region_id) else {
                continue;
            };
            let applied_index = peer.raw.store().applied_index();
            for read in peer.reads.ready(applied_index) {
                let _ = read
                    .reply
                    .send(peer.read(&self.engines, &read.op, read.epoch));
            }
            peer.raw.advance(ready);
            if peer.removed {
                info!(
                    region = region_id,
                    peer = peer.meta.id,
                    "this peer was removed from its region"
                );
                self.destroy_peer(region_id)?;
            }
        }
        Ok(())
    }
}

/// Whether a snapshot message can be installed: its descriptor decodes and names the region,
/// index and term of the message, the region lists the peer it is addressed to, and its file
/// arrived. The reason, when not.
fn check_snapshot(
    msg: &RaftMessage,
    file: &std::path::Path,
) -> Result<tinykv_storage::Region, String> {
    let snap = msg
        .message
        .snapshot
        .as_ref()
        .filter(|s| !s.is_empty())
        .ok_or("the message carries no snapshot")?;
    let desc = SnapshotDescriptor::decode(&snap.data).map_err(|e| e.to_string())?;
    let m = &snap.metadata;
    if desc.region.id != msg.region_id || desc.index != m.index || desc.term != m.term {
        return Err(format!(
            "its descriptor is of region {} at ({}, {}), the message of region {} at ({}, {})",
            desc.region.id, desc.term, desc.index, msg.region_id, m.term, m.index
        ));
    }
    if !desc.region.peers.contains(&msg.to_peer) {
        return Err(format!(
            "its region does not list peer {} on this store",
            msg.to_peer.id
        ));
    }
    if !file.is_file() {
        return Err(format!("its file {} was not received", file.display()));
    }
    Ok(desc.region)
}

fn remove_received(path: &std::path::Path) {
    if let Err(e) = std::fs::remove_file(path)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        warn!(error = %e, path = %path.display(), "cannot remove a snapshot file");
    }
}

/// Whether a message addressed to a region this store left is from a newer membership than
/// the one that removed it, to a newer peer id: the store was added back (TiKV's rule). Older
/// messages are stale and must not bring the removed peer back.
fn tombstone_yields(tombstone: &tinykv_storage::Region, store_id: u64, msg: &RaftMessage) -> bool {
    let newer_epoch = msg.epoch.conf_ver > tombstone.epoch.conf_ver;
    let newer_peer = tombstone
        .peer_on_store(store_id)
        .is_none_or(|old| msg.to_peer.id > old.id);
    newer_epoch && newer_peer
}

/// Proposes `CompactLog` where the GC rules say (`limits`), or as far as it can go when an
/// operator asks (`None`). `reply`, if given, is answered either way.
fn maybe_compact(peer: &mut Peer, limits: Option<GcLimits>, reply: Option<Reply>) {
    let storage = peer.raw.store();
    let applied = storage.applied_index();
    let first = storage.truncated_state().index + 1;
    let index = match limits {
        None => (applied > first).then(|| applied - 1),
        Some(limits) => {
            let me = peer.meta.id;
            let view = LogView {
                first,
                applied,
                size: peer.log_size,
                matched: peer
                    .raw
                    .status()
                    .progress
                    .iter()
                    .filter(|(id, _)| *id != me)
                    .map(|(_, p)| p.matched)
                    .collect(),
            };
            compact_index(&view, limits)
        }
    };
    let term = index.and_then(|i| tinykv_raft::Storage::term(storage, i).ok().map(|t| (i, t)));
    let Some((index, term)) = term else {
        if let Some(r) = reply {
            r.done();
        }
        return;
    };
    let cmd = RaftCmd {
        region_id: peer.region_id(),
        epoch: peer.region().epoch,
        body: CmdBody::CompactLog { index, term },
    };
    match reply {
        Some(r) => {
            peer.propose_cmd(cmd, r);
        }
        None => {
            if let Err(e) = peer.raw.propose(cmd.encode()) {
                debug!(region = peer.region_id(), error = %e, "compaction not proposed");
            }
        }
    }
}

/// Sends the peers' Raft messages: a field of its own, apart from the peers, so a peer can be
/// sent for while it is borrowed mutably.
struct Outbox {
    endpoint: Arc<Endpoint<RaftMessage>>,
    runtime: tokio::runtime::Handle,
    /// For the outcome of a snapshot sent in the background.
    tx: mpsc::Sender<StoreMsg>,
    snap_dir: PathBuf,
    /// `snapshot.max-bytes-per-sec` (0: unlimited), for the time a send may take.
    snapshot_rate: u64,
}

impl Outbox {
    /// [`Outbox::send_one`] for each of `msgs`.
    fn send(&self, peer: &mut Peer, msgs: Vec<tinykv_raft::Message>) {
        for msg in msgs {
            self.send_one(peer, msg);
        }
    }

    /// Wraps a Raft message and hands it to the transport; snapshots go on their own stream.
    fn send_one(&self, peer: &mut Peer, msg: tinykv_raft::Message) {
        let region_id = peer.region_id();
        let Some(to_peer) = peer.peer_by_id(msg.to) else {
            debug!(
                region = region_id,
                to = msg.to,
                "no store known for a peer; message dropped"
            );
            return;
        };
        let region = peer.region();
        let is_snapshot = msg.msg_type == MessageType::Snapshot;
        let envelope = RaftMessage {
            region_id,
            from_peer: peer.meta,
            to_peer,
            epoch: region.epoch,
            start_key: region.start_key.clone(),
            end_key: region.end_key.clone(),
            message: msg,
        };
        if is_snapshot {
            self.send_snapshot(envelope);
            return;
        }
        if let Err(e) = self.endpoint.send(to_peer.store_id, &envelope) {
            debug!(region = region_id, store = to_peer.store_id, error = %e, "raft message not sent");
            peer.raw.report_unreachable(to_peer.id);
        }
    }

    fn send_snapshot(&self, envelope: RaftMessage) {
        let region_id = envelope.region_id;
        let to_peer = envelope.to_peer;
        let report = move |ok: bool| StoreMsg::SnapshotSent {
            region_id,
            to_peer: to_peer.id,
            ok,
        };
        let snap = envelope.message.snapshot.clone().unwrap_or_default();
        let desc = match SnapshotDescriptor::decode(&snap.data) {
            Ok(d) => d,
            Err(e) => {
                warn!(region = region_id, error = %e, "cannot send a snapshot with a bad descriptor");
                let _ = self.tx.try_send(report(false));
                return;
            }
        };
        let path = tinykv_storage::snapshot::generated_path(
            &self.snap_dir,
            region_id,
            desc.term,
            desc.index,
        );
        let meta = SnapshotMeta {
            region_id,
            index: desc.index,
            term: desc.term,
            crc32: Some(desc.checksum),
            context: crate::api::encode(&envelope),
        };
        let endpoint = self.endpoint.clone();
        let tx = self.tx.clone();
        info!(
            region = region_id,
            to_store = to_peer.store_id,
            index = desc.index,
            bytes = desc.size,
            "sending snapshot"
        );
        let timeout = snapshot_send_timeout(desc.size, self.snapshot_rate);
        self.runtime.spawn(async move {
            let send = endpoint.send_snapshot(to_peer.store_id, meta, &path, None);
            let ok = match tokio::time::timeout(timeout, send).await {
                Ok(Ok(())) => true,
                Ok(Err(e)) => {
                    warn!(region = region_id, to_store = to_peer.store_id, error = %e, "snapshot not delivered");
                    false
                }
                Err(_) => {
                    warn!(region = region_id, to_store = to_peer.store_id, ?timeout, "snapshot send timed out");
                    false
                }
            };
            let _ = tx.send(report(ok)).await;
        });
    }
}

/// Keeps only the newest snapshot this store built for each region: an older one could only be
/// sent to a peer that would then need the newer one anyway.
fn prune_generated_snapshots(snap_dir: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(snap_dir) else {
        return;
    };
    let mut newest: BTreeMap<u64, (u64, std::path::PathBuf)> = BTreeMap::new();
    let mut stale = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(parts) = name
            .strip_prefix("gen_")
            .and_then(|n| n.strip_suffix(".snap"))
        else {
            continue;
        };
        let nums: Vec<u64> = parts.split('_').filter_map(|p| p.parse().ok()).collect();
        let [region, _term, index] = nums[..] else {
            continue;
        };
        match newest.get(&region) {
            Some((i, _)) if *i >= index => stale.push(entry.path()),
            _ => {
                if let Some((_, old)) = newest.insert(region, (index, entry.path())) {
                    stale.push(old);
                }
            }
        }
    }
    for path in stale {
        if let Err(e) = std::fs::remove_file(&path) {
            debug!(error = %e, path = %path.display(), "cannot remove an old snapshot file");
        }
    }
}

fn region_info(peer: &Peer) -> RegionInfo {
    let (approximate_size, approximate_keys) = peer.approximate.unwrap_or_default();
    RegionInfo {
        region: peer.region().clone(),
        leader_store: peer.leader_store(),
        applied: peer.raw.store().applied_index(),
        approximate_size,
        approximate_keys,
    }
}

fn peer_status(peer: &Peer, alive_window: std::time::Duration) -> PeerStatus {
    let status = peer.raw.status();
    let storage = peer.raw.store();
    let raft_state = storage.raft_state();
    PeerStatus {
        state: crate::inspect::raft_state_info(
            peer.region_id(),
            peer.meta.id,
            raft_state,
            storage.apply_state(),
        ),
        role: role_name(status.soft_state.role).to_string(),
        leader_peer: status.soft_state.leader_id,
        pending_proposals: peer.proposals.len() as u64,
        down_peers: if peer.is_leader() {
            peer.down_peers(alive_window)
        } else {
            Vec::new()
        },
    }
}

pub(crate) fn role_name(role: StateRole) -> &'static str {
    match role {
        StateRole::Leader => "leader",
        StateRole::Follower => "follower",
        StateRole::Candidate => "candidate",
        StateRole::PreCandidate => "pre-candidate",
    }
}

pub(crate) fn describe_entry(e: &tinykv_raft::Entry) -> LogEntryInfo {
    let (entry_type, summary) = match e.entry_type {
        tinykv_raft::EntryType::Normal if e.data.is_empty() => ("noop", "leader no-op".to_string()),
        tinykv_raft::EntryType::Normal => match RaftCmd::decode(&e.data) {
            Ok(cmd) => ("normal", cmd.summary()),
            Err(err) => ("normal", format!("undecodable: {err}")),
        },
        tinykv_raft::EntryType::ConfChange => match ConfChange::decode(&e.data) {
            Some(cc) => {
                let store = ChangePeer::decode(&cc.context)
                    .map(|c| format!(" on store {}", c.store_id))
                    .unwrap_or_default();
                (
                    "conf-change",
                    format!("{:?} peer {}{store}", cc.change_type, cc.node_id),
                )
            }
            None => ("conf-change", "undecodable".to_string()),
        },
    };
    LogEntryInfo {
        index: e.index,
        term: e.term,
        entry_type: entry_type.to_string(),
        size: e.data.len() as u64,
        summary,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_send_has_time_for_its_size_at_the_rate_limit() {
        let mib = 1024 * 1024;
        // 1 GiB at 100 MiB/s needs about 10 s; it gets the 10 MiB/s floor's 103 s, twice.
        assert_eq!(
            snapshot_send_timeout(1024 * mib, 100 * mib).as_secs(),
            60 + 2 * 103
        );
        // A limit below the floor is what bounds it.
        assert_eq!(snapshot_send_timeout(100 * mib, mib).as_secs(), 60 + 200);
        assert_eq!(snapshot_send_timeout(0, 0).as_secs(), 60);
        let config = NodeConfig::default();
        assert_eq!(ticks_in(&config, SNAPSHOT_PENDING_BACKSTOP), 36_000);
        assert_eq!(raft_config(&config).snapshot_pending_timeout_ticks, 36_000);
    }

    #[test]
    fn only_the_newest_generated_snapshot_of_each_region_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let names = [
            "gen_1_5_100.snap",
            "gen_1_6_250.snap",
            "gen_1_6_180.snap",
            "gen_2_3_40.snap",
            "rev_1_6_300.snap",
            "notes.txt",
        ];
        for n in names {
            std::fs::write(dir.path().join(n), b"x").unwrap();
        }
        prune_generated_snapshots(dir.path());
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(
            left,
            vec![
                "gen_1_6_250.snap",
                "gen_2_3_40.snap",
                "notes.txt",
                "rev_1_6_300.snap"
            ]
        );
    }
}
