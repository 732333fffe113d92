//! `TestCluster`: an in-process cluster of real stores for tests and benchmarks: real fjall
//! data dirs in a temp dir, real QUIC endpoints with real certificates on 127.0.0.1, and the
//! transport's filter to cut links. Nothing in it is simulated. Setup failures panic with a
//! message: it is support for tests and benchmarks, not for running nodes.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use tinykv_client::{Client, ClientConfig};
use tinykv_proto::api::{AdminRequest, AdminResponse, KvOp, KvRequest, KvResult, RaftStateInfo};
use tinykv_transport::{
    ClusterCa, Role, RpcClient, RpcClientOptions, Rule, Service, TlsFiles, TlsIdentity, Validity,
};

use crate::Node;
use crate::config::{ByteSize, Member, NodeConfig, ReadableDuration, TlsConfig};

/// A port nobody is bound to right now (UDP and TCP), below Linux's ephemeral range (32768 and
/// up): a port from that range can be handed to any client socket bound to port 0 between the
/// probe and the node's bind, and a restarted node must find its port again.
pub fn free_port() -> u16 {
    const LOW: u32 = 10_000;
    const HIGH: u32 = 32_000;
    // Different test processes start from different places; tests in one process move on
    // through a shared counter, so two never pick the same port.
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let span = HIGH - LOW;
    let seed = std::process::id().wrapping_mul(2_654_435_761) % span;
    for _ in 0..2_000 {
        let step = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let port = (LOW + (seed + step) % span) as u16;
        let udp = std::net::UdpSocket::bind(("127.0.0.1", port));
        let tcp = std::net::TcpListener::bind(("127.0.0.1", port));
        if udp.is_ok() && tcp.is_ok() {
            return port;
        }
    }
    panic!("no free port found below {HIGH}");
}

pub struct TestCluster {
    pub dir: tempfile::TempDir,
    pub configs: Vec<NodeConfig>,
    pub nodes: Vec<Option<Node>>,
    /// An `admin` client certificate: tests move leaders, split regions and inject faults.
    pub client_tls: TlsFiles,
    ca: ClusterCa,
}

/// Fast timing for tests: 20 ms ticks, elections after 200–400 ms.
pub fn test_config(
    store_id: u64,
    addr: SocketAddr,
    dir: PathBuf,
    tls: TlsConfig,
    members: Vec<Member>,
) -> NodeConfig {
    let mut c = NodeConfig {
        store_id,
        listen_addr: addr,
        data_dir: dir,
        initial_cluster: members,
        tls,
        request_timeout: ReadableDuration::millis(3000),
        // A port of its own for each node's status server, whatever else runs.
        status_addr: Some("127.0.0.1:0".into()),
        ..NodeConfig::default()
    };
    c.raft.base_tick_interval = ReadableDuration::millis(20);
    c.raft.heartbeat_ticks = 2;
    c.raft.election_timeout_ticks = 10;
    c.raft.log_gc_tick_interval = ReadableDuration::millis(200);
    c.snapshot.max_bytes_per_sec = ByteSize(0);
    // Tests of other mechanics shape regions by hand; the driver would repair them.
    c.placement.enabled = false;
    c
}

impl TestCluster {
    /// Certificates, configs and `n` running nodes founding one cluster.
    pub async fn start(n: u64) -> TestCluster {
        TestCluster::start_with(n, |_| {}).await
    }

    pub async fn start_with(n: u64, tweak: impl Fn(&mut NodeConfig)) -> TestCluster {
        let dir = tempfile::tempdir().expect("temp dir");
        let ca = ClusterCa::generate("tinykv test CA", Validity::days(1)).expect("CA");
        let ca_files = ca.write(&dir.path().join("ca")).expect("write CA");
        let client = ca
            .issue_client("tester", Role::Admin, Validity::days(1))
            .expect("client cert");
        let client_tls = TlsFiles {
            ca: ca_files.cert.clone(),
            cert: dir.path().join("client.pem"),
            key: dir.path().join("client-key.pem"),
        };
        client
            .write(&client_tls.cert, &client_tls.key)
            .expect("write client cert");
        let members: Vec<Member> = (1..=n)
            .map(|id| Member {
                store_id: id,
                addr: SocketAddr::from(([127, 0, 0, 1], free_port())),
            })
            .collect();
        let mut cluster = TestCluster {
            dir,
            configs: Vec::new(),
            nodes: Vec::new(),
            client_tls,
            ca,
        };
        for m in &members {
            let mut c = cluster.node_config(m.store_id, m.addr, members.clone());
            tweak(&mut c);
            cluster.configs.push(c);
        }
        // Started together, as founders usually are: each asks the others whether the cluster
        // has seen it run before, and one that is not up yet costs that question its timeout.
        let starts = cluster.configs.iter().map(|c| Node::start(c.clone()));
        for node in futures_util::future::join_all(starts).await {
            cluster.nodes.push(Some(node.expect("start node")));
        }
        cluster
    }

    /// A config (with its certificate written) for a store of this cluster.
    pub fn node_config(&self, store_id: u64, addr: SocketAddr, members: Vec<Member>) -> NodeConfig {
        let base = self.dir.path().join(format!("store-{store_id}"));
        std::fs::create_dir_all(&base).expect("store dir");
        let cert = self
            .ca
            .issue_node(store_id, &["127.0.0.1".to_string()], Validity::days(1))
            .expect("node cert");
        let tls = TlsConfig {
            ca: self.client_tls.ca.clone(),
            cert: base.join("node.pem"),
            key: base.join("node-key.pem"),
        };
        cert.write(&tls.cert, &tls.key).expect("write node cert");
        test_config(store_id, addr, base.join("data"), tls, members)
    }

    pub fn endpoints(&self) -> Vec<SocketAddr> {
        self.configs.iter().map(|c| c.listen_addr).collect()
    }

    /// Issues a client certificate `name` with `role` and writes it next to the cluster's.
    pub fn issue_client(&self, name: &str, role: Role) -> TlsFiles {
        let cert = self
            .ca
            .issue_client(name, role, Validity::days(1))
            .expect("client cert");
        let files = TlsFiles {
            ca: self.client_tls.ca.clone(),
            cert: self.dir.path().join(format!("{name}.pem")),
            key: self.dir.path().join(format!("{name}-key.pem")),
        };
        cert.write(&files.cert, &files.key)
            .expect("write client cert");
        files
    }

    /// A client with the cluster's `admin` certificate.
    pub async fn client(&self) -> Client {
        self.client_with(self.client_tls.clone()).await
    }

    /// A client with the certificate `tls` (see [`TestCluster::issue_client`]).
    pub async fn client_with(&self, tls: TlsFiles) -> Client {
        let config = ClientConfig {
            endpoints: self.endpoints(),
            tls,
            timeout: Duration::from_secs(10),
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            match Client::connect(config.clone()).await {
                Ok(c) => return c,
                Err(e) if tokio::time::Instant::now() < deadline => {
                    tracing::debug!(error = %e, "client not connected yet");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("client cannot connect: {e}"),
            }
        }
    }

    /// Sends one key-value request for region 1 straight to the node at `addr`, bypassing the
    /// client's routing; a transport failure comes back as its text.
    pub async fn direct(&self, addr: SocketAddr, op: KvOp) -> Result<KvResult, String> {
        self.direct_to(addr, 1, op).await
    }

    /// [`TestCluster::direct`] for `region_id`, with no epoch (the node checks none).
    pub async fn direct_to(
        &self,
        addr: SocketAddr,
        region_id: u64,
        op: KvOp,
    ) -> Result<KvResult, String> {
        let req = KvRequest {
            region_id,
            epoch: None,
            op,
        };
        self.send_kv(addr, req, Duration::from_secs(2)).await
    }

    /// Sends `req` as it is straight to the node at `addr`, waiting at most `timeout`.
    pub async fn send_kv(
        &self,
        addr: SocketAddr,
        req: KvRequest,
        timeout: Duration,
    ) -> Result<KvResult, String> {
        let identity = TlsIdentity::load(&self.client_tls).map_err(|e| e.to_string())?;
        let options = RpcClientOptions {
            timeout,
            ..RpcClientOptions::default()
        };
        let rpc = RpcClient::new(&identity, addr, options).map_err(|e| e.to_string())?;
        let body = rpc
            .call(Service::Client, tinykv_proto::api::encode(&req))
            .await
            .map_err(|e| e.to_string())?;
        tinykv_proto::api::decode::<KvResult>("kv answer", &body).map_err(|e| e.to_string())
    }

    pub fn node(&self, store_id: u64) -> &Node {
        self.nodes[(store_id - 1) as usize]
            .as_ref()
            .expect("node is running")
    }

    pub async fn stop(&mut self, store_id: u64) {
        if let Some(node) = self.nodes[(store_id - 1) as usize].take() {
            node.shutdown().await;
        }
    }

    pub async fn restart(&mut self, store_id: u64) {
        let i = (store_id - 1) as usize;
        if let Some(node) = self.nodes[i].take() {
            node.shutdown().await;
        }
        // The port was just released; quinn frees it when its task ends, so retry briefly.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            match Node::start(self.configs[i].clone()).await {
                Ok(node) => {
                    self.nodes[i] = Some(node);
                    return;
                }
                Err(e) if tokio::time::Instant::now() < deadline => {
                    tracing::debug!(error = %e, "restart not possible yet");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => panic!("store {store_id} cannot restart: {e}"),
            }
        }
    }

    pub fn running(&self) -> Vec<u64> {
        self.nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| n.is_some())
            .map(|(i, _)| i as u64 + 1)
            .collect()
    }

    /// Cuts the cluster into groups that cannot exchange Raft messages.
    pub fn partition(&self, groups: &[Vec<u64>]) {
        for group in groups {
            let others: Vec<u64> = groups
                .iter()
                .filter(|g| *g != group)
                .flatten()
                .copied()
                .collect();
            for &s in group {
                if let Some(node) = &self.nodes[(s - 1) as usize] {
                    node.filter().set(vec![Rule::block(&others)]);
                }
            }
        }
    }

    pub fn heal(&self) {
        for node in self.nodes.iter().flatten() {
            node.filter().clear();
        }
    }

    /// The Raft state of the running store's peer of `region_id`.
    pub async fn raft_state(&self, store_id: u64, region_id: u64) -> RaftStateInfo {
        match self
            .node(store_id)
            .admin(AdminRequest::RaftState { region_id })
            .await
        {
            Ok(AdminResponse::RaftState(p)) => p.state,
            other => panic!("store {store_id}: raft state of region {region_id}: {other:?}"),
        }
    }

    /// How many snapshots the running store `store_id` has received since it started.
    pub async fn snapshots_received(&self, store_id: u64) -> u64 {
        match self.node(store_id).admin(AdminRequest::StoreStatus).await {
            Ok(AdminResponse::StoreStatus(s)) => s.snapshots_received,
            other => panic!("store {store_id}: status: {other:?}"),
        }
    }

    /// Waits until a running store leads `region` and returns it.
    pub async fn leader(&self, region: u64) -> u64 {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            for node in self.nodes.iter().flatten() {
                if let Ok(AdminResponse::StoreStatus(s)) =
                    node.admin(AdminRequest::StoreStatus).await
                    && s.leader_of.contains(&region)
                {
                    return s.store_id;
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no leader for region {region} within 30 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops every running store at once: one after another, each would wait out its
    /// connections to the stores already stopped.
    pub async fn stop_all(&mut self) {
        let stopping = self
            .nodes
            .iter_mut()
            .filter_map(Option::take)
            .map(Node::shutdown);
        futures_util::future::join_all(stopping).await;
    }

    pub async fn shutdown(mut self) {
        self.stop_all().await;
    }
}
