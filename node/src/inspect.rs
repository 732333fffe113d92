//! Reading a store's Raft state straight from its data dir, for a stopped node. The running
//! node's admin service answers with the same builders, so online and offline output agree.

use tinykv_proto::api::{LogEntryInfo, RaftStateInfo};
use tinykv_storage::{Engines, RaftApplyState, RaftLocalState, StorageError};

/// Builds the state record from what storage holds.
pub fn raft_state_info(
    region: u64,
    peer: u64,
    raft_state: &RaftLocalState,
    apply_state: &RaftApplyState,
) -> RaftStateInfo {
    RaftStateInfo {
        region,
        peer,
        term: raft_state.hard_state.term,
        vote: raft_state.hard_state.vote,
        commit: raft_state.hard_state.commit,
        applied: apply_state.applied_index,
        truncated_index: apply_state.truncated_state.index,
        truncated_term: apply_state.truncated_state.term,
        last_index: raft_state.last_index,
        last_term: raft_state.last_term,
    }
}

/// Why an offline read failed.
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("region {0} is not in this data dir")]
    RegionNotFound(u64),
}

/// The Raft state of `region` as persisted in `engines`.
pub fn raft_state(engines: &Engines, region: u64) -> Result<RaftStateInfo, InspectError> {
    let state = engines
        .region_state(region)?
        .ok_or(InspectError::RegionNotFound(region))?;
    let ident = engines.store_ident()?;
    let peer = ident
        .and_then(|i| state.region.peer_on_store(i.store_id))
        .map(|p| p.id)
        .unwrap_or(0);
    let raft_state = engines.raft_state(region)?.unwrap_or_default();
    let apply_state = engines.apply_state(region)?.unwrap_or_default();
    Ok(raft_state_info(region, peer, &raft_state, &apply_state))
}

/// The entries of `region` in `[from, to]` (0 for `to` = the last), at most `max` of them.
pub fn raft_log(
    engines: &Engines,
    region: u64,
    from: u64,
    to: u64,
    max: u64,
) -> Result<Vec<LogEntryInfo>, InspectError> {
    let state = raft_state(engines, region)?;
    let from = from.max(state.truncated_index + 1);
    let to = if to == 0 {
        state.last_index
    } else {
        to.min(state.last_index)
    };
    let to = to.min(from.saturating_add(max.max(1) - 1));
    if from > to {
        return Ok(Vec::new());
    }
    Ok(engines
        .log_entries(region, from, to + 1)?
        .iter()
        .map(crate::raftstore::describe_entry)
        .collect())
}
