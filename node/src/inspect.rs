//! Reading a store's Raft state, regions and store directory straight from its data dir, for a
//! stopped node. The running node's admin service answers with the same builders, so online and
//! offline output agree.

use tinykv_proto::api::{LogEntryInfo, RaftStateInfo, RegionInfo, StoreAddr};
use tinykv_storage::{
    Engines, PeerState, RaftApplyState, RaftLocalState, SplitLimits, StorageError,
};

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

/// A region as a stopped store holds it: its record and local state, its applied index and its
/// data measured by one pass over its keys. No leader: that is known only while the store runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredRegion {
    pub info: RegionInfo,
    /// "normal", "applying" (a snapshot was being installed) or "tombstone" (the store left it).
    pub state: &'static str,
}

/// Every region recorded in `engines`, in key order (tombstones, which have no range left, last).
pub fn regions(engines: &Engines) -> Result<Vec<StoredRegion>, InspectError> {
    let measure_all = SplitLimits {
        split_size: u64::MAX,
        max_size: u64::MAX,
        split_keys: u64::MAX,
        max_keys: u64::MAX,
        max_split_keys: 0,
    };
    let mut out = Vec::new();
    for local in engines.regions()? {
        let size = match local.state {
            PeerState::Tombstone => Default::default(),
            _ => engines.check_split(&local.region, &measure_all)?,
        };
        let applied = engines
            .apply_state(local.region.id)?
            .unwrap_or_default()
            .applied_index;
        out.push(StoredRegion {
            state: match local.state {
                PeerState::Normal => "normal",
                PeerState::Applying => "applying",
                PeerState::Tombstone => "tombstone",
            },
            info: RegionInfo {
                region: local.region,
                leader_store: None,
                applied,
                approximate_size: size.size,
                approximate_keys: size.keys,
            },
        });
    }
    out.sort_by(|a, b| {
        let key = |r: &StoredRegion| (r.state == "tombstone", r.info.region.start_key.clone());
        key(a).cmp(&key(b))
    });
    Ok(out)
}

/// This store's id (0 before its first start) and the other stores' addresses it recorded.
pub fn stores(engines: &Engines) -> Result<(u64, Vec<StoreAddr>), InspectError> {
    let store_id = engines.store_ident()?.map_or(0, |i| i.store_id);
    let stores = engines
        .store_addrs()?
        .into_iter()
        .map(|a| StoreAddr {
            store_id: a.store_id,
            addr: a.addr,
        })
        .collect();
    Ok((store_id, stores))
}
