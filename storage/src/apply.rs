//! Applying committed entries: user writes of a region and its new apply state (and region
//! state, after a membership change) go into one atomic batch.
//!
//! The batch is handed to the OS but not fsynced: every write it holds is also in the Raft log,
//! which was fsynced before the entries were handed out for apply, and the journal is a single
//! ordered file, so a lost apply batch is simply re-applied from the log on restart.

use std::collections::HashMap;

use fjall::{OwnedWriteBatch, PersistMode};

use crate::engines::Engines;
use crate::error::{Result, StorageError};
use crate::keys;
use crate::records::{
    RaftApplyState, RaftLocalState, Record, Region, RegionLocalState, StoreAddress,
};

/// User writes and state updates of any number of regions, committed atomically.
pub struct ApplyBatch {
    batch: OwnedWriteBatch,
    engines: Engines,
    apply_states: HashMap<u64, RaftApplyState>,
    region_states: HashMap<u64, RegionLocalState>,
    /// User key and value bytes put and deleted (for the node's metrics).
    bytes: u64,
}

impl ApplyBatch {
    /// Writes `value` under the user key; the key must be in the region's range.
    pub fn put(&mut self, region: &Region, key: &[u8], value: &[u8]) -> Result<()> {
        check_in_region(region, key)?;
        self.batch
            .insert(self.engines.kv(), keys::data_key(key), value);
        self.bytes += (key.len() + value.len()) as u64;
        Ok(())
    }

    /// Deletes the user key; the key must be in the region's range.
    pub fn delete(&mut self, region: &Region, key: &[u8]) -> Result<()> {
        check_in_region(region, key)?;
        self.batch.remove(self.engines.kv(), keys::data_key(key));
        self.bytes += key.len() as u64;
        Ok(())
    }

    /// Records how far the region has applied (and, after a `CompactLog`, its new truncated
    /// state). The last call for a region wins.
    pub fn set_apply_state(&mut self, region_id: u64, state: RaftApplyState) {
        self.batch.insert(
            self.engines.meta(),
            keys::apply_state_key(region_id),
            state.encode(),
        );
        self.apply_states.insert(region_id, state);
    }

    /// Records how far the region has applied for the peer to pick up, without writing it: after
    /// a crash the region applies again from the apply state last written. Only for entries
    /// that may be applied twice: puts and deletes, replayed in log order over data that already
    /// holds their effect, leave the same data.
    pub fn note_apply_state(&mut self, region_id: u64, state: RaftApplyState) {
        self.apply_states.insert(region_id, state);
    }

    /// Records a region's new shape (membership change, split).
    pub fn set_region_state(&mut self, state: RegionLocalState) {
        self.engines.put_region_state(&mut self.batch, &state);
        self.region_states.insert(state.region.id, state);
    }

    /// Writes a region created by a split on this store: its region state and the initial
    /// Raft and apply states a bootstrapped region starts with (log, commit and applied index at
    /// `RAFT_INIT_LOG_INDEX`), so the new peer starts where every replica of it starts.
    pub fn init_split_region(&mut self, region: &Region) {
        let raft_state = RaftLocalState::initial();
        let apply_state = RaftApplyState::initial();
        self.batch.insert(
            self.engines.raft(),
            keys::raft_state_key(region.id),
            raft_state.encode(),
        );
        self.set_apply_state(region.id, apply_state);
        self.set_region_state(RegionLocalState {
            state: crate::records::PeerState::Normal,
            region: region.clone(),
        });
    }

    /// Records a store's address with the membership change that introduced it.
    pub fn set_store_addr(&mut self, rec: &StoreAddress) {
        self.batch.insert(
            self.engines.meta(),
            keys::store_addr_key(rec.store_id),
            rec.encode(),
        );
    }

    /// Records that `store_id` has run (see [`crate::records::StoreStarted`]).
    pub fn set_store_started(&mut self, store_id: u64) {
        self.batch.insert(
            self.engines.meta(),
            keys::store_started_key(store_id),
            crate::records::StoreStarted { store_id }.encode(),
        );
    }

    /// Records the placement driver's new record (region 1's).
    pub fn set_placement(&mut self, record: &crate::records::PlacementRecord) {
        self.batch
            .insert(self.engines.meta(), keys::PLACEMENT_KEY, record.encode());
    }

    /// Records the id allocator's new state (region 1's allocations).
    pub fn set_id_alloc(&mut self, state: crate::records::IdAllocState) {
        self.batch
            .insert(self.engines.meta(), keys::ID_ALLOC_KEY, state.encode());
    }

    /// User key and value bytes written so far (puts and deletes).
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    pub fn len(&self) -> usize {
        self.batch.len()
    }

    pub fn is_empty(&self) -> bool {
        self.batch.is_empty()
    }
}

/// What an apply batch changed, for the peers to pick up with `PeerStorage::post_apply`.
#[derive(Debug, Default)]
pub struct AppliedBatch {
    pub(crate) apply_states: HashMap<u64, RaftApplyState>,
    pub(crate) region_states: HashMap<u64, RegionLocalState>,
}

impl AppliedBatch {
    pub fn apply_state(&self, region_id: u64) -> Option<&RaftApplyState> {
        self.apply_states.get(&region_id)
    }

    pub fn region_state(&self, region_id: u64) -> Option<&RegionLocalState> {
        self.region_states.get(&region_id)
    }
}

impl Engines {
    pub fn apply_batch(&self) -> ApplyBatch {
        ApplyBatch {
            batch: self.db().batch(),
            engines: self.clone(),
            apply_states: HashMap::new(),
            region_states: HashMap::new(),
            bytes: 0,
        }
    }

    /// Commits an apply batch atomically, without an fsync (see the module docs).
    pub fn commit_apply(&self, batch: ApplyBatch) -> Result<AppliedBatch> {
        let ApplyBatch {
            batch,
            apply_states,
            region_states,
            ..
        } = batch;
        batch.durability(Some(PersistMode::Buffer)).commit()?;
        Ok(AppliedBatch {
            apply_states,
            region_states,
        })
    }
}

fn check_in_region(region: &Region, key: &[u8]) -> Result<()> {
    if region.contains(key) {
        return Ok(());
    }
    Err(StorageError::KeyNotInRegion {
        region_id: region.id,
        key: keys::hex(key),
        start: keys::hex(&region.start_key),
        end: keys::hex(&region.end_key),
    })
}

impl RaftApplyState {
    /// Moves the truncated state to `(index, term)` for a `CompactLog` command. Returns false,
    /// changing nothing, when the log is already compacted that far or `index` is not applied.
    pub fn compact_to(&mut self, index: u64, term: u64) -> bool {
        if index <= self.truncated_state.index || index > self.applied_index {
            return false;
        }
        self.truncated_state = crate::records::RaftTruncatedState { index, term };
        true
    }
}
