//! Applying a snapshot file to a region, in steps that a crash can interrupt anywhere:
//!
//! 1. **Stage** (one batch, fsynced): the region's old log keys are deleted, the raft state
//!    points at the snapshot, the apply state is `(index, term)` and the region state is
//!    `Applying` with the snapshot's region. From here on the apply state names the file.
//! 2. **Clear** the user data in the region's range, in bounded batches.
//! 3. **Ingest** the file's pairs, in bounded batches.
//! 4. **Finish** (fsynced): the region state turns `Normal`.
//!
//! A restart that finds `Applying` redoes steps 2–4 from the file, or resets the region so that
//! its peer asks for a new snapshot (see `recovery`).

use std::path::Path;

use fjall::{OwnedWriteBatch, PersistMode, Readable};

use crate::engines::Engines;
use crate::error::{Result, StorageError};
use crate::keys;
use crate::records::{
    CLUSTER_REGION_ID, PeerState, RaftApplyState, RaftTruncatedState, Record, Region,
    RegionLocalState, StoreStarted,
};
use crate::snapshot::format::{self, SnapshotFileReader, SnapshotHeader};

/// Keys per batch while clearing or ingesting.
const BATCH_KEYS: usize = 4096;
/// Bytes per batch while ingesting: bounds memory whatever the snapshot's size.
const BATCH_BYTES: usize = 4 * 1024 * 1024;

/// Adds step 1 to `batch` (the caller writes the raft state). Returns the new apply and region
/// states.
pub(crate) fn stage(
    engines: &Engines,
    batch: &mut OwnedWriteBatch,
    region: &Region,
    index: u64,
    term: u64,
) -> Result<(RaftApplyState, RegionLocalState)> {
    delete_log(engines, batch, region.id)?;
    let apply_state = RaftApplyState {
        applied_index: index,
        truncated_state: RaftTruncatedState { index, term },
    };
    let region_state = RegionLocalState {
        state: PeerState::Applying,
        region: region.clone(),
    };
    batch.insert(
        engines.meta(),
        keys::apply_state_key(region.id),
        apply_state.encode(),
    );
    engines.put_region_state(batch, &region_state);
    Ok((apply_state, region_state))
}

/// Deletes every stored log key of the region.
pub(crate) fn delete_log(
    engines: &Engines,
    batch: &mut OwnedWriteBatch,
    region_id: u64,
) -> Result<()> {
    for guard in engines.raft().prefix(keys::raft_log_prefix(region_id)) {
        let key = guard.key()?;
        batch.remove(engines.raft(), key);
    }
    Ok(())
}

/// Applies a snapshot file outside of a Raft ready (a stopped node, a tool, a test): all four
/// steps, keeping the region's vote and raising its term and commit to the snapshot's.
pub fn apply_snapshot_file(engines: &Engines, path: &Path) -> Result<SnapshotHeader> {
    format::verify_file(path)?;
    let (_, header) = SnapshotFileReader::open(path)?;
    let region_id = header.region.id;
    let mut raft_state = engines.raft_state(region_id)?.unwrap_or_default();
    if let Some(apply) = engines.apply_state(region_id)?
        && apply.truncated_state.index >= header.index
        && engines
            .region_state(region_id)?
            .is_some_and(|s| s.state == PeerState::Normal)
    {
        return Err(StorageError::InvalidRequest(format!(
            "region {region_id} is already at index {}, snapshot is at {}",
            apply.truncated_state.index, header.index
        )));
    }
    raft_state.hard_state.term = raft_state.hard_state.term.max(header.term);
    raft_state.hard_state.commit = raft_state.hard_state.commit.max(header.index);
    raft_state.last_index = header.index;
    raft_state.last_term = header.term;
    let mut batch = engines.db().batch().durability(Some(PersistMode::SyncAll));
    stage(
        engines,
        &mut batch,
        &header.region,
        header.index,
        header.term,
    )?;
    batch.insert(
        engines.raft(),
        keys::raft_state_key(region_id),
        raft_state.encode(),
    );
    batch.commit()?;
    finish_from(engines, region_id, path)?;
    Ok(header)
}

/// Steps 2–4 for a region staged at `Applying`, from the file its apply state names.
pub(crate) fn finish(engines: &Engines, region_id: u64) -> Result<()> {
    let apply = engines.apply_state(region_id)?.ok_or_else(|| {
        StorageError::InvalidRequest(format!("region {region_id} has no staged snapshot"))
    })?;
    let (term, index) = (apply.truncated_state.term, apply.truncated_state.index);
    let path = super::find_file(engines.snap_dir(), region_id, term, index).ok_or_else(|| {
        StorageError::io(
            super::received_path(engines.snap_dir(), region_id, term, index),
            std::io::Error::from(std::io::ErrorKind::NotFound),
        )
    })?;
    format::verify_file(&path)?;
    finish_from(engines, region_id, &path)
}

fn finish_from(engines: &Engines, region_id: u64, path: &Path) -> Result<()> {
    let state = engines
        .region_state(region_id)?
        .ok_or(StorageError::RegionNotFound(region_id))?;
    if state.state != PeerState::Applying {
        return Err(StorageError::InvalidRequest(format!(
            "region {region_id} is {:?}, not Applying",
            state.state
        )));
    }
    let (mut reader, header) = SnapshotFileReader::open(path)?;
    if header.region != state.region {
        return Err(StorageError::SnapshotCorrupt {
            path: path.to_path_buf(),
            problem: format!(
                "holds region {:?}, the staged one is {:?}",
                header.region, state.region
            ),
        });
    }
    clear_range(engines, &header.region)?;
    let mut batch = engines.db().batch();
    let mut bytes = 0usize;
    while let Some((key, value)) = reader.next_record()? {
        if !header.region.contains(&key) {
            return Err(StorageError::SnapshotCorrupt {
                path: path.to_path_buf(),
                problem: format!("key {} is outside the region", keys::hex(&key)),
            });
        }
        bytes += key.len() + value.len();
        batch.insert(engines.kv(), keys::data_key(&key), value);
        if batch.len() >= BATCH_KEYS || bytes >= BATCH_BYTES {
            std::mem::replace(&mut batch, engines.db().batch()).commit()?;
            bytes = 0;
        }
    }
    batch.commit()?;
    let done = RegionLocalState {
        state: PeerState::Normal,
        region: header.region,
    };
    let mut batch = engines.db().batch().durability(Some(PersistMode::SyncAll));
    engines.put_region_state(&mut batch, &done);
    if done.region.id == CLUSTER_REGION_ID {
        // Part of region 1's state machine at the snapshot's index, which is past anything
        // this replica applied: the allocator only grows, the started stores only gain.
        if let Some(alloc) = header.cluster.id_alloc {
            batch.insert(engines.meta(), keys::ID_ALLOC_KEY, alloc.encode());
        }
        if let Some(placement) = &header.cluster.placement {
            batch.insert(engines.meta(), keys::PLACEMENT_KEY, placement.encode());
        }
        for &store_id in &header.cluster.started_stores {
            batch.insert(
                engines.meta(),
                keys::store_started_key(store_id),
                StoreStarted { store_id }.encode(),
            );
        }
    }
    batch.commit()?;
    tracing::info!(
        region_id,
        index = header.index,
        "applied snapshot {}",
        path.display()
    );
    Ok(())
}

/// Deletes the user data in the region's range, leaving keys outside it alone.
pub(crate) fn clear_range(engines: &Engines, region: &Region) -> Result<()> {
    let view = engines.db().snapshot();
    let range = keys::data_key(&region.start_key)..keys::data_end_key(&region.end_key);
    let mut batch = engines.db().batch();
    for guard in view.range(engines.kv(), range) {
        batch.remove(engines.kv(), guard.key()?);
        if batch.len() >= BATCH_KEYS {
            std::mem::replace(&mut batch, engines.db().batch()).commit()?;
        }
    }
    batch.commit()?;
    Ok(())
}
