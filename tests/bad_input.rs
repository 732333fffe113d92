//! Bad input against real node processes: garbage on a node's UDP port, QUIC peers that speak
//! nonsense over authenticated streams, a certificate from a foreign CA, a data dir from another
//! cluster and config files with typos. Each must end in a clear error while the node keeps
//! serving, or in a refusal to start that names the problem.
//!
//! Truncated snapshot files are covered below the process level, where the damage can be placed
//! exactly: `storage/tests/snapshot.rs` (a restart mid-apply finishes from the file, or resets
//! the region for a new snapshot when the file is gone; a corrupted chunk fails its checksum and
//! leaves no file) and `transport/tests/snapshots.rs` (a truncated or overlong stream is refused
//! and leaves no file).

mod support;

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use support::{Guard, Run, free_base_port, is_alive, tinykv, wait_for};
use tinykv_proto::api::{self, ApiError, KvError, KvResult};
use tinykv_transport::frame::{self, FRAME_VERSION};
use tinykv_transport::quinn;
use tinykv_transport::tls::{self, ConnectionTuning};
use tinykv_transport::wire::{self, RpcReply, Service, StreamHead};
use tinykv_transport::{ClusterCa, Role, TlsFiles, TlsIdentity, Validity};

/// Generous: two shared cores also build and test other crates.
const CAP: Duration = Duration::from_secs(30);
const SEED: u64 = 0x6261_645f_696e;

/// A cluster started with `tinykv cluster up --detach`, stopped (kill -9) on drop.
struct Cluster {
    // Fields drop in order: the guard must read the pid files before the directory goes.
    _guard: Guard,
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    addrs: Vec<SocketAddr>,
    client: TlsFiles,
}

impl Cluster {
    fn up(nodes: u16) -> Cluster {
        let tmp = tempfile::tempdir().expect("temp dir");
        let dir = tmp.path().join("cluster");
        let guard = Guard::new(&dir);
        let base = free_base_port(nodes);
        tinykv(&[
            "cluster",
            "up",
            "--detach",
            "--nodes",
            &nodes.to_string(),
            "--dir",
            path_str(&dir),
            "--base-port",
            &base.to_string(),
        ])
        .ok();
        let certs = dir.join("certs");
        Cluster {
            _tmp: tmp,
            addrs: (0..nodes)
                .map(|i| SocketAddr::from(([127, 0, 0, 1], base + i)))
                .collect(),
            client: TlsFiles {
                ca: certs.join("ca.pem"),
                cert: certs.join("client.pem"),
                key: certs.join("client-key.pem"),
            },
            dir,
            _guard: guard,
        }
    }

    /// `tinykv` with this cluster's endpoints and client certificate.
    fn kv(&self, args: &[&str]) -> Run {
        let endpoints: Vec<String> = self.addrs.iter().map(ToString::to_string).collect();
        let endpoints = endpoints.join(",");
        let mut all = vec![
            "-e",
            &endpoints,
            "--ca",
            path_str(&self.client.ca),
            "--cert",
            path_str(&self.client.cert),
            "--key",
            path_str(&self.client.key),
            "--timeout",
            "5s",
        ];
        all.extend_from_slice(args);
        tinykv(&all)
    }

    /// A write and a read of it succeed, and every node process is still there.
    fn assert_serving(&self, after: &str) {
        let key = format!("after-{after}");
        self.kv(&["kv", "put", &key, after]).ok();
        assert_eq!(
            self.kv(&["kv", "get", &key, "-o", "json"]).ok().json(),
            json!({"key": key, "found": true, "value": after}),
            "after {after}"
        );
        for i in 1..=self.addrs.len() {
            let pid = std::fs::read_to_string(self.dir.join(format!("node{i}/pid")))
                .expect("pid file")
                .trim()
                .parse()
                .expect("pid");
            assert!(is_alive(pid), "node {i} died after {after}");
        }
    }

    fn log(&self, node: usize) -> String {
        std::fs::read_to_string(self.dir.join(format!("node{node}/node.log"))).unwrap_or_default()
    }

    /// Waits until one line of node `node`'s log holds every one of `words` (logs are written
    /// as events happen, from other processes).
    fn wait_log(&self, node: usize, words: &[&str]) {
        wait_for(&format!("node {node} to log {words:?}"), CAP, || {
            self.log(node)
                .lines()
                .any(|line| words.iter().all(|w| line.contains(w)))
                .then_some(())
        });
    }
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("temp paths are UTF-8")
}

/// A raw QUIC connection to `addr` with `identity`, outside tinykv's own client.
async fn connect(
    identity: &TlsIdentity,
    addr: SocketAddr,
) -> (
    quinn::Endpoint,
    Result<quinn::Connection, quinn::ConnectionError>,
) {
    let config = tls::client_config(identity, &ConnectionTuning::default()).expect("TLS config");
    let mut endpoint =
        quinn::Endpoint::client(SocketAddr::from(([127, 0, 0, 1], 0))).expect("client socket");
    endpoint.set_default_client_config(config);
    let conn = endpoint
        .connect(addr, "127.0.0.1")
        .expect("connect parameters")
        .await;
    (endpoint, conn)
}

/// Writes `bytes` on a new bidirectional stream (finishing it when `finish`) and returns the
/// reset code the node answers with.
async fn bi_garbage(conn: &quinn::Connection, bytes: &[u8], finish: bool) -> u64 {
    let (mut send, mut recv) = conn.open_bi().await.expect("open stream");
    send.write_all(bytes).await.expect("write");
    if finish {
        send.finish().expect("finish");
    }
    match recv.read_to_end(1 << 20).await {
        Err(quinn::ReadToEndError::Read(quinn::ReadError::Reset(code))) => code.into_inner(),
        other => panic!("expected the node to reset the stream, got {other:?}"),
    }
}

/// Opens a unidirectional stream, writes `bytes` and returns the code the node stops it with.
async fn uni_garbage(conn: &quinn::Connection, bytes: &[u8]) -> u64 {
    let mut send = conn.open_uni().await.expect("open stream");
    send.write_all(bytes).await.expect("write");
    match tokio::time::timeout(CAP, send.stopped()).await {
        Ok(Ok(Some(code))) => code.into_inner(),
        other => panic!("expected the node to stop the stream, got {other:?}"),
    }
}

/// An RPC with `body` as the request; returns the node's decoded answer.
async fn rpc(conn: &quinn::Connection, service: Service, body: &[u8]) -> KvResult {
    let (mut send, mut recv) = conn.open_bi().await.expect("open stream");
    let head = StreamHead::Rpc {
        service,
        body: body.to_vec().into(),
    };
    frame::write_frame(&mut send, &head, frame::DEFAULT_MAX_FRAME)
        .await
        .expect("write request");
    send.finish().expect("finish");
    let reply: RpcReply = frame::read_required(&mut recv, frame::DEFAULT_MAX_FRAME)
        .await
        .expect("a reply frame");
    let body = reply.expect("the node has handlers");
    api::decode("kv answer", &body).expect("an answer")
}

fn header(len: u32) -> Vec<u8> {
    let mut h = vec![FRAME_VERSION];
    h.extend_from_slice(&len.to_be_bytes());
    h
}

/// Seeded random datagrams at a node's QUIC port: half of them dressed as QUIC v1 Initial
/// packets of the size a server considers, so they get past the first checks.
fn udp_garbage(addr: SocketAddr, rng: &mut StdRng) {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("udp socket");
    for i in 0..3000 {
        let len = if i % 2 == 0 {
            rng.random_range(1200..=1452)
        } else {
            rng.random_range(1..=1452)
        };
        let mut datagram = vec![0u8; len];
        rng.fill(&mut datagram[..]);
        if i % 2 == 0 {
            datagram[0] = 0xc0 | (datagram[0] & 0x0f);
            datagram[1..5].copy_from_slice(&1u32.to_be_bytes());
            datagram[5] = rng.random_range(8..=20);
        }
        // A full socket buffer drops datagrams, as the network would.
        let _ = socket.send_to(&datagram, addr);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_peers_get_errors_and_the_node_keeps_serving() {
    let cluster = Cluster::up(3);
    let target = cluster.addrs[0];
    cluster.assert_serving("start");
    let mut rng = StdRng::seed_from_u64(SEED);

    udp_garbage(target, &mut rng);
    cluster.assert_serving("udp-garbage");

    // A client with a valid certificate, speaking nonsense on its streams.
    let client = TlsIdentity::load(&cluster.client).expect("client certificate");
    let (_endpoint, conn) = connect(&client, target).await;
    let conn = conn.expect("a valid client certificate is accepted");
    let frame_error = u64::from(wire::STREAM_FRAME_ERROR);
    let mut noise = vec![0u8; 4096];
    rng.fill(&mut noise[..]);
    noise[0] = 0x7f; // not a frame version
    assert_eq!(bi_garbage(&conn, &noise, true).await, frame_error);
    // A length prefix far above the cap, stream left open: refused without waiting for data.
    assert_eq!(
        bi_garbage(&conn, &header(u32::MAX), false).await,
        frame_error
    );
    // A frame cut short.
    let mut cut = header(100);
    cut.extend_from_slice(&noise[1..11]);
    assert_eq!(bi_garbage(&conn, &cut, true).await, frame_error);
    // A complete frame whose payload is not a stream head.
    let mut undecodable = header(8);
    undecodable.extend_from_slice(&[0xff; 8]);
    assert_eq!(bi_garbage(&conn, &undecodable, true).await, frame_error);
    // Many streams at once, each claiming a large frame: each is refused on its own.
    let floods: Vec<_> = (0..64)
        .map(|_| {
            let conn = conn.clone();
            tokio::spawn(async move { bi_garbage(&conn, &header(u32::MAX - 1), false).await })
        })
        .collect();
    for flood in floods {
        assert_eq!(flood.await.expect("stream task"), frame_error);
    }
    // A Raft stream from a client identity is refused.
    let raft_head = frame::encode(&StreamHead::Raft, frame::DEFAULT_MAX_FRAME).expect("encode");
    assert_eq!(
        uni_garbage(&conn, &raft_head).await,
        u64::from(wire::STREAM_REFUSED)
    );
    // Well-framed RPCs whose bodies are garbage get a decode error naming what was expected.
    for (service, what) in [
        (Service::Client, "kv request"),
        (Service::Admin, "admin request"),
    ] {
        match rpc(&conn, service, &noise[..64]).await {
            Err(KvError::Api(ApiError::Decode { what: got, .. })) => assert_eq!(got, what),
            other => panic!("{what}: expected a decode error, got {other:?}"),
        }
    }
    cluster.wait_log(
        1,
        &[
            "closing stream after a framing error",
            "unknown frame version 127",
        ],
    );
    cluster.wait_log(
        1,
        &[
            "framing error",
            "frame of 4294967295 bytes exceeds the limit",
        ],
    );
    cluster.wait_log(
        1,
        &["refused Raft-message stream from a non-store identity"],
    );
    // The connection survived all of that; a hello claiming to be a store ends it.
    let hello = frame::encode(&StreamHead::Hello { store_id: 2 }, frame::DEFAULT_MAX_FRAME)
        .expect("encode");
    let (mut send, _recv) = conn.open_bi().await.expect("open stream");
    send.write_all(&hello).await.expect("write hello");
    match tokio::time::timeout(CAP, conn.closed()).await {
        Ok(quinn::ConnectionError::ApplicationClosed(close)) => {
            assert_eq!(
                close.error_code.into_inner(),
                u64::from(wire::CLOSE_HELLO_MISMATCH)
            );
            let reason = String::from_utf8_lossy(&close.reason);
            assert!(reason.contains("hello claims store 2"), "{reason}");
        }
        other => panic!("expected the node to close the connection, got {other:?}"),
    }
    cluster.assert_serving("client-garbage");

    // A store certificate (issued by the cluster CA) on a Raft stream carrying garbage batches.
    let store_dir = cluster.dir.join("store-9");
    tinykv(&[
        "cert",
        "issue",
        "store-9",
        "--ca-dir",
        path_str(&cluster.dir.join("certs")),
        "--san",
        "127.0.0.1",
        "--out",
        path_str(&store_dir),
    ])
    .ok();
    let store = TlsIdentity::load(&TlsFiles {
        ca: cluster.client.ca.clone(),
        cert: store_dir.join("store-9.pem"),
        key: store_dir.join("store-9-key.pem"),
    })
    .expect("store certificate");
    let (_store_endpoint, store_conn) = connect(&store, target).await;
    let store_conn = store_conn.expect("a cluster store certificate is accepted");
    for batch in [undecodable.clone(), header(u32::MAX), cut.clone()] {
        let mut stream = raft_head.clone();
        stream.extend_from_slice(&batch);
        if batch == cut {
            // Truncation shows only at the end of the stream.
            let mut send = store_conn.open_uni().await.expect("open stream");
            send.write_all(&stream).await.expect("write");
            send.finish().expect("finish");
            cluster.wait_log(
                1,
                &["store 9", "stream ended inside a frame (15 of 105 bytes)"],
            );
        } else {
            assert_eq!(uni_garbage(&store_conn, &stream).await, frame_error);
        }
    }
    store_conn.close(0u32.into(), b"done");
    cluster.assert_serving("store-garbage");

    // A client certificate from a foreign CA, offered to a node it trusts: the node refuses it.
    let foreign_ca = ClusterCa::generate("foreign", Validity::days(1)).expect("foreign CA");
    let intruder = foreign_ca
        .issue_client("intruder", Role::Admin, Validity::days(1))
        .expect("foreign client certificate");
    let mut identity = TlsIdentity::from_issued(&foreign_ca, &intruder);
    identity.ca = client.ca.clone();
    let (_intruder_endpoint, refused) = connect(&identity, target).await;
    match refused {
        Err(e) => assert!(tls::is_tls_refusal(&e), "not a TLS refusal: {e}"),
        Ok(conn) => {
            // TLS 1.3 can finish on the client before the server checks its certificate; the
            // refusal then arrives as the connection's close.
            let e = tokio::time::timeout(CAP, conn.closed())
                .await
                .expect("the node closes a connection with a foreign certificate");
            assert!(tls::is_tls_refusal(&e), "not a TLS refusal: {e}");
        }
    }
    cluster.assert_serving("foreign-ca");
}

/// Every file under `dir` with its size and modification time: a refused data dir must not
/// change at all (the store ident is checked before the database is opened, since opening it
/// rewrites the journal and manifests).
fn listing(dir: &Path) -> Vec<(PathBuf, u64, SystemTime)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("read dir") {
            let entry = entry.expect("dir entry");
            let meta = entry.metadata().expect("metadata");
            let path = entry.path();
            if meta.is_dir() {
                stack.push(path);
            } else {
                out.push((path, meta.len(), meta.modified().expect("mtime")));
            }
        }
    }
    out.sort();
    out
}

/// Runs `tinykv ARGS` to completion, killing it (and failing) if it does not exit within `CAP`.
fn run_bounded(args: &[&str]) -> Run {
    let mut child = Command::new(support::BIN)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn tinykv");
    let deadline = Instant::now() + CAP;
    loop {
        if child.try_wait().expect("wait").is_some() {
            return child.wait_with_output().expect("output").into();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "tinykv {args:?} did not exit within {CAP:?}; stderr:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        // Polling a child's exit: std has no wait with a timeout.
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_data_dir_from_another_cluster_is_refused_and_left_unchanged() {
    let cluster = Cluster::up(1);
    cluster.kv(&["kv", "put", "kept", "yes"]).ok();
    let node_dir = cluster.dir.join("node1");
    let pid: i32 = std::fs::read_to_string(node_dir.join("pid"))
        .expect("pid file")
        .trim()
        .parse()
        .expect("pid");
    tinykv(&["cluster", "down", "--dir", path_str(&cluster.dir)]).ok();
    wait_for("node 1 to stop", CAP, || (!is_alive(pid)).then_some(()));

    let config = std::fs::read_to_string(node_dir.join("config.yaml")).expect("config");
    assert!(
        config.contains("initial-cluster-token: tinykv-playground"),
        "{config}"
    );
    let foreign = node_dir.join("foreign.yaml");
    std::fs::write(
        &foreign,
        config.replace(
            "initial-cluster-token: tinykv-playground",
            "initial-cluster-token: another-cluster",
        ),
    )
    .expect("write config");
    let data = node_dir.join("data");
    let before = listing(&data);
    assert!(
        before
            .iter()
            .any(|(p, ..)| p.components().any(|c| c.as_os_str() == "tables")),
        "no table files to compare: {before:?}"
    );

    let refused = run_bounded(&["node", "start", "--config", path_str(&foreign)]);
    assert_ne!(refused.code, 0, "stdout:\n{}", refused.stdout);
    assert!(
        refused.stderr.contains("belongs to cluster") && refused.stderr.contains(path_str(&data)),
        "the refusal should name the cluster mismatch and the dir:\n{}",
        refused.stderr
    );
    assert_eq!(listing(&data), before, "the refused data dir was modified");

    // The dir still belongs to its own cluster: started with its own config, it serves.
    tinykv(&["cluster", "up", "--detach", "--dir", path_str(&cluster.dir)]).ok();
    assert_eq!(
        cluster.kv(&["kv", "get", "kept", "-o", "json"]).ok().json(),
        json!({"key": "kept", "found": true, "value": "yes"})
    );
}

#[test]
fn config_typos_are_refused_naming_the_key_and_the_line() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let data = tmp.path().join("data");
    let base = format!(
        "store-id: 1\nlisten-addr: 127.0.0.1:{}\ndata-dir: {}\ntls:\n  ca: ca.pem\n  cert: c.pem\n  key: k.pem\n",
        free_base_port(1),
        data.display()
    );
    // (what is appended, words the error must contain, the line it must name).
    let cases: [(&str, &[&str], usize); 4] = [
        (
            "raft:\n  heartbeat-ticks: 2\n  election-timeout-tick: 10\n",
            &["raft.election-timeout-tick", "unknown field"],
            10,
        ),
        (
            "advertise-addr: 127.0.0.1:99999\n",
            &["advertise-addr", "address"],
            8,
        ),
        (
            "raft:\n  heartbeat-ticks: 2\n  base-tick-interval: 100mb\n",
            &["raft.base-tick-interval", "`100mb` is not a duration"],
            10,
        ),
        (
            "snapshot:\n  chunk-size: 64KiB\n  max-bytes-per-sec: 100mbs\n",
            &["snapshot.max-bytes-per-sec", "`100mbs` is not a size"],
            10,
        ),
    ];
    for (i, (extra, words, line)) in cases.iter().enumerate() {
        let path = tmp.path().join(format!("typo{i}.yaml"));
        std::fs::write(&path, format!("{base}{extra}")).expect("write config");
        for args in [
            vec!["config", "check", path_str(&path)],
            vec!["node", "start", "--config", path_str(&path)],
        ] {
            let run = run_bounded(&args);
            assert_ne!(run.code, 0, "{args:?} accepted {extra:?}");
            for word in *words {
                assert!(
                    run.stderr.contains(word),
                    "{args:?}: no `{word}` in:\n{}",
                    run.stderr
                );
            }
            let named = format!("at line {line}");
            assert!(
                run.stderr.contains(&named),
                "{args:?}: no `{named}` in:\n{}",
                run.stderr
            );
            assert!(run.stderr.contains(path_str(&path)), "{}", run.stderr);
        }
        assert!(
            !data.exists(),
            "a refused config must not create the data dir"
        );
    }
}
