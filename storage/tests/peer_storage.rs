mod common;

use common::{Node, entries, entry, persist, ready, region};
use tinykv_raft::{HardState, Storage, StorageError as RaftError};
use tinykv_storage::{PeerStorage, RAFT_INIT_LOG_INDEX, RAFT_INIT_LOG_TERM, RaftApplyState, keys};

fn stored_log_indexes(node: &Node, region_id: u64) -> Vec<u64> {
    node.engines
        .log_entries(region_id, 0, u64::MAX)
        .unwrap()
        .iter()
        .map(|e| e.index)
        .collect()
}

#[test]
fn bootstrapped_region_starts_at_the_init_index() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::bootstrap(dir.path(), 1, &region(1, b"", b""));
    let ps = node.peer(1);
    assert_eq!(ps.first_index().unwrap(), RAFT_INIT_LOG_INDEX + 1);
    assert_eq!(ps.last_index().unwrap(), RAFT_INIT_LOG_INDEX);
    assert_eq!(ps.term(RAFT_INIT_LOG_INDEX).unwrap(), RAFT_INIT_LOG_TERM);
    assert!(matches!(
        ps.term(RAFT_INIT_LOG_INDEX - 1),
        Err(RaftError::Compacted)
    ));
    assert!(matches!(
        ps.term(RAFT_INIT_LOG_INDEX + 1),
        Err(RaftError::Unavailable)
    ));
    let state = ps.initial_state().unwrap();
    assert_eq!(
        state.hard_state,
        HardState {
            term: 5,
            vote: 0,
            commit: 5
        }
    );
    assert_eq!(state.conf_state.voters, vec![1, 2]);
    assert_eq!(ps.applied_index(), 5);
    // A peer created for a message starts empty, and the bootstrapped region cannot be one.
    let fresh =
        PeerStorage::new_uninitialized(node.engines.clone(), node.workers.handles(), 9).unwrap();
    assert_eq!(
        (fresh.first_index().unwrap(), fresh.last_index().unwrap()),
        (1, 0)
    );
    assert!(fresh.initial_state().unwrap().conf_state.voters.is_empty());
    assert_eq!(fresh.term(0).unwrap(), 0);
    assert!(
        PeerStorage::new_uninitialized(node.engines.clone(), node.workers.handles(), 1).is_err()
    );
}

#[test]
fn append_overwrites_a_conflicting_suffix_and_deletes_past_the_new_last() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::bootstrap(dir.path(), 1, &region(1, b"", b""));
    let mut ps = node.peer(1);
    let hs = HardState {
        term: 6,
        vote: 1,
        commit: 5,
    };
    persist(&node.engines, &mut ps, &ready(entries(6..=12, 6), Some(hs)));
    assert_eq!(ps.last_index().unwrap(), 12);
    // A new leader overwrites from 9 with a shorter log: 11 and 12 must go from disk too.
    persist(&node.engines, &mut ps, &ready(entries(9..=10, 7), None));
    assert_eq!(ps.last_index().unwrap(), 10);
    assert_eq!(ps.term(9).unwrap(), 7);
    assert_eq!(ps.term(8).unwrap(), 6);
    assert!(matches!(ps.term(11), Err(RaftError::Unavailable)));
    assert_eq!(stored_log_indexes(&node, 1), (6..=10).collect::<Vec<_>>());
    assert_eq!(node.engines.raft_state(1).unwrap().unwrap().last_term, 7);
    // Entries at or below the truncated index are skipped, the rest appended.
    persist(&node.engines, &mut ps, &ready(entries(4..=11, 7), None));
    assert_eq!(stored_log_indexes(&node, 1), (6..=11).collect::<Vec<_>>());
    assert_eq!(ps.term(8).unwrap(), 7);
    // A gap is refused, and nothing changes.
    let mut wb = node.engines.raft_batch();
    assert!(
        ps.save_ready(&mut wb, &ready(entries(13..=13, 7), None))
            .is_err()
    );
    drop(wb);
    // Reads come back the same after a reopen (from disk, not the cache).
    let want = ps.entries(6, 12, None).unwrap();
    drop(ps);
    drop(node);
    let node = Node::open(dir.path());
    let ps = node.peer(1);
    assert_eq!(ps.entries(6, 12, None).unwrap(), want);
    assert_eq!(ps.initial_state().unwrap().hard_state, hs);
}

/// The Raft state record is written only for what the log cannot tell (term, vote, an end that
/// moved back); a reopen reads the end of the log from the log.
#[test]
fn appends_and_commits_leave_the_record_and_a_reopen_reads_the_end_from_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::bootstrap(dir.path(), 1, &region(1, b"", b""));
    let mut ps = node.peer(1);
    let hs = HardState {
        term: 6,
        vote: 1,
        commit: 5,
    };
    persist(&node.engines, &mut ps, &ready(entries(6..=8, 6), Some(hs)));
    let written = node.engines.written_raft_state(1).unwrap().unwrap();
    assert_eq!((written.hard_state, written.last_index), (hs, 8));
    let committed = HardState { commit: 9, ..hs };
    persist(
        &node.engines,
        &mut ps,
        &ready(entries(9..=12, 6), Some(committed)),
    );
    assert_eq!(ps.last_index().unwrap(), 12);
    let written = node.engines.written_raft_state(1).unwrap().unwrap();
    assert_eq!(
        (written.hard_state, written.last_index),
        (hs, 8),
        "an append and a commit rewrote the record"
    );
    let read = node.engines.raft_state(1).unwrap().unwrap();
    assert_eq!((read.last_index, read.last_term), (12, 6));
    // Nothing was applied past 5, and a commit that was not written is learnt again.
    assert_eq!(read.hard_state, hs);

    // A new leader cuts the log back to 10: the record says so, or the reopen would find 10
    // as the end only by luck of what was deleted.
    let newer = HardState {
        term: 7,
        vote: 0,
        commit: 9,
    };
    persist(
        &node.engines,
        &mut ps,
        &ready(entries(10..=10, 7), Some(newer)),
    );
    let written = node.engines.written_raft_state(1).unwrap().unwrap();
    assert_eq!((written.last_index, written.last_term), (10, 7));
    persist(&node.engines, &mut ps, &ready(entries(11..=14, 7), None));
    drop(ps);
    drop(node);
    let node = Node::open(dir.path());
    let ps = node.peer(1);
    assert_eq!(ps.last_index().unwrap(), 14);
    assert_eq!(ps.term(14).unwrap(), 7);
    assert_eq!(ps.term(9).unwrap(), 6);
    assert_eq!(ps.initial_state().unwrap().hard_state, newer);
    assert_eq!(stored_log_indexes(&node, 1), (6..=14).collect::<Vec<_>>());
}

/// A new leader's entry replaces the last one at the same index: the log's end does not move,
/// so the record keeps the old last term. A reopen takes the term from the log, not the record
/// (a store that stopped here refused to open: "last term 6 but the entry at 8 has term 7").
#[test]
fn a_last_entry_overwritten_in_place_reopens_with_the_new_term() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::bootstrap(dir.path(), 1, &region(1, b"", b""));
    let mut ps = node.peer(1);
    let hs = HardState {
        term: 6,
        vote: 1,
        commit: 5,
    };
    persist(&node.engines, &mut ps, &ready(entries(6..=8, 6), Some(hs)));
    // The new term is recorded before the new leader's append reaches this peer.
    let newer = HardState {
        term: 7,
        vote: 0,
        commit: 5,
    };
    persist(&node.engines, &mut ps, &ready(Vec::new(), Some(newer)));
    persist(&node.engines, &mut ps, &ready(entries(8..=8, 7), None));
    assert_eq!((ps.last_index().unwrap(), ps.term(8).unwrap()), (8, 7));
    let read = node.engines.raft_state(1).unwrap().unwrap();
    assert_eq!((read.last_index, read.last_term), (8, 7));
    drop(ps);
    drop(node);
    let node = Node::open(dir.path());
    let ps = PeerStorage::open(node.engines.clone(), node.workers.handles(), 1)
        .expect("the reopened peer storage is consistent");
    assert_eq!((ps.last_index().unwrap(), ps.term(8).unwrap()), (8, 7));
    assert_eq!(ps.term(7).unwrap(), 6);
    assert_eq!(ps.initial_state().unwrap().hard_state, newer);
}

#[test]
fn entries_across_the_truncated_boundary_and_size_limits() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::bootstrap(dir.path(), 1, &region(1, b"", b""));
    let mut ps = node.peer(1);
    persist(
        &node.engines,
        &mut ps,
        &ready(
            entries(6..=20, 6),
            Some(HardState {
                term: 6,
                vote: 1,
                commit: 20,
            }),
        ),
    );
    assert!(matches!(ps.entries(5, 7, None), Err(RaftError::Compacted)));
    assert!(matches!(
        ps.entries(6, 22, None),
        Err(RaftError::Unavailable)
    ));
    assert_eq!(ps.entries(6, 21, None).unwrap().len(), 15);
    assert_eq!(ps.entries(6, 6, None).unwrap(), vec![]);
    let one = entry(6, 6).size();
    assert_eq!(ps.entries(6, 21, Some(0)).unwrap().len(), 1);
    assert_eq!(ps.entries(6, 21, Some(one * 3)).unwrap().len(), 3);

    // Apply up to 15 and compact to 12.
    let mut state = *ps.apply_state();
    state.applied_index = 15;
    assert!(state.compact_to(12, 6));
    assert!(
        !state.compact_to(12, 6),
        "compacting to the same index again is refused"
    );
    assert!(
        !RaftApplyState {
            applied_index: 15,
            ..state
        }
        .compact_to(16, 6)
    );
    let mut ab = node.engines.apply_batch();
    ab.set_apply_state(1, state);
    let applied = node.engines.commit_apply(ab).unwrap();
    ps.post_apply(&applied).unwrap();
    assert_eq!(ps.first_index().unwrap(), 13);
    assert_eq!(ps.last_index().unwrap(), 20);
    assert_eq!(ps.term(12).unwrap(), 6);
    assert!(matches!(ps.term(11), Err(RaftError::Compacted)));
    assert!(matches!(
        ps.entries(12, 14, None),
        Err(RaftError::Compacted)
    ));
    assert_eq!(
        ps.entries(13, 21, None).unwrap().first().map(|e| e.index),
        Some(13)
    );

    // Log GC really removes the keys, and only those.
    assert_eq!(node.workers.handles().log_gc.flush().unwrap(), 7);
    assert_eq!(stored_log_indexes(&node, 1), (13..=20).collect::<Vec<_>>());
    assert!(node.engines.raft_state(1).unwrap().is_some());

    // After a reopen, reads below the new first index are still refused.
    drop(ps);
    drop(node);
    let node = Node::open(dir.path());
    let ps = node.peer(1);
    assert_eq!(
        (ps.first_index().unwrap(), ps.last_index().unwrap()),
        (13, 20)
    );
    assert!(matches!(
        ps.entries(12, 13, None),
        Err(RaftError::Compacted)
    ));
}

#[test]
fn crash_between_compaction_and_gc_leaves_a_consistent_log() {
    let dir = tempfile::tempdir().unwrap();
    {
        let node = Node::bootstrap(dir.path(), 1, &region(1, b"", b""));
        let mut ps = node.peer(1);
        persist(
            &node.engines,
            &mut ps,
            &ready(
                entries(6..=10, 6),
                Some(HardState {
                    term: 6,
                    vote: 1,
                    commit: 10,
                }),
            ),
        );
        // The truncated state is persisted, but log GC never runs (the worker is stopped).
        node.workers.handles().log_gc.flush().unwrap();
        let mut state = *ps.apply_state();
        state.applied_index = 10;
        assert!(state.compact_to(8, 6));
        let mut ab = node.engines.apply_batch();
        ab.set_apply_state(1, state);
        node.engines.commit_apply(ab).unwrap();
    }
    let node = Node::open(dir.path());
    let mut ps = node.peer(1);
    assert_eq!(stored_log_indexes(&node, 1), (6..=10).collect::<Vec<_>>());
    assert_eq!(ps.first_index().unwrap(), 9);
    assert!(matches!(ps.entries(8, 10, None), Err(RaftError::Compacted)));
    assert_eq!(ps.term(8).unwrap(), 6);
    // The next compaction sweeps the leftovers as well (GC seeks from the first stored key).
    let mut state = *ps.apply_state();
    assert!(state.compact_to(9, 6));
    let mut ab = node.engines.apply_batch();
    ab.set_apply_state(1, state);
    let applied = node.engines.commit_apply(ab).unwrap();
    ps.post_apply(&applied).unwrap();
    node.workers.handles().log_gc.flush().unwrap();
    assert_eq!(stored_log_indexes(&node, 1), vec![10]);
}

#[test]
fn group_commit_persists_many_peers_and_updates_only_after_commit() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::bootstrap(dir.path(), 1, &region(1, b"", b"m"));
    node.engines
        .bootstrap_region(&region(2, b"m", b""))
        .unwrap();
    let mut a = node.peer(1);
    let mut b = node.peer(2);
    let mut wb = node.engines.raft_batch();
    a.save_ready(&mut wb, &ready(entries(6..=7, 6), None))
        .unwrap();
    b.save_ready(&mut wb, &ready(entries(6..=9, 6), None))
        .unwrap();
    assert!(
        a.save_ready(&mut wb, &ready(entries(8..=8, 6), None))
            .is_err()
    );
    // Not committed yet: memory is unchanged.
    assert_eq!(a.last_index().unwrap(), 5);
    let mut persisted = node.engines.commit(wb).unwrap();
    assert!(a.post_persist(&mut persisted).unwrap());
    assert!(b.post_persist(&mut persisted).unwrap());
    assert!(!a.post_persist(&mut persisted).unwrap());
    assert_eq!((a.last_index().unwrap(), b.last_index().unwrap()), (7, 9));
    assert_eq!(node.engines.raft_state(2).unwrap().unwrap().last_index, 9);
    let regions: Vec<u64> = node
        .engines
        .regions()
        .unwrap()
        .iter()
        .map(|r| r.region.id)
        .collect();
    assert_eq!(regions, vec![1, 2]);
}

#[test]
fn apply_writes_data_with_the_apply_state_and_refuses_foreign_keys() {
    let dir = tempfile::tempdir().unwrap();
    let r = region(1, b"b", b"d");
    let node = Node::bootstrap(dir.path(), 1, &r);
    let mut ps = node.peer(1);
    let mut ab = node.engines.apply_batch();
    ab.put(&r, b"b", b"1").unwrap();
    ab.put(&r, b"c", b"2").unwrap();
    ab.put(&r, b"cz", b"3").unwrap();
    assert!(ab.put(&r, b"d", b"x").is_err());
    assert!(ab.delete(&r, b"a").is_err());
    let mut state = *ps.apply_state();
    state.applied_index = 6;
    ab.set_apply_state(1, state);
    ps.post_apply(&node.engines.commit_apply(ab).unwrap())
        .unwrap();
    assert_eq!(ps.applied_index(), 6);
    assert_eq!(
        node.engines.apply_state(1).unwrap().unwrap().applied_index,
        6
    );
    assert_eq!(node.engines.get(b"c").unwrap(), Some(b"2".to_vec()));
    let view = node.engines.read_view();
    let mut ab = node.engines.apply_batch();
    ab.delete(&r, b"c").unwrap();
    node.engines.commit_apply(ab).unwrap();
    // The view still sees the state it was taken at; a fresh read does not.
    assert_eq!(view.get(b"c").unwrap(), Some(b"2".to_vec()));
    assert_eq!(view.scan(b"b", b"", 10).unwrap().len(), 3);
    assert_eq!(node.engines.get(b"c").unwrap(), None);
    assert_eq!(
        node.engines.scan(b"a", b"d", 1).unwrap(),
        vec![(b"b".to_vec(), b"1".to_vec())]
    );
    assert_eq!(node.engines.scan(b"b", b"cz", 10).unwrap().len(), 1);
    assert!(keys::data_key(b"cz") > keys::data_key(b"c"));
}
