//! Leader transfer: catching the transferee up, TimeoutNow, aborting, and what is refused
//! while a transfer is under way.

use bytes::Bytes;

use super::harness::*;
use crate::{ConfChange, ConfChangeType, Error, MemStorage, Message, MessageType, StateRole};

fn transfer(to_leader: u64, transferee: u64) -> Message {
    msg(transferee, to_leader, MessageType::TransferLeader)
}

fn three_nodes() -> Network {
    let mut nw = Network::new(vec![Peer::New, Peer::New, Peer::New]);
    nw.send(vec![hup(1)]);
    nw
}

fn check_transfer_done(r: &TestRaft, role: StateRole, leader: u64) {
    assert_eq!(
        (r.role, r.leader_id, r.lead_transferee),
        (role, leader, None),
        "node {}",
        r.id
    );
}

#[test]
fn transfer_to_an_up_to_date_node_and_back() {
    let mut nw = three_nodes();
    assert_eq!(
        nw.peer(1).prs.get(2).unwrap().matched,
        nw.peer(1).raft_log.last_index()
    );
    nw.send(vec![transfer(1, 2)]);
    check_transfer_done(nw.peer(1), StateRole::Follower, 2);
    check_transfer_done(nw.peer(2), StateRole::Leader, 2);
    nw.send(vec![propose(2, b"")]);
    nw.send(vec![transfer(2, 1)]);
    check_transfer_done(nw.peer(1), StateRole::Leader, 1);
}

#[test]
fn transfer_requested_by_a_follower_is_forwarded() {
    let mut nw = three_nodes();
    nw.send(vec![transfer(2, 2)]);
    check_transfer_done(nw.peer(1), StateRole::Follower, 2);
    check_transfer_done(nw.peer(2), StateRole::Leader, 2);
    nw.send(vec![propose(2, b"")]);
    nw.send(vec![transfer(1, 1)]);
    check_transfer_done(nw.peer(1), StateRole::Leader, 1);
}

#[test]
fn transfer_to_a_slow_follower_catches_it_up_first() {
    let mut nw = three_nodes();
    nw.isolate(3);
    nw.send(vec![propose(1, b"")]);
    nw.recover();
    assert_ne!(
        nw.peer(1).prs.get(3).unwrap().matched,
        nw.peer(1).raft_log.last_index()
    );
    nw.send(vec![transfer(1, 3)]);
    check_transfer_done(nw.peer(1), StateRole::Follower, 3);
    check_transfer_done(nw.peer(3), StateRole::Leader, 3);
}

#[test]
fn transfer_after_a_snapshot() {
    let mut nw = three_nodes();
    nw.isolate(3);
    nw.send(vec![propose(1, b"")]);
    {
        let lead = nw.peer_mut(1);
        next_ents(lead);
        let applied = lead.raft_log.applied;
        let cs = lead.prs.conf_state();
        lead.raft_log
            .store
            .create_snapshot(applied, Some(cs), Bytes::new())
            .unwrap();
        lead.raft_log.store.compact(applied).unwrap();
    }
    nw.recover();
    nw.delivered.clear();
    nw.send(vec![transfer(1, 3)]);
    assert!(
        nw.delivered
            .iter()
            .any(|m| m.msg_type == MessageType::Snapshot && m.to == 3)
    );
    check_transfer_done(nw.peer(1), StateRole::Follower, 3);
    check_transfer_done(nw.peer(3), StateRole::Leader, 3);
}

#[test]
fn transfer_to_self_or_a_non_member_does_nothing() {
    let mut nw = three_nodes();
    nw.send(vec![transfer(1, 1)]);
    check_transfer_done(nw.peer(1), StateRole::Leader, 1);
    nw.send(vec![transfer(1, 4)]);
    check_transfer_done(nw.peer(1), StateRole::Leader, 1);
}

#[test]
fn transfer_times_out_after_an_election_timeout() {
    let mut nw = three_nodes();
    nw.isolate(3);
    nw.send(vec![propose(1, b"")]);
    nw.send(vec![transfer(1, 3)]);
    assert_eq!(nw.peer(1).lead_transferee, Some(3));
    for _ in 0..9 {
        nw.tick(1);
    }
    assert_eq!(nw.peer(1).lead_transferee, Some(3));
    nw.tick(1);
    check_transfer_done(nw.peer(1), StateRole::Leader, 1);
}

#[test]
fn a_transferee_reported_unreachable_ends_the_transfer_at_once() {
    let mut nw = three_nodes();
    nw.isolate(3);
    nw.send(vec![propose(1, b"")]);
    nw.send(vec![transfer(1, 3)]);
    // Another peer's report changes nothing.
    nw.peer_mut(1).report_unreachable(2);
    assert_eq!(nw.peer(1).lead_transferee, Some(3));
    nw.peer_mut(1).report_unreachable(3);
    check_transfer_done(nw.peer(1), StateRole::Leader, 1);
    nw.send(vec![propose(1, b"x")]);
    assert_eq!(
        nw.peer(1).raft_log.committed,
        nw.peer(1).raft_log.last_index()
    );
}

#[test]
fn proposals_are_dropped_during_a_transfer() {
    let mut nw = three_nodes();
    nw.isolate(3);
    nw.send(vec![propose(1, b"")]);
    nw.send(vec![transfer(1, 3)]);
    let before = nw.peer(1).raft_log.last_index();
    assert!(matches!(
        nw.peer_mut(1).step(propose(1, b"x")),
        Err(Error::ProposalDropped)
    ));
    assert_eq!(nw.peer(1).raft_log.last_index(), before);
}

#[test]
fn higher_term_election_ends_a_pending_transfer() {
    let mut nw = three_nodes();
    nw.isolate(3);
    nw.send(vec![propose(1, b"")]);
    nw.send(vec![transfer(1, 3)]);
    nw.send(vec![hup(2)]);
    check_transfer_done(nw.peer(1), StateRole::Follower, 2);
    check_transfer_done(nw.peer(2), StateRole::Leader, 2);
    assert_eq!(nw.peer(2).term, 2);
}

#[test]
fn removing_the_transferee_aborts_the_transfer() {
    let mut nw = three_nodes();
    nw.ignore(MessageType::TimeoutNow);
    nw.send(vec![transfer(1, 3)]);
    assert_eq!(nw.peer(1).lead_transferee, Some(3));
    let cc = ConfChange {
        change_type: ConfChangeType::RemoveNode,
        node_id: 3,
        ..ConfChange::default()
    };
    nw.peer_mut(1).apply_conf_change(&cc);
    check_transfer_done(nw.peer(1), StateRole::Leader, 1);
}

#[test]
fn transfer_back_to_the_leader_cancels_it() {
    let mut nw = three_nodes();
    nw.isolate(3);
    nw.send(vec![propose(1, b"")]);
    nw.send(vec![transfer(1, 3)]);
    nw.send(vec![transfer(1, 1)]);
    check_transfer_done(nw.peer(1), StateRole::Leader, 1);
}

#[test]
fn second_transfer_to_another_node_wins() {
    let mut nw = three_nodes();
    nw.isolate(3);
    nw.send(vec![propose(1, b"")]);
    nw.send(vec![transfer(1, 3)]);
    nw.send(vec![transfer(1, 2)]);
    check_transfer_done(nw.peer(1), StateRole::Follower, 2);
    check_transfer_done(nw.peer(2), StateRole::Leader, 2);
}

#[test]
fn repeating_a_transfer_does_not_extend_its_deadline() {
    let mut nw = three_nodes();
    nw.isolate(3);
    nw.send(vec![propose(1, b"")]);
    nw.send(vec![transfer(1, 3)]);
    for _ in 0..5 {
        nw.tick(1);
    }
    nw.send(vec![transfer(1, 3)]);
    for _ in 0..5 {
        nw.tick(1);
    }
    check_transfer_done(nw.peer(1), StateRole::Leader, 1);
}

#[test]
fn timeout_now_to_a_non_member_does_nothing() {
    let mut r = new_raft(1, &[2, 3, 4], 5, 1, MemStorage::new());
    r.step(Message {
        term: 1,
        ..msg(2, 1, MessageType::TimeoutNow)
    })
    .unwrap();
    assert_eq!(r.role, StateRole::Follower);
    assert!(read_messages(&mut r).is_empty());
}

#[test]
fn timeout_now_skips_pre_vote_and_passes_the_lease() {
    let mut nw = Network::with_config(vec![Peer::New, Peer::New, Peer::New], |c| {
        c.pre_vote = true;
        c.check_quorum = true;
    });
    nw.send(vec![hup(1)]);
    assert_role(nw.peer(1), StateRole::Leader, 1);
    let out = nw.deliver_once(vec![Message {
        term: 1,
        ..msg(1, 2, MessageType::TimeoutNow)
    }]);
    assert_role(nw.peer(2), StateRole::Candidate, 2);
    assert!(out.iter().all(|m| m.msg_type == MessageType::RequestVote
        && m.context.as_ref() == crate::CAMPAIGN_TRANSFER_CONTEXT));
    nw.send(out);
    assert_role(nw.peer(2), StateRole::Leader, 2);
    assert_role(nw.peer(1), StateRole::Follower, 2);
    // The full path with check quorum and pre-vote on.
    nw.send(vec![transfer(2, 3)]);
    check_transfer_done(nw.peer(3), StateRole::Leader, 3);
}

#[test]
fn learner_cannot_be_the_transferee() {
    let mut nw = three_nodes();
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
    nw.send(vec![transfer(1, 3)]);
    check_transfer_done(nw.peer(1), StateRole::Leader, 1);
}
