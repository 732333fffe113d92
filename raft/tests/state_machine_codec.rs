//! The simulation's state machine travels in snapshot data, so its codec must round-trip and
//! must refuse (not panic on) bytes it did not write.

#[allow(dead_code)]
#[path = "sim/rng.rs"]
mod rng;
#[allow(dead_code)]
#[path = "sim/state_machine.rs"]
mod state_machine;

use bytes::Bytes;
use state_machine::{StateMachine, chain_step, proposal_data, proposal_id};
use tinykv_raft::{ConfState, Entry, EntryType};

fn sample() -> StateMachine {
    let mut sm = StateMachine::bootstrapped(1, vec![1, 2, 3]);
    sm.apply(&Entry {
        index: 2,
        term: 2,
        ..Entry::default()
    });
    sm.apply(&Entry {
        index: 3,
        term: 2,
        data: proposal_data(7),
        ..Entry::default()
    });
    sm.conf_state = ConfState {
        voters: vec![1, 2, 3],
        learners: vec![5],
    };
    sm
}

#[test]
fn encode_then_decode_is_identity() {
    let sm = sample();
    assert_eq!(sm.applied, 3);
    assert_eq!(sm.proposal_ids, vec![7]);
    assert_eq!(StateMachine::decode(&sm.encode()), Some(sm));
}

#[test]
fn foreign_bytes_are_refused() {
    let bytes = sample().encode();
    assert_eq!(
        StateMachine::decode(&bytes[..bytes.len() - 8]),
        None,
        "truncated"
    );
    assert_eq!(
        StateMachine::decode(&bytes[..bytes.len() - 3]),
        None,
        "ragged"
    );
    let mut trailing = bytes.to_vec();
    trailing.extend_from_slice(&[0; 8]);
    assert_eq!(StateMachine::decode(&trailing), None, "trailing");
    let mut huge = bytes.to_vec();
    huge[16..24].copy_from_slice(&u64::MAX.to_be_bytes());
    assert_eq!(StateMachine::decode(&huge), None, "absurd length");
    assert_eq!(StateMachine::decode(&[]), None, "empty");
}

#[test]
fn the_chain_tells_entries_apart() {
    let base = Entry {
        index: 4,
        term: 3,
        data: Bytes::from_static(b"abc"),
        ..Entry::default()
    };
    let h = chain_step(1, &base);
    let variants = [
        Entry {
            index: 5,
            ..base.clone()
        },
        Entry {
            term: 4,
            ..base.clone()
        },
        Entry {
            entry_type: EntryType::ConfChange,
            ..base.clone()
        },
        Entry {
            data: Bytes::from_static(b"abd"),
            ..base.clone()
        },
        Entry {
            data: Bytes::from_static(b"abc\0"),
            ..base.clone()
        },
    ];
    for v in &variants {
        assert_ne!(chain_step(1, v), h, "{v:?}");
    }
    assert_ne!(chain_step(2, &base), h);
    assert_eq!(chain_step(1, &base), h);
}

#[test]
fn only_eight_byte_normal_entries_are_proposals() {
    assert_eq!(
        proposal_id(&Entry {
            data: proposal_data(42),
            ..Entry::default()
        }),
        Some(42)
    );
    assert_eq!(proposal_id(&Entry::default()), None);
    let cc = Entry {
        entry_type: EntryType::ConfChange,
        data: proposal_data(42),
        ..Entry::default()
    };
    assert_eq!(proposal_id(&cc), None);
}
