//! What the node needs to let a quiet group hibernate: a leader says when its group is at rest
//! (`settled_index`), and a leader woken from hibernation tells its followers at once (`ping`).

use super::harness::*;
use crate::{MemStorage, Message, MessageType, ProgressState};

/// Answers every append the leader sends with an acceptance until it sends no more, then
/// applies what committed.
fn replicate_all(r: &mut TestRaft) {
    loop {
        let msgs = read_messages(r);
        if msgs.is_empty() {
            break;
        }
        for m in msgs.iter().filter(|m| m.msg_type == MessageType::Append) {
            r.step(accept(m)).unwrap();
        }
    }
    next_ents(r);
}

/// A leader of three whose noop every follower holds and that applied it.
fn settled_leader() -> TestRaft {
    let mut r = new_raft(1, &[1, 2, 3], 10, 1, MemStorage::new());
    r.become_candidate();
    r.become_leader();
    r.bcast_append();
    replicate_all(&mut r);
    r
}

#[test]
fn a_leader_whose_followers_hold_everything_is_settled_at_its_last_index() {
    let r = settled_leader();
    assert_eq!(r.settled_index(), Some(r.raft_log.last_index()));
}

#[test]
fn only_a_leader_is_ever_settled() {
    let mut r = settled_leader();
    let term = r.term;
    r.become_follower(term + 1, 2);
    assert_eq!(r.settled_index(), None);
}

#[test]
fn a_proposal_unsettles_until_every_follower_holds_it_and_it_is_applied() {
    let mut r = settled_leader();
    r.step(propose(1, b"x")).unwrap();
    assert_eq!(r.settled_index(), None, "not sent yet");
    let msgs = read_messages(&mut r);
    // One follower acknowledges: committed, but the other lacks it.
    r.step(accept(&msgs[0])).unwrap();
    next_ents(&mut r);
    assert_eq!(r.raft_log.committed, r.raft_log.last_index());
    assert_eq!(r.settled_index(), None, "a follower lacks the entry");
    r.step(accept(&msgs[1])).unwrap();
    assert_eq!(r.settled_index(), None, "the commit is not applied yet");
    read_messages(&mut r);
    next_ents(&mut r);
    assert_eq!(r.settled_index(), Some(r.raft_log.last_index()));
}

#[test]
fn a_pending_read_unsettles_until_it_is_answered() {
    let mut r = settled_leader();
    r.step(Message {
        context: bytes::Bytes::from_static(b"read-1"),
        ..msg(1, 1, MessageType::ReadIndex)
    })
    .unwrap();
    assert_eq!(r.settled_index(), None);
    for m in read_messages(&mut r) {
        assert_eq!(m.msg_type, MessageType::Heartbeat);
        r.step(Message {
            term: m.term,
            context: m.context.clone(),
            ..msg(m.to, 1, MessageType::HeartbeatResponse)
        })
        .unwrap();
    }
    assert_eq!(r.read_states.len(), 1, "the read is answered");
    assert_eq!(r.settled_index(), None, "until the driver takes the answer");
    r.read_states.clear();
    read_messages(&mut r);
    assert_eq!(r.settled_index(), Some(r.raft_log.last_index()));
}

#[test]
fn a_snapshot_in_flight_or_a_transfer_unsettles_a_probe_does_not() {
    let mut r = settled_leader();
    let last = r.raft_log.last_index();
    r.prs.get_mut(2).unwrap().become_probe();
    assert_eq!(
        r.settled_index(),
        Some(last),
        "probed after an unreachable report, follower 2 still holds everything"
    );
    r.prs.get_mut(2).unwrap().become_snapshot(last);
    assert_eq!(r.settled_index(), None, "a snapshot is in flight to 2");
    r.prs.get_mut(2).unwrap().become_replicate();
    assert_eq!(r.settled_index(), Some(last));
    r.step(msg(3, 1, MessageType::TransferLeader)).unwrap();
    assert_eq!(r.settled_index(), None, "a transfer is under way");
    assert_eq!(r.prs.get(3).unwrap().state, ProgressState::Replicate);
}

#[test]
fn a_woken_leader_sends_every_follower_a_heartbeat_at_once() {
    let mut r = settled_leader();
    r.ping();
    let mut msgs = read_messages(&mut r);
    msgs.sort_by_key(|m| m.to);
    let commit = r.raft_log.committed;
    assert_eq!(
        msgs.iter()
            .map(|m| (m.to, m.msg_type, m.commit))
            .collect::<Vec<_>>(),
        vec![
            (2, MessageType::Heartbeat, commit),
            (3, MessageType::Heartbeat, commit)
        ]
    );
    let mut f = new_raft(2, &[1, 2, 3], 10, 1, MemStorage::new());
    f.ping();
    assert_eq!(read_messages(&mut f), vec![], "a follower sends nothing");
}
