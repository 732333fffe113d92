//! The driver-facing `RawNode`: the ready cycle, restarts from stored state and snapshots,
//! errors for messages that must not be stepped, and status.

use bytes::Bytes;

use super::harness::*;
use crate::{
    ConfChange, ConfChangeType, Config, Entry, EntryType, Error, HardState, MemStorage, Message,
    MessageType, ProgressState, RawNode, Ready, SoftState, StateRole,
};

fn raw_config(id: u64, peers: &[u64]) -> Config {
    config(id, peers, 10, 1)
}

/// Does what a driver does with a ready, then advances.
fn handle_ready(node: &mut RawNode<MemStorage>) -> Ready {
    let rd = node.ready();
    let store = node.mut_store();
    if let Some(snap) = &rd.snapshot {
        store.apply_snapshot(snap.clone()).unwrap();
    }
    store.append(&rd.entries).unwrap();
    if let Some(hs) = rd.hard_state {
        store.set_hard_state(hs);
    }
    for e in &rd.committed_entries {
        if e.entry_type == EntryType::ConfChange {
            let cc = ConfChange::decode(&e.data).unwrap();
            let cs = node.apply_conf_change(&cc);
            node.mut_store().set_conf_state(cs);
        }
    }
    node.advance(rd.clone());
    rd
}

#[test]
fn start_campaign_propose_and_apply() {
    let mut node = RawNode::new(&raw_config(1, &[1]), MemStorage::new()).unwrap();
    assert!(!node.has_ready());
    node.campaign().unwrap();
    let rd = handle_ready(&mut node);
    assert_eq!(
        rd.soft_state,
        Some(SoftState {
            leader_id: 1,
            role: StateRole::Leader
        })
    );
    assert_eq!(
        rd.hard_state,
        Some(HardState {
            term: 1,
            vote: 1,
            commit: 1
        })
    );
    assert!(rd.must_sync);
    assert_eq!(rd.entries.len(), 1);
    assert_eq!(rd.committed_entries.len(), 1);
    assert!(!node.has_ready());

    let p = node.propose(Bytes::from_static(b"foo")).unwrap();
    assert_eq!((p.index, p.term), (2, 1));
    assert!(node.has_ready());
    let rd = node.ready();
    assert_eq!(rd.entries.len(), 1);
    assert_eq!(rd.entries[0].data.as_ref(), b"foo");
    assert_eq!(rd.committed_entries, rd.entries);
    assert!(rd.soft_state.is_none());
    assert_eq!(
        rd.hard_state,
        Some(HardState {
            term: 1,
            vote: 1,
            commit: 2
        })
    );
    let store = node.mut_store();
    store.append(&rd.entries).unwrap();
    node.advance(rd);
    assert!(!node.has_ready());
    assert_eq!(node.status().applied, 2);
}

#[test]
fn restart_hands_out_only_committed_entries_above_applied() {
    let entries = vec![data_ent(1, 1, b"a"), data_ent(2, 1, b"b")];
    let mut store = MemStorage::new_with_conf_state(vec![1]);
    store.append(&entries).unwrap();
    store.set_hard_state(HardState {
        term: 1,
        vote: 0,
        commit: 1,
    });
    let mut node = RawNode::new(&raw_config(1, &[]), store).unwrap();
    assert!(node.has_ready());
    let rd = node.ready();
    let want = Ready {
        committed_entries: vec![entries[0].clone()],
        ..Ready::default()
    };
    assert_eq!(rd, want);
    node.advance(rd);
    assert!(!node.has_ready());
}

#[test]
fn restart_with_applied_skips_what_was_applied() {
    let mut store = MemStorage::new_with_conf_state(vec![1, 2]);
    store.append(&ents_with_terms(&[1, 1, 1, 1])).unwrap();
    store.set_hard_state(HardState {
        term: 1,
        vote: 0,
        commit: 3,
    });
    let mut cfg = raw_config(1, &[]);
    cfg.applied = 2;
    let mut node = RawNode::new(&cfg, store.clone()).unwrap();
    let rd = node.ready();
    assert_eq!(rd.committed_entries, vec![ent(3, 1)]);
    cfg.applied = 4;
    assert!(matches!(
        RawNode::new(&cfg, store),
        Err(Error::ConfigInvalid(_))
    ));
}

#[test]
fn restart_from_a_snapshot() {
    let mut store = MemStorage::new();
    let snap = crate::Snapshot {
        data: Bytes::new(),
        metadata: crate::SnapshotMetadata {
            conf_state: conf(&[1, 2], &[]),
            index: 2,
            term: 1,
        },
    };
    store.apply_snapshot(snap).unwrap();
    store.append(&[ent(3, 1)]).unwrap();
    store.set_hard_state(HardState {
        term: 1,
        vote: 0,
        commit: 3,
    });
    let mut node = RawNode::new(&raw_config(1, &[]), store).unwrap();
    let rd = node.ready();
    assert_eq!(
        rd,
        Ready {
            committed_entries: vec![ent(3, 1)],
            ..Ready::default()
        }
    );
    node.advance(rd);
    assert!(!node.has_ready());
    assert_eq!(node.status().first_index, 3);
}

#[test]
fn storage_commit_past_its_log_is_an_error() {
    let mut store = MemStorage::new_with_conf_state(vec![1]);
    store.set_hard_state(HardState {
        term: 1,
        vote: 0,
        commit: 5,
    });
    assert!(matches!(
        RawNode::new(&raw_config(1, &[]), store),
        Err(Error::Storage(_))
    ));
    assert!(matches!(
        RawNode::new(&raw_config(0, &[1]), MemStorage::new()),
        Err(Error::ConfigInvalid(_))
    ));
}

#[test]
fn stepping_local_messages_or_answers_from_strangers_fails() {
    let mut node = RawNode::new(&raw_config(1, &[1, 2]), MemStorage::new()).unwrap();
    for t in [MessageType::Hup, MessageType::Beat, MessageType::Propose] {
        assert!(matches!(node.step(msg(2, 1, t)), Err(Error::StepLocalMsg(got)) if got == t));
    }
    for t in [
        MessageType::AppendResponse,
        MessageType::RequestVoteResponse,
        MessageType::RequestPreVoteResponse,
        MessageType::HeartbeatResponse,
        MessageType::ReadIndexResponse,
    ] {
        assert!(matches!(
            node.step(Message {
                term: 1,
                ..msg(9, 1, t)
            }),
            Err(Error::StepPeerNotFound(9))
        ));
    }
    // A request from a stranger is not an error.
    node.step(Message {
        term: 1,
        ..msg(9, 1, MessageType::Heartbeat)
    })
    .unwrap();
}

#[test]
fn follower_proposals_are_dropped() {
    let mut node = RawNode::new(&raw_config(1, &[1, 2]), MemStorage::new()).unwrap();
    assert!(matches!(
        node.propose(Bytes::from_static(b"x")),
        Err(Error::ProposalDropped)
    ));
    let cc = ConfChange {
        change_type: ConfChangeType::AddNode,
        node_id: 3,
        ..ConfChange::default()
    };
    assert!(matches!(
        node.propose_conf_change(cc),
        Err(Error::ProposalDropped)
    ));
}

#[test]
fn propose_and_conf_change() {
    let mut node = RawNode::new(&raw_config(1, &[1]), MemStorage::new()).unwrap();
    node.campaign().unwrap();
    handle_ready(&mut node);
    node.propose(Bytes::from_static(b"somedata")).unwrap();
    let cc = ConfChange {
        change_type: ConfChangeType::AddNode,
        node_id: 2,
        context: Bytes::from_static(b"ctx"),
    };
    let p = node.propose_conf_change(cc.clone()).unwrap();
    // A duplicate while the first is pending is refused.
    assert!(matches!(
        node.propose_conf_change(cc.clone()),
        Err(Error::ProposalDropped)
    ));
    let rd = handle_ready(&mut node);
    let last = rd.committed_entries.last().unwrap();
    assert_eq!(
        (last.index, last.term, last.entry_type),
        (p.index, p.term, EntryType::ConfChange)
    );
    assert_eq!(ConfChange::decode(&last.data), Some(cc.clone()));
    assert_eq!(node.status().conf_state, conf(&[1, 2], &[]));
    // Applied: the next change is accepted; adding the same node again changes nothing.
    node.propose_conf_change(cc).unwrap();
    let rd = handle_ready(&mut node);
    // With two voters the change needs node 2's ack; it goes out as an append.
    assert!(
        rd.immediate_messages
            .iter()
            .any(|m| m.msg_type == MessageType::Append && m.to == 2)
    );
    assert_eq!(node.status().conf_state, conf(&[1, 2], &[]));
}

#[test]
fn ready_reports_only_changes_and_must_sync() {
    let mut node = RawNode::new(&raw_config(1, &[1, 2]), MemStorage::new()).unwrap();
    // A heartbeat from a leader: new term (sync), new leader (soft state), one message.
    node.step(Message {
        term: 2,
        ..msg(2, 1, MessageType::Heartbeat)
    })
    .unwrap();
    let rd = handle_ready(&mut node);
    assert_eq!(
        rd.soft_state,
        Some(SoftState {
            leader_id: 2,
            role: StateRole::Follower
        })
    );
    assert_eq!(
        rd.hard_state,
        Some(HardState {
            term: 2,
            vote: 0,
            commit: 0
        })
    );
    assert!(rd.must_sync);
    assert_eq!(rd.messages.len(), 1);
    // Commit alone changing needs no sync.
    node.step(Message {
        term: 2,
        index: 0,
        log_term: 0,
        entries: vec![ent(1, 2)],
        commit: 0,
        ..msg(2, 1, MessageType::Append)
    })
    .unwrap();
    let rd = handle_ready(&mut node);
    assert!(rd.must_sync, "entries to persist");
    assert!(rd.hard_state.is_none());
    node.step(Message {
        term: 2,
        commit: 1,
        ..msg(2, 1, MessageType::Heartbeat)
    })
    .unwrap();
    let rd = handle_ready(&mut node);
    assert_eq!(
        rd.hard_state,
        Some(HardState {
            term: 2,
            vote: 0,
            commit: 1
        })
    );
    assert!(!rd.must_sync);
    assert_eq!(rd.committed_entries, vec![ent(1, 2)]);
    assert!(!node.has_ready());
}

#[test]
fn snapshot_comes_out_in_ready_and_entries_follow_it() {
    let mut node = RawNode::new(&raw_config(1, &[1, 2]), MemStorage::new()).unwrap();
    let snap = crate::Snapshot {
        data: Bytes::from_static(b"data"),
        metadata: crate::SnapshotMetadata {
            conf_state: conf(&[1, 2, 3], &[]),
            index: 10,
            term: 3,
        },
    };
    node.step(Message {
        term: 3,
        snapshot: Some(snap.clone()),
        ..msg(2, 1, MessageType::Snapshot)
    })
    .unwrap();
    let rd = handle_ready(&mut node);
    assert_eq!(rd.snapshot, Some(snap));
    assert!(rd.committed_entries.is_empty());
    assert_eq!(node.status().applied, 10);
    assert_eq!(
        node.store().initial_state().unwrap().conf_state,
        conf(&[1, 2, 3], &[])
    );
    node.step(Message {
        term: 3,
        index: 10,
        log_term: 3,
        entries: vec![ent(11, 3)],
        commit: 11,
        ..msg(2, 1, MessageType::Append)
    })
    .unwrap();
    let rd = handle_ready(&mut node);
    assert!(rd.snapshot.is_none());
    assert_eq!(rd.committed_entries, vec![ent(11, 3)]);
    assert!(!node.has_ready());
    use crate::Storage;
}

#[test]
fn read_states_come_out_in_ready() {
    let mut node = RawNode::new(&raw_config(1, &[1]), MemStorage::new()).unwrap();
    node.campaign().unwrap();
    handle_ready(&mut node);
    node.read_index(Bytes::from_static(b"r1"));
    assert!(node.has_ready());
    let rd = handle_ready(&mut node);
    assert_eq!(
        rd.read_states,
        vec![crate::ReadState {
            index: 1,
            request_ctx: Bytes::from_static(b"r1")
        }]
    );
    assert!(!node.has_ready());
}

#[test]
fn status_shows_progress_only_on_the_leader() {
    let mut node = RawNode::new(&raw_config(1, &[1, 2]), MemStorage::new()).unwrap();
    assert!(node.status().progress.is_empty());
    node.campaign().unwrap();
    let rd = handle_ready(&mut node);
    let vote = rd
        .messages
        .iter()
        .find(|m| m.msg_type == MessageType::RequestVote)
        .unwrap()
        .clone();
    node.step(Message {
        term: vote.term,
        ..msg(2, 1, MessageType::RequestVoteResponse)
    })
    .unwrap();
    handle_ready(&mut node);
    let st = node.status();
    assert_eq!(st.soft_state.role, StateRole::Leader);
    assert_eq!(st.progress.len(), 2);
    let (id, pr) = st.progress[0];
    assert_eq!((id, pr.matched, pr.state), (1, 1, ProgressState::Replicate));
    assert_eq!(st.conf_state, conf(&[1, 2], &[]));
    assert_eq!(st.last_index, 1);
    assert!(node.raft().promotable());
}

#[test]
fn transfer_leader_and_reports_through_the_raw_node() {
    let mut node = RawNode::new(&raw_config(1, &[1, 2]), MemStorage::new()).unwrap();
    node.campaign().unwrap();
    handle_ready(&mut node);
    node.step(Message {
        term: 1,
        ..msg(2, 1, MessageType::RequestVoteResponse)
    })
    .unwrap();
    let rd = handle_ready(&mut node);
    let append = rd
        .immediate_messages
        .iter()
        .find(|m| m.msg_type == MessageType::Append)
        .unwrap()
        .clone();
    node.step(Message {
        term: 1,
        index: append.index + 1,
        ..msg(2, 1, MessageType::AppendResponse)
    })
    .unwrap();
    handle_ready(&mut node);
    node.transfer_leader(2);
    let rd = handle_ready(&mut node);
    assert!(
        rd.messages
            .iter()
            .any(|m| m.msg_type == MessageType::TimeoutNow && m.to == 2)
    );
    node.report_unreachable(2);
    node.report_snapshot(2, crate::SnapshotStatus::Failure);
    assert_eq!(node.status().progress[1].1.state, ProgressState::Probe);
}

#[test]
fn same_seed_replays_the_same_election_timeouts() {
    let timeouts = |seed: u64| {
        let mut cfg = raw_config(1, &[1, 2, 3]);
        cfg.seed = seed;
        let mut node = RawNode::new(&cfg, MemStorage::new()).unwrap();
        let mut out = Vec::new();
        for _ in 0..5 {
            let mut ticks = 0;
            loop {
                node.tick();
                ticks += 1;
                if node
                    .ready()
                    .messages
                    .iter()
                    .any(|m| m.msg_type == MessageType::RequestVote)
                {
                    break;
                }
            }
            out.push(ticks);
        }
        out
    };
    assert_eq!(timeouts(7), timeouts(7));
    assert_ne!(timeouts(7), timeouts(8));
}

#[test]
fn advance_settles_what_ready_handed_out_even_with_fields_moved_out() {
    let mut node = RawNode::new(&raw_config(1, &[1]), MemStorage::new()).unwrap();
    node.campaign().unwrap();
    handle_ready(&mut node);
    node.propose(Bytes::from_static(b"a")).unwrap();
    let mut rd = node.ready();
    let store = node.mut_store();
    store.append(&rd.entries).unwrap();
    if let Some(hs) = rd.hard_state {
        store.set_hard_state(hs);
    }
    // A driver that applies entries without copying them moves them out of the ready.
    let committed = std::mem::take(&mut rd.committed_entries);
    let entries = std::mem::take(&mut rd.entries);
    assert!(!committed.is_empty() && !entries.is_empty());
    let last = committed.last().unwrap().index;
    node.advance(rd);
    assert_eq!(node.status().applied, last);
    assert!(!node.has_ready(), "nothing is handed out twice");
}

#[test]
fn only_a_leaders_appends_in_a_durable_term_skip_the_fsync() {
    // A voter with a learner.
    let mut node = RawNode::new(&raw_config(1, &[1]), MemStorage::new()).unwrap();
    node.campaign().unwrap();
    handle_ready(&mut node);
    node.propose_conf_change(ConfChange {
        change_type: ConfChangeType::AddLearnerNode,
        node_id: 2,
        context: Bytes::new(),
    })
    .unwrap();
    handle_ready(&mut node);
    handle_ready(&mut node);
    assert_eq!(node.status().conf_state.learners, vec![2]);

    // In a durable term, a proposal's append to the learner goes out at once, and only that.
    node.propose(Bytes::from_static(b"x")).unwrap();
    let rd = node.ready();
    assert!(!rd.entries.is_empty() && rd.must_sync);
    assert!(
        rd.immediate_messages
            .iter()
            .any(|m| m.msg_type == MessageType::Append && m.to == 2)
    );
    assert!(
        rd.immediate_messages
            .iter()
            .all(|m| matches!(m.msg_type, MessageType::Append | MessageType::Heartbeat))
    );
    node.mut_store().append(&rd.entries).unwrap();
    node.advance(rd);

    // Knocked out by a higher term, the voter elects itself again in one step and takes a
    // proposal before its driver sees the ready: the appends of the new term must wait until
    // that term and vote are durable.
    let term = node.status().hard_state.term;
    node.step(Message {
        term: term + 5,
        ..msg(2, 1, MessageType::HeartbeatResponse)
    })
    .unwrap();
    handle_ready(&mut node);
    assert_eq!(node.status().soft_state.role, StateRole::Follower);
    node.campaign().unwrap();
    assert_eq!(node.status().soft_state.role, StateRole::Leader);
    node.propose(Bytes::from_static(b"y")).unwrap();
    let rd = node.ready();
    assert_eq!(rd.hard_state.map(|hs| hs.term), Some(term + 6));
    assert!(rd.immediate_messages.is_empty());
    assert!(
        rd.messages
            .iter()
            .any(|m| m.msg_type == MessageType::Append && m.to == 2)
    );
    node.advance(rd);

    // A campaign in a new term: the vote requests wait for the term and vote to be durable.
    let mut b = RawNode::new(&raw_config(1, &[1, 2, 3]), MemStorage::new()).unwrap();
    b.campaign().unwrap();
    let rd = b.ready();
    assert!(rd.immediate_messages.is_empty());
    assert!(
        rd.messages
            .iter()
            .any(|m| m.msg_type == MessageType::RequestVote)
    );
    b.advance(rd);

    // A follower's acknowledgement always waits for its own write.
    let mut f = RawNode::new(&raw_config(2, &[1, 2]), MemStorage::new()).unwrap();
    f.step(Message {
        term: 1,
        index: 0,
        log_term: 0,
        commit: 0,
        entries: vec![Entry {
            index: 1,
            term: 1,
            ..Entry::default()
        }],
        ..msg(1, 2, MessageType::Append)
    })
    .unwrap();
    let rd = f.ready();
    assert!(rd.immediate_messages.is_empty());
    assert!(
        rd.messages
            .iter()
            .any(|m| m.msg_type == MessageType::AppendResponse)
    );
}

/// A storage whose log reads fail while `fail` is set, as a disk that returns read errors.
struct FailingReads {
    inner: MemStorage,
    fail: bool,
}

impl crate::Storage for FailingReads {
    fn initial_state(&self) -> crate::StorageResult<crate::RaftState> {
        self.inner.initial_state()
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: Option<u64>,
    ) -> crate::StorageResult<Vec<Entry>> {
        if self.fail {
            return Err(crate::StorageError::Other("read error on the log".into()));
        }
        self.inner.entries(low, high, max_size)
    }

    fn term(&self, index: u64) -> crate::StorageResult<u64> {
        self.inner.term(index)
    }

    fn first_index(&self) -> crate::StorageResult<u64> {
        self.inner.first_index()
    }

    fn last_index(&self) -> crate::StorageResult<u64> {
        self.inner.last_index()
    }

    fn snapshot(&self, request_index: u64) -> crate::StorageResult<crate::Snapshot> {
        self.inner.snapshot(request_index)
    }
}

/// Committed entries that storage cannot read used to vanish from the ready (an empty list)
/// while `has_ready` stayed true: apply stalled and nothing said why.
#[test]
fn committed_entries_that_cannot_be_read_are_reported_not_dropped() {
    let hs = HardState {
        term: 1,
        vote: 1,
        commit: 2,
    };
    let inner = storage_with(&[1, 1], hs);
    let storage = FailingReads { inner, fail: true };
    let mut node = RawNode::new(&raw_config(1, &[1]), storage).unwrap();
    assert!(node.has_ready());
    let rd = node.ready();
    assert!(rd.committed_entries.is_empty());
    let why = rd
        .committed_entries_unreadable
        .clone()
        .expect("the failure is reported");
    assert!(why.contains("read error on the log"), "{why}");
    node.advance(rd);
    assert!(node.has_ready(), "the entries are still due");
    node.mut_store().fail = false;
    let rd = node.ready();
    assert_eq!(rd.committed_entries.len(), 2);
    assert!(rd.committed_entries_unreadable.is_none());
}
