//! Check quorum: a leader cut off from a quorum steps down, and followers that hear from a
//! leader ignore vote requests (the leader lease).

use super::harness::*;
use crate::{ConfChange, ConfChangeType, Message, MessageType, StateRole};

fn check_quorum_network(n: usize) -> Network {
    let peers = (0..n).map(|_| Peer::New).collect();
    Network::with_config(peers, |c| c.check_quorum = true)
}

#[test]
fn leader_in_a_minority_steps_down() {
    let mut nw = check_quorum_network(3);
    nw.send(vec![hup(1)]);
    assert_eq!(nw.peer(1).role, StateRole::Leader);
    nw.isolate(1);
    // The peers answered within the first period; the second one without answers ends it.
    for _ in 0..19 {
        nw.tick(1);
    }
    assert_eq!(nw.peer(1).role, StateRole::Leader);
    nw.tick(1);
    assert_role(nw.peer(1), StateRole::Follower, 1);
    assert!(matches!(
        nw.peer_mut(1).step(propose(1, b"x")),
        Err(crate::Error::ProposalDropped)
    ));
}

#[test]
fn leader_with_an_active_quorum_stays() {
    let mut nw = check_quorum_network(3);
    nw.send(vec![hup(1)]);
    nw.isolate(3);
    // Heartbeats every tick keep node 2 answering.
    for _ in 0..50 {
        nw.tick(1);
    }
    assert_role(nw.peer(1), StateRole::Leader, 1);
}

#[test]
fn learners_do_not_keep_a_leader_in_office() {
    let mut nw = check_quorum_network(3);
    for id in 1..=3 {
        for change_type in [ConfChangeType::RemoveNode, ConfChangeType::AddLearnerNode] {
            let cc = ConfChange {
                change_type,
                node_id: 3,
                ..ConfChange::default()
            };
            nw.peer_mut(id).apply_conf_change(&cc);
        }
    }
    nw.send(vec![hup(1)]);
    assert_eq!(nw.peer(1).role, StateRole::Leader);
    assert!(nw.peer(1).prs.get(3).unwrap().is_learner);
    nw.cut(1, 2);
    for _ in 0..20 {
        nw.tick(1);
    }
    assert_eq!(nw.peer(1).role, StateRole::Follower);
}

#[test]
fn leader_lease_blocks_disruptive_votes() {
    let mut nw = check_quorum_network(3);
    nw.send(vec![hup(1)]);
    // Node 3 campaigns although node 1 leads: nobody in a lease grants a vote.
    nw.send(vec![hup(3)]);
    assert_role(nw.peer(1), StateRole::Leader, 1);
    assert_role(nw.peer(2), StateRole::Follower, 1);
    assert_role(nw.peer(3), StateRole::Candidate, 2);
    // Once node 2's lease runs out (an election timeout without the leader) it votes.
    nw.isolate(1);
    for _ in 0..10 {
        nw.peer_mut(2).tick();
    }
    read_messages(nw.peer_mut(2));
    nw.send(vec![hup(3)]);
    assert_role(nw.peer(3), StateRole::Leader, 3);
}

#[test]
fn stuck_candidate_is_freed_by_the_leaders_heartbeat() {
    let mut nw = check_quorum_network(3);
    nw.send(vec![hup(1)]);
    nw.isolate(1);
    nw.send(vec![hup(3)]);
    assert_role(nw.peer(2), StateRole::Follower, 1);
    assert_role(nw.peer(3), StateRole::Candidate, 2);
    nw.send(vec![hup(3)]);
    assert_role(nw.peer(3), StateRole::Candidate, 3);
    nw.recover();
    // The heartbeat of term 1 is answered with term 3: the leader learns the term and steps
    // down, so the next election can proceed.
    nw.send(vec![Message {
        term: 1,
        ..msg(1, 3, MessageType::Heartbeat)
    }]);
    assert_role(nw.peer(1), StateRole::Follower, 3);
}

#[test]
fn lease_check_skips_transfer_campaigns() {
    let mut nw = check_quorum_network(3);
    nw.send(vec![hup(1)]);
    let m = Message {
        term: 2,
        index: 1,
        log_term: 1,
        context: bytes::Bytes::from_static(crate::CAMPAIGN_TRANSFER_CONTEXT),
        ..msg(3, 2, MessageType::RequestVote)
    };
    let resp = nw.deliver_once(vec![m]);
    assert_eq!(resp.len(), 1);
    assert!(!resp[0].reject);
    assert_role(nw.peer(2), StateRole::Follower, 2);
}
