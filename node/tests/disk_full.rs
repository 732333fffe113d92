//! Disk full, on real tmpfs mounts under real fjall stores: below `storage.reserve-space` client
//! writes are refused with `DiskFull` while reads, log compaction and replication go on, and
//! writes resume once the filesystem grows; a real ENOSPC in the fsynced commit stops the store
//! with an error that says so, and a restart on the same data dir, once space is back, finds
//! every acknowledged write. Mounting needs root: without it each test says so and returns.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use bytes::Bytes;
use common::{TestCluster, free_port, init_logs};
use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};
use tinykv_client::{Client, ClientError};
use tinykv_node::config::{ByteSize, ConfigError, Member};
use tinykv_node::{Node, NodeError};
use tinykv_proto::api::{AdminRequest, AdminResponse, KvError, ReadMode};
use tokio::time::Instant;

/// Incompressible values, so the bytes written are the bytes that fill the disk.
const VALUE_LEN: usize = 16 * 1024;
/// More writes than any of these filesystems can take, so a loop that never fills one fails.
const MAX_WRITES: usize = 4000;

/// A tmpfs of a given size on a fresh directory, unmounted when dropped (lazily if a file on it
/// is still open, as after a panic that dropped nodes abruptly).
struct Tmpfs {
    path: PathBuf,
    _holder: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(mib: u64) -> Result<Tmpfs, String> {
        let holder = tempfile::Builder::new()
            .prefix("tinykv-disk-full-")
            .tempdir()
            .map_err(|e| format!("temp dir: {e}"))?;
        let path = holder.path().join("mnt");
        std::fs::create_dir(&path).map_err(|e| format!("mount point: {e}"))?;
        run(Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(&path))?;
        Ok(Tmpfs {
            path,
            _holder: holder,
        })
    }

    fn path(&self) -> &Path {
        &self.path
    }

    fn resize(&self, mib: u64) {
        run(Command::new("mount")
            .args(["-o", &format!("remount,size={mib}m")])
            .arg(&self.path))
        .unwrap_or_else(|e| panic!("cannot grow {}: {e}", self.path.display()));
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        if run(Command::new("umount").arg(&self.path)).is_err() {
            let _ = run(Command::new("umount").arg("-l").arg(&self.path));
        }
    }
}

fn run(cmd: &mut Command) -> Result<(), String> {
    let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{cmd:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// `n` tmpfs mounts, or `None` (after saying why) where this machine does not allow mounting.
fn mounts(n: usize, mib: u64) -> Option<Vec<Tmpfs>> {
    let mut out = Vec::new();
    for _ in 0..n {
        match Tmpfs::mount(mib) {
            Ok(m) => out.push(m),
            Err(e) => {
                println!("disk_full: skipped, cannot mount a tmpfs here (needs root): {e}");
                return None;
            }
        }
    }
    Some(out)
}

fn key(i: usize) -> Bytes {
    Bytes::from(format!("k{i:06}"))
}

fn value(rng: &mut StdRng) -> Bytes {
    let mut v = vec![0u8; VALUE_LEN];
    rng.fill_bytes(&mut v);
    Bytes::from(v)
}

/// Every acknowledged write reads back with its value, and nothing else is under the prefix.
async fn check_acked(client: &Client, acked: &[(Bytes, Bytes)]) {
    for (k, v) in acked {
        let got = client.get(k.clone()).await.expect("get");
        assert_eq!(
            got.as_ref(),
            Some(v),
            "acknowledged key {k:?} lost or changed"
        );
    }
    let rows = client
        .scan("k", "l", u32::MAX, ReadMode::Linearizable)
        .await
        .expect("scan");
    assert!(
        rows.len() >= acked.len(),
        "scan found {} keys, {} were acknowledged",
        rows.len(),
        acked.len()
    );
}

/// Retries a put only while it is refused as `DiskFull`: the guard looks at the filesystem on
/// its tick, so the refusal ends within one check interval of the space coming back.
async fn put_once_space_returns(client: &Client, k: Bytes, v: Bytes) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match client.put(k.clone(), v.clone()).await {
            Ok(()) => return,
            Err(ClientError::Kv(KvError::DiskFull { .. })) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("write after the disk grew: {e}"),
        }
    }
}

async fn truncated_index(node: &Node) -> u64 {
    match node.admin(AdminRequest::RaftState { region_id: 1 }).await {
        Ok(AdminResponse::RaftState(s)) => s.state.truncated_index,
        other => panic!("raft state: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_are_refused_below_the_reserve_and_resume_when_space_returns() {
    init_logs();
    let Some(disks) = mounts(3, 32) else {
        return;
    };
    let reserve = ByteSize::mib(24);
    let cluster = TestCluster::start_with(3, |c| {
        c.data_dir = disks[(c.store_id - 1) as usize].path().join("data");
        c.storage.reserve_space = reserve;
    })
    .await;
    let client = cluster.client().await;
    cluster.leader(1).await;
    let mut rng = StdRng::seed_from_u64(0xd15c_f011);

    let mut acked = Vec::new();
    let mut next = 0;
    let mut unknown = 0;
    let (store_id, available, reported) = loop {
        assert!(
            next < MAX_WRITES,
            "{MAX_WRITES} writes of {VALUE_LEN} bytes were accepted on a 32MiB disk"
        );
        let (k, v) = (key(next), value(&mut rng));
        next += 1;
        match client.put(k.clone(), v.clone()).await {
            Ok(()) => acked.push((k, v)),
            Err(ClientError::Kv(KvError::DiskFull {
                store_id,
                available,
                reserve,
            })) => break (store_id, available, reserve),
            // A leader change on a loaded machine: the write may or may not have happened, so
            // it is neither counted nor read back.
            Err(
                e @ (ClientError::Kv(KvError::StaleCommand | KvError::Timeout)
                | ClientError::Ambiguous { .. }),
            ) if unknown < 10 => {
                unknown += 1;
                println!("write {} has an unknown outcome: {e}", next - 1);
            }
            Err(e) => panic!("write {} failed other than DiskFull: {e}", next - 1),
        }
    };
    let leader = cluster.leader(1).await;
    assert!(
        (1..=3).contains(&store_id),
        "refused by unknown store {store_id}"
    );
    assert_eq!(reported, reserve.0);
    assert!(
        available < reserve.0,
        "{available} is not below the reserve"
    );
    assert!(
        acked.len() * VALUE_LEN >= 2 << 20,
        "refused after only {} writes: the reserve tripped before the disk filled",
        acked.len()
    );
    println!(
        "store {store_id} refused after {} writes ({} MiB of values), {available} bytes available",
        acked.len(),
        (acked.len() * VALUE_LEN) >> 20
    );

    // Refused at once, deletes too, without proposing anything.
    let started = Instant::now();
    match client.put(key(next), value(&mut rng)).await {
        Err(ClientError::Kv(KvError::DiskFull { .. })) => {}
        other => panic!("a write below the reserve: {other:?}"),
    }
    match client.delete(acked[0].0.clone()).await {
        Err(ClientError::Kv(KvError::DiskFull { .. })) => {}
        other => panic!("a delete below the reserve: {other:?}"),
    }
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "refusals took {:?}",
        started.elapsed()
    );

    // Reads go on, and so does compaction, which needs the followers (whose disks are as full)
    // to append and commit its entry.
    check_acked(&client, &acked).await;
    let before = truncated_index(cluster.node(leader)).await;
    match cluster
        .node(leader)
        .admin(AdminRequest::CompactLog { region_id: 1 })
        .await
    {
        Ok(AdminResponse::Done) => {}
        other => panic!("compact log below the reserve: {other:?}"),
    }
    let after = truncated_index(cluster.node(leader)).await;
    assert!(
        after > before,
        "compaction did not apply: truncated {before} -> {after}"
    );

    for disk in &disks {
        disk.resize(64);
    }
    put_once_space_returns(&client, key(next), acked[0].1.clone()).await;
    acked.push((key(next), acked[0].1.clone()));
    for i in next + 1..next + 21 {
        let (k, v) = (key(i), value(&mut rng));
        client.put(k.clone(), v.clone()).await.expect("write");
        acked.push((k, v));
    }
    check_acked(&client, &acked).await;
    for node in cluster.nodes.iter().flatten() {
        assert!(node.failure().is_none(), "no store may stop in this test");
    }
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enospc_in_the_commit_stops_the_store_and_a_restart_recovers_every_acked_write() {
    init_logs();
    let Some(disks) = mounts(1, 16) else {
        return;
    };
    let disk = &disks[0];
    let mut cluster = TestCluster::start_with(1, |c| {
        c.data_dir = disk.path().join("data");
        c.storage.reserve_space = ByteSize(0);
    })
    .await;
    let client = cluster.client().await;
    cluster.leader(1).await;
    let mut rng = StdRng::seed_from_u64(0xe405_5bc0);

    let mut acked = Vec::new();
    let write_error = loop {
        assert!(
            acked.len() < MAX_WRITES,
            "{MAX_WRITES} writes of {VALUE_LEN} bytes were accepted on a 16MiB disk"
        );
        let (k, v) = (key(acked.len()), value(&mut rng));
        match client.put(k.clone(), v.clone()).await {
            Ok(()) => acked.push((k, v)),
            Err(e) => break e,
        }
    };
    println!(
        "the write after {} acknowledged ones failed: {write_error}",
        acked.len()
    );

    let node = cluster.node(1);
    let failure = tokio::time::timeout(Duration::from_secs(10), node.stopped())
        .await
        .expect("the store reports that it stopped");
    let message = failure.to_string();
    println!("{message}");
    match &failure {
        NodeError::StoreStopped {
            store_id,
            out_of_space,
            ..
        } => {
            assert_eq!(*store_id, 1);
            assert!(*out_of_space, "not recognised as a full disk: {message}");
        }
        other => panic!("expected StoreStopped, got {other:?}"),
    }
    assert!(
        message.contains("stopped to keep its data intact")
            && message.contains(&disk.path().join("data").display().to_string()),
        "{message}"
    );
    assert!(node.failure().is_some());
    match client.put(key(acked.len()), value(&mut rng)).await {
        Err(_) => {}
        Ok(()) => panic!("a stopped store acknowledged a write"),
    }

    // Reopening while the disk is still full must not call the data dir corrupt (fjall cuts a
    // torn journal tail) and must not panic; whether it can serve is the disk's business.
    let config = cluster.configs[0].clone();
    if let Some(node) = cluster.nodes[0].take() {
        node.shutdown().await;
    }
    match Node::start(config).await {
        Ok(node) => node.shutdown().await,
        Err(e @ NodeError::Storage { .. }) => {
            let text = e.to_string();
            assert!(
                !text.contains("corrupt") && !text.contains("not a tinykv data dir"),
                "a full disk was reported as corruption: {text}"
            );
            println!("reopen on the full disk refused: {text}");
        }
        Err(e) => panic!("reopen on the full disk: {e}"),
    }

    disk.resize(64);
    cluster.restart(1).await;
    let client = cluster.client().await;
    check_acked(&client, &acked).await;
    for _ in 0..20 {
        let (k, v) = (key(acked.len()), value(&mut rng));
        client
            .put(k.clone(), v.clone())
            .await
            .expect("write after restart");
        acked.push((k, v));
    }
    check_acked(&client, &acked).await;
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reserve_the_disk_cannot_hold_is_refused_at_start() {
    init_logs();
    let Some(disks) = mounts(1, 16) else {
        return;
    };
    let cluster = TestCluster::start(0).await;
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()));
    let mut config = cluster.node_config(1, addr, vec![Member { store_id: 1, addr }]);
    config.data_dir = disks[0].path().join("data");
    // The default reserve, 64MiB, on a 16MiB filesystem.
    match Node::start(config).await {
        Err(NodeError::Config(ConfigError::Invalid { key, message })) => {
            assert_eq!(key, "storage.reserve-space");
            println!("{message}");
        }
        Err(e) => panic!("refused for another reason: {e}"),
        Ok(node) => {
            node.shutdown().await;
            panic!("started with a reserve larger than its disk");
        }
    }
    assert!(
        !disks[0].path().join("data").exists(),
        "nothing may be written before the check"
    );
}
