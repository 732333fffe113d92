//! ReadIndex: Safe reads confirmed by a heartbeat round, reads through a follower, holding
//! reads until the leader commits in its term, lease-based reads and single-node reads.

use bytes::Bytes;

use super::harness::*;
use crate::{MemStorage, Message, MessageType, ReadOnlyOption, ReadState};

fn read(from: u64, to: u64, ctx: &'static [u8]) -> Message {
    Message {
        context: Bytes::from_static(ctx),
        ..msg(from, to, MessageType::ReadIndex)
    }
}

fn rs(index: u64, ctx: &'static [u8]) -> ReadState {
    ReadState {
        index,
        request_ctx: Bytes::from_static(ctx),
    }
}

#[test]
fn safe_read_on_the_leader_is_confirmed_by_a_heartbeat_round() {
    let mut nw = Network::new(vec![Peer::New, Peer::New, Peer::New]);
    nw.send(vec![hup(1)]);
    nw.send(vec![propose(1, b"x")]);
    nw.delivered.clear();
    nw.send(vec![read(1, 1, b"ctx1")]);
    assert_eq!(
        std::mem::take(&mut nw.peer_mut(1).read_states),
        vec![rs(2, b"ctx1")]
    );
    let hbs: Vec<&Message> = nw
        .delivered
        .iter()
        .filter(|m| m.msg_type == MessageType::Heartbeat)
        .collect();
    assert_eq!(hbs.len(), 2);
    assert!(hbs.iter().all(|m| m.context.as_ref() == b"ctx1"));
}

#[test]
fn safe_read_waits_for_a_quorum_of_acks() {
    let mut nw = Network::new(vec![Peer::New, Peer::New, Peer::New, Peer::New, Peer::New]);
    nw.send(vec![hup(1)]);
    nw.isolate(2);
    nw.isolate(3);
    nw.isolate(4);
    nw.send(vec![read(1, 1, b"a")]);
    assert!(
        nw.peer(1).read_states.is_empty(),
        "two of five is no quorum"
    );
    nw.recover();
    nw.isolate(4);
    nw.isolate(5);
    // A later round (heartbeats repeat the newest pending context) confirms it.
    nw.send(vec![beat(1)]);
    assert_eq!(nw.peer(1).read_states, vec![rs(1, b"a")]);
}

#[test]
fn later_confirmation_releases_earlier_reads_in_order() {
    let mut nw = Network::new(vec![Peer::New, Peer::New, Peer::New]);
    nw.send(vec![hup(1)]);
    nw.ignore(MessageType::HeartbeatResponse);
    nw.send(vec![read(1, 1, b"a")]);
    nw.send(vec![propose(1, b"x")]);
    nw.send(vec![read(1, 1, b"b")]);
    assert!(nw.peer(1).read_states.is_empty());
    nw.recover();
    nw.send(vec![beat(1)]);
    assert_eq!(nw.peer(1).read_states, vec![rs(1, b"a"), rs(2, b"b")]);
}

#[test]
fn read_through_a_follower() {
    let mut nw = Network::new(vec![Peer::New, Peer::New, Peer::New]);
    nw.send(vec![hup(1)]);
    nw.send(vec![propose(1, b"x")]);
    nw.send(vec![read(2, 2, b"f")]);
    assert_eq!(nw.peer(2).read_states, vec![rs(2, b"f")]);
    assert!(nw.peer(1).read_states.is_empty());
    assert!(
        nw.delivered
            .iter()
            .any(|m| m.msg_type == MessageType::ReadIndexResponse && m.to == 2)
    );
}

#[test]
fn follower_without_a_leader_drops_reads() {
    let mut r = new_raft(2, &[1, 2, 3], 10, 1, MemStorage::new());
    r.step(read(2, 2, b"f")).unwrap();
    assert!(read_messages(&mut r).is_empty());
    assert!(r.read_states.is_empty());
}

#[test]
fn leader_holds_reads_until_it_commits_in_its_term() {
    let mut nw = Network::new(vec![Peer::New, Peer::New, Peer::New]);
    nw.send(vec![hup(1)]);
    nw.send(vec![propose(1, b"x")]);
    // Node 2 takes over but its noop cannot commit yet.
    nw.ignore(MessageType::AppendResponse);
    nw.send(vec![hup(2)]);
    assert_eq!(nw.peer(2).role, crate::StateRole::Leader);
    assert_eq!(nw.peer(2).raft_log.committed, 2);
    nw.send(vec![read(2, 2, b"r")]);
    nw.send(vec![read(3, 3, b"q")]);
    assert!(nw.peer(2).read_states.is_empty());
    assert!(nw.peer(3).read_states.is_empty());
    nw.recover();
    // The noop commits (at 3); the held reads are then confirmed and answered at 3.
    nw.send(vec![beat(2)]);
    assert_eq!(nw.peer(2).raft_log.committed, 3);
    assert_eq!(nw.peer(2).read_states, vec![rs(3, b"r")]);
    assert_eq!(nw.peer(3).read_states, vec![rs(3, b"q")]);
}

#[test]
fn lease_based_read_answers_at_once() {
    let mut nw = Network::with_config(vec![Peer::New, Peer::New, Peer::New], |c| {
        c.check_quorum = true;
        c.read_only_option = ReadOnlyOption::LeaseBased;
    });
    nw.send(vec![hup(1)]);
    nw.isolate(2);
    nw.isolate(3);
    nw.delivered.clear();
    nw.send(vec![read(1, 1, b"lease")]);
    assert_eq!(nw.peer(1).read_states, vec![rs(1, b"lease")]);
    assert!(
        nw.delivered
            .iter()
            .all(|m| m.msg_type != MessageType::Heartbeat)
    );
}

#[test]
fn single_node_reads_at_once() {
    let mut nw = Network::new(vec![Peer::New]);
    nw.send(vec![hup(1)]);
    nw.send(vec![propose(1, b"x")]);
    nw.send(vec![read(1, 1, b"solo")]);
    assert_eq!(nw.peer(1).read_states, vec![rs(2, b"solo")]);
}

#[test]
fn safe_read_without_a_context_is_dropped() {
    let mut nw = Network::new(vec![Peer::New, Peer::New, Peer::New]);
    nw.send(vec![hup(1)]);
    nw.delivered.clear();
    nw.send(vec![read(1, 1, b"")]);
    assert!(nw.peer(1).read_states.is_empty());
    assert!(nw.delivered.len() == 1, "no heartbeat round for it");
}
