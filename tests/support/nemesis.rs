//! The nemesis: a cluster of real `tinykv node` processes and the faults done to them —
//! `kill -9` and restart, SIGSTOP/SIGCONT, partitions through the nodes' fault-injection admin
//! hook or by dropping UDP between node ports with nftables, and a slow fsync. Everything a
//! fault changes is undone by a guard, also when the test panics.

use std::fs::OpenOptions;
use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tinykv_client::{Client, ClientConfig};
use tinykv_node::config::NodeConfig;
use tinykv_proto::api::{AdminRequest, AdminResponse, StoreStatus};
use tinykv_proto::fault::{FaultSpec, NetworkFault};
use tinykv_transport::TlsFiles;

use super::{BIN, free_base_port, tinykv};

/// One node process of the cluster.
pub struct NodeProc {
    pub id: u64,
    pub addr: SocketAddr,
    pub dir: PathBuf,
    pub config_path: PathBuf,
    child: Option<Child>,
    paused: bool,
}

impl NodeProc {
    /// A stopped node whose config (written to `dir/config.yaml`) is `config`.
    fn configured(id: u64, dir: PathBuf, config: &NodeConfig) -> NodeProc {
        let config_path = dir.join("config.yaml");
        std::fs::write(&config_path, config.to_yaml()).expect("write config");
        NodeProc {
            id,
            addr: config.advertise_addr(),
            dir,
            config_path,
            child: None,
            paused: false,
        }
    }

    pub fn pid(&self) -> Option<i32> {
        self.child.as_ref().map(|c| c.id() as i32)
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    pub fn is_paused(&self) -> bool {
        self.paused
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.join("node.log")
    }
}

/// A cluster of node processes under one directory (`nodeI/{config.yaml,data,node.log,pid}`,
/// `certs/`). Dropping it kills every node it started.
pub struct Cluster {
    pub dir: PathBuf,
    pub nodes: Vec<NodeProc>,
    pub tls: TlsFiles,
}

impl Cluster {
    /// Creates `n` nodes with `tinykv cluster up --detach` on free ports, stops them, applies
    /// `tweak` to every configuration and starts the nodes again as children of this process.
    pub fn create(dir: &Path, n: u64, tweak: impl Fn(&mut NodeConfig)) -> Cluster {
        let dir_s = dir.to_str().expect("utf-8 run dir").to_string();
        let base = free_base_port(n as u16);
        tinykv(&[
            "cluster",
            "up",
            "--detach",
            "--nodes",
            &n.to_string(),
            "--dir",
            &dir_s,
            "--base-port",
            &base.to_string(),
        ])
        .ok();
        tinykv(&["cluster", "down", "--dir", &dir_s]).ok();
        let certs = dir.join("certs");
        let mut cluster = Cluster {
            dir: dir.to_path_buf(),
            nodes: Vec::new(),
            tls: TlsFiles {
                ca: certs.join("ca.pem"),
                cert: certs.join("client.pem"),
                key: certs.join("client-key.pem"),
            },
        };
        for id in 1..=n {
            let node_dir = dir.join(format!("node{id}"));
            let config_path = node_dir.join("config.yaml");
            let mut config = NodeConfig::load(&config_path).expect("playground config");
            tweak(&mut config);
            cluster
                .nodes
                .push(NodeProc::configured(id, node_dir, &config));
        }
        for id in 1..=n {
            cluster.start(id);
        }
        cluster
    }

    pub fn node(&self, id: u64) -> &NodeProc {
        &self.nodes[id as usize - 1]
    }

    fn node_mut(&mut self, id: u64) -> &mut NodeProc {
        &mut self.nodes[id as usize - 1]
    }

    pub fn ids(&self) -> Vec<u64> {
        self.nodes.iter().map(|n| n.id).collect()
    }

    pub fn addrs(&self) -> Vec<SocketAddr> {
        self.nodes.iter().map(|n| n.addr).collect()
    }

    pub fn client_config(&self, timeout: Duration) -> ClientConfig {
        ClientConfig {
            endpoints: self.addrs(),
            tls: self.tls.clone(),
            timeout,
        }
    }

    /// Prepares a store that was not in the cluster: the next id, a certificate from the
    /// cluster's CA, and node 1's config with its own port, data dir and certificate and no
    /// founding members. It is not started (`start_joining` adds it). Returns its id.
    pub fn add_store(&mut self) -> u64 {
        let id = self.nodes.len() as u64 + 1;
        let node_dir = self.dir.join(format!("node{id}"));
        std::fs::create_dir_all(&node_dir).expect("new store dir");
        let certs = self.dir.join("certs");
        let issued = tinykv(&[
            "cert",
            "issue",
            &format!("store-{id}"),
            "--ca-dir",
            certs.to_str().expect("utf-8 dir"),
            "--san",
            "127.0.0.1",
            "--out",
            node_dir.to_str().expect("utf-8 dir"),
        ]);
        assert_eq!(
            issued.code, 0,
            "cert issue for store {id}: {}",
            issued.stderr
        );
        let mut config = NodeConfig::load(&self.node(1).config_path).expect("node 1 config");
        config.store_id = id;
        let port = free_base_port(1);
        config.listen_addr = SocketAddr::from(([127, 0, 0, 1], port));
        config.advertise_addr = None;
        config.data_dir = node_dir.join("data");
        config.initial_cluster = Vec::new();
        config.tls.cert = node_dir.join(format!("store-{id}.pem"));
        config.tls.key = node_dir.join(format!("store-{id}-key.pem"));
        self.nodes.push(NodeProc::configured(id, node_dir, &config));
        id
    }

    /// Starts node `id` (`tinykv node start`), its output appended to `nodeI/node.log`.
    pub fn start(&mut self, id: u64) {
        self.spawn(id, &[]);
    }

    /// Starts node `id` with `tinykv node join --seed SEED`: a store with an empty data dir
    /// that asks the cluster to add it.
    pub fn start_joining(&mut self, id: u64, seed: SocketAddr) {
        self.spawn(id, &["--seed".to_string(), seed.to_string()]);
    }

    /// Deletes node `id`'s data dir (it must be stopped): a lost disk.
    pub fn wipe(&mut self, id: u64) {
        let node = self.node(id);
        assert!(node.child.is_none(), "store {id} is running");
        let config = NodeConfig::load(&node.config_path).expect("node config");
        std::fs::remove_dir_all(&config.data_dir).expect("wipe the data dir");
    }

    /// Whether node `id`'s process has exited (a join that gave up).
    pub fn exited(&mut self, id: u64) -> bool {
        let node = self.node_mut(id);
        match node.child.as_mut().map(|c| c.try_wait()) {
            Some(Ok(Some(_))) => {
                node.child = None;
                true
            }
            _ => false,
        }
    }

    fn spawn(&mut self, id: u64, join_args: &[String]) {
        let node = self.node_mut(id);
        assert!(node.child.is_none(), "store {id} is already running");
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(node.log_path())
            .expect("open node log");
        let log_err = log.try_clone().expect("node log");
        let mut cmd = Command::new(BIN);
        let verb = if join_args.is_empty() {
            "start"
        } else {
            "join"
        };
        cmd.args(["node", verb, "--config"])
            .arg(&node.config_path)
            .args(join_args)
            // TINYKV_CHAOS_LOG raises the nodes' log level to replay a failure in detail.
            .env(
                "RUST_LOG",
                std::env::var("TINYKV_CHAOS_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err);
        for var in ["TINYKV_ENDPOINTS", "TINYKV_CA", "TINYKV_CERT", "TINYKV_KEY"] {
            cmd.env_remove(var);
        }
        // SAFETY: prctl is async-signal-safe and touches only the child. The node dies with
        // the thread that started it, so an aborted test run leaves no nodes behind.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = cmd.spawn().expect("spawn tinykv node");
        std::fs::write(node.dir.join("pid"), format!("{}\n", child.id())).expect("pid file");
        node.child = Some(child);
        node.paused = false;
    }

    /// `kill -9` of node `id`; a paused node is killed as it is.
    pub fn kill(&mut self, id: u64) {
        let node = self.node_mut(id);
        if let Some(mut child) = node.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        node.paused = false;
        let _ = std::fs::remove_file(node.dir.join("pid"));
    }

    pub fn pause(&mut self, id: u64) {
        let node = self.node_mut(id);
        if let Some(pid) = node.pid() {
            signal(pid, libc::SIGSTOP);
            node.paused = true;
        }
    }

    pub fn resume(&mut self, id: u64) {
        let node = self.node_mut(id);
        if let Some(pid) = node.pid()
            && node.paused
        {
            signal(pid, libc::SIGCONT);
        }
        node.paused = false;
    }

    /// Resumes every paused node and starts every stopped one.
    pub fn restore_all(&mut self) {
        for id in self.ids() {
            if self.node(id).is_paused() {
                self.resume(id);
            }
            if !self.node(id).is_running() {
                self.start(id);
            }
        }
    }

    /// Node ids that run and are not paused.
    pub fn live(&self) -> Vec<u64> {
        self.nodes
            .iter()
            .filter(|n| n.is_running() && !n.is_paused())
            .map(|n| n.id)
            .collect()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

fn signal(pid: i32, sig: i32) {
    // SAFETY: sending a signal to a child we started has no memory-safety preconditions.
    unsafe {
        libc::kill(pid, sig);
    }
}

/// Sends `req` to `addr` until it is answered, or gives up after `cap` with the last error.
pub async fn admin_until(
    client: &Client,
    addr: SocketAddr,
    req: AdminRequest,
    cap: Duration,
) -> Result<AdminResponse, String> {
    let deadline = Instant::now() + cap;
    loop {
        match client.admin(addr, req.clone()).await {
            Ok(resp) => return Ok(resp),
            Err(e) if Instant::now() >= deadline => return Err(e.to_string()),
            // The node is restarting or electing; asking again is the only way to know.
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

pub async fn store_status(client: &Client, addr: SocketAddr) -> Option<StoreStatus> {
    match client.admin(addr, AdminRequest::StoreStatus).await {
        Ok(AdminResponse::StoreStatus(s)) => Some(s),
        _ => None,
    }
}

/// The store that leads region 1 in the highest term any of `live` reports.
pub async fn find_leader(client: &Client, cluster: &Cluster, live: &[u64]) -> Option<u64> {
    let mut best: Option<(u64, u64)> = None;
    for &id in live {
        if let Some(status) = store_status(client, cluster.node(id).addr).await
            && status.leader_of.contains(&1)
        {
            let term = status
                .peers
                .iter()
                .find(|p| p.state.region == 1)
                .map_or(0, |p| p.state.term);
            if best.is_none_or(|(t, _)| term > t) {
                best = Some((term, id));
            }
        }
    }
    best.map(|(_, id)| id)
}

/// Pairs of stores that must not hear each other.
pub type Cut = Vec<(u64, u64)>;

/// Every pair across the two sides, both ways.
pub fn cut_between(a: &[u64], b: &[u64]) -> Cut {
    let mut cut = Vec::new();
    for &x in a {
        for &y in b {
            cut.push((x, y));
            cut.push((y, x));
        }
    }
    cut
}

/// The fault spec that makes `store` refuse the stores `cut` separates it from.
pub fn hook_spec_for(store: u64, cut: &Cut) -> FaultSpec {
    let blocked: Vec<u64> = cut
        .iter()
        .filter(|(from, _)| *from == store)
        .map(|(_, to)| *to)
        .collect();
    FaultSpec {
        network: if blocked.is_empty() {
            Vec::new()
        } else {
            vec![NetworkFault::block(&blocked)]
        },
        ..FaultSpec::default()
    }
}

/// An nftables table of this run that drops UDP between node ports. Deleted on drop.
pub struct NftTable {
    name: String,
}

impl NftTable {
    /// Creates the run's table, or `None` (with the reason) when nftables cannot be used here.
    pub fn create(name: &str) -> Result<NftTable, String> {
        let script = format!(
            "table inet {name} {{\n  chain output {{\n    type filter hook output priority 0; policy accept;\n  }}\n}}\n"
        );
        nft_script(&script)?;
        Ok(NftTable {
            name: name.to_string(),
        })
    }

    /// Drops UDP from each pair's first port to its second, until [`NftTable::heal`].
    pub fn cut(&self, pairs: &[(u16, u16)]) -> Result<(), String> {
        let mut script = String::new();
        for (from, to) in pairs {
            script.push_str(&format!(
                "add rule inet {} output ip saddr 127.0.0.1 ip daddr 127.0.0.1 udp sport {from} udp dport {to} drop\n",
                self.name
            ));
        }
        nft_script(&script)
    }

    pub fn heal(&self) -> Result<(), String> {
        nft_script(&format!("flush chain inet {} output\n", self.name))
    }
}

impl Drop for NftTable {
    fn drop(&mut self) {
        let _ = nft_script(&format!("delete table inet {}\n", self.name));
    }
}

fn nft_script(script: &str) -> Result<(), String> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run nft: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(script.as_bytes())
            .map_err(|e| format!("nft stdin: {e}"))?;
    }
    let out = child.wait_with_output().map_err(|e| format!("nft: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "nft failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}
