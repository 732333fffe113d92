//! What the client knows of where keys live (TiKV's region cache): regions by the end of their
//! range, so a key's region is one range lookup away, the leader last seen for each, and the
//! stores' addresses. It is only a guess: a node refuses a request routed with a stale region
//! and answers with what changed, which the client learns here.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::ops::Bound;

use tinykv_proto::placement::Route as Located;
use tinykv_proto::{RangeEnd, Region};

/// What the client knows of where keys live: regions by range (TiKV's region cache), the
/// leader last seen for each, and the stores' addresses.
#[derive(Default)]
pub(crate) struct Route {
    pub(crate) regions: BTreeMap<RangeEnd, Region>,
    pub(crate) stores: HashMap<u64, SocketAddr>,
    pub(crate) leaders: HashMap<u64, u64>,
}

impl Route {
    pub(crate) fn locate(&self, key: &[u8]) -> Option<&Region> {
        let after = Bound::Excluded(RangeEnd::Key(key.to_vec()));
        let (_, region) = self.regions.range((after, Bound::Unbounded)).next()?;
        region.contains(key).then_some(region)
    }

    pub(crate) fn region(&self, region_id: u64) -> Option<&Region> {
        self.regions.values().find(|r| r.id == region_id)
    }

    /// Learns `region`, dropping the cached regions it overlaps, unless one of them is newer
    /// (then `region` is the stale one and is ignored).
    pub(crate) fn insert(&mut self, region: &Region) {
        let after = Bound::Excluded(RangeEnd::Key(region.start_key.clone()));
        let overlapping: Vec<RangeEnd> = self
            .regions
            .range((after, Bound::Unbounded))
            .take_while(|(_, r)| region.end_key.is_empty() || r.start_key < region.end_key)
            .map(|(end, _)| end.clone())
            .collect();
        let newer = overlapping.iter().any(|end| {
            let cached = &self.regions[end];
            cached.epoch.version > region.epoch.version
                || (cached.id == region.id && cached.epoch.conf_ver > region.epoch.conf_ver)
        });
        if newer {
            return;
        }
        for end in overlapping {
            if let Some(old) = self.regions.remove(&end)
                && old.id != region.id
            {
                self.leaders.remove(&old.id);
            }
        }
        self.regions.insert(region.range_end(), region.clone());
    }

    /// Learns what the placement driver said of a key: the stores' addresses, the region
    /// (unless a newer one is cached) and, if the region was taken, its leader.
    pub(crate) fn learn_located(&mut self, found: &Located) {
        for s in &found.stores {
            if let Ok(addr) = s.addr.parse() {
                self.stores.insert(s.store_id, addr);
            }
        }
        let region = &found.region.region;
        self.insert(region);
        let taken = self
            .region(region.id)
            .is_some_and(|r| r.epoch == region.epoch);
        if let (true, Some(leader)) = (taken, found.region.leader_store) {
            self.leaders.insert(region.id, leader);
        }
    }
}

#[cfg(test)]
mod tests {
    use tinykv_proto::RegionEpoch;

    use super::*;

    fn region(id: u64, start: &str, end: &str, version: u64) -> Region {
        Region {
            id,
            start_key: start.as_bytes().to_vec(),
            end_key: end.as_bytes().to_vec(),
            epoch: RegionEpoch {
                conf_ver: 1,
                version,
            },
            peers: Vec::new(),
        }
    }

    fn located(route: &Route, key: &str) -> Option<u64> {
        route.locate(key.as_bytes()).map(|r| r.id)
    }

    #[test]
    fn keys_find_the_region_whose_range_holds_them() {
        let mut route = Route::default();
        route.insert(&region(1, "", "m", 2));
        route.insert(&region(2, "m", "", 2));
        assert_eq!(located(&route, ""), Some(1));
        assert_eq!(located(&route, "l\u{7f}"), Some(1));
        assert_eq!(located(&route, "m"), Some(2));
        assert_eq!(located(&route, "zzz"), Some(2));
        assert_eq!(
            route.region(2).map(|r| r.start_key.as_slice()),
            Some(&b"m"[..])
        );
    }

    #[test]
    fn a_gap_locates_nothing() {
        let mut route = Route::default();
        route.insert(&region(1, "", "c", 2));
        route.insert(&region(3, "k", "", 2));
        assert_eq!(located(&route, "d"), None);
    }

    #[test]
    fn a_newer_region_replaces_those_it_overlaps_and_their_leaders() {
        let mut route = Route::default();
        route.insert(&region(1, "", "", 1));
        route.leaders.insert(1, 7);
        // Region 1 split: its newer self keeps its leader, the new region has none yet.
        route.insert(&region(1, "", "m", 2));
        route.insert(&region(2, "m", "", 2));
        assert_eq!(route.regions.len(), 2);
        assert_eq!(located(&route, "z"), Some(2));
        assert_eq!(route.leaders.get(&1), Some(&7));
        route.leaders.insert(2, 8);
        // A region covering both drops them and the leaders seen for them.
        route.insert(&region(3, "", "", 3));
        assert_eq!(route.regions.len(), 1);
        assert_eq!(located(&route, "a"), Some(3));
        assert!(route.leaders.is_empty());
    }

    fn located_by_driver(region: Region, leader: u64) -> Located {
        Located {
            stores: vec![tinykv_proto::api::StoreAddr {
                store_id: leader,
                addr: format!("127.0.0.1:{}", 20000 + leader),
            }],
            region: tinykv_proto::placement::RegionDesc {
                region,
                leader_store: Some(leader),
                ..Default::default()
            },
        }
    }

    #[test]
    fn the_driver_s_answer_is_learned_unless_the_cache_is_newer() {
        let mut route = Route::default();
        route.learn_located(&located_by_driver(region(2, "m", "", 2), 4));
        assert_eq!(located(&route, "z"), Some(2));
        assert_eq!(route.leaders.get(&2), Some(&4));
        assert_eq!(route.stores[&4].port(), 20004);
        // A driver that has not heard of the split yet: the split halves stay, and so does
        // the leader seen for them; the address it gave is learned all the same.
        route.learn_located(&located_by_driver(region(1, "", "", 1), 5));
        assert_eq!(located(&route, "z"), Some(2));
        assert_eq!(located(&route, "a"), None);
        assert_eq!(route.leaders.get(&2), Some(&4));
        assert!(!route.leaders.contains_key(&1));
        assert_eq!(route.stores[&5].port(), 20005);
    }

    #[test]
    fn a_stale_region_does_not_replace_a_newer_one() {
        let mut route = Route::default();
        route.insert(&region(1, "", "m", 2));
        route.insert(&region(2, "m", "", 2));
        route.leaders.insert(2, 5);
        route.insert(&region(1, "", "", 1));
        assert_eq!(located(&route, "z"), Some(2));
        assert_eq!(route.leaders.get(&2), Some(&5));
    }
}
