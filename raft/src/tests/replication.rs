//! Log replication: what a leader sends, how followers accept, reject and truncate, when
//! entries commit, and how divergent logs are repaired.

use bytes::Bytes;

use super::harness::*;
use crate::{Entry, Error, HardState, MemStorage, Message, MessageType, ProgressState, StateRole};

/// Acknowledges the new leader's noop from every follower and applies it.
fn commit_noop(r: &mut TestRaft) {
    r.bcast_append();
    let msgs = read_messages(r);
    assert_eq!(msgs.len(), r.prs.progress.len() - 1);
    for m in &msgs {
        assert_eq!(m.msg_type, MessageType::Append);
        assert_eq!(m.entries.len(), 1);
        assert!(m.entries[0].data.is_empty());
        r.step(accept(m)).unwrap();
    }
    read_messages(r);
    next_ents(r);
}

fn leader_of(peers: &[u64], store: MemStorage) -> TestRaft {
    let mut r = new_raft(1, peers, 10, 1, store);
    r.become_candidate();
    r.become_leader();
    r
}

#[test]
fn leader_replicates_a_proposal_to_every_follower() {
    let mut r = leader_of(&[1, 2, 3], MemStorage::new());
    commit_noop(&mut r);
    let li = r.raft_log.last_index();
    r.step(propose(1, b"some data")).unwrap();
    assert_eq!(r.raft_log.last_index(), li + 1);
    assert_eq!(r.raft_log.committed, li);
    let mut msgs = read_messages(&mut r);
    msgs.sort_by_key(|m| m.to);
    let want_ent = data_ent(li + 1, 1, b"some data");
    let want: Vec<Message> = [2, 3]
        .iter()
        .map(|&to| Message {
            term: 1,
            index: li,
            log_term: 1,
            entries: vec![want_ent.clone()],
            commit: li,
            ..msg(1, to, MessageType::Append)
        })
        .collect();
    assert_eq!(msgs, want);
    assert_eq!(r.raft_log.unstable_entries(), &[want_ent]);
}

#[test]
fn leader_commits_on_acks_and_tells_followers() {
    let mut r = leader_of(&[1, 2, 3], MemStorage::new());
    commit_noop(&mut r);
    let li = r.raft_log.last_index();
    r.step(propose(1, b"some data")).unwrap();
    for m in read_messages(&mut r) {
        r.step(accept(&m)).unwrap();
    }
    assert_eq!(r.raft_log.committed, li + 1);
    assert_eq!(next_ents(&mut r), vec![data_ent(li + 1, 1, b"some data")]);
    let mut msgs = read_messages(&mut r);
    msgs.sort_by_key(|m| m.to);
    assert_eq!(msgs.iter().map(|m| m.to).collect::<Vec<_>>(), vec![2, 3]);
    for m in msgs {
        assert_eq!(m.msg_type, MessageType::Append);
        assert_eq!(m.commit, li + 1);
    }
}

#[test]
fn one_round_of_proposals_and_a_commit_costs_one_append_per_follower() {
    let mut r = leader_of(&[1, 2, 3], MemStorage::new());
    commit_noop(&mut r);
    let li = r.raft_log.last_index();
    for data in [b"a", b"b", b"c"] {
        r.step(propose(1, data)).unwrap();
    }
    let msgs = read_messages(&mut r);
    assert_eq!(msgs.len(), 2, "one append per follower: {msgs:?}");
    for m in &msgs {
        assert_eq!((m.index, m.entries.len(), m.commit), (li, 3, li));
    }
    // In the next round follower 2 acknowledges (a quorum with the leader) and more is
    // proposed: the new commit index rides on the append of the new entry, no empty append.
    let ack2 = msgs.iter().find(|m| m.to == 2).map(accept).unwrap();
    r.step(ack2).unwrap();
    r.step(propose(1, b"d")).unwrap();
    assert_eq!(r.raft_log.committed, li + 3);
    let mut msgs = read_messages(&mut r);
    msgs.sort_by_key(|m| m.to);
    assert_eq!(msgs.len(), 2, "{msgs:?}");
    for m in &msgs {
        assert_eq!(m.msg_type, MessageType::Append);
        assert_eq!((m.index, m.entries.len(), m.commit), (li + 3, 1, li + 3));
    }
    // A commit with nothing new to send still reaches every follower in that round.
    let acks: Vec<Message> = msgs.iter().map(accept).collect();
    for ack in acks {
        r.step(ack).unwrap();
    }
    let msgs = read_messages(&mut r);
    assert_eq!(msgs.len(), 2, "{msgs:?}");
    for m in &msgs {
        assert!(m.entries.is_empty());
        assert_eq!(m.commit, li + 4);
    }
}

/// A leader of three that skips commit broadcasts, its noop committed.
fn skipping_leader() -> TestRaft {
    let mut cfg = config(1, &[1, 2, 3], 10, 1);
    cfg.skip_bcast_commit = true;
    let mut r = new_raft_with(&cfg, MemStorage::new());
    r.become_candidate();
    r.become_leader();
    commit_noop(&mut r);
    r
}

/// A leader that skips commit broadcasts, its noop committed, and one proposal acknowledged
/// by every follower: committed, with nothing sent for the commit alone.
fn skipping_leader_with_a_committed_proposal(
    data: &'static [u8],
    barrier: bool,
) -> (TestRaft, u64) {
    let mut r = skipping_leader();
    let li = r.raft_log.last_index();
    r.step(propose(1, data)).unwrap();
    if barrier {
        r.broadcast_commit_of(li + 1);
    }
    for m in read_messages(&mut r) {
        r.step(accept(&m)).unwrap();
    }
    assert_eq!(r.raft_log.committed, li + 1);
    (r, li + 1)
}

#[test]
fn skipping_commit_broadcasts_leaves_the_commit_to_the_next_heartbeat() {
    let (mut r, committed) = skipping_leader_with_a_committed_proposal(b"x", false);
    assert_eq!(
        read_messages(&mut r),
        vec![],
        "no append for the commit alone"
    );
    r.step(beat(1)).unwrap();
    let mut msgs = read_messages(&mut r);
    msgs.sort_by_key(|m| m.to);
    assert_eq!(msgs.len(), 2, "{msgs:?}");
    for m in &msgs {
        assert_eq!((m.msg_type, m.commit), (MessageType::Heartbeat, committed));
    }
    // The next proposal's append carries the commit as well.
    r.step(propose(1, b"y")).unwrap();
    for m in read_messages(&mut r) {
        assert_eq!((m.entries.len(), m.commit), (1, committed));
    }
}

#[test]
fn a_named_index_commits_with_a_broadcast_even_when_commits_are_skipped() {
    let (mut r, committed) = skipping_leader_with_a_committed_proposal(b"split", true);
    let msgs = read_messages(&mut r);
    assert_eq!(msgs.len(), 2, "{msgs:?}");
    for m in &msgs {
        assert_eq!(
            (m.msg_type, m.entries.len(), m.commit),
            (MessageType::Append, 0, committed)
        );
    }
    // Only once: the barrier is spent.
    r.step(propose(1, b"z")).unwrap();
    for m in read_messages(&mut r) {
        r.step(accept(&m)).unwrap();
    }
    assert_eq!(read_messages(&mut r), vec![]);
}

#[test]
fn a_membership_change_commits_with_a_broadcast_even_when_commits_are_skipped() {
    let mut r = skipping_leader();
    let cc = crate::ConfChange {
        change_type: crate::ConfChangeType::AddLearnerNode,
        node_id: 4,
        ..crate::ConfChange::default()
    };
    r.step(Message {
        entries: vec![Entry {
            entry_type: crate::EntryType::ConfChange,
            data: cc.encode(),
            ..Entry::default()
        }],
        ..msg(1, 1, MessageType::Propose)
    })
    .unwrap();
    let li = r.raft_log.last_index();
    for m in read_messages(&mut r) {
        r.step(accept(&m)).unwrap();
    }
    assert_eq!(r.raft_log.committed, li);
    let msgs = read_messages(&mut r);
    assert_eq!(msgs.len(), 2, "{msgs:?}");
    assert!(msgs.iter().all(|m| m.commit == li && m.entries.is_empty()));
}

#[test]
fn leader_commits_only_with_a_quorum_of_acks() {
    // (size, acceptors, committed)
    let cases: Vec<(u64, Vec<u64>, bool)> = vec![
        (1, vec![], true),
        (3, vec![], false),
        (3, vec![2], true),
        (3, vec![2, 3], true),
        (5, vec![], false),
        (5, vec![2], false),
        (5, vec![2, 3], true),
        (5, vec![2, 3, 4, 5], true),
    ];
    for (i, (size, acceptors, committed)) in cases.into_iter().enumerate() {
        let peers: Vec<u64> = (1..=size).collect();
        let mut r = leader_of(&peers, MemStorage::new());
        commit_noop(&mut r);
        let li = r.raft_log.last_index();
        r.step(propose(1, b"some data")).unwrap();
        for m in read_messages(&mut r) {
            if acceptors.contains(&m.to) {
                r.step(accept(&m)).unwrap();
            }
        }
        assert_eq!(r.raft_log.committed > li, committed, "case {i}");
    }
}

#[test]
fn leader_commits_entries_of_earlier_terms_with_its_own() {
    for terms in [vec![], vec![2], vec![1, 2], vec![1]] {
        let store = storage_with(
            &terms,
            HardState {
                term: 2,
                vote: 0,
                commit: 0,
            },
        );
        let mut r = leader_of(&[1, 2, 3], store);
        assert_eq!(r.term, 3);
        r.step(propose(1, b"some data")).unwrap();
        for m in read_messages(&mut r) {
            r.step(accept(&m)).unwrap();
        }
        let li = terms.len() as u64;
        let mut want = ents_with_terms(&terms);
        want.push(ent(li + 1, 3));
        want.push(data_ent(li + 2, 3, b"some data"));
        assert_eq!(next_ents(&mut r), want, "log {terms:?}");
    }
}

#[test]
fn leader_only_commits_by_counting_entries_of_its_term() {
    // Log [t1, t2]; the leader of term 3 appends its noop at 3.
    for (ack_index, want_commit) in [(1, 0), (2, 0), (3, 3)] {
        let store = storage_with(
            &[1, 2],
            HardState {
                term: 2,
                vote: 0,
                commit: 0,
            },
        );
        let mut r = leader_of(&[1, 2], store);
        read_messages(&mut r);
        r.step(Message {
            term: r.term,
            index: ack_index,
            ..msg(2, 1, MessageType::AppendResponse)
        })
        .unwrap();
        assert_eq!(r.raft_log.committed, want_commit, "ack {ack_index}");
    }
}

#[test]
fn leader_tracks_its_own_progress() {
    let mut r = leader_of(&[1, 2, 3], MemStorage::new());
    for i in 0..5u64 {
        let pr = r.prs.get(1).unwrap();
        assert_eq!((pr.matched, pr.next_idx), (i + 1, i + 2));
        r.step(propose(1, b"foo")).unwrap();
    }
}

#[test]
fn follower_commits_what_the_leader_committed() {
    for (ents, commit) in [
        (vec![data_ent(1, 1, b"a")], 1),
        (vec![data_ent(1, 1, b"a"), data_ent(2, 1, b"b")], 2),
        (vec![data_ent(1, 1, b"a"), data_ent(2, 1, b"b")], 1),
    ] {
        let mut r = new_raft(1, &[1, 2, 3], 10, 1, MemStorage::new());
        r.become_follower(1, 2);
        r.step(Message {
            term: 1,
            entries: ents.clone(),
            commit,
            ..msg(2, 1, MessageType::Append)
        })
        .unwrap();
        assert_eq!(r.raft_log.committed, commit);
        assert_eq!(next_ents(&mut r), ents[..commit as usize].to_vec());
    }
}

#[test]
fn follower_checks_the_previous_entry_and_hints_on_rejection() {
    // Log [t1, t2], committed 1. (log_term, index, rejected, hint index, hint term)
    let cases = [
        (0, 0, false, 0, 0),
        (1, 1, false, 0, 0),
        (2, 2, false, 0, 0),
        (1, 2, true, 1, 1),
        (3, 3, true, 2, 2),
    ];
    for (i, (log_term, index, reject, hint, hint_term)) in cases.into_iter().enumerate() {
        let store = storage_with(
            &[1, 2],
            HardState {
                term: 0,
                vote: 0,
                commit: 1,
            },
        );
        let mut r = new_raft(1, &[1, 2, 3], 10, 1, store);
        r.become_follower(2, 2);
        r.step(Message {
            term: 2,
            log_term,
            index,
            ..msg(2, 1, MessageType::Append)
        })
        .unwrap();
        let msgs = read_messages(&mut r);
        assert_eq!(msgs.len(), 1, "case {i}");
        let m = &msgs[0];
        assert_eq!((m.term, m.reject), (2, reject), "case {i}");
        if reject {
            assert_eq!(
                (m.index, m.reject_hint, m.log_term),
                (index, hint, hint_term),
                "case {i}"
            );
        }
    }
}

#[test]
fn follower_truncates_conflicts_and_appends() {
    // (prev index, prev term, entries, whole log after, unstable after)
    type Case = (u64, u64, Vec<Entry>, Vec<(u64, u64)>, Vec<(u64, u64)>);
    let cases: Vec<Case> = vec![
        (
            2,
            2,
            vec![ent(3, 3)],
            vec![(1, 1), (2, 2), (3, 3)],
            vec![(3, 3)],
        ),
        (
            1,
            1,
            vec![ent(2, 3), ent(3, 4)],
            vec![(1, 1), (2, 3), (3, 4)],
            vec![(2, 3), (3, 4)],
        ),
        (0, 0, vec![ent(1, 1)], vec![(1, 1), (2, 2)], vec![]),
        (0, 0, vec![ent(1, 3)], vec![(1, 3)], vec![(1, 3)]),
    ];
    for (i, (index, log_term, entries, want_log, want_unstable)) in cases.into_iter().enumerate() {
        let store = storage_with(&[1, 2], HardState::default());
        let mut r = new_raft(1, &[1, 2, 3], 10, 1, store);
        r.become_follower(2, 2);
        r.step(Message {
            term: 2,
            log_term,
            index,
            entries,
            ..msg(2, 1, MessageType::Append)
        })
        .unwrap();
        assert_eq!(log_shape(&r).1, want_log, "case {i}");
        let unstable: Vec<(u64, u64)> = r
            .raft_log
            .unstable_entries()
            .iter()
            .map(|e| (e.index, e.term))
            .collect();
        assert_eq!(unstable, want_unstable, "case {i}");
    }
}

#[test]
fn follower_handles_appends_and_bounds_commit_by_the_new_entries() {
    // Log [t1, t2], term 2. (log_term, index, commit, entries, resp index, committed, reject)
    type Case = (u64, u64, u64, Vec<Entry>, u64, u64, bool);
    let cases: Vec<Case> = vec![
        (3, 2, 3, vec![], 2, 0, true),
        (3, 3, 3, vec![], 3, 0, true),
        (1, 1, 1, vec![], 1, 1, false),
        (0, 0, 1, vec![ent(1, 2)], 1, 1, false),
        (2, 2, 3, vec![ent(3, 2), ent(4, 2)], 4, 3, false),
        (2, 2, 4, vec![ent(3, 2)], 3, 3, false),
        (1, 1, 4, vec![ent(2, 2)], 2, 2, false),
        (1, 1, 3, vec![], 1, 1, false),
        (2, 2, 4, vec![], 2, 2, false),
    ];
    for (i, (log_term, index, commit, entries, want_index, want_commit, reject)) in
        cases.into_iter().enumerate()
    {
        let store = storage_with(&[1, 2], HardState::default());
        let mut r = new_raft(1, &[1, 2], 10, 1, store);
        r.become_follower(2, 2);
        r.step(Message {
            term: 2,
            log_term,
            index,
            commit,
            entries,
            ..msg(2, 1, MessageType::Append)
        })
        .unwrap();
        let msgs = read_messages(&mut r);
        assert_eq!(msgs.len(), 1, "case {i}");
        assert_eq!(msgs[0].reject, reject, "case {i}");
        assert_eq!(msgs[0].index, want_index, "case {i}");
        assert_eq!(r.raft_log.committed, want_commit, "case {i}");
    }
}

#[test]
fn malformed_appends_are_ignored_without_panicking() {
    let store = storage_with(&[1, 2], HardState::default());
    let mut r = new_raft(1, &[1, 2], 10, 1, store);
    r.become_follower(2, 2);
    // Entries that do not follow the previous index.
    r.step(Message {
        term: 2,
        log_term: 2,
        index: 2,
        entries: vec![ent(5, 2)],
        ..msg(2, 1, MessageType::Append)
    })
    .unwrap();
    assert!(read_messages(&mut r).is_empty());
    assert_eq!(r.raft_log.last_index(), 2);
    // A previous index far past the log, and an index at the top of the range.
    r.step(Message {
        term: 2,
        log_term: 2,
        index: u64::MAX,
        commit: u64::MAX,
        ..msg(2, 1, MessageType::Append)
    })
    .unwrap();
    assert!(read_messages(&mut r)[0].reject);
    r.step(Message {
        term: 2,
        log_term: 2,
        index: u64::MAX,
        entries: vec![ent(0, 2)],
        ..msg(2, 1, MessageType::Append)
    })
    .unwrap();
    // A heartbeat cannot push commit past the log.
    r.step(Message {
        term: 2,
        commit: 100,
        ..msg(2, 1, MessageType::Heartbeat)
    })
    .unwrap();
    assert_eq!(r.raft_log.committed, 2);
    // A snapshot message without a snapshot.
    r.step(Message {
        term: 2,
        ..msg(2, 1, MessageType::Snapshot)
    })
    .unwrap();
    assert_eq!(r.raft_log.last_index(), 2);
}

#[test]
fn leader_ignores_acks_past_its_log_and_from_strangers() {
    let mut r = leader_of(&[1, 2, 3], MemStorage::new());
    read_messages(&mut r);
    r.step(Message {
        term: 1,
        index: 100,
        ..msg(2, 1, MessageType::AppendResponse)
    })
    .unwrap();
    assert_eq!(r.prs.get(2).unwrap().matched, 0);
    assert_eq!(r.raft_log.committed, 0);
    r.step(Message {
        term: 1,
        index: 1,
        ..msg(9, 1, MessageType::AppendResponse)
    })
    .unwrap();
    r.step(Message {
        term: 1,
        ..msg(9, 1, MessageType::HeartbeatResponse)
    })
    .unwrap();
    assert_eq!(r.raft_log.committed, 0);
}

#[test]
fn leader_syncs_divergent_follower_logs() {
    // Figure 7 of the Raft paper: the leader at term 8 and six possible followers.
    let lead_terms = [1, 1, 1, 4, 4, 5, 5, 6, 6, 6];
    let followers: Vec<Vec<u64>> = vec![
        vec![1, 1, 1, 4, 4, 5, 5, 6, 6],
        vec![1, 1, 1, 4],
        vec![1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 6],
        vec![1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 7, 7],
        vec![1, 1, 1, 4, 4, 4, 4],
        vec![1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3],
    ];
    for (i, f) in followers.into_iter().enumerate() {
        let lead_store = storage_with(
            &lead_terms,
            HardState {
                term: 8,
                vote: 0,
                commit: lead_terms.len() as u64,
            },
        );
        let lead = new_raft(1, &[1, 2, 3], 10, 1, lead_store);
        let follower_store = storage_with(
            &f,
            HardState {
                term: 7,
                vote: 0,
                commit: 0,
            },
        );
        let follower = new_raft(2, &[1, 2, 3], 10, 1, follower_store);
        let mut nw = Network::new(vec![node(lead), node(follower), Peer::BlackHole]);
        nw.send(vec![hup(1)]);
        // The black hole's vote makes node 1 leader even when node 2 refuses.
        nw.send(vec![Message {
            term: nw.peer(1).term,
            ..msg(3, 1, MessageType::RequestVoteResponse)
        }]);
        nw.send(vec![propose(1, b"")]);
        assert_eq!(nw.peer(1).role, StateRole::Leader, "case {i}");
        assert_eq!(log_shape(nw.peer(1)), log_shape(nw.peer(2)), "case {i}");
        assert_eq!(
            nw.peer(2).raft_log.committed,
            lead_terms.len() as u64 + 2,
            "case {i}"
        );
    }
}

#[test]
fn conflict_hint_backs_up_a_whole_term_per_round_trip() {
    let mut lead_terms = vec![1];
    lead_terms.extend([2; 5]);
    lead_terms.extend([4; 5]);
    lead_terms.extend([6; 5]);
    let mut follower_terms = vec![1];
    follower_terms.extend([3; 19]);
    let lead = new_raft(
        1,
        &[1, 2, 3],
        10,
        1,
        storage_with(
            &lead_terms,
            HardState {
                term: 6,
                vote: 0,
                commit: 1,
            },
        ),
    );
    let follower = new_raft(
        2,
        &[1, 2, 3],
        10,
        1,
        storage_with(
            &follower_terms,
            HardState {
                term: 3,
                vote: 0,
                commit: 1,
            },
        ),
    );
    let mut nw = Network::new(vec![node(lead), node(follower), Peer::BlackHole]);
    nw.send(vec![hup(1)]);
    assert_eq!(nw.peer(1).role, StateRole::Leader);
    let rejections = nw
        .delivered
        .iter()
        .filter(|m| m.msg_type == MessageType::AppendResponse && m.from == 2 && m.reject)
        .count();
    // One round trip skips the leader's terms 6 and 4, the next the follower's term 3.
    assert_eq!(rejections, 2);
    assert_eq!(log_shape(nw.peer(1)), log_shape(nw.peer(2)));
}

#[test]
fn replication_across_a_leader_change() {
    let mut nw = Network::new(vec![Peer::New, Peer::New, Peer::New]);
    nw.send(vec![hup(1)]);
    nw.send(vec![propose(1, b"somedata")]);
    for id in 1..=3 {
        assert_eq!(nw.peer(id).raft_log.committed, 2);
    }
    nw.send(vec![hup(2)]);
    nw.send(vec![propose(2, b"somedata")]);
    for id in 1..=3 {
        let r = nw.peer_mut(id);
        assert_eq!(r.raft_log.committed, 4);
        let data: Vec<Bytes> = next_ents(r)
            .into_iter()
            .filter(|e| !e.data.is_empty())
            .map(|e| e.data)
            .collect();
        assert_eq!(data, vec![Bytes::from_static(b"somedata"); 2]);
    }
}

#[test]
fn single_node_commits_its_proposals() {
    let mut nw = Network::new(vec![Peer::New]);
    nw.send(vec![hup(1)]);
    nw.send(vec![propose(1, b"some data")]);
    nw.send(vec![propose(1, b"some data")]);
    assert_eq!(nw.peer(1).raft_log.committed, 3);
}

#[test]
fn entries_of_an_old_term_commit_with_the_new_leaders_noop() {
    let mut nw = Network::new(vec![Peer::New, Peer::New, Peer::New, Peer::New, Peer::New]);
    nw.send(vec![hup(1)]);
    assert_eq!(nw.peer(1).raft_log.committed, 1);
    nw.cut(1, 3);
    nw.cut(1, 4);
    nw.cut(1, 5);
    nw.send(vec![propose(1, b"some data")]);
    nw.send(vec![propose(1, b"some data")]);
    assert_eq!(nw.peer(1).raft_log.committed, 1);
    nw.recover();
    // Node 2 holds the entries, wins, and its noop commits them.
    nw.send(vec![hup(2)]);
    assert_eq!(nw.peer(2).role, StateRole::Leader);
    assert_eq!(nw.peer(1).raft_log.committed, 4);
}

#[test]
fn lagging_follower_catches_up_from_a_heartbeat_answer() {
    let mut nw = Network::new(vec![Peer::New, Peer::New, Peer::New, Peer::New, Peer::New]);
    nw.send(vec![hup(1)]);
    nw.isolate(5);
    nw.send(vec![propose(1, b"some data")]);
    nw.send(vec![propose(1, b"some data")]);
    assert_eq!(nw.peer(5).raft_log.committed, 1);
    nw.recover();
    nw.ignore(MessageType::Append);
    nw.send(vec![beat(1)]);
    assert_eq!(
        nw.peer(5).raft_log.committed,
        1,
        "appends are ignored, heartbeats cannot commit"
    );
    nw.recover();
    nw.send(vec![beat(1)]);
    assert_eq!(nw.peer(5).raft_log.committed, 3);
}

#[test]
fn heartbeat_never_raises_commit_past_the_matched_log() {
    let mut nw = Network::new(vec![Peer::New, Peer::New, Peer::New]);
    nw.send(vec![hup(1)]);
    nw.isolate(1);
    for _ in 0..3 {
        nw.send(vec![propose(1, b"stale")]);
    }
    nw.send(vec![hup(2)]);
    for _ in 0..5 {
        nw.send(vec![propose(2, b"new")]);
    }
    assert_eq!(nw.peer(2).raft_log.committed, 7);
    assert_eq!(nw.peer(1).raft_log.last_index(), 4);
    nw.recover();
    nw.ignore(MessageType::Append);
    nw.send(vec![beat(2)]);
    // Node 1's entries 2..4 are from the old term: committing them would be wrong.
    assert_role(nw.peer(1), StateRole::Follower, 2);
    assert_eq!(nw.peer(1).raft_log.committed, 1);
}

#[test]
fn stale_messages_from_an_old_term_are_ignored() {
    let mut nw = Network::new(vec![Peer::New, Peer::New, Peer::New]);
    nw.send(vec![hup(1)]);
    nw.send(vec![hup(2)]);
    nw.send(vec![hup(1)]);
    assert_role(nw.peer(1), StateRole::Leader, 3);
    nw.send(vec![Message {
        term: 2,
        entries: vec![ent(3, 2)],
        ..msg(2, 1, MessageType::Append)
    }]);
    nw.send(vec![propose(1, b"somedata")]);
    for id in 1..=3 {
        assert_eq!(
            log_shape(nw.peer(id)),
            (4, vec![(1, 1), (2, 2), (3, 3), (4, 3)]),
            "node {id}"
        );
    }
}

#[test]
fn proposals_are_dropped_without_a_leader() {
    use Peer::{BlackHole as Hole, New};
    let cases: Vec<(Vec<Peer>, bool)> = vec![
        (vec![New, New, New], true),
        (vec![New, New, Hole], true),
        (vec![New, Hole, Hole], false),
        (vec![New, Hole, Hole, New], false),
        (vec![New, Hole, Hole, New, New], true),
    ];
    for (i, (peers, success)) in cases.into_iter().enumerate() {
        let mut nw = Network::new(peers);
        nw.send(vec![hup(1)]);
        let res = nw.peer_mut(1).step(propose(1, b"somedata"));
        let out = read_messages(nw.peer_mut(1));
        nw.send(out);
        if success {
            res.unwrap();
            assert_eq!(log_shape(nw.peer(1)), (2, vec![(1, 1), (2, 1)]), "case {i}");
        } else {
            assert!(matches!(res, Err(Error::ProposalDropped)), "case {i}");
            assert_eq!(log_shape(nw.peer(1)), (0, vec![]), "case {i}");
        }
        assert_eq!(nw.peer(1).term, 1, "case {i}");
    }
}

#[test]
fn follower_refuses_proposals() {
    let mut nw = Network::new(vec![Peer::New, Peer::New, Peer::New]);
    nw.send(vec![hup(1)]);
    assert!(matches!(
        nw.peer_mut(2).step(propose(2, b"x")),
        Err(Error::ProposalDropped)
    ));
    assert_eq!(nw.peer(2).raft_log.last_index(), 1);
}

#[test]
fn next_index_advances_optimistically_only_while_replicating() {
    for (state, next, want_next) in [
        (ProgressState::Replicate, 2, 6),
        (ProgressState::Probe, 2, 2),
    ] {
        let store = storage_with(
            &[1, 2, 3],
            HardState {
                term: 3,
                vote: 0,
                commit: 0,
            },
        );
        let mut r = leader_of(&[1, 2], store);
        read_messages(&mut r);
        let pr = r.prs.get_mut(2).unwrap();
        pr.state = state;
        pr.next_idx = next;
        pr.probe_sent = false;
        r.step(propose(1, b"somedata")).unwrap();
        read_messages(&mut r);
        assert_eq!(r.prs.get(2).unwrap().next_idx, want_next, "{state:?}");
    }
}

#[test]
fn a_new_leader_broadcasts_the_commit_of_a_membership_change_it_inherited() {
    // Node 1 holds a conf change (index 2) that the old leader proposed and did not commit.
    let mut store = MemStorage::new();
    let cc = crate::ConfChange {
        change_type: crate::ConfChangeType::AddLearnerNode,
        node_id: 4,
        ..crate::ConfChange::default()
    };
    store
        .append(&[
            ent(1, 1),
            Entry {
                entry_type: crate::EntryType::ConfChange,
                data: cc.encode(),
                ..ent(2, 1)
            },
        ])
        .unwrap();
    store.set_hard_state(HardState {
        term: 1,
        vote: 0,
        commit: 1,
    });
    let mut cfg = config(1, &[1, 2, 3], 10, 1);
    cfg.skip_bcast_commit = true;
    cfg.applied = 1;
    let mut r = new_raft_with(&cfg, store);
    r.become_candidate();
    r.become_leader();
    let li = r.raft_log.last_index();
    assert_eq!(li, 3, "the noop follows the conf change");
    r.bcast_append();
    for m in read_messages(&mut r) {
        // Followers already hold 1..=2; answer for the noop.
        r.step(Message {
            term: m.term,
            index: li,
            ..msg(m.to, 1, MessageType::AppendResponse)
        })
        .unwrap();
    }
    assert_eq!(r.raft_log.committed, li);
    let msgs = read_messages(&mut r);
    assert_eq!(msgs.len(), 2, "the conf change's commit goes out: {msgs:?}");
    assert!(msgs.iter().all(|m| m.commit == li && m.entries.is_empty()));
}
