//! `PeerStorage`: one region peer's view of the engines. It answers Raft's reads
//! ([`tinykv_raft::Storage`]), writes the peer's readies into a group-commit batch, and keeps
//! the in-memory copies of the raft and apply states in step with what is durable.

use std::sync::Mutex;
use std::sync::mpsc::{Receiver, TryRecvError};

use tinykv_raft::{ConfState, Entry, HardState, RaftState, Ready, Snapshot, SnapshotMetadata};

use crate::apply::AppliedBatch;
use crate::engines::{Engines, RAFT_KEYSPACE};
use crate::entry_cache::EntryCache;
use crate::error::{Result, StorageError};
use crate::keys;
use crate::log_gc::LogGcTask;
use crate::records::{
    PeerState, RaftApplyState, RaftLocalState, RaftTruncatedState, Record, Region,
};
use crate::snapshot::{self, SnapshotDescriptor, SnapshotFile};
use crate::workers::WorkerHandles;
use crate::write_batch::{InstalledSnapshot, PendingPersist, PersistedBatch, RaftWriteBatch};

/// How many bytes of the log's tail stay in memory.
const ENTRY_CACHE_BYTES: u64 = 4 * 1024 * 1024;
/// Failed generations in a row after which `snapshot` reports an error instead of retrying.
const MAX_SNAPSHOT_GEN_FAILURES: usize = 5;

#[derive(Default)]
struct SnapshotGen {
    /// A build the snapshot worker has not finished.
    pending: Option<Receiver<Result<SnapshotFile>>>,
    /// A finished build's result, until Raft asks for a snapshot again.
    built: Option<Result<SnapshotFile>>,
    failures: usize,
}

impl SnapshotGen {
    /// Takes a finished build's result off its channel.
    fn poll(&mut self) {
        let Some(rx) = &self.pending else {
            return;
        };
        self.built = match rx.try_recv() {
            Err(TryRecvError::Empty) => return,
            Ok(result) => Some(result),
            Err(TryRecvError::Disconnected) => Some(Err(StorageError::WorkerStopped("snapshot"))),
        };
        self.pending = None;
    }
}

/// Progress of a snapshot apply started by a persisted ready.
#[derive(Debug)]
pub enum SnapshotApplyStatus {
    /// No apply in progress.
    Idle,
    /// The worker is still applying: do not apply committed entries of this region yet.
    Applying,
    /// The region's data is the snapshot's; the region state is `Normal` again.
    Finished,
    /// The apply failed; the region stays `Applying`. `recover_region` either finishes it or
    /// resets the region so that its peer, recreated, asks for a new snapshot.
    Failed(StorageError),
}

/// The storage of one region peer.
pub struct PeerStorage {
    engines: Engines,
    workers: WorkerHandles,
    region: Region,
    peer_state: PeerState,
    /// False for a peer that has no data yet (created for a message, or reset after a failed
    /// snapshot apply): its membership is empty until a snapshot arrives.
    initialized: bool,
    raft_state: RaftLocalState,
    apply_state: RaftApplyState,
    cache: EntryCache,
    snapshot_gen: Mutex<SnapshotGen>,
    applying: Option<Receiver<Result<()>>>,
    /// The lowest log index that may still be stored; 0 when unknown (GC then seeks).
    gc_from: u64,
}

impl std::fmt::Debug for PeerStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerStorage")
            .field("region", &self.region.id)
            .field("peer_state", &self.peer_state)
            .field("raft_state", &self.raft_state)
            .field("apply_state", &self.apply_state)
            .finish_non_exhaustive()
    }
}

impl PeerStorage {
    /// The storage of a region stored on this node (bootstrapped, or filled by a snapshot).
    pub fn open(engines: Engines, workers: WorkerHandles, region_id: u64) -> Result<PeerStorage> {
        let state = engines
            .region_state(region_id)?
            .ok_or(StorageError::RegionNotFound(region_id))?;
        if state.state == PeerState::Tombstone {
            return Err(StorageError::InvalidRequest(format!(
                "region {region_id} is a tombstone on this store"
            )));
        }
        let raft_state = engines.raft_state(region_id)?.unwrap_or_default();
        let apply_state = engines.apply_state(region_id)?;
        let mut ps = PeerStorage::with_states(engines, workers, state.region, raft_state);
        ps.peer_state = state.state;
        match apply_state {
            Some(apply_state) => {
                ps.apply_state = apply_state;
                ps.initialized = true;
                ps.check_log_bounds()?;
                if ps.peer_state == PeerState::Applying {
                    // Staged but not finished (a failed apply while running): try again.
                    ps.applying = Some(ps.workers.snapshot.apply(region_id)?);
                }
            }
            None if ps.peer_state == PeerState::Applying => {
                // Reset after a lost snapshot: a peer with nothing, waiting for a new one.
            }
            None => {
                return Err(StorageError::corrupt(
                    crate::engines::META_KEYSPACE,
                    &keys::apply_state_key(region_id),
                    format!("apply state of region {region_id} is missing"),
                ));
            }
        }
        Ok(ps)
    }

    /// The storage of a peer created for a message from a region this node does not have yet:
    /// empty log, empty membership, and only a previously persisted term and vote kept.
    pub fn new_uninitialized(
        engines: Engines,
        workers: WorkerHandles,
        region_id: u64,
    ) -> Result<PeerStorage> {
        // Over a tombstone: the store was added back under a newer peer id. The tombstone stays
        // until the snapshot that fills the new peer replaces it.
        if engines
            .region_state(region_id)?
            .is_some_and(|s| s.state != PeerState::Tombstone)
        {
            return Err(StorageError::RegionExists(region_id));
        }
        let hard_state = engines
            .raft_state(region_id)?
            .map(|s| s.hard_state)
            .unwrap_or_default();
        let raft_state = RaftLocalState {
            hard_state: HardState {
                commit: 0,
                ..hard_state
            },
            last_index: 0,
            last_term: 0,
        };
        let region = Region {
            id: region_id,
            ..Region::default()
        };
        Ok(PeerStorage::with_states(
            engines, workers, region, raft_state,
        ))
    }

    fn with_states(
        engines: Engines,
        workers: WorkerHandles,
        region: Region,
        raft_state: RaftLocalState,
    ) -> PeerStorage {
        PeerStorage {
            engines,
            workers,
            region,
            peer_state: PeerState::Normal,
            initialized: false,
            raft_state,
            apply_state: RaftApplyState::default(),
            cache: EntryCache::new(ENTRY_CACHE_BYTES),
            snapshot_gen: Mutex::new(SnapshotGen::default()),
            applying: None,
            gc_from: 0,
        }
    }

    /// The stored log must reach the truncated index and end with `last_term`.
    fn check_log_bounds(&self) -> Result<()> {
        let key = keys::raft_state_key(self.region.id);
        let truncated = self.apply_state.truncated_state;
        let RaftLocalState {
            last_index,
            last_term,
            ..
        } = self.raft_state;
        if last_index < truncated.index {
            return Err(StorageError::corrupt(
                RAFT_KEYSPACE,
                &key,
                format!(
                    "last index {last_index} is below the truncated index {}",
                    truncated.index
                ),
            ));
        }
        let stored_term = if last_index == truncated.index {
            truncated.term
        } else {
            self.read_entry(last_index)?.term
        };
        if stored_term != last_term {
            return Err(StorageError::corrupt(
                RAFT_KEYSPACE,
                &key,
                format!(
                    "last term {last_term} but the entry at {last_index} has term {stored_term}"
                ),
            ));
        }
        Ok(())
    }

    pub fn engines(&self) -> &Engines {
        &self.engines
    }

    pub fn region(&self) -> &Region {
        &self.region
    }

    pub fn region_id(&self) -> u64 {
        self.region.id
    }

    pub fn peer_state(&self) -> PeerState {
        self.peer_state
    }

    pub fn is_initialized(&self) -> bool {
        self.initialized
    }

    pub fn raft_state(&self) -> &RaftLocalState {
        &self.raft_state
    }

    pub fn apply_state(&self) -> &RaftApplyState {
        &self.apply_state
    }

    pub fn applied_index(&self) -> u64 {
        self.apply_state.applied_index
    }

    pub fn truncated_state(&self) -> RaftTruncatedState {
        self.apply_state.truncated_state
    }

    /// True from a persisted snapshot until its data is in place; the region's committed
    /// entries must wait.
    pub fn is_applying_snapshot(&self) -> bool {
        self.applying.is_some()
    }

    /// Adds this peer's ready to the batch: a snapshot's metadata (the old log goes, the region
    /// turns `Applying`), the entries (those at or below the truncated index skipped, stored
    /// entries past the new last index deleted), and the raft state with the hard state.
    /// Nothing changes in memory until [`PeerStorage::post_persist`].
    pub fn save_ready(&self, wb: &mut RaftWriteBatch, ready: &Ready) -> Result<()> {
        let region_id = self.region.id;
        let mut raft_state = self.raft_state;
        let mut truncated = self.apply_state.truncated_state;
        let mut installed = None;
        if let Some(snap) = ready.snapshot.as_ref().filter(|s| !s.is_empty()) {
            let (index, term) = (snap.metadata.index, snap.metadata.term);
            if index <= truncated.index {
                return Err(StorageError::InvalidRequest(format!(
                    "snapshot at {index} is not past the truncated index {}",
                    truncated.index
                )));
            }
            let desc = SnapshotDescriptor::decode(&snap.data)?;
            if desc.region.id != region_id || desc.index != index || desc.term != term {
                return Err(StorageError::InvalidRequest(format!(
                    "snapshot of region {} at ({}, {}) handed to region {region_id} at ({index}, {term})",
                    desc.region.id, desc.index, desc.term
                )));
            }
            if snapshot::find_file(self.engines.snap_dir(), region_id, term, index).is_none() {
                return Err(StorageError::InvalidRequest(format!(
                    "snapshot file for region {region_id} at ({index}, {term}) has not been received"
                )));
            }
            let (apply_state, region_state) =
                snapshot::apply::stage(&self.engines, &mut wb.batch, &desc.region, index, term)?;
            truncated = apply_state.truncated_state;
            raft_state.last_index = index;
            raft_state.last_term = term;
            installed = Some(InstalledSnapshot {
                apply_state,
                region_state,
            });
        }

        let mut entries = ready.entries.as_slice();
        for pair in entries.windows(2) {
            if pair[1].index != pair[0].index + 1 {
                return Err(StorageError::InvalidRequest(format!(
                    "entries are not contiguous: {} then {}",
                    pair[0].index, pair[1].index
                )));
            }
        }
        let skip = entries
            .iter()
            .take_while(|e| e.index <= truncated.index)
            .count();
        entries = &entries[skip..];
        if let (Some(first), Some(last)) = (entries.first(), entries.last()) {
            if first.index > raft_state.last_index + 1 {
                return Err(StorageError::InvalidRequest(format!(
                    "appending at {} leaves a gap after the last index {}",
                    first.index, raft_state.last_index
                )));
            }
            for e in entries {
                wb.batch.insert(
                    self.engines.raft(),
                    keys::raft_log_key(region_id, e.index),
                    e.encode(),
                );
            }
            // Entries past the new end came from an older leader and may never commit.
            for index in last.index + 1..=raft_state.last_index {
                wb.batch
                    .remove(self.engines.raft(), keys::raft_log_key(region_id, index));
            }
            raft_state.last_index = last.index;
            raft_state.last_term = last.term;
        }
        if let Some(hs) = ready.hard_state {
            raft_state.hard_state = hs;
        }
        // What `Engines::raft_state` cannot read back from the log and the apply state: the
        // term and vote, and an end of the log that moved back. Appends and commits alone
        // leave the record as it was (one write less per region per round).
        let (old, new) = (&self.raft_state, &raft_state);
        let must_write = installed.is_some()
            || new.hard_state.term != old.hard_state.term
            || new.hard_state.vote != old.hard_state.vote
            || new.last_index < old.last_index;
        if must_write {
            wb.batch.insert(
                self.engines.raft(),
                keys::raft_state_key(region_id),
                raft_state.encode(),
            );
        }
        wb.add_pending(
            region_id,
            PendingPersist {
                raft_state,
                entries: entries.to_vec(),
                snapshot: installed,
            },
        )
    }

    /// Takes this peer's part of a committed batch into memory. Returns false when the batch
    /// held nothing for this peer. After a snapshot, its data apply is started on the snapshot
    /// worker; poll [`PeerStorage::snapshot_apply_status`].
    pub fn post_persist(&mut self, persisted: &mut PersistedBatch) -> Result<bool> {
        let Some(pending) = persisted.take(self.region.id) else {
            return Ok(false);
        };
        if let Some(snap) = pending.snapshot {
            self.apply_state = snap.apply_state;
            self.region = snap.region_state.region;
            self.peer_state = snap.region_state.state;
            self.initialized = true;
            self.cache.clear();
            self.gc_from = snap.apply_state.truncated_state.index + 1;
            *self.lock_gen() = SnapshotGen::default();
            self.applying = Some(self.workers.snapshot.apply(self.region.id)?);
        }
        self.raft_state = pending.raft_state;
        self.cache.append(&pending.entries);
        Ok(true)
    }

    /// Where the snapshot apply started by `post_persist` stands, without waiting.
    pub fn snapshot_apply_status(&mut self) -> SnapshotApplyStatus {
        let Some(rx) = &self.applying else {
            return SnapshotApplyStatus::Idle;
        };
        let outcome = match rx.try_recv() {
            Err(TryRecvError::Empty) => return SnapshotApplyStatus::Applying,
            Err(TryRecvError::Disconnected) => Err(StorageError::WorkerStopped("snapshot")),
            Ok(result) => result,
        };
        self.finish_applying(outcome)
    }

    /// Blocks until the snapshot apply started by `post_persist` ends (`Idle` if none).
    pub fn wait_snapshot_apply(&mut self) -> SnapshotApplyStatus {
        let Some(rx) = &self.applying else {
            return SnapshotApplyStatus::Idle;
        };
        let outcome = rx
            .recv()
            .unwrap_or(Err(StorageError::WorkerStopped("snapshot")));
        self.finish_applying(outcome)
    }

    fn finish_applying(&mut self, outcome: Result<()>) -> SnapshotApplyStatus {
        self.applying = None;
        match outcome {
            Ok(()) => {
                self.peer_state = PeerState::Normal;
                SnapshotApplyStatus::Finished
            }
            Err(e) => SnapshotApplyStatus::Failed(e),
        }
    }

    /// Takes this region's new apply state (and region state) from a committed apply batch.
    /// When the truncated index moved (a `CompactLog` was applied), the entries below it are
    /// dropped from the cache and handed to log GC.
    pub fn post_apply(&mut self, applied: &AppliedBatch) -> Result<()> {
        let region_id = self.region.id;
        if let Some(state) = applied.region_state(region_id) {
            self.region = state.region.clone();
            self.peer_state = state.state;
        }
        let Some(&apply_state) = applied.apply_state(region_id) else {
            return Ok(());
        };
        let old = self.apply_state.truncated_state;
        self.apply_state = apply_state;
        let truncated = apply_state.truncated_state;
        if truncated.index > old.index {
            self.cache.compact_to(truncated.index + 1);
            let task = LogGcTask {
                region_id,
                start: self.gc_from,
                end: truncated.index + 1,
            };
            self.workers.log_gc.schedule(task)?;
            self.gc_from = truncated.index + 1;
        }
        Ok(())
    }

    /// Whether a snapshot of this region is being built (a split waits until it is done, so a
    /// snapshot never mixes the region before and after).
    pub fn is_generating_snapshot(&self) -> bool {
        let mut state = self.lock_gen();
        // A build that finished is not in progress, even before Raft takes it (it may never:
        // the peer that needed it can catch up or leave meanwhile).
        state.poll();
        state.pending.is_some()
    }

    fn lock_gen(&self) -> std::sync::MutexGuard<'_, SnapshotGen> {
        // The state is a receiver and a counter: still valid after a panic elsewhere.
        self.snapshot_gen.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn read_entry(&self, index: u64) -> Result<Entry> {
        let key = keys::raft_log_key(self.region.id, index);
        match self.engines.raft().get(key)? {
            Some(v) => Entry::decode(RAFT_KEYSPACE, &key, &v),
            None => Err(StorageError::corrupt(
                RAFT_KEYSPACE,
                &key,
                format!(
                    "log entry {index} is missing (truncated {}, last {})",
                    self.apply_state.truncated_state.index, self.raft_state.last_index
                ),
            )),
        }
    }

    /// Reads `[low, high)` from disk into `out` until `budget` says stop; false when stopped.
    fn read_entries(
        &self,
        low: u64,
        high: u64,
        out: &mut Vec<Entry>,
        budget: &mut SizeBudget,
    ) -> Result<bool> {
        let region_id = self.region.id;
        let mut expected = low;
        let range = keys::raft_log_key(region_id, low)..keys::raft_log_key(region_id, high);
        for guard in self.engines.raft().range(range) {
            let (key, value) = guard.into_inner()?;
            let entry = Entry::decode(RAFT_KEYSPACE, &key, &value)?;
            if entry.index != expected {
                return Err(StorageError::corrupt(
                    RAFT_KEYSPACE,
                    &key,
                    format!("expected log entry {expected}, found {}", entry.index),
                ));
            }
            if !budget.take(&entry, out.is_empty()) {
                return Ok(false);
            }
            out.push(entry);
            expected += 1;
        }
        if expected != high {
            return Err(StorageError::corrupt(
                RAFT_KEYSPACE,
                &keys::raft_log_key(region_id, expected),
                format!("log entry {expected} is missing"),
            ));
        }
        Ok(true)
    }

    fn snapshot_from_file(&self, file: &SnapshotFile) -> Snapshot {
        Snapshot {
            data: file.descriptor().encode(),
            metadata: SnapshotMetadata {
                conf_state: crate::records::conf_state(&file.region),
                index: file.index,
                term: file.term,
            },
        }
    }
}

/// The `max_size` rule of `Storage::entries`: at least one entry, then stop before the total
/// passes the limit.
struct SizeBudget {
    max: Option<u64>,
    used: u64,
}

impl SizeBudget {
    fn take(&mut self, entry: &Entry, first: bool) -> bool {
        let Some(max) = self.max else {
            return true;
        };
        self.used += entry.size();
        first || self.used <= max
    }
}

impl tinykv_raft::Storage for PeerStorage {
    fn initial_state(&self) -> tinykv_raft::StorageResult<RaftState> {
        let conf_state = if self.initialized {
            crate::records::conf_state(&self.region)
        } else {
            ConfState::default()
        };
        Ok(RaftState {
            hard_state: self.raft_state.hard_state,
            conf_state,
        })
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: Option<u64>,
    ) -> tinykv_raft::StorageResult<Vec<Entry>> {
        if low <= self.apply_state.truncated_state.index {
            return Err(tinykv_raft::StorageError::Compacted);
        }
        if high > self.raft_state.last_index + 1 {
            return Err(tinykv_raft::StorageError::Unavailable);
        }
        let mut out = Vec::new();
        if low >= high {
            return Ok(out);
        }
        let mut budget = SizeBudget {
            max: max_size,
            used: 0,
        };
        let cache_first = self.cache.first_index().unwrap_or(high).clamp(low, high);
        if low < cache_first && !self.read_entries(low, cache_first, &mut out, &mut budget)? {
            return Ok(out);
        }
        if cache_first < high {
            let cached = self.cache.range(cache_first, high).ok_or_else(|| {
                StorageError::InvalidRequest(format!(
                    "entry cache does not cover [{cache_first}, {high})"
                ))
            })?;
            for entry in cached {
                if !budget.take(entry, out.is_empty()) {
                    break;
                }
                out.push(entry.clone());
            }
        }
        Ok(out)
    }

    fn term(&self, index: u64) -> tinykv_raft::StorageResult<u64> {
        let truncated = self.apply_state.truncated_state;
        if index == truncated.index {
            return Ok(truncated.term);
        }
        if index < truncated.index {
            return Err(tinykv_raft::StorageError::Compacted);
        }
        if index > self.raft_state.last_index {
            return Err(tinykv_raft::StorageError::Unavailable);
        }
        if let Some(e) = self.cache.get(index) {
            return Ok(e.term);
        }
        Ok(self.read_entry(index)?.term)
    }

    fn first_index(&self) -> tinykv_raft::StorageResult<u64> {
        Ok(self.apply_state.truncated_state.index + 1)
    }

    fn last_index(&self) -> tinykv_raft::StorageResult<u64> {
        Ok(self.raft_state.last_index)
    }

    fn snapshot(&self, request_index: u64) -> tinykv_raft::StorageResult<Snapshot> {
        let mut state = self.lock_gen();
        state.poll();
        if state.pending.is_some() {
            return Err(tinykv_raft::StorageError::SnapshotTemporarilyUnavailable);
        }
        match state.built.take() {
            None => {}
            Some(Ok(file))
                if file.index >= request_index
                    && file.index >= self.apply_state.truncated_state.index =>
            {
                *state = SnapshotGen::default();
                return Ok(self.snapshot_from_file(&file));
            }
            Some(Ok(file)) => {
                tracing::debug!(
                    region_id = self.region.id,
                    index = file.index,
                    request_index,
                    "generated snapshot is stale; generating another"
                );
            }
            Some(Err(e @ StorageError::WorkerStopped(_))) => return Err(e.into()),
            Some(Err(e)) => {
                state.failures += 1;
                if state.failures >= MAX_SNAPSHOT_GEN_FAILURES {
                    state.failures = 0;
                    return Err(e.into());
                }
            }
        }
        state.pending = Some(self.workers.snapshot.generate(self.region.id)?);
        Err(tinykv_raft::StorageError::SnapshotTemporarilyUnavailable)
    }
}
