//! Pre-vote: a node asks whether it could win before it bumps its term.

use super::harness::*;
use crate::{HardState, Message, MessageType, StateRole};

fn pre_vote_network(peers: Vec<Peer>, check_quorum: bool) -> Network {
    Network::with_config(peers, move |c| {
        c.pre_vote = true;
        c.check_quorum = check_quorum;
    })
}

#[test]
fn pre_vote_then_vote_elects_a_leader() {
    let mut nw = pre_vote_network(vec![Peer::New, Peer::New, Peer::New], false);
    nw.send(vec![hup(1)]);
    assert_role(nw.peer(1), StateRole::Leader, 1);
    assert!(
        nw.delivered
            .iter()
            .any(|m| m.msg_type == MessageType::RequestPreVote && m.term == 1)
    );
}

#[test]
fn partitioned_node_rejoining_does_not_bump_the_term() {
    for check_quorum in [false, true] {
        let mut nw = pre_vote_network(vec![Peer::New, Peer::New, Peer::New], check_quorum);
        nw.send(vec![hup(1)]);
        nw.isolate(3);
        nw.send(vec![propose(1, b"data")]);
        for _ in 0..100 {
            nw.tick(3);
        }
        assert_role(nw.peer(3), StateRole::PreCandidate, 1);
        nw.recover();
        // Its next pre-vote is refused: the others have a longer log (and a leader lease).
        nw.send(vec![hup(3)]);
        assert_role(nw.peer(1), StateRole::Leader, 1);
        assert_ne!(nw.peer(3).role, StateRole::Candidate);
        assert_eq!(nw.peer(3).term, 1);
        nw.send(vec![beat(1)]);
        assert_role(nw.peer(3), StateRole::Follower, 1);
        assert_eq!(nw.peer(3).leader_id, 1);
        assert_eq!(nw.peer(3).raft_log.committed, nw.peer(1).raft_log.committed);
    }
}

#[test]
fn pre_candidate_loses_to_a_quorum_of_rejections() {
    let mut nw = pre_vote_network(vec![Peer::New, Peer::New, Peer::New], false);
    nw.send(vec![hup(1)]);
    nw.send(vec![propose(1, b"x")]);
    // Node 3's log falls behind, then it campaigns.
    nw.isolate(3);
    nw.send(vec![propose(1, b"y")]);
    nw.recover();
    nw.cut(1, 3);
    nw.send(vec![hup(3)]);
    // Node 2 refuses (longer log); node 1 is unreachable: with one rejection of three the
    // outcome is open, so node 3 stays a pre-candidate at its old term.
    assert_role(nw.peer(3), StateRole::PreCandidate, 1);
    nw.recover();
    nw.send(vec![hup(3)]);
    assert_role(nw.peer(3), StateRole::Follower, 1);
    assert_role(nw.peer(1), StateRole::Leader, 1);
}

#[test]
fn lower_term_pre_vote_is_rejected_with_the_higher_term() {
    let store = storage_with(
        &[],
        HardState {
            term: 5,
            vote: 0,
            commit: 0,
        },
    );
    let mut cfg = config(1, &[1, 2, 3], 10, 1);
    cfg.pre_vote = true;
    let mut r = new_raft_with(&cfg, store);
    r.step(Message {
        term: 3,
        ..msg(2, 1, MessageType::RequestPreVote)
    })
    .unwrap();
    let msgs = read_messages(&mut r);
    assert_eq!(msgs.len(), 1);
    assert_eq!(
        (msgs[0].msg_type, msgs[0].term, msgs[0].reject),
        (MessageType::RequestPreVoteResponse, 5, true)
    );
    // The pre-candidate learns the term from it.
    let mut p = new_raft_with(
        &{
            let mut c = config(2, &[1, 2, 3], 10, 1);
            c.pre_vote = true;
            c
        },
        crate::MemStorage::new(),
    );
    p.term = 2;
    p.step(hup(2)).unwrap();
    assert_role(&p, StateRole::PreCandidate, 2);
    p.step(msgs[0].clone()).unwrap();
    assert_role(&p, StateRole::Follower, 5);
}

#[test]
fn pre_vote_changes_neither_term_nor_vote_of_voters() {
    let mut nw = pre_vote_network(vec![Peer::New, Peer::New, Peer::New], false);
    nw.isolate(1);
    nw.peer_mut(2).step(hup(2)).unwrap();
    let out = read_messages(nw.peer_mut(2));
    assert!(
        out.iter()
            .all(|m| m.msg_type == MessageType::RequestPreVote && m.term == 1)
    );
    let granted = nw.deliver_once(out.into_iter().filter(|m| m.to == 3).collect());
    assert_eq!(granted.len(), 1);
    assert!(!granted[0].reject);
    assert_eq!(granted[0].term, 1);
    assert_eq!((nw.peer(3).term, nw.peer(3).vote), (0, 0));
}

#[test]
fn pre_vote_is_refused_while_a_leader_is_alive_with_check_quorum() {
    let mut nw = pre_vote_network(vec![Peer::New, Peer::New, Peer::New], true);
    nw.send(vec![hup(1)]);
    let m = Message {
        term: 2,
        index: 5,
        log_term: 5,
        ..msg(3, 2, MessageType::RequestPreVote)
    };
    assert!(
        nw.deliver_once(vec![m.clone()]).is_empty(),
        "ignored within the lease"
    );
    for _ in 0..10 {
        nw.peer_mut(2).tick();
    }
    read_messages(nw.peer_mut(2));
    let resp = nw.deliver_once(vec![m]);
    assert_eq!(resp.len(), 1);
    assert!(!resp[0].reject, "granted once the lease expired");
    assert_eq!(nw.peer(2).term, 1);
}
