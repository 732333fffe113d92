//! Measuring a region for split: its user data's size and key count, and where to cut it. One
//! pass over the region's keys in order from a consistent view (TinyKV's split checker); the
//! caller runs it off the raft loop.

use fjall::Readable;

use crate::engines::{Engines, KV_KEYSPACE};
use crate::error::{Result, StorageError};
use crate::keys;
use crate::records::Region;

/// When a region is split and into what (the `region` section of the node's config).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SplitLimits {
    pub split_size: u64,
    pub max_size: u64,
    pub split_keys: u64,
    pub max_keys: u64,
    /// The most split keys one check returns; a region still too large is cut again at the
    /// next check.
    pub max_split_keys: usize,
}

/// What a check found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RegionSize {
    /// Bytes of user keys and values.
    pub size: u64,
    pub keys: u64,
    /// Where new regions would start, strictly increasing and after the region's first key;
    /// empty unless the region holds more than `max_size` or `max_keys`.
    pub split_keys: Vec<Vec<u8>>,
}

impl Engines {
    /// Measures `region` and, when it is over its limits, finds keys that cut it into pieces
    /// of about `split_size` bytes or `split_keys` keys: each split key is the first key that
    /// would take its piece past either.
    pub fn check_split(&self, region: &Region, limits: &SplitLimits) -> Result<RegionSize> {
        let snapshot = self.db().snapshot();
        let range = keys::data_key(&region.start_key)..keys::data_end_key(&region.end_key);
        let mut out = RegionSize::default();
        let mut candidates = Vec::new();
        let (mut piece_size, mut piece_keys) = (0u64, 0u64);
        for guard in snapshot.range(self.kv(), range) {
            let (key, value) = guard.into_inner()?;
            let user = keys::user_key(&key)
                .ok_or_else(|| StorageError::corrupt(KV_KEYSPACE, &key, "not a data key"))?;
            let entry = (user.len() + value.len()) as u64;
            let full = piece_size + entry > limits.split_size || piece_keys + 1 > limits.split_keys;
            if full && piece_keys > 0 && candidates.len() < limits.max_split_keys {
                candidates.push(user.to_vec());
                (piece_size, piece_keys) = (0, 0);
            }
            piece_size += entry;
            piece_keys += 1;
            out.size += entry;
            out.keys += 1;
        }
        if out.size > limits.max_size || out.keys > limits.max_keys {
            out.split_keys = candidates;
        }
        Ok(out)
    }
}
