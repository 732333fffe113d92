//! The tail of the log that the driver has not yet persisted: new entries and, after a snapshot
//! arrived, the snapshot itself.

use crate::message::{Entry, Snapshot};

/// `entries[i]` has index `offset + i`. `offset` is always the last persisted index plus one,
/// so the stable log ends right before it.
#[derive(Clone, Debug, Default)]
pub(crate) struct Unstable {
    pub(crate) snapshot: Option<Snapshot>,
    pub(crate) entries: Vec<Entry>,
    pub(crate) offset: u64,
}

impl Unstable {
    pub(crate) fn new(offset: u64) -> Unstable {
        Unstable {
            snapshot: None,
            entries: Vec::new(),
            offset,
        }
    }

    /// The first index when a pending snapshot defines it.
    pub(crate) fn maybe_first_index(&self) -> Option<u64> {
        self.snapshot.as_ref().map(|s| s.metadata.index + 1)
    }

    pub(crate) fn last_index(&self) -> u64 {
        self.offset + self.entries.len() as u64 - 1
    }

    pub(crate) fn maybe_term(&self, index: u64) -> Option<u64> {
        if index < self.offset {
            return self
                .snapshot
                .as_ref()
                .filter(|s| s.metadata.index == index)
                .map(|s| s.metadata.term);
        }
        self.entries
            .get((index - self.offset) as usize)
            .map(|e| e.term)
    }

    /// Entries up to `index` (if it still has `term`) are persisted.
    pub(crate) fn stable_to(&mut self, index: u64, term: u64) {
        if index < self.offset || self.maybe_term(index) != Some(term) {
            return;
        }
        let n = (index + 1 - self.offset) as usize;
        self.entries.drain(..n);
        self.offset = index + 1;
    }

    pub(crate) fn stable_snap_to(&mut self, index: u64) {
        if self
            .snapshot
            .as_ref()
            .is_some_and(|s| s.metadata.index == index)
        {
            self.snapshot = None;
        }
    }

    pub(crate) fn restore(&mut self, snapshot: Snapshot) {
        self.entries.clear();
        self.offset = snapshot.metadata.index + 1;
        self.snapshot = Some(snapshot);
    }

    /// Appends `ents`, first dropping any unstable entries they overlap. `ents` must be
    /// contiguous and start at or below `last_index() + 1`.
    pub(crate) fn truncate_and_append(&mut self, ents: &[Entry]) {
        let Some(first) = ents.first() else {
            return;
        };
        let after = first.index;
        if after == self.offset + self.entries.len() as u64 {
            self.entries.extend_from_slice(ents);
        } else if after <= self.offset {
            // The new entries replace persisted ones too; the driver overwrites them in storage.
            self.offset = after;
            self.entries = ents.to_vec();
        } else {
            self.entries.truncate((after - self.offset) as usize);
            self.entries.extend_from_slice(ents);
        }
    }

    /// Entries in `[lo, hi)`; the caller checks the bounds.
    pub(crate) fn slice(&self, lo: u64, hi: u64) -> &[Entry] {
        &self.entries[(lo - self.offset) as usize..(hi - self.offset) as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::SnapshotMetadata;

    fn ent(index: u64, term: u64) -> Entry {
        Entry {
            index,
            term,
            ..Entry::default()
        }
    }

    #[test]
    fn truncate_and_append_cases() {
        let mut u = Unstable {
            snapshot: None,
            entries: vec![ent(5, 1)],
            offset: 5,
        };
        u.truncate_and_append(&[ent(6, 1), ent(7, 1)]);
        assert_eq!(u.entries, vec![ent(5, 1), ent(6, 1), ent(7, 1)]);
        u.truncate_and_append(&[ent(6, 2)]);
        assert_eq!(u.entries, vec![ent(5, 1), ent(6, 2)]);
        u.truncate_and_append(&[ent(4, 3), ent(5, 3)]);
        assert_eq!(
            (u.offset, u.entries.clone()),
            (4, vec![ent(4, 3), ent(5, 3)])
        );
        assert_eq!(u.last_index(), 5);
    }

    #[test]
    fn stable_to_checks_term_and_snapshot_terms() {
        let mut u = Unstable {
            snapshot: None,
            entries: vec![ent(5, 1), ent(6, 2)],
            offset: 5,
        };
        u.stable_to(6, 1);
        assert_eq!(u.offset, 5);
        u.stable_to(5, 1);
        assert_eq!((u.offset, u.entries.clone()), (6, vec![ent(6, 2)]));
        let snap = Snapshot {
            metadata: SnapshotMetadata {
                index: 9,
                term: 3,
                ..SnapshotMetadata::default()
            },
            ..Snapshot::default()
        };
        u.restore(snap);
        assert_eq!(u.maybe_term(9), Some(3));
        assert_eq!(u.maybe_term(8), None);
        assert_eq!(u.maybe_first_index(), Some(10));
        assert_eq!(u.last_index(), 9);
        u.stable_snap_to(8);
        assert!(u.snapshot.is_some());
        u.stable_snap_to(9);
        assert!(u.snapshot.is_none());
    }
}
