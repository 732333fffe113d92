//! Request/response RPC for the client and admin services: one bidirectional stream per call.
//!
//! Calls that become ready together share datagrams: a server serves all calls of a connection
//! in one task (see `serve_connection`), so the answers of one Raft round are written in one
//! poll, and a client's concurrent calls are sent by one task per connection ([`send_loop`]).
//! Each datagram costs a system call on each side and on loopback the receiver's wake-up too.
//!
//! Bodies are opaque bytes; the node defines and encodes its request and response types.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};
use tracing::warn;

use crate::certs::TlsIdentity;
use crate::endpoint::{Shared, connection_error};
use crate::error::{ConnectError, RpcError};
use crate::frame::{self, DEFAULT_MAX_FRAME, FrameError};
use crate::identity::Identity;
use crate::stats::Counters;
use crate::tls::{self, ConnectionTuning};
use crate::wire::{RemoteError, RpcReply, Service, StreamHead};

/// The future a handler returns.
pub type RpcFuture = Pin<Box<dyn Future<Output = Result<Bytes, String>> + Send>>;

/// The node's implementation of its services. `Err` is reported to the caller as
/// [`RemoteError::Handler`]; application-level errors belong in the reply body.
pub trait RpcHandler: Send + Sync + 'static {
    fn call(&self, from: Identity, service: Service, body: Bytes) -> RpcFuture;
}

impl<F, Fut> RpcHandler for F
where
    F: Fn(Identity, Service, Bytes) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Bytes, String>> + Send + 'static,
{
    fn call(&self, from: Identity, service: Service, body: Bytes) -> RpcFuture {
        Box::pin(self(from, service, body))
    }
}

/// Serves one request whose head has been read, and writes the reply.
pub(crate) async fn serve<M>(
    shared: &Shared<M>,
    from: Identity,
    service: Service,
    body: Bytes,
    mut send: quinn::SendStream,
) {
    let max = shared.config.max_frame_size;
    let reply: RpcReply = match shared.rpc_handler() {
        None => Err(RemoteError::NoHandler),
        Some(handler) => handler
            .call(from.clone(), service, body)
            .await
            .map_err(RemoteError::Handler),
    };
    let encoded = match frame::encode(&reply, max) {
        Ok(encoded) => encoded,
        Err(err) => {
            warn!(%from, ?service, error = %err, "RPC reply cannot be sent");
            let fallback: RpcReply =
                Err(RemoteError::Handler(format!("reply cannot be sent: {err}")));
            match frame::encode(&fallback, max) {
                Ok(encoded) => encoded,
                Err(_) => return,
            }
        }
    };
    if send.write_all(&encoded).await.is_ok() {
        let _ = send.finish();
        Counters::add(&shared.counters.rpcs_served, 1);
    }
}

/// Performs one call on an established connection (no timeout; callers add one).
pub(crate) async fn call_on(
    conn: &quinn::Connection,
    service: Service,
    body: Bytes,
    max: usize,
) -> Result<Bytes, RpcError> {
    let recv = send_request(conn, service, body, max).await?;
    read_reply(conn, recv, max).await
}

/// Opens a stream and sends one request on it.
async fn send_request(
    conn: &quinn::Connection,
    service: Service,
    body: Bytes,
    max: usize,
) -> Result<quinn::RecvStream, RpcError> {
    let request = frame::encode(&StreamHead::Rpc { service, body }, max)?;
    // Only a stream that never opened proves the request was never sent: that is a connect
    // error, which callers may retry elsewhere. Once the stream is open, part or all of the
    // request may have reached the server, whatever ended the connection.
    let (mut send, recv) = conn
        .open_bi()
        .await
        .map_err(|e| match conn.close_reason() {
            Some(reason) => RpcError::Connect(connection_error(conn.remote_address(), &reason)),
            None => RpcError::ConnectionLost(e.to_string()),
        })?;
    send.write_all(&request)
        .await
        .map_err(|e| after_open(conn, e.to_string()))?;
    let _ = send.finish();
    Ok(recv)
}

async fn read_reply(
    conn: &quinn::Connection,
    mut recv: quinn::RecvStream,
    max: usize,
) -> Result<Bytes, RpcError> {
    let reply: RpcReply = match frame::read_required(&mut recv, max).await {
        Ok(reply) => reply,
        Err(FrameError::Io(e)) => return Err(after_open(conn, e.to_string())),
        Err(other) => return Err(other.into()),
    };
    Ok(reply?)
}

/// The error for a call whose stream was open when it failed: the request's fate is unknown,
/// except when the server refused the certificate (TLS 1.3 clients learn of the refusal only
/// after their first bytes are out), in which case it accepted nothing on that connection.
fn after_open(conn: &quinn::Connection, detail: String) -> RpcError {
    match conn
        .close_reason()
        .map(|r| connection_error(conn.remote_address(), &r))
    {
        Some(refused @ (ConnectError::TlsRefused { .. } | ConnectError::HelloRefused { .. })) => {
            RpcError::Connect(refused)
        }
        _ => RpcError::ConnectionLost(detail),
    }
}

/// A request waiting for a connection's [`send_loop`].
struct Outgoing {
    service: Service,
    body: Bytes,
    sent: oneshot::Sender<Result<quinn::RecvStream, RpcError>>,
}

/// Sends the requests of all callers of one connection. Callers that become ready together
/// (one packet of answers wakes many) queue their next requests while this task yields, and
/// it writes them all in one poll, so they leave in as few packets as fit rather than one
/// packet each.
async fn send_loop(
    conn: quinn::Connection,
    mut queue: mpsc::UnboundedReceiver<Outgoing>,
    max: usize,
) {
    while let Some(first) = queue.recv().await {
        tokio::task::yield_now().await;
        let mut next = Some(first);
        while let Some(out) = next {
            let result = send_request(&conn, out.service, out.body, max).await;
            // A caller that gave up (timed out) no longer listens; its request went out or not
            // like any other, which its timeout error already says.
            let _ = out.sent.send(result);
            next = queue.try_recv().ok();
        }
    }
}

/// An established connection, the queue of its sender task and its calls in progress.
#[derive(Clone)]
struct Link {
    conn: quinn::Connection,
    queue: mpsc::UnboundedSender<Outgoing>,
    in_flight: Arc<AtomicUsize>,
}

/// Counts a call in progress on a [`Link`] until it ends, however it ends.
struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Options of an [`RpcClient`].
#[derive(Clone, Debug)]
pub struct RpcClientOptions {
    /// Name verified against the server certificate; defaults to the address's IP, which node
    /// certificates carry as a SAN when issued for it.
    pub server_name: Option<String>,
    /// Default timeout of a call, connecting included.
    pub timeout: Duration,
    /// The most a call spends establishing a connection. Expiring is a connect error (the
    /// request was never sent, so a caller may safely try another node), unlike the call's
    /// own timeout, after which the request's fate is unknown.
    pub connect_timeout: Duration,
    pub max_frame_size: usize,
    pub tuning: ConnectionTuning,
}

impl Default for RpcClientOptions {
    fn default() -> Self {
        Self {
            server_name: None,
            timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(1),
            max_frame_size: DEFAULT_MAX_FRAME,
            tuning: ConnectionTuning::default(),
        }
    }
}

/// A client of one node's services, authenticating with a client (or node) certificate.
/// Connects lazily and reconnects after a lost connection.
pub struct RpcClient {
    quic: quinn::Endpoint,
    addr: SocketAddr,
    server_name: String,
    options: RpcClientOptions,
    conn: tokio::sync::Mutex<Option<Link>>,
}

impl RpcClient {
    /// Prepares a client for the node at `addr`. Must be called inside a tokio runtime.
    pub fn new(
        identity: &TlsIdentity,
        addr: SocketAddr,
        options: RpcClientOptions,
    ) -> Result<Self, RpcError> {
        let client_config = tls::client_config(identity, &options.tuning)
            .map_err(|e| RpcError::Setup(e.to_string()))?;
        let local: SocketAddr = match addr {
            SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
            SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
        };
        let socket = crate::socket::bind(local)
            .map_err(|e| RpcError::Setup(format!("binding {local}: {e}")))?;
        let mut quic = quinn::Endpoint::new(
            quinn::EndpointConfig::default(),
            None,
            socket,
            Arc::new(quinn::TokioRuntime),
        )
        .map_err(|e| RpcError::Setup(format!("binding {local}: {e}")))?;
        quic.set_default_client_config(client_config);
        let server_name = options
            .server_name
            .clone()
            .unwrap_or_else(|| addr.ip().to_string());
        Ok(Self {
            quic,
            addr,
            server_name,
            options,
            conn: tokio::sync::Mutex::new(None),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Calls `service` with the default timeout.
    pub async fn call(&self, service: Service, body: Bytes) -> Result<Bytes, RpcError> {
        self.call_with_timeout(service, body, self.options.timeout)
            .await
    }

    /// Calls `service`; `timeout` covers connecting, sending and the reply.
    pub async fn call_with_timeout(
        &self,
        service: Service,
        body: Bytes,
        timeout: Duration,
    ) -> Result<Bytes, RpcError> {
        let connect_within = self.options.connect_timeout.min(timeout);
        let call = async {
            let link = tokio::time::timeout(connect_within, self.connection())
                .await
                .map_err(|_| {
                    RpcError::Connect(ConnectError::Timeout {
                        addr: self.addr,
                        after: connect_within,
                    })
                })??;
            let max = self.options.max_frame_size;
            let alone = link.in_flight.fetch_add(1, Ordering::Relaxed) == 0;
            let _in_flight = InFlight(&link.in_flight);
            // A call alone on its connection has nothing to share a packet with: it sends
            // its request itself rather than through the sender task.
            let recv = if alone {
                send_request(&link.conn, service, body, max).await?
            } else {
                let (sent, stream) = oneshot::channel();
                match link.queue.send(Outgoing {
                    service,
                    body,
                    sent,
                }) {
                    Ok(()) => stream.await.unwrap_or_else(|_| {
                        Err(RpcError::ConnectionLost(
                            "the connection's sender stopped".into(),
                        ))
                    })?,
                    // The sender stops only with the runtime; send directly then.
                    Err(mpsc::error::SendError(out)) => {
                        send_request(&link.conn, out.service, out.body, max).await?
                    }
                }
            };
            read_reply(&link.conn, recv, max).await
        };
        tokio::time::timeout(timeout, call)
            .await
            .map_err(|_| RpcError::Timeout(timeout))?
    }

    async fn connection(&self) -> Result<Link, RpcError> {
        let mut guard = self.conn.lock().await;
        if let Some(link) = guard.as_ref().filter(|l| l.conn.close_reason().is_none()) {
            return Ok(link.clone());
        }
        let addr = self.addr;
        let connecting = self.quic.connect(addr, &self.server_name).map_err(|e| {
            RpcError::Connect(ConnectError::Unreachable {
                addr,
                reason: e.to_string(),
            })
        })?;
        let conn = connecting
            .await
            .map_err(|e| RpcError::Connect(connection_error(addr, &e)))?;
        let (queue, rx) = mpsc::unbounded_channel();
        tokio::spawn(send_loop(conn.clone(), rx, self.options.max_frame_size));
        let link = Link {
            conn,
            queue,
            in_flight: Arc::new(AtomicUsize::new(0)),
        };
        *guard = Some(link.clone());
        Ok(link)
    }

    /// Closes the connection and waits (bounded) until the server has been told.
    pub async fn close(&self) {
        if let Some(Link { conn, .. }) = self.conn.lock().await.take() {
            conn.close(
                quinn::VarInt::from_u32(crate::wire::CLOSE_SHUTDOWN),
                b"client done",
            );
        }
        let _ = tokio::time::timeout(Duration::from_secs(1), self.quic.wait_idle()).await;
    }
}
