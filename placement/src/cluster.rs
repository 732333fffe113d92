//! The driver's picture of the cluster: stores by id, regions by id and by range, kept current
//! by heartbeats. Stale reports are refused here, so everything downstream (operators,
//! schedulers) can trust what it reads.

use std::collections::BTreeMap;
use std::ops::Bound;

use serde::{Deserialize, Serialize};
use thiserror::Error;
use tinykv_proto::region::{Peer, RangeEnd, RegionEpoch};

use crate::region_meta::RegionMeta;
use crate::settings::Settings;
use crate::store::{StoreInfo, StoreState, StoreStats};

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum HeartbeatError {
    /// The driver already knows this region at a newer epoch: the sender is a stale leader,
    /// or the report was delayed past a newer one.
    #[error(
        "region {region_id}: reported epoch (conf_ver {}, version {}) is older than the known (conf_ver {}, version {})",
        reported.conf_ver, reported.version, known.conf_ver, known.version
    )]
    StaleEpoch {
        region_id: u64,
        reported: RegionEpoch,
        known: RegionEpoch,
    },
    /// Another region holds part of this range at a newer version: this range was split or
    /// merged after the report was made.
    #[error(
        "region {region_id} at version {reported_version} overlaps region {other_region_id} at newer version {other_version}"
    )]
    StaleByOverlap {
        region_id: u64,
        reported_version: u64,
        other_region_id: u64,
        other_version: u64,
    },
    #[error("region {region_id}: leader {leader} is not one of its peers")]
    LeaderNotAPeer { region_id: u64, leader: u64 },
}

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum StoreError {
    #[error("store {0} is unknown")]
    Unknown(u64),
    #[error("store {0} is a tombstone")]
    Tombstone(u64),
    #[error("0 is not a store id")]
    ZeroId,
}

/// A store that moved from one state to another, for the caller to log or replicate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreStateChange {
    pub store_id: u64,
    pub from: StoreState,
    pub to: StoreState,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct RegionEntry {
    meta: RegionMeta,
    last_heartbeat_ms: u64,
}

/// Stores and regions. Serialized as its records only (stores and regions); the range index
/// and the per-store tallies are rebuilt from them, so they can never disagree with them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "ClusterRecord", into = "ClusterRecord")]
pub struct Cluster {
    stores: BTreeMap<u64, StoreInfo>,
    regions: BTreeMap<u64, RegionEntry>,
    /// Region ids by where their range ends: the region holding key `k` is the first whose
    /// end is after `k`. Regions in it never overlap.
    ranges: BTreeMap<RangeEnd, u64>,
}

#[derive(Serialize, Deserialize)]
struct ClusterRecord {
    stores: Vec<StoreInfo>,
    regions: Vec<RegionEntry>,
}

impl From<ClusterRecord> for Cluster {
    fn from(record: ClusterRecord) -> Cluster {
        let mut cluster = Cluster {
            stores: record.stores.into_iter().map(|s| (s.id, s)).collect(),
            ..Cluster::default()
        };
        for entry in record.regions {
            cluster.insert_region(entry);
        }
        for id in cluster.stores.keys().copied().collect::<Vec<_>>() {
            cluster.recount_store(id);
        }
        cluster
    }
}

impl From<Cluster> for ClusterRecord {
    fn from(cluster: Cluster) -> ClusterRecord {
        ClusterRecord {
            stores: cluster.stores.into_values().collect(),
            regions: cluster.regions.into_values().collect(),
        }
    }
}

impl Cluster {
    pub fn new() -> Cluster {
        Cluster::default()
    }

    /// Records a store's report. An unknown store is added `Up`; a `Down` one comes back
    /// `Up`; an `Offline` one stays `Offline` (only an operator undoes a retirement).
    pub fn store_heartbeat(&mut self, stats: StoreStats, now_ms: u64) -> Result<(), StoreError> {
        if stats.store_id == 0 {
            return Err(StoreError::ZeroId);
        }
        let is_new = !self.stores.contains_key(&stats.store_id);
        let store = self
            .stores
            .entry(stats.store_id)
            .or_insert_with(|| StoreInfo {
                id: stats.store_id,
                ..StoreInfo::default()
            });
        match store.state {
            StoreState::Tombstone => return Err(StoreError::Tombstone(stats.store_id)),
            StoreState::Down => store.state = StoreState::Up,
            StoreState::Up | StoreState::Offline => {}
        }
        store.addr = stats.addr;
        store.capacity = stats.capacity;
        store.available = stats.available;
        store.last_heartbeat_ms = now_ms;
        if is_new {
            // Regions may name a store before its first heartbeat (a store that joined
            // while the driver was not listening).
            self.recount_store(stats.store_id);
        }
        Ok(())
    }

    /// Records a region leader's report, refusing a stale one. A report newer than the
    /// regions its range overlaps replaces them: after a split, the part of the old range
    /// the report no longer covers has no region until that region's own first heartbeat.
    pub fn region_heartbeat(
        &mut self,
        meta: RegionMeta,
        now_ms: u64,
    ) -> Result<(), HeartbeatError> {
        let region_id = meta.id();
        if let Some(leader) = meta.leader
            && meta.leader_peer().is_none()
        {
            return Err(HeartbeatError::LeaderNotAPeer { region_id, leader });
        }
        let reported = meta.region.epoch;
        if let Some(known) = self.regions.get(&region_id).map(|e| e.meta.region.epoch)
            && (reported.version < known.version || reported.conf_ver < known.conf_ver)
        {
            return Err(HeartbeatError::StaleEpoch {
                region_id,
                reported,
                known,
            });
        }
        let overlapping = self.overlapping_region_ids(&meta.region.start_key, &meta.region.end_key);
        // Only `version` compares across regions: it moves on every split and merge of a
        // range, while `conf_ver` counts one region's own membership changes.
        for other_id in overlapping.iter().copied().filter(|&id| id != region_id) {
            if let Some(other) = self.regions.get(&other_id)
                && other.meta.region.epoch.version > reported.version
            {
                return Err(HeartbeatError::StaleByOverlap {
                    region_id,
                    reported_version: reported.version,
                    other_region_id: other_id,
                    other_version: other.meta.region.epoch.version,
                });
            }
        }
        for other_id in overlapping {
            self.remove_region(other_id);
        }
        self.remove_region(region_id);
        self.insert_region(RegionEntry {
            meta,
            last_heartbeat_ms: now_ms,
        });
        Ok(())
    }

    /// Starts retiring a store (an operator's `store delete`): it becomes `Offline`, receives
    /// nothing new and has its replicas moved away, then becomes `Tombstone` once it holds
    /// none (at once when it holds none already). Returns the state it is in afterwards.
    pub fn remove_store(&mut self, store_id: u64) -> Result<StoreState, StoreError> {
        let store = self
            .stores
            .get_mut(&store_id)
            .ok_or(StoreError::Unknown(store_id))?;
        match store.state {
            StoreState::Tombstone => return Err(StoreError::Tombstone(store_id)),
            StoreState::Up | StoreState::Down => store.state = StoreState::Offline,
            StoreState::Offline => {}
        }
        if store.region_count == 0 {
            store.state = StoreState::Tombstone;
        }
        Ok(store.state)
    }

    /// Moves stores along their life by the clock: `Up` stores silent for longer than
    /// `max_store_down_time_ms` become `Down`, `Offline` stores that hold no region become
    /// `Tombstone`.
    pub fn tick(&mut self, now_ms: u64, settings: &Settings) -> Vec<StoreStateChange> {
        let mut changes = Vec::new();
        for store in self.stores.values_mut() {
            let to = match store.state {
                StoreState::Up
                    if !store.heard_from_within(now_ms, settings.max_store_down_time_ms) =>
                {
                    StoreState::Down
                }
                StoreState::Offline if store.region_count == 0 => StoreState::Tombstone,
                _ => continue,
            };
            changes.push(StoreStateChange {
                store_id: store.id,
                from: store.state,
                to,
            });
            store.state = to;
        }
        changes
    }

    pub fn store(&self, store_id: u64) -> Option<&StoreInfo> {
        self.stores.get(&store_id)
    }

    pub fn stores(&self) -> impl Iterator<Item = &StoreInfo> {
        self.stores.values()
    }

    pub fn region(&self, region_id: u64) -> Option<&RegionMeta> {
        self.regions.get(&region_id).map(|e| &e.meta)
    }

    /// When the region's leader last reported it.
    pub fn region_last_heartbeat_ms(&self, region_id: u64) -> Option<u64> {
        self.regions.get(&region_id).map(|e| e.last_heartbeat_ms)
    }

    /// Regions in id order.
    pub fn regions(&self) -> impl Iterator<Item = &RegionMeta> {
        self.regions.values().map(|e| &e.meta)
    }

    pub fn region_count(&self) -> usize {
        self.regions.len()
    }

    /// The region holding `key`, if one is known: `None` also in the gap a split leaves until
    /// the new region's first heartbeat.
    pub fn region_by_key(&self, key: &[u8]) -> Option<&RegionMeta> {
        let after_key = (
            Bound::Excluded(RangeEnd::Key(key.to_vec())),
            Bound::Unbounded,
        );
        let (_, id) = self.ranges.range(after_key).next()?;
        let meta = self.region(*id)?;
        meta.region.contains(key).then_some(meta)
    }

    /// Regions with a peer on `store_id`, in id order.
    pub fn regions_on_store(&self, store_id: u64) -> impl Iterator<Item = &RegionMeta> {
        self.regions().filter(move |m| m.holds_store(store_id))
    }

    /// Whether `peer` of `meta` can vote: a voter its leader does not report down, on a
    /// store the driver knows to be running. A peer on a store the driver has never heard
    /// from does not count: the driver cannot tell it apart from a lost one.
    pub fn is_live_voter(&self, meta: &RegionMeta, peer: &Peer) -> bool {
        !peer.is_learner()
            && !meta.is_reported_down(peer.id)
            && self
                .stores
                .get(&peer.store_id)
                .is_some_and(StoreInfo::hosts_live_replicas)
    }

    pub fn live_voter_count(&self, meta: &RegionMeta) -> usize {
        meta.voters()
            .filter(|p| self.is_live_voter(meta, p))
            .count()
    }

    fn overlapping_region_ids(&self, start: &[u8], end: &[u8]) -> Vec<u64> {
        let after_start = (
            Bound::Excluded(RangeEnd::Key(start.to_vec())),
            Bound::Unbounded,
        );
        let mut ids = Vec::new();
        for (_, id) in self.ranges.range(after_start) {
            match self.region(*id) {
                Some(meta) if meta.region.overlaps_range(start, end) => ids.push(*id),
                // Ranges are disjoint and sorted: the first that does not overlap starts past
                // `end`, and so do all after it.
                _ => break,
            }
        }
        ids
    }

    fn insert_region(&mut self, entry: RegionEntry) {
        self.tally(&entry.meta, true);
        self.ranges
            .insert(entry.meta.region.range_end(), entry.meta.id());
        self.regions.insert(entry.meta.id(), entry);
    }

    fn remove_region(&mut self, region_id: u64) {
        let Some(entry) = self.regions.remove(&region_id) else {
            return;
        };
        let end = entry.meta.region.range_end();
        if self.ranges.get(&end) == Some(&region_id) {
            self.ranges.remove(&end);
        }
        self.tally(&entry.meta, false);
    }

    /// Adds (or takes back) one region's share of the per-store counts.
    fn tally(&mut self, meta: &RegionMeta, add: bool) {
        let leader_store = meta.leader_store();
        for peer in &meta.region.peers {
            let Some(store) = self.stores.get_mut(&peer.store_id) else {
                continue;
            };
            let pending = u64::from(meta.is_pending(peer.id));
            let leads = u64::from(leader_store == Some(peer.store_id));
            if add {
                store.region_count += 1;
                store.region_size += meta.approximate_size;
                store.pending_peer_count += pending;
                store.leader_count += leads;
            } else {
                store.region_count = store.region_count.saturating_sub(1);
                store.region_size = store.region_size.saturating_sub(meta.approximate_size);
                store.pending_peer_count = store.pending_peer_count.saturating_sub(pending);
                store.leader_count = store.leader_count.saturating_sub(leads);
            }
        }
    }

    fn recount_store(&mut self, store_id: u64) {
        let (mut regions, mut leaders, mut size, mut pending) = (0, 0, 0, 0);
        for meta in self.regions.values().map(|e| &e.meta) {
            if let Some(peer) = meta.region.peer_on_store(store_id) {
                regions += 1;
                size += meta.approximate_size;
                pending += u64::from(meta.is_pending(peer.id));
                leaders += u64::from(meta.leader == Some(peer.id));
            }
        }
        if let Some(store) = self.stores.get_mut(&store_id) {
            store.region_count = regions;
            store.leader_count = leaders;
            store.region_size = size;
            store.pending_peer_count = pending;
        }
    }
}
