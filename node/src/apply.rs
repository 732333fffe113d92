//! Applying a peer's committed entries into the store's apply batch: writes, log compaction,
//! membership changes, splits, store records and id allocations, and what each asks of the
//! store once the batch is committed (`ApplyOutcome`).

use std::collections::BTreeSet;

use bytes::Bytes;
use tinykv_proto::api::{AdminResponse, KvError, KvResponse};
use tinykv_raft::{ConfChange, ConfChangeType, Entry, EntryType};
use tinykv_storage::{ApplyBatch, PeerRole, PeerState, RaftApplyState, Region, RegionLocalState};
use tracing::{debug, info, warn};

use crate::cmd::{ChangePeer, CmdBody, RaftCmd, WriteOp};
use crate::peer::{Peer, key_not_in_region};
use crate::reply::{Answer, Response};

/// Where a cluster founded before the id allocator existed starts allocating: above every
/// peer id the earlier scheme (`(conf_ver + 1) × 1,000,000 + store id`) could have given,
/// since `conf_ver` has only grown since. Computed from the replicated region, so every
/// replica starts at the same id.
fn legacy_id_floor(region: &Region) -> u64 {
    region
        .epoch
        .conf_ver
        .saturating_add(2)
        .saturating_mul(1_000_000)
}

/// A membership change this store must act on after the apply batch is committed.
#[derive(Debug)]
pub(crate) struct AppliedChange {
    pub store_id: u64,
    pub addr: String,
    pub added: bool,
}

/// How far a region's applied index may run ahead of the one written to disk. Entries that only
/// put and delete keys may be applied again after a crash without changing the data, so their
/// apply state is written with the next entry that is not one of them, or once this many
/// entries went by (what a restart applies twice). Anything else (a membership change, a
/// split, a log compaction, an id allocation) writes it in its own batch.
const APPLY_STATE_LAG: u64 = 256;

/// What applying a ready's committed entries produced for the store.
#[derive(Debug, Default)]
pub(crate) struct ApplyOutcome {
    pub answers: Vec<Answer>,
    pub changes: Vec<AppliedChange>,
    /// This peer was removed from its region: destroy it after the batch is committed.
    pub removed_self: bool,
    /// Stores recorded as started.
    pub started: Vec<u64>,
    /// Splits applied, in log order.
    pub splits: Vec<AppliedSplit>,
    /// The placement driver's record, when an entry replaced it (region 1).
    pub placement: Option<tinykv_storage::PlacementRecord>,
    /// An entry applied that must not be applied twice: anything but a write (or the noop).
    pub not_replayable: bool,
    /// How long each proposal answered here waited from its proposal.
    pub proposal_waits: Vec<std::time::Duration>,
}

/// A split applied on this store: the region as it is now and the regions it created. Only the
/// new regions in `created` were written by this apply: one this store already had (a peer
/// created by a message of the new region's leader before the split applied here) is left to
/// be filled by that leader's snapshot, since it may have voted already.
#[derive(Debug)]
pub(crate) struct AppliedSplit {
    pub derived: Region,
    pub new: Vec<Region>,
    pub created: Vec<u64>,
}

impl Peer {
    /// Applies committed entries into `batch`. Entries are applied in order; the apply state
    /// (applied index, truncated state) goes into the same batch.
    pub fn apply_entries(&mut self, entries: &[Entry], batch: &mut ApplyBatch) -> ApplyOutcome {
        let mut out = ApplyOutcome::default();
        let Some(last) = entries.last() else {
            return out;
        };
        let region_id = self.region_id();
        let mut apply_state: RaftApplyState = *self.raw.store().apply_state();
        let mut region = self.region().clone();
        let mut region_changed = false;
        // This call's writes so far (key, and the value put or `None` for a delete), which
        // the apply batch holds but the engine does not show yet: a range delete and a
        // compare-and-swap must see them. Earlier rounds' batches are committed, and other
        // regions' keys are outside this region's range.
        let mut written: Vec<(Bytes, Option<Bytes>)> = Vec::new();
        for entry in entries {
            let settled = self.proposals.settle(entry.index, entry.term);
            for stale in settled.stale {
                out.answers
                    .push(Answer::Failed(stale, KvError::StaleCommand));
            }
            let reply = settled.done;
            out.proposal_waits.extend(settled.waited);
            // What this entry's command sees as applied: a CompactLog up to an index inside this
            // batch (a follower catching up applies hundreds at once) must not be refused as
            // beyond the applied index.
            apply_state.applied_index = entry.index;
            self.log_size += entry.data.len() as u64;
            let result = match entry.entry_type {
                EntryType::Normal if entry.data.is_empty() => Ok(None),
                EntryType::Normal => {
                    let splits = out.splits.len();
                    let r = self.apply_cmd(
                        entry,
                        &mut region,
                        batch,
                        &mut apply_state,
                        &mut out,
                        &mut written,
                    );
                    region_changed |= out.splits.len() != splits;
                    r
                }
                EntryType::ConfChange => {
                    out.not_replayable = true;
                    let r = self.apply_conf_change(entry, &mut region, &mut out);
                    region_changed = true;
                    r.map(|()| None)
                }
            };
            if let Some(reply) = reply {
                out.answers.push(match result {
                    Ok(None) => Answer::Done(reply),
                    Ok(Some(resp)) => Answer::With(reply, resp),
                    Err(e) => Answer::Failed(reply, e),
                });
            }
        }
        apply_state.applied_index = last.index;
        let replayable = !out.not_replayable
            && !region_changed
            && last.index.saturating_sub(self.apply_state_written) < APPLY_STATE_LAG;
        if replayable {
            batch.note_apply_state(region_id, apply_state);
        } else {
            batch.set_apply_state(region_id, apply_state);
            self.apply_state_written = last.index;
        }
        if region_changed {
            let state = if out.removed_self {
                PeerState::Tombstone
            } else {
                PeerState::Normal
            };
            batch.set_region_state(RegionLocalState { state, region });
        }
        out
    }

    /// Deletes every key of `[start, end)` within `region`: those on disk and those this
    /// call's earlier writes put, less those they deleted. Returns how many it deleted.
    fn delete_range(
        &self,
        region: &Region,
        start: &[u8],
        end: &[u8],
        batch: &mut ApplyBatch,
        written: &mut Vec<(Bytes, Option<Bytes>)>,
    ) -> Result<u64, KvError> {
        let region_end = region.end_key.as_slice();
        let end = match (end.is_empty(), region_end.is_empty()) {
            (true, _) => region_end,
            (false, true) => end,
            (false, false) => end.min(region_end),
        };
        let start = start.max(region.start_key.as_slice());
        let in_range = |k: &[u8]| k >= start && (end.is_empty() || k < end);
        let storage_err = |e: tinykv_storage::StorageError| KvError::Storage(e.to_string());
        let on_disk = self
            .raw
            .store()
            .engines()
            .keys_in_range(start, end)
            .map_err(storage_err)?;
        let mut live: BTreeSet<Vec<u8>> = on_disk.into_iter().collect();
        for (key, value) in written.iter().filter(|(k, _)| in_range(k)) {
            if value.is_some() {
                live.insert(key.to_vec());
            } else {
                live.remove(key.as_ref());
            }
        }
        for key in &live {
            batch.delete(region, key).map_err(storage_err)?;
            written.push((Bytes::from(key.clone()), None));
        }
        Ok(live.len() as u64)
    }

    /// The key's value as this call's earlier writes left it, or as the engine holds it.
    fn current_value(
        &self,
        key: &[u8],
        written: &[(Bytes, Option<Bytes>)],
    ) -> Result<Option<Bytes>, KvError> {
        if let Some((_, value)) = written.iter().rev().find(|(k, _)| k.as_ref() == key) {
            return Ok(value.clone());
        }
        self.raw
            .store()
            .engines()
            .get(key)
            .map(|v| v.map(Bytes::from))
            .map_err(|e| KvError::Storage(e.to_string()))
    }

    fn apply_cmd(
        &mut self,
        entry: &Entry,
        region: &mut Region,
        batch: &mut ApplyBatch,
        apply_state: &mut RaftApplyState,
        out: &mut ApplyOutcome,
        written: &mut Vec<(Bytes, Option<Bytes>)>,
    ) -> Result<Option<Response>, KvError> {
        let cmd = match RaftCmd::decode(&entry.data) {
            Ok(cmd) => cmd,
            Err(e) => {
                // Every node skips the same undecodable entry, so replicas stay identical.
                warn!(region = region.id, index = entry.index, error = %e, "skipping an undecodable entry");
                return Err(KvError::Api(e));
            }
        };
        if cmd.region_id != region.id {
            return Err(KvError::RegionNotFound {
                region_id: cmd.region_id,
            });
        }
        // A compare-and-swap depends on what it reads, so applied again over data that already
        // holds later writes it could decide otherwise: its apply state is written with it.
        out.not_replayable |= match &cmd.body {
            CmdBody::Write(ops) => ops.iter().any(|op| matches!(op, WriteOp::Cas { .. })),
            _ => true,
        };
        match cmd.body {
            CmdBody::Write(ops) => {
                if cmd.epoch.version != region.epoch.version {
                    return Err(KvError::EpochNotMatch {
                        regions: vec![region.clone()],
                    });
                }
                for op in &ops {
                    let key = match op {
                        WriteOp::Put { key, .. }
                        | WriteOp::Delete { key }
                        | WriteOp::DeleteRange { start: key, .. }
                        | WriteOp::Cas { key, .. } => key,
                    };
                    if !region.contains(key) {
                        return Err(key_not_in_region(key, region));
                    }
                }
                let storage_err = |e: tinykv_storage::StorageError| KvError::Storage(e.to_string());
                let mut deleted = None;
                let mut swapped = None;
                for op in ops {
                    match op {
                        WriteOp::Put { key, value } => {
                            self.size_diff += (key.len() + value.len()) as u64;
                            batch.put(region, &key, &value).map_err(storage_err)?;
                            written.push((key, Some(value)));
                        }
                        WriteOp::Delete { key } => {
                            batch.delete(region, &key).map_err(storage_err)?;
                            written.push((key, None));
                        }
                        WriteOp::DeleteRange { start, end } => {
                            let n = self.delete_range(region, &start, &end, batch, written)?;
                            deleted = Some(deleted.unwrap_or(0) + n);
                        }
                        WriteOp::Cas {
                            key,
                            expected,
                            value,
                        } => {
                            let previous = self.current_value(&key, written)?;
                            let matches = previous == expected;
                            if matches {
                                self.size_diff += (key.len() + value.len()) as u64;
                                batch.put(region, &key, &value).map_err(storage_err)?;
                                written.push((key, Some(value)));
                            }
                            swapped = Some(KvResponse::Swapped {
                                swapped: matches,
                                previous,
                            });
                        }
                    }
                }
                Ok(swapped
                    .or(deleted.map(KvResponse::Deleted))
                    .map(Response::Kv))
            }
            CmdBody::CompactLog { index, term } => {
                let first = apply_state.truncated_state.index + 1;
                if apply_state.compact_to(index, term) {
                    self.log_size = crate::log_gc::size_after_compaction(
                        self.log_size,
                        first,
                        apply_state.applied_index,
                        index,
                    );
                    debug!(region = region.id, index, term, "log compacted");
                }
                Ok(None)
            }
            CmdBody::StoreStarted { store_id } => {
                batch.set_store_started(store_id);
                out.started.push(store_id);
                Ok(None)
            }
            CmdBody::Placement(record) => {
                if region.id != tinykv_storage::CLUSTER_REGION_ID {
                    return Err(KvError::Storage(format!(
                        "region {} keeps no placement record",
                        region.id
                    )));
                }
                batch.set_placement(&record);
                out.placement = Some(record);
                Ok(Some(Response::Admin(AdminResponse::Done)))
            }
            CmdBody::AllocIds { count } => {
                let (first, count) = self.apply_alloc_ids(count, region, batch)?;
                Ok(Some(Response::Admin(AdminResponse::Ids { first, count })))
            }
            CmdBody::Split {
                split_keys,
                new_regions,
            } => {
                if cmd.epoch != region.epoch {
                    return Err(KvError::EpochNotMatch {
                        regions: vec![region.clone()],
                    });
                }
                let (derived, new) = crate::split::split_region(region, &split_keys, &new_regions)
                    .map_err(KvError::BadRequest)?;
                let mut created = Vec::new();
                for r in &new {
                    let existing = self
                        .raw
                        .store()
                        .engines()
                        .region_state(r.id)
                        .map_err(|e| KvError::Storage(e.to_string()))?;
                    if existing.is_none() {
                        batch.init_split_region(r);
                        created.push(r.id);
                    } else {
                        info!(
                            region = r.id,
                            "the split's new region exists on this store already; \
                             it is left to its leader's snapshot"
                        );
                    }
                }
                info!(
                    region = region.id,
                    index = entry.index,
                    new = ?new.iter().map(|r| r.id).collect::<Vec<_>>(),
                    "region split"
                );
                *region = derived.clone();
                let mut regions = vec![derived.clone()];
                regions.extend(new.iter().cloned());
                out.splits.push(AppliedSplit {
                    derived,
                    new,
                    created,
                });
                Ok(Some(Response::Admin(AdminResponse::Split { regions })))
            }
        }
    }

    fn apply_conf_change(
        &mut self,
        entry: &Entry,
        region: &mut Region,
        out: &mut ApplyOutcome,
    ) -> Result<(), KvError> {
        let Some(cc) = ConfChange::decode(&entry.data) else {
            warn!(
                region = region.id,
                index = entry.index,
                "skipping an undecodable conf change"
            );
            return Err(KvError::Storage("undecodable conf change".into()));
        };
        let change = ChangePeer::decode(&cc.context).ok();
        if cc.change_type == ConfChangeType::RemoveNode {
            self.apply_removal(&cc, change, region, out);
            return Ok(());
        }
        let Some(change) = change else {
            warn!(
                region = region.id,
                index = entry.index,
                "add-peer without its store; ignored"
            );
            return Err(KvError::Storage("add-peer without its store".into()));
        };
        let learner = cc.change_type == ConfChangeType::AddLearnerNode;
        let existing = region
            .peers
            .iter_mut()
            .find(|p| p.id == cc.node_id || p.store_id == change.store_id);
        match existing {
            Some(p) if p.id == cc.node_id && p.is_learner() && !learner => {
                p.role = PeerRole::Voter;
                region.epoch.conf_ver += 1;
                info!(
                    region = region.id,
                    peer = p.id,
                    store = p.store_id,
                    "learner promoted"
                );
            }
            Some(p) => {
                // Already there (a retried proposal), or the store holds another peer of the
                // region: nothing changes, and Raft's membership stays the region's.
                debug!(
                    region = region.id,
                    peer = cc.node_id,
                    existing = p.id,
                    "add-peer changes nothing"
                );
                return Ok(());
            }
            None => {
                let peer = if learner {
                    tinykv_storage::Peer::learner(cc.node_id, change.store_id)
                } else {
                    tinykv_storage::Peer::voter(cc.node_id, change.store_id)
                };
                region.peers.push(peer);
                region.epoch.conf_ver += 1;
                self.remember_peer(peer);
                info!(
                    region = region.id,
                    peer = peer.id,
                    store = peer.store_id,
                    role = ?peer.role,
                    "peer added"
                );
                out.changes.push(AppliedChange {
                    store_id: change.store_id,
                    addr: change.addr,
                    added: true,
                });
            }
        }
        self.raw.apply_conf_change(&cc);
        Ok(())
    }

    fn apply_removal(
        &mut self,
        cc: &ConfChange,
        change: Option<ChangePeer>,
        region: &mut Region,
        out: &mut ApplyOutcome,
    ) {
        let store_id = change
            .map(|c| c.store_id)
            .or_else(|| self.peer_by_id(cc.node_id).map(|p| p.store_id));
        let before = region.peers.len();
        region.peers.retain(|p| p.id != cc.node_id);
        if region.peers.len() != before {
            region.epoch.conf_ver += 1;
            info!(region = region.id, peer = cc.node_id, "peer removed");
            if let Some(store_id) = store_id {
                out.changes.push(AppliedChange {
                    store_id,
                    addr: String::new(),
                    added: false,
                });
            }
        }
        if cc.node_id == self.meta.id {
            out.removed_self = true;
            self.removed = true;
        }
        self.raw.apply_conf_change(cc);
    }

    /// Hands out `count` ids from the cluster's allocator, which region 1 keeps. Every replica
    /// computes the same range from the same log, so the allocation is as durable as its entry.
    fn apply_alloc_ids(
        &mut self,
        count: u32,
        region: &Region,
        batch: &mut ApplyBatch,
    ) -> Result<(u64, u32), KvError> {
        if region.id != tinykv_storage::CLUSTER_REGION_ID {
            return Err(KvError::Storage(format!(
                "region {} keeps no id allocator",
                region.id
            )));
        }
        let next = match self.next_id {
            Some(n) => n,
            None => self
                .raw
                .store()
                .engines()
                .id_alloc()
                .map_err(|e| KvError::Storage(e.to_string()))?
                .map_or_else(|| legacy_id_floor(region), |a| a.next_id),
        };
        let end = next.saturating_add(u64::from(count));
        self.next_id = Some(end);
        batch.set_id_alloc(tinykv_storage::IdAllocState { next_id: end });
        Ok((next, count))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reply::Reply;
    use tinykv_proto::api::KvResult;
    use tinykv_storage::{
        Engines, OpenOptions, PeerStorage, RegionEpoch, StorageWorkers, StoreIdent,
    };

    fn write(index: u64, epoch: RegionEpoch, ops: Vec<WriteOp>) -> Entry {
        let cmd = RaftCmd {
            region_id: 1,
            epoch,
            body: CmdBody::Write(ops),
        };
        Entry {
            entry_type: EntryType::Normal,
            term: 6,
            index,
            data: cmd.encode(),
        }
    }

    fn put(k: &str) -> WriteOp {
        WriteOp::Put {
            key: Bytes::copy_from_slice(k.as_bytes()),
            value: Bytes::from_static(b"v"),
        }
    }

    /// One peer of region 1 (`[, z)`) on a fresh store in `dir`, its only voter.
    fn lone_peer(dir: &std::path::Path) -> (Engines, StorageWorkers, Peer, RegionEpoch) {
        let (engines, _) = Engines::open(dir, OpenOptions::default()).unwrap();
        engines
            .bootstrap_store(StoreIdent {
                cluster_id: 1,
                store_id: 1,
            })
            .unwrap();
        let region = Region {
            id: 1,
            start_key: Vec::new(),
            end_key: b"z".to_vec(),
            epoch: RegionEpoch {
                conf_ver: 1,
                version: 1,
            },
            peers: vec![tinykv_storage::Peer::voter(1, 1)],
        };
        engines.bootstrap_region(&region).unwrap();
        let workers = StorageWorkers::start(&engines).unwrap();
        let storage = PeerStorage::open(engines.clone(), workers.handles(), 1).unwrap();
        let peer = Peer::new(
            region.peers[0],
            storage,
            tinykv_raft::Config::default(),
            prometheus_client::metrics::counter::Counter::default(),
        )
        .unwrap();
        let epoch = region.epoch;
        (engines, workers, peer, epoch)
    }

    /// A range delete applied in the same round as the writes before it (which the apply
    /// batch holds and the engine does not show yet) deletes them too, and counts each key
    /// once: what is on disk, plus what the round put, less what it deleted.
    #[test]
    fn a_range_delete_sees_the_writes_of_its_own_round() {
        let dir = tempfile::tempdir().unwrap();
        let (engines, workers, mut peer, epoch) = lone_peer(dir.path());
        let first = peer.raw.store().applied_index() + 1;

        // Round one, committed: k1 and k2 on disk, and one key outside the range.
        let mut batch = engines.apply_batch();
        peer.apply_entries(
            &[write(first, epoch, vec![put("k1"), put("k2"), put("m")])],
            &mut batch,
        );
        let applied = engines.commit_apply(batch).unwrap();
        peer.raw.mut_store().post_apply(&applied).unwrap();

        // Round two: put k3 and k4, delete k1, then delete [k, l) in one call.
        let (tx, rx) = tokio::sync::oneshot::channel::<KvResult>();
        let range_at = first + 3;
        let _ = peer.proposals.push(range_at, 6, Reply::Kv(tx));
        let mut batch = engines.apply_batch();
        let delete_range = WriteOp::DeleteRange {
            start: Bytes::from_static(b"k"),
            end: Bytes::from_static(b"l"),
        };
        let out = peer.apply_entries(
            &[
                write(first + 1, epoch, vec![put("k3"), put("k4")]),
                write(
                    first + 2,
                    epoch,
                    vec![WriteOp::Delete {
                        key: Bytes::from_static(b"k1"),
                    }],
                ),
                write(range_at, epoch, vec![delete_range]),
            ],
            &mut batch,
        );
        engines.commit_apply(batch).unwrap();
        for answer in out.answers {
            answer.send();
        }
        // k2 from disk, k3 and k4 from this round; k1 was already gone.
        assert_eq!(rx.blocking_recv().unwrap(), Ok(KvResponse::Deleted(3)));
        let left: Vec<Vec<u8>> = engines
            .scan(b"", b"", 100)
            .unwrap()
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(left, vec![b"m".to_vec()]);
        workers.shutdown();
    }

    /// A compare-and-swap decides on the value its own round wrote before it (held in the
    /// batch, not in the engine yet), answers with what it found, and has its apply state
    /// written with it: applied again over later writes it could decide otherwise.
    #[test]
    fn a_compare_and_swap_sees_its_round_and_is_never_replayed() {
        let dir = tempfile::tempdir().unwrap();
        let (engines, workers, mut peer, epoch) = lone_peer(dir.path());
        let first = peer.raw.store().applied_index() + 1;
        let cas = |expected: Option<&'static str>, value: &'static str| WriteOp::Cas {
            key: Bytes::from_static(b"k"),
            expected: expected.map(|e: &'static str| Bytes::from_static(e.as_bytes())),
            value: Bytes::from_static(value.as_bytes()),
        };
        let mut replies = Vec::new();
        for index in first + 1..=first + 3 {
            let (tx, rx) = tokio::sync::oneshot::channel::<KvResult>();
            let _ = peer.proposals.push(index, 6, Reply::Kv(tx));
            replies.push(rx);
        }
        let mut batch = engines.apply_batch();
        let out = peer.apply_entries(
            &[
                write(first, epoch, vec![put("k")]),
                // Sees the put above: "v" matches.
                write(first + 1, epoch, vec![cas(Some("v"), "w")]),
                // Sees "w": absent does not match.
                write(first + 2, epoch, vec![cas(None, "x")]),
                write(first + 3, epoch, vec![cas(Some("w"), "y")]),
            ],
            &mut batch,
        );
        engines.commit_apply(batch).unwrap();
        for answer in out.answers {
            answer.send();
        }
        let answers: Vec<KvResult> = replies
            .into_iter()
            .map(|rx| rx.blocking_recv().unwrap())
            .collect();
        let swapped = |swapped, previous: &'static str| {
            Ok(KvResponse::Swapped {
                swapped,
                previous: Some(Bytes::from_static(previous.as_bytes())),
            })
        };
        assert_eq!(
            answers,
            vec![swapped(true, "v"), swapped(false, "w"), swapped(true, "w")]
        );
        assert_eq!(engines.get(b"k").unwrap(), Some(b"y".to_vec()));
        let on_disk = engines.apply_state(1).unwrap().unwrap();
        assert_eq!(on_disk.applied_index, first + 3);
        workers.shutdown();
    }

    /// A cluster founded before the allocator gave peer ids `(conf_ver + 1) × 1,000,000 +
    /// store id` at each change; its first allocation must start above all of them.
    #[test]
    fn a_legacy_cluster_allocates_above_every_id_it_gave() {
        for conf_ver in [1u64, 2, 7, 1_000] {
            let region = Region {
                id: 1,
                epoch: tinykv_storage::RegionEpoch {
                    conf_ver,
                    version: 1,
                },
                ..Region::default()
            };
            // The largest id the old scheme could have given by this `conf_ver`: a change
            // proposed at `conf_ver - 1`, on the largest store id below the stride.
            let largest_given = conf_ver * 1_000_000 + 999_999;
            assert!(legacy_id_floor(&region) > largest_given);
        }
    }
}
