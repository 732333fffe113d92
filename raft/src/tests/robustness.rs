//! Messages with arbitrary content, from known and unknown peers, must never panic a node nor
//! break the log's own invariants. Deterministic: the inputs come from a seeded generator.

use bytes::Bytes;

use super::harness::config;
use crate::rng::SplitMix64;
use crate::{
    Entry, EntryType, MemStorage, Message, MessageType, RawNode, Snapshot, SnapshotMetadata,
    Storage,
};

const TYPES: [MessageType; 13] = [
    MessageType::Append,
    MessageType::AppendResponse,
    MessageType::RequestVote,
    MessageType::RequestVoteResponse,
    MessageType::RequestPreVote,
    MessageType::RequestPreVoteResponse,
    MessageType::Snapshot,
    MessageType::Heartbeat,
    MessageType::HeartbeatResponse,
    MessageType::TransferLeader,
    MessageType::TimeoutNow,
    MessageType::ReadIndex,
    MessageType::ReadIndexResponse,
];

fn pick(rng: &mut SplitMix64, choices: &[u64]) -> u64 {
    choices[rng.gen_range(0, choices.len())]
}

fn random_message(rng: &mut SplitMix64, term: u64, last: u64) -> Message {
    let numbers = [
        0,
        1,
        2,
        last.saturating_sub(1),
        last,
        last.saturating_add(1),
        last.saturating_add(5),
        u64::MAX - 1,
        u64::MAX,
    ];
    let terms = [
        0,
        term.saturating_sub(1),
        term,
        term.saturating_add(1),
        u64::MAX,
    ];
    let from = pick(rng, &[1, 2, 3, 9]);
    let mut m = Message::new(TYPES[rng.gen_range(0, TYPES.len())], from, 1);
    m.term = pick(rng, &terms);
    m.index = pick(rng, &numbers);
    m.log_term = pick(rng, &terms);
    m.commit = pick(rng, &numbers);
    m.reject = rng.gen_range(0, 2) == 1;
    m.reject_hint = pick(rng, &numbers);
    if rng.gen_range(0, 3) == 0 {
        m.context = Bytes::from_static(b"ctx");
    }
    let n = rng.gen_range(0, 4);
    let contiguous = rng.gen_range(0, 4) != 0;
    for i in 0..n {
        let index = if contiguous {
            m.index.wrapping_add(i as u64 + 1)
        } else {
            pick(rng, &numbers)
        };
        let entry_type = if rng.gen_range(0, 4) == 0 {
            EntryType::ConfChange
        } else {
            EntryType::Normal
        };
        let data = if rng.gen_range(0, 2) == 0 {
            Bytes::new()
        } else {
            Bytes::from_static(b"\x01garbage")
        };
        m.entries.push(Entry {
            entry_type,
            term: pick(rng, &terms),
            index,
            data,
        });
    }
    if m.msg_type == MessageType::Snapshot && rng.gen_range(0, 4) != 0 {
        let voters = if rng.gen_range(0, 2) == 0 {
            vec![1, 2, 3]
        } else {
            vec![2, 7]
        };
        m.snapshot = Some(Snapshot {
            data: Bytes::new(),
            metadata: SnapshotMetadata {
                conf_state: crate::ConfState {
                    voters,
                    learners: vec![],
                },
                index: pick(rng, &numbers),
                term: pick(rng, &terms),
            },
        });
    }
    m
}

fn drive(node: &mut RawNode<MemStorage>) {
    if !node.has_ready() {
        return;
    }
    let rd = node.ready();
    let store = node.mut_store();
    if let Some(snap) = &rd.snapshot {
        store.apply_snapshot(snap.clone()).unwrap();
    }
    store.append(&rd.entries).unwrap();
    if let Some(hs) = rd.hard_state {
        store.set_hard_state(hs);
    }
    node.advance(rd);
}

#[test]
fn arbitrary_messages_never_panic_or_break_log_invariants() {
    for seed in 0..40u64 {
        let mut rng = SplitMix64::new(seed);
        let mut cfg = config(1, &[1, 2, 3], 5, 1);
        cfg.check_quorum = seed % 2 == 0;
        cfg.pre_vote = seed % 3 == 0;
        cfg.max_inflight_msgs = 4;
        let mut node = RawNode::new(&cfg, MemStorage::new()).unwrap();
        for step in 0..400 {
            match rng.gen_range(0, 10) {
                0 => node.tick(),
                1 => {
                    let _ = node.campaign();
                }
                2 => {
                    let _ = node.propose(Bytes::from_static(b"p"));
                }
                3 => node.read_index(Bytes::from_static(b"r")),
                _ => {
                    let r = node.raft();
                    let m = random_message(&mut rng, r.term(), r.last_index());
                    let _ = node.step(m);
                }
            }
            drive(&mut node);
            let r = node.raft();
            assert!(r.applied() <= r.committed(), "seed {seed} step {step}");
            assert!(r.committed() <= r.last_index(), "seed {seed} step {step}");
            assert_eq!(
                node.store().last_index().unwrap(),
                r.last_index(),
                "seed {seed} step {step}"
            );
        }
    }
}
