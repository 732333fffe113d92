//! Appends/s of Raft readies persisted through `PeerStorage` with group commit (one peer, one
//! fsync per ready), next to raw fjall batch commits of the same keys and bytes with `SyncAll`,
//! measured in the same run on the same disk.
//!
//! `cargo run -p tinykv-storage --release --example append_bench [-- --seconds-per-case 2]`

use std::time::{Duration, Instant};

use bytes::Bytes;
use fjall::{Database, KeyspaceCreateOptions, PersistMode};
use tinykv_raft::{Entry, HardState, Ready};
use tinykv_storage::{
    Engines, OpenOptions, Peer, PeerStorage, RaftLocalState, Record, Region, RegionEpoch,
    StorageWorkers, StoreIdent, keys,
};

const PAYLOAD: usize = 100;
const ROUNDS: usize = 4;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut budget = Duration::from_secs(2);
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--seconds-per-case") {
        let secs: f64 = args
            .get(i + 1)
            .ok_or("--seconds-per-case needs a value")?
            .parse()?;
        budget = Duration::from_secs_f64(secs);
    }
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path();
    let (engines, _) = Engines::open(dir.join("node"), OpenOptions::default())?;
    let workers = StorageWorkers::start(&engines)?;
    engines.bootstrap_store(StoreIdent {
        cluster_id: 1,
        store_id: 1,
    })?;
    let raw_db = Database::builder(dir.join("raw")).open()?;
    let raw = raw_db.keyspace("raft", KeyspaceCreateOptions::default)?;

    println!("ready entries | tinykv appends/s | raw fjall appends/s | ratio | fsyncs/s (tinykv)");
    for (case, &per_ready) in [1u64, 16, 256].iter().enumerate() {
        let region_id = case as u64 + 1;
        engines.bootstrap_region(&Region {
            id: region_id,
            start_key: vec![b'a' + case as u8],
            end_key: vec![b'a' + case as u8 + 1],
            epoch: RegionEpoch {
                conf_ver: 1,
                version: 1,
            },
            peers: vec![Peer::voter(1, 1)],
        })?;
        let mut ps = PeerStorage::open(engines.clone(), workers.handles(), region_id)?;
        let mut next_raw = 1u64;
        let (mut ours, mut theirs) = (Tally::default(), Tally::default());
        // Alternate the two in rounds so drift in the disk's speed hits both alike.
        for _ in 0..ROUNDS {
            let slice = budget / ROUNDS as u32;
            let start = Instant::now();
            while start.elapsed() < slice {
                let first = ps.raft_state().last_index + 1;
                let ready = make_ready(first, per_ready);
                let mut wb = engines.raft_batch();
                ps.save_ready(&mut wb, &ready)?;
                let mut persisted = engines.commit(wb)?;
                ps.post_persist(&mut persisted)?;
                ours.add(per_ready);
            }
            ours.elapsed += start.elapsed();

            let start = Instant::now();
            while start.elapsed() < slice {
                let ready = make_ready(next_raw, per_ready);
                let mut batch = raw_db.batch().durability(Some(PersistMode::SyncAll));
                for e in &ready.entries {
                    batch.insert(&raw, keys::raft_log_key(region_id, e.index), e.encode());
                }
                let state = RaftLocalState {
                    hard_state: ready.hard_state.unwrap_or_default(),
                    last_index: next_raw + per_ready - 1,
                    last_term: 6,
                };
                batch.insert(&raw, keys::raft_state_key(region_id), state.encode());
                batch.commit()?;
                next_raw += per_ready;
                theirs.add(per_ready);
            }
            theirs.elapsed += start.elapsed();
        }
        println!(
            "{per_ready:>13} | {:>16.0} | {:>19.0} | {:>4.0}% | {:>8.0}",
            ours.rate(),
            theirs.rate(),
            100.0 * ours.rate() / theirs.rate(),
            ours.commits as f64 / ours.elapsed.as_secs_f64()
        );
    }
    workers.shutdown();
    drop(engines);
    drop(raw);
    drop(raw_db);
    Ok(())
}

#[derive(Default)]
struct Tally {
    entries: u64,
    commits: u64,
    elapsed: Duration,
}

impl Tally {
    fn add(&mut self, entries: u64) {
        self.entries += entries;
        self.commits += 1;
    }

    fn rate(&self) -> f64 {
        self.entries as f64 / self.elapsed.as_secs_f64()
    }
}

fn make_ready(first: u64, count: u64) -> Ready {
    let entries: Vec<Entry> = (first..first + count)
        .map(|index| Entry {
            index,
            term: 6,
            data: Bytes::from(vec![b'v'; PAYLOAD]),
            ..Entry::default()
        })
        .collect();
    let last = first + count - 1;
    Ready {
        entries,
        hard_state: Some(HardState {
            term: 6,
            vote: 1,
            commit: last,
        }),
        must_sync: true,
        ..Ready::default()
    }
}
