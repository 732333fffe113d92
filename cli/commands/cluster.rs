//! `cluster up|down|status`: a local playground of node processes described by a directory:
//! `certs/` (the CA, `client.pem` with role admin for the operator and `app.pem` with role
//! readwrite for applications), `nodeI/config.yaml`, `nodeI/data`, `nodeI/node.log`,
//! `nodeI/pid`, and `env` (exports that point later commands at the cluster as admin).

use std::fs::OpenOptions;
use std::net::{SocketAddr, UdpSocket};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tinykv_client::{Client, ClientConfig};
use tinykv_node::config::{Member, NodeConfig, TlsConfig};
use tinykv_proto::api::{AdminRequest, AdminResponse, StoreStatus};
use tinykv_proto::placement::{DriverStatus, PlacementAnswer, PlacementRequest};
use tinykv_transport::{Role, TlsFiles};
use tokio::signal::unix::{SignalKind, signal};

use crate::args::{ClusterCmd, GlobalArgs, Output};
use crate::commands::cert;
use crate::connect;
use crate::exit::{CliError, CliResult, Exit};
use crate::output::{Table, human_bytes, print_json};
use crate::process;

/// How long `cluster up` waits for the nodes to elect a leader.
const LEADER_WAIT: Duration = Duration::from_secs(30);
/// How often the foreground `cluster up` prints a status line.
const STATUS_EVERY: Duration = Duration::from_secs(5);

pub async fn run(global: &GlobalArgs, cmd: ClusterCmd) -> CliResult {
    match cmd {
        ClusterCmd::Up {
            nodes,
            dir,
            base_port,
            detach,
        } => up(global, &dir, nodes, base_port, detach).await,
        ClusterCmd::Down { dir, clean } => down(global, &dir, clean).await,
        ClusterCmd::Status { dir } => status(global, dir.as_deref()).await,
    }
}

/// One node of a playground directory.
struct PlayNode {
    dir: PathBuf,
    config_path: PathBuf,
    config: NodeConfig,
}

impl PlayNode {
    fn pid_path(&self) -> PathBuf {
        self.dir.join("pid")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("node.log")
    }

    fn pid(&self) -> Option<i32> {
        process::read_pid(&self.pid_path())
    }

    fn running_pid(&self) -> Option<i32> {
        self.pid()
            .filter(|&pid| process::is_running(pid, &self.config_path))
    }
}

fn certs_dir(dir: &Path) -> PathBuf {
    dir.join("certs")
}

/// The operator's certificate (admin): what `env` points the command line at.
fn client_tls(dir: &Path) -> TlsFiles {
    playground_tls(dir, "client")
}

/// The certificate for applications: it may read and write keys but not change the cluster.
fn app_tls(dir: &Path) -> TlsFiles {
    playground_tls(dir, "app")
}

fn playground_tls(dir: &Path, name: &str) -> TlsFiles {
    let certs = certs_dir(dir);
    TlsFiles {
        ca: certs.join("ca.pem"),
        cert: certs.join(format!("{name}.pem")),
        key: certs.join(format!("{name}-key.pem")),
    }
}

/// Issues the playground's client certificates: `client.pem` (admin), which `env` points the
/// command line at so that every command works, and `app.pem` (readwrite) for applications.
fn issue_client_certs(dir: &Path) -> CliResult {
    let certs = certs_dir(dir);
    let ca = cert::load_ca(&certs)?;
    cert::issue(&ca, "client", &[], Some(Role::Admin), &certs)?;
    cert::issue(&ca, "app", &[], Some(Role::ReadWrite), &certs)?;
    Ok(())
}

fn io_error(what: &str, path: &Path, e: std::io::Error) -> CliError {
    CliError::failed(format!("cannot {what} {}: {e}", path.display()))
}

/// The nodes a playground directory describes, in store order.
fn load_nodes(dir: &Path) -> CliResult<Vec<PlayNode>> {
    // Absolute paths: they are what the node processes' command lines name (see `is_running`).
    let dir = &std::fs::canonicalize(dir).map_err(|e| {
        io_error("open", dir, e).hint("is this a directory made by `tinykv cluster up --dir`?")
    })?;
    let entries = std::fs::read_dir(dir).map_err(|e| {
        io_error("read", dir, e).hint("is this a directory made by `tinykv cluster up --dir`?")
    })?;
    let mut nodes = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(index) = name
            .to_str()
            .and_then(|n| n.strip_prefix("node"))
            .and_then(|i| i.parse::<u64>().ok())
        else {
            continue;
        };
        let config_path = entry.path().join("config.yaml");
        if !config_path.is_file() {
            continue;
        }
        let config = NodeConfig::load(&config_path).map_err(|e| CliError::failed(e.to_string()))?;
        nodes.push((
            index,
            PlayNode {
                dir: entry.path(),
                config_path,
                config,
            },
        ));
    }
    nodes.sort_by_key(|(i, _)| *i);
    if nodes.is_empty() {
        return Err(
            CliError::failed(format!("{} describes no nodes", dir.display()))
                .hint("create a cluster with `tinykv cluster up --dir DIR`"),
        );
    }
    Ok(nodes.into_iter().map(|(_, n)| n).collect())
}

/// Certificates and configs for a fresh playground of `n` nodes (for `backup restore`, which
/// then writes the data dirs the configs name).
pub(super) fn create_playground(dir: &Path, n: u64, base_port: u16) -> CliResult<Vec<NodeConfig>> {
    if dir.join("node1").join("config.yaml").is_file() {
        return Err(
            CliError::failed(format!("{} is a playground already", dir.display())).hint(
                "restore into a new directory, or remove this one (`tinykv cluster down --clean`)",
            ),
        );
    }
    Ok(create(dir, n, base_port)?
        .into_iter()
        .map(|n| n.config)
        .collect())
}

/// Certificates and configs for a fresh playground of `n` nodes.
fn create(dir: &Path, n: u64, base_port: u16) -> CliResult<Vec<PlayNode>> {
    if n == 0 {
        return Err(CliError::usage("--nodes must be at least 1"));
    }
    let last = u64::from(base_port) + n - 1;
    if last > u64::from(u16::MAX) || base_port == 0 {
        return Err(CliError::usage(format!(
            "--base-port {base_port} leaves no room for {n} nodes"
        )));
    }
    let members: Vec<Member> = (1..=n)
        .map(|id| Member {
            store_id: id,
            addr: SocketAddr::from(([127, 0, 0, 1], base_port + (id - 1) as u16)),
        })
        .collect();
    for m in &members {
        check_port_free(m.addr)?;
    }
    let dir = absolute(dir)?;
    let certs = certs_dir(&dir);
    cert::init_ca(&certs)?;
    issue_client_certs(&dir)?;
    let ca = cert::load_ca(&certs)?;
    let sans = vec!["127.0.0.1".to_string(), "localhost".to_string()];
    let mut nodes = Vec::new();
    for m in &members {
        let node_dir = dir.join(format!("node{}", m.store_id));
        let name = format!("store-{}", m.store_id);
        let (cert_path, key_path) = cert::issue(&ca, &name, &sans, None, &node_dir)?;
        let config = NodeConfig {
            store_id: m.store_id,
            listen_addr: m.addr,
            data_dir: node_dir.join("data"),
            initial_cluster: members.clone(),
            initial_cluster_token: "tinykv-playground".to_string(),
            tls: TlsConfig {
                ca: certs.join("ca.pem"),
                cert: cert_path,
                key: key_path,
            },
            ..NodeConfig::default()
        };
        let config_path = node_dir.join("config.yaml");
        std::fs::write(&config_path, config.to_yaml())
            .map_err(|e| io_error("write", &config_path, e))?;
        nodes.push(PlayNode {
            dir: node_dir,
            config_path,
            config,
        });
    }
    Ok(nodes)
}

fn absolute(dir: &Path) -> CliResult<PathBuf> {
    std::fs::create_dir_all(dir).map_err(|e| io_error("create", dir, e))?;
    std::fs::canonicalize(dir).map_err(|e| io_error("resolve", dir, e))
}

fn check_port_free(addr: SocketAddr) -> CliResult {
    UdpSocket::bind(addr).map(drop).map_err(|e| {
        CliError::failed(format!("UDP port {} is taken ({e})", addr.port()))
            .hint("stop what holds it, or choose other ports with --base-port")
    })
}

/// The node's status server (TCP, by default its port + 100) must be free too.
fn check_status_port_free(config: &NodeConfig) -> CliResult {
    let Some(addr) = config
        .status_addr()
        .map_err(|e| CliError::usage(e.to_string()))?
    else {
        return Ok(());
    };
    std::net::TcpListener::bind(addr).map(drop).map_err(|e| {
        CliError::failed(format!(
            "TCP port {} for store {}'s status server is taken ({e})",
            addr.port(),
            config.store_id
        ))
        .hint("stop what holds it, or choose other ports with --base-port")
    })
}

/// The client certificates and what each may do, as comment lines.
fn certs_text(dir: &Path) -> String {
    format!(
        "# client certificates in {}: client.pem is admin (env uses it: every command),\n\
         #   app.pem and app-key.pem are readwrite (keys only: for applications)\n",
        certs_dir(dir).display()
    )
}

/// Where each node serves `/metrics`, `/health` and `/status`, as comment lines.
fn status_text(nodes: &[PlayNode]) -> String {
    let mut out = String::from("# status servers (Prometheus /metrics, /health, /status):\n");
    for n in nodes {
        if let Ok(Some(addr)) = n.config.status_addr() {
            out.push_str(&format!("#   store {}: http://{addr}\n", n.config.store_id));
        }
    }
    out
}

fn spawn_node(node: &PlayNode) -> CliResult<Child> {
    let exe = std::env::current_exe().map_err(|e| {
        CliError::failed(format!(
            "cannot find this program's path to start nodes: {e}"
        ))
    })?;
    let log_path = node.log_path();
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|e| io_error("open", &log_path, e))?;
    let log_err = log
        .try_clone()
        .map_err(|e| io_error("open", &log_path, e))?;
    let mut cmd = Command::new(exe);
    cmd.arg("node")
        .arg("start")
        .arg("--config")
        .arg(&node.config_path)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        // The nodes do not share our terminal's process group: Ctrl-C reaches only us, and we
        // stop them in order; a detached cluster outlives the shell's job control.
        .process_group(0);
    // Client settings exported by `. DIR/env` must not leak into the node.
    for var in ["TINYKV_ENDPOINTS", "TINYKV_CA", "TINYKV_CERT", "TINYKV_KEY"] {
        cmd.env_remove(var);
    }
    let child = cmd.spawn().map_err(|e| {
        CliError::failed(format!("cannot start store {}: {e}", node.config.store_id))
    })?;
    let pid_path = node.pid_path();
    std::fs::write(&pid_path, format!("{}\n", child.id()))
        .map_err(|e| io_error("write", &pid_path, e))?;
    Ok(child)
}

fn env_text(dir: &Path, nodes: &[PlayNode]) -> String {
    let tls = client_tls(dir);
    let endpoints: Vec<String> = nodes
        .iter()
        .map(|n| n.config.advertise_addr().to_string())
        .collect();
    format!(
        "export TINYKV_ENDPOINTS={}\nexport TINYKV_CA={}\nexport TINYKV_CERT={}\nexport TINYKV_KEY={}\n",
        endpoints.join(","),
        tls.ca.display(),
        tls.cert.display(),
        tls.key.display()
    )
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

async fn up(global: &GlobalArgs, dir: &Path, n: u64, base_port: u16, detach: bool) -> CliResult {
    let existing = dir.join("node1").join("config.yaml").is_file();
    let nodes = if existing {
        load_nodes(dir)?
    } else {
        create(dir, n, base_port)?
    };
    let dir = absolute(dir)?;
    if existing && !app_tls(&dir).cert.exists() {
        // Made before certificates had roles: its client.pem now counts as readwrite, which
        // would lock the operator out of `node leave`, `transfer-leader` and the like.
        issue_client_certs(&dir)?;
        eprintln!(
            "issued {} (role admin) and {} (role readwrite)",
            client_tls(&dir).cert.display(),
            app_tls(&dir).cert.display()
        );
    }
    let mut children: Vec<(usize, Child)> = Vec::new();
    for (i, node) in nodes.iter().enumerate() {
        if let Some(pid) = node.running_pid() {
            eprintln!(
                "store {} is already running (pid {pid})",
                node.config.store_id
            );
            continue;
        }
        check_port_free(node.config.listen_addr)?;
        check_status_port_free(&node.config)?;
        children.push((i, spawn_node(node)?));
    }
    let env_path = dir.join("env");
    std::fs::write(&env_path, env_text(&dir, &nodes))
        .map_err(|e| io_error("write", &env_path, e))?;

    let config = ClientConfig {
        endpoints: nodes.iter().map(|n| n.config.advertise_addr()).collect(),
        tls: client_tls(&dir),
        timeout: global.timeout,
    };
    if let Err(e) = wait_for_leader(&config, &nodes, &mut children).await {
        let pids: Vec<(i32, &Path)> = children
            .iter()
            .map(|(i, c)| (c.id() as i32, nodes[*i].config_path.as_path()))
            .collect();
        process::stop_all(&pids, process::STOP_GRACE).await;
        reap(&mut children);
        return Err(e);
    }
    let statuses = collect_status(&config, &nodes_view(&nodes)).await;
    match global.output {
        Output::Json => {
            let mut out = status_json(&statuses);
            let (admin, app) = (client_tls(&dir), app_tls(&dir));
            out["env"] = json!(env_path.display().to_string());
            out["client_certs"] = json!([
                { "role": Role::Admin, "cert": admin.cert.display().to_string(), "key": admin.key.display().to_string() },
                { "role": Role::ReadWrite, "cert": app.cert.display().to_string(), "key": app.key.display().to_string() },
            ]);
            print_json(&out);
        }
        Output::Table => {
            print_status(global.output, &statuses);
            println!();
            println!(
                "# point tinykv at this cluster with `. {}`:",
                env_path.display()
            );
            print!("{}", env_text(&dir, &nodes));
            print!("{}", certs_text(&dir));
            print!("{}", status_text(&nodes));
        }
    }
    if detach {
        return Ok(());
    }
    foreground(&config, &nodes, &mut children).await
}

fn nodes_view(nodes: &[PlayNode]) -> Vec<NodeRef> {
    nodes
        .iter()
        .map(|n| NodeRef {
            id: n.config.store_id,
            addr: n.config.advertise_addr(),
            pid: n.running_pid(),
        })
        .collect()
}

fn reap(children: &mut [(usize, Child)]) {
    for (_, child) in children.iter_mut() {
        let _ = child.try_wait();
    }
}

/// Polls until some region has a leader; fails early when a node process dies.
async fn wait_for_leader(
    config: &ClientConfig,
    nodes: &[PlayNode],
    children: &mut [(usize, Child)],
) -> CliResult {
    let deadline = Instant::now() + LEADER_WAIT;
    let mut last_error;
    loop {
        for (i, child) in children.iter_mut() {
            if let Ok(Some(status)) = child.try_wait() {
                let node = &nodes[*i];
                return Err(CliError::failed(format!(
                    "store {} exited ({status}) while starting; the end of {}:\n{}",
                    node.config.store_id,
                    node.log_path().display(),
                    tail(&node.log_path(), 10)
                )));
            }
        }
        match Client::connect(config.clone()).await {
            Ok(client) => match client.cluster().await {
                Ok(info) if info.regions.iter().any(|r| r.leader_store.is_some()) => return Ok(()),
                Ok(_) => last_error = "no leader elected yet".to_string(),
                Err(e) => last_error = e.to_string(),
            },
            Err(e) => last_error = e.to_string(),
        }
        if Instant::now() >= deadline {
            return Err(CliError::new(
                Exit::Unreachable,
                format!("no leader within {LEADER_WAIT:?}: {last_error}"),
            )
            .hint("look at the nodes' logs (DIR/nodeI/node.log)"));
        }
        // Polling: an election is only observable by asking.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The foreground playground: a status line every few seconds until Ctrl-C or SIGTERM, then
/// the nodes are stopped.
async fn foreground(
    config: &ClientConfig,
    nodes: &[PlayNode],
    children: &mut [(usize, Child)],
) -> CliResult {
    let listen = |kind| {
        signal(kind).map_err(|e| CliError::failed(format!("cannot listen for signals: {e}")))
    };
    let mut term = listen(SignalKind::terminate())?;
    let mut int = listen(SignalKind::interrupt())?;
    eprintln!("running; Ctrl-C stops the cluster");
    let mut ticker = tokio::time::interval(STATUS_EVERY);
    ticker.tick().await;
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = ticker.tick() => {
                let statuses = collect_status(config, &nodes_view(nodes)).await;
                let up = statuses.iter().filter(|s| s.status.is_some()).count();
                let leader = statuses.iter().find(|s| s.status.as_ref().is_some_and(|st| !st.leader_of.is_empty()));
                eprintln!(
                    "{up}/{} nodes up, leader: {}",
                    statuses.len(),
                    leader.map(|l| format!("store {}", l.id)).unwrap_or_else(|| "none".into())
                );
            }
        }
    }
    eprintln!("stopping the nodes");
    let pids: Vec<(i32, &Path)> = children
        .iter()
        .map(|(i, c)| (c.id() as i32, nodes[*i].config_path.as_path()))
        .collect();
    let killed = process::stop_all(&pids, process::STOP_GRACE).await;
    reap(children);
    for node in nodes {
        let _ = std::fs::remove_file(node.pid_path());
    }
    if !killed.is_empty() {
        eprintln!(
            "killed after {:?} without exiting: pids {killed:?}",
            process::STOP_GRACE
        );
    }
    Ok(())
}

async fn down(global: &GlobalArgs, dir: &Path, clean: bool) -> CliResult {
    let nodes = load_nodes(dir)?;
    let pids: Vec<(i32, &Path)> = nodes
        .iter()
        .filter_map(|n| n.pid().map(|pid| (pid, n.config_path.as_path())))
        .collect();
    let running: Vec<i32> = pids
        .iter()
        .filter(|(p, c)| process::is_running(*p, c))
        .map(|(p, _)| *p)
        .collect();
    let killed = process::stop_all(&pids, process::STOP_GRACE).await;
    for node in &nodes {
        let _ = std::fs::remove_file(node.pid_path());
    }
    if clean {
        std::fs::remove_dir_all(dir).map_err(|e| io_error("remove", dir, e))?;
    }
    match global.output {
        Output::Json => {
            print_json(&json!({ "stopped": running, "killed": killed, "removed": clean }))
        }
        Output::Table => {
            println!("stopped {} node(s)", running.len());
            if !killed.is_empty() {
                println!(
                    "killed after {:?} without exiting: pids {killed:?}",
                    process::STOP_GRACE
                );
            }
            if clean {
                println!("removed {}", dir.display());
            }
        }
    }
    Ok(())
}

/// A node to report on.
struct NodeRef {
    id: u64,
    addr: SocketAddr,
    pid: Option<i32>,
}

struct NodeStatus {
    id: u64,
    addr: SocketAddr,
    pid: Option<i32>,
    status: Option<StoreStatus>,
}

/// Asks every node for its status at once, through a client connected for the purpose.
async fn collect_status(config: &ClientConfig, nodes: &[NodeRef]) -> Vec<NodeStatus> {
    let client = Client::connect(config.clone()).await.ok();
    statuses_of(client.as_ref(), nodes).await
}

/// Every node's status (none for a node that does not answer), asked of all at once: nodes
/// that are down cost one connect timeout together, not one each.
async fn statuses_of(client: Option<&Client>, nodes: &[NodeRef]) -> Vec<NodeStatus> {
    let answers = match client {
        Some(client) => {
            let addrs: Vec<SocketAddr> = nodes.iter().map(|n| n.addr).collect();
            client.admin_each(&addrs, AdminRequest::StoreStatus).await
        }
        None => Vec::new(),
    };
    // One answer per node, in order (none at all without a client).
    let mut answers = answers.into_iter();
    nodes
        .iter()
        .map(|n| NodeStatus {
            id: n.id,
            addr: n.addr,
            pid: n.pid,
            status: match answers.next() {
                Some((_, Ok(AdminResponse::StoreStatus(s)))) => Some(s),
                _ => None,
            },
        })
        .collect()
}

/// The placement driver's own account, or why there is none.
async fn driver_status(client: &Client) -> Result<DriverStatus, String> {
    match client.placement(PlacementRequest::Status).await {
        Ok(PlacementAnswer::Status(s)) => Ok(s),
        Ok(other) => Err(format!("unexpected answer {other:?}")),
        Err(e) => Err(e.to_string()),
    }
}

async fn status(global: &GlobalArgs, dir: Option<&Path>) -> CliResult {
    // One client for everything asked below: what it learns of a node that is down (tried
    // last from then on) spares the later questions its connect timeout.
    let (client, nodes) = match dir {
        Some(dir) => {
            let nodes = load_nodes(dir)?;
            let config = ClientConfig {
                endpoints: nodes.iter().map(|n| n.config.advertise_addr()).collect(),
                tls: client_tls(dir),
                timeout: global.timeout,
            };
            let client = Client::connect(config).await.map_err(|e| e.to_string());
            (client, nodes_view(&nodes))
        }
        None => {
            let client = connect::client(global).await?;
            let info = client.cluster().await?;
            let nodes = info
                .stores
                .iter()
                .filter_map(|s| {
                    s.addr.parse().ok().map(|addr| NodeRef {
                        id: s.store_id,
                        addr,
                        pid: None,
                    })
                })
                .collect();
            (Ok(client), nodes)
        }
    };
    let statuses = statuses_of(client.as_ref().ok(), &nodes).await;
    let driver = match &client {
        Ok(client) => driver_status(client).await,
        Err(reason) => Err(reason.clone()),
    };
    match global.output {
        Output::Json => {
            let mut out = status_json(&statuses);
            out["placement"] = match &driver {
                Ok(d) => json!({
                    "leader_store": d.driver.store_id,
                    "term": d.driver.term,
                    "scheduling": d.scheduling,
                    "stores": d.stores,
                    "regions": d.regions,
                    "operators": d.operators,
                    "max_replicas": d.max_replicas,
                }),
                Err(reason) => json!({ "error": reason }),
            };
            print_json(&out);
        }
        Output::Table => {
            print_status(global.output, &statuses);
            match &driver {
                Ok(d) => println!(
                    "placement driver: store {} (term {}), {}; {} stores, {} regions, {} operators",
                    d.driver.store_id,
                    d.driver.term,
                    if d.scheduling {
                        "scheduling"
                    } else {
                        "warming up"
                    },
                    d.stores,
                    d.regions,
                    d.operators
                ),
                Err(reason) => println!("placement driver: {reason}"),
            }
        }
    }
    let down: Vec<u64> = statuses
        .iter()
        .filter(|s| s.status.is_none())
        .map(|s| s.id)
        .collect();
    if !down.is_empty() {
        return Err(
            CliError::new(Exit::Unhealthy, format!("store(s) {down:?} do not answer")).hint(
                "see DIR/nodeI/node.log; `tinykv cluster up --dir DIR` restarts stopped nodes",
            ),
        );
    }
    // What makes a store's /health answer 503: a region it cannot reach a leader of.
    let leaderless: Vec<String> = statuses
        .iter()
        .filter_map(|n| n.status.as_ref())
        .filter(|s| !s.regions_without_leader.is_empty())
        .map(|s| format!("store {}: {:?}", s.store_id, s.regions_without_leader))
        .collect();
    if !leaderless.is_empty() {
        return Err(CliError::new(
            Exit::Unhealthy,
            format!("regions without a leader ({})", leaderless.join("; ")),
        )
        .hint(
            "an election may be under way (ask again in a few seconds); if it lasts, a quorum \
             of the region's stores is down or cut off: `tinykv region show ID` lists them",
        ));
    }
    Ok(())
}

/// How many of a store's peers hibernate.
fn hibernating(s: &StoreStatus) -> usize {
    s.peers.iter().filter(|p| p.hibernating).count()
}

/// The term and applied index reported for a store: those of its lowest-numbered region.
fn headline(s: &StoreStatus) -> (u64, u64) {
    s.peers
        .iter()
        .min_by_key(|p| p.state.region)
        .map(|p| (p.state.term, p.state.applied))
        .unwrap_or((0, 0))
}

/// The nodes' states as `cluster status -o json` prints them.
fn status_json(statuses: &[NodeStatus]) -> Value {
    let nodes: Vec<Value> = statuses
        .iter()
        .map(|n| {
            let mut v = json!({ "id": n.id, "addr": n.addr.to_string(), "pid": n.pid, "up": n.status.is_some() });
            if let Some(s) = &n.status {
                let (term, applied) = headline(s);
                let mut leader_of = s.leader_of.clone();
                leader_of.sort_unstable();
                let peers: Vec<Value> = s
                    .peers
                    .iter()
                    .map(|p| json!({ "region": p.state.region, "peer": p.state.peer, "role": p.role, "term": p.state.term, "commit": p.state.commit, "applied": p.state.applied, "hibernating": p.hibernating }))
                    .collect();
                v["leaders"] = json!(leader_of.len());
                v["leader_of"] = json!(leader_of);
                v["regions"] = json!(s.peers.len());
                v["hibernating"] = json!(hibernating(s));
                v["term"] = json!(term);
                v["applied"] = json!(applied);
                v["healthy"] = json!(s.regions_without_leader.is_empty());
                v["regions_without_leader"] = json!(s.regions_without_leader);
                v["version"] = json!(s.version);
                v["disk_bytes"] = json!(s.disk_bytes);
                v["uptime_secs"] = json!(s.uptime_secs);
                v["peers"] = json!(peers);
            } else {
                v["leader_of"] = json!([]);
                v["leaders"] = json!(0);
                v["regions"] = json!(0);
                v["hibernating"] = json!(0);
                v["term"] = Value::Null;
                v["applied"] = Value::Null;
                v["healthy"] = json!(false);
            }
            v
        })
        .collect();
    json!({ "nodes": nodes })
}

fn print_status(output: Output, statuses: &[NodeStatus]) {
    match output {
        Output::Json => print_json(&status_json(statuses)),
        Output::Table => {
            let mut t = Table::new(&[
                "ID", "ADDRESS", "PID", "STATE", "REGIONS", "LEADERS", "ASLEEP", "TERM", "APPLIED",
                "DISK",
            ]);
            for n in statuses {
                let pid = n.pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into());
                match &n.status {
                    Some(s) => {
                        let (term, applied) = headline(s);
                        let state = if s.regions_without_leader.is_empty() {
                            "up".to_string()
                        } else {
                            format!("no leader for {}", s.regions_without_leader.len())
                        };
                        t.row(vec![
                            n.id.to_string(),
                            n.addr.to_string(),
                            pid,
                            state,
                            s.peers.len().to_string(),
                            s.leader_of.len().to_string(),
                            hibernating(s).to_string(),
                            term.to_string(),
                            applied.to_string(),
                            human_bytes(s.disk_bytes),
                        ]);
                    }
                    None => t.row(vec![
                        n.id.to_string(),
                        n.addr.to_string(),
                        pid,
                        "down".into(),
                        "-".into(),
                        "-".into(),
                        "-".into(),
                        "-".into(),
                        "-".into(),
                        "-".into(),
                    ]),
                }
            }
            t.print();
        }
    }
}
