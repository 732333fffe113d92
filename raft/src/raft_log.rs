//! The Raft log: persisted entries in [`Storage`] followed by the unstable tail, with the commit
//! and apply positions.

use crate::error::StorageError;
use crate::message::{Entry, Snapshot};
use crate::storage::{Storage, StorageResult, limit_size};
use crate::unstable::Unstable;

/// Invariant: `applied <= committed <= last_index()`.
pub(crate) struct RaftLog<S: Storage> {
    pub(crate) store: S,
    pub(crate) unstable: Unstable,
    pub(crate) committed: u64,
    pub(crate) applied: u64,
}

impl<S: Storage> RaftLog<S> {
    pub(crate) fn new(store: S) -> StorageResult<RaftLog<S>> {
        let first = store.first_index()?;
        let last = store.last_index()?;
        Ok(RaftLog {
            store,
            unstable: Unstable::new(last + 1),
            committed: first - 1,
            applied: first - 1,
        })
    }

    pub(crate) fn first_index(&self) -> StorageResult<u64> {
        match self.unstable.maybe_first_index() {
            Some(i) => Ok(i),
            None => self.store.first_index(),
        }
    }

    /// The unstable tail starts right after the persisted log, so it alone knows the end.
    pub(crate) fn last_index(&self) -> u64 {
        self.unstable.last_index()
    }

    pub(crate) fn term(&self, index: u64) -> StorageResult<u64> {
        if let Some(t) = self.unstable.maybe_term(index) {
            return Ok(t);
        }
        if index > self.last_index() {
            return Err(StorageError::Unavailable);
        }
        if self.unstable.snapshot.is_some() {
            // Storage still holds the log the snapshot replaces.
            return Err(StorageError::Compacted);
        }
        self.store.term(index)
    }

    /// The term of `index`, or 0 when it is not in the log (no real entry has term 0).
    pub(crate) fn term_or_zero(&self, index: u64) -> u64 {
        self.term(index).unwrap_or(0)
    }

    pub(crate) fn last_term(&self) -> u64 {
        self.term_or_zero(self.last_index())
    }

    pub(crate) fn match_term(&self, index: u64, term: u64) -> bool {
        self.term(index).is_ok_and(|t| t == term)
    }

    pub(crate) fn is_up_to_date(&self, last_index: u64, last_term: u64) -> bool {
        let my_term = self.last_term();
        last_term > my_term || (last_term == my_term && last_index >= self.last_index())
    }

    /// The first index among `ents` whose entry is missing here or has another term; 0 if all
    /// are present.
    fn find_conflict(&self, ents: &[Entry]) -> u64 {
        ents.iter()
            .find(|e| !self.match_term(e.index, e.term))
            .map_or(0, |e| e.index)
    }

    /// The highest index at or below `index` whose term is at most `term`, with its term: the
    /// place where a log ending in `term` can agree with this one. Lets a leader skip a whole
    /// term per rejected probe.
    pub(crate) fn find_conflict_by_term(&self, index: u64, term: u64) -> (u64, u64) {
        let mut i = index.min(self.last_index());
        loop {
            match self.term(i) {
                Ok(t) if t > term && i > 0 => i -= 1,
                Ok(t) => return (i, t),
                Err(_) => return (i, 0),
            }
        }
    }

    /// Handles an append after `(index, log_term)`. `None` when the logs do not match there;
    /// otherwise the last index of the new entries. `ents` must follow `index` contiguously.
    pub(crate) fn maybe_append(
        &mut self,
        index: u64,
        log_term: u64,
        committed: u64,
        ents: &[Entry],
    ) -> Option<u64> {
        if !self.match_term(index, log_term) {
            return None;
        }
        let last_new = index + ents.len() as u64;
        let conflict = self.find_conflict(ents);
        if conflict != 0 {
            if conflict <= self.committed {
                // Only a broken leader asks to overwrite committed entries; refuse rather than
                // lose them.
                return None;
            }
            self.append(&ents[(conflict - index - 1) as usize..]);
        }
        self.commit_to(committed.min(last_new));
        Some(last_new)
    }

    pub(crate) fn append(&mut self, ents: &[Entry]) -> u64 {
        self.unstable.truncate_and_append(ents);
        self.last_index()
    }

    pub(crate) fn commit_to(&mut self, to: u64) {
        let to = to.min(self.last_index());
        if to > self.committed {
            self.committed = to;
        }
    }

    /// Commits up to `max_index` if that entry has `term` (a leader commits only its own
    /// term's entries by counting replicas).
    pub(crate) fn maybe_commit(&mut self, max_index: u64, term: u64) -> bool {
        if max_index > self.committed && self.term_or_zero(max_index) == term {
            self.commit_to(max_index);
            return true;
        }
        false
    }

    pub(crate) fn applied_to(&mut self, index: u64) {
        if index > self.applied && index <= self.committed {
            self.applied = index;
        }
    }

    pub(crate) fn stable_to(&mut self, index: u64, term: u64) {
        self.unstable.stable_to(index, term);
    }

    pub(crate) fn stable_snap_to(&mut self, index: u64) {
        self.unstable.stable_snap_to(index);
    }

    pub(crate) fn unstable_entries(&self) -> &[Entry] {
        &self.unstable.entries
    }

    pub(crate) fn pending_snapshot(&self) -> Option<&Snapshot> {
        self.unstable.snapshot.as_ref()
    }

    /// Entries in `[lo, hi)` up to `max_size` bytes (at least one).
    pub(crate) fn slice(
        &self,
        lo: u64,
        hi: u64,
        max_size: Option<u64>,
    ) -> StorageResult<Vec<Entry>> {
        if lo >= hi {
            return Ok(Vec::new());
        }
        if lo < self.first_index()? {
            return Err(StorageError::Compacted);
        }
        if hi > self.last_index() + 1 {
            return Err(StorageError::Unavailable);
        }
        let offset = self.unstable.offset;
        let mut ents = Vec::new();
        if lo < offset {
            let stored_hi = hi.min(offset);
            ents = self.store.entries(lo, stored_hi, max_size)?;
            if (ents.len() as u64) < stored_hi - lo {
                // The size limit cut the stored part short.
                return Ok(ents);
            }
        }
        if hi > offset {
            let from_unstable = self.unstable.slice(lo.max(offset), hi);
            ents.extend_from_slice(from_unstable);
        }
        Ok(limit_size(&ents, max_size))
    }

    /// Entries from `index` to the end, up to `max_size` bytes.
    pub(crate) fn entries(&self, index: u64, max_size: Option<u64>) -> StorageResult<Vec<Entry>> {
        self.slice(index, self.last_index() + 1, max_size)
    }

    fn next_entries_range(&self) -> StorageResult<(u64, u64)> {
        let lo = (self.applied + 1).max(self.first_index()?);
        Ok((lo, self.committed + 1))
    }

    /// Committed entries not yet applied.
    pub(crate) fn next_entries(&self, max_size: Option<u64>) -> StorageResult<Vec<Entry>> {
        let (lo, hi) = self.next_entries_range()?;
        self.slice(lo, hi, max_size)
    }

    pub(crate) fn has_next_entries(&self) -> bool {
        self.next_entries_range().is_ok_and(|(lo, hi)| lo < hi)
    }

    /// Replaces the log with `snapshot`; it stays unstable until the driver installs it.
    pub(crate) fn restore(&mut self, snapshot: Snapshot) {
        self.committed = snapshot.metadata.index;
        self.unstable.restore(snapshot);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemStorage;
    use crate::message::SnapshotMetadata;

    fn ent(index: u64, term: u64) -> Entry {
        Entry {
            index,
            term,
            ..Entry::default()
        }
    }

    fn log_with(stored: &[(u64, u64)], unstable: &[(u64, u64)]) -> RaftLog<MemStorage> {
        let mut s = MemStorage::new();
        let ents: Vec<Entry> = stored.iter().map(|&(i, t)| ent(i, t)).collect();
        s.append(&ents).unwrap();
        let mut log = RaftLog::new(s).unwrap();
        let ents: Vec<Entry> = unstable.iter().map(|&(i, t)| ent(i, t)).collect();
        log.append(&ents);
        log
    }

    #[test]
    fn slice_spans_storage_and_unstable_and_respects_size() {
        let log = log_with(&[(1, 1), (2, 1), (3, 2)], &[(4, 2), (5, 3)]);
        let all: Vec<u64> = log
            .slice(1, 6, None)
            .unwrap()
            .iter()
            .map(|e| e.index)
            .collect();
        assert_eq!(all, vec![1, 2, 3, 4, 5]);
        let part: Vec<u64> = log
            .slice(2, 5, Some(48))
            .unwrap()
            .iter()
            .map(|e| e.index)
            .collect();
        assert_eq!(part, vec![2, 3]);
        let part: Vec<u64> = log
            .slice(3, 6, Some(48))
            .unwrap()
            .iter()
            .map(|e| e.index)
            .collect();
        assert_eq!(part, vec![3, 4]);
        assert!(matches!(
            log.slice(1, 7, None),
            Err(StorageError::Unavailable)
        ));
        assert!(matches!(
            log.slice(0, 2, None),
            Err(StorageError::Compacted)
        ));
        assert_eq!(log.term(5).unwrap(), 3);
        assert_eq!(log.term(3).unwrap(), 2);
        assert!(log.term(6).is_err());
    }

    #[test]
    fn maybe_append_truncates_conflicts_and_limits_commit() {
        let mut log = log_with(&[], &[(1, 1), (2, 2), (3, 3)]);
        assert_eq!(log.maybe_append(3, 2, 3, &[ent(4, 4)]), None);
        assert_eq!(log.maybe_append(1, 1, 10, &[ent(2, 4)]), Some(2));
        assert_eq!(log.last_index(), 2);
        assert_eq!(log.committed, 2);
        // A duplicate of entries already present changes nothing.
        assert_eq!(log.maybe_append(0, 0, 0, &[ent(1, 1)]), Some(1));
        assert_eq!(log.last_index(), 2);
        // Committed entries are never overwritten.
        assert_eq!(log.maybe_append(0, 0, 0, &[ent(1, 9)]), None);
    }

    #[test]
    fn conflict_by_term_skips_whole_terms() {
        let log = log_with(&[], &[(1, 1), (2, 2), (3, 2), (4, 5), (5, 5), (6, 5)]);
        assert_eq!(log.find_conflict_by_term(6, 3), (3, 2));
        assert_eq!(log.find_conflict_by_term(6, 5), (6, 5));
        assert_eq!(log.find_conflict_by_term(10, 1), (1, 1));
        assert_eq!(log.find_conflict_by_term(6, 0), (0, 0));
    }

    #[test]
    fn restore_and_next_entries() {
        let mut log = log_with(&[(1, 1), (2, 1)], &[]);
        log.commit_to(2);
        assert_eq!(log.next_entries(None).unwrap().len(), 2);
        log.applied_to(1);
        assert_eq!(log.next_entries(None).unwrap(), vec![ent(2, 1)]);
        log.restore(Snapshot {
            metadata: SnapshotMetadata {
                index: 10,
                term: 4,
                ..SnapshotMetadata::default()
            },
            ..Snapshot::default()
        });
        assert_eq!(log.first_index().unwrap(), 11);
        assert_eq!(log.last_index(), 10);
        assert_eq!(log.committed, 10);
        assert!(!log.has_next_entries());
        assert!(matches!(log.term(2), Err(StorageError::Compacted)));
        assert!(log.match_term(10, 4));
    }
}
