//! Group commit of Raft readies: many peers write into one [`RaftWriteBatch`], the batch is
//! committed with one fsync, and only the [`PersistedBatch`] that commit returns lets the peers
//! update their in-memory state. There is no way to reach a peer's new state without going
//! through a commit that synced.

use std::collections::HashMap;

use fjall::{OwnedWriteBatch, PersistMode};
use tinykv_raft::Entry;

use crate::engines::Engines;
use crate::error::{Result, StorageError};
use crate::records::{RaftApplyState, RaftLocalState, RegionLocalState};

/// What a peer's ready changes in memory once its batch is durable.
#[derive(Debug)]
pub(crate) struct PendingPersist {
    pub(crate) raft_state: RaftLocalState,
    /// Entries written (after dropping those at or below the truncated index).
    pub(crate) entries: Vec<Entry>,
    pub(crate) snapshot: Option<InstalledSnapshot>,
}

/// A snapshot's metadata written by a ready; its data is applied after the commit.
#[derive(Debug)]
pub(crate) struct InstalledSnapshot {
    pub(crate) apply_state: RaftApplyState,
    pub(crate) region_state: RegionLocalState,
}

/// One write batch for the readies of many peers.
pub struct RaftWriteBatch {
    pub(crate) batch: OwnedWriteBatch,
    pub(crate) pending: HashMap<u64, PendingPersist>,
}

impl RaftWriteBatch {
    pub(crate) fn new(engines: &Engines) -> RaftWriteBatch {
        RaftWriteBatch {
            batch: engines.db().batch(),
            pending: HashMap::new(),
        }
    }

    /// Number of key writes and deletes so far.
    pub fn len(&self) -> usize {
        self.batch.len()
    }

    pub fn is_empty(&self) -> bool {
        self.batch.is_empty()
    }

    /// Regions whose readies are in this batch.
    pub fn regions(&self) -> impl Iterator<Item = u64> + '_ {
        self.pending.keys().copied()
    }

    pub(crate) fn add_pending(&mut self, region_id: u64, pending: PendingPersist) -> Result<()> {
        if self.pending.contains_key(&region_id) {
            return Err(StorageError::InvalidRequest(format!(
                "region {region_id} already has a ready in this batch"
            )));
        }
        self.pending.insert(region_id, pending);
        Ok(())
    }
}

/// The proof that a batch is on disk; each peer takes its own part with
/// `PeerStorage::post_persist`.
#[derive(Debug)]
pub struct PersistedBatch {
    pub(crate) pending: HashMap<u64, PendingPersist>,
}

impl PersistedBatch {
    /// Regions whose readies were persisted and not yet taken by their peer.
    pub fn regions(&self) -> impl Iterator<Item = u64> + '_ {
        self.pending.keys().copied()
    }

    pub(crate) fn take(&mut self, region_id: u64) -> Option<PendingPersist> {
        self.pending.remove(&region_id)
    }
}

impl Engines {
    /// Opens a batch for the readies of one raft-loop round.
    pub fn raft_batch(&self) -> RaftWriteBatch {
        RaftWriteBatch::new(self)
    }

    /// Commits the batch with one fsync of the journal. Messages of the readies may be sent,
    /// and peers updated, only after this returns `Ok`.
    pub fn commit(&self, batch: RaftWriteBatch) -> Result<PersistedBatch> {
        self.pause_before_sync();
        self.commit_with(batch, PersistMode::SyncAll)
    }

    /// Like [`Engines::commit`] but only hands the batch to the OS (it survives a process crash,
    /// not a power loss). For tests and benchmarks that measure everything but the fsync.
    pub fn commit_without_fsync(&self, batch: RaftWriteBatch) -> Result<PersistedBatch> {
        self.commit_with(batch, PersistMode::Buffer)
    }

    fn commit_with(&self, batch: RaftWriteBatch, mode: PersistMode) -> Result<PersistedBatch> {
        let RaftWriteBatch { batch, pending } = batch;
        batch.durability(Some(mode)).commit()?;
        Ok(PersistedBatch { pending })
    }
}
