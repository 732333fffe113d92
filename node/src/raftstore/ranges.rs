//! The store's regions by key range (TiKV's `region_ranges`): which local region holds a key,
//! and which overlap a range. Only initialized regions are indexed; an uninitialized peer has
//! no range until its snapshot arrives.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;

use tinykv_storage::{RangeEnd, Region};

#[derive(Debug, Default)]
pub(crate) struct RegionRanges {
    /// End key → (region id, start key).
    by_end: BTreeMap<RangeEnd, (u64, Vec<u8>)>,
    ends: HashMap<u64, RangeEnd>,
}

impl RegionRanges {
    /// Indexes `region` under its current range, replacing where it was.
    pub fn insert(&mut self, region: &Region) {
        self.remove(region.id);
        let end = region.range_end();
        if let Some((displaced, _)) = self
            .by_end
            .insert(end.clone(), (region.id, region.start_key.clone()))
        {
            // Two live regions never share an end key; a stale entry can only be one whose
            // region was replaced without being removed first.
            self.ends.remove(&displaced);
        }
        self.ends.insert(region.id, end);
    }

    pub fn remove(&mut self, region_id: u64) {
        if let Some(end) = self.ends.remove(&region_id)
            && self
                .by_end
                .get(&end)
                .is_some_and(|(id, _)| *id == region_id)
        {
            self.by_end.remove(&end);
        }
    }

    /// The regions sharing a key with `[start, end)` (an empty end is unbounded), in key order.
    pub fn overlapping(&self, start: &[u8], end: &[u8]) -> Vec<u64> {
        let after = Bound::Excluded(RangeEnd::Key(start.to_vec()));
        self.by_end
            .range((after, Bound::Unbounded))
            .take_while(|(_, (_, s))| end.is_empty() || s.as_slice() < end)
            .map(|(_, (id, _))| *id)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region(id: u64, start: &str, end: &str) -> Region {
        Region {
            id,
            start_key: start.as_bytes().to_vec(),
            end_key: end.as_bytes().to_vec(),
            ..Region::default()
        }
    }

    #[test]
    fn keys_and_ranges_find_their_regions() {
        let mut r = RegionRanges::default();
        r.insert(&region(1, "", "g"));
        r.insert(&region(2, "g", "p"));
        r.insert(&region(3, "t", ""));
        assert_eq!(r.overlapping(b"", b"\x00"), vec![1]);
        assert_eq!(r.overlapping(b"f\xff", b"g"), vec![1]);
        assert_eq!(
            r.overlapping(b"q", b"q\x00"),
            Vec::<u64>::new(),
            "a gap between p and t"
        );
        assert_eq!(r.overlapping(b"zzz", b""), vec![3]);
        assert_eq!(r.overlapping(b"a", b"h"), vec![1, 2]);
        assert_eq!(r.overlapping(b"g", b"g\x00"), vec![2]);
        assert_eq!(r.overlapping(b"p", b"t"), Vec::<u64>::new());
        assert_eq!(r.overlapping(b"o", b""), vec![2, 3]);
        // A split shrinks region 1 and a new region takes the rest.
        r.insert(&region(1, "", "c"));
        r.insert(&region(4, "c", "g"));
        assert_eq!(r.overlapping(b"d", b"d\x00"), vec![4]);
        assert_eq!(r.overlapping(b"b", b"b\x00"), vec![1]);
        r.remove(4);
        assert_eq!(r.overlapping(b"d", b"d\x00"), Vec::<u64>::new());
        assert_eq!(r.overlapping(b"", b""), vec![1, 2, 3]);
    }
}
