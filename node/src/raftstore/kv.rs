//! Client reads and writes: the route check (right store, right region, current epoch) and
//! handing the request to the region's leader.

use tinykv_proto::api::{KvError, KvOp, KvRequest, KvResult};
use tokio::sync::oneshot;

use crate::cmd::WriteOp;
use crate::peer::is_linearizable_read;
use crate::reply::{PendingRead, Reply};

use super::store::Store;

/// The most regions an `EpochNotMatch` or `KeyNotInRegion` answer names.
pub(super) const MAX_ROUTE_HINTS: usize = 32;

impl Store {
    pub(super) fn on_kv(&mut self, req: KvRequest, reply: oneshot::Sender<KvResult>) {
        if let Err(e) = self.check_route(&req) {
            let _ = reply.send(Err(e));
            return;
        }
        if self.installing.contains_key(&req.region_id) {
            // Its data is neither the old nor the snapshot's until the install ends.
            let _ = reply.send(Err(KvError::ServerBusy));
            return;
        }
        let Some(peer) = self.peers.get_mut(&req.region_id) else {
            return;
        };
        let stale_read = !req.op.is_write() && !is_linearizable_read(&req.op);
        if stale_read {
            let _ = reply.send(peer.read(&self.engines, &self.views, &req.op, req.epoch));
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
            KvOp::DeleteRange { start, end } => {
                peer.propose_write(vec![WriteOp::DeleteRange { start, end }], Reply::Kv(reply))
            }
            KvOp::Cas {
                key,
                expected,
                value,
            } => peer.propose_write(
                vec![WriteOp::Cas {
                    key,
                    expected,
                    value,
                }],
                Reply::Kv(reply),
            ),
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
    pub(super) fn check_route(&self, req: &KvRequest) -> Result<(), KvError> {
        let region_id = req.region_id;
        let region = match self.peers.get(&region_id) {
            Some(peer) if peer.raw.store().is_initialized() => peer.region(),
            _ => return Err(KvError::RegionNotFound { region_id }),
        };
        let (start, end): (&[u8], Vec<u8>) = match &req.op {
            KvOp::Get { key, .. }
            | KvOp::Put { key, .. }
            | KvOp::Delete { key }
            | KvOp::Cas { key, .. } => {
                let mut end = key.to_vec();
                end.push(0);
                (key, end)
            }
            KvOp::Scan { start, end, .. } | KvOp::DeleteRange { start, end } => {
                (start, end.to_vec())
            }
            KvOp::OpenView { start } => (start, Vec::new()),
            // Served off the raft loop by the store holding the view (`service.rs`).
            KvOp::ViewScan { .. } | KvOp::CloseView { .. } | KvOp::RenewViews { .. } => {
                return Ok(());
            }
        };
        let around = || self.regions_around(region, start, &end);
        if req.epoch.is_some_and(|e| e.version != region.epoch.version) {
            return Err(KvError::EpochNotMatch { regions: around() });
        }
        if let KvOp::Get { key, .. }
        | KvOp::Put { key, .. }
        | KvOp::Delete { key }
        | KvOp::DeleteRange { start: key, .. }
        | KvOp::OpenView { start: key }
        | KvOp::Cas { key, .. } = &req.op
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
    pub(super) fn regions_around(
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
}
