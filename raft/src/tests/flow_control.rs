//! Flow control: the inflight window of a replicating peer, the byte limit per append, and
//! probing one message at a time.

use super::harness::*;
use crate::{MemStorage, Message, MessageType, ProgressState};

fn leader(max_inflight: usize, max_size: u64) -> TestRaft {
    let mut cfg = config(1, &[1, 2], 5, 1);
    cfg.max_inflight_msgs = max_inflight;
    cfg.max_size_per_msg = max_size;
    let mut r = new_raft_with(&cfg, MemStorage::new());
    r.become_candidate();
    r.become_leader();
    read_messages(&mut r);
    r
}

fn appends_to(msgs: &[Message], to: u64) -> Vec<&Message> {
    msgs.iter()
        .filter(|m| m.msg_type == MessageType::Append && m.to == to)
        .collect()
}

#[test]
fn full_inflight_window_stops_appends_until_acked() {
    let mut r = leader(3, 1024 * 1024);
    r.prs.get_mut(2).unwrap().become_replicate();
    // One round of steps per proposal, so each would send its own append.
    let mut msgs = Vec::new();
    for _ in 0..10 {
        r.step(propose(1, b"somedata")).unwrap();
        msgs.extend(read_messages(&mut r));
    }
    let appends = appends_to(&msgs, 2);
    assert_eq!(appends.len(), 3, "only the window's worth goes out");
    assert!(r.prs.get(2).unwrap().ins.full());
    // Acknowledging the first append frees one slot: one more append goes out, carrying
    // every entry still unsent.
    let first_last = appends[0].index + appends[0].entries.len() as u64;
    r.step(Message {
        term: 1,
        index: first_last,
        ..msg(2, 1, MessageType::AppendResponse)
    })
    .unwrap();
    let msgs = read_messages(&mut r);
    let appends = appends_to(&msgs, 2);
    assert_eq!(appends.len(), 1);
    assert_eq!(
        appends[0].entries.last().unwrap().index,
        r.raft_log.last_index()
    );
    assert!(r.prs.get(2).unwrap().ins.full());
    // Acknowledging everything empties the window.
    r.step(Message {
        term: 1,
        index: r.raft_log.last_index(),
        ..msg(2, 1, MessageType::AppendResponse)
    })
    .unwrap();
    assert_eq!(r.prs.get(2).unwrap().ins.count(), 0);
    assert_eq!(r.raft_log.committed, r.raft_log.last_index());
}

#[test]
fn heartbeat_answer_frees_one_slot_of_a_full_window() {
    let mut r = leader(3, 1024 * 1024);
    r.prs.get_mut(2).unwrap().become_replicate();
    for _ in 0..5 {
        r.step(propose(1, b"somedata")).unwrap();
        read_messages(&mut r);
    }
    assert!(r.prs.get(2).unwrap().ins.full());
    r.step(Message {
        term: 1,
        ..msg(2, 1, MessageType::HeartbeatResponse)
    })
    .unwrap();
    // The freed slot is used at once for the entries still unsent, if any; either way the
    // window holds no more than before.
    let appends = appends_to(&read_messages(&mut r), 2).len();
    assert_eq!(r.prs.get(2).unwrap().ins.count(), 3 - 1 + appends);
}

#[test]
fn append_respects_the_byte_limit_but_sends_at_least_one_entry() {
    // Each entry is 24 bytes of overhead plus its data.
    let mut r = leader(256, 100);
    r.prs.get_mut(2).unwrap().become_replicate();
    r.prs.get_mut(2).unwrap().ins = crate::inflights::Inflights::new(1);
    for _ in 0..6 {
        r.step(propose(1, b"0123456789")).unwrap();
    }
    read_messages(&mut r);
    // Let the peer start from the beginning so one append must cover everything.
    let pr = r.prs.get_mut(2).unwrap();
    pr.become_probe();
    pr.next_idx = 1;
    r.step(Message {
        term: 1,
        ..msg(2, 1, MessageType::HeartbeatResponse)
    })
    .unwrap();
    let msgs = read_messages(&mut r);
    let appends = appends_to(&msgs, 2);
    assert_eq!(appends.len(), 1);
    let size: u64 = appends[0].entries.iter().map(|e| e.size()).sum();
    assert!(size <= 100, "append carries {size} bytes");
    assert_eq!(
        appends[0].entries.len(),
        3,
        "a 24-byte noop and two 34-byte entries fit, a third does not"
    );

    let mut r = leader(256, 1);
    r.prs.get_mut(2).unwrap().become_replicate();
    r.step(propose(1, b"a big entry, bigger than the limit"))
        .unwrap();
    let msgs = read_messages(&mut r);
    let appends = appends_to(&msgs, 2);
    assert!(appends.iter().all(|m| m.entries.len() == 1));
}

#[test]
fn replicating_peer_gets_many_size_limited_appends_in_a_row() {
    let mut r = leader(256, 60);
    // Matched at the noop: replicate state.
    r.step(Message {
        term: 1,
        index: 1,
        ..msg(2, 1, MessageType::AppendResponse)
    })
    .unwrap();
    assert_eq!(r.prs.get(2).unwrap().state, ProgressState::Replicate);
    read_messages(&mut r);
    let pr = r.prs.get_mut(2).unwrap();
    pr.probe_sent = false;
    // Five proposals while the peer is probing do not pile up messages...
    pr.become_probe();
    pr.probe_sent = true;
    for _ in 0..5 {
        r.step(propose(1, b"0123456789")).unwrap();
    }
    assert!(
        appends_to(&read_messages(&mut r), 2).is_empty(),
        "a probing peer waits for an answer"
    );
    // ...and one answer in replicate state streams the rest within the window.
    r.step(Message {
        term: 1,
        index: 1,
        ..msg(2, 1, MessageType::HeartbeatResponse)
    })
    .unwrap();
    let msgs = read_messages(&mut r);
    assert_eq!(appends_to(&msgs, 2).len(), 1, "probe state: one message");
    let m = appends_to(&msgs, 2)[0].clone();
    r.step(accept(&m)).unwrap();
    let msgs = read_messages(&mut r);
    let appends = appends_to(&msgs, 2);
    assert!(
        appends.len() >= 2,
        "replicate state fills the window: {}",
        appends.len()
    );
    let covered: usize = appends.iter().map(|m| m.entries.len()).sum::<usize>() + m.entries.len();
    assert_eq!(covered, 5);
}

#[test]
fn unreachable_peer_goes_back_to_probing() {
    let mut r = leader(256, 1024);
    r.prs.get_mut(2).unwrap().become_replicate();
    r.step(propose(1, b"x")).unwrap();
    read_messages(&mut r);
    r.report_unreachable(2);
    let pr = r.prs.get(2).unwrap();
    assert_eq!(pr.state, ProgressState::Probe);
    assert_eq!(pr.next_idx, pr.matched + 1);
}
