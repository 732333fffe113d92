//! Snapshot streams: one bidirectional stream per snapshot, a header frame, then the file's bytes
//! in chunks paced by the endpoint's token bucket, then the receiver's acknowledgement.
//!
//! Neither side holds more than a chunk in memory. The receiver writes to a temporary file, checks
//! size and crc32 at the end, and only renames and hands over a verified file; any failure removes
//! the partial file.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use std::io::{Read, Write};

use tokio::io::AsyncReadExt;
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::endpoint::Shared;
use crate::error::SnapshotError;
use crate::filter::{Direction, Traffic, Verdict};
use crate::frame;
use crate::identity::Identity;
use crate::stats::Counters;
use crate::wire::{SnapshotAck, SnapshotHeader, SnapshotRefusal, StreamHead};

/// What the node says about a snapshot it sends; size and checksum come from the file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SnapshotMeta {
    pub region_id: u64,
    pub index: u64,
    pub term: u64,
    /// The crc32 of the file if the node already knows it (saves reading the file twice).
    pub crc32: Option<u32>,
    /// Opaque to the transport.
    pub context: Bytes,
}

/// Bytes sent so far of a snapshot's total.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SnapshotProgress {
    pub sent: u64,
    pub total: u64,
}

/// A snapshot on its way in, as [`crate::Endpoint::incoming_snapshots`] reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IncomingSnapshot {
    pub region_id: u64,
    pub from_store: u64,
    pub received: u64,
    pub total: u64,
}

/// The snapshots being received, by stream: what a joining node shows as progress.
#[derive(Default)]
pub(crate) struct Incoming {
    streams: std::sync::Mutex<std::collections::HashMap<u64, (IncomingSnapshot, Arc<AtomicU64>)>>,
}

impl Incoming {
    fn track(&self, seq: u64, snapshot: IncomingSnapshot) -> IncomingGuard<'_> {
        let received = Arc::new(AtomicU64::new(0));
        self.lock().insert(seq, (snapshot, received.clone()));
        IncomingGuard {
            incoming: self,
            seq,
            received,
        }
    }

    pub(crate) fn list(&self) -> Vec<IncomingSnapshot> {
        self.lock()
            .values()
            .map(|(s, got)| IncomingSnapshot {
                received: got.load(Ordering::Relaxed),
                ..*s
            })
            .collect()
    }

    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<u64, (IncomingSnapshot, Arc<AtomicU64>)>>
    {
        self.streams
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Keeps one stream listed in [`Incoming`] while it is received.
struct IncomingGuard<'a> {
    incoming: &'a Incoming,
    seq: u64,
    received: Arc<AtomicU64>,
}

impl Drop for IncomingGuard<'_> {
    fn drop(&mut self) {
        self.incoming.lock().remove(&self.seq);
    }
}

/// A verified snapshot handed to the node. The node owns (and eventually removes) the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReceivedSnapshot {
    pub from_store: u64,
    pub header: SnapshotHeader,
    pub path: PathBuf,
}

pub(crate) async fn send<M>(
    shared: &Shared<M>,
    store: u64,
    meta: SnapshotMeta,
    path: &Path,
    progress: Option<&watch::Sender<SnapshotProgress>>,
) -> Result<(), SnapshotError> {
    match shared
        .filter
        .check(Direction::Outgoing, Traffic::Snapshot, store)
    {
        Verdict::Pass => {}
        Verdict::Drop => return Err(SnapshotError::Dropped),
        Verdict::Block => return Err(SnapshotError::Blocked),
        Verdict::Delay(delay) => tokio::time::sleep(delay).await,
    }
    // The semaphore is never closed, so acquisition only fails if the endpoint is gone.
    let _slot = shared
        .send_slots
        .acquire()
        .await
        .map_err(|_| SnapshotError::Connect(crate::ConnectError::Closed))?;
    let chunk = shared.config.snapshot.chunk_size.max(1);
    let file_err = |source| SnapshotError::File {
        path: path.to_path_buf(),
        source,
    };

    let size = tokio::fs::metadata(path).await.map_err(file_err)?.len();
    let crc32 = match meta.crc32 {
        Some(crc) => crc,
        None => checksum(path, chunk).await?,
    };
    let header = SnapshotHeader {
        region_id: meta.region_id,
        index: meta.index,
        term: meta.term,
        size,
        crc32,
        context: meta.context,
    };
    let mut chunks = read_ahead(path.to_path_buf(), chunk);

    let conn = shared.connect_store(store).await?;
    let stream_err = |e: &dyn std::fmt::Display| SnapshotError::Stream {
        store,
        reason: e.to_string(),
    };
    let (mut send, mut recv) = conn.open_bi().await.map_err(|e| stream_err(&e))?;
    let head = frame::encode(
        &StreamHead::Snapshot(header.clone()),
        shared.config.max_frame_size,
    )?;
    if let Err(err) = send.write_all(&head).await {
        return Err(refusal_or(&mut recv, shared.config.max_frame_size, stream_err(&err)).await);
    }

    let report = |sent| {
        if let Some(progress) = progress {
            progress.send_replace(SnapshotProgress { sent, total: size });
        }
    };
    report(0);
    let mut sent = 0u64;
    while let Some(next) = chunks.recv().await {
        let data = next.map_err(file_err)?;
        let n = data.len();
        if sent + n as u64 > size {
            let _ = send.reset(quinn::VarInt::from_u32(crate::wire::STREAM_REFUSED));
            return Err(SnapshotError::FileChanged {
                path: path.to_path_buf(),
                detail: format!("grew past {size} bytes"),
            });
        }
        if let Some(limiter) = &shared.limiter {
            let waited = std::time::Instant::now();
            limiter.acquire(n).await;
            let micros = u64::try_from(waited.elapsed().as_micros()).unwrap_or(u64::MAX);
            Counters::add(&shared.counters.snapshot_rate_limit_wait_micros, micros);
        }
        if let Err(err) = send.write_chunk(Bytes::from(data)).await {
            return Err(
                refusal_or(&mut recv, shared.config.max_frame_size, stream_err(&err)).await,
            );
        }
        Counters::add(&shared.counters.snapshot_bytes_sent, n as u64);
        sent += n as u64;
        report(sent);
    }
    if sent != size {
        let _ = send.reset(quinn::VarInt::from_u32(crate::wire::STREAM_REFUSED));
        return Err(SnapshotError::FileChanged {
            path: path.to_path_buf(),
            detail: format!("shrank to {sent} of {size} bytes"),
        });
    }
    let _ = send.finish();

    let timeout = shared.config.snapshot.ack_timeout;
    let ack: SnapshotAck = tokio::time::timeout(
        timeout,
        frame::read_required(&mut recv, shared.config.max_frame_size),
    )
    .await
    .map_err(|_| SnapshotError::AckTimeout(timeout))??;
    // Reading the end of the stream lets the receiver see its ack fully delivered.
    let _ = tokio::time::timeout(timeout, frame::read_raw(&mut recv, 0)).await;
    match ack {
        SnapshotAck::Accepted => {
            Counters::add(&shared.counters.snapshots_sent, 1);
            info!(
                store,
                region = header.region_id,
                index = header.index,
                size,
                "snapshot sent"
            );
            Ok(())
        }
        SnapshotAck::Rejected(reason) => Err(SnapshotError::Rejected(reason)),
    }
}

/// A receiver that refuses early stops our stream and says why on its half; prefer that reason
/// over the bare write error.
async fn refusal_or(
    recv: &mut quinn::RecvStream,
    max: usize,
    fallback: SnapshotError,
) -> SnapshotError {
    let wait = std::time::Duration::from_secs(2);
    match tokio::time::timeout(wait, frame::read_required::<_, SnapshotAck>(recv, max)).await {
        Ok(Ok(SnapshotAck::Rejected(reason))) => SnapshotError::Rejected(reason),
        _ => fallback,
    }
}

async fn checksum(path: &Path, chunk: usize) -> Result<u32, SnapshotError> {
    let file_err = |source| SnapshotError::File {
        path: path.to_path_buf(),
        source,
    };
    let mut file = tokio::fs::File::open(path).await.map_err(file_err)?;
    let mut hasher = crc32fast::Hasher::new();
    let mut buf = vec![0u8; chunk];
    loop {
        let n = file.read(&mut buf).await.map_err(file_err)?;
        if n == 0 {
            return Ok(hasher.finalize());
        }
        hasher.update(&buf[..n]);
    }
}

/// Chunks of the file read on a blocking thread, at most `READ_AHEAD` ahead of the sender:
/// disk reads overlap the network writes, and memory stays a few chunks whatever the file size.
/// A read error is the last item.
fn read_ahead(
    path: PathBuf,
    chunk: usize,
) -> tokio::sync::mpsc::Receiver<std::io::Result<Vec<u8>>> {
    let (tx, rx) = tokio::sync::mpsc::channel(READ_AHEAD);
    tokio::task::spawn_blocking(move || {
        let mut file = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) => {
                let _ = tx.blocking_send(Err(e));
                return;
            }
        };
        loop {
            // Up to a full chunk unless the file ends first, so every chunk but the last is full.
            let mut buf = Vec::with_capacity(chunk);
            match (&mut file).take(chunk as u64).read_to_end(&mut buf) {
                Ok(0) => return,
                Ok(_) => {
                    // The sender gave up: stop reading.
                    if tx.blocking_send(Ok(buf)).is_err() {
                        return;
                    }
                }
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    return;
                }
            }
        }
    });
    rx
}

/// Chunks read ahead of the network by the sender, and queued for the disk by the receiver.
const READ_AHEAD: usize = 4;
/// What [`write_behind`] reports when its queue closes: bytes written and their crc32.
type WriteOutcome = tokio::task::JoinHandle<std::io::Result<(u64, u32)>>;

/// Bytes a receiver writes between two `fdatasync`s.
const SYNC_EVERY: u64 = 16 * 1024 * 1024;

/// Writes chunks to `file` on a blocking thread, hashing them on the way, then fsyncs; returns
/// the bytes written and their crc32. Keeps disk writes off the async workers and overlapped with
/// the network reads.
fn write_behind(mut file: std::fs::File) -> (tokio::sync::mpsc::Sender<Vec<u8>>, WriteOutcome) {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(READ_AHEAD);
    let handle = tokio::task::spawn_blocking(move || {
        let flusher = file.try_clone()?;
        // Flushing as we go keeps the closing fsync short; left to the end, the kernel may hold
        // the whole file dirty. The flushes run on their own thread so the writes (and with them
        // the network) go on meanwhile; a rendezvous channel lets one flush run at a time, which
        // bounds the dirty data to about two flush intervals.
        let (flush_now, flush_requests) = std::sync::mpsc::sync_channel::<()>(0);
        std::thread::scope(|scope| {
            let flushing = scope.spawn(move || -> std::io::Result<()> {
                for () in flush_requests {
                    flusher.sync_data()?;
                }
                Ok(())
            });
            let written = (|| {
                let mut hasher = crc32fast::Hasher::new();
                let mut written = 0u64;
                let mut unflushed = 0u64;
                while let Some(buf) = rx.blocking_recv() {
                    hasher.update(&buf);
                    file.write_all(&buf)?;
                    written += buf.len() as u64;
                    unflushed += buf.len() as u64;
                    // A closed channel means a flush failed: its error is returned below.
                    if unflushed >= SYNC_EVERY {
                        if flush_now.send(()).is_err() {
                            break;
                        }
                        unflushed = 0;
                    }
                }
                Ok::<_, std::io::Error>((written, hasher.finalize()))
            })();
            drop(flush_now);
            let flushed = flushing
                .join()
                .unwrap_or_else(|_| Err(std::io::Error::other("snapshot flush thread panicked")));
            let outcome = written?;
            flushed?;
            file.sync_all()?;
            Ok(outcome)
        })
    });
    (tx, handle)
}

/// Removes the temporary file unless the transfer completed.
struct PartialFile {
    path: PathBuf,
    keep: bool,
}

impl Drop for PartialFile {
    fn drop(&mut self) {
        if !self.keep
            && let Err(err) = std::fs::remove_file(&self.path)
            && err.kind() != std::io::ErrorKind::NotFound
        {
            warn!(path = %self.path.display(), error = %err, "could not remove partial snapshot");
        }
    }
}

static RECEIVE_SEQ: AtomicU64 = AtomicU64::new(0);

pub(crate) async fn receive<M>(
    shared: &Shared<M>,
    identity: Identity,
    header: SnapshotHeader,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
) {
    let max = shared.config.max_frame_size;
    let refuse = |reason: SnapshotRefusal| {
        shared.counters.event(&shared.counters.snapshots_rejected);
        warn!(%identity, region = header.region_id, index = header.index, %reason, "snapshot rejected");
        reason
    };
    let outcome = async {
        let Some(from) = identity.store_id() else {
            return Err(refuse(SnapshotRefusal::NotAStore));
        };
        match shared
            .filter
            .check(Direction::Incoming, Traffic::Snapshot, from)
        {
            Verdict::Pass => {}
            Verdict::Drop | Verdict::Block => return Err(refuse(SnapshotRefusal::Filtered)),
            Verdict::Delay(delay) => tokio::time::sleep(delay).await,
        }
        let Ok(_slot) = shared.recv_slots.clone().try_acquire_owned() else {
            return Err(refuse(SnapshotRefusal::Busy));
        };
        let seq = RECEIVE_SEQ.fetch_add(1, Ordering::Relaxed);
        let progress = shared.incoming.track(
            seq,
            IncomingSnapshot {
                region_id: header.region_id,
                from_store: from,
                received: 0,
                total: header.size,
            },
        );
        let name = format!(
            "snap-r{}-t{}-i{}-s{}-{}-{seq}",
            header.region_id,
            header.term,
            header.index,
            from,
            std::process::id()
        );
        let dir = &shared.config.snapshot.dir;
        let mut partial = PartialFile {
            path: dir.join(format!("{name}.part")),
            keep: false,
        };
        let io = |e: std::io::Error| refuse(SnapshotRefusal::Io(e.to_string()));
        let chunk = shared.config.snapshot.chunk_size.max(64 * 1024);
        // Created here, not on the writer's thread, so an early refusal's clean-up finds it.
        let file = tokio::fs::File::create(&partial.path)
            .await
            .map_err(io)?
            .into_std()
            .await;
        let (to_disk, written) = write_behind(file);
        let mut got = 0u64;
        'stream: loop {
            // Filled from quinn's own buffers: no zeroed chunk to overwrite.
            let mut buf = Vec::with_capacity(chunk);
            let mut end = false;
            while buf.len() < chunk {
                match recv.read_chunk(chunk - buf.len(), true).await {
                    Ok(Some(part)) => buf.extend_from_slice(&part.bytes),
                    Ok(None) => {
                        end = true;
                        break;
                    }
                    Err(err) => {
                        // The sender reset the stream or the connection died: nobody to answer.
                        debug!(%identity, error = %err, "snapshot stream broke");
                        shared.counters.event(&shared.counters.snapshots_rejected);
                        return Err(SnapshotRefusal::Io(format!("stream broke: {err}")));
                    }
                }
            }
            let filled = buf.len();
            got += filled as u64;
            Counters::add(&shared.counters.snapshot_bytes_received, filled as u64);
            progress.received.store(got, Ordering::Relaxed);
            if got > header.size {
                return Err(refuse(SnapshotRefusal::SizeMismatch {
                    expected: header.size,
                    got,
                }));
            }
            if filled > 0 {
                // A closed queue means the writer failed; its error is read below.
                if to_disk.send(buf).await.is_err() {
                    break 'stream;
                }
            }
            if end {
                break;
            }
        }
        drop(to_disk);
        let (_, crc) = match written.await {
            Ok(result) => result.map_err(io)?,
            Err(e) => return Err(refuse(SnapshotRefusal::Io(format!("writer failed: {e}")))),
        };
        if got != header.size {
            return Err(refuse(SnapshotRefusal::SizeMismatch {
                expected: header.size,
                got,
            }));
        }
        if crc != header.crc32 {
            return Err(refuse(SnapshotRefusal::ChecksumMismatch {
                expected: header.crc32,
                got: crc,
            }));
        }
        let final_path = dir.join(format!("{name}.snap"));
        tokio::fs::rename(&partial.path, &final_path)
            .await
            .map_err(io)?;
        partial.keep = true;
        Ok((from, final_path))
    }
    .await;

    match outcome {
        Ok((from, path)) => {
            let acked = match frame::encode(&SnapshotAck::Accepted, max) {
                Ok(ack) => send.write_all(&ack).await.is_ok() && send.finish().is_ok(),
                Err(_) => false,
            };
            // Wait for the sender to have the ack before the node may act on the snapshot.
            let delivered = acked && matches!(send.stopped().await, Ok(None));
            if !delivered {
                warn!(from, path = %path.display(), "snapshot acknowledgement not delivered; discarding");
                let _ = tokio::fs::remove_file(&path).await;
                shared.counters.event(&shared.counters.snapshots_rejected);
                return;
            }
            shared.counters.event(&shared.counters.snapshots_received);
            info!(
                from,
                region = header.region_id,
                index = header.index,
                size = header.size,
                "snapshot received"
            );
            let received = ReceivedSnapshot {
                from_store: from,
                header,
                path,
            };
            if let Err(err) = shared.snapshots_tx.send(received).await {
                let _ = tokio::fs::remove_file(&err.0.path).await;
            }
        }
        Err(reason) => {
            let _ = recv.stop(quinn::VarInt::from_u32(crate::wire::STREAM_REFUSED));
            if let Ok(ack) = frame::encode(&SnapshotAck::Rejected(reason), max)
                && send.write_all(&ack).await.is_ok()
            {
                let _ = send.finish();
                let _ = send.stopped().await;
            }
        }
    }
}
