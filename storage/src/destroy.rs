//! What a store keeps of a region after its peer there was removed: only the region state,
//! marked `Tombstone` with the region as it stood when the removal applied. The tombstone tells
//! later messages apart: one from the region's old membership is stale and dropped, one for a
//! newer peer id means the store was added back (see tinykv-node's store). Everything else of
//! the peer (log, raft and apply state, the user data of its range) is deleted.

use fjall::PersistMode;

use crate::engines::Engines;
use crate::error::Result;
use crate::keys;
use crate::records::{PeerState, Region, RegionLocalState};
use crate::snapshot::apply::delete_log;

impl Engines {
    /// Marks `region` a tombstone on this store and deletes what its removed peer kept: the
    /// tombstone, the log and the states go in one fsynced batch, then the range's user data
    /// in chunks, so a crash part way leaves a tombstone whose leftovers
    /// [`Engines::clear_tombstone_leftovers`] deletes.
    pub fn destroy_peer_data(&self, region: &Region) -> Result<()> {
        let mut batch = self.db().batch().durability(Some(PersistMode::SyncAll));
        let tombstone = RegionLocalState {
            state: PeerState::Tombstone,
            region: region.clone(),
        };
        self.put_region_state(&mut batch, &tombstone);
        delete_log(self, &mut batch, region.id)?;
        batch.remove(self.raft(), keys::raft_state_key(region.id));
        batch.remove(self.meta(), keys::apply_state_key(region.id));
        batch.commit()?;
        crate::snapshot::apply::clear_range(self, region)
    }

    /// Deletes user data and log entries left under tombstones by a crash in
    /// [`Engines::destroy_peer_data`], where no live region of this store covers the range.
    /// A tombstone's raft state is kept: it may hold the term and vote of a peer created for
    /// the store's re-addition that has not received its snapshot yet. Returns the regions
    /// cleared.
    pub fn clear_tombstone_leftovers(&self) -> Result<Vec<u64>> {
        let states = self.regions()?;
        let live: Vec<&Region> = states
            .iter()
            .filter(|s| s.state != PeerState::Tombstone)
            .map(|s| &s.region)
            .collect();
        let mut cleared = Vec::new();
        for state in states.iter().filter(|s| s.state == PeerState::Tombstone) {
            let region = &state.region;
            if live.iter().any(|l| overlaps(l, region)) {
                continue;
            }
            let has_log = self
                .raft()
                .prefix(keys::raft_log_prefix(region.id))
                .next()
                .is_some();
            let range = keys::data_key(&region.start_key)..keys::data_end_key(&region.end_key);
            let has_data = self.kv().range(range).next().is_some();
            if !has_log && !has_data && self.apply_state(region.id)?.is_none() {
                continue;
            }
            let mut batch = self.db().batch().durability(Some(PersistMode::SyncAll));
            delete_log(self, &mut batch, region.id)?;
            batch.remove(self.meta(), keys::apply_state_key(region.id));
            batch.commit()?;
            crate::snapshot::apply::clear_range(self, region)?;
            cleared.push(region.id);
        }
        Ok(cleared)
    }
}

/// Whether two key ranges share a key (an empty end key is unbounded).
pub fn overlaps(a: &Region, b: &Region) -> bool {
    a.overlaps_range(&b.start_key, &b.end_key)
}
