mod common;

use std::path::{Path, PathBuf};

use common::{Node, entries, persist, ready, region};
use tinykv_raft::{HardState, Ready, Snapshot, Storage, StorageError as RaftError};
use tinykv_storage::{
    IdAllocState, PeerState, PeerStorage, Region, SnapshotApplyStatus, SnapshotChunks,
    SnapshotDescriptor, SnapshotReceiver, StorageError, StoreIdent,
};

const RANGE: (&[u8], &[u8]) = (b"b", b"y");

type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

/// A node holding region 1 [b, y) with data applied up to index 8 (term 6).
fn source(dir: &Path) -> (Node, PeerStorage) {
    let r = region(1, RANGE.0, RANGE.1);
    let node = Node::bootstrap(dir, 1, &r);
    let mut ps = node.peer(1);
    persist(
        &node.engines,
        &mut ps,
        &ready(
            entries(6..=8, 6),
            Some(HardState {
                term: 6,
                vote: 1,
                commit: 8,
            }),
        ),
    );
    let mut ab = node.engines.apply_batch();
    for i in 0..300u32 {
        let key = format!("k{i:04}");
        ab.put(&r, key.as_bytes(), &[i as u8; 100]).unwrap();
    }
    ab.put(&r, b"b", b"first").unwrap();
    ab.put(&r, b"x\xff\xff", b"last").unwrap();
    ab.set_id_alloc(IdAllocState { next_id: 40 });
    ab.set_store_started(1);
    ab.set_store_started(2);
    let mut state = *ps.apply_state();
    state.applied_index = 8;
    ab.set_apply_state(1, state);
    ps.post_apply(&node.engines.commit_apply(ab).unwrap())
        .unwrap();
    (node, ps)
}

/// Asks the peer for a snapshot the way Raft does, waiting for the worker by queueing a second
/// generation behind the first (the worker is FIFO).
/// Returns once every build asked of the snapshot worker so far is done: it takes its tasks in
/// order, so once a build asked now is done, so are those before it.
fn wait_for_builds(node: &Node) {
    node.workers
        .handles()
        .snapshot
        .generate(1)
        .unwrap()
        .recv()
        .unwrap()
        .unwrap();
}

fn request_snapshot(node: &Node, ps: &PeerStorage) -> Snapshot {
    assert!(matches!(
        ps.snapshot(8),
        Err(RaftError::SnapshotTemporarilyUnavailable)
    ));
    wait_for_builds(node);
    ps.snapshot(8).unwrap()
}

/// Streams the snapshot file from `from` to `to`'s snapshot dir in small chunks.
fn transfer(snap: &Snapshot, from: &Node, to: &Node) -> PathBuf {
    let desc = SnapshotDescriptor::decode(&snap.data).unwrap();
    let path = from.engines.snap_dir().join(&desc.file_name);
    let mut rx = SnapshotReceiver::create(to.engines.snap_dir(), &desc).unwrap();
    let mut chunks = 0;
    for chunk in SnapshotChunks::open(&path, 4096).unwrap() {
        rx.write_chunk(&chunk.unwrap()).unwrap();
        chunks += 1;
    }
    assert!(chunks > 1);
    rx.finish().unwrap()
}

fn snapshot_ready(snap: &Snapshot) -> Ready {
    Ready {
        snapshot: Some(snap.clone()),
        hard_state: Some(HardState {
            term: 6,
            vote: 0,
            commit: snap.metadata.index,
        }),
        must_sync: true,
        ..Ready::default()
    }
}

fn data(node: &Node) -> Vec<(Vec<u8>, Vec<u8>)> {
    node.engines.scan(b"", b"", usize::MAX).unwrap()
}

fn in_range(pairs: &[(Vec<u8>, Vec<u8>)]) -> Vec<(Vec<u8>, Vec<u8>)> {
    pairs
        .iter()
        .filter(|(k, _)| k.as_slice() >= RANGE.0 && k.as_slice() < RANGE.1)
        .cloned()
        .collect()
}

fn check_applied(target: &Node, ps: &PeerStorage, want: &[(Vec<u8>, Vec<u8>)]) {
    assert_eq!(in_range(&data(target)), want);
    assert_eq!(ps.peer_state(), PeerState::Normal);
    assert_eq!(
        (ps.first_index().unwrap(), ps.last_index().unwrap()),
        (9, 8)
    );
    assert_eq!(ps.term(8).unwrap(), 6);
    assert_eq!(ps.initial_state().unwrap().conf_state.voters, vec![1, 2]);
    assert_eq!(ps.applied_index(), 8);
    let stored = target.engines.region_state(1).unwrap().unwrap();
    assert_eq!(stored.state, PeerState::Normal);
    assert_eq!(stored.region, region(1, RANGE.0, RANGE.1));
    assert!(
        target
            .engines
            .log_entries(1, 0, u64::MAX)
            .unwrap()
            .is_empty()
    );
}

#[test]
fn snapshot_round_trip_into_an_empty_store() {
    let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (a, a_ps) = source(a_dir.path());
    let snap = request_snapshot(&a, &a_ps);
    assert_eq!((snap.metadata.index, snap.metadata.term), (8, 6));
    assert_eq!(snap.metadata.conf_state.voters, vec![1, 2]);

    let b = Node::open(b_dir.path());
    b.engines
        .bootstrap_store(StoreIdent {
            cluster_id: common::CLUSTER,
            store_id: 2,
        })
        .unwrap();
    let mut ps = PeerStorage::new_uninitialized(b.engines.clone(), b.workers.handles(), 1).unwrap();
    // Without the file the snapshot cannot be staged.
    let mut wb = b.engines.raft_batch();
    assert!(ps.save_ready(&mut wb, &snapshot_ready(&snap)).is_err());
    drop(wb);
    transfer(&snap, &a, &b);
    persist(&b.engines, &mut ps, &snapshot_ready(&snap));
    assert!(ps.is_applying_snapshot());
    assert!(matches!(
        ps.wait_snapshot_apply(),
        SnapshotApplyStatus::Finished
    ));
    check_applied(&b, &ps, &in_range(&data(&a)));
    assert_eq!(data(&b).len(), 302);
    // Region 1's state machine includes the cluster's records: a replica filled by snapshot
    // allocates ids where the others would.
    assert_eq!(
        b.engines.id_alloc().unwrap(),
        Some(IdAllocState { next_id: 40 })
    );
    assert_eq!(b.engines.started_stores().unwrap(), vec![1, 2]);
}

#[test]
fn snapshot_replaces_stale_data_and_keeps_keys_outside_the_range() {
    let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (a, a_ps) = source(a_dir.path());
    let snap = request_snapshot(&a, &a_ps);

    // B has a stale copy of region 1 (own data, a longer log) and neighbours on both sides.
    let b = Node::bootstrap(b_dir.path(), 2, &region(1, RANGE.0, RANGE.1));
    b.engines
        .bootstrap_region(&region(2, b"", RANGE.0))
        .unwrap();
    b.engines
        .bootstrap_region(&region(3, RANGE.1, b""))
        .unwrap();
    let mut ps = b.peer(1);
    persist(
        &b.engines,
        &mut ps,
        &ready(
            entries(6..=12, 5),
            Some(HardState {
                term: 5,
                vote: 2,
                commit: 6,
            }),
        ),
    );
    let mut ab = b.engines.apply_batch();
    ab.put(&region(1, RANGE.0, RANGE.1), b"c-stale", b"old")
        .unwrap();
    ab.put(&region(1, RANGE.0, RANGE.1), b"k0001", b"old")
        .unwrap();
    ab.put(&region(2, b"", RANGE.0), b"a\xff\xff", b"left")
        .unwrap();
    ab.put(&region(3, RANGE.1, b""), b"y", b"right").unwrap();
    b.engines.commit_apply(ab).unwrap();

    transfer(&snap, &a, &b);
    persist(&b.engines, &mut ps, &snapshot_ready(&snap));
    assert!(matches!(
        ps.wait_snapshot_apply(),
        SnapshotApplyStatus::Finished
    ));
    check_applied(&b, &ps, &in_range(&data(&a)));
    assert_eq!(b.engines.get(b"c-stale").unwrap(), None);
    assert_eq!(b.engines.get(b"a\xff\xff").unwrap(), Some(b"left".to_vec()));
    assert_eq!(b.engines.get(b"y").unwrap(), Some(b"right".to_vec()));
    assert_eq!(ps.initial_state().unwrap().hard_state.vote, 0);
}

/// Stages a snapshot on a fresh node B and "crashes" before the data apply starts.
fn stage_and_crash(a_dir: &Path, b_dir: &Path) -> (Pairs, PathBuf) {
    let (a, a_ps) = source(a_dir);
    let snap = request_snapshot(&a, &a_ps);
    let b = Node::bootstrap(b_dir, 2, &region(2, b"", RANGE.0));
    let mut ab = b.engines.apply_batch();
    ab.put(&region(2, b"", RANGE.0), b"a", b"left").unwrap();
    b.engines.commit_apply(ab).unwrap();
    let file = transfer(&snap, &a, &b);
    let ps = PeerStorage::new_uninitialized(b.engines.clone(), b.workers.handles(), 1).unwrap();
    let mut wb = b.engines.raft_batch();
    ps.save_ready(&mut wb, &snapshot_ready(&snap)).unwrap();
    b.engines.commit(wb).unwrap();
    // No post_persist: the process dies with the region staged as Applying.
    assert_eq!(
        b.engines.region_state(1).unwrap().unwrap().state,
        PeerState::Applying
    );
    (in_range(&data(&a)), file)
}

#[test]
fn restart_mid_apply_completes_from_the_file() {
    let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (want, _) = stage_and_crash(a_dir.path(), b_dir.path());
    let b = Node::open(b_dir.path());
    assert_eq!(b.report.completed, vec![1]);
    assert!(b.report.needs_snapshot.is_empty());
    let ps = b.peer(1);
    check_applied(&b, &ps, &want);
    assert_eq!(b.engines.get(b"a").unwrap(), Some(b"left".to_vec()));
}

#[test]
fn restart_mid_apply_without_the_file_resets_the_region() {
    let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (_, file) = stage_and_crash(a_dir.path(), b_dir.path());
    std::fs::remove_file(&file).unwrap();
    let b = Node::open(b_dir.path());
    assert_eq!(b.report.needs_snapshot, vec![1]);
    assert!(in_range(&data(&b)).is_empty());
    assert_eq!(b.engines.get(b"a").unwrap(), Some(b"left".to_vec()));
    let ps = b.peer(1);
    assert!(!ps.is_initialized());
    assert_eq!(ps.peer_state(), PeerState::Applying);
    assert_eq!(
        (ps.first_index().unwrap(), ps.last_index().unwrap()),
        (1, 0)
    );
    let state = ps.initial_state().unwrap();
    assert!(state.conf_state.voters.is_empty());
    assert_eq!(
        state.hard_state,
        HardState {
            term: 6,
            vote: 0,
            commit: 0
        }
    );
    drop(ps);
    drop(b);
    // Reopening again reports the same and changes nothing.
    let b = Node::open(b_dir.path());
    assert_eq!(b.report.needs_snapshot, vec![1]);
}

#[test]
fn a_corrupted_chunk_fails_the_checksum_and_leaves_no_file() {
    let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (a, a_ps) = source(a_dir.path());
    let snap = request_snapshot(&a, &a_ps);
    let desc = SnapshotDescriptor::decode(&snap.data).unwrap();
    let src = a.engines.snap_dir().join(&desc.file_name);
    let dest = b_dir.path();
    let listing = || std::fs::read_dir(dest).unwrap().count();

    let mut rx = SnapshotReceiver::create(dest, &desc).unwrap();
    for (i, chunk) in SnapshotChunks::open(&src, 1000).unwrap().enumerate() {
        let mut chunk = chunk.unwrap();
        if i == 3 {
            chunk[17] ^= 1;
        }
        rx.write_chunk(&chunk).unwrap();
    }
    assert!(matches!(
        rx.finish(),
        Err(StorageError::SnapshotChecksumMismatch { .. })
    ));
    assert_eq!(listing(), 0);

    // Too many bytes: refused at the chunk that overflows, partial file removed.
    let mut rx = SnapshotReceiver::create(dest, &desc).unwrap();
    for chunk in SnapshotChunks::open(&src, 1000).unwrap() {
        rx.write_chunk(&chunk.unwrap()).unwrap();
    }
    assert!(matches!(
        rx.write_chunk(b"x"),
        Err(StorageError::SnapshotSizeMismatch { .. })
    ));
    assert_eq!(listing(), 0);
    assert!(rx.finish().is_err());

    // A stream that breaks off leaves nothing behind either.
    let mut rx = SnapshotReceiver::create(dest, &desc).unwrap();
    rx.write_chunk(&std::fs::read(&src).unwrap()[..100])
        .unwrap();
    assert_eq!(listing(), 1);
    drop(rx);
    assert_eq!(listing(), 0);

    // The whole file in one chunk goes through and verifies on its own.
    let mut rx = SnapshotReceiver::create(dest, &desc).unwrap();
    rx.write_chunk(&std::fs::read(&src).unwrap()).unwrap();
    let path = rx.finish().unwrap();
    let file = tinykv_storage::inspect_snapshot_file(&path).unwrap();
    assert_eq!(
        (file.size, file.checksum, file.index),
        (desc.size, desc.checksum, 8)
    );
}

#[test]
fn descriptor_decoding_refuses_garbage() {
    assert!(SnapshotDescriptor::decode(b"\xff\xff\xff").is_err());
    let desc = SnapshotDescriptor {
        region: Region {
            id: 4,
            ..Region::default()
        },
        ..SnapshotDescriptor::default()
    };
    assert_eq!(SnapshotDescriptor::decode(&desc.encode()).unwrap(), desc);
}

/// A build that finished is no longer "generating" even before Raft takes it: otherwise a
/// region whose follower caught up another way would refuse splits until the next snapshot.
#[test]
fn a_finished_build_that_nobody_took_is_not_in_progress() {
    let dir = tempfile::tempdir().unwrap();
    let (node, ps) = source(dir.path());
    assert!(!ps.is_generating_snapshot());
    assert!(matches!(
        ps.snapshot(8),
        Err(RaftError::SnapshotTemporarilyUnavailable)
    ));
    wait_for_builds(&node);
    assert!(!ps.is_generating_snapshot());
    // The finished build is still what the next request gets.
    let snap = ps.snapshot(8).unwrap();
    assert_eq!(snap.metadata.index, 8);
    assert!(!ps.is_generating_snapshot());
}
