//! Where a leader compacts its region's log (TiKV's raft-log GC rules): keep what healthy
//! followers still need, so one away for a few seconds catches up from the log instead of a
//! whole snapshot, but never more than a count or size cap, past which a lagging follower is
//! sent a snapshot. Pure: the store feeds it the indices and the leader's view of its peers.

/// The caps, from `raft.log-gc-*`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct GcLimits {
    /// Compact only once this many entries every peer has can go.
    pub threshold: u64,
    /// Compact to the applied index once more applied entries than this are kept.
    pub count_limit: u64,
    /// The same once the kept entries take about this many bytes.
    pub size_limit: u64,
}

/// What the leader knows of its log and its peers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct LogView {
    /// The first index still stored (truncated index + 1).
    pub first: u64,
    pub applied: u64,
    /// Approximate bytes of the stored entries.
    pub size: u64,
    /// The highest index each other peer is known to hold.
    pub matched: Vec<u64>,
}

/// The index to compact the log to (inclusive), if compaction is due. The last applied entry
/// is always kept, so its term stays readable for appends.
pub(crate) fn compact_index(view: &LogView, limits: GcLimits) -> Option<u64> {
    let LogView {
        first,
        applied,
        size,
        ..
    } = *view;
    if applied <= first {
        return None;
    }
    let last_keepable = applied - 1;
    let kept = applied - first;
    if kept > limits.count_limit || size >= limits.size_limit {
        return Some(last_keepable);
    }
    let replicated = view.matched.iter().copied().min().unwrap_or(applied);
    let target = replicated.min(last_keepable);
    if target < first || target + 1 - first < limits.threshold.min(limits.count_limit) {
        return None;
    }
    Some(target)
}

/// The bytes left of `size` once entries up to `index` of `[first, applied]` are dropped,
/// assuming entries of even size (the log keeps no per-entry sizes).
pub(crate) fn size_after_compaction(size: u64, first: u64, applied: u64, index: u64) -> u64 {
    if applied < first || index < first {
        return size;
    }
    let total = applied - first + 1;
    let left = applied.saturating_sub(index);
    ((u128::from(size) * u128::from(left)) / u128::from(total)) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: GcLimits = GcLimits {
        threshold: 10,
        count_limit: 100,
        size_limit: 1 << 20,
    };

    fn view(first: u64, applied: u64, matched: &[u64]) -> LogView {
        LogView {
            first,
            applied,
            size: 0,
            matched: matched.to_vec(),
        }
    }

    #[test]
    fn entries_a_follower_still_needs_are_kept() {
        // Followers at 30 and 55: only what both have goes.
        assert_eq!(compact_index(&view(6, 60, &[30, 55]), LIMITS), Some(30));
        // Everyone is caught up: all but the last applied entry go.
        assert_eq!(compact_index(&view(6, 60, &[60, 60]), LIMITS), Some(59));
    }

    #[test]
    fn too_little_to_drop_waits_for_the_threshold() {
        assert_eq!(compact_index(&view(6, 60, &[10, 60]), LIMITS), None);
        assert_eq!(compact_index(&view(6, 14, &[14]), LIMITS), None);
        assert_eq!(compact_index(&view(6, 16, &[16]), LIMITS), Some(15));
        assert_eq!(compact_index(&view(6, 6, &[]), LIMITS), None);
    }

    #[test]
    fn past_the_count_or_size_cap_a_lagging_follower_is_left_behind() {
        // A follower stuck at 5 (down, or needing a snapshot anyway) holds nothing back forever.
        assert_eq!(compact_index(&view(6, 106, &[5, 106]), LIMITS), None);
        assert_eq!(compact_index(&view(6, 107, &[5, 107]), LIMITS), Some(106));
        let big = LogView {
            size: 1 << 20,
            ..view(6, 40, &[5])
        };
        assert_eq!(compact_index(&big, LIMITS), Some(39));
    }

    #[test]
    fn a_single_voter_compacts_on_its_own() {
        assert_eq!(compact_index(&view(6, 60, &[]), LIMITS), Some(59));
    }

    #[test]
    fn the_size_estimate_shrinks_with_what_is_dropped() {
        assert_eq!(size_after_compaction(1000, 1, 10, 5), 500);
        assert_eq!(size_after_compaction(1000, 1, 10, 10), 0);
        assert_eq!(size_after_compaction(1000, 6, 5, 5), 1000);
    }
}
