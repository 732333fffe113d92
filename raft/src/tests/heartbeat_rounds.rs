//! Heartbeat rounds: a leader leaves out of its tick's round the followers it sent an append
//! since the last round, and only those; followers whose appends stopped or were lost hear the
//! next round.

use super::harness::*;
use crate::{Config, MemStorage, Message, MessageType, ReadOnlyOption, StateRole};

/// A leader of three (heartbeat every tick) with its noop committed and applied, every
/// follower told the commit; what it sent is drained.
fn leader(tweak: impl Fn(&mut Config)) -> TestRaft {
    let mut cfg = config(1, &[1, 2, 3], 10, 1);
    tweak(&mut cfg);
    let mut r = new_raft_with(&cfg, MemStorage::new());
    r.become_candidate();
    r.become_leader();
    r.bcast_append();
    for m in read_messages(&mut r) {
        r.step(accept(&m)).unwrap();
    }
    read_messages(&mut r);
    next_ents(&mut r);
    // A round with nothing sent since clears what the noop's appends recorded.
    r.tick();
    read_messages(&mut r);
    r
}

/// Proposes one entry and has every follower accept it; returns what the leader sent after
/// the acknowledgements, and the commit index.
fn commit_one(r: &mut TestRaft) -> (Vec<Message>, u64) {
    r.step(propose(1, b"x")).unwrap();
    for m in read_messages(r) {
        r.step(accept(&m)).unwrap();
    }
    let committed = r.raft_log.committed;
    assert_eq!(committed, r.raft_log.last_index());
    (read_messages(r), committed)
}

fn heartbeats_to(msgs: &[Message]) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = msgs
        .iter()
        .filter(|m| m.msg_type == MessageType::Heartbeat)
        .map(|m| (m.to, m.commit))
        .collect();
    out.sort();
    out
}

#[test]
fn followers_sent_an_append_since_the_last_round_get_no_heartbeat_until_the_appends_stop() {
    let mut r = leader(|_| {});
    let (sent, committed) = commit_one(&mut r);
    // The commit went out in an append to each follower ...
    assert_eq!(sent.len(), 2, "{sent:?}");
    assert!(
        sent.iter()
            .all(|m| m.msg_type == MessageType::Append && m.commit == committed)
    );
    // ... so this round leaves them out,
    r.tick();
    assert_eq!(read_messages(&mut r), vec![]);
    // and the next, with no append in between, tells them again.
    r.tick();
    let msgs = read_messages(&mut r);
    assert_eq!(heartbeats_to(&msgs), vec![(2, committed), (3, committed)]);
    assert_eq!(msgs.len(), 2, "{msgs:?}");
}

#[test]
fn a_commit_no_append_carried_reaches_the_followers_the_round_after_next() {
    // Commits are not broadcast: the appends carried the commit before the entry's.
    let mut r = leader(|c| c.skip_bcast_commit = true);
    let (sent, committed) = commit_one(&mut r);
    assert_eq!(sent, vec![], "no append for the commit alone");
    r.tick();
    assert_eq!(read_messages(&mut r), vec![]);
    r.tick();
    let msgs = read_messages(&mut r);
    assert_eq!(heartbeats_to(&msgs), vec![(2, committed), (3, committed)]);
}

#[test]
fn only_the_followers_sent_an_append_are_left_out() {
    let mut r = leader(|_| {});
    // Follower 3 is being sent a snapshot: no append goes to it.
    r.prs.get_mut(3).unwrap().become_snapshot(1);
    r.step(propose(1, b"x")).unwrap();
    let msgs = read_messages(&mut r);
    assert_eq!(
        msgs.iter().map(|m| (m.to, m.msg_type)).collect::<Vec<_>>(),
        vec![(2, MessageType::Append)]
    );
    r.tick();
    let msgs = read_messages(&mut r);
    assert_eq!(
        msgs.iter().map(|m| (m.to, m.msg_type)).collect::<Vec<_>>(),
        vec![(3, MessageType::Heartbeat)]
    );
}

#[test]
fn a_follower_whose_append_was_lost_hears_the_round_after_next_and_gets_it_again() {
    let mut r = leader(|_| {});
    // Probing follower 2: one append outstanding, nothing more until it answers.
    r.prs.get_mut(2).unwrap().become_probe();
    r.step(propose(1, b"x")).unwrap();
    let last = r.raft_log.last_index();
    let msgs = read_messages(&mut r);
    assert_eq!(msgs.len(), 2, "{msgs:?}");
    // The append to 2 is lost; 3 acknowledges, which commits the entry.
    let to_3 = msgs.iter().find(|m| m.to == 3).unwrap();
    r.step(accept(to_3)).unwrap();
    read_messages(&mut r);
    assert!(r.prs.get(2).unwrap().is_paused());
    r.tick();
    assert_eq!(heartbeats_to(&read_messages(&mut r)), vec![]);
    r.tick();
    let hbs = read_messages(&mut r);
    assert!(
        hbs.iter()
            .any(|m| m.to == 2 && m.msg_type == MessageType::Heartbeat)
    );
    // Its answer resumes the probe, and the entry goes again.
    r.step(Message {
        term: r.term,
        ..msg(2, 1, MessageType::HeartbeatResponse)
    })
    .unwrap();
    let again = read_messages(&mut r);
    assert!(
        again.iter().any(|m| m.to == 2
            && m.msg_type == MessageType::Append
            && m.entries.last().map(|e| e.index) == Some(last)),
        "{again:?}"
    );
}

#[test]
fn a_pending_read_goes_to_every_follower_each_round() {
    let mut r = leader(|c| c.read_only_option = ReadOnlyOption::Safe);
    r.step(Message {
        context: bytes::Bytes::from_static(b"ctx"),
        ..msg(1, 1, MessageType::ReadIndex)
    })
    .unwrap();
    // The read's own round is lost; appends then go to both followers.
    assert_eq!(heartbeats_to(&read_messages(&mut r)).len(), 2);
    let (sent, _) = commit_one(&mut r);
    assert_eq!(sent.len(), 2, "{sent:?}");
    // The tick's round still carries the read to both: it must be confirmed.
    r.tick();
    let msgs = read_messages(&mut r);
    assert_eq!(msgs.len(), 2, "{msgs:?}");
    for m in &msgs {
        assert_eq!(
            (m.msg_type, m.context.as_ref()),
            (MessageType::Heartbeat, &b"ctx"[..])
        );
    }
}

#[test]
fn a_busy_leader_keeps_its_followers_and_its_quorum_on_appends_alone() {
    // Check quorum and pre-vote on; heartbeats never arrive. While entries flow every tick
    // the leader stays leader and nobody campaigns; once they stop, the followers' timers run
    // out (which shows the heartbeats were what was missing).
    let mut net = Network::with_config(vec![Peer::New, Peer::New, Peer::New], |c| {
        c.check_quorum = true;
        c.pre_vote = true;
    });
    net.send(vec![hup(1)]);
    assert_role(net.peer(1), StateRole::Leader, 1);
    net.ignore(MessageType::Heartbeat);
    net.ignore(MessageType::HeartbeatResponse);
    for _ in 0..100 {
        net.send(vec![propose(1, b"busy")]);
        for id in 1..=3 {
            net.tick(id);
        }
    }
    assert_role(net.peer(1), StateRole::Leader, 1);
    for id in 2..=3 {
        assert_role(net.peer(id), StateRole::Follower, 1);
    }
    let sent_heartbeats = net
        .delivered
        .iter()
        .filter(|m| m.msg_type == MessageType::Heartbeat)
        .count();
    assert_eq!(sent_heartbeats, 0);
    for _ in 0..100 {
        for id in 1..=3 {
            net.tick(id);
        }
    }
    assert!(
        net.peer(1).term > 1 || net.peer(1).role != StateRole::Leader,
        "without appends or heartbeats the group must notice"
    );
}
