//! A synchronous in-memory network of Raft nodes for tests: messages are delivered in order
//! until none are left, with per-link drops, cut links, isolated nodes, ignored message kinds
//! and black-hole peers that swallow everything.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

use bytes::Bytes;

use crate::raft::Raft;
use crate::rng::SplitMix64;
use crate::{ConfState, Config, Entry, HardState, MemStorage, Message, MessageType, StateRole};

pub(crate) type TestRaft = Raft<MemStorage>;

/// A test config with paper-style elections: no pre-vote, no check quorum.
pub(crate) fn config(id: u64, peers: &[u64], election: usize, heartbeat: usize) -> Config {
    Config {
        id,
        peers: peers.to_vec(),
        election_tick: election,
        heartbeat_tick: heartbeat,
        check_quorum: false,
        pre_vote: false,
        seed: id,
        ..Config::default()
    }
}

pub(crate) fn new_raft(
    id: u64,
    peers: &[u64],
    election: usize,
    heartbeat: usize,
    store: MemStorage,
) -> TestRaft {
    Raft::new(&config(id, peers, election, heartbeat), store).unwrap()
}

pub(crate) fn new_raft_with(cfg: &Config, store: MemStorage) -> TestRaft {
    Raft::new(cfg, store).unwrap()
}

pub(crate) fn msg(from: u64, to: u64, msg_type: MessageType) -> Message {
    Message::new(msg_type, from, to)
}

pub(crate) fn hup(id: u64) -> Message {
    msg(id, id, MessageType::Hup)
}

pub(crate) fn propose(id: u64, data: &'static [u8]) -> Message {
    Message {
        entries: vec![Entry {
            data: Bytes::from_static(data),
            ..Entry::default()
        }],
        ..msg(id, id, MessageType::Propose)
    }
}

pub(crate) fn beat(id: u64) -> Message {
    msg(id, id, MessageType::Beat)
}

pub(crate) fn ent(index: u64, term: u64) -> Entry {
    Entry {
        index,
        term,
        ..Entry::default()
    }
}

pub(crate) fn data_ent(index: u64, term: u64, data: &'static [u8]) -> Entry {
    Entry {
        index,
        term,
        data: Bytes::from_static(data),
        ..Entry::default()
    }
}

/// Entries 1.. with the given terms.
pub(crate) fn ents_with_terms(terms: &[u64]) -> Vec<Entry> {
    terms
        .iter()
        .enumerate()
        .map(|(i, &t)| ent(i as u64 + 1, t))
        .collect()
}

/// Storage holding `terms` as its log and `hs` as hard state.
pub(crate) fn storage_with(terms: &[u64], hs: HardState) -> MemStorage {
    let mut s = MemStorage::new();
    s.append(&ents_with_terms(terms)).unwrap();
    s.set_hard_state(hs);
    s
}

/// A raft whose log has entries of `terms` and whose term is the last of them.
pub(crate) fn raft_with_log(id: u64, peers: &[u64], terms: &[u64]) -> TestRaft {
    let term = terms.last().copied().unwrap_or(0);
    let store = storage_with(
        terms,
        HardState {
            term,
            vote: 0,
            commit: 0,
        },
    );
    let mut r = new_raft(id, peers, 10, 1, store);
    r.become_follower(term, 0);
    r
}

/// A raft at `term` that voted for `vote`, with an empty log.
pub(crate) fn raft_voted(id: u64, peers: &[u64], vote: u64, term: u64) -> TestRaft {
    let store = storage_with(
        &[],
        HardState {
            term,
            vote,
            commit: 0,
        },
    );
    new_raft(id, peers, 10, 1, store)
}

pub(crate) fn read_messages(r: &mut TestRaft) -> Vec<Message> {
    r.flush_broadcast();
    std::mem::take(&mut r.msgs)
}

/// Does what a driver does with entries and snapshots: persists them and marks them stable.
pub(crate) fn persist(r: &mut TestRaft) {
    if let Some(snap) = r.raft_log.pending_snapshot().cloned() {
        let index = snap.metadata.index;
        r.raft_log.store.apply_snapshot(snap).unwrap();
        r.raft_log.stable_snap_to(index);
        r.raft_log.applied_to(index);
    }
    let ents = r.raft_log.unstable_entries().to_vec();
    if let Some(last) = ents.last() {
        r.raft_log.store.append(&ents).unwrap();
        r.raft_log.stable_to(last.index, last.term);
    }
    let hs = r.hard_state();
    r.raft_log.store.set_hard_state(hs);
}

/// Persists, then returns the committed entries not yet applied and marks them applied.
pub(crate) fn next_ents(r: &mut TestRaft) -> Vec<Entry> {
    persist(r);
    let ents = r.raft_log.next_entries(None).unwrap();
    let committed = r.raft_log.committed;
    r.raft_log.applied_to(committed);
    ents
}

/// Every entry in the log (stable and unstable).
pub(crate) fn all_entries(r: &TestRaft) -> Vec<Entry> {
    let first = r.raft_log.first_index().unwrap();
    r.raft_log
        .slice(first, r.raft_log.last_index() + 1, None)
        .unwrap()
}

/// (index, term) of every entry, for comparing logs across nodes.
pub(crate) fn log_shape(r: &TestRaft) -> (u64, Vec<(u64, u64)>) {
    (
        r.raft_log.committed,
        all_entries(r).iter().map(|e| (e.index, e.term)).collect(),
    )
}

pub(crate) enum Peer {
    /// A fresh node with the network's membership.
    New,
    Node(Box<TestRaft>),
    /// Swallows every message.
    BlackHole,
}

pub(crate) fn node(r: TestRaft) -> Peer {
    Peer::Node(Box::new(r))
}

enum Slot {
    Node(Box<TestRaft>),
    BlackHole,
}

pub(crate) struct Network {
    peers: BTreeMap<u64, Slot>,
    drop_prob: HashMap<(u64, u64), f64>,
    ignored: HashSet<MessageType>,
    rng: SplitMix64,
    /// Every message delivered, for tests that count round trips.
    pub(crate) delivered: Vec<Message>,
}

impl Network {
    pub(crate) fn new(peers: Vec<Peer>) -> Network {
        Network::with_config(peers, |_| {})
    }

    /// Peers get ids 1..=n; fresh ones use `config` adjusted by `tweak`.
    pub(crate) fn with_config(peers: Vec<Peer>, tweak: impl Fn(&mut Config)) -> Network {
        let ids: Vec<u64> = (1..=peers.len() as u64).collect();
        let mut slots = BTreeMap::new();
        for (id, p) in ids.iter().copied().zip(peers) {
            let slot = match p {
                Peer::New => {
                    let mut cfg = config(id, &ids, 10, 1);
                    tweak(&mut cfg);
                    Slot::Node(Box::new(new_raft_with(&cfg, MemStorage::new())))
                }
                Peer::Node(mut r) => {
                    r.id = id;
                    if r.prs.progress.is_empty() || !r.prs.contains(id) {
                        let next = r.raft_log.last_index() + 1;
                        r.prs.clear();
                        for &pid in &ids {
                            r.prs
                                .insert(pid, crate::progress::Progress::new(next, 256, false));
                        }
                    }
                    Slot::Node(r)
                }
                Peer::BlackHole => Slot::BlackHole,
            };
            slots.insert(id, slot);
        }
        Network {
            peers: slots,
            drop_prob: HashMap::new(),
            ignored: HashSet::new(),
            rng: SplitMix64::new(42),
            delivered: Vec::new(),
        }
    }

    pub(crate) fn peer(&self, id: u64) -> &TestRaft {
        match self.peers.get(&id) {
            Some(Slot::Node(r)) => r,
            _ => panic!("peer {id} is not a raft node"),
        }
    }

    pub(crate) fn peer_mut(&mut self, id: u64) -> &mut TestRaft {
        match self.peers.get_mut(&id) {
            Some(Slot::Node(r)) => r,
            _ => panic!("peer {id} is not a raft node"),
        }
    }

    pub(crate) fn set_peer(&mut self, id: u64, r: TestRaft) {
        self.peers.insert(id, Slot::Node(Box::new(r)));
    }

    fn filter(&mut self, msgs: Vec<Message>) -> Vec<Message> {
        let mut out = Vec::new();
        for m in msgs {
            assert_ne!(m.msg_type, MessageType::Hup, "a node must never send Hup");
            if self.ignored.contains(&m.msg_type) {
                continue;
            }
            let p = self.drop_prob.get(&(m.from, m.to)).copied().unwrap_or(0.0);
            if p > 0.0 {
                let roll = (self.rng.next_u64() % 1_000_000) as f64 / 1_000_000.0;
                if roll < p {
                    continue;
                }
            }
            out.push(m);
        }
        out
    }

    /// Delivers `msgs` and everything they cause, until the network is quiet.
    pub(crate) fn send(&mut self, msgs: Vec<Message>) {
        let mut queue: VecDeque<Message> = msgs.into();
        while let Some(m) = queue.pop_front() {
            self.delivered.push(m.clone());
            let Some(Slot::Node(r)) = self.peers.get_mut(&m.to) else {
                continue;
            };
            let _ = r.step(m);
            let out = read_messages(r);
            let out = self.filter(out);
            queue.extend(out);
        }
    }

    /// Delivers `msgs` once, without delivering what they cause; returns the responses.
    pub(crate) fn deliver_once(&mut self, msgs: Vec<Message>) -> Vec<Message> {
        let mut out = Vec::new();
        for m in msgs {
            if let Some(Slot::Node(r)) = self.peers.get_mut(&m.to) {
                let _ = r.step(m);
                out.extend(read_messages(r));
            }
        }
        self.filter(out)
    }

    pub(crate) fn drop(&mut self, from: u64, to: u64, prob: f64) {
        self.drop_prob.insert((from, to), prob);
    }

    pub(crate) fn cut(&mut self, a: u64, b: u64) {
        self.drop(a, b, 1.0);
        self.drop(b, a, 1.0);
    }

    pub(crate) fn isolate(&mut self, id: u64) {
        let ids: Vec<u64> = self.peers.keys().copied().collect();
        for other in ids {
            if other != id {
                self.cut(id, other);
            }
        }
    }

    pub(crate) fn ignore(&mut self, t: MessageType) {
        self.ignored.insert(t);
    }

    pub(crate) fn recover(&mut self) {
        self.drop_prob.clear();
        self.ignored.clear();
    }

    /// Ticks node `id` once and delivers what it sends.
    pub(crate) fn tick(&mut self, id: u64) {
        let r = self.peer_mut(id);
        r.tick();
        let out = read_messages(r);
        let out = self.filter(out);
        self.send(out);
    }
}

pub(crate) fn assert_role(r: &TestRaft, role: StateRole, term: u64) {
    assert_eq!(
        (r.role, r.term),
        (role, term),
        "node {} role and term",
        r.id
    );
}

pub(crate) fn conf(voters: &[u64], learners: &[u64]) -> ConfState {
    ConfState {
        voters: voters.to_vec(),
        learners: learners.to_vec(),
    }
}

/// An append response accepting everything the append `m` carried.
pub(crate) fn accept(m: &Message) -> Message {
    Message {
        term: m.term,
        index: m.index + m.entries.len() as u64,
        ..msg(m.to, m.from, MessageType::AppendResponse)
    }
}
