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

    /// Puts back a store a previous driver knew (a new leader loading the replicated record,
    /// or the stores its node knows): in `state`, as heard from at `now_ms`, so a silent one
    /// gets a whole `max_store_down_time_ms` before it counts as `Down`. A store already
    /// known keeps what its heartbeats said, taking only a retirement from `state`.
    pub fn restore_store(&mut self, store_id: u64, addr: &str, state: StoreState, now_ms: u64) {
        if store_id == 0 {
            return;
        }
        let store = self.stores.entry(store_id).or_insert_with(|| StoreInfo {
            id: store_id,
            addr: addr.to_string(),
            last_heartbeat_ms: now_ms,
            ..StoreInfo::default()
        });
        match (store.state, state) {
            (StoreState::Tombstone, _) | (_, StoreState::Up | StoreState::Down) => {}
            (StoreState::Offline, StoreState::Offline) => {}
            (_, to) => store.state = to,
        }
        self.recount_store(store_id);
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

    /// Puts a store in `state` directly, for tests of what schedulers do with it.
    #[cfg(test)]
    pub(crate) fn set_store_state(&mut self, store_id: u64, state: StoreState) {
        if let Some(store) = self.stores.get_mut(&store_id) {
            store.state = state;
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::{NOW, cluster_with_stores, meta, peer_id, stats};

    /// Three stores and three regions `[i, i+1)`, each with a voter on every store, region i
    /// led from store i.
    fn three_by_three() -> (Cluster, Vec<RegionMeta>) {
        let mut cluster = cluster_with_stores(&[1, 2, 3]);
        let mut regions = Vec::new();
        for i in 1..=3u64 {
            let mut stores = vec![1, 2, 3];
            stores.rotate_left(i as usize - 1);
            let m = meta(i, &[i as u8], &[i as u8 + 1], &stores, 10);
            cluster.region_heartbeat(m.clone(), NOW).unwrap();
            regions.push(m);
            assert_regions(&cluster, &regions);
        }
        (cluster, regions)
    }

    /// The cluster knows exactly `expected`, by id and by key.
    fn assert_regions(cluster: &Cluster, expected: &[RegionMeta]) {
        assert_eq!(cluster.region_count(), expected.len());
        for m in expected {
            assert_eq!(cluster.region(m.id()), Some(m));
            assert_eq!(cluster.region_by_key(&m.region.start_key), Some(m));
            if let Some(&last) = m.region.end_key.last() {
                let mut inside = m.region.end_key.clone();
                *inside.last_mut().unwrap() = last - 1;
                inside.push(0xff);
                assert_eq!(cluster.region_by_key(&inside), Some(m));
            }
        }
        // The tallies agree with the regions.
        for store in cluster.stores() {
            let held: Vec<&RegionMeta> = cluster.regions_on_store(store.id).collect();
            assert_eq!(store.region_count, held.len() as u64, "store {}", store.id);
            assert_eq!(
                store.region_size,
                held.iter().map(|m| m.approximate_size).sum::<u64>()
            );
            assert_eq!(
                store.leader_count,
                held.iter()
                    .filter(|m| m.leader_store() == Some(store.id))
                    .count() as u64
            );
        }
    }

    fn bump(m: &RegionMeta, version: u64, conf_ver: u64) -> RegionMeta {
        let mut m = m.clone();
        m.region.epoch.version += version;
        m.region.epoch.conf_ver += conf_ver;
        m
    }

    #[test]
    fn the_same_report_again_changes_nothing() {
        let (mut cluster, regions) = three_by_three();
        for m in &regions {
            cluster.region_heartbeat(m.clone(), NOW + 1).unwrap();
            assert_regions(&cluster, &regions);
        }
    }

    #[test]
    fn newer_version_and_conf_ver_are_taken() {
        let (mut cluster, mut regions) = three_by_three();
        for i in 0..regions.len() {
            regions[i] = bump(&regions[i], 1, 0);
            cluster.region_heartbeat(regions[i].clone(), NOW).unwrap();
            assert_regions(&cluster, &regions);
            regions[i] = bump(&regions[i], 1, 1);
            cluster.region_heartbeat(regions[i].clone(), NOW).unwrap();
            assert_regions(&cluster, &regions);
        }
    }

    #[test]
    fn an_older_version_is_refused_even_with_a_newer_conf_ver() {
        let (mut cluster, mut regions) = three_by_three();
        for i in 0..regions.len() {
            let origin = regions[i].clone();
            regions[i] = bump(&origin, 1, 0);
            cluster.region_heartbeat(regions[i].clone(), NOW).unwrap();
            let stale = bump(&origin, 0, 1);
            assert_eq!(
                cluster.region_heartbeat(stale, NOW),
                Err(HeartbeatError::StaleEpoch {
                    region_id: origin.id(),
                    reported: RegionEpoch {
                        conf_ver: 2,
                        version: 1
                    },
                    known: RegionEpoch {
                        conf_ver: 1,
                        version: 2
                    },
                })
            );
            assert_regions(&cluster, &regions);
        }
    }

    #[test]
    fn an_older_conf_ver_is_refused() {
        let (mut cluster, mut regions) = three_by_three();
        for i in 0..regions.len() {
            let origin = regions[i].clone();
            regions[i] = bump(&origin, 0, 1);
            cluster.region_heartbeat(regions[i].clone(), NOW).unwrap();
            let refused = cluster.region_heartbeat(origin, NOW);
            assert!(matches!(refused, Err(HeartbeatError::StaleEpoch { .. })));
            assert_regions(&cluster, &regions);
        }
    }

    #[test]
    fn a_report_older_than_an_overlapping_region_is_refused() {
        let mut cluster = cluster_with_stores(&[1, 2, 3]);
        let parent = meta(1, b"a", b"z", &[1, 2, 3], 30);
        cluster.region_heartbeat(parent.clone(), NOW).unwrap();
        // The split's left half reports first, at the split's version: it replaces the
        // parent, and the right half is a gap until region 1 reports again.
        let left = bump(&meta(2, b"a", b"m", &[1, 2, 3], 15), 1, 0);
        cluster.region_heartbeat(left.clone(), NOW).unwrap();
        assert_regions(&cluster, std::slice::from_ref(&left));
        assert_eq!(cluster.region_by_key(b"p"), None);
        // The parent's old leader, not yet aware of the split, reports the whole range.
        assert_eq!(
            cluster.region_heartbeat(parent, NOW),
            Err(HeartbeatError::StaleByOverlap {
                region_id: 1,
                reported_version: 1,
                other_region_id: 2,
                other_version: 2,
            })
        );
        assert_regions(&cluster, std::slice::from_ref(&left));
        let right = bump(&meta(1, b"m", b"z", &[1, 2, 3], 15), 1, 0);
        cluster.region_heartbeat(right.clone(), NOW).unwrap();
        assert_regions(&cluster, &[right, left]);
    }

    #[test]
    fn a_split_leaves_a_gap_until_the_new_region_reports() {
        let mut cluster = cluster_with_stores(&[1]);
        let r1 = meta(1, b"", b"", &[1], 0);
        cluster.region_heartbeat(r1.clone(), NOW).unwrap();
        assert_eq!(cluster.region_by_key(b"foo"), Some(&r1));

        // 1 splits into 2 [, m) and 1 [m, ); 2 reports first.
        let r1 = bump(&meta(1, b"m", b"", &[1], 0), 1, 0);
        let r2 = bump(&meta(2, b"", b"m", &[1], 0), 1, 0);
        cluster.region_heartbeat(r2.clone(), NOW).unwrap();
        assert_eq!(cluster.region_by_key(b"a"), Some(&r2));
        assert_eq!(cluster.region_by_key(b"z"), None);
        cluster.region_heartbeat(r1.clone(), NOW).unwrap();
        assert_eq!(cluster.region_by_key(b"z"), Some(&r1));

        // 1 splits into 3 [m, q) and 1 [q, ); 1 reports first.
        let r1 = bump(&meta(1, b"q", b"", &[1], 0), 2, 0);
        let r3 = bump(&meta(3, b"m", b"q", &[1], 0), 2, 0);
        cluster.region_heartbeat(r1.clone(), NOW).unwrap();
        assert_eq!(cluster.region_by_key(b"z"), Some(&r1));
        assert_eq!(cluster.region_by_key(b"a"), Some(&r2));
        assert_eq!(cluster.region_by_key(b"n"), None);
        cluster.region_heartbeat(r3.clone(), NOW).unwrap();
        assert_eq!(cluster.region_by_key(b"n"), Some(&r3));
        assert_regions(&cluster, &[r1, r2, r3]);
    }

    /// Splits every region in two, or merges neighbours pairwise, bumping versions as the
    /// node does, and checks every region can be found by id and by key after each report.
    #[test]
    fn splits_and_merges_keep_the_range_index_exact() {
        let mut cluster = cluster_with_stores(&[1]);
        let mut next_id = 1;
        // (start, end) byte bounds; 0 and 255 stand for the open ends.
        let mut bounds: Vec<(u8, u8)> = vec![(0, 255)];
        let to_meta = |id: u64, (s, e): (u8, u8), version: u64| {
            let start = if s == 0 { vec![] } else { vec![s] };
            let end = if e == 255 { vec![] } else { vec![e] };
            let mut m = meta(id, &start, &end, &[1], 1);
            m.region.epoch.version = version;
            m
        };
        let mut ops = vec![true; 6];
        ops.extend([false; 6]);
        ops.extend([true, true, false, true, true, false]);
        for (round, split) in (2u64..).zip(ops) {
            let version = round;
            bounds = if split {
                bounds
                    .iter()
                    .flat_map(|&(s, e)| {
                        let mid = s + (e - s) / 2;
                        [(s, mid), (mid, e)]
                    })
                    .collect()
            } else {
                bounds
                    .chunks(2)
                    .map(|c| (c[0].0, c[c.len() - 1].1))
                    .collect()
            };
            let regions: Vec<RegionMeta> = bounds
                .iter()
                .map(|&b| {
                    next_id += 1;
                    to_meta(next_id, b, version)
                })
                .collect();
            for m in &regions {
                cluster.region_heartbeat(m.clone(), NOW).unwrap();
                assert_eq!(cluster.region_by_key(&m.region.start_key), Some(m));
            }
            assert_regions(&cluster, &regions);
        }
    }

    #[test]
    fn pending_peers_are_counted_per_store() {
        let (mut cluster, mut regions) = three_by_three();
        for (i, store) in [(0, 2), (1, 2), (2, 3)] {
            let pending = regions[i].region.peer_on_store(store).unwrap();
            regions[i].pending_peers = vec![pending];
            cluster.region_heartbeat(regions[i].clone(), NOW).unwrap();
            assert_regions(&cluster, &regions);
        }
        let pending_counts =
            |c: &Cluster| [1, 2, 3].map(|s| c.store(s).unwrap().pending_peer_count);
        assert_eq!(pending_counts(&cluster), [0, 2, 1]);
        for m in &mut regions {
            m.pending_peers.clear();
            cluster.region_heartbeat(m.clone(), NOW).unwrap();
        }
        assert_regions(&cluster, &regions);
        assert_eq!(pending_counts(&cluster), [0, 0, 0]);
    }

    #[test]
    fn removed_and_re_added_peers_move_region_counts() {
        let (mut cluster, mut regions) = three_by_three();
        for i in 0..regions.len() {
            let origin = regions[i].clone();
            regions[i].region.peers.truncate(1);
            cluster.region_heartbeat(regions[i].clone(), NOW).unwrap();
            assert_regions(&cluster, &regions);
            regions[i] = origin;
            cluster.region_heartbeat(regions[i].clone(), NOW).unwrap();
            assert_regions(&cluster, &regions);
        }
        for m in &mut regions {
            m.region.peers.truncate(1);
            cluster.region_heartbeat(m.clone(), NOW).unwrap();
        }
        assert_regions(&cluster, &regions);
        assert_eq!(
            [1, 2, 3].map(|s| cluster.store(s).unwrap().region_count),
            [1, 1, 1]
        );
    }

    #[test]
    fn leader_changes_and_sizes_are_tracked() {
        let (mut cluster, mut regions) = three_by_three();
        for i in 0..regions.len() {
            regions[i].leader = Some(regions[i].region.peers[1].id);
            regions[i].approximate_size = 144;
            cluster.region_heartbeat(regions[i].clone(), NOW).unwrap();
            assert_regions(&cluster, &regions);
        }
        for s in [1, 2, 3] {
            let store = cluster.store(s).unwrap();
            assert_eq!((store.leader_count, store.region_size), (1, 3 * 144));
        }
        let leaderless = RegionMeta {
            leader: Some(12345),
            ..regions[0].clone()
        };
        assert_eq!(
            cluster.region_heartbeat(leaderless, NOW),
            Err(HeartbeatError::LeaderNotAPeer {
                region_id: 1,
                leader: 12345
            })
        );
    }

    #[test]
    fn a_store_first_heard_after_its_regions_is_counted() {
        let mut cluster = cluster_with_stores(&[1, 2]);
        cluster
            .region_heartbeat(meta(1, b"", b"", &[1, 2, 3], 7), NOW)
            .unwrap();
        assert!(cluster.store(3).is_none());
        cluster.store_heartbeat(stats(3), NOW).unwrap();
        let store = cluster.store(3).unwrap();
        assert_eq!((store.region_count, store.region_size), (1, 7));
    }

    #[test]
    fn a_silent_store_goes_down_after_the_timeout_and_comes_back_up() {
        let settings = Settings::default();
        let down_after = settings.max_store_down_time_ms;
        let mut cluster = cluster_with_stores(&[1, 2]);
        assert!(cluster.tick(NOW + down_after, &settings).is_empty());
        cluster.store_heartbeat(stats(2), NOW + down_after).unwrap();
        assert_eq!(
            cluster.tick(NOW + down_after + 1, &settings),
            vec![StoreStateChange {
                store_id: 1,
                from: StoreState::Up,
                to: StoreState::Down
            }]
        );
        assert_eq!(cluster.store(1).unwrap().state, StoreState::Down);
        assert_eq!(cluster.store(2).unwrap().state, StoreState::Up);
        cluster
            .store_heartbeat(stats(1), NOW + down_after + 2)
            .unwrap();
        assert_eq!(cluster.store(1).unwrap().state, StoreState::Up);
    }

    #[test]
    fn an_offline_store_becomes_a_tombstone_once_empty() {
        let settings = Settings::default();
        let mut cluster = cluster_with_stores(&[1, 2, 3, 4]);
        let m = meta(1, b"", b"", &[1, 2, 3], 10);
        cluster.region_heartbeat(m.clone(), NOW).unwrap();

        assert_eq!(cluster.remove_store(4), Ok(StoreState::Tombstone));
        assert_eq!(
            cluster.store_heartbeat(stats(4), NOW),
            Err(StoreError::Tombstone(4))
        );
        assert_eq!(cluster.remove_store(4), Err(StoreError::Tombstone(4)));
        assert_eq!(cluster.remove_store(9), Err(StoreError::Unknown(9)));

        assert_eq!(cluster.remove_store(3), Ok(StoreState::Offline));
        // Heartbeats do not bring it back, and it stays while it holds a region.
        cluster.store_heartbeat(stats(3), NOW + 1).unwrap();
        assert!(cluster.tick(NOW + 1, &settings).is_empty());
        assert_eq!(cluster.store(3).unwrap().state, StoreState::Offline);

        let mut moved = m.clone();
        moved.region.peers.retain(|p| p.store_id != 3);
        moved.region.epoch.conf_ver += 1;
        cluster.region_heartbeat(moved, NOW + 2).unwrap();
        assert_eq!(
            cluster.tick(NOW + 2, &settings),
            vec![StoreStateChange {
                store_id: 3,
                from: StoreState::Offline,
                to: StoreState::Tombstone
            }]
        );
    }

    #[test]
    fn live_voters_exclude_down_reports_learners_and_dead_stores() {
        let mut cluster = cluster_with_stores(&[1, 2, 3, 4]);
        let mut m = meta(1, b"", b"", &[1, 2, 3, 4], 10);
        m.region.peers.push(Peer::learner(peer_id(1, 5), 5));
        m.down_peers = vec![m.region.peers[1]];
        cluster.region_heartbeat(m.clone(), NOW).unwrap();
        cluster.remove_store(4).unwrap();
        let settings = Settings::default();
        cluster.tick(NOW + settings.max_store_down_time_ms + 1, &settings);
        // Every store went silent, so all but the offline one are down.
        assert_eq!(cluster.live_voter_count(&m), 1);
        assert!(cluster.is_live_voter(&m, &m.region.peers[3]));
    }

    #[test]
    fn serialized_and_read_back_it_is_the_same_cluster() {
        let (cluster, regions) = three_by_three();
        let bytes = postcard::to_allocvec(&cluster).unwrap();
        let back: Cluster = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(back, cluster);
        assert_regions(&back, &regions);
    }
}
