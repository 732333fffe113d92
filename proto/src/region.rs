//! Region metadata: which keys a region holds, its peers and the epoch that versions its shape.
//! Nodes write these records to disk (inside storage's region state) and send them to clients,
//! so the field order and derives here are an on-disk and on-wire format.

use serde::{Deserialize, Serialize};

/// The region a cluster is founded with. Its state machine also keeps the cluster's records
/// (the id allocator, the stores seen running), so its snapshots carry them.
pub const CLUSTER_REGION_ID: u64 = 1;

/// Versions of a region's shape: `conf_ver` moves on a membership change, `version` on a split
/// or merge. Requests carry the epoch they were routed with, so stale routing is detected.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RegionEpoch {
    pub conf_ver: u64,
    pub version: u64,
}

/// Whether a peer votes. A learner receives the log and applies it but neither votes nor
/// counts toward a quorum: a store joins as one and is promoted once it has caught up.
/// New variants go at the end: the encoding is positional.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PeerRole {
    #[default]
    Voter,
    Learner,
}

/// A store and where to reach it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct StoreAddr {
    pub store_id: u64,
    pub addr: String,
}

/// One replica of a region: the Raft peer id, the store that hosts it and its role. Peer ids
/// come from the cluster's id allocator and are never reused.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Peer {
    pub id: u64,
    pub store_id: u64,
    pub role: PeerRole,
}

impl Peer {
    pub fn voter(id: u64, store_id: u64) -> Peer {
        Peer {
            id,
            store_id,
            role: PeerRole::Voter,
        }
    }

    pub fn learner(id: u64, store_id: u64) -> Peer {
        Peer {
            id,
            store_id,
            role: PeerRole::Learner,
        }
    }

    pub fn is_learner(&self) -> bool {
        self.role == PeerRole::Learner
    }
}

/// A contiguous range of user keys `[start_key, end_key)` replicated by one Raft group. An empty
/// `end_key` means unbounded.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Region {
    pub id: u64,
    pub start_key: Vec<u8>,
    pub end_key: Vec<u8>,
    pub epoch: RegionEpoch,
    pub peers: Vec<Peer>,
}

impl Region {
    /// Whether the user key falls in `[start_key, end_key)`.
    pub fn contains(&self, key: &[u8]) -> bool {
        key >= self.start_key.as_slice()
            && (self.end_key.is_empty() || key < self.end_key.as_slice())
    }

    /// The peer this region has on `store_id`.
    pub fn peer_on_store(&self, store_id: u64) -> Option<Peer> {
        self.peers.iter().copied().find(|p| p.store_id == store_id)
    }

    /// Where the region ends, ordered so that an unbounded end sorts after every key: the key
    /// of maps that find a key's region by range.
    pub fn range_end(&self) -> RangeEnd {
        RangeEnd::of(&self.end_key)
    }

    /// Whether this region shares a key with `[start, end)` (an empty end is unbounded).
    pub fn overlaps_range(&self, start: &[u8], end: &[u8]) -> bool {
        let starts_before_other_ends = end.is_empty() || self.start_key.as_slice() < end;
        let other_starts_before_end = self.end_key.is_empty() || start < self.end_key.as_slice();
        starts_before_other_ends && other_starts_before_end
    }
}

/// The end of a key range as a map key: `Unbounded` (an empty end key) sorts after every key.
/// The region holding key `k` is the first whose end is after `Key(k)`, if it starts at or
/// before `k`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RangeEnd {
    Key(Vec<u8>),
    Unbounded,
}

impl RangeEnd {
    pub fn of(end_key: &[u8]) -> RangeEnd {
        if end_key.is_empty() {
            RangeEnd::Unbounded
        } else {
            RangeEnd::Key(end_key.to_vec())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn region_range_and_peers() {
        let r = Region {
            id: 1,
            start_key: b"b".to_vec(),
            end_key: b"d".to_vec(),
            peers: vec![Peer::voter(3, 1), Peer::voter(4, 2), Peer::learner(5, 3)],
            ..Region::default()
        };
        assert!(!r.contains(b"a") && r.contains(b"b") && r.contains(b"c\xff") && !r.contains(b"d"));
        let open = Region {
            end_key: Vec::new(),
            ..r.clone()
        };
        assert!(open.contains(b"\xff\xff"));
        assert_eq!(r.peer_on_store(2), Some(Peer::voter(4, 2)));
        assert!(r.peer_on_store(3).is_some_and(|p| p.is_learner()));
        assert!(r.overlaps_range(b"a", b"c") && !r.overlaps_range(b"d", b""));
        assert!(open.overlaps_range(b"x", b"") && !open.overlaps_range(b"", b"b"));
        assert!(r.range_end() < open.range_end());
        assert!(RangeEnd::Key(b"zzz".to_vec()) < RangeEnd::of(b""));
    }

    /// Stored regions and those on the wire decode by position: this pins the bytes a region
    /// encodes to, so a reordered field or variant fails here rather than on an old data dir.
    #[test]
    fn region_encoding_is_fixed() {
        let r = Region {
            id: 7,
            start_key: b"a".to_vec(),
            end_key: Vec::new(),
            epoch: RegionEpoch {
                conf_ver: 2,
                version: 3,
            },
            peers: vec![Peer::voter(8, 1), Peer::learner(9, 2)],
        };
        let bytes = postcard::to_allocvec(&r).unwrap();
        assert_eq!(bytes, [7, 1, b'a', 0, 2, 3, 2, 8, 1, 0, 9, 2, 1]);
    }
}
