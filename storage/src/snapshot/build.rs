//! Building a region's snapshot file from one consistent view of the database.

use fjall::Readable;
use tinykv_raft::Entry;

use crate::engines::{Engines, KV_KEYSPACE, META_KEYSPACE, RAFT_KEYSPACE};
use crate::error::{Result, StorageError};
use crate::keys;
use crate::records::{
    CLUSTER_REGION_ID, IdAllocState, PeerState, PlacementRecord, RaftApplyState, Record,
    RegionLocalState, StoreStarted,
};
use crate::snapshot::format::{ClusterRecords, SnapshotFileWriter, SnapshotHeader};
use crate::snapshot::{SnapshotFile, generated_path, publish, tmp_path};

/// Writes the region's data at its applied index into `gen_<region>_<term>_<index>.snap`.
/// Region state, apply state, log term and data all come from one fjall snapshot, so the file
/// is exactly the state machine at that index.
pub fn build_snapshot(engines: &Engines, region_id: u64) -> Result<SnapshotFile> {
    let view = engines.db().snapshot();
    let region_key = keys::region_state_key(region_id);
    let region_state = match view.get(engines.meta(), region_key)? {
        Some(v) => RegionLocalState::decode(META_KEYSPACE, &region_key, &v)?,
        None => return Err(StorageError::RegionNotFound(region_id)),
    };
    if region_state.state != PeerState::Normal {
        return Err(StorageError::InvalidRequest(format!(
            "region {region_id} is {:?}, not Normal; no snapshot can be built",
            region_state.state
        )));
    }
    let apply_key = keys::apply_state_key(region_id);
    let apply_state = match view.get(engines.meta(), apply_key)? {
        Some(v) => RaftApplyState::decode(META_KEYSPACE, &apply_key, &v)?,
        None => {
            return Err(StorageError::corrupt(
                META_KEYSPACE,
                &apply_key,
                "apply state is missing",
            ));
        }
    };
    let index = apply_state.applied_index;
    let term = if index == apply_state.truncated_state.index {
        apply_state.truncated_state.term
    } else {
        let log_key = keys::raft_log_key(region_id, index);
        match view.get(engines.raft(), log_key)? {
            Some(v) => Entry::decode(RAFT_KEYSPACE, &log_key, &v)?.term,
            None => {
                return Err(StorageError::corrupt(
                    RAFT_KEYSPACE,
                    &log_key,
                    "the applied entry is missing from the log",
                ));
            }
        }
    };

    let region = region_state.region;
    let path = generated_path(engines.snap_dir(), region_id, term, index);
    let tmp = tmp_path(&path);
    let cluster = if region_id == CLUSTER_REGION_ID {
        cluster_records(engines, &view)?
    } else {
        ClusterRecords::default()
    };
    let header = SnapshotHeader {
        region: region.clone(),
        index,
        term,
        cluster,
    };
    let result = write_data(engines, &view, &tmp, &header);
    let (size, checksum) = match result {
        Ok(v) => v,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
    };
    publish(&tmp, &path)?;
    tracing::info!(
        region_id,
        index,
        term,
        size,
        "built snapshot {}",
        path.display()
    );
    Ok(SnapshotFile {
        path,
        size,
        checksum,
        region,
        index,
        term,
    })
}

/// Region 1's cluster records in `view`, the same point in time as its data.
fn cluster_records(engines: &Engines, view: &fjall::Snapshot) -> Result<ClusterRecords> {
    let id_alloc = match view.get(engines.meta(), keys::ID_ALLOC_KEY)? {
        Some(v) => Some(IdAllocState::decode(
            META_KEYSPACE,
            &keys::ID_ALLOC_KEY,
            &v,
        )?),
        None => None,
    };
    let mut started_stores = Vec::new();
    for guard in view.prefix(engines.meta(), keys::STORE_STARTED_MIN_KEY) {
        let (key, value) = guard.into_inner()?;
        started_stores.push(StoreStarted::decode(META_KEYSPACE, &key, &value)?.store_id);
    }
    let placement = match view.get(engines.meta(), keys::PLACEMENT_KEY)? {
        Some(v) => Some(PlacementRecord::decode(
            META_KEYSPACE,
            &keys::PLACEMENT_KEY,
            &v,
        )?),
        None => None,
    };
    Ok(ClusterRecords {
        id_alloc,
        started_stores,
        placement,
    })
}

fn write_data(
    engines: &Engines,
    view: &fjall::Snapshot,
    tmp: &std::path::Path,
    header: &SnapshotHeader,
) -> Result<(u64, u32)> {
    let mut writer = SnapshotFileWriter::create(tmp, header)?;
    let range =
        keys::data_key(&header.region.start_key)..keys::data_end_key(&header.region.end_key);
    for guard in view.range(engines.kv(), range) {
        let (key, value) = guard.into_inner()?;
        let user = keys::user_key(&key)
            .ok_or_else(|| StorageError::corrupt(KV_KEYSPACE, &key, "not a data key"))?;
        writer.add(user, &value)?;
    }
    writer.finish()
}
