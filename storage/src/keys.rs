//! Key codecs: the byte layout of every key tinykv stores, big-endian so that a keyspace scan
//! visits regions in id order and a region's log in index order.
//!
//! | key | bytes | keyspace |
//! |---|---|---|
//! | raft log | `01 02` region `01` index | raft |
//! | raft state | `01 02` region `02` | raft |
//! | apply state | `01 02` region `03` | meta |
//! | region state | `01 03` region `01` | meta |
//! | store ident | `01 01` | meta |
//! | store address | `01 04` store | meta |
//! | store started | `01 05` store | meta |
//! | id allocator | `01 06` | meta |
//! | data format | `01 07` | meta |
//! | user data | `d` user key | kv |

/// First byte of every local (non-user) key.
pub const LOCAL_PREFIX: u8 = 0x01;
/// `01 01`: the store ident.
pub const STORE_IDENT_KEY: [u8; 2] = [LOCAL_PREFIX, 0x01];
/// Second byte of keys that belong to one region's Raft group (log, raft state, apply state).
pub const REGION_RAFT_PREFIX: u8 = 0x02;
/// Second byte of region metadata keys (region state).
pub const REGION_META_PREFIX: u8 = 0x03;

/// Second byte of a store's address record: `01 04 store_id`.
pub const STORE_ADDR_PREFIX: u8 = 0x04;
/// The first key of the store address records.
pub const STORE_ADDR_MIN_KEY: [u8; 2] = [LOCAL_PREFIX, STORE_ADDR_PREFIX];
/// `01 05 store_id`: a store the cluster has seen running (replicated through region 1).
pub const STORE_STARTED_PREFIX: u8 = 0x05;
pub const STORE_STARTED_MIN_KEY: [u8; 2] = [LOCAL_PREFIX, STORE_STARTED_PREFIX];
/// `01 06`: the cluster's id allocator (replicated through region 1).
pub const ID_ALLOC_KEY: [u8; 2] = [LOCAL_PREFIX, 0x06];
/// `01 07`: the layout version of the data dir's records.
pub const DATA_FORMAT_KEY: [u8; 2] = [LOCAL_PREFIX, 0x07];
/// The placement driver's lasting decisions, kept by region 1 (see `PlacementRecord`).
pub const PLACEMENT_KEY: [u8; 2] = [LOCAL_PREFIX, 0x08];
const RAFT_LOG_SUFFIX: u8 = 0x01;
const RAFT_STATE_SUFFIX: u8 = 0x02;
const APPLY_STATE_SUFFIX: u8 = 0x03;
const REGION_STATE_SUFFIX: u8 = 0x01;

/// Prefix of user data in the `kv` keyspace: it keeps room for other kinds of keys later.
pub const DATA_PREFIX: u8 = b'd';

/// Length of a region-scoped key without an index: `01 0x` region(8) suffix.
const REGION_KEY_LEN: usize = 11;
/// Length of a raft log key: region key plus the index.
pub const RAFT_LOG_KEY_LEN: usize = REGION_KEY_LEN + 8;

fn region_key(second: u8, region_id: u64, suffix: u8) -> [u8; REGION_KEY_LEN] {
    let mut key = [0u8; REGION_KEY_LEN];
    key[0] = LOCAL_PREFIX;
    key[1] = second;
    key[2..10].copy_from_slice(&region_id.to_be_bytes());
    key[10] = suffix;
    key
}

/// `01 02 region 01 index`: one Raft log entry.
pub fn raft_log_key(region_id: u64, index: u64) -> [u8; RAFT_LOG_KEY_LEN] {
    let mut key = [0u8; RAFT_LOG_KEY_LEN];
    key[..REGION_KEY_LEN].copy_from_slice(&region_key(
        REGION_RAFT_PREFIX,
        region_id,
        RAFT_LOG_SUFFIX,
    ));
    key[REGION_KEY_LEN..].copy_from_slice(&index.to_be_bytes());
    key
}

/// `01 02 region 01`: every log key of the region starts with it.
pub fn raft_log_prefix(region_id: u64) -> [u8; REGION_KEY_LEN] {
    region_key(REGION_RAFT_PREFIX, region_id, RAFT_LOG_SUFFIX)
}

/// `01 02 region 02`: the region's `RaftLocalState`.
pub fn raft_state_key(region_id: u64) -> [u8; REGION_KEY_LEN] {
    region_key(REGION_RAFT_PREFIX, region_id, RAFT_STATE_SUFFIX)
}

/// `01 02 region 03`: the region's `RaftApplyState`.
pub fn apply_state_key(region_id: u64) -> [u8; REGION_KEY_LEN] {
    region_key(REGION_RAFT_PREFIX, region_id, APPLY_STATE_SUFFIX)
}

/// `01 03 region 01`: the region's `RegionLocalState`.
pub fn region_state_key(region_id: u64) -> [u8; REGION_KEY_LEN] {
    region_key(REGION_META_PREFIX, region_id, REGION_STATE_SUFFIX)
}

/// `01 03`: every region state key starts with it.
pub const REGION_META_MIN_KEY: [u8; 2] = [LOCAL_PREFIX, REGION_META_PREFIX];

/// The index of a raft log key of `region_id`, or `None` when `key` is not one.
pub fn decode_raft_log_key(region_id: u64, key: &[u8]) -> Option<u64> {
    if key.len() != RAFT_LOG_KEY_LEN || key[..REGION_KEY_LEN] != raft_log_prefix(region_id) {
        return None;
    }
    let mut index = [0u8; 8];
    index.copy_from_slice(&key[REGION_KEY_LEN..]);
    Some(u64::from_be_bytes(index))
}

/// The `meta` key of a store's address record.
pub fn store_addr_key(store_id: u64) -> [u8; 10] {
    store_key(STORE_ADDR_PREFIX, store_id)
}

/// The `meta` key recording that a store has run.
pub fn store_started_key(store_id: u64) -> [u8; 10] {
    store_key(STORE_STARTED_PREFIX, store_id)
}

/// `01 prefix store_id`: the per-store records of `meta`.
fn store_key(prefix: u8, store_id: u64) -> [u8; 10] {
    let mut key = [0u8; 10];
    key[0] = LOCAL_PREFIX;
    key[1] = prefix;
    key[2..].copy_from_slice(&store_id.to_be_bytes());
    key
}

/// The store id of a per-store `meta` key under `min` (its two-byte prefix).
fn store_key_id(key: &[u8], min: [u8; 2]) -> Option<u64> {
    if key.len() != 10 || key[..2] != min {
        return None;
    }
    let mut id = [0u8; 8];
    id.copy_from_slice(&key[2..]);
    Some(u64::from_be_bytes(id))
}

/// What a key of the `meta` keyspace names; used to validate a data dir on open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetaKey {
    StoreIdent,
    ApplyState(u64),
    RegionState(u64),
    StoreAddr(u64),
    StoreStarted(u64),
    IdAlloc,
    DataFormat,
    Placement,
}

/// Classifies a `meta` key; `None` for a key tinykv never writes there.
pub fn decode_meta_key(key: &[u8]) -> Option<MetaKey> {
    if key == STORE_IDENT_KEY {
        return Some(MetaKey::StoreIdent);
    }
    if key == ID_ALLOC_KEY {
        return Some(MetaKey::IdAlloc);
    }
    if key == DATA_FORMAT_KEY {
        return Some(MetaKey::DataFormat);
    }
    if key == PLACEMENT_KEY {
        return Some(MetaKey::Placement);
    }
    if let Some(id) = store_key_id(key, STORE_ADDR_MIN_KEY) {
        return Some(MetaKey::StoreAddr(id));
    }
    if let Some(id) = store_key_id(key, STORE_STARTED_MIN_KEY) {
        return Some(MetaKey::StoreStarted(id));
    }
    if key.len() != REGION_KEY_LEN || key[0] != LOCAL_PREFIX {
        return None;
    }
    let mut id = [0u8; 8];
    id.copy_from_slice(&key[2..10]);
    let region_id = u64::from_be_bytes(id);
    match (key[1], key[10]) {
        (REGION_RAFT_PREFIX, APPLY_STATE_SUFFIX) => Some(MetaKey::ApplyState(region_id)),
        (REGION_META_PREFIX, REGION_STATE_SUFFIX) => Some(MetaKey::RegionState(region_id)),
        _ => None,
    }
}

/// The `kv` keyspace key of a user key.
pub fn data_key(user_key: &[u8]) -> Vec<u8> {
    let mut key = Vec::with_capacity(1 + user_key.len());
    key.push(DATA_PREFIX);
    key.extend_from_slice(user_key);
    key
}

/// The exclusive upper bound of a region's data keys: `d` + end key, or the first key past every
/// data key when the region is unbounded above.
pub fn data_end_key(user_end_key: &[u8]) -> Vec<u8> {
    if user_end_key.is_empty() {
        vec![DATA_PREFIX + 1]
    } else {
        data_key(user_end_key)
    }
}

/// The user key of a `kv` keyspace key, or `None` when it is not a data key.
pub fn user_key(data_key: &[u8]) -> Option<&[u8]> {
    match data_key.split_first() {
        Some((&DATA_PREFIX, rest)) => Some(rest),
        _ => None,
    }
}

/// Hex rendering of a key, for error messages and logs.
pub fn hex(key: &[u8]) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(key.len() * 2);
    for b in key {
        let _ = write!(out, "{b:02x}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_matches_the_design_table() {
        assert_eq!(
            raft_log_key(1, 2).to_vec(),
            vec![1, 2, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 2]
        );
        assert_eq!(
            raft_state_key(1).to_vec(),
            vec![1, 2, 0, 0, 0, 0, 0, 0, 0, 1, 2]
        );
        assert_eq!(
            apply_state_key(1).to_vec(),
            vec![1, 2, 0, 0, 0, 0, 0, 0, 0, 1, 3]
        );
        assert_eq!(
            region_state_key(1).to_vec(),
            vec![1, 3, 0, 0, 0, 0, 0, 0, 0, 1, 1]
        );
        assert_eq!(STORE_IDENT_KEY, [1, 1]);
        assert_eq!(data_key(b"ab"), b"dab".to_vec());
    }

    #[test]
    fn log_keys_sort_by_region_then_index() {
        let mut keys = [
            raft_log_key(2, 1),
            raft_log_key(1, 256),
            raft_log_key(1, 255),
            raft_log_key(1, u64::MAX),
            raft_log_key(1, 0),
        ];
        keys.sort();
        let order: Vec<(u64, u64)> = keys
            .iter()
            .map(|k| {
                let region = u64::from_be_bytes(k[2..10].try_into().unwrap());
                (region, decode_raft_log_key(region, k).unwrap())
            })
            .collect();
        assert_eq!(
            order,
            vec![(1, 0), (1, 255), (1, 256), (1, u64::MAX), (2, 1)]
        );
        // The raft state follows every log key of its region and precedes the next region.
        assert!(raft_log_key(1, u64::MAX).as_slice() < raft_state_key(1).as_slice());
        assert!(raft_state_key(1).as_slice() < raft_log_key(2, 0).as_slice());
        // Region states sort by region id.
        assert!(region_state_key(255) < region_state_key(256));
    }

    #[test]
    fn data_keys_keep_user_order_and_range_bounds() {
        assert!(data_key(b"a") < data_key(b"a\0"));
        assert!(data_key(b"a\xff") < data_key(b"b"));
        assert!(data_key(b"\xff\xff\xff") < data_end_key(b""));
        assert_eq!(user_key(&data_key(b"xy")), Some(&b"xy"[..]));
        assert_eq!(user_key(b"zz"), None);
        assert_eq!(user_key(b""), None);
    }

    #[test]
    fn meta_keys_decode_or_refuse() {
        assert_eq!(decode_meta_key(&STORE_IDENT_KEY), Some(MetaKey::StoreIdent));
        assert_eq!(
            decode_meta_key(&apply_state_key(7)),
            Some(MetaKey::ApplyState(7))
        );
        assert_eq!(
            decode_meta_key(&region_state_key(7)),
            Some(MetaKey::RegionState(7))
        );
        assert_eq!(decode_meta_key(&raft_state_key(7)), None);
        assert_eq!(decode_meta_key(b"garbage"), None);
        assert_eq!(decode_raft_log_key(7, &raft_log_key(7, 9)), Some(9));
        assert_eq!(decode_raft_log_key(8, &raft_log_key(7, 9)), None);
        assert_eq!(hex(&[0x01, 0xab]), "01ab");
    }
}
