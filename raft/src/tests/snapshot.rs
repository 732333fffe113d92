//! Snapshots: installing, ignoring and fast-forwarding on the follower; sending, throttling
//! and retrying on the leader; a slow follower restored through a snapshot.

use std::cell::Cell;
use std::rc::Rc;

use bytes::Bytes;

use super::harness::*;
use crate::raft::Raft;
use crate::{
    ConfState, Entry, HardState, MemStorage, Message, MessageType, ProgressState, RaftState,
    Snapshot, SnapshotMetadata, SnapshotStatus, StateRole, Storage, StorageError, StorageResult,
};

fn snapshot(index: u64, term: u64, voters: &[u64]) -> Snapshot {
    Snapshot {
        data: Bytes::from_static(b"state"),
        metadata: SnapshotMetadata {
            conf_state: conf(voters, &[]),
            index,
            term,
        },
    }
}

fn snap_msg(from: u64, to: u64, term: u64, snap: Snapshot) -> Message {
    Message {
        term,
        snapshot: Some(snap),
        ..msg(from, to, MessageType::Snapshot)
    }
}

#[test]
fn follower_installs_a_snapshot_and_takes_its_membership() {
    let mut r = new_raft(1, &[1, 2], 10, 1, MemStorage::new());
    r.step(snap_msg(2, 1, 11, snapshot(11, 11, &[1, 2, 3])))
        .unwrap();
    assert_eq!(r.leader_id, 2);
    assert_eq!(r.raft_log.last_index(), 11);
    assert_eq!(r.raft_log.term(11).unwrap(), 11);
    assert_eq!(r.raft_log.committed, 11);
    assert_eq!(r.prs.conf_state(), conf(&[1, 2, 3], &[]));
    assert_eq!(
        r.raft_log.pending_snapshot().map(|s| s.metadata.index),
        Some(11)
    );
    let msgs = read_messages(&mut r);
    assert_eq!(msgs.len(), 1);
    assert_eq!(
        (msgs[0].msg_type, msgs[0].index, msgs[0].reject),
        (MessageType::AppendResponse, 11, false)
    );
    // The membership may leave this node out or bring new ones in: it is taken as it is.
    r.step(snap_msg(2, 1, 12, snapshot(20, 12, &[2, 3, 4])))
        .unwrap();
    assert_eq!(r.prs.conf_state(), conf(&[2, 3, 4], &[]));
}

#[test]
fn follower_ignores_a_snapshot_at_or_below_its_commit() {
    let store = storage_with(
        &[1, 2, 3],
        HardState {
            term: 3,
            vote: 0,
            commit: 3,
        },
    );
    let mut r = new_raft(1, &[1, 2], 10, 1, store);
    r.step(snap_msg(2, 1, 3, snapshot(1, 1, &[1, 2]))).unwrap();
    assert_eq!(r.raft_log.committed, 3);
    assert!(r.raft_log.pending_snapshot().is_none());
    let msgs = read_messages(&mut r);
    assert_eq!(
        (msgs[0].msg_type, msgs[0].index),
        (MessageType::AppendResponse, 3)
    );
}

#[test]
fn follower_holding_the_snapshot_index_only_fast_forwards_commit() {
    let store = storage_with(
        &[1, 1, 2, 2],
        HardState {
            term: 2,
            vote: 0,
            commit: 1,
        },
    );
    let mut r = new_raft(1, &[1, 2], 10, 1, store);
    r.step(snap_msg(2, 1, 2, snapshot(3, 2, &[1, 2, 3])))
        .unwrap();
    assert_eq!(r.raft_log.committed, 3);
    assert_eq!(r.raft_log.last_index(), 4);
    assert!(r.raft_log.pending_snapshot().is_none());
    assert_eq!(
        r.prs.conf_state(),
        conf(&[1, 2], &[]),
        "membership unchanged"
    );
    let msgs = read_messages(&mut r);
    assert_eq!(msgs[0].index, 3);
}

#[test]
fn candidate_installing_a_snapshot_follows_the_sender() {
    let mut r = new_raft(1, &[1, 2, 3], 10, 1, MemStorage::new());
    r.become_candidate();
    r.step(snap_msg(2, 1, 1, snapshot(5, 1, &[1, 2, 3])))
        .unwrap();
    assert_role(&r, StateRole::Follower, 1);
    assert_eq!(r.leader_id, 2);
    assert_eq!(r.raft_log.committed, 5);
}

/// A leader whose storage was restored from a snapshot at 11 (term 11) with voters 1 and 2.
fn leader_after_snapshot() -> TestRaft {
    let mut store = MemStorage::new();
    store.apply_snapshot(snapshot(11, 11, &[1, 2])).unwrap();
    let mut r = new_raft(1, &[], 10, 1, store);
    r.become_candidate();
    r.become_leader();
    read_messages(&mut r);
    // The follower is behind the compacted log.
    let pr = r.prs.get_mut(2).unwrap();
    pr.next_idx = 11;
    pr.probe_sent = false;
    r
}

#[test]
fn leader_sends_a_snapshot_to_a_compacted_follower_and_throttles() {
    let mut r = leader_after_snapshot();
    r.step(propose(1, b"somedata")).unwrap();
    let msgs = read_messages(&mut r);
    assert_eq!(msgs.len(), 1);
    assert_eq!(msgs[0].msg_type, MessageType::Snapshot);
    assert_eq!(msgs[0].snapshot.as_ref().unwrap().metadata.index, 11);
    let pr = r.prs.get(2).unwrap();
    assert_eq!(
        (pr.state, pr.pending_snapshot),
        (ProgressState::Snapshot, 11)
    );

    // No second snapshot while one is pending: not on proposals, not on heartbeat answers.
    r.step(propose(1, b"more")).unwrap();
    r.step(Message {
        term: r.term,
        ..msg(2, 1, MessageType::HeartbeatResponse)
    })
    .unwrap();
    r.step(beat(1)).unwrap();
    let msgs = read_messages(&mut r);
    assert!(
        msgs.iter()
            .all(|m| m.msg_type != MessageType::Snapshot && m.msg_type != MessageType::Append)
    );

    // A failed send puts the peer back to probing; the next heartbeat answer retries.
    r.report_snapshot(2, SnapshotStatus::Failure);
    let pr = r.prs.get(2).unwrap();
    assert_eq!((pr.state, pr.pending_snapshot), (ProgressState::Probe, 0));
    assert!(
        read_messages(&mut r).is_empty(),
        "waits for the peer before retrying"
    );
    r.step(Message {
        term: r.term,
        ..msg(2, 1, MessageType::HeartbeatResponse)
    })
    .unwrap();
    let msgs = read_messages(&mut r);
    assert_eq!(
        msgs.iter()
            .filter(|m| m.msg_type == MessageType::Snapshot)
            .count(),
        1
    );

    // Finished: the follower's answer moves it to replicating from the snapshot on.
    r.report_snapshot(2, SnapshotStatus::Finish);
    assert_eq!(r.prs.get(2).unwrap().next_idx, 12);
    r.step(Message {
        term: r.term,
        index: 11,
        ..msg(2, 1, MessageType::AppendResponse)
    })
    .unwrap();
    let pr = r.prs.get(2).unwrap();
    assert_eq!((pr.state, pr.matched), (ProgressState::Replicate, 11));
    let msgs = read_messages(&mut r);
    let appends: Vec<&Message> = msgs
        .iter()
        .filter(|m| m.msg_type == MessageType::Append)
        .collect();
    assert_eq!(appends.len(), 1);
    assert_eq!(appends[0].index, 11);
    assert_eq!(appends[0].entries.len(), 3);
}

#[test]
fn pending_snapshot_times_out_back_to_probe() {
    let mut r = leader_after_snapshot();
    r.step(propose(1, b"somedata")).unwrap();
    read_messages(&mut r);
    assert_eq!(r.prs.get(2).unwrap().state, ProgressState::Snapshot);
    // Keep the leader in office: the peer answers heartbeats but never reports the snapshot.
    let timeout = crate::Config::default().snapshot_pending_timeout_ticks;
    for _ in 0..timeout - 1 {
        r.tick();
    }
    assert_eq!(r.prs.get(2).unwrap().state, ProgressState::Snapshot);
    r.tick();
    let pr = r.prs.get(2).unwrap();
    assert_eq!(pr.state, ProgressState::Probe);
    read_messages(&mut r);
    r.step(Message {
        term: r.term,
        ..msg(2, 1, MessageType::HeartbeatResponse)
    })
    .unwrap();
    let msgs = read_messages(&mut r);
    assert_eq!(
        msgs.iter()
            .filter(|m| m.msg_type == MessageType::Snapshot)
            .count(),
        1
    );
}

#[test]
fn append_answer_showing_the_peer_caught_up_ends_snapshot_state() {
    let mut r = leader_after_snapshot();
    r.step(propose(1, b"somedata")).unwrap();
    read_messages(&mut r);
    // The peer got the log some other way (say, an earlier append) and reports index 13.
    r.step(Message {
        term: r.term,
        index: 13,
        ..msg(2, 1, MessageType::AppendResponse)
    })
    .unwrap();
    let pr = r.prs.get(2).unwrap();
    assert_eq!(
        (pr.state, pr.matched, pr.next_idx),
        (ProgressState::Replicate, 13, 14)
    );
}

#[test]
fn slow_node_is_restored_by_snapshot() {
    let mut nw = Network::new(vec![Peer::New, Peer::New, Peer::New]);
    nw.send(vec![hup(1)]);
    nw.isolate(3);
    for _ in 0..100 {
        nw.send(vec![propose(1, b"somedata")]);
    }
    {
        let lead = nw.peer_mut(1);
        next_ents(lead);
        let applied = lead.raft_log.applied;
        let cs = lead.prs.conf_state();
        lead.raft_log
            .store
            .create_snapshot(applied, Some(cs), Bytes::from_static(b"state"))
            .unwrap();
        lead.raft_log.store.compact(applied).unwrap();
    }
    nw.recover();
    // Until the heartbeat answer the leader still believes node 3 is at its old next index.
    nw.send(vec![beat(1)]);
    let snaps = nw
        .delivered
        .iter()
        .filter(|m| m.msg_type == MessageType::Snapshot)
        .count();
    assert_eq!(snaps, 1);
    nw.send(vec![propose(1, b"somedata")]);
    assert_eq!(nw.peer(3).raft_log.committed, nw.peer(1).raft_log.committed);
    assert_eq!(nw.peer(3).raft_log.committed, 102);
}

/// MemStorage whose snapshot is being generated until `ready` is set.
struct SlowSnapshotStorage {
    inner: MemStorage,
    ready: Rc<Cell<bool>>,
}

impl Storage for SlowSnapshotStorage {
    fn initial_state(&self) -> StorageResult<RaftState> {
        self.inner.initial_state()
    }
    fn entries(&self, low: u64, high: u64, max_size: Option<u64>) -> StorageResult<Vec<Entry>> {
        self.inner.entries(low, high, max_size)
    }
    fn term(&self, index: u64) -> StorageResult<u64> {
        self.inner.term(index)
    }
    fn first_index(&self) -> StorageResult<u64> {
        self.inner.first_index()
    }
    fn last_index(&self) -> StorageResult<u64> {
        self.inner.last_index()
    }
    fn snapshot(&self, request_index: u64) -> StorageResult<Snapshot> {
        if !self.ready.get() {
            return Err(StorageError::SnapshotTemporarilyUnavailable);
        }
        self.inner.snapshot(request_index)
    }
}

#[test]
fn snapshot_temporarily_unavailable_is_retried_later() {
    let mut inner = MemStorage::new();
    inner.apply_snapshot(snapshot(11, 11, &[1, 2])).unwrap();
    let ready = Rc::new(Cell::new(false));
    let store = SlowSnapshotStorage {
        inner,
        ready: ready.clone(),
    };
    let mut r = Raft::new(&config(1, &[], 10, 1), store).unwrap();
    r.become_candidate();
    r.become_leader();
    r.msgs.clear();
    r.prs.get_mut(2).unwrap().next_idx = 11;
    r.prs.get_mut(2).unwrap().probe_sent = false;
    r.step(propose(1, b"somedata")).unwrap();
    assert!(r.msgs.is_empty(), "nothing to send yet");
    assert_eq!(r.prs.get(2).unwrap().state, ProgressState::Probe);
    ready.set(true);
    r.step(Message {
        term: r.term,
        ..msg(2, 1, MessageType::HeartbeatResponse)
    })
    .unwrap();
    let msgs = std::mem::take(&mut r.msgs);
    assert_eq!(msgs.len(), 1);
    assert_eq!(msgs[0].msg_type, MessageType::Snapshot);
    assert_eq!(r.prs.get(2).unwrap().state, ProgressState::Snapshot);
}

#[test]
fn conf_state_of_new_raft_comes_from_storage_first() {
    let mut store = MemStorage::new();
    store.set_conf_state(ConfState {
        voters: vec![1, 5],
        learners: vec![6],
    });
    let r = new_raft(1, &[1, 2, 3], 10, 1, store);
    assert_eq!(r.prs.conf_state(), conf(&[1, 5], &[6]));
}
