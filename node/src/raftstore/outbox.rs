//! Outgoing Raft messages: wrapped with their region's envelope and handed to the transport;
//! snapshots go on their own stream, in the background, and report their outcome to the loop.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use tinykv_raft::MessageType;
use tinykv_storage::SnapshotDescriptor;
use tinykv_transport::{Endpoint, SnapshotMeta};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use crate::message::{RaftMessage, Signal};
use crate::metrics::Metrics;
use crate::peer::Peer;

use super::background::Background;
use super::msg::StoreMsg;
use super::raft_config::snapshot_send_timeout;

/// Sends the peers' Raft messages: a field of its own, apart from the peers, so a peer can be
/// sent for while it is borrowed mutably. Messages wait here by store until the round flushes
/// them, so all a round has for one store goes to the transport as one batch.
pub(super) struct Outbox {
    pub(super) endpoint: Arc<Endpoint<RaftMessage>>,
    /// The snapshot sends under way.
    pub(super) background: Background,
    /// For the outcome of a snapshot sent in the background.
    pub(super) tx: mpsc::Sender<StoreMsg>,
    pub(super) snap_dir: PathBuf,
    /// `snapshot.max-bytes-per-sec` (0: unlimited), for the time a send may take.
    pub(super) snapshot_rate: u64,
    /// Messages of this round by the store they go to.
    pub(super) queued: BTreeMap<u64, Vec<RaftMessage>>,
    pub(super) metrics: Arc<Metrics>,
}

impl Outbox {
    /// [`Outbox::send_one`] for each of `msgs`.
    pub(super) fn send(&mut self, peer: &Peer, msgs: Vec<tinykv_raft::Message>) {
        for msg in msgs {
            self.send_one(peer, msg);
        }
    }

    /// Wraps a Raft message and queues it for [`Outbox::flush`]; a snapshot goes at once, on
    /// its own stream.
    pub(super) fn send_one(&mut self, peer: &Peer, msg: tinykv_raft::Message) {
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
        self.metrics.message_sent(Some(msg.msg_type));
        let envelope = RaftMessage {
            region_id,
            from_peer: peer.meta,
            to_peer,
            epoch: region.epoch,
            start_key: region.start_key.clone(),
            end_key: region.end_key.clone(),
            message: msg,
            signal: Signal::Raft,
        };
        if is_snapshot {
            self.send_snapshot(envelope);
            return;
        }
        self.queued
            .entry(to_peer.store_id)
            .or_default()
            .push(envelope);
    }

    /// Queues `signal` from `peer` to `to` for [`Outbox::flush`]. A tombstone goes to a peer
    /// that sent `peer` a message from a membership older than `peer`'s and is not in the region
    /// any more: it destroys itself.
    pub(super) fn send_signal(&mut self, peer: &Peer, to: tinykv_storage::Peer, signal: Signal) {
        let region = peer.region();
        let envelope = RaftMessage {
            region_id: peer.region_id(),
            from_peer: peer.meta,
            to_peer: to,
            epoch: region.epoch,
            start_key: region.start_key.clone(),
            end_key: region.end_key.clone(),
            message: tinykv_raft::Message::default(),
            signal,
        };
        self.metrics.message_sent(None);
        self.queued.entry(to.store_id).or_default().push(envelope);
    }

    /// Hands the queued messages to the transport, one batch per store. When a batch is not
    /// taken, Raft hears that its addressees are unreachable.
    pub(super) fn flush(&mut self, peers: &mut BTreeMap<u64, Peer>) {
        for (store_id, batch) in std::mem::take(&mut self.queued) {
            if let Err(e) = self.endpoint.send_all(store_id, &batch) {
                debug!(store = store_id, messages = batch.len(), error = %e, "raft messages not sent");
                for envelope in &batch {
                    if let Some(peer) = peers.get_mut(&envelope.region_id) {
                        peer.raw.report_unreachable(envelope.to_peer.id);
                    }
                }
            }
        }
    }

    pub(super) fn send_snapshot(&mut self, envelope: RaftMessage) {
        let region_id = envelope.region_id;
        let to_peer = envelope.to_peer;
        let report = move |ok: bool| StoreMsg::SnapshotSent {
            region_id,
            to_peer: to_peer.id,
            ok,
        };
        self.metrics.snapshots_generated.inc();
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
            context: tinykv_proto::api::encode(&envelope),
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
        self.background.spawn(async move {
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
