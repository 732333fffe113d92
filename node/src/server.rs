//! `Node`: a running tinykv node. Starting one opens (or bootstraps) its data dir, binds its
//! QUIC endpoint, starts the storage workers, the raft loop thread and the ticker, and serves
//! the client and admin services until it is shut down.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;
use tinykv_client::{Client, ClientConfig};
use tinykv_proto::api::{self, AdminRequest, AdminResponse, AdminResult, ClusterInfo, KvError};
use tinykv_storage::{
    Engines, INIT_EPOCH_CONF_VER, INIT_EPOCH_VER, OpenOptions, Peer as PeerMeta, Region,
    RegionEpoch, StorageError, StorageWorkers, StoreAddress, StoreIdent,
};
use tinykv_transport::{
    CertError, Endpoint, EndpointConfig, EndpointError, RpcClient, RpcClientOptions, Service,
    TlsFiles, TlsIdentity,
};
use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

use crate::config::{ConfigError, Member, NodeConfig};
use crate::message::RaftMessage;
use crate::metrics::Metrics;
use crate::raftstore::{Store, StoreFailure, StoreMsg, StoreParts, check_reserve_fits};
use crate::read_views::ReadViews;
use crate::service::{FaultHooks, Services};
use crate::status_server::{self, StatusState};

/// How many messages may wait for the raft loop before requests are answered `ServerBusy`.
const STORE_QUEUE: usize = 65_536;
/// The region a cluster is founded with: every key, and the cluster's records.
pub const FIRST_REGION_ID: u64 = tinykv_storage::CLUSTER_REGION_ID;
/// How long a joining store keeps asking to be added while leaders move.
const JOIN_PATIENCE: Duration = Duration::from_secs(30);
/// How long `JoinAs::Voter` waits for a learner to catch up (a large snapshot streams at
/// `snapshot.max-bytes-per-sec`).
const PROMOTE_PATIENCE: Duration = Duration::from_secs(3600);

/// What a joining store becomes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JoinAs {
    /// A learner: it receives and applies the log but does not vote (`node promote` later).
    Learner,
    /// A voter: added as a learner, promoted once it caught up.
    Voter,
}

/// Why a node could not start or join.
#[derive(Debug, Error)]
pub enum NodeError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("data dir {dir}: {source}")]
    Storage { dir: PathBuf, source: StorageError },
    #[error("TLS files: {0}")]
    Tls(#[from] CertError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: EndpointError,
    },
    #[error(
        "data dir {dir} belongs to store {found}, but the configuration says store-id {expected}"
    )]
    StoreIdMismatch {
        dir: PathBuf,
        found: u64,
        expected: u64,
    },
    #[error(
        "data dir {dir} holds no cluster yet and initial-cluster is empty: list the founding members in \
         initial-cluster, or join a running cluster with `tinykv node join --seed ADDR`"
    )]
    NotBootstrapped { dir: PathBuf },
    #[error("joining through {seed}: {reason}")]
    Join { seed: SocketAddr, reason: String },
    /// A founding store starts with an empty data dir while the cluster has seen it run: it
    /// lost its data, and bootstrapping again would bring it back under its old peer with an
    /// empty log (it could vote twice in a term, or help a stale candidate win).
    #[error(
        "data dir {dir} is empty, but store {store_id} has run in this cluster before (store {by} \
         at {addr} says so): its data is lost. Rebuild it instead of starting it: remove its old \
         peer with `tinykv node leave {store_id}`, then start it with `tinykv node join --config \
         FILE --seed {addr}`"
    )]
    LostData {
        dir: PathBuf,
        store_id: u64,
        by: u64,
        addr: SocketAddr,
    },
    #[error("the raft loop could not start: {0}")]
    Thread(std::io::Error),
    #[error(
        "cannot serve status (metrics, health) on {addr}: {source}; set status-addr to a free address, or to '' to turn it off"
    )]
    StatusBind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    /// A write or fsync of the data dir failed while the node ran. Nothing written after it can
    /// be promised durable, so the store stopped rather than answer; every write it had
    /// acknowledged is on disk.
    #[error("store {store_id} stopped to keep its data intact: {cause}")]
    StoreStopped {
        store_id: u64,
        cause: String,
        /// The data dir's filesystem ran out of space.
        out_of_space: bool,
    },
}

/// A running node. Dropping it without `shutdown` stops it abruptly (as a crash would).
pub struct Node {
    store_id: u64,
    addr: SocketAddr,
    config: Arc<NodeConfig>,
    tx: mpsc::Sender<StoreMsg>,
    endpoint: Arc<Endpoint<RaftMessage>>,
    raft_thread: Option<std::thread::JoinHandle<()>>,
    workers: Option<StorageWorkers>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    failure: watch::Receiver<Option<StoreFailure>>,
    status_addr: Option<SocketAddr>,
}

impl Node {
    /// Starts a node; a fresh data dir is bootstrapped from `initial-cluster`.
    pub async fn start(config: NodeConfig) -> Result<Node, NodeError> {
        Node::launch(config, false).await
    }

    /// Starts a node with a fresh data dir and adds it to the cluster `seed` belongs to: it
    /// learns the cluster from the seed. With the placement driver on, that is all: the store
    /// reports to the driver, which moves replicas onto it. Without, it asks each region's
    /// leader to add a learner on this store under a newly allocated peer id, which is filled
    /// by a snapshot. With
    /// `JoinAs::Learner` it returns once every region added its learner; with `JoinAs::Voter`
    /// once every learner caught up and was promoted.
    pub async fn join(
        config: NodeConfig,
        seed: SocketAddr,
        join_as: JoinAs,
    ) -> Result<Node, NodeError> {
        config.validate()?;
        refuse_lost_member(&config, seed).await?;
        let node = Node::launch(config, true).await?;
        if let Err(reason) = node.join_through(seed, join_as).await {
            node.shutdown().await;
            return Err(NodeError::Join { seed, reason });
        }
        Ok(node)
    }

    async fn launch(config: NodeConfig, joining: bool) -> Result<Node, NodeError> {
        config.validate()?;
        check_reserve_fits(&config)?;
        let config = Arc::new(config);
        let dir = config.data_dir.clone();
        let storage_err = |source| NodeError::Storage {
            dir: dir.clone(),
            source,
        };
        let cluster_id = config.cluster_id();
        if !joining && !config.initial_cluster.is_empty() && !Engines::exists(&dir) {
            refuse_lost_founder(&config).await?;
        }
        let (engines, recovery) = Engines::open(
            &dir,
            OpenOptions {
                expected_cluster_id: Some(cluster_id),
            },
        )
        .map_err(storage_err)?;
        if !recovery.completed.is_empty() || !recovery.needs_snapshot.is_empty() {
            info!(completed = ?recovery.completed, needs_snapshot = ?recovery.needs_snapshot, "recovered interrupted snapshot applies");
        }
        bootstrap(&engines, &config, cluster_id, joining).map_err(|e| match e {
            BootstrapError::Storage(source) => NodeError::Storage {
                dir: dir.clone(),
                source,
            },
            BootstrapError::Mismatch(found) => NodeError::StoreIdMismatch {
                dir: dir.clone(),
                found,
                expected: config.store_id,
            },
            BootstrapError::Empty => NodeError::NotBootstrapped { dir: dir.clone() },
        })?;
        let workers = StorageWorkers::start(&engines).map_err(storage_err)?;
        let identity = TlsIdentity::load(&TlsFiles {
            ca: config.tls.ca.clone(),
            cert: config.tls.cert.clone(),
            key: config.tls.key.clone(),
        })?;
        let mut ep_config = EndpointConfig::new(
            config.store_id,
            config.listen_addr,
            engines.snap_dir().join("incoming"),
        );
        // A store killed without a word is noticed only by its connections going quiet; one
        // election timeout of silence (pings every quarter of it) reports it lost, and the
        // followers of its leaders elect at once, hibernating or not. Never under a second:
        // a busy machine must not lose its links to a short stall.
        let lost_after = config.raft.election_timeout().max(MIN_LOST_AFTER);
        ep_config.tuning.idle_timeout = lost_after;
        ep_config.tuning.keep_alive = lost_after / 4;
        // The election timeout is sized to the network (about ten round trips or more), so a
        // twentieth of it is a fair first guess: a lost handshake packet is sent again well
        // within one election timeout, and a store stopping while a peer is down does not
        // wait a second or more on the handshake it had started towards it.
        ep_config.tuning.initial_rtt = lost_after / 20;
        ep_config.snapshot.chunk_size = config.snapshot.chunk_size.0 as usize;
        ep_config.snapshot.max_bytes_per_sec = config.snapshot.max_bytes_per_sec.0;
        ep_config.snapshot.max_concurrent_sends = config.snapshot.concurrent_send_limit;
        ep_config.snapshot.max_concurrent_receives = config.snapshot.concurrent_recv_limit;
        let (endpoint, events) =
            Endpoint::<RaftMessage>::bind(ep_config, identity).map_err(|source| {
                NodeError::Bind {
                    addr: config.listen_addr,
                    source,
                }
            })?;
        let endpoint = Arc::new(endpoint);
        // Bound before the store starts, so that a taken port fails the start cleanly.
        let status_listener = match config.status_addr()? {
            Some(at) => {
                let bind_err = |source| NodeError::StatusBind { addr: at, source };
                let listener = tokio::net::TcpListener::bind(at).await.map_err(bind_err)?;
                let bound = listener.local_addr().map_err(bind_err)?;
                Some((listener, bound))
            }
            None => None,
        };
        let addr = config.advertise_addr();
        let (tx, rx) = mpsc::channel(STORE_QUEUE);
        let metrics = Arc::new(Metrics::new(Some(Arc::downgrade(&endpoint))));
        let views = Arc::new(ReadViews::new());
        let store = Store::open(StoreParts {
            store_id: config.store_id,
            cluster_id,
            addr,
            config: config.clone(),
            engines: engines.clone(),
            workers: workers.handles(),
            endpoint: endpoint.clone(),
            runtime: tokio::runtime::Handle::current(),
            tx: tx.clone(),
            metrics: metrics.clone(),
            views: views.clone(),
        })
        .map_err(storage_err)?;
        let (failure_tx, failure) = watch::channel(None);
        let raft_thread = std::thread::Builder::new()
            .name(format!("raftstore-{}", config.store_id))
            .spawn(move || {
                if let Some(f) = store.run(rx) {
                    failure_tx.send_replace(Some(f));
                }
            })
            .map_err(NodeError::Thread)?;
        endpoint.set_rpc_handler(Arc::new(Services {
            tx: tx.clone(),
            metrics: metrics.clone(),
            views,
            timeout: config.request_timeout.0,
            data_dir: config.data_dir.clone(),
            faults: config.fault_injection.then(|| {
                Arc::new(FaultHooks {
                    endpoint: Arc::downgrade(&endpoint),
                    sync_delay: engines.sync_delay(),
                    snapshot_delay: engines.snapshot_delay(),
                })
            }),
        }));
        let mut tasks = spawn_forwarders(events, tx.clone(), config.raft.base_tick_interval.0);
        let status_addr = match status_listener {
            Some((listener, bound)) => {
                let state = StatusState {
                    store_id: config.store_id,
                    addr,
                    data_dir: config.data_dir.clone(),
                    started: std::time::Instant::now(),
                    metrics,
                    tx: tx.clone(),
                    failure: failure.clone(),
                };
                tasks.push(status_server::serve(listener, state));
                Some(bound)
            }
            None => None,
        };
        info!(store = config.store_id, %addr, status = ?status_addr, "node started");
        Ok(Node {
            store_id: config.store_id,
            addr,
            config,
            tx,
            endpoint,
            raft_thread: Some(raft_thread),
            workers: Some(workers),
            tasks,
            failure,
            status_addr,
        })
    }

    /// Where the status server listens (`/metrics`, `/health`, `/status`), if it runs.
    pub fn status_addr(&self) -> Option<SocketAddr> {
        self.status_addr
    }

    /// Why the store stopped on its own (`StoreStopped`), if it has.
    pub fn failure(&self) -> Option<NodeError> {
        self.failure
            .borrow()
            .as_ref()
            .map(|f| self.stopped_error(f))
    }

    /// Waits until the store stops on its own and says why; pending for as long as it serves.
    pub async fn stopped(&self) -> NodeError {
        let mut failure = self.failure.clone();
        let found = match failure.wait_for(Option::is_some).await {
            Ok(f) => f.clone(),
            // The loop ended without failing: it was shut down, it did not stop on its own.
            Err(_) => None,
        };
        match found {
            Some(f) => self.stopped_error(&f),
            None => std::future::pending().await,
        }
    }

    fn stopped_error(&self, f: &StoreFailure) -> NodeError {
        NodeError::StoreStopped {
            store_id: self.store_id,
            cause: f.cause.clone(),
            out_of_space: f.out_of_space,
        }
    }

    pub fn store_id(&self) -> u64 {
        self.store_id
    }

    /// The address this node advertises.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The address the endpoint is bound to (useful with port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.endpoint.local_addr()
    }

    /// The fault-injection filter of this node's transport (tests).
    pub fn filter(&self) -> &tinykv_transport::Filter {
        self.endpoint.filter()
    }

    /// Sends an admin request to this node's own raft loop.
    pub async fn admin(&self, req: AdminRequest) -> AdminResult {
        let (reply, rx) = tokio::sync::oneshot::channel();
        self.tx
            .try_send(StoreMsg::Admin { req, reply })
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => KvError::ServerBusy,
                mpsc::error::TrySendError::Closed(_) => {
                    KvError::Storage("the store stopped".into())
                }
            })?;
        match tokio::time::timeout(self.config.request_timeout.0, rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(KvError::Storage("the store stopped".into())),
            Err(_) => Err(KvError::Timeout),
        }
    }

    /// Adds this store to every region of the cluster `seed` belongs to, as a learner under a
    /// freshly allocated peer id (learners are filled by snapshot and do not count toward a
    /// quorum until promoted); with `JoinAs::Voter` it then waits for each to catch up and
    /// promotes it. Returns the regions joined.
    async fn join_through(&self, seed: SocketAddr, join_as: JoinAs) -> Result<Vec<u64>, String> {
        let client = self.cluster_client(seed).await?;
        let info = client.cluster().await.map_err(|e| e.to_string())?;
        self.tx
            .send(StoreMsg::Addresses(info.stores.clone()))
            .await
            .map_err(|_| "the store stopped".to_string())?;
        if self.config.placement.enabled {
            // The store reports to the placement driver like any other, and the driver moves
            // replicas onto it as balance asks: copying every region here first would only
            // have the driver remove most of them again.
            info!("joined; the placement driver places replicas on this store");
            return Ok(Vec::new());
        }
        let addr = self.addr.to_string();
        let mut regions = Vec::new();
        // Every region of the cluster, not only the seed's: each store hosts only some.
        let all = client.regions().await.map_err(|e| e.to_string())?;
        for region in &all {
            let region_id = region.region.id;
            let deadline = tokio::time::Instant::now() + JOIN_PATIENCE;
            loop {
                match client.add_learner(region_id, self.store_id, &addr).await {
                    Ok(()) => break,
                    // A leader moving, or a membership change still in flight: ask again.
                    Err(e) if tokio::time::Instant::now() < deadline => {
                        warn!(region = region_id, error = %e, "learner not added yet; retrying");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                    Err(e) => return Err(format!("region {region_id}: {e}")),
                }
            }
            info!(region = region_id, "joined region as a learner");
            regions.push(region_id);
        }
        if join_as == JoinAs::Voter {
            for &region_id in &regions {
                client
                    .promote_learner(region_id, self.store_id, PROMOTE_PATIENCE)
                    .await
                    .map_err(|e| format!("region {region_id}: promotion: {e}"))?;
                info!(region = region_id, "promoted to voter");
            }
        }
        Ok(regions)
    }

    /// A client of the cluster `seed` belongs to, under this node's own certificate.
    pub async fn cluster_client(&self, seed: SocketAddr) -> Result<Client, String> {
        Client::connect(ClientConfig {
            endpoints: vec![seed],
            tls: TlsFiles {
                ca: self.config.tls.ca.clone(),
                cert: self.config.tls.cert.clone(),
                key: self.config.tls.key.clone(),
            },
            timeout: self.config.request_timeout.0,
        })
        .await
        .map_err(|e| e.to_string())
    }

    /// Stops serving, lets the raft loop answer what it holds, and closes connections.
    pub async fn shutdown(mut self) {
        if self.raft_thread.is_none() {
            return;
        }
        for t in self.tasks.drain(..) {
            t.abort();
        }
        let _ = self.tx.send(StoreMsg::Shutdown).await;
        if let Some(thread) = self.raft_thread.take() {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
        if let Some(workers) = self.workers.take() {
            let _ = tokio::task::spawn_blocking(move || workers.shutdown()).await;
        }
        let store_id = self.store_id;
        let endpoint = self.endpoint.clone();
        drop(self);
        // Closed here even if a task still holds a handle: its sends fail at once rather than
        // keeping the port bound until they time out.
        endpoint.close().await;
        info!(store = store_id, "node stopped");
    }
}

impl Drop for Node {
    /// Without `shutdown`, stop abruptly: like a crash, nothing is flushed beyond what every
    /// acknowledged write already had fsynced.
    fn drop(&mut self) {
        for t in self.tasks.drain(..) {
            t.abort();
        }
        if self.raft_thread.take().is_some() {
            let _ = self.tx.try_send(StoreMsg::Shutdown);
        }
    }
}

/// Refuses to join a store that the cluster still lists as a voter while its data dir holds
/// none of its regions: the store lost its data, and coming back under its old peers with an
/// empty log could make it vote twice in a term or help a stale candidate win. Checked before
/// the node starts, so the store never answers under its old identity. A learner votes in
/// nothing: one listed while its data dir is empty (added before it first started, or wiped)
/// is simply filled again.
async fn refuse_lost_member(config: &NodeConfig, seed: SocketAddr) -> Result<(), NodeError> {
    let join_error = |reason: String| NodeError::Join { seed, reason };
    let identity = node_identity(config)?;
    let info = fetch_cluster(&identity, seed, config.request_timeout.0)
        .await
        .map_err(join_error)?;
    // The seed describes only its own copies of regions, and a copy on a store that was cut
    // off while it was removed still shows the membership of back then. Every other store the
    // seed knows is asked too, and each region is judged by the newest epoch anyone holds.
    let others = info
        .stores
        .iter()
        .filter(|s| s.store_id != config.store_id && s.store_id != info.store_id);
    let asks = others
        .filter_map(|s| s.addr.parse::<SocketAddr>().ok())
        .map(|addr| {
            let identity = identity.clone();
            async move { fetch_cluster(&identity, addr, FOUNDER_PROBE_TIMEOUT).await }
        });
    let answers = futures_util::future::join_all(asks).await;
    let mut newest: HashMap<u64, &Region> = HashMap::new();
    let described = info
        .regions
        .iter()
        .chain(answers.iter().flatten().flat_map(|i| i.regions.iter()));
    let epoch = |region: &Region| (region.epoch.conf_ver, region.epoch.version);
    for r in described {
        let known = newest.entry(r.region.id).or_insert(&r.region);
        if epoch(&r.region) > epoch(known) {
            *known = &r.region;
        }
    }
    let Some(member_of) = newest.values().find(|r| {
        r.peer_on_store(config.store_id)
            .is_some_and(|p| !p.is_learner())
    }) else {
        return Ok(());
    };
    if data_dir_hosts(config, member_of.id)? {
        return Ok(());
    }
    Err(join_error(format!(
        "store {id} is still a member of region {region}, but its data dir {dir} holds none of \
         the region's data. To rebuild the store, first remove its old peer with `tinykv node \
         leave {id}`, then run `tinykv node join` again",
        id = config.store_id,
        region = member_of.id,
        dir = config.data_dir.display(),
    )))
}

fn node_identity(config: &NodeConfig) -> Result<TlsIdentity, NodeError> {
    Ok(TlsIdentity::load(&TlsFiles {
        ca: config.tls.ca.clone(),
        cert: config.tls.cert.clone(),
        key: config.tls.key.clone(),
    })?)
}

/// What the node at `addr` knows of the cluster.
async fn fetch_cluster(
    identity: &TlsIdentity,
    addr: SocketAddr,
    timeout: Duration,
) -> Result<ClusterInfo, String> {
    let options = RpcClientOptions {
        timeout,
        ..RpcClientOptions::default()
    };
    let client = RpcClient::new(identity, addr, options).map_err(|e| e.to_string())?;
    let body = client
        .call(Service::Admin, api::encode(&AdminRequest::Cluster))
        .await
        .map_err(|e| e.to_string());
    client.close().await;
    let result: AdminResult = api::decode("admin answer", &body?).map_err(|e| e.to_string())?;
    match result {
        Ok(AdminResponse::Cluster(info)) => Ok(info),
        Ok(other) => Err(format!("unexpected answer {other:?}")),
        Err(e) => Err(e.to_string()),
    }
}

/// How long a founding store with an empty data dir asks the other founders about itself: a
/// founder that is not up costs a first start this long.
const FOUNDER_PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// Refuses to bootstrap a founding store whose data dir is empty when another founding member
/// answers that the cluster has seen this store run: the store lost its data (etcd's
/// "member has already been bootstrapped"). Founders that do not answer say nothing: the
/// cluster may be starting for the first time.
async fn refuse_lost_founder(config: &NodeConfig) -> Result<(), NodeError> {
    let identity = node_identity(config)?;
    let others: Vec<&Member> = config
        .initial_cluster
        .iter()
        .filter(|m| m.store_id != config.store_id)
        .collect();
    let asks = others.iter().map(|m| {
        let identity = identity.clone();
        let addr = m.addr;
        async move {
            // Bounded by the RPC timeout, and the connection closed either way: an abandoned
            // handshake would keep the other node's endpoint busy until it timed out.
            let answer = fetch_cluster(&identity, addr, FOUNDER_PROBE_TIMEOUT).await;
            (addr, answer)
        }
    });
    for (addr, answer) in futures_util::future::join_all(asks).await {
        match answer {
            Ok(info)
                if info.cluster_id == config.cluster_id()
                    && info.started_stores.contains(&config.store_id) =>
            {
                return Err(NodeError::LostData {
                    dir: config.data_dir.clone(),
                    store_id: config.store_id,
                    by: info.store_id,
                    addr,
                });
            }
            Ok(_) => {}
            Err(e) => info!(%addr, error = %e, "founding member did not answer; not asked"),
        }
    }
    Ok(())
}

/// Whether the data dir holds a live peer of `region_id` on this store.
fn data_dir_hosts(config: &NodeConfig, region_id: u64) -> Result<bool, NodeError> {
    if !Engines::exists(&config.data_dir) {
        return Ok(false);
    }
    let options = OpenOptions {
        expected_cluster_id: Some(config.cluster_id()),
    };
    let storage_err = |source| NodeError::Storage {
        dir: config.data_dir.clone(),
        source,
    };
    let (engines, _) = Engines::open(&config.data_dir, options).map_err(storage_err)?;
    let state = engines.region_state(region_id).map_err(storage_err)?;
    Ok(state.is_some_and(|s| {
        s.state != tinykv_storage::PeerState::Tombstone
            && s.region.peer_on_store(config.store_id).is_some()
    }))
}

enum BootstrapError {
    Storage(StorageError),
    Mismatch(u64),
    Empty,
}

impl From<StorageError> for BootstrapError {
    fn from(e: StorageError) -> Self {
        BootstrapError::Storage(e)
    }
}

/// Makes a fresh data dir a member: founding members write the first region; a joining store
/// writes only its identity and waits for a snapshot.
fn bootstrap(
    engines: &Engines,
    config: &NodeConfig,
    cluster_id: u64,
    joining: bool,
) -> Result<(), BootstrapError> {
    if let Some(ident) = engines.store_ident()? {
        if ident.store_id != config.store_id {
            return Err(BootstrapError::Mismatch(ident.store_id));
        }
        let founding = !joining && !config.initial_cluster.is_empty();
        // A crash between writing the identity and the first region leaves no region: finish.
        if founding && engines.regions()?.is_empty() && engines.store_addrs()?.is_empty() {
            bootstrap_first_region(engines, config)?;
        }
        return Ok(());
    }
    if !joining && config.initial_cluster.is_empty() {
        return Err(BootstrapError::Empty);
    }
    engines.bootstrap_store(StoreIdent {
        cluster_id,
        store_id: config.store_id,
    })?;
    if !joining {
        bootstrap_first_region(engines, config)?;
    }
    Ok(())
}

pub(crate) fn bootstrap_first_region(
    engines: &Engines,
    config: &NodeConfig,
) -> Result<(), StorageError> {
    let mut members = config.initial_cluster.clone();
    members.sort_by_key(|m| m.store_id);
    let region = Region {
        id: FIRST_REGION_ID,
        start_key: Vec::new(),
        end_key: Vec::new(),
        epoch: RegionEpoch {
            conf_ver: INIT_EPOCH_CONF_VER,
            version: INIT_EPOCH_VER,
        },
        peers: members
            .iter()
            .map(|m| PeerMeta::voter(m.store_id, m.store_id))
            .collect(),
    };
    engines.bootstrap_region(&region)?;
    let addrs: Vec<StoreAddress> = members
        .iter()
        .map(|m| StoreAddress {
            store_id: m.store_id,
            addr: m.addr.to_string(),
        })
        .collect();
    engines.put_store_addrs(&addrs)?;
    info!(members = members.len(), "bootstrapped the first region");
    Ok(())
}

/// The least silence after which a store's connection is declared lost.
const MIN_LOST_AFTER: Duration = Duration::from_secs(1);

/// About the most Raft messages the forwarder hands the raft loop at once.
const MAX_FORWARD_BATCH: usize = 1024;

/// Feeds the transport's events and the ticks into the raft loop.
fn spawn_forwarders(
    events: tinykv_transport::Events<RaftMessage>,
    tx: mpsc::Sender<StoreMsg>,
    tick: Duration,
) -> Vec<tokio::task::JoinHandle<()>> {
    let tinykv_transport::Events {
        mut messages,
        mut snapshots,
        mut unreachable,
    } = events;
    let mut tasks = Vec::new();
    let t = tx.clone();
    tasks.push(tokio::spawn(async move {
        // Whatever has arrived goes to the loop as one batch, stepped in one round.
        while let Some(mut batch) = messages.recv_batch().await {
            while batch.len() < MAX_FORWARD_BATCH {
                match messages.try_recv_batch() {
                    Some(more) => batch.extend(more),
                    None => break,
                }
            }
            if t.send(StoreMsg::Raft(batch)).await.is_err() {
                break;
            }
        }
    }));
    let t = tx.clone();
    tasks.push(tokio::spawn(async move {
        while let Some(s) = snapshots.recv().await {
            if t.send(StoreMsg::Snapshot(s)).await.is_err() {
                break;
            }
        }
    }));
    let t = tx.clone();
    tasks.push(tokio::spawn(async move {
        while let Some(store) = unreachable.recv().await {
            if t.send(StoreMsg::Unreachable(store)).await.is_err() {
                break;
            }
        }
    }));
    tasks.push(tokio::spawn(async move {
        let mut interval = tokio::time::interval(tick);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            interval.tick().await;
            // A loop too busy to take a tick will catch up with the next one.
            match tx.try_send(StoreMsg::Tick) {
                Ok(()) | Err(mpsc::error::TrySendError::Full(_)) => {}
                Err(mpsc::error::TrySendError::Closed(_)) => break,
            }
        }
    }));
    tasks
}
