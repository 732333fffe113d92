//! Raft messages from other stores: stepping them into this store's peers, and creating,
//! replacing or refusing a peer when a message says its region moved on (a new peer id, a
//! removed peer, a snapshot whose range this store still holds elsewhere).

use tinykv_raft::MessageType;
use tinykv_storage::{PeerState, PeerStorage, SnapshotDescriptor, StorageError};
use tinykv_transport::ReceivedSnapshot;
use tracing::{debug, info, warn};

use crate::message::{RaftMessage, Signal};
use crate::peer::Peer;

use super::hibernate::keeps_asleep;
use super::snapshot_files::remove_received;
use super::store::Store;

impl Store {
    /// Steps a peer's message, creating or replacing this store's peer when the message says
    /// so. Only a failed write is an error; a bad message is logged and dropped.
    pub(super) fn on_raft_message(
        &mut self,
        from_store: u64,
        msg: RaftMessage,
    ) -> Result<(), StorageError> {
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
        self.metrics
            .message_received((msg.signal == Signal::Raft).then_some(msg.message.msg_type));
        if msg.signal == Signal::Tombstone {
            return self.on_tombstone_message(&msg);
        }
        if let Some(ready) = self.installing.get(&region_id) {
            // The peer is held while its snapshot's data is written; Raft sends again.
            let installing = ready
                .snapshot
                .as_ref()
                .map(|s| (s.metadata.term, s.metadata.index));
            if let Some(snap) = &msg.message.snapshot
                && installing != Some((snap.metadata.term, snap.metadata.index))
            {
                self.remove_snapshot_file(&msg);
            }
            debug!(
                region = region_id,
                "dropping a message for a region installing a snapshot"
            );
            return Ok(());
        }
        if self.is_replaced_by(region_id, &msg) {
            info!(
                region = region_id,
                new_peer = msg.to_peer.id,
                "this store's peer was removed and added back; the old peer makes way"
            );
            self.destroy_peer(region_id)?;
        }
        if !self.peers.contains_key(&region_id) && !self.maybe_create_peer(&msg) {
            // No peer takes it: its file would stay until the disk fills.
            self.remove_snapshot_file(&msg);
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
        let region = peer.region();
        if msg.epoch.conf_ver < region.epoch.conf_ver
            && !region.peers.iter().any(|p| p.id == msg.from_peer.id)
        {
            // The sender was removed from the region and has not learned it (it was cut off
            // when the change committed): nothing it says counts, and it would campaign and
            // hold the region's range on its store for good. Tell it.
            debug!(
                region = region_id,
                peer = msg.from_peer.id,
                store = msg.from_peer.store_id,
                "message from a removed peer; telling it to destroy itself"
            );
            self.outbox
                .send_signal(peer, msg.from_peer, Signal::Tombstone);
            self.remove_snapshot_file(&msg);
            return Ok(());
        }
        if msg.signal != Signal::Raft {
            peer.heard_from(msg.from_peer.id);
            self.on_signal(&msg);
            return Ok(());
        }
        if peer.sleep.is_asleep() && !keeps_asleep(&msg.message, peer.raw.raft().term()) {
            self.wake(region_id, None);
        }
        let Some(peer) = self.peers.get_mut(&region_id) else {
            return Ok(());
        };
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

    /// Removes the file a snapshot message brought when nothing will take it.
    fn remove_snapshot_file(&self, msg: &RaftMessage) {
        if msg.message.msg_type != MessageType::Snapshot {
            return;
        }
        if let Some(snap) = &msg.message.snapshot {
            remove_received(&tinykv_storage::snapshot::received_path(
                self.engines.snap_dir(),
                msg.region_id,
                snap.metadata.term,
                snap.metadata.index,
            ));
        }
    }

    /// A member of the region says this store's peer was removed: the peer is destroyed when it
    /// is the one addressed and the member's membership is newer than the peer's.
    fn on_tombstone_message(&mut self, msg: &RaftMessage) -> Result<(), StorageError> {
        let region_id = msg.region_id;
        let Some(peer) = self.peers.get(&region_id) else {
            return Ok(());
        };
        let newer = msg.epoch.conf_ver > peer.region().epoch.conf_ver;
        if peer.meta.id != msg.to_peer.id || !newer || self.installing.contains_key(&region_id) {
            return Ok(());
        }
        info!(
            region = region_id,
            peer = peer.meta.id,
            told_by = msg.from_peer.id,
            "this peer was removed from its region while cut off; destroying it"
        );
        self.destroy_peer(region_id)
    }

    /// Drops this store's peer of `region_id` and everything it kept: it was removed from the
    /// region (or replaced by a newer peer of this store). Only a failed write is an error.
    pub(super) fn destroy_peer(&mut self, region_id: u64) -> Result<(), StorageError> {
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
    pub(super) fn is_replaced_by(&self, region_id: u64, msg: &RaftMessage) -> bool {
        self.peers.get(&region_id).is_some_and(|peer| {
            msg.to_peer.id > peer.meta.id && msg.epoch.conf_ver > peer.region().epoch.conf_ver
        })
    }

    /// Creates an uninitialized peer for a region this store does not have yet, when a leader
    /// (or a candidate) reaches out to it.
    pub(super) fn maybe_create_peer(&mut self, msg: &RaftMessage) -> bool {
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
        match Peer::new(
            msg.to_peer,
            storage,
            self.raft_config.clone(),
            self.metrics.proposals.clone(),
        ) {
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

    pub(super) fn on_snapshot_received(
        &mut self,
        snap: ReceivedSnapshot,
    ) -> Result<(), StorageError> {
        let msg: RaftMessage = match tinykv_proto::api::decode(
            "snapshot context",
            &snap.header.context,
        ) {
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
}

/// Whether a snapshot message can be installed: its descriptor decodes and names the region,
/// index and term of the message, the region lists the peer it is addressed to, and its file
/// arrived. The reason, when not.
pub(super) fn check_snapshot(
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

/// Whether a message addressed to a region this store left is from a newer membership than
/// the one that removed it, to a newer peer id: the store was added back (TiKV's rule). Older
/// messages are stale and must not bring the removed peer back.
pub(super) fn tombstone_yields(
    tombstone: &tinykv_storage::Region,
    store_id: u64,
    msg: &RaftMessage,
) -> bool {
    let newer_epoch = msg.epoch.conf_ver > tombstone.epoch.conf_ver;
    let newer_peer = tombstone
        .peer_on_store(store_id)
        .is_none_or(|old| msg.to_peer.id > old.id);
    newer_epoch && newer_peer
}
