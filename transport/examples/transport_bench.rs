//! Measures the transport against bare quinn with the same TLS, in one process on 127.0.0.1.
//!
//! `cargo run -p tinykv-transport --release --example transport_bench`
//!
//! Reports small-message round trips (RPC path, Raft link, raw bidi ping-pong), bulk snapshot
//! throughput (unlimited, 16 MiB/s and 100 MiB/s with the error against the limit) and a raw
//! uni-stream bulk transfer, plus the ratios of each to its raw counterpart.

use std::error::Error;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tinykv_transport::certs::store_dns_name;
use tinykv_transport::tls::{self, ConnectionTuning};
use tinykv_transport::*;

type BoxResult<T> = Result<T, Box<dyn Error + Send + Sync>>;

const WARMUP: usize = 200;
const ROUNDS: usize = 3_000;
const MIB: u64 = 1024 * 1024;

#[derive(Serialize, Deserialize)]
struct Ping {
    seq: u64,
}

struct Latency {
    p50: Duration,
    p99: Duration,
}

fn percentiles(mut samples: Vec<Duration>) -> Latency {
    samples.sort_unstable();
    let at = |q: f64| samples[((samples.len() as f64 - 1.0) * q).round() as usize];
    Latency {
        p50: at(0.50),
        p99: at(0.99),
    }
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn main() -> BoxResult<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(run())
}

async fn run() -> BoxResult<()> {
    let ca = ClusterCa::generate("bench CA", Validity::days(1))?;
    let node = |id| -> BoxResult<TlsIdentity> {
        Ok(TlsIdentity::from_issued(
            &ca,
            &ca.issue_node(id, &["127.0.0.1".into()], Validity::days(1))?,
        ))
    };
    let client_tls = TlsIdentity::from_issued(
        &ca,
        &ca.issue_client("bench", Role::ReadWrite, Validity::days(1))?,
    );
    let dir = tempfile::tempdir()?;

    // Raw quinn with the same TLS and transport settings.
    let raw_server = {
        let cfg = tls::server_config(&node(9)?, &ConnectionTuning::default())?;
        quinn::Endpoint::server(cfg, "127.0.0.1:0".parse()?)?
    };
    let raw_addr = raw_server.local_addr()?;
    tokio::spawn(raw_echo_server(raw_server.clone()));
    let mut raw_client = quinn::Endpoint::client("127.0.0.1:0".parse()?)?;
    raw_client.set_default_client_config(tls::client_config(
        &client_tls,
        &ConnectionTuning::default(),
    )?);
    let raw_conn = raw_client.connect(raw_addr, &store_dns_name(9))?.await?;
    let raw_rtt = percentiles(raw_ping_pong(&raw_conn).await?);

    // The transport: two endpoints.
    let endpoint = |id: u64, limit: u64| -> BoxResult<(Endpoint<Ping>, Events<Ping>)> {
        let mut cfg = EndpointConfig::new(
            id,
            "127.0.0.1:0".parse()?,
            dir.path().join(format!("snap-{id}-{limit}")),
        );
        cfg.snapshot.max_bytes_per_sec = limit;
        Ok(Endpoint::bind(cfg, node(id)?)?)
    };
    let (a, mut a_events) = endpoint(1, 0)?;
    let (b, b_events) = endpoint(2, 0)?;
    a.set_peer_addr(2, b.local_addr()?);
    b.set_peer_addr(1, a.local_addr()?);
    b.set_rpc_handler(Arc::new(
        |_from: Identity, _s: Service, body: Bytes| async move { Ok::<_, String>(body) },
    ));

    let rpc = RpcClient::new(&client_tls, b.local_addr()?, RpcClientOptions::default())?;
    let body = Bytes::from(postcard::to_stdvec(&Ping { seq: 1 })?);
    let mut samples = Vec::with_capacity(ROUNDS);
    for i in 0..WARMUP + ROUNDS {
        let t = Instant::now();
        rpc.call(Service::Client, body.clone()).await?;
        if i >= WARMUP {
            samples.push(t.elapsed());
        }
    }
    let rpc_rtt = percentiles(samples);

    // Raft link: B echoes every message back to A.
    let b = Arc::new(b);
    let echo_b = b.clone();
    let mut b_events = b_events;
    tokio::spawn(async move {
        while let Some(received) = b_events.messages.recv().await {
            let _ = echo_b.send(received.from_store, &received.message);
        }
    });
    let mut samples = Vec::with_capacity(ROUNDS);
    for seq in 0..(WARMUP + ROUNDS) as u64 {
        let t = Instant::now();
        a.send(2, &Ping { seq })?;
        let got = a_events.messages.recv().await.ok_or("link closed")?;
        if got.message.seq != seq {
            return Err("link reordered".into());
        }
        if seq as usize >= WARMUP {
            samples.push(t.elapsed());
        }
    }
    let link_rtt = percentiles(samples);

    // Bulk: raw uni stream vs. snapshot streams.
    let bulk = 256 * MIB;
    let cpu0 = process_cpu_secs();
    let raw_bulk = raw_bulk(&raw_conn, bulk).await?;
    let raw_cpu = process_cpu_secs() - cpu0;
    let file = dir.path().join("snapshot.bin");
    write_file(&file, bulk)?;
    let cpu0 = process_cpu_secs();
    let unlimited = timed_snapshot(&a, &file, bulk).await?;
    let un_cpu = process_cpu_secs() - cpu0;
    drop(a);

    let (a16, _e16) = endpoint(3, 16 * MIB)?;
    let (a100, _e100) = endpoint(4, 100 * MIB)?;
    for (limited, id) in [(&a16, 3u64), (&a100, 4u64)] {
        limited.set_peer_addr(2, b.local_addr()?);
        b.set_peer_addr(id, limited.local_addr()?);
    }
    let file64 = dir.path().join("snapshot64.bin");
    write_file(&file64, 64 * MIB)?;
    let at16 = timed_snapshot(&a16, &file64, 64 * MIB).await?;
    let at100 = timed_snapshot(&a100, &file, bulk).await?;

    let mibs = |bytes: u64, d: Duration| bytes as f64 / MIB as f64 / d.as_secs_f64();
    println!(
        "transport_bench: 127.0.0.1, one process, tokio 2 workers, {ROUNDS} round trips after {WARMUP} warm-up"
    );
    println!();
    println!("small-message round trip        p50 (us)   p99 (us)   p50 vs raw");
    println!(
        "raw quinn bidi stream/request   {:>8.1}   {:>8.1}   1.00x",
        us(raw_rtt.p50),
        us(raw_rtt.p99)
    );
    println!(
        "RPC path (RpcClient -> handler) {:>8.1}   {:>8.1}   {:.2}x",
        us(rpc_rtt.p50),
        us(rpc_rtt.p99),
        us(rpc_rtt.p50) / us(raw_rtt.p50)
    );
    println!(
        "Raft link (send -> echo -> recv) {:>7.1}   {:>8.1}   {:.2}x",
        us(link_rtt.p50),
        us(link_rtt.p99),
        us(link_rtt.p50) / us(raw_rtt.p50)
    );
    println!();
    println!(
        "bulk transfer                   size      time        MiB/s    vs raw / error vs limit"
    );
    let raw_rate = mibs(bulk, raw_bulk);
    println!(
        "raw quinn uni stream            {:>4} MiB  {:>8.3} s  {:>8.1}",
        bulk / MIB,
        raw_bulk.as_secs_f64(),
        raw_rate
    );
    let un_rate = mibs(bulk, unlimited);
    println!(
        "snapshot, unlimited             {:>4} MiB  {:>8.3} s  {:>8.1}    {:.2}x of raw",
        bulk / MIB,
        unlimited.as_secs_f64(),
        un_rate,
        un_rate / raw_rate
    );
    // CPU per GiB moved counts both ends (one process); unlike wall time it barely moves when
    // other work shares the machine.
    println!(
        "CPU per GiB: raw quinn {:.2} s, snapshot {:.2} s",
        raw_cpu * (1024.0 * MIB as f64) / bulk as f64,
        un_cpu * (1024.0 * MIB as f64) / bulk as f64
    );
    for (name, size, took, limit) in [
        ("snapshot, 16 MiB/s limit ", 64 * MIB, at16, 16.0),
        ("snapshot, 100 MiB/s limit", bulk, at100, 100.0),
    ] {
        let rate = mibs(size, took);
        println!(
            "{name}       {:>4} MiB  {:>8.3} s  {:>8.1}    {:+.1}% vs limit",
            size / MIB,
            took.as_secs_f64(),
            rate,
            (rate / limit - 1.0) * 100.0
        );
    }
    Ok(())
}

fn write_file(path: &Path, size: u64) -> BoxResult<()> {
    use std::io::Write;
    let mut file = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut block = vec![0u8; MIB as usize];
    for _ in 0..size / MIB {
        for word in block.chunks_exact_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            word.copy_from_slice(&x.to_le_bytes());
        }
        file.write_all(&block)?;
    }
    file.flush()?;
    Ok(())
}

/// Times a snapshot send with the checksum precomputed, so only the transfer is measured.
async fn timed_snapshot(from: &Endpoint<Ping>, path: &Path, size: u64) -> BoxResult<Duration> {
    let crc = {
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(&std::fs::read(path)?);
        hasher.finalize()
    };
    // Establish the connection first so the handshake is not timed.
    let _ = from
        .call(2, Service::Admin, Bytes::new(), Duration::from_secs(5))
        .await;
    let meta = SnapshotMeta {
        region_id: 1,
        index: 1,
        term: 1,
        crc32: Some(crc),
        context: Bytes::new(),
    };
    let t = Instant::now();
    from.send_snapshot(2, meta, path, None).await?;
    let took = t.elapsed();
    if std::fs::metadata(path)?.len() != size {
        return Err("size changed".into());
    }
    Ok(took)
}

async fn raw_echo_server(server: quinn::Endpoint) {
    while let Some(incoming) = server.accept().await {
        tokio::spawn(async move {
            let Ok(conn) = incoming.await else { return };
            loop {
                tokio::select! {
                    bi = conn.accept_bi() => {
                        let Ok((mut send, mut recv)) = bi else { return };
                        tokio::spawn(async move {
                            if let Ok(data) = recv.read_to_end(1 << 20).await {
                                let _ = send.write_all(&data).await;
                                let _ = send.finish();
                            }
                        });
                    }
                    uni = conn.accept_uni() => {
                        let Ok(mut recv) = uni else { return };
                        tokio::spawn(async move {
                            while let Ok(Some(_)) = recv.read_chunk(1 << 20, false).await {}
                        });
                    }
                }
            }
        });
    }
}

async fn raw_ping_pong(conn: &quinn::Connection) -> BoxResult<Vec<Duration>> {
    let frame = tinykv_transport::frame::encode(&Ping { seq: 1 }, 1024)?;
    let mut samples = Vec::with_capacity(ROUNDS);
    for i in 0..WARMUP + ROUNDS {
        let t = Instant::now();
        let (mut send, mut recv) = conn.open_bi().await?;
        send.write_all(&frame).await?;
        send.finish()?;
        let back = recv.read_to_end(1024).await?;
        if back.len() != frame.len() {
            return Err("short echo".into());
        }
        if i >= WARMUP {
            samples.push(t.elapsed());
        }
    }
    Ok(samples)
}

/// User plus system CPU seconds of this process so far (Linux `/proc`; 0 elsewhere).
fn process_cpu_secs() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let Some(rest) = stat.rsplit(')').next() else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

async fn raw_bulk(conn: &quinn::Connection, size: u64) -> BoxResult<Duration> {
    let chunk = Bytes::from(vec![7u8; 64 * 1024]);
    let t = Instant::now();
    let mut send = conn.open_uni().await?;
    let mut sent = 0;
    while sent < size {
        send.write_chunk(chunk.clone()).await?;
        sent += chunk.len() as u64;
    }
    send.finish()?;
    send.stopped().await?;
    Ok(t.elapsed())
}
