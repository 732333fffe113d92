//! The simulation's invariant checker must be able to fail: each test feeds it a hand-made
//! history that breaks one invariant and asserts that exactly that invariant is reported, and
//! one test feeds it a sound history that must pass.

// The checker is shared with the simulation binary; this test exercises all of it but the
// parts only the simulation's driver uses.
#[allow(dead_code)]
#[path = "sim/checker.rs"]
mod checker;

use bytes::Bytes;
use checker::{Checker, Invariant};
use tinykv_raft::{Entry, HardState, MemStorage, ReadState, Snapshot, SnapshotMetadata};

fn entry(index: u64, term: u64, data: &'static [u8]) -> Entry {
    Entry {
        index,
        term,
        data: Bytes::from_static(data),
        ..Entry::default()
    }
}

fn hs(term: u64, vote: u64, commit: u64) -> HardState {
    HardState { term, vote, commit }
}

/// A checker that knows nodes 1..=3, all bootstrapped at index 0.
fn checker() -> Checker {
    let mut c = Checker::new();
    for id in 1..=3 {
        c.register_node(id, 0, 0, HardState::default()).unwrap();
    }
    c
}

fn storage_with(entries: &[Entry]) -> MemStorage {
    let mut s = MemStorage::new();
    s.append(entries).unwrap();
    s
}

#[test]
fn two_leaders_in_one_term_are_reported() {
    let mut c = checker();
    c.observe_leader(1, 2).unwrap();
    c.observe_leader(1, 2).unwrap();
    c.observe_leader(2, 3).unwrap();
    let v = c.observe_leader(3, 2).unwrap_err();
    assert_eq!(v.invariant, Invariant::ElectionSafety);
    assert!(v.detail.contains("term 2"), "{v}");
}

#[test]
fn divergent_applied_entry_is_reported() {
    let mut c = checker();
    c.observe_apply(1, &entry(1, 1, b"a"), 11, 1).unwrap();
    c.observe_apply(2, &entry(1, 1, b"a"), 11, 1).unwrap();
    let v = c.observe_apply(3, &entry(1, 1, b"b"), 12, 1).unwrap_err();
    assert_eq!(v.invariant, Invariant::StateMachineSafety);
}

#[test]
fn divergent_state_behind_a_snapshot_is_reported() {
    let mut c = checker();
    c.observe_apply(1, &entry(1, 1, b"a"), 11, 1).unwrap();
    c.observe_apply(1, &entry(2, 1, b"b"), 22, 1).unwrap();
    c.observe_snapshot_restore(2, 2, 22).unwrap();
    let v = c.observe_snapshot_restore(3, 2, 23).unwrap_err();
    assert_eq!(v.invariant, Invariant::StateMachineSafety);
}

#[test]
fn applying_twice_or_out_of_order_is_reported() {
    let mut c = checker();
    c.observe_apply(1, &entry(1, 1, b"a"), 11, 1).unwrap();
    let twice = c.observe_apply(1, &entry(1, 1, b"a"), 11, 1).unwrap_err();
    assert_eq!(twice.invariant, Invariant::ApplyOrder);
    let skipped = c.observe_apply(2, &entry(2, 1, b"b"), 22, 1).unwrap_err();
    assert_eq!(skipped.invariant, Invariant::ApplyOrder);
    c.observe_apply(3, &entry(1, 1, b"a"), 11, 1).unwrap();
    let backwards = c.observe_snapshot_restore(3, 1, 11).unwrap_err();
    assert_eq!(backwards.invariant, Invariant::ApplyOrder);
}

#[test]
fn commit_moving_back_is_reported_even_across_a_restart() {
    let mut c = checker();
    c.observe_persisted_hard_state(1, hs(2, 1, 5)).unwrap();
    c.observe_persisted_hard_state(1, hs(2, 1, 7)).unwrap();
    // A restart re-registers nothing: the persisted state must carry on from where it was.
    let v = c.observe_persisted_hard_state(1, hs(3, 0, 6)).unwrap_err();
    assert_eq!(v.invariant, Invariant::CommitMonotonic);
}

#[test]
fn a_changed_vote_or_older_term_is_reported() {
    let mut c = checker();
    c.observe_persisted_hard_state(1, hs(4, 2, 0)).unwrap();
    let vote = c.observe_persisted_hard_state(1, hs(4, 3, 0)).unwrap_err();
    assert_eq!(vote.invariant, Invariant::DurableVote);
    let term = c.observe_persisted_hard_state(1, hs(3, 2, 0)).unwrap_err();
    assert_eq!(term.invariant, Invariant::DurableVote);
}

#[test]
fn applied_past_commit_is_reported() {
    let c = checker();
    c.check_applied_within_commit(1, 5, 5).unwrap();
    let v = c.check_applied_within_commit(1, 6, 5).unwrap_err();
    assert_eq!(v.invariant, Invariant::AppliedWithinCommit);
}

#[test]
fn logs_that_agree_on_an_entry_but_not_before_it_are_reported() {
    let c = checker();
    let a = [entry(1, 1, b"x"), entry(2, 1, b"y"), entry(3, 2, b"z")];
    let b = [
        entry(1, 1, b"x"),
        entry(2, 1, b"DIFFERENT"),
        entry(3, 2, b"z"),
    ];
    let v = c.check_log_matching(1, &a, 2, &b).unwrap_err();
    assert_eq!(v.invariant, Invariant::LogMatching);
    // Only the overlap counts: a compacted prefix is not a difference.
    c.check_log_matching(1, &a, 2, &b[2..]).unwrap();
}

#[test]
fn logs_that_diverge_only_after_their_last_common_term_pass() {
    let c = checker();
    let a = [entry(1, 1, b"x"), entry(2, 1, b"y"), entry(3, 2, b"z")];
    let b = [entry(1, 1, b"x"), entry(2, 3, b"w")];
    c.check_log_matching(1, &a, 2, &b).unwrap();
}

#[test]
fn a_leader_missing_a_committed_entry_is_reported() {
    let mut c = checker();
    c.observe_apply(1, &entry(1, 1, b"a"), 11, 1).unwrap();
    c.observe_apply(1, &entry(2, 2, b"b"), 22, 2).unwrap();
    // Leading term 3 with index 2 overwritten by another term.
    let stale = storage_with(&[entry(1, 1, b"a"), entry(2, 3, b"")]);
    let v = c.check_leader_completeness(2, 3, &stale).unwrap_err();
    assert_eq!(v.invariant, Invariant::LeaderCompleteness);
    // Leading term 3 with a log too short.
    let short = storage_with(&[entry(1, 1, b"a")]);
    let v = c.check_leader_completeness(3, 3, &short).unwrap_err();
    assert_eq!(v.invariant, Invariant::LeaderCompleteness);
}

#[test]
fn a_leader_holding_committed_entries_or_their_snapshot_passes() {
    let mut c = checker();
    c.observe_apply(1, &entry(1, 1, b"a"), 11, 1).unwrap();
    c.observe_apply(1, &entry(2, 2, b"b"), 22, 2).unwrap();
    let full = storage_with(&[entry(1, 1, b"a"), entry(2, 2, b"b"), entry(3, 3, b"")]);
    c.check_leader_completeness(2, 3, &full).unwrap();
    let mut compacted = MemStorage::new();
    compacted
        .apply_snapshot(Snapshot {
            data: Bytes::new(),
            metadata: SnapshotMetadata {
                index: 2,
                term: 2,
                ..SnapshotMetadata::default()
            },
        })
        .unwrap();
    c.check_leader_completeness(3, 3, &compacted).unwrap();
    // Entries committed in the leader's own term or later are not its predecessors' business.
    let empty = MemStorage::new();
    c.check_leader_completeness(3, 2, &empty).unwrap_err();
    c.check_leader_completeness(3, 1, &empty).unwrap();
}

#[test]
fn a_stale_read_index_is_reported() {
    let mut c = checker();
    c.observe_persisted_hard_state(1, hs(2, 1, 9)).unwrap();
    c.observe_read_request(Bytes::from_static(b"r1"));
    let ok = ReadState {
        index: 9,
        request_ctx: Bytes::from_static(b"r1"),
    };
    c.observe_read_state(2, &ok).unwrap();
    let stale = ReadState {
        index: 8,
        request_ctx: Bytes::from_static(b"r1"),
    };
    assert_eq!(
        c.observe_read_state(2, &stale).unwrap_err().invariant,
        Invariant::ReadLinearizability
    );
    let unknown = ReadState {
        index: 9,
        request_ctx: Bytes::from_static(b"never asked"),
    };
    assert_eq!(
        c.observe_read_state(2, &unknown).unwrap_err().invariant,
        Invariant::ReadLinearizability
    );
}

#[test]
fn a_sound_history_passes() {
    let mut c = checker();
    c.observe_leader(1, 1).unwrap();
    let log = [entry(1, 1, b""), entry(2, 1, b"p1")];
    for id in 1..=3 {
        c.observe_persisted_hard_state(id, hs(1, 1, 2)).unwrap();
        c.observe_apply(id, &log[0], 11, 1).unwrap();
        c.observe_apply(id, &log[1], 22, 1).unwrap();
        c.check_applied_within_commit(id, 2, 2).unwrap();
    }
    c.check_log_matching(1, &log, 2, &log).unwrap();
    c.observe_leader(2, 2).unwrap();
    c.check_leader_completeness(2, 2, &storage_with(&log))
        .unwrap();
    c.observe_snapshot_restore(3, 3, 33).unwrap();
    c.observe_apply(3, &entry(4, 2, b"p2"), 44, 2).unwrap();
}
