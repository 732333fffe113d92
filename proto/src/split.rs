//! The checks a split request must pass and the ids it takes. A client runs them before it
//! allocates ids, and every replica runs them again when it proposes and applies the split
//! (node's `split.rs`), so both sides refuse the same keys for the same reason.

use bytes::Bytes;

use crate::api::NewRegionIds;
use crate::display::printable;
use crate::region::Region;

/// The most split keys one split command carries (each new region needs `1 + peers` ids).
pub const MAX_SPLIT_KEYS: usize = 100;

/// Whether `keys` can split `region`: at least one, at most [`MAX_SPLIT_KEYS`], strictly
/// increasing, each inside the range and none equal to its start (a region never ends up
/// empty). The reason, when not.
pub fn check_split_keys(region: &Region, keys: &[Bytes]) -> Result<(), String> {
    if keys.is_empty() {
        return Err("no split key given".into());
    }
    if keys.len() > MAX_SPLIT_KEYS {
        return Err(format!(
            "{} split keys; at most {MAX_SPLIT_KEYS} at a time",
            keys.len()
        ));
    }
    for (i, key) in keys.iter().enumerate() {
        if key.as_ref() == region.start_key.as_slice() {
            return Err(format!(
                "split key {} is the region's start key",
                printable(key)
            ));
        }
        if !region.contains(key) {
            return Err(format!(
                "split key {} is outside region {} [{}, {})",
                printable(key),
                region.id,
                printable(&region.start_key),
                printable(&region.end_key)
            ));
        }
        if i > 0 && keys[i - 1] >= *key {
            return Err("split keys must be strictly increasing".into());
        }
    }
    Ok(())
}

/// How many ids a split of a region with `peers` peers at `keys` split keys needs.
pub fn ids_needed(keys: usize, peers: usize) -> u64 {
    (keys as u64) * (1 + peers as u64)
}

/// Deals `count` consecutive ids starting at `first` into the new regions' ids.
pub fn deal_ids(first: u64, keys: usize, peers: usize) -> Vec<NewRegionIds> {
    let mut next = first;
    let mut take = || {
        let id = next;
        next += 1;
        id
    };
    (0..keys)
        .map(|_| NewRegionIds {
            region_id: take(),
            peer_ids: (0..peers).map(|_| take()).collect(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(ks: &[&str]) -> Vec<Bytes> {
        ks.iter().map(|k| Bytes::from(k.to_string())).collect()
    }

    #[test]
    fn split_keys_outside_unordered_or_at_the_start_are_refused() {
        let r = Region {
            id: 1,
            start_key: b"b".to_vec(),
            end_key: b"m".to_vec(),
            ..Region::default()
        };
        for bad in [
            &["b"][..],
            &["a"],
            &["m"],
            &["z"],
            &["e", "d"],
            &["e", "e"],
            &[],
        ] {
            assert!(check_split_keys(&r, &keys(bad)).is_err(), "{bad:?}");
        }
        let too_many: Vec<String> = (0..=MAX_SPLIT_KEYS).map(|i| format!("c{i:04}")).collect();
        let too_many: Vec<&str> = too_many.iter().map(String::as_str).collect();
        assert!(check_split_keys(&r, &keys(&too_many)).is_err());
        assert!(check_split_keys(&r, &keys(&["c", "l~"])).is_ok());
    }

    #[test]
    fn ids_are_dealt_region_then_peers() {
        let ids = deal_ids(100, 2, 2);
        assert_eq!(ids.len() as u64 * 3, ids_needed(2, 2));
        assert_eq!(
            (ids[0].region_id, ids[0].peer_ids.as_slice()),
            (100, &[101, 102][..])
        );
        assert_eq!(
            (ids[1].region_id, ids[1].peer_ids.as_slice()),
            (103, &[104, 105][..])
        );
    }
}
