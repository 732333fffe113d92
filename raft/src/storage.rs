//! What Raft reads from stable storage, and [`MemStorage`], an in-memory implementation for
//! tests and simulations.

use crate::error::StorageError;
use crate::message::{ConfState, Entry, HardState, Snapshot, SnapshotMetadata};

/// The persisted state a node restarts from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RaftState {
    pub hard_state: HardState,
    pub conf_state: ConfState,
}

pub type StorageResult<T> = std::result::Result<T, StorageError>;

/// Read access to a node's stable log. The node, not Raft, writes to storage: it persists each
/// `Ready`'s entries and hard state, then calls `advance`.
///
/// Indices: entries `first_index()..=last_index()` are readable; `term(first_index() - 1)` is
/// the term of the last compacted entry (the snapshot's term) and must also be answered.
pub trait Storage {
    fn initial_state(&self) -> StorageResult<RaftState>;
    /// Entries in `[low, high)`, stopping once their total [`Entry::size`] passes `max_size`
    /// (but always at least one entry). `Compacted` when `low` is compacted, `Unavailable`
    /// when `high` is past the last index + 1.
    fn entries(&self, low: u64, high: u64, max_size: Option<u64>) -> StorageResult<Vec<Entry>>;
    fn term(&self, index: u64) -> StorageResult<u64>;
    fn first_index(&self) -> StorageResult<u64>;
    fn last_index(&self) -> StorageResult<u64>;
    /// A snapshot at or after `request_index`, or `SnapshotTemporarilyUnavailable` while one is
    /// being generated.
    fn snapshot(&self, request_index: u64) -> StorageResult<Snapshot>;
}

/// Storage in memory. `entries[0]` is a dummy that records the compacted index and term.
#[derive(Clone, Debug)]
pub struct MemStorage {
    hard_state: HardState,
    snapshot_metadata: SnapshotMetadata,
    snapshot_data: bytes::Bytes,
    entries: Vec<Entry>,
}

impl Default for MemStorage {
    fn default() -> MemStorage {
        MemStorage {
            hard_state: HardState::default(),
            snapshot_metadata: SnapshotMetadata::default(),
            snapshot_data: bytes::Bytes::new(),
            entries: vec![Entry::default()],
        }
    }
}

impl MemStorage {
    pub fn new() -> MemStorage {
        MemStorage::default()
    }

    /// A storage whose membership is `voters` (as if bootstrapped with them).
    pub fn new_with_conf_state(voters: Vec<u64>) -> MemStorage {
        let mut s = MemStorage::default();
        s.snapshot_metadata.conf_state = ConfState {
            voters,
            learners: Vec::new(),
        };
        s
    }

    pub fn hard_state(&self) -> HardState {
        self.hard_state
    }

    pub fn set_hard_state(&mut self, hs: HardState) {
        self.hard_state = hs;
    }

    pub fn set_conf_state(&mut self, cs: ConfState) {
        self.snapshot_metadata.conf_state = cs;
    }

    fn offset(&self) -> u64 {
        self.entries[0].index
    }

    /// Every stored entry after the compacted one.
    pub fn all_entries(&self) -> &[Entry] {
        &self.entries[1..]
    }

    /// Appends entries that follow or overlap the stored log; an overlapping suffix is replaced.
    /// Entries at or below the compacted index are skipped.
    pub fn append(&mut self, ents: &[Entry]) -> StorageResult<()> {
        let Some(first_new) = ents.first() else {
            return Ok(());
        };
        let first = self.offset() + 1;
        let last_new = first_new.index + ents.len() as u64 - 1;
        if last_new < first {
            return Ok(());
        }
        let ents = if first_new.index < first {
            &ents[(first - first_new.index) as usize..]
        } else {
            ents
        };
        let start = ents[0].index;
        let last = self.offset() + self.entries.len() as u64 - 1;
        if start > last + 1 {
            return Err(StorageError::Other(
                format!("append leaves a gap: last index {last}, appending at {start}").into(),
            ));
        }
        self.entries.truncate((start - self.offset()) as usize);
        self.entries.extend_from_slice(ents);
        Ok(())
    }

    /// Replaces the whole log with a snapshot.
    pub fn apply_snapshot(&mut self, snapshot: Snapshot) -> StorageResult<()> {
        let meta = &snapshot.metadata;
        if meta.index <= self.snapshot_metadata.index {
            return Err(StorageError::SnapshotOutOfDate);
        }
        self.entries = vec![Entry {
            term: meta.term,
            index: meta.index,
            ..Entry::default()
        }];
        if self.hard_state.term < meta.term {
            self.hard_state.term = meta.term;
        }
        if self.hard_state.commit < meta.index {
            self.hard_state.commit = meta.index;
        }
        self.snapshot_metadata = snapshot.metadata;
        self.snapshot_data = snapshot.data;
        Ok(())
    }

    /// Makes a snapshot at `index` (which must be stored) carrying `data`, and remembers it.
    pub fn create_snapshot(
        &mut self,
        index: u64,
        conf_state: Option<ConfState>,
        data: bytes::Bytes,
    ) -> StorageResult<Snapshot> {
        if index <= self.snapshot_metadata.index {
            return Err(StorageError::SnapshotOutOfDate);
        }
        let term = self.term(index)?;
        self.snapshot_metadata.index = index;
        self.snapshot_metadata.term = term;
        if let Some(cs) = conf_state {
            self.snapshot_metadata.conf_state = cs;
        }
        self.snapshot_data = data;
        Ok(self.current_snapshot())
    }

    /// Drops every entry before `compact_index`; `compact_index` becomes the dummy entry.
    pub fn compact(&mut self, compact_index: u64) -> StorageResult<()> {
        let offset = self.offset();
        if compact_index <= offset {
            return Err(StorageError::Compacted);
        }
        let last = offset + self.entries.len() as u64 - 1;
        if compact_index > last {
            return Err(StorageError::Unavailable);
        }
        let i = (compact_index - offset) as usize;
        self.entries.drain(..i);
        self.entries[0].data = bytes::Bytes::new();
        self.entries[0].entry_type = crate::EntryType::Normal;
        Ok(())
    }

    fn current_snapshot(&self) -> Snapshot {
        Snapshot {
            data: self.snapshot_data.clone(),
            metadata: self.snapshot_metadata.clone(),
        }
    }
}

impl Storage for MemStorage {
    fn initial_state(&self) -> StorageResult<RaftState> {
        Ok(RaftState {
            hard_state: self.hard_state,
            conf_state: self.snapshot_metadata.conf_state.clone(),
        })
    }

    fn entries(&self, low: u64, high: u64, max_size: Option<u64>) -> StorageResult<Vec<Entry>> {
        let offset = self.offset();
        if low <= offset {
            return Err(StorageError::Compacted);
        }
        let last = offset + self.entries.len() as u64 - 1;
        if high > last + 1 {
            return Err(StorageError::Unavailable);
        }
        if low >= high {
            return Ok(Vec::new());
        }
        let slice = &self.entries[(low - offset) as usize..(high - offset) as usize];
        Ok(limit_size(slice, max_size))
    }

    fn term(&self, index: u64) -> StorageResult<u64> {
        let offset = self.offset();
        if index < offset {
            return Err(StorageError::Compacted);
        }
        let i = (index - offset) as usize;
        self.entries
            .get(i)
            .map(|e| e.term)
            .ok_or(StorageError::Unavailable)
    }

    fn first_index(&self) -> StorageResult<u64> {
        Ok(self.offset() + 1)
    }

    fn last_index(&self) -> StorageResult<u64> {
        Ok(self.offset() + self.entries.len() as u64 - 1)
    }

    fn snapshot(&self, _request_index: u64) -> StorageResult<Snapshot> {
        Ok(self.current_snapshot())
    }
}

/// The longest prefix of `entries` whose total size stays within `max_size` (at least one).
pub fn limit_size(entries: &[Entry], max_size: Option<u64>) -> Vec<Entry> {
    let Some(max) = max_size else {
        return entries.to_vec();
    };
    let mut total = 0u64;
    let mut n = 0;
    for e in entries {
        total += e.size();
        if n > 0 && total > max {
            break;
        }
        n += 1;
    }
    entries[..n].to_vec()
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

    fn storage_with(ents: &[(u64, u64)]) -> MemStorage {
        let mut s = MemStorage::new();
        s.entries = ents.iter().map(|&(i, t)| ent(i, t)).collect();
        s
    }

    #[test]
    fn term_and_bounds() {
        let s = storage_with(&[(3, 3), (4, 4), (5, 5)]);
        assert!(matches!(s.term(2), Err(StorageError::Compacted)));
        assert_eq!(s.term(3).unwrap(), 3);
        assert_eq!(s.term(5).unwrap(), 5);
        assert!(matches!(s.term(6), Err(StorageError::Unavailable)));
        assert_eq!(s.first_index().unwrap(), 4);
        assert_eq!(s.last_index().unwrap(), 5);
    }

    #[test]
    fn entries_respect_bounds_and_size() {
        let s = storage_with(&[(3, 3), (4, 4), (5, 5), (6, 6)]);
        assert!(matches!(
            s.entries(3, 4, None),
            Err(StorageError::Compacted)
        ));
        assert!(matches!(
            s.entries(4, 8, None),
            Err(StorageError::Unavailable)
        ));
        assert_eq!(
            s.entries(4, 7, None).unwrap(),
            vec![ent(4, 4), ent(5, 5), ent(6, 6)]
        );
        assert_eq!(s.entries(4, 7, Some(0)).unwrap(), vec![ent(4, 4)]);
        assert_eq!(
            s.entries(4, 7, Some(48)).unwrap(),
            vec![ent(4, 4), ent(5, 5)]
        );
        assert_eq!(s.entries(4, 4, None).unwrap(), vec![]);
    }

    #[test]
    fn append_overwrites_and_skips_compacted() {
        let mut s = storage_with(&[(3, 3), (4, 4), (5, 5)]);
        s.append(&[ent(1, 1), ent(2, 2)]).unwrap();
        assert_eq!(s.all_entries(), &[ent(4, 4), ent(5, 5)]);
        s.append(&[ent(3, 3), ent(4, 6), ent(5, 6)]).unwrap();
        assert_eq!(s.all_entries(), &[ent(4, 6), ent(5, 6)]);
        s.append(&[ent(6, 6)]).unwrap();
        assert_eq!(s.last_index().unwrap(), 6);
        assert!(s.append(&[ent(8, 6)]).is_err());
        s.append(&[ent(5, 7)]).unwrap();
        assert_eq!(s.all_entries(), &[ent(4, 6), ent(5, 7)]);
    }

    #[test]
    fn compact_and_snapshot() {
        let mut s = storage_with(&[(3, 3), (4, 4), (5, 5)]);
        assert!(matches!(s.compact(3), Err(StorageError::Compacted)));
        assert!(matches!(s.compact(6), Err(StorageError::Unavailable)));
        s.compact(4).unwrap();
        assert_eq!(s.first_index().unwrap(), 5);
        assert_eq!(s.term(4).unwrap(), 4);
        let snap = s
            .create_snapshot(
                5,
                Some(ConfState {
                    voters: vec![1, 2],
                    learners: vec![],
                }),
                bytes::Bytes::from_static(b"d"),
            )
            .unwrap();
        assert_eq!(snap.metadata.index, 5);
        assert_eq!(snap.metadata.term, 5);
        let mut t = MemStorage::new();
        t.apply_snapshot(snap.clone()).unwrap();
        assert_eq!(t.first_index().unwrap(), 6);
        assert_eq!(t.last_index().unwrap(), 5);
        assert_eq!(t.term(5).unwrap(), 5);
        assert_eq!(t.initial_state().unwrap().conf_state.voters, vec![1, 2]);
        assert!(matches!(
            t.apply_snapshot(snap),
            Err(StorageError::SnapshotOutOfDate)
        ));
    }
}
