//! Single-peer membership changes: adding and removing voters and learners, one pending change
//! at a time, and what removal does to commit and to a removed leader.

use super::harness::*;
use crate::{
    ConfChange, ConfChangeType, Entry, EntryType, Error, HardState, MemStorage, Message,
    MessageType, StateRole,
};

fn cc(change_type: ConfChangeType, node_id: u64) -> ConfChange {
    ConfChange {
        change_type,
        node_id,
        ..ConfChange::default()
    }
}

fn propose_cc(id: u64, change: ConfChange) -> Message {
    let e = Entry {
        entry_type: EntryType::ConfChange,
        data: change.encode(),
        ..Entry::default()
    };
    Message {
        entries: vec![e],
        ..msg(id, id, MessageType::Propose)
    }
}

#[test]
fn add_voter_and_learner_then_promote() {
    let mut r = new_raft(1, &[1], 10, 1, MemStorage::new());
    assert_eq!(
        r.apply_conf_change(&cc(ConfChangeType::AddNode, 2)),
        conf(&[1, 2], &[])
    );
    assert_eq!(
        r.apply_conf_change(&cc(ConfChangeType::AddLearnerNode, 3)),
        conf(&[1, 2], &[3])
    );
    // Adding again is a no-op, and a voter is never demoted by AddLearnerNode.
    assert_eq!(
        r.apply_conf_change(&cc(ConfChangeType::AddNode, 2)),
        conf(&[1, 2], &[3])
    );
    assert_eq!(
        r.apply_conf_change(&cc(ConfChangeType::AddLearnerNode, 2)),
        conf(&[1, 2], &[3])
    );
    assert_eq!(
        r.apply_conf_change(&cc(ConfChangeType::AddNode, 3)),
        conf(&[1, 2, 3], &[])
    );
}

#[test]
fn remove_node() {
    let mut r = new_raft(1, &[1, 2], 10, 1, MemStorage::new());
    assert_eq!(
        r.apply_conf_change(&cc(ConfChangeType::RemoveNode, 2)),
        conf(&[1], &[])
    );
    // Removing an unknown node, or every node, does not panic.
    r.apply_conf_change(&cc(ConfChangeType::RemoveNode, 9));
    assert_eq!(
        r.apply_conf_change(&cc(ConfChangeType::RemoveNode, 1)),
        conf(&[], &[])
    );
    r.tick();
    assert!(!r.promotable());
}

#[test]
fn removing_a_node_lowers_the_quorum_and_commits() {
    let mut r = new_raft(1, &[1, 2], 5, 1, MemStorage::new());
    r.become_candidate();
    r.become_leader();
    // Node 2 acknowledges the noop but not the next proposal.
    r.step(Message {
        term: 1,
        index: 1,
        ..msg(2, 1, MessageType::AppendResponse)
    })
    .unwrap();
    r.step(propose_cc(1, cc(ConfChangeType::RemoveNode, 2)))
        .unwrap();
    r.step(propose(1, b"hello")).unwrap();
    assert_eq!(r.raft_log.committed, 1);
    read_messages(&mut r);
    r.apply_conf_change(&cc(ConfChangeType::RemoveNode, 2));
    assert_eq!(
        r.raft_log.committed, 3,
        "a quorum of one commits everything at once"
    );
    let data: Vec<_> = next_ents(&mut r).into_iter().map(|e| e.data).collect();
    assert_eq!(data.last().unwrap().as_ref(), b"hello");
}

#[test]
fn removed_leader_steps_down_and_never_campaigns() {
    let mut nw = Network::new(vec![Peer::New, Peer::New, Peer::New]);
    nw.send(vec![hup(1)]);
    for id in 1..=3 {
        nw.peer_mut(id)
            .apply_conf_change(&cc(ConfChangeType::RemoveNode, 1));
    }
    assert_eq!(nw.peer(1).role, StateRole::Follower);
    for _ in 0..100 {
        nw.tick(1);
    }
    assert_eq!(nw.peer(1).role, StateRole::Follower);
    assert_eq!(nw.peer(1).term, 1);
    // The rest elect a leader among themselves; the old one still answers as a follower.
    nw.send(vec![hup(2)]);
    assert_eq!(nw.peer(2).role, StateRole::Leader);
    assert!(nw.peer_mut(1).step(propose(1, b"x")).is_err());
}

#[test]
fn only_one_conf_change_may_be_pending() {
    let mut r = new_raft(1, &[1, 2], 10, 1, MemStorage::new());
    r.become_candidate();
    r.become_leader();
    r.step(propose_cc(1, cc(ConfChangeType::AddNode, 3)))
        .unwrap();
    let pending = r.raft_log.last_index();
    assert_eq!(r.pending_conf_index, pending);
    assert!(matches!(
        r.step(propose_cc(1, cc(ConfChangeType::AddNode, 4))),
        Err(Error::ProposalDropped)
    ));
    assert_eq!(
        r.raft_log.last_index(),
        pending,
        "refused change not appended"
    );
    // Normal proposals still go through.
    r.step(propose(1, b"data")).unwrap();
    // Once the first is committed and applied, the next is accepted.
    r.step(Message {
        term: 1,
        index: r.raft_log.last_index(),
        ..msg(2, 1, MessageType::AppendResponse)
    })
    .unwrap();
    next_ents(&mut r);
    assert!(r.raft_log.applied >= pending);
    r.step(propose_cc(1, cc(ConfChangeType::AddNode, 4)))
        .unwrap();
    // Two changes in one proposal are refused as a whole.
    let mut r2 = new_raft(1, &[1], 10, 1, MemStorage::new());
    r2.become_candidate();
    r2.become_leader();
    let mut m = propose_cc(1, cc(ConfChangeType::AddNode, 2));
    m.entries.push(m.entries[0].clone());
    assert!(matches!(r2.step(m), Err(Error::ProposalDropped)));
}

#[test]
fn new_leader_treats_uncommitted_conf_changes_as_pending() {
    let mut store = MemStorage::new();
    let e = Entry {
        index: 1,
        term: 1,
        entry_type: EntryType::ConfChange,
        data: cc(ConfChangeType::AddNode, 3).encode(),
    };
    store.append(&[e]).unwrap();
    store.set_hard_state(HardState {
        term: 1,
        vote: 0,
        commit: 0,
    });
    let mut r = new_raft(1, &[1, 2], 10, 1, store);
    r.become_candidate();
    r.become_leader();
    assert_eq!(r.pending_conf_index, 1);
    assert!(matches!(
        r.step(propose_cc(1, cc(ConfChangeType::AddNode, 4))),
        Err(Error::ProposalDropped)
    ));
    // Without conf changes in the log nothing is pending.
    let mut r = new_raft(
        1,
        &[1, 2],
        10,
        1,
        storage_with(
            &[1, 1],
            HardState {
                term: 1,
                vote: 0,
                commit: 0,
            },
        ),
    );
    r.become_candidate();
    r.become_leader();
    assert_eq!(r.pending_conf_index, 0);
    r.step(propose_cc(1, cc(ConfChangeType::AddNode, 4)))
        .unwrap();
}

#[test]
fn committed_but_unapplied_conf_change_blocks_campaigning() {
    let mut store = MemStorage::new();
    let e = Entry {
        index: 1,
        term: 1,
        entry_type: EntryType::ConfChange,
        data: cc(ConfChangeType::AddNode, 3).encode(),
    };
    store.append(&[e]).unwrap();
    store.set_hard_state(HardState {
        term: 1,
        vote: 0,
        commit: 1,
    });
    let mut r = new_raft(1, &[1, 2], 10, 1, store);
    r.step(hup(1)).unwrap();
    assert_eq!(r.role, StateRole::Follower);
    next_ents(&mut r);
    r.step(hup(1)).unwrap();
    assert_eq!(r.role, StateRole::Candidate);
}

#[test]
fn learner_receives_the_log_but_neither_votes_nor_campaigns() {
    let mut nw = Network::new(vec![Peer::New, Peer::New, Peer::New]);
    for id in 1..=3 {
        nw.peer_mut(id)
            .apply_conf_change(&cc(ConfChangeType::RemoveNode, 3));
        nw.peer_mut(id)
            .apply_conf_change(&cc(ConfChangeType::AddLearnerNode, 3));
    }
    nw.send(vec![hup(1)]);
    assert!(
        !nw.delivered
            .iter()
            .any(|m| m.msg_type == MessageType::RequestVote && m.to == 3)
    );
    nw.send(vec![propose(1, b"x")]);
    assert_eq!(log_shape(nw.peer(3)), log_shape(nw.peer(1)));
    // Commit needs the voters only: with node 2 away nothing commits, whatever the learner has.
    nw.isolate(2);
    nw.send(vec![propose(1, b"y")]);
    assert_eq!(nw.peer(3).raft_log.last_index(), 3);
    assert_eq!(nw.peer(1).raft_log.committed, 2);
    for _ in 0..100 {
        nw.tick(3);
    }
    assert_eq!(nw.peer(3).role, StateRole::Follower);
    // Promoted, it counts.
    for id in 1..=3 {
        nw.peer_mut(id)
            .apply_conf_change(&cc(ConfChangeType::AddNode, 3));
    }
    nw.send(vec![propose(1, b"z")]);
    assert_eq!(nw.peer(1).raft_log.committed, 4);
}

#[test]
fn added_node_is_caught_up_by_the_leader() {
    let mut nw = Network::new(vec![Peer::New, Peer::New, Peer::BlackHole]);
    for id in 1..=2 {
        nw.peer_mut(id)
            .apply_conf_change(&cc(ConfChangeType::RemoveNode, 3));
    }
    nw.send(vec![hup(1)]);
    nw.send(vec![propose(1, b"x")]);
    // Node 3 joins with an empty log and no membership of its own.
    nw.set_peer(3, new_raft(3, &[], 10, 1, MemStorage::new()));
    for id in 1..=3 {
        nw.peer_mut(id)
            .apply_conf_change(&cc(ConfChangeType::AddNode, 3));
    }
    nw.send(vec![propose(1, b"y")]);
    assert_eq!(log_shape(nw.peer(3)), log_shape(nw.peer(1)));
    assert_eq!(nw.peer(1).raft_log.committed, 3);
}
