//! The ready round (TiKV's poll round): for every region with work, collect its `Ready`,
//! persist all of them in one write batch and one fsync, send their messages, apply their
//! committed entries in one apply batch, then answer reads and advance.

use std::time::Instant;

use tinykv_proto::api::KvError;
use tinykv_raft::{Ready, StateRole};
use tinykv_storage::{AppliedBatch, ApplyBatch, SnapshotApplyStatus, StorageError, StoreAddress};
use tracing::{info, warn};

use super::snapshot_files::remove_received;
use super::store::Store;
use crate::apply::ApplyOutcome;

/// The readies taken in a round, by region.
type Readies = Vec<(u64, Ready)>;

impl Store {
    /// One ready round over the regions touched since the last: start their reads, persist
    /// every ready in one batch (one fsync when any needs it), send, apply in one batch, answer,
    /// advance.
    pub(super) fn process_readies(&mut self) -> Result<(), StorageError> {
        let active: Vec<u64> = if std::mem::take(&mut self.all_active) {
            self.active.clear();
            self.peers.keys().copied().collect()
        } else {
            std::mem::take(&mut self.active).into_iter().collect()
        };
        self.start_reads(&active);
        self.wake_busy_leaders(&active);
        let mut readies = self.collect_and_persist(&active)?;
        // A ready that brought a snapshot waits, its peer held, until the snapshot's data is in
        // place; those whose data now is go on with this round.
        let (installing, persisted): (Readies, Readies) =
            readies.into_iter().partition(|(_, r)| r.snapshot.is_some());
        readies = persisted;
        for (region_id, ready) in installing {
            info!(region = region_id, "installing a snapshot");
            self.installing.insert(region_id, ready);
        }
        readies.extend(self.installed_snapshots()?);
        if readies.is_empty() {
            return Ok(());
        }
        let mut apply_batch = self.engines.apply_batch();
        let mut outcomes = Vec::new();
        let started = Instant::now();
        let mut entries = 0;
        for (region_id, ready) in readies.iter_mut() {
            entries += ready.committed_entries.len() as u64;
            if let Some(outcome) = self.handle_persisted(*region_id, ready, &mut apply_batch)? {
                outcomes.push((*region_id, outcome));
            }
        }
        self.outbox.flush(&mut self.peers);
        self.metrics.data_bytes_written.inc_by(apply_batch.bytes());
        let applied = self.engines.commit_apply(apply_batch)?;
        if entries > 0 {
            self.metrics.committed_entries.inc_by(entries);
            self.metrics.applied_entries.inc_by(entries);
            self.metrics
                .apply_duration
                .observe(started.elapsed().as_secs_f64());
        }
        for (region_id, outcome) in outcomes {
            for waited in &outcome.proposal_waits {
                self.metrics.proposal_duration.observe(waited.as_secs_f64());
            }
            self.after_apply(region_id, outcome, &applied)?;
        }
        self.advance(readies)
    }

    /// Starts a ReadIndex round for every leader with reads waiting; anyone else fails them.
    fn start_reads(&mut self, active: &[u64]) {
        for region_id in active {
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
    }

    /// Takes the ready of every active region, writes them all in one batch and commits it,
    /// fsynced when any of them must be; a leader's appends go out before the fsync.
    fn collect_and_persist(&mut self, active: &[u64]) -> Result<Readies, StorageError> {
        let mut readies: Readies = Vec::new();
        let mut batch = self.engines.raft_batch();
        let mut must_sync = false;
        for &region_id in active {
            let Some(peer) = self.peers.get_mut(&region_id) else {
                continue;
            };
            if self.installing.contains_key(&region_id) || !peer.raw.has_ready() {
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
        // The leader's appends leave before the fsync below.
        self.outbox.flush(&mut self.peers);
        if readies.is_empty() {
            return Ok(readies);
        }
        let log_bytes: u64 = readies
            .iter()
            .flat_map(|(_, r)| &r.entries)
            .map(|e| e.data.len() as u64)
            .sum();
        self.metrics.log_bytes_written.inc_by(log_bytes);
        let mut persisted = if must_sync {
            let started = Instant::now();
            let persisted = self.engines.commit(batch)?;
            self.metrics
                .fsync_duration
                .observe(started.elapsed().as_secs_f64());
            persisted
        } else {
            self.engines.commit_without_fsync(batch)?
        };
        for (region_id, _) in &readies {
            if let Some(peer) = self.peers.get_mut(region_id) {
                peer.raw.mut_store().post_persist(&mut persisted)?;
            }
        }
        Ok(readies)
    }

    /// The readies whose snapshot's data the snapshot worker has finished writing, with the
    /// peer brought up to the snapshot's region. Stops the store when an install failed: the
    /// region's data would be neither the old nor the new.
    fn installed_snapshots(&mut self) -> Result<Readies, StorageError> {
        let mut done = Vec::new();
        let regions: Vec<u64> = self.installing.keys().copied().collect();
        for region_id in regions {
            let Some(peer) = self.peers.get_mut(&region_id) else {
                self.installing.remove(&region_id);
                continue;
            };
            match peer.raw.mut_store().snapshot_apply_status() {
                SnapshotApplyStatus::Applying => continue,
                SnapshotApplyStatus::Failed(e) => return Err(e),
                status => {
                    info!(region = region_id, ?status, "snapshot installed");
                    self.metrics.snapshots_applied.inc();
                }
            }
            let Some(ready) = self.installing.remove(&region_id) else {
                continue;
            };
            if let Some(snap) = &ready.snapshot {
                let m = &snap.metadata;
                remove_received(&tinykv_storage::snapshot::received_path(
                    self.engines.snap_dir(),
                    region_id,
                    m.term,
                    m.index,
                ));
            }
            for p in peer.region().peers.clone() {
                peer.remember_peer(p);
            }
            // The install wrote the snapshot's apply state.
            peer.apply_state_written = peer.raw.store().applied_index();
            self.ranges.insert(peer.region());
            // The snapshot replaced the state machine, the allocator of region 1 with it.
            peer.next_id = None;
            self.active.insert(region_id);
            done.push((region_id, ready));
        }
        Ok(done)
    }

    /// What follows a region's persisted ready (and installed snapshot): its role change, its
    /// messages, its confirmed reads, and its committed entries applied into `apply_batch`.
    fn handle_persisted(
        &mut self,
        region_id: u64,
        ready: &mut Ready,
        apply_batch: &mut ApplyBatch,
    ) -> Result<Option<ApplyOutcome>, StorageError> {
        let Some(peer) = self.peers.get_mut(&region_id) else {
            return Ok(None);
        };
        if let Some(ss) = ready.soft_state {
            let was_leader = peer.is_leader();
            peer.leader_peer = ss.leader_id;
            peer.role = ss.role;
            if was_leader && ss.role != StateRole::Leader {
                let err = KvError::NotLeader {
                    region_id,
                    leader: None,
                };
                peer.fail_reads(&err);
                // Their entries may still commit under the next leader or vanish: the outcome
                // is unknown, and waiting for a log that may never reach their indices would
                // leave callers hanging.
                for p in peer.proposals.take_all() {
                    p.fail(KvError::StaleCommand);
                }
            }
            if ss.role == StateRole::Leader {
                info!(region = region_id, peer = peer.meta.id, "became leader");
            }
        }
        let msgs = std::mem::take(&mut ready.messages);
        self.outbox.send(peer, msgs);
        for rs in std::mem::take(&mut ready.read_states) {
            peer.reads.confirm(&rs.request_ctx, rs.index);
        }
        // `advance` learns the applied index from these entries: leave them in the ready.
        if ready.committed_entries.is_empty() {
            return Ok(None);
        }
        Ok(Some(
            peer.apply_entries(&ready.committed_entries, apply_batch),
        ))
    }

    /// Once the apply batch is written: the store-wide effects of a region's applied entries
    /// (new regions, started stores, learned addresses), then the answers to their proposals.
    fn after_apply(
        &mut self,
        region_id: u64,
        outcome: ApplyOutcome,
        applied: &AppliedBatch,
    ) -> Result<(), StorageError> {
        let mut was_leader = false;
        if let Some(peer) = self.peers.get_mut(&region_id) {
            peer.raw.mut_store().post_apply(applied)?;
            was_leader = peer.is_leader();
        }
        for split in outcome.splits {
            self.on_split_applied(split, was_leader)?;
        }
        self.splits
            .note_growth(region_id, self.peers.get(&region_id));
        if let Some(record) = outcome.placement {
            self.on_placement_record_applied(record);
        }
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
        Ok(())
    }

    /// Serves the reads the applied state now covers, advances every ready, and destroys
    /// the peers that learned they were removed.
    fn advance(&mut self, readies: Readies) -> Result<(), StorageError> {
        for (region_id, ready) in readies {
            let Some(peer) = self.peers.get_mut(&region_id) else {
                continue;
            };
            let applied_index = peer.raw.store().applied_index();
            for read in peer.reads.ready(applied_index) {
                let _ =
                    read.reply
                        .send(peer.read(&self.engines, &self.views, &read.op, read.epoch));
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
