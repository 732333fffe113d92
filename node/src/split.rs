//! What a split does to a region, as a pure function every replica computes alike: the region
//! keeps the leftmost range and each split key starts a new region on the same stores, under
//! ids allocated for it. The checks (tinykv-proto's `split`, which clients run too) run at
//! propose and again at apply, so a split that was valid when proposed but raced another change
//! of the region is refused by every replica.

use bytes::Bytes;
use tinykv_proto::api::NewRegionIds;
use tinykv_proto::split::check_split_keys;
use tinykv_storage::{Peer, Region};

/// The region after the split (its range cut at the first key, its version moved by the number
/// of new regions) and the new regions, left to right.
pub fn split_region(
    region: &Region,
    keys: &[Bytes],
    ids: &[NewRegionIds],
) -> Result<(Region, Vec<Region>), String> {
    check_split_keys(region, keys)?;
    if ids.len() != keys.len() {
        return Err(format!(
            "{} split keys but ids for {} new regions",
            keys.len(),
            ids.len()
        ));
    }
    let mut derived = region.clone();
    derived.epoch.version += keys.len() as u64;
    derived.end_key = keys[0].to_vec();
    let mut new = Vec::with_capacity(keys.len());
    for (i, (key, ids)) in keys.iter().zip(ids).enumerate() {
        if ids.peer_ids.len() != region.peers.len() {
            return Err(format!(
                "new region {} has {} peer ids for the region's {} peers",
                ids.region_id,
                ids.peer_ids.len(),
                region.peers.len()
            ));
        }
        let end_key = keys
            .get(i + 1)
            .map_or_else(|| region.end_key.clone(), |k| k.to_vec());
        let peers = region
            .peers
            .iter()
            .zip(&ids.peer_ids)
            .map(|(p, id)| Peer { id: *id, ..*p })
            .collect();
        new.push(Region {
            id: ids.region_id,
            start_key: key.to_vec(),
            end_key,
            epoch: derived.epoch,
            peers,
        });
    }
    Ok((derived, new))
}

#[cfg(test)]
mod tests {
    use tinykv_proto::split::{MAX_SPLIT_KEYS, deal_ids, ids_needed};
    use tinykv_storage::RegionEpoch;

    use super::*;

    fn region(start: &str, end: &str) -> Region {
        Region {
            id: 1,
            start_key: start.as_bytes().to_vec(),
            end_key: end.as_bytes().to_vec(),
            epoch: RegionEpoch {
                conf_ver: 3,
                version: 2,
            },
            peers: vec![Peer::voter(10, 1), Peer::learner(11, 2)],
        }
    }

    fn keys(ks: &[&str]) -> Vec<Bytes> {
        ks.iter().map(|k| Bytes::from(k.to_string())).collect()
    }

    #[test]
    fn a_split_tiles_the_old_range_and_moves_the_version() {
        let r = region("b", "");
        let ids = deal_ids(100, 2, 2);
        let (left, new) = split_region(&r, &keys(&["d", "k"]), &ids).unwrap();
        assert_eq!(
            (left.start_key.as_slice(), left.end_key.as_slice()),
            (&b"b"[..], &b"d"[..])
        );
        assert_eq!(
            left.epoch,
            RegionEpoch {
                conf_ver: 3,
                version: 4
            }
        );
        assert_eq!(left.peers, r.peers);
        assert_eq!(new.len(), 2);
        assert_eq!(
            (
                new[0].id,
                new[0].start_key.as_slice(),
                new[0].end_key.as_slice()
            ),
            (100, &b"d"[..], &b"k"[..])
        );
        assert_eq!(
            (
                new[1].id,
                new[1].start_key.as_slice(),
                new[1].end_key.as_slice()
            ),
            (103, &b"k"[..], &b""[..])
        );
        assert_eq!(
            new[0].peers,
            vec![Peer::voter(101, 1), Peer::learner(102, 2)]
        );
        assert_eq!(
            new[1].peers,
            vec![Peer::voter(104, 1), Peer::learner(105, 2)]
        );
        assert!(new.iter().all(|n| n.epoch == left.epoch));
        assert_eq!(ids_needed(2, 2), 6);
    }

    #[test]
    fn split_keys_outside_unordered_or_at_the_start_are_refused() {
        let r = region("b", "m");
        for bad in [
            &["b"][..],
            &["a"],
            &["m"],
            &["z"],
            &["e", "d"],
            &["e", "e"],
            &[],
        ] {
            let ids = deal_ids(100, bad.len(), 2);
            assert!(split_region(&r, &keys(bad), &ids).is_err(), "{bad:?}");
        }
        let too_many: Vec<String> = (0..=MAX_SPLIT_KEYS).map(|i| format!("c{i:04}")).collect();
        let too_many: Vec<&str> = too_many.iter().map(String::as_str).collect();
        assert!(check_split_keys(&r, &keys(&too_many)).is_err());
        // Ids that do not fit the keys or the peers.
        assert!(split_region(&r, &keys(&["e"]), &deal_ids(100, 2, 2)).is_err());
        assert!(split_region(&r, &keys(&["e"]), &deal_ids(100, 1, 3)).is_err());
        assert!(split_region(&r, &keys(&["e"]), &deal_ids(100, 1, 2)).is_ok());
    }
}
