//! The replicated state machine of the simulation: the sequence of applied entries.
//!
//! It keeps a hash chain over every applied entry (so two replicas agree on their whole history
//! by comparing one number), the ids of the client proposals it applied, and the membership as
//! of its applied index. It is persisted atomically with its applied index, and it is what a
//! snapshot's `data` carries.

use bytes::Bytes;
use tinykv_raft::{ConfState, Entry, EntryType};

use super::rng::mix64;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StateMachine {
    pub applied: u64,
    pub chain: u64,
    /// Client proposal ids in the order they were applied.
    pub proposal_ids: Vec<u64>,
    pub conf_state: ConfState,
}

/// The chain value every replica starts from; seeding it distinguishes "nothing applied" from
/// a zero hash.
const CHAIN_ORIGIN: u64 = 0x7469_6E79_6B76_2D73;

impl StateMachine {
    /// The state of a node that has never been part of the group: it waits for a snapshot.
    pub fn uninitialized() -> StateMachine {
        StateMachine {
            chain: CHAIN_ORIGIN,
            ..StateMachine::default()
        }
    }

    /// The state a bootstrapped member starts with, as if it had applied `index` entries that
    /// set up the group with `voters`.
    pub fn bootstrapped(index: u64, voters: Vec<u64>) -> StateMachine {
        let mut chain = CHAIN_ORIGIN;
        for v in &voters {
            chain = mix64(chain ^ v);
        }
        StateMachine {
            applied: index,
            chain,
            proposal_ids: Vec::new(),
            conf_state: ConfState {
                voters,
                learners: Vec::new(),
            },
        }
    }

    /// Applies `entry`; the caller has checked that it is the next one and has already
    /// updated `conf_state` for a conf change.
    pub fn apply(&mut self, entry: &Entry) {
        self.chain = chain_step(self.chain, entry);
        self.applied = entry.index;
        if let Some(id) = proposal_id(entry) {
            self.proposal_ids.push(id);
        }
    }

    pub fn encode(&self) -> Bytes {
        let words = 5
            + self.proposal_ids.len()
            + self.conf_state.voters.len()
            + self.conf_state.learners.len();
        let mut out = Vec::with_capacity(words * 8);
        let mut put = |v: u64| out.extend_from_slice(&v.to_be_bytes());
        put(self.applied);
        put(self.chain);
        for list in [
            &self.proposal_ids,
            &self.conf_state.voters,
            &self.conf_state.learners,
        ] {
            put(list.len() as u64);
            for &v in list {
                put(v);
            }
        }
        Bytes::from(out)
    }

    /// Reads what [`StateMachine::encode`] wrote; `None` when `data` is not such a record.
    pub fn decode(data: &[u8]) -> Option<StateMachine> {
        if !data.len().is_multiple_of(8) {
            return None;
        }
        let mut words = data.chunks_exact(8).map(|c| {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            u64::from_be_bytes(w)
        });
        let applied = words.next()?;
        let chain = words.next()?;
        let mut lists: [Vec<u64>; 3] = Default::default();
        for list in &mut lists {
            let len = words.next()?;
            if len > (data.len() / 8) as u64 {
                return None;
            }
            for _ in 0..len {
                list.push(words.next()?);
            }
        }
        if words.next().is_some() {
            return None;
        }
        let [proposal_ids, voters, learners] = lists;
        Some(StateMachine {
            applied,
            chain,
            proposal_ids,
            conf_state: ConfState { voters, learners },
        })
    }
}

/// The chain value after applying `entry` on top of `prev`. Everything that makes an entry
/// what it is goes in: position, term, kind and payload.
pub fn chain_step(prev: u64, entry: &Entry) -> u64 {
    let kind = match entry.entry_type {
        EntryType::Normal => 1,
        EntryType::ConfChange => 2,
    };
    let mut h = mix64(prev ^ entry.index);
    h = mix64(h ^ entry.term);
    h = mix64(h ^ kind ^ ((entry.data.len() as u64) << 8));
    for chunk in entry.data.chunks(8) {
        let mut w = [0u8; 8];
        w[..chunk.len()].copy_from_slice(chunk);
        h = mix64(h ^ u64::from_be_bytes(w));
    }
    h
}

/// The payload of client proposal `id`.
pub fn proposal_data(id: u64) -> Bytes {
    Bytes::copy_from_slice(&id.to_be_bytes())
}

/// The client proposal id an entry carries, if it is one (leader no-ops are empty).
pub fn proposal_id(entry: &Entry) -> Option<u64> {
    if entry.entry_type != EntryType::Normal || entry.data.len() != 8 {
        return None;
    }
    let mut w = [0u8; 8];
    w.copy_from_slice(&entry.data);
    Some(u64::from_be_bytes(w))
}
