//! The recent tail of a peer's log kept in memory: a leader replicating to followers reads the
//! entries it just wrote, and this spares those reads a trip through the LSM tree.

use std::collections::VecDeque;

use tinykv_raft::Entry;

/// A contiguous run of the latest persisted entries, bounded in bytes.
#[derive(Debug)]
pub struct EntryCache {
    entries: VecDeque<Entry>,
    bytes: u64,
    max_bytes: u64,
}

impl EntryCache {
    pub fn new(max_bytes: u64) -> EntryCache {
        EntryCache {
            entries: VecDeque::new(),
            bytes: 0,
            max_bytes,
        }
    }

    /// Index of the first cached entry, if any.
    pub fn first_index(&self) -> Option<u64> {
        self.entries.front().map(|e| e.index)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Adds persisted entries (contiguous); a cached suffix they overlap is replaced, and a
    /// run that does not continue the cache replaces it.
    pub fn append(&mut self, ents: &[Entry]) {
        let Some(first) = ents.first() else {
            return;
        };
        match self.first_index() {
            Some(cache_first) if first.index > cache_first => {
                let keep = (first.index - cache_first) as usize;
                if keep > self.entries.len() {
                    self.clear();
                } else {
                    self.truncate_to(keep);
                }
            }
            _ => self.clear(),
        }
        for e in ents {
            self.bytes += e.size();
            self.entries.push_back(e.clone());
        }
        while self.bytes > self.max_bytes && self.entries.len() > 1 {
            self.pop_front();
        }
    }

    /// Drops entries before `index` (they were compacted).
    pub fn compact_to(&mut self, index: u64) {
        while self.first_index().is_some_and(|first| first < index) {
            self.pop_front();
        }
    }

    pub fn clear(&mut self) {
        self.entries.clear();
        self.bytes = 0;
    }

    pub fn get(&self, index: u64) -> Option<&Entry> {
        let first = self.first_index()?;
        self.entries
            .get(usize::try_from(index.checked_sub(first)?).ok()?)
    }

    /// Entries in `[low, high)` when the cache holds all of them.
    pub fn range(&self, low: u64, high: u64) -> Option<impl Iterator<Item = &Entry>> {
        let first = self.first_index()?;
        let last = first + self.entries.len() as u64 - 1;
        if low < first || high > last + 1 || low > high {
            return None;
        }
        Some(
            self.entries
                .range((low - first) as usize..(high - first) as usize),
        )
    }

    fn truncate_to(&mut self, len: usize) {
        while self.entries.len() > len {
            if let Some(e) = self.entries.pop_back() {
                self.bytes -= e.size();
            }
        }
    }

    fn pop_front(&mut self) {
        if let Some(e) = self.entries.pop_front() {
            self.bytes -= e.size();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ent(index: u64, term: u64) -> Entry {
        Entry {
            index,
            term,
            ..Entry::default()
        }
    }

    #[test]
    fn append_overwrites_suffix_and_respects_the_bound() {
        let mut c = EntryCache::new(24 * 3);
        c.append(&[ent(1, 1), ent(2, 1), ent(3, 1)]);
        c.append(&[ent(3, 2), ent(4, 2)]);
        assert_eq!(c.first_index(), Some(2));
        assert_eq!(c.get(3).map(|e| e.term), Some(2));
        assert_eq!(c.get(1), None);
        assert_eq!(c.range(2, 5).map(|it| it.count()), Some(3));
        assert!(c.range(1, 3).is_none());
        assert!(c.range(2, 6).is_none());
        // A run that does not continue the cache replaces it.
        c.append(&[ent(9, 3)]);
        assert_eq!(c.first_index(), Some(9));
        assert_eq!(c.len(), 1);
        // A run before the cache replaces it too.
        c.append(&[ent(5, 3), ent(6, 3)]);
        assert_eq!((c.first_index(), c.len()), (Some(5), 2));
        c.compact_to(6);
        assert_eq!((c.first_index(), c.len()), (Some(6), 1));
        c.compact_to(10);
        assert!(c.is_empty());
    }
}
