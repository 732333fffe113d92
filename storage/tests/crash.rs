//! Crash test: a child process (this test binary, re-executed with an env var) persists readies
//! and applies entries in a loop, printing what each synced batch committed; the parent kills
//! it with SIGKILL at seeded random points, reopens the store and checks it.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{Node, persist, ready, region};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tinykv_raft::{Entry, HardState, Storage, StorageError as RaftError};
use tinykv_storage::{RAFT_INIT_LOG_INDEX, StoreIdent};

const CHILD_DIR: &str = "TINYKV_CRASH_CHILD_DIR";
const CHILD_SEED: &str = "TINYKV_CRASH_CHILD_SEED";
/// What the parent knows is committed: the commit index is not durable with every batch, and a
/// restarted peer learns it again from its leader (here, the parent).
const CHILD_COMMIT: &str = "TINYKV_CRASH_CHILD_COMMIT";
const KILL_POINTS: usize = 60;
const SEED: u64 = 0x7e57_c0de;

/// Every third entry (and so every third user value) is larger than the 1 KiB from which
/// values live in blob files, so both layouts go through the kills.
fn data(index: u64, term: u64) -> Bytes {
    let mut s = format!("{index}:{term}");
    if index.is_multiple_of(3) {
        s.push_str(&".".repeat(1500));
    }
    Bytes::from(s)
}

fn user_key(index: u64) -> Vec<u8> {
    format!("k{index:08}").into_bytes()
}

/// One ready as the child writes it: `count` entries from `first` at `term`, then `commit`.
#[derive(Clone, Copy, Debug)]
struct Batch {
    first: u64,
    count: u64,
    term: u64,
    commit: u64,
}

impl Batch {
    fn line(&self, tag: char) -> String {
        format!(
            "{tag} {} {} {} {}",
            self.first, self.count, self.term, self.commit
        )
    }

    fn parse(rest: &str) -> Batch {
        let v: Vec<u64> = rest.split(' ').map(|s| s.parse().unwrap()).collect();
        Batch {
            first: v[0],
            count: v[1],
            term: v[2],
            commit: v[3],
        }
    }
}

#[test]
fn kill_nine_at_random_points_loses_nothing_committed() {
    if let Ok(dir) = std::env::var(CHILD_DIR) {
        let seed = std::env::var(CHILD_SEED).unwrap().parse().unwrap();
        let commit = std::env::var(CHILD_COMMIT).unwrap().parse().unwrap();
        run_child(Path::new(&dir), seed, commit);
    }
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let mut rng = StdRng::seed_from_u64(SEED);
    let mut model = Model::default();
    let mut max_applied = 0;
    for round in 0..KILL_POINTS {
        let lines_before_kill = rng.random_range(1..40);
        let jitter = Duration::from_micros(rng.random_range(0..1500));
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "kill_nine_at_random_points_loses_nothing_committed",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_DIR, dir.path())
            .env(CHILD_SEED, (SEED + round as u64).to_string())
            .env(CHILD_COMMIT, model.commit.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut seen = 0;
        let mut line = String::new();
        let mut pending: Option<Batch> = None;
        // Read up to the kill point, then kill, then drain what the child printed before dying.
        let mut killed = false;
        loop {
            line.clear();
            if out.read_line(&mut line).unwrap() == 0 {
                break;
            }
            if !line.ends_with('\n') {
                continue; // torn by the kill: not a report
            }
            let text = line.trim_end();
            match text.split_once(' ') {
                Some(("P", rest)) => pending = Some(Batch::parse(rest)),
                Some(("C", rest)) => {
                    model.commit_batch(Batch::parse(rest));
                    pending = None;
                }
                Some(("A", rest)) => model.reported_applied = rest.parse().unwrap(),
                _ => continue,
            }
            seen += 1;
            if seen == lines_before_kill && !killed {
                std::thread::sleep(jitter);
                child.kill().unwrap();
                killed = true;
            }
        }
        let status = child.wait().unwrap();
        assert!(killed, "child exited on its own: {status:?}");
        let applied = model.check_store(dir.path(), pending);
        max_applied = max_applied.max(applied);
    }
    assert!(
        max_applied > 50,
        "the workload made too little progress: applied {max_applied}"
    );
    eprintln!(
        "{KILL_POINTS} kill points in {:?}, applied up to {max_applied}",
        started.elapsed()
    );
}

/// What the parent knows the child made durable.
#[derive(Default)]
struct Model {
    /// Term of every log index the child reported, committed prefix included forever.
    log: BTreeMap<u64, u64>,
    last_index: u64,
    commit: u64,
    reported_applied: u64,
}

impl Model {
    fn commit_batch(&mut self, b: Batch) {
        self.log.split_off(&b.first);
        for i in b.first..b.first + b.count {
            self.log.insert(i, b.term);
        }
        if b.count > 0 {
            self.last_index = b.first + b.count - 1;
        }
        self.commit = b.commit;
    }

    /// Checks the reopened store against the reports; adopts it as the new model. Returns the
    /// stored applied index.
    fn check_store(&mut self, dir: &Path, pending: Option<Batch>) -> u64 {
        let node = Node::open(dir);
        let Some(raft) = node.engines.raft_state(1).unwrap() else {
            assert_eq!(
                self.last_index, 0,
                "a reported batch vanished with the whole region"
            );
            return 0;
        };
        let apply = node.engines.apply_state(1).unwrap().unwrap();
        let ps = node.peer(1);
        let last = raft.last_index;
        let truncated = apply.truncated_state;

        // The stored log is either everything reported, or that plus the one batch in flight.
        let mut with_pending = Model {
            log: self.log.clone(),
            ..*self
        };
        let candidates: Vec<&Model> = match pending {
            Some(b) => {
                with_pending.commit_batch(b);
                vec![&*self, &with_pending]
            }
            None => vec![&*self],
        };
        let stored: Vec<Entry> = if last > truncated.index {
            ps.entries(truncated.index + 1, last + 1, None).unwrap()
        } else {
            Vec::new()
        };
        let matches = |m: &Model| {
            (m.last_index == last || (m.last_index == 0 && last == RAFT_INIT_LOG_INDEX))
                && (raft.hard_state.commit <= m.commit || m.last_index == 0)
                && stored.iter().all(|e| m.log.get(&e.index) == Some(&e.term))
        };
        assert!(
            candidates.iter().any(|m| matches(m)),
            "stored log (last {last}, commit {}) matches neither the reported state nor the pending batch",
            raft.hard_state.commit
        );
        for e in &stored {
            assert_eq!(e.data, data(e.index, e.term), "entry {} damaged", e.index);
        }
        // last_term agrees with the log, and nothing past last_index is part of it.
        let last_term = if last == truncated.index {
            truncated.term
        } else {
            stored.last().unwrap().term
        };
        assert_eq!(raft.last_term, last_term);
        assert!(
            node.engines
                .log_entries(1, last + 1, u64::MAX)
                .unwrap()
                .is_empty()
        );
        assert!(matches!(
            ps.entries(last + 1, last + 2, None),
            Err(RaftError::Unavailable)
        ));
        assert!(matches!(ps.term(last + 1), Err(RaftError::Unavailable)));

        // Applied never passes commit, never goes back, and the data is exactly the applied prefix.
        let applied = apply.applied_index;
        assert!(
            applied <= raft.hard_state.commit,
            "applied {applied} > commit {}",
            raft.hard_state.commit
        );
        assert!(
            applied >= self.reported_applied,
            "applied {applied} < reported {}",
            self.reported_applied
        );
        let kv = node.engines.scan(b"", b"", usize::MAX).unwrap();
        assert_eq!(kv.len() as u64, applied.saturating_sub(RAFT_INIT_LOG_INDEX));
        let matched = candidates.iter().find(|m| matches(m)).unwrap();
        let (terms, commit) = (matched.log.clone(), matched.commit);
        for (key, value) in kv {
            let index: u64 = std::str::from_utf8(&key[1..]).unwrap().parse().unwrap();
            assert!(index <= applied);
            assert_eq!(
                value,
                data(index, terms[&index]).to_vec(),
                "applied entry {index}"
            );
        }

        // Adopt what is on disk as the starting point of the next round.
        self.log = terms;
        self.log.split_off(&(last + 1));
        self.last_index = if self.log.is_empty() { 0 } else { last };
        self.commit = commit.max(raft.hard_state.commit);
        self.reported_applied = applied;
        applied
    }
}

/// The child: never returns; the parent kills it.
fn run_child(dir: &Path, seed: u64, leader_commit: u64) -> ! {
    let node = Node::open(dir);
    if node.engines.store_ident().unwrap().is_none() {
        node.engines
            .bootstrap_store(StoreIdent {
                cluster_id: common::CLUSTER,
                store_id: 1,
            })
            .unwrap();
    }
    if node.engines.region_state(1).unwrap().is_none() {
        node.engines.bootstrap_region(&region(1, b"", b"")).unwrap();
    }
    let r = region(1, b"", b"");
    let mut ps = node.peer(1);
    let mut rng = StdRng::seed_from_u64(seed);
    let mut batches = 0u64;
    let mut known_commit = leader_commit;
    loop {
        let hs = ps.raft_state().hard_state;
        known_commit = known_commit.max(hs.commit);
        let last = ps.last_index().unwrap();
        let (first, term) = if last > known_commit && rng.random_bool(0.2) {
            (rng.random_range(known_commit + 1..=last), hs.term + 1)
        } else {
            (last + 1, hs.term.max(6))
        };
        let count = rng.random_range(1..=16);
        let new_last = first + count - 1;
        let commit = rng.random_range(known_commit..=new_last);
        let batch = Batch {
            first,
            count,
            term,
            commit,
        };
        let ents: Vec<Entry> = (first..=new_last)
            .map(|i| Entry {
                index: i,
                term,
                data: data(i, term),
                ..Entry::default()
            })
            .collect();
        println!("{}", batch.line('P'));
        persist(
            &node.engines,
            &mut ps,
            &ready(
                ents,
                Some(HardState {
                    term,
                    vote: 1,
                    commit,
                }),
            ),
        );
        println!("{}", batch.line('C'));

        let applied = ps.applied_index();
        if commit > applied {
            let mut ab = node.engines.apply_batch();
            for e in ps.entries(applied + 1, commit + 1, None).unwrap() {
                ab.put(&r, &user_key(e.index), &e.data).unwrap();
            }
            let mut state = *ps.apply_state();
            state.applied_index = commit;
            batches += 1;
            if batches.is_multiple_of(4) && commit > 8 {
                let index = commit - 3;
                state.compact_to(index, ps.term(index).unwrap());
            }
            ab.set_apply_state(1, state);
            let done = node.engines.commit_apply(ab).unwrap();
            ps.post_apply(&done).unwrap();
            println!("A {commit}");
        }
    }
}
