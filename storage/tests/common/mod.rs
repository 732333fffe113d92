//! Helpers shared by the integration tests: a node's storage in a temp dir, entries and readies.
#![allow(dead_code)]

use std::path::Path;

use bytes::Bytes;
use tinykv_raft::{Entry, HardState, Ready};
use tinykv_storage::{
    Engines, OpenOptions, Peer, PeerStorage, RecoveryReport, Region, RegionEpoch, StorageWorkers,
    StoreIdent,
};

pub const CLUSTER: u64 = 7;

pub struct Node {
    pub engines: Engines,
    pub workers: StorageWorkers,
    pub report: RecoveryReport,
}

impl Node {
    pub fn open(dir: &Path) -> Node {
        let (engines, report) = Engines::open(
            dir,
            OpenOptions {
                expected_cluster_id: Some(CLUSTER),
            },
        )
        .unwrap();
        let workers = StorageWorkers::start(&engines).unwrap();
        Node {
            engines,
            workers,
            report,
        }
    }

    pub fn bootstrap(dir: &Path, store_id: u64, region: &Region) -> Node {
        let node = Node::open(dir);
        node.engines
            .bootstrap_store(StoreIdent {
                cluster_id: CLUSTER,
                store_id,
            })
            .unwrap();
        node.engines.bootstrap_region(region).unwrap();
        node
    }

    pub fn peer(&self, region_id: u64) -> PeerStorage {
        PeerStorage::open(self.engines.clone(), self.workers.handles(), region_id).unwrap()
    }
}

pub fn region(id: u64, start: &[u8], end: &[u8]) -> Region {
    Region {
        id,
        start_key: start.to_vec(),
        end_key: end.to_vec(),
        epoch: RegionEpoch {
            conf_ver: 1,
            version: 1,
        },
        peers: vec![Peer::voter(1, 1), Peer::voter(2, 2)],
    }
}

pub fn entry(index: u64, term: u64) -> Entry {
    Entry {
        index,
        term,
        data: Bytes::from(format!("e{index}t{term}")),
        ..Entry::default()
    }
}

pub fn entries(range: std::ops::RangeInclusive<u64>, term: u64) -> Vec<Entry> {
    range.map(|i| entry(i, term)).collect()
}

pub fn ready(ents: Vec<Entry>, hs: Option<HardState>) -> Ready {
    Ready {
        entries: ents,
        hard_state: hs,
        must_sync: true,
        ..Ready::default()
    }
}

/// Persists one ready of one peer through a group-commit batch.
pub fn persist(engines: &Engines, ps: &mut PeerStorage, ready: &Ready) {
    let mut wb = engines.raft_batch();
    ps.save_ready(&mut wb, ready).unwrap();
    let mut persisted = engines.commit(wb).unwrap();
    assert!(ps.post_persist(&mut persisted).unwrap());
}
