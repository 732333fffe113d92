//! Backup and restore of a real multi-process cluster: `backup save` while writers run and a
//! region splits, `backup status`, a damaged file refused, and `backup restore` into a new
//! playground whose every key is what the writers' history allows at the backup's point in
//! time.

mod support;

use std::collections::BTreeMap;
use std::fs::File;
use std::io::BufReader;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use support::{Guard, free_base_port, tinykv};
use tinykv_client::backup_file::{BackupReader, Block};
use tinykv_client::{Client, ClientConfig};
use tinykv_proto::api::ReadMode;
use tinykv_transport::TlsFiles;

const HOT_KEYS: usize = 600;
const WRITERS: usize = 4;

/// How many keys, and bytes of each first value: small for CI; `TINYKV_BACKUP_KEYS=1000000
/// TINYKV_BACKUP_VALUE_BYTES=1000` backs up and restores a GiB.
fn sizes() -> (usize, usize) {
    let env = |name: &str, default: usize| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    (
        env("TINYKV_BACKUP_KEYS", 6_000).max(HOT_KEYS * 4),
        env("TINYKV_BACKUP_VALUE_BYTES", 150),
    )
}

fn key(i: usize) -> Bytes {
    Bytes::from(format!("k/{i:05}"))
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as u64
}

/// One write of a key: when it was sent, and when it was acknowledged (`None`: it failed,
/// and may or may not have taken effect).
#[derive(Clone, Debug)]
struct Write {
    value: Bytes,
    invoked: u64,
    acked: Option<u64>,
}

fn up(dir: &Path) -> ClientConfig {
    let base = free_base_port(3);
    let dir_s = dir.to_str().expect("utf-8");
    tinykv(&[
        "cluster",
        "up",
        "--dir",
        dir_s,
        "--base-port",
        &base.to_string(),
        "--detach",
    ])
    .ok();
    client_config(dir, base)
}

fn client_config(dir: &Path, base: u16) -> ClientConfig {
    let certs = dir.join("certs");
    ClientConfig {
        endpoints: (0..3)
            .map(|i| std::net::SocketAddr::from(([127, 0, 0, 1], base + i)))
            .collect(),
        tls: TlsFiles {
            ca: certs.join("ca.pem"),
            cert: certs.join("client.pem"),
            key: certs.join("client-key.pem"),
        },
        timeout: Duration::from_secs(10),
    }
}

/// Every pair of a backup file, checked end to end by the reader.
fn backup_pairs(file: &Path) -> BTreeMap<Bytes, Bytes> {
    let mut reader = BackupReader::open(BufReader::new(File::open(file).expect("open backup")))
        .expect("a backup header");
    let mut out = BTreeMap::new();
    while let Some(block) = reader.next_block().expect("a sound backup") {
        if let Block::Pairs(pairs) = block {
            out.extend(pairs);
        }
    }
    out
}

#[test]
fn a_backup_under_writes_restores_every_key_as_of_its_point_in_time() {
    let (keys, value_bytes) = sizes();
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("src");
    let _src_guard = Guard::new(&src);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let config = up(&src);
    let client = rt.block_on(Client::connect(config)).expect("connect");

    // Every key written once before the backup, then split into a few regions.
    let mut history: BTreeMap<Bytes, Vec<Write>> = BTreeMap::new();
    rt.block_on(async {
        let mut tasks = Vec::new();
        for w in 0..16 {
            let client = client.clone();
            tasks.push(tokio::spawn(async move {
                let mut done = Vec::new();
                for i in (w..keys).step_by(16) {
                    let value = Bytes::from(format!("first-{i}-{}", "v".repeat(value_bytes)));
                    client
                        .put(key(i), value.clone())
                        .await
                        .expect("preload put");
                    done.push((key(i), value));
                }
                done
            }));
        }
        for t in tasks {
            for (k, value) in t.await.expect("preload task") {
                history.insert(
                    k,
                    vec![Write {
                        value,
                        invoked: 0,
                        acked: Some(0),
                    }],
                );
            }
        }
        for at in [key(keys / 4), key(keys / 2)] {
            split_at(&client, at).await.expect("split");
        }
    });

    // Writers overwrite the hot keys, one writer per key, each write after the last ended.
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let client = client.clone();
            let stop = stop.clone();
            rt.spawn(async move {
                let mut writes: Vec<(Bytes, Write)> = Vec::new();
                let mut seq = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    for i in (w..HOT_KEYS).step_by(WRITERS) {
                        seq += 1;
                        let value = Bytes::from(format!("w{w}-{seq}"));
                        let invoked = now_ms();
                        let acked = client
                            .put(key(i), value.clone())
                            .await
                            .ok()
                            .map(|_| now_ms());
                        writes.push((
                            key(i),
                            Write {
                                value,
                                invoked,
                                acked,
                            },
                        ));
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                    }
                }
                writes
            })
        })
        .collect();

    // Let the writers get going, then back up while they run and while a region splits.
    rt.block_on(async {
        while client
            .get_with(key(0), ReadMode::Stale)
            .await
            .ok()
            .flatten()
            .is_some_and(|v| v.starts_with(b"first-"))
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    let env = src.join("env");
    let file = tmp.path().join("cluster.tkvbak");
    let file_s = file.to_str().expect("utf-8");
    let splitter = {
        let client = client.clone();
        rt.spawn(async move { split_at(&client, key(keys * 3 / 4)).await })
    };
    let saved = tinykv_with_env(&env, &["backup", "save", file_s, "-o", "json"]).json();
    rt.block_on(splitter)
        .expect("split task")
        .expect("split during the backup");
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        for (k, write) in rt.block_on(w).expect("writer") {
            history.get_mut(&k).expect("a preloaded key").push(write);
        }
    }
    let (started, opened) = (
        saved["started_ms"].as_u64().expect("started_ms"),
        saved["opened_ms"].as_u64().expect("opened_ms"),
    );
    assert_eq!(saved["keys"], keys as u64, "{saved}");
    assert!(saved["regions"].as_u64().expect("regions") >= 3, "{saved}");
    let overwritten = history.values().filter(|w| w.len() > 1).count();
    assert_eq!(
        overwritten, HOT_KEYS,
        "every hot key was written during the test"
    );

    // Each key holds a value the history allows at some moment between the backup's start and
    // the moment its views were all open (ms clocks of one machine: a millisecond either way).
    let pairs = backup_pairs(&file);
    assert_eq!(pairs.len(), keys);
    let (t0, t1) = (started.saturating_sub(1), opened + 1);
    let mut during = 0;
    for (k, writes) in &history {
        let got = pairs
            .get(k)
            .unwrap_or_else(|| panic!("{k:?} missing from the backup"));
        let j = writes
            .iter()
            .position(|w| w.value == got)
            .unwrap_or_else(|| panic!("{k:?} = {got:?} was never written"));
        let w = &writes[j];
        assert!(
            w.invoked <= t1,
            "{k:?} = {got:?} was written at {} ms, after the backup's point in time [{t0}, {t1}]",
            w.invoked
        );
        // A later write acknowledged before the window, and sent after this one was acknowledged,
        // had certainly replaced it.
        if let Some(acked) = w.acked
            && let Some(later) = writes[j + 1..]
                .iter()
                .find(|l| l.invoked >= acked && l.acked.is_some_and(|a| a < t0))
        {
            panic!(
                "{k:?} = {got:?} is stale: {:?} replaced it, acknowledged at {:?} ms, before the \
                 backup's window [{t0}, {t1}]",
                later.value, later.acked
            );
        }
        if j > 0 {
            during += 1;
        }
    }
    assert!(
        during > 0,
        "no key of the backup holds a value written during the test"
    );

    // `backup status` checks it and describes it.
    let status = tinykv(&["backup", "status", file_s, "-o", "json"])
        .ok()
        .json();
    assert_eq!(status["verified"], true);
    assert_eq!(status["keys"], keys as u64);
    assert_eq!(status["cluster_id"], saved["cluster_id"]);

    // A damaged or truncated copy is refused, and a refused restore leaves nothing behind.
    let bytes = std::fs::read(&file).expect("read backup");
    let damaged = tmp.path().join("damaged.tkvbak");
    let mut flipped = bytes.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0x01;
    std::fs::write(&damaged, &flipped).expect("write damaged copy");
    let damaged_s = damaged.to_str().expect("utf-8");
    let refused = tinykv(&["backup", "status", damaged_s]);
    assert_eq!(refused.code, 1, "{}", refused.stderr);
    assert!(
        refused.stderr.contains("damaged in the block at byte"),
        "{}",
        refused.stderr
    );
    let cut = tmp.path().join("cut.tkvbak");
    std::fs::write(&cut, &bytes[..bytes.len() - 100]).expect("write truncated copy");
    let refused = tinykv(&["backup", "status", cut.to_str().expect("utf-8")]);
    assert_eq!(refused.code, 1, "{}", refused.stderr);
    assert!(refused.stderr.contains("truncated"), "{}", refused.stderr);
    let nowhere = tmp.path().join("never");
    let refused = tinykv(&[
        "backup",
        "restore",
        damaged_s,
        "--dir",
        nowhere.to_str().expect("utf-8"),
        "--base-port",
        &free_base_port(3).to_string(),
    ]);
    assert_eq!(refused.code, 1, "{}", refused.stderr);
    assert!(
        !nowhere.exists(),
        "a refused restore left {nowhere:?} behind"
    );

    // Restored into a new cluster: every key as the backup holds it, and writable.
    tinykv(&["cluster", "down", "--dir", src.to_str().expect("utf-8")]).ok();
    let dst = tmp.path().join("dst");
    let _dst_guard = Guard::new(&dst);
    let base = free_base_port(3);
    let restored = tinykv(&[
        "backup",
        "restore",
        file_s,
        "--dir",
        dst.to_str().expect("utf-8"),
        "--base-port",
        &base.to_string(),
        "-o",
        "json",
    ])
    .ok()
    .json();
    assert_eq!(restored["keys"], keys as u64);
    println!(
        "backup: {} keys, {} bytes of data, {} regions, {:.1} MiB/s; restore into 3 stores: \
         {:.1} MiB/s",
        saved["keys"],
        saved["data_bytes"],
        saved["regions"],
        saved["mib_per_sec"],
        restored["mib_per_sec"]
    );
    let dst_s = dst.to_str().expect("utf-8");
    tinykv(&["cluster", "up", "--dir", dst_s, "--detach"]).ok();
    let client = rt
        .block_on(Client::connect(client_config(&dst, base)))
        .expect("connect to the restored cluster");
    assert!(
        read_all(&rt, &client) == pairs,
        "the restored cluster differs from the backup"
    );
    rt.block_on(client.put(key(1), "after restore"))
        .expect("write");
    drop(client);
    tinykv(&["cluster", "down", "--dir", dst_s]).ok();

    // One store's data dir at a time, as on real machines: the same founders and token on
    // each, then the nodes start on them.
    let members: Vec<String> = (1..=3u16)
        .map(|i| format!("{i}=127.0.0.1:{}", base + i - 1))
        .collect();
    let members = members.join(",");
    for store in 1..=3 {
        let data = dst.join(format!("node{store}/data"));
        std::fs::remove_dir_all(&data).expect("remove a data dir");
        tinykv(&[
            "backup",
            "restore",
            file_s,
            "--data-dir",
            data.to_str().expect("utf-8"),
            "--store-id",
            &store.to_string(),
            "--initial-cluster",
            &members,
            "--initial-cluster-token",
            "tinykv-playground",
        ])
        .ok();
    }
    tinykv(&["cluster", "up", "--dir", dst_s, "--detach"]).ok();
    let client = rt
        .block_on(Client::connect(client_config(&dst, base)))
        .expect("connect to the cluster restored store by store");
    assert!(
        read_all(&rt, &client) == pairs,
        "the cluster restored store by store differs from the backup"
    );
    tinykv(&["cluster", "down", "--dir", dst_s]).ok();
}

/// Every pair of the cluster, read in pages (a region's pairs may not fit one answer).
fn read_all(rt: &tokio::runtime::Runtime, client: &Client) -> BTreeMap<Bytes, Bytes> {
    let mut all = BTreeMap::new();
    let mut from = Bytes::new();
    loop {
        let page = rt
            .block_on(client.scan(from.clone(), "", 2_000, ReadMode::Linearizable))
            .expect("scan the restored cluster");
        let Some((last, _)) = page.last() else {
            return all;
        };
        let mut next = last.to_vec();
        next.push(0);
        from = Bytes::from(next);
        all.extend(page);
    }
}

/// Splits the region holding `at` there, unless a region starts there already (a large
/// load splits by size on its own).
async fn split_at(client: &Client, at: Bytes) -> Result<(), tinykv_client::ClientError> {
    let regions = client.regions().await?;
    let Some(region) = regions.iter().find(|r| r.region.contains(&at)) else {
        panic!("no region holds {at:?}");
    };
    if region.region.start_key == at {
        return Ok(());
    }
    client
        .split_region(region.region.id, vec![at])
        .await
        .map(|_| ())
}

/// `tinykv ARGS` with the client settings of a playground's `env` file.
fn tinykv_with_env(env: &Path, args: &[&str]) -> support::Run {
    let text = std::fs::read_to_string(env).expect("DIR/env");
    let get = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("export {name}=")))
            .unwrap_or_else(|| panic!("{name} missing from env"))
            .to_string()
    };
    let (e, ca, cert, key) = (
        get("TINYKV_ENDPOINTS"),
        get("TINYKV_CA"),
        get("TINYKV_CERT"),
        get("TINYKV_KEY"),
    );
    let mut all = vec![
        "-e",
        &e,
        "--ca",
        &ca,
        "--cert",
        &cert,
        "--key",
        &key,
        "--timeout",
        "10s",
    ];
    all.extend_from_slice(args);
    tinykv(&all).ok()
}
