//! What `Engines::open` does about snapshot applies a crash interrupted.

use fjall::PersistMode;

use crate::engines::Engines;
use crate::error::{Result, StorageError};
use crate::keys;
use crate::records::{PeerState, RaftLocalState, Record, RegionLocalState};
use crate::snapshot::apply;

/// Regions found in `Applying` on open, and what became of them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// The snapshot file was still there and has been applied.
    pub completed: Vec<u64>,
    /// The file was gone or damaged: the region's log and data were cleared and its peer starts
    /// uninitialized (keeping its term and vote), so the leader sends a new snapshot.
    pub needs_snapshot: Vec<u64>,
}

pub(crate) fn recover_interrupted_applies(engines: &Engines) -> Result<RecoveryReport> {
    let mut report = RecoveryReport::default();
    for state in engines.regions()? {
        if state.state != PeerState::Applying {
            continue;
        }
        let region_id = state.region.id;
        match recover_region(engines, &state)? {
            true => report.completed.push(region_id),
            false => report.needs_snapshot.push(region_id),
        }
    }
    Ok(report)
}

/// Finishes or resets one region in `Applying`; true when the snapshot got applied. Also for
/// the node, after a failed apply while running.
pub fn recover_region(engines: &Engines, state: &RegionLocalState) -> Result<bool> {
    let region_id = state.region.id;
    if engines.apply_state(region_id)?.is_none() {
        // Reset earlier; still waiting for a new snapshot.
        return Ok(false);
    }
    match apply::finish(engines, region_id) {
        Ok(()) => {
            tracing::info!(
                region_id,
                "finished a snapshot apply interrupted by a restart"
            );
            Ok(true)
        }
        Err(e @ (StorageError::Poisoned | StorageError::Engine(_) | StorageError::Locked)) => {
            Err(e)
        }
        Err(e) => {
            tracing::warn!(
                region_id,
                "cannot finish the interrupted snapshot apply ({e}); clearing the region to receive a new snapshot"
            );
            reset_for_new_snapshot(engines, state)?;
            Ok(false)
        }
    }
}

/// Leaves the region as a peer that has nothing: no data in its range, no log, no apply
/// state, commit 0, but the same term and vote (a vote must never be forgotten). The region
/// state stays `Applying` so the region is still known and still marked incomplete.
fn reset_for_new_snapshot(engines: &Engines, state: &RegionLocalState) -> Result<()> {
    let region_id = state.region.id;
    apply::clear_range(engines, &state.region)?;
    let mut raft_state = engines.raft_state(region_id)?.unwrap_or_default();
    raft_state = RaftLocalState {
        hard_state: tinykv_raft::HardState {
            commit: 0,
            ..raft_state.hard_state
        },
        last_index: 0,
        last_term: 0,
    };
    let mut batch = engines.db().batch().durability(Some(PersistMode::SyncAll));
    for guard in engines.raft().prefix(keys::raft_log_prefix(region_id)) {
        batch.remove(engines.raft(), guard.key()?);
    }
    batch.insert(
        engines.raft(),
        keys::raft_state_key(region_id),
        raft_state.encode(),
    );
    batch.remove(engines.meta(), keys::apply_state_key(region_id));
    batch.commit()?;
    Ok(())
}
