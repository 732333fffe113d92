//! A node's QUIC endpoint: one UDP socket that accepts connections and dials peers.

use std::collections::HashMap;
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use leaky_bucket::RateLimiter;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinSet;
use tracing::{debug, info, warn};

use crate::certs::{TlsIdentity, store_dns_name};
use crate::config::EndpointConfig;
use crate::error::{ConnectError, EndpointError, RpcError, SnapshotError};
use crate::filter::{Direction, Filter, Traffic, Verdict};
use crate::frame::{self, FrameError};
use crate::identity::Identity;
use crate::link::{self, LinkSender, SendError};
use crate::rpc::{self, RpcHandler};
use crate::snapshot::{self, ReceivedSnapshot, SnapshotMeta, SnapshotProgress};
use crate::stats::{Counters, Stats};
use crate::tls;
use crate::wire::{self, HelloReply, Service, StreamHead};

/// A Raft message delivered to the node, with the store that sent it (from its certificate).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Received<M> {
    pub from_store: u64,
    pub message: M,
}

/// The Raft messages an endpoint delivers, one frame's worth at a time: what a peer sent
/// together arrives together, so the node can step it in one round (one fsync) instead of one
/// round per message.
pub struct Inbox<M> {
    frames: mpsc::Receiver<Vec<Received<M>>>,
    pending: std::collections::VecDeque<Received<M>>,
}

impl<M> Inbox<M> {
    /// The next message; `None` once the endpoint is gone.
    pub async fn recv(&mut self) -> Option<Received<M>> {
        loop {
            if let Some(message) = self.pending.pop_front() {
                return Some(message);
            }
            let frame = self.frames.recv().await?;
            self.pending.extend(frame);
        }
    }

    /// The messages of the next frame (never empty); `None` once the endpoint is gone.
    pub async fn recv_batch(&mut self) -> Option<Vec<Received<M>>> {
        if !self.pending.is_empty() {
            return Some(self.pending.drain(..).collect());
        }
        loop {
            let frame = self.frames.recv().await?;
            if !frame.is_empty() {
                return Some(frame);
            }
        }
    }

    /// The messages of a frame already delivered, without waiting.
    pub fn try_recv_batch(&mut self) -> Option<Vec<Received<M>>> {
        if !self.pending.is_empty() {
            return Some(self.pending.drain(..).collect());
        }
        self.frames.try_recv().ok()
    }
}

/// What an endpoint delivers to its node. Keep draining all three: a full `messages` inbox
/// slows peers down; full `unreachable` and `snapshots` channels lose notifications.
pub struct Events<M> {
    pub messages: Inbox<M>,
    /// Verified snapshots, already acknowledged to the sender.
    pub snapshots: mpsc::Receiver<ReceivedSnapshot>,
    /// Store ids whose connection attempt or send failed, or whose connection was lost (timed
    /// out, reset or closed by the peer); feed to `report_unreachable`. A lost connection is
    /// reported even when nothing was being sent, so a node whose regions send nothing while
    /// idle still learns that a store went away.
    pub unreachable: mpsc::Receiver<u64>,
}

/// Capacity of the notification channels (unreachable reports, received snapshots).
const NOTIFY_CAPACITY: usize = 1024;
/// Rate limiter refill period. leaky-bucket reschedules each refill from the wake-up time in
/// whole milliseconds, losing up to about a millisecond per period; at 10 ms that made limits
/// ~12% slow, at 100 ms the error is about 1% and pacing is still finer than a second.
const LIMITER_INTERVAL: Duration = Duration::from_millis(100);

pub(crate) struct Shared<M> {
    pub(crate) config: EndpointConfig,
    pub(crate) quic: quinn::Endpoint,
    pub(crate) client_config: quinn::ClientConfig,
    addr_book: RwLock<HashMap<u64, SocketAddr>>,
    peers: Mutex<HashMap<u64, Arc<PeerSlot>>>,
    pub(crate) filter: Filter,
    pub(crate) counters: Counters,
    pub(crate) inbox: mpsc::Sender<Vec<Received<M>>>,
    pub(crate) snapshots_tx: mpsc::Sender<ReceivedSnapshot>,
    unreachable_tx: mpsc::Sender<u64>,
    rpc_handler: RwLock<Option<Arc<dyn RpcHandler>>>,
    pub(crate) limiter: Option<RateLimiter>,
    pub(crate) send_slots: Semaphore,
    pub(crate) recv_slots: Arc<Semaphore>,
    pub(crate) incoming: crate::snapshot::Incoming,
    tasks: Mutex<JoinSet<()>>,
}

/// One dialed QUIC connection as [`Endpoint::connections`] reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectionInfo {
    /// The store at the other end.
    pub store_id: u64,
    /// quinn's current estimate of the round-trip time.
    pub rtt: Duration,
    /// Packets sent and declared lost on the connection's path since it was opened.
    pub sent_packets: u64,
    pub lost_packets: u64,
}

#[derive(Default)]
struct PeerSlot {
    /// Held across a dial so concurrent users of one store share one connection.
    conn: tokio::sync::Mutex<Option<quinn::Connection>>,
    link: Mutex<Option<LinkSender>>,
}

/// A node's transport endpoint, generic over the node's Raft message envelope `M`.
///
/// Dropping it stops all its tasks and closes its connections; prefer [`Endpoint::shutdown`],
/// which also waits until peers have been told.
pub struct Endpoint<M> {
    shared: Arc<Shared<M>>,
    _message: PhantomData<fn(M) -> M>,
}

impl<M> Endpoint<M>
where
    M: Serialize + DeserializeOwned + Send + 'static,
{
    /// Binds the UDP socket, starts serving, and returns the endpoint and its event channels.
    /// Must be called inside a tokio runtime.
    pub fn bind(
        config: EndpointConfig,
        tls_identity: TlsIdentity,
    ) -> Result<(Self, Events<M>), EndpointError> {
        let leaf = tls_identity
            .chain
            .first()
            .ok_or(crate::identity::IdentityError::NoCertificate)?;
        let own = Identity::from_leaf(leaf)?;
        if own != Identity::Store(config.store_id) {
            return Err(EndpointError::WrongCertificate {
                expected: config.store_id,
                found: own,
            });
        }
        std::fs::create_dir_all(&config.snapshot.dir).map_err(|source| {
            EndpointError::SnapshotDir {
                path: config.snapshot.dir.clone(),
                source,
            }
        })?;
        let server_config = tls::server_config(&tls_identity, &config.tuning)?;
        let client_config = tls::client_config(&tls_identity, &config.tuning)?;
        let socket =
            crate::socket::bind(config.listen_addr).map_err(|source| EndpointError::Bind {
                addr: config.listen_addr,
                source,
            })?;
        let quic = quinn::Endpoint::new(
            quinn::EndpointConfig::default(),
            Some(server_config),
            socket,
            Arc::new(quinn::TokioRuntime),
        )
        .map_err(|source| EndpointError::Bind {
            addr: config.listen_addr,
            source,
        })?;

        let (inbox, messages) = mpsc::channel(config.inbox_capacity.max(1));
        let (snapshots_tx, snapshots) = mpsc::channel(NOTIFY_CAPACITY);
        let (unreachable_tx, unreachable) = mpsc::channel(NOTIFY_CAPACITY);
        let limiter = rate_limiter(config.snapshot.max_bytes_per_sec);
        let shared = Arc::new(Shared {
            send_slots: Semaphore::new(config.snapshot.max_concurrent_sends.max(1)),
            recv_slots: Arc::new(Semaphore::new(
                config.snapshot.max_concurrent_receives.max(1),
            )),
            config,
            quic,
            client_config,
            addr_book: RwLock::new(HashMap::new()),
            peers: Mutex::new(HashMap::new()),
            filter: Filter::default(),
            counters: Counters::default(),
            inbox,
            snapshots_tx,
            unreachable_tx,
            rpc_handler: RwLock::new(None),
            limiter,
            incoming: Default::default(),
            tasks: Mutex::new(JoinSet::new()),
        });
        shared.spawn(accept_loop(shared.clone()));
        shared.spawn(report_cut_off_stores(shared.clone()));
        info!(store = shared.config.store_id, addr = ?shared.quic.local_addr().ok(), "transport endpoint listening");
        Ok((
            Self {
                shared,
                _message: PhantomData,
            },
            Events {
                messages: Inbox {
                    frames: messages,
                    pending: Default::default(),
                },
                snapshots,
                unreachable,
            },
        ))
    }

    pub fn store_id(&self) -> u64 {
        self.shared.config.store_id
    }

    /// The bound address (useful after binding port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.shared.quic.local_addr()
    }

    pub fn config(&self) -> &EndpointConfig {
        &self.shared.config
    }

    /// Registers (or replaces) the handler of the client and admin services.
    pub fn set_rpc_handler(&self, handler: Arc<dyn RpcHandler>) {
        *self
            .shared
            .rpc_handler
            .write()
            .unwrap_or_else(|e| e.into_inner()) = Some(handler);
    }

    /// Records where `store` listens. A changed address takes effect on the next (re)connect.
    pub fn set_peer_addr(&self, store: u64, addr: SocketAddr) {
        let old = self
            .shared
            .addr_book
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(store, addr);
        if old.is_some_and(|old| old != addr) {
            info!(store, %addr, "peer address changed");
        }
    }

    /// Forgets a store: its address, link and connection.
    pub fn remove_peer(&self, store: u64) {
        self.shared
            .addr_book
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&store);
        let slot = self
            .shared
            .peers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&store);
        // A dial in progress holds the lock; its connection is dropped with the slot anyway.
        if let Some(slot) = slot
            && let Ok(conn) = slot.conn.try_lock()
            && let Some(conn) = conn.as_ref()
        {
            conn.close(
                quinn::VarInt::from_u32(wire::CLOSE_SHUTDOWN),
                b"peer removed",
            );
        }
    }

    pub fn peer_addr(&self, store: u64) -> Option<SocketAddr> {
        self.shared.peer_addr(store)
    }

    /// Queues `message` for `store` without waiting. Messages are batched by a per-store writer;
    /// on failure the store is reported on [`Events::unreachable`]. An error here means the
    /// message was not queued (and was counted).
    pub fn send(&self, store: u64, message: &M) -> Result<(), SendError> {
        self.send_all(store, std::slice::from_ref(message))
    }

    /// Queues `messages` for `store` as one item of its queue, so they go out together (one
    /// wake-up of the store's writer, one frame while they fit). The fault filter judges each
    /// message. A message that can never fit a frame is counted and left out while the others
    /// go (the error names it); a full queue or a store the filter blocks loses the whole batch
    /// (counted, and an error).
    pub fn send_all(&self, store: u64, messages: &[M]) -> Result<(), SendError> {
        let max = self.shared.config.max_frame_size;
        let counters = &self.shared.counters;
        let mut encoded = Vec::with_capacity(messages.len());
        let mut refused = None;
        for message in messages {
            let verdict = self
                .shared
                .filter
                .check(Direction::Outgoing, Traffic::Raft, store);
            if matches!(verdict, Verdict::Drop | Verdict::Block) {
                counters.event(&counters.dropped_by_filter);
                if matches!(verdict, Verdict::Block) {
                    self.shared.report_unreachable(store);
                    return Err(SendError::Blocked);
                }
                continue;
            }
            let bytes = match link::encode_message(message, max) {
                Ok(bytes) => bytes,
                Err(e) => {
                    Counters::add(&counters.dropped_oversized, 1);
                    refused.get_or_insert(e);
                    continue;
                }
            };
            if let Verdict::Delay(delay) = verdict {
                let shared = self.shared.clone();
                self.shared.spawn(async move {
                    tokio::time::sleep(delay).await;
                    // A delayed message that later finds a full queue is dropped and counted there.
                    let _ = shared.enqueue(store, vec![bytes]);
                });
                continue;
            }
            encoded.push(bytes);
        }
        if !encoded.is_empty() {
            self.shared.enqueue(store, encoded)?;
        }
        refused.map_or(Ok(()), Err)
    }

    /// Calls a service of another store over the store link's connection.
    pub async fn call(
        &self,
        store: u64,
        service: Service,
        body: Bytes,
        timeout: Duration,
    ) -> Result<Bytes, RpcError> {
        let max = self.shared.config.max_frame_size;
        let call = async {
            let conn = self.shared.connect_store(store).await?;
            rpc::call_on(&conn, service, body, max).await
        };
        tokio::time::timeout(timeout, call)
            .await
            .map_err(|_| RpcError::Timeout(timeout))?
    }

    /// Streams the snapshot file at `path` to `store` and returns once the receiver has verified
    /// and acknowledged it. Progress (bytes sent of total) is published on `progress` if given.
    pub async fn send_snapshot(
        &self,
        store: u64,
        meta: SnapshotMeta,
        path: &std::path::Path,
        progress: Option<&watch::Sender<SnapshotProgress>>,
    ) -> Result<(), SnapshotError> {
        snapshot::send(&self.shared, store, meta, path, progress).await
    }

    /// The fault-injection filter of this endpoint (inert until rules are set).
    pub fn filter(&self) -> &Filter {
        &self.shared.filter
    }

    /// The snapshots being received right now, with the bytes that arrived so far.
    pub fn incoming_snapshots(&self) -> Vec<crate::snapshot::IncomingSnapshot> {
        self.shared.incoming.list()
    }

    pub fn stats(&self) -> Stats {
        self.shared.counters.snapshot()
    }

    /// The QUIC connections this endpoint dialed and still holds, with quinn's path and loss
    /// figures. A connection being dialed right now is left out rather than waited for.
    pub fn connections(&self) -> Vec<ConnectionInfo> {
        let peers: Vec<(u64, Arc<PeerSlot>)> = self
            .shared
            .peers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(store, slot)| (*store, slot.clone()))
            .collect();
        let mut out = Vec::new();
        for (store_id, slot) in peers {
            let Ok(conn) = slot.conn.try_lock() else {
                continue;
            };
            let Some(conn) = conn.as_ref().filter(|c| c.close_reason().is_none()) else {
                continue;
            };
            let stats = conn.stats();
            out.push(ConnectionInfo {
                store_id,
                rtt: conn.rtt(),
                sent_packets: stats.path.sent_packets,
                lost_packets: stats.path.lost_packets,
            });
        }
        out.sort_by_key(|c| c.store_id);
        out
    }

    /// Waits until `pred` holds for the counters. Only refusals, framing errors, filter drops
    /// and snapshot outcomes wake the waiter; other counters are seen when one of those changes.
    pub async fn wait_stats(&self, pred: impl FnMut(&Stats) -> bool) -> Stats {
        self.shared.counters.wait_until(pred).await
    }

    /// Stops serving, closes every connection with a reason, and waits (bounded) until peers
    /// have been told. Sends through any handle fail from here on; the port is free once the
    /// last handle is dropped.
    pub async fn close(&self) {
        self.shared.close();
        let _ = tokio::time::timeout(Duration::from_secs(2), self.shared.quic.wait_idle()).await;
    }

    /// [`Endpoint::close`], then lets go of this handle, so the port can be bound again.
    pub async fn shutdown(self) {
        self.close().await;
    }
}

impl<M> Drop for Endpoint<M> {
    fn drop(&mut self) {
        self.shared.close();
    }
}

fn rate_limiter(bytes_per_sec: u64) -> Option<RateLimiter> {
    if bytes_per_sec == 0 {
        return None;
    }
    let per_sec = usize::try_from(bytes_per_sec).unwrap_or(usize::MAX);
    let refill = (per_sec / 10).max(1);
    Some(
        RateLimiter::builder()
            // Starting with one period's tokens offsets the wait for the first refill, so a
            // transfer's duration is size / rate rather than size / rate + one period.
            .initial(refill)
            .refill(refill)
            .interval(LIMITER_INTERVAL)
            // One period of burst, so an idle limiter does not let a snapshot run above the limit.
            .max(refill)
            .build(),
    )
}

impl<M> Shared<M> {
    fn close(&self) {
        self.quic.close(
            quinn::VarInt::from_u32(wire::CLOSE_SHUTDOWN),
            b"endpoint shutting down",
        );
        self.tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .abort_all();
    }

    pub(crate) fn spawn<F>(&self, fut: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let mut tasks = self.tasks.lock().unwrap_or_else(|e| e.into_inner());
        // Reap finished tasks so per-stream tasks do not accumulate.
        while tasks.try_join_next().is_some() {}
        tasks.spawn(fut);
    }

    pub(crate) fn peer_addr(&self, store: u64) -> Option<SocketAddr> {
        self.addr_book
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&store)
            .copied()
    }

    pub(crate) fn report_unreachable(&self, store: u64) {
        // A full channel means the node already has reports queued; losing one is harmless.
        let _ = self.unreachable_tx.try_send(store);
    }

    fn slot(&self, store: u64) -> Arc<PeerSlot> {
        self.peers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(store)
            .or_default()
            .clone()
    }

    /// Returns the live connection to `store`, dialing (with hello) if there is none.
    pub(crate) async fn connect_store(
        &self,
        store: u64,
    ) -> Result<quinn::Connection, ConnectError> {
        let addr = self
            .peer_addr(store)
            .ok_or(ConnectError::NoAddress(store))?;
        let slot = self.slot(store);
        let mut conn = slot.conn.lock().await;
        if let Some(existing) = conn.as_ref() {
            if existing.close_reason().is_none() && existing.remote_address() == addr {
                return Ok(existing.clone());
            }
            existing.close(quinn::VarInt::from_u32(wire::CLOSE_SHUTDOWN), b"replaced");
            *conn = None;
        }
        let timeout = self.config.connect_timeout;
        let fresh = tokio::time::timeout(timeout, self.dial(store, addr))
            .await
            .map_err(|_| ConnectError::Timeout {
                addr,
                after: timeout,
            })??;
        Counters::add(&self.counters.connections_dialed, 1);
        debug!(store, %addr, "connected to peer");
        let watched = fresh.clone();
        let unreachable = self.unreachable_tx.clone();
        self.spawn(async move {
            if is_lost(&watched.closed().await) {
                let _ = unreachable.try_send(store);
            }
        });
        *conn = Some(fresh.clone());
        Ok(fresh)
    }

    async fn dial(&self, store: u64, addr: SocketAddr) -> Result<quinn::Connection, ConnectError> {
        let connecting = self
            .quic
            .connect_with(self.client_config.clone(), addr, &store_dns_name(store))
            .map_err(|e| match e {
                quinn::ConnectError::EndpointStopping => ConnectError::Closed,
                other => ConnectError::Unreachable {
                    addr,
                    reason: other.to_string(),
                },
            })?;
        let conn = connecting.await.map_err(|e| connection_error(addr, &e))?;
        let peer = Identity::of_connection(&conn).map_err(|e| ConnectError::TlsRefused {
            addr,
            reason: e.to_string(),
        })?;
        if peer != Identity::Store(store) {
            conn.close(
                quinn::VarInt::from_u32(wire::CLOSE_BAD_IDENTITY),
                b"not the store dialed",
            );
            return Err(ConnectError::TlsRefused {
                addr,
                reason: format!("expected store {store}, found {peer}"),
            });
        }
        self.hello(&conn, addr).await?;
        Ok(conn)
    }

    /// Announces our store id. In TLS 1.3 the server checks our certificate after the client
    /// considers the handshake done, so this round trip is also where a refused certificate shows.
    async fn hello(&self, conn: &quinn::Connection, addr: SocketAddr) -> Result<(), ConnectError> {
        let max = self.config.max_frame_size;
        let result: Result<HelloReply, FrameError> = async {
            let (mut send, mut recv) = conn.open_bi().await.map_err(std::io::Error::from)?;
            frame::write_frame(
                &mut send,
                &StreamHead::Hello {
                    store_id: self.config.store_id,
                },
                max,
            )
            .await?;
            let _ = send.finish();
            frame::read_required(&mut recv, max).await
        }
        .await;
        match result {
            Ok(HelloReply::Accepted) => Ok(()),
            Err(e) => Err(match conn.close_reason() {
                Some(reason) => connection_error(addr, &reason),
                None => ConnectError::Unreachable {
                    addr,
                    reason: format!("hello failed: {e}"),
                },
            }),
        }
    }

    fn enqueue(self: &Arc<Self>, store: u64, encoded: Vec<Vec<u8>>) -> Result<(), SendError>
    where
        M: Send + 'static,
    {
        let slot = self.slot(store);
        let mut link = slot.link.lock().unwrap_or_else(|e| e.into_inner());
        let sender = match link.as_ref() {
            Some(sender) if !sender.is_closed() => sender.clone(),
            _ => {
                let (sender, writer) = link::spawn_link(self.clone(), store);
                self.spawn(writer);
                *link = Some(sender.clone());
                sender
            }
        };
        drop(link);
        let count = encoded.len() as u64;
        sender
            .push(encoded)
            .inspect_err(|_| Counters::add(&self.counters.dropped_queue_full, count))?;
        Counters::add(&self.counters.messages_queued, count);
        Ok(())
    }

    pub(crate) fn rpc_handler(&self) -> Option<Arc<dyn RpcHandler>> {
        self.rpc_handler
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// Classifies a failed connection for the caller.
pub(crate) fn connection_error(addr: SocketAddr, err: &quinn::ConnectionError) -> ConnectError {
    if tls::is_tls_refusal(err) {
        return ConnectError::TlsRefused {
            addr,
            reason: err.to_string(),
        };
    }
    if let quinn::ConnectionError::ApplicationClosed(close) = err
        && (close.error_code == quinn::VarInt::from_u32(wire::CLOSE_HELLO_MISMATCH)
            || close.error_code == quinn::VarInt::from_u32(wire::CLOSE_BAD_IDENTITY))
    {
        return ConnectError::HelloRefused {
            addr,
            reason: String::from_utf8_lossy(&close.reason).into_owned(),
        };
    }
    if matches!(err, quinn::ConnectionError::LocallyClosed) {
        return ConnectError::Closed;
    }
    ConnectError::Unreachable {
        addr,
        reason: err.to_string(),
    }
}

async fn accept_loop<M>(shared: Arc<Shared<M>>)
where
    M: Serialize + DeserializeOwned + Send + 'static,
{
    while let Some(incoming) = shared.quic.accept().await {
        shared.spawn(serve_connection(shared.clone(), incoming));
    }
}

async fn serve_connection<M>(shared: Arc<Shared<M>>, incoming: quinn::Incoming)
where
    M: Serialize + DeserializeOwned + Send + 'static,
{
    let remote = incoming.remote_address();
    let conn = match incoming.await {
        Ok(conn) => conn,
        Err(err) => {
            shared.counters.event(&shared.counters.handshakes_refused);
            warn!(%remote, error = %err, "refused connection at the TLS handshake");
            return;
        }
    };
    let identity = match Identity::of_connection(&conn) {
        Ok(identity) => identity,
        Err(err) => {
            shared.counters.event(&shared.counters.handshakes_refused);
            warn!(%remote, error = %err, "refused connection: no usable identity in certificate");
            conn.close(
                quinn::VarInt::from_u32(wire::CLOSE_BAD_IDENTITY),
                err.to_string().as_bytes(),
            );
            return;
        }
    };
    debug!(%remote, %identity, "accepted connection");
    // Requests are served inside this task rather than one task each: answers that become
    // ready together (one Raft round commits many writes) are then all written in one poll,
    // so the connection sends them in as few packets as fit, and no task is spawned per call.
    let mut calls = FuturesUnordered::new();
    loop {
        tokio::select! {
            uni = conn.accept_uni() => match uni {
                Ok(recv) => shared.spawn(serve_uni(shared.clone(), identity.clone(), recv)),
                Err(err) => return log_connection_end(&shared, remote, &identity, &err),
            },
            bi = conn.accept_bi() => match bi {
                Ok((send, recv)) => {
                    calls.push(serve_bi(shared.clone(), conn.clone(), identity.clone(), send, recv));
                }
                Err(err) => return log_connection_end(&shared, remote, &identity, &err),
            },
            Some(()) = calls.next(), if !calls.is_empty() => {}
        }
    }
}

/// Whether a connection ended because the other side went away (timed out, reset, closed it),
/// rather than because this endpoint closed it.
fn is_lost(err: &quinn::ConnectionError) -> bool {
    !matches!(err, quinn::ConnectionError::LocallyClosed)
}

/// Reports, once a second, the stores the fault filter cuts off, as a real partition shows:
/// the connection to them times out and every attempt to dial them fails.
async fn report_cut_off_stores<M>(shared: Arc<Shared<M>>) {
    let mut every = tokio::time::interval(Duration::from_secs(1));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        if !shared.filter.is_active() {
            continue;
        }
        let known: Vec<u64> = shared
            .addr_book
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .copied()
            .collect();
        for store in known {
            if shared.filter.cuts_off(store) {
                shared.report_unreachable(store);
            }
        }
    }
}

fn log_connection_end<M>(
    shared: &Shared<M>,
    remote: SocketAddr,
    identity: &Identity,
    err: &quinn::ConnectionError,
) {
    if let Identity::Store(store) = identity
        && is_lost(err)
    {
        shared.report_unreachable(*store);
    }
    match err {
        quinn::ConnectionError::ApplicationClosed(_) | quinn::ConnectionError::LocallyClosed => {
            debug!(%remote, %identity, "connection closed")
        }
        other => info!(%remote, %identity, error = %other, "connection lost"),
    }
}

async fn serve_uni<M>(shared: Arc<Shared<M>>, identity: Identity, mut recv: quinn::RecvStream)
where
    M: Serialize + DeserializeOwned + Send + 'static,
{
    let max = shared.config.max_frame_size;
    let head: StreamHead = match frame::read_required(&mut recv, max).await {
        Ok(head) => head,
        Err(err) => return frame_error(&shared, &identity, &mut recv, &err),
    };
    match (head, identity.store_id()) {
        (StreamHead::Raft, Some(from)) => link::receive(&shared, &identity, from, recv).await,
        (StreamHead::Raft, None) => {
            shared.counters.event(&shared.counters.raft_streams_refused);
            warn!(%identity, "refused Raft-message stream from a non-store identity");
            let _ = recv.stop(quinn::VarInt::from_u32(wire::STREAM_REFUSED));
        }
        (other, _) => {
            shared.counters.event(&shared.counters.frame_errors);
            warn!(%identity, head = ?kind(&other), "unexpected head on a unidirectional stream");
            let _ = recv.stop(quinn::VarInt::from_u32(wire::STREAM_FRAME_ERROR));
        }
    }
}

async fn serve_bi<M>(
    shared: Arc<Shared<M>>,
    conn: quinn::Connection,
    identity: Identity,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
) where
    M: Send + 'static,
{
    let max = shared.config.max_frame_size;
    let head: StreamHead = match frame::read_required(&mut recv, max).await {
        Ok(head) => head,
        Err(err) => {
            let _ = send.reset(quinn::VarInt::from_u32(wire::STREAM_FRAME_ERROR));
            return frame_error(&shared, &identity, &mut recv, &err);
        }
    };
    match head {
        StreamHead::Hello { store_id } => {
            if identity != Identity::Store(store_id) {
                shared.counters.event(&shared.counters.hellos_refused);
                let reason =
                    format!("hello claims store {store_id} but the certificate is for {identity}");
                warn!(remote = %conn.remote_address(), "{reason}; closing connection");
                conn.close(
                    quinn::VarInt::from_u32(wire::CLOSE_HELLO_MISMATCH),
                    reason.as_bytes(),
                );
                return;
            }
            if frame::write_frame(&mut send, &HelloReply::Accepted, max)
                .await
                .is_ok()
            {
                let _ = send.finish();
            }
        }
        StreamHead::Rpc { service, body } => {
            rpc::serve(&shared, identity, service, body, send).await
        }
        // A snapshot streams for seconds: it gets a task of its own.
        StreamHead::Snapshot(header) => shared
            .clone()
            .spawn(async move { snapshot::receive(&shared, identity, header, send, recv).await }),
        StreamHead::Raft => {
            shared.counters.event(&shared.counters.frame_errors);
            warn!(%identity, "Raft head on a bidirectional stream");
            let _ = send.reset(quinn::VarInt::from_u32(wire::STREAM_FRAME_ERROR));
            let _ = recv.stop(quinn::VarInt::from_u32(wire::STREAM_FRAME_ERROR));
        }
    }
}

pub(crate) fn frame_error<M>(
    shared: &Shared<M>,
    identity: &Identity,
    recv: &mut quinn::RecvStream,
    err: &FrameError,
) {
    shared.counters.event(&shared.counters.frame_errors);
    warn!(%identity, error = %err, "closing stream after a framing error");
    let _ = recv.stop(quinn::VarInt::from_u32(wire::STREAM_FRAME_ERROR));
}

fn kind(head: &StreamHead) -> &'static str {
    match head {
        StreamHead::Hello { .. } => "hello",
        StreamHead::Raft => "raft",
        StreamHead::Rpc { .. } => "rpc",
        StreamHead::Snapshot(_) => "snapshot",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(from: u64, messages: &[u32]) -> Vec<Received<u32>> {
        messages
            .iter()
            .map(|&message| Received {
                from_store: from,
                message,
            })
            .collect()
    }

    #[tokio::test]
    async fn an_inbox_hands_out_a_frame_together_or_one_message_at_a_time() {
        let (tx, frames) = mpsc::channel(8);
        let mut inbox = Inbox {
            frames,
            pending: Default::default(),
        };
        for f in [frame(1, &[1, 2]), frame(2, &[3, 4, 5]), frame(1, &[6])] {
            tx.send(f).await.unwrap();
        }
        assert_eq!(inbox.recv_batch().await, Some(frame(1, &[1, 2])));
        // One message taken from a frame leaves the rest of it as the next batch.
        assert_eq!(inbox.recv().await, Some(frame(2, &[3])[0].clone()));
        assert_eq!(inbox.try_recv_batch(), Some(frame(2, &[4, 5])));
        assert_eq!(inbox.try_recv_batch(), Some(frame(1, &[6])));
        assert_eq!(inbox.try_recv_batch(), None);
        drop(tx);
        assert_eq!(inbox.recv_batch().await, None);
        assert_eq!(inbox.recv().await, None);
    }
}
