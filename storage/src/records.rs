//! The records tinykv stores beside the log. The region metadata inside them ([`Region`],
//! [`Peer`], [`RegionEpoch`]) is defined in tinykv-proto and re-exported here.
//! All are encoded with postcard; decoding is strict (no trailing bytes) and fallible, and a
//! failure names the key it came from.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tinykv_raft::{ConfState, Entry, HardState};

use crate::error::{Result, StorageError};

pub use tinykv_proto::{CLUSTER_REGION_ID, Peer, PeerRole, RangeEnd, Region, RegionEpoch};

/// The log index and term a bootstrapped region starts at, as in TinyKV: entries up to it are
/// considered applied and compacted, so a new peer is brought up by snapshot.
pub const RAFT_INIT_LOG_INDEX: u64 = 5;
pub const RAFT_INIT_LOG_TERM: u64 = 5;
/// Epoch of a freshly bootstrapped region.
pub const INIT_EPOCH_VER: u64 = 1;
pub const INIT_EPOCH_CONF_VER: u64 = 1;

/// The Raft membership `region`'s peers form. A free function rather than a method: the region
/// types live in tinykv-proto, which does not depend on the Raft core.
pub fn conf_state(region: &Region) -> ConfState {
    let ids = |role| {
        region
            .peers
            .iter()
            .filter(|p| p.role == role)
            .map(|p| p.id)
            .collect()
    };
    ConfState {
        voters: ids(PeerRole::Voter),
        learners: ids(PeerRole::Learner),
    }
}

/// The persisted Raft state of one region peer (keyspace `raft`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RaftLocalState {
    pub hard_state: HardState,
    pub last_index: u64,
    pub last_term: u64,
}

impl RaftLocalState {
    /// Where a region's log starts when it is bootstrapped or created by a split.
    pub fn initial() -> RaftLocalState {
        RaftLocalState {
            hard_state: HardState {
                term: RAFT_INIT_LOG_TERM,
                vote: 0,
                commit: RAFT_INIT_LOG_INDEX,
            },
            last_index: RAFT_INIT_LOG_INDEX,
            last_term: RAFT_INIT_LOG_TERM,
        }
    }
}

/// The last log entry dropped by compaction (or replaced by a snapshot).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RaftTruncatedState {
    pub index: u64,
    pub term: u64,
}

/// How far a region's state machine has gone (keyspace `meta`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RaftApplyState {
    pub applied_index: u64,
    pub truncated_state: RaftTruncatedState,
}

impl RaftApplyState {
    /// What a bootstrapped or newly split region has applied: everything up to
    /// `RAFT_INIT_LOG_INDEX`, compacted, so a peer added later is filled by a snapshot.
    pub fn initial() -> RaftApplyState {
        RaftApplyState {
            applied_index: RAFT_INIT_LOG_INDEX,
            truncated_state: RaftTruncatedState {
                index: RAFT_INIT_LOG_INDEX,
                term: RAFT_INIT_LOG_TERM,
            },
        }
    }
}

/// Where a region peer stands on this store. New variants go at the end: the encoding is positional.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PeerState {
    #[default]
    Normal,
    /// A snapshot is being applied: the region's data may be incomplete until it turns `Normal`.
    Applying,
    /// The peer was removed from this store; its data is gone or going.
    Tombstone,
}

/// A region as this store knows it (keyspace `meta`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegionLocalState {
    pub state: PeerState,
    pub region: Region,
}

/// Which cluster and store a data dir belongs to (keyspace `meta`, key `01 01`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreIdent {
    pub cluster_id: u64,
    pub store_id: u64,
}

/// Where another store of the cluster can be reached (keyspace `meta`, key `01 04 store_id`).
/// The node learns addresses from its initial member list, applied membership changes and
/// other stores, and keeps them so that it can reach its peers after a restart.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreAddress {
    pub store_id: u64,
    pub addr: String,
}

/// A store the cluster has seen running (keyspace `meta`, key `01 05 store_id`), applied from
/// region 1's log on every replica: a founding store that comes back with an empty data dir
/// while the cluster lists it as started has lost its data and must not bootstrap again.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreStarted {
    pub store_id: u64,
}

/// The cluster's id allocator (keyspace `meta`, key `01 06`), kept by region 1's state machine
/// on every replica of region 1: peer ids and region ids are handed out from `next_id` upward,
/// each allocation applied from region 1's log before it is used, so an id is never given twice.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdAllocState {
    pub next_id: u64,
}

/// The placement driver's decisions that must outlive its leader (keyspace `meta`, key
/// `01 08`), kept by region 1's state machine on every replica of region 1 and carried by its
/// snapshots: the stores an operator retired, and the schedulers paused. What the driver
/// learns from heartbeats (sizes, leaders, liveness) is not kept: it comes back with them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlacementRecord {
    pub retired: Vec<RetiredStore>,
    /// Scheduler names, as `scheduler list` shows them.
    pub paused: Vec<String>,
}

/// A store `store delete` retired: `Offline` while its replicas move away, then `Tombstone`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetiredStore {
    pub store_id: u64,
    pub tombstone: bool,
}

/// The layout of a data dir's records (keyspace `meta`, key `01 07`). A data dir without it
/// was written before roles were stored with peers (format 1) and is upgraded when opened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataFormat {
    pub version: u32,
}

/// The format this build writes. Format 2: peers carry a role, region 1 keeps the id allocator.
/// Format 3: region 1 may keep a `PlacementRecord`, which a build of format 2 would take for
/// corruption; nothing else changed, so a format-2 dir is upgraded by recording 3.
pub const DATA_FORMAT_VERSION: u32 = 3;

/// The records of format 1, read only to upgrade them.
pub(crate) mod v1 {
    use serde::Deserialize;

    use super::{PeerState, RegionEpoch};

    #[derive(Deserialize)]
    pub(crate) struct Peer {
        pub id: u64,
        pub store_id: u64,
    }

    #[derive(Deserialize)]
    pub(crate) struct Region {
        pub id: u64,
        pub start_key: Vec<u8>,
        pub end_key: Vec<u8>,
        pub epoch: RegionEpoch,
        pub peers: Vec<Peer>,
    }

    #[derive(Deserialize)]
    pub(crate) struct RegionLocalState {
        pub state: PeerState,
        pub region: Region,
    }

    impl From<Region> for super::Region {
        /// Format 1 had no learners: every peer voted.
        fn from(r: Region) -> super::Region {
            super::Region {
                id: r.id,
                start_key: r.start_key,
                end_key: r.end_key,
                epoch: r.epoch,
                peers: r
                    .peers
                    .into_iter()
                    .map(|p| super::Peer::voter(p.id, p.store_id))
                    .collect(),
            }
        }
    }

    impl From<RegionLocalState> for super::RegionLocalState {
        fn from(s: RegionLocalState) -> super::RegionLocalState {
            super::RegionLocalState {
                state: s.state,
                region: s.region.into(),
            }
        }
    }
}

/// A value stored by tinykv: encode is infallible for these types; decode is strict.
pub trait Record: Serialize + DeserializeOwned {
    fn encode(&self) -> Vec<u8> {
        encode_value(self)
    }

    /// Decodes a value read under `key` of `keyspace`; the error names both.
    fn decode(keyspace: &'static str, key: &[u8], bytes: &[u8]) -> Result<Self> {
        decode_exact(bytes).map_err(|problem| StorageError::corrupt(keyspace, key, problem))
    }
}

impl Record for RaftLocalState {}
impl Record for RaftApplyState {}
impl Record for RegionLocalState {}
impl Record for StoreIdent {}
impl Record for StoreAddress {}
impl Record for StoreStarted {}
impl Record for IdAllocState {}
impl Record for DataFormat {}
impl Record for PlacementRecord {}
impl Record for Region {}
impl Record for Entry {}

pub(crate) fn encode_value<T: Serialize>(value: &T) -> Vec<u8> {
    // Postcard only fails on sequences of unknown length or a full fixed buffer; tinykv's
    // records are plain structs written into a growable Vec.
    postcard::to_allocvec(value).expect("postcard encodes tinykv records into a Vec")
}

/// Decodes a whole buffer; leftover bytes mean the record is not what we think it is.
pub(crate) fn decode_exact<T: DeserializeOwned>(bytes: &[u8]) -> std::result::Result<T, String> {
    match postcard::take_from_bytes::<T>(bytes) {
        Ok((value, [])) => Ok(value),
        Ok((_, rest)) => Err(format!("{} trailing bytes after the record", rest.len())),
        Err(e) => Err(format!("undecodable record: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use proptest::prelude::*;
    use tinykv_raft::EntryType;

    fn hard_state() -> impl Strategy<Value = HardState> {
        (any::<u64>(), any::<u64>(), any::<u64>()).prop_map(|(term, vote, commit)| HardState {
            term,
            vote,
            commit,
        })
    }

    fn region() -> impl Strategy<Value = Region> {
        (
            any::<u64>(),
            proptest::collection::vec(any::<u8>(), 0..16),
            proptest::collection::vec(any::<u8>(), 0..16),
            any::<(u64, u64)>(),
            proptest::collection::vec(any::<(u64, u64, bool)>(), 0..5),
        )
            .prop_map(
                |(id, start_key, end_key, (conf_ver, version), peers)| Region {
                    id,
                    start_key,
                    end_key,
                    epoch: RegionEpoch { conf_ver, version },
                    peers: peers
                        .into_iter()
                        .map(|(id, store_id, learner)| {
                            if learner {
                                Peer::learner(id, store_id)
                            } else {
                                Peer::voter(id, store_id)
                            }
                        })
                        .collect(),
                },
            )
    }

    fn peer_state() -> impl Strategy<Value = PeerState> {
        prop_oneof![
            Just(PeerState::Normal),
            Just(PeerState::Applying),
            Just(PeerState::Tombstone)
        ]
    }

    fn round_trip<T: Record + PartialEq + std::fmt::Debug>(v: T) {
        let bytes = v.encode();
        assert_eq!(T::decode("meta", b"k", &bytes).unwrap(), v);
    }

    proptest! {
        #[test]
        fn records_round_trip(
            hs in hard_state(),
            last in any::<(u64, u64)>(),
            apply in any::<(u64, u64, u64)>(),
            state in peer_state(),
            region in region(),
            ident in any::<(u64, u64)>(),
            data in proptest::collection::vec(any::<u8>(), 0..64),
            conf in any::<bool>(),
        ) {
            round_trip(RaftLocalState { hard_state: hs, last_index: last.0, last_term: last.1 });
            round_trip(RaftApplyState {
                applied_index: apply.0,
                truncated_state: RaftTruncatedState { index: apply.1, term: apply.2 },
            });
            round_trip(RegionLocalState { state, region: region.clone() });
            round_trip(region);
            round_trip(StoreIdent { cluster_id: ident.0, store_id: ident.1 });
            round_trip(Entry {
                entry_type: if conf { EntryType::ConfChange } else { EntryType::Normal },
                term: last.1,
                index: last.0,
                data: Bytes::from(data),
            });
        }

        #[test]
        fn arbitrary_bytes_decode_to_a_value_or_an_error(bytes in proptest::collection::vec(any::<u8>(), 0..128)) {
            // Any answer is fine as long as nothing panics and errors name the key.
            for result in [
                RaftLocalState::decode("raft", b"\x01\x02", &bytes).map(|_| ()),
                RaftApplyState::decode("meta", b"\x01\x02", &bytes).map(|_| ()),
                RegionLocalState::decode("meta", b"\x01\x02", &bytes).map(|_| ()),
                StoreIdent::decode("meta", b"\x01\x02", &bytes).map(|_| ()),
                Entry::decode("raft", b"\x01\x02", &bytes).map(|_| ()),
            ] {
                if let Err(e) = result {
                    prop_assert!(e.to_string().contains("0102"), "{e}");
                }
            }
        }
    }

    #[test]
    fn trailing_bytes_and_truncation_are_errors() {
        let mut bytes = StoreIdent {
            cluster_id: 1,
            store_id: 2,
        }
        .encode();
        bytes.push(0);
        let e = StoreIdent::decode("meta", &crate::keys::STORE_IDENT_KEY, &bytes).unwrap_err();
        assert!(
            e.to_string().contains("0101") && e.to_string().contains("trailing"),
            "{e}"
        );
        let region = RegionLocalState {
            state: PeerState::Applying,
            region: Region::default(),
        };
        let bytes = region.encode();
        assert!(RegionLocalState::decode("meta", b"k", &bytes[..bytes.len() - 1]).is_err());
        // An unknown enum tag is refused rather than mapped to some state.
        assert!(RegionLocalState::decode("meta", b"k", &[9, 0, 0, 0, 0, 0, 0, 0]).is_err());
    }

    #[test]
    fn conf_state_splits_voters_and_learners() {
        let r = Region {
            id: 1,
            peers: vec![Peer::voter(3, 1), Peer::voter(4, 2), Peer::learner(5, 3)],
            ..Region::default()
        };
        assert_eq!(conf_state(&r).voters, vec![3, 4]);
        assert_eq!(conf_state(&r).learners, vec![5]);
    }
}
