//! `node start|join|leave|promote`: one node in the foreground until SIGINT/SIGTERM, and
//! changing which stores hold and vote in the regions.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;
use tinykv_node::config::{Member, NodeConfig};
use tinykv_node::{JoinAs, Node};
use tinykv_proto::api::{AdminRequest, AdminResponse};
use tokio::signal::unix::{SignalKind, signal};

use crate::args::{GlobalArgs, NodeCmd, NodeStartArgs, Output};
use crate::connect;
use crate::exit::{CliError, CliResult};
use crate::output::print_json;

pub async fn run(global: &GlobalArgs, cmd: NodeCmd) -> CliResult {
    match cmd {
        NodeCmd::Start(args) => {
            let config = node_config(&args)?;
            let mut stop = StopSignal::install()?;
            let node = Node::start(config).await.map_err(start_error)?;
            tracing::info!(store = node.store_id(), addr = %node.addr(), "serving; stop with Ctrl-C or SIGTERM");
            serve(node, &mut stop).await
        }
        NodeCmd::Join {
            start,
            seed,
            learner,
        } => {
            let config = node_config(&start)?;
            let placed = config.placement.enabled;
            let mut stop = StopSignal::install()?;
            let node = Node::join(config, seed, JoinAs::Learner)
                .await
                .map_err(start_error)?;
            tracing::info!(store = node.store_id(), %seed, "joined the cluster as a learner");
            tokio::select! {
                joined = follow_join(&node, seed, !learner) => {
                    match joined {
                        Ok(_) if placed => print_placed(global.output, node.store_id()),
                        Ok(regions) => print_joined(global.output, node.store_id(), &regions, !learner),
                        Err(e) => {
                            node.shutdown().await;
                            return Err(e);
                        }
                    }
                }
                _ = stop.wait() => {
                    node.shutdown().await;
                    return Ok(());
                }
                failure = node.stopped() => {
                    node.shutdown().await;
                    return Err(stopped_error(failure));
                }
            }
            serve(node, &mut stop).await
        }
        NodeCmd::Promote { store, wait } => promote(global, store, wait).await,
        NodeCmd::Leave { store } => leave(global, store).await,
    }
}

/// The config file (or the defaults) with the command-line overrides applied, validated.
fn node_config(args: &NodeStartArgs) -> CliResult<NodeConfig> {
    let mut config = match &args.config {
        Some(path) => NodeConfig::load(path).map_err(|e| {
            CliError::failed(e.to_string()).hint(
                "`tinykv config check FILE` explains; `tinykv config default` lists every key",
            )
        })?,
        None => NodeConfig::default(),
    };
    if let Some(id) = args.store_id {
        config.store_id = id;
    }
    if let Some(addr) = args.listen_addr {
        config.listen_addr = addr;
    }
    if !args.initial_cluster.is_empty() {
        config.initial_cluster = args
            .initial_cluster
            .iter()
            .map(|m| m.parse::<Member>())
            .collect::<Result<_, _>>()
            .map_err(|e| CliError::usage(format!("--initial-cluster: {e}")))?;
    }
    if let Some(dir) = &args.data_dir {
        config.data_dir = dir.clone();
    }
    config.validate().map_err(|e| {
        CliError::failed(e.to_string()).hint("`tinykv config default` lists every key")
    })?;
    Ok(config)
}

fn start_error(e: tinykv_node::NodeError) -> CliError {
    use tinykv_node::NodeError;
    let hint = match &e {
        NodeError::Bind { .. } => "another process holds the port: stop it or change listen-addr",
        NodeError::Tls(_) => "check the tls.ca/cert/key paths; `tinykv cert issue` makes them",
        NodeError::Join { .. } => {
            "check that --seed names a running member and that it shares the CA"
        }
        NodeError::StoreIdMismatch { .. } => "each store needs its own data-dir",
        NodeError::LostData { .. } => "the message above gives the two commands that rebuild it",
        NodeError::Config(_) => "`tinykv config default` documents every key",
        _ => "see the node's log above",
    };
    CliError::failed(format!("the node could not start: {e}")).hint(hint)
}

/// Serves until SIGINT or SIGTERM, or until the store stops on its own after a failed write or
/// fsync: then the process ends with an error instead of serving a store that cannot write.
async fn serve(node: Node, stop: &mut StopSignal) -> CliResult {
    let outcome = tokio::select! {
        _ = stop.wait() => Ok(()),
        failure = node.stopped() => Err(stopped_error(failure)),
    };
    node.shutdown().await;
    outcome
}

fn stopped_error(e: tinykv_node::NodeError) -> CliError {
    let out_of_space = matches!(
        e,
        tinykv_node::NodeError::StoreStopped {
            out_of_space: true,
            ..
        }
    );
    if out_of_space {
        CliError::new(crate::exit::Exit::DiskFull, e.to_string()).hint(
            "free space on the data dir's filesystem (or grow it), then start the node again on \
             the same data-dir: every acknowledged write is on disk and is recovered; \
             storage.reserve-space makes the node refuse writes before the disk fills",
        )
    } else {
        CliError::failed(e.to_string()).hint(
            "check the disk (the node's log above has the error), then start the node again on \
             the same data-dir: every acknowledged write is on disk and is recovered",
        )
    }
}

/// SIGINT and SIGTERM, registered before the node starts so neither can be missed.
struct StopSignal {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl StopSignal {
    fn install() -> CliResult<StopSignal> {
        let listen = |kind| {
            signal(kind).map_err(|e| CliError::failed(format!("cannot listen for signals: {e}")))
        };
        Ok(StopSignal {
            term: listen(SignalKind::terminate())?,
            int: listen(SignalKind::interrupt())?,
        })
    }

    async fn wait(&mut self) {
        tokio::select! {
            _ = self.term.recv() => tracing::info!("SIGTERM: stopping"),
            _ = self.int.recv() => tracing::info!("SIGINT: stopping"),
        }
    }
}

/// Follows a newly joined store until each of its regions has applied as far as the cluster had
/// when it joined (a progress bar on a terminal: snapshot bytes, then log entries), then
/// promotes its learners to voters when `promote`. Returns the regions joined.
async fn follow_join(node: &Node, seed: SocketAddr, promote: bool) -> CliResult<Vec<u64>> {
    let client = node.cluster_client(seed).await.map_err(|e| {
        CliError::new(
            crate::exit::Exit::Unreachable,
            format!("cannot follow the join through {seed}: {e}"),
        )
    })?;
    let regions = client.regions().await?;
    let targets: Vec<(u64, u64)> = regions
        .iter()
        .filter(|r| r.region.peer_on_store(node.store_id()).is_some())
        .map(|r| (r.region.id, r.applied))
        .collect();
    let progress = JoinProgress::new();
    let mut ticker = tokio::time::interval(Duration::from_millis(200));
    loop {
        ticker.tick().await;
        let status = match node.admin(AdminRequest::StoreStatus).await {
            Ok(AdminResponse::StoreStatus(s)) => s,
            _ => continue,
        };
        if let Some(t) = status.receiving.first() {
            progress.snapshot(t.region_id, t.bytes, t.total);
            continue;
        }
        let applied: u64 = targets
            .iter()
            .map(|(region, target)| {
                status
                    .peers
                    .iter()
                    .find(|p| p.state.region == *region)
                    .map_or(0, |p| p.state.applied.min(*target))
            })
            .sum();
        let total: u64 = targets.iter().map(|(_, t)| t).sum();
        progress.entries(applied, total);
        if applied >= total {
            break;
        }
    }
    if promote {
        progress.promoting();
        for (region, _) in &targets {
            client
                .promote_learner(*region, node.store_id(), PROMOTE_WAIT)
                .await
                .map_err(|e| {
                    CliError::from(e).hint(format!(
                        "the store stays a learner of region {region}: `tinykv node promote {}` \
                         once it has caught up, or `tinykv node leave {}`",
                        node.store_id(),
                        node.store_id()
                    ))
                })?;
        }
    }
    progress.finish();
    Ok(targets.into_iter().map(|(r, _)| r).collect())
}

/// How long `node join` waits for its learners to be close enough to promote after catching
/// up to where the cluster was when it joined.
const PROMOTE_WAIT: Duration = Duration::from_secs(300);

/// What `node join` shows while it catches up: a bar on a terminal, log lines otherwise.
struct JoinProgress {
    bar: Option<ProgressBar>,
}

impl JoinProgress {
    fn new() -> JoinProgress {
        let bar = std::io::stderr().is_terminal().then(|| ProgressBar::new(0));
        JoinProgress { bar }
    }

    fn style(&self, template: &str) {
        if let (Some(bar), Ok(style)) = (&self.bar, ProgressStyle::with_template(template)) {
            bar.set_style(style);
        }
    }

    fn snapshot(&self, region: u64, bytes: u64, total: u64) {
        match &self.bar {
            Some(bar) => {
                self.style(&format!(
                    "region {region}: snapshot {{bar:40}} {{bytes}}/{{total_bytes}} {{bytes_per_sec}}"
                ));
                bar.set_length(total);
                bar.set_position(bytes);
            }
            None => tracing::debug!(region, bytes, total, "receiving a snapshot"),
        }
    }

    fn entries(&self, applied: u64, total: u64) {
        if let Some(bar) = &self.bar {
            self.style("catching up {bar:40} {pos}/{len} entries applied");
            bar.set_length(total);
            bar.set_position(applied);
        }
    }

    fn promoting(&self) {
        match &self.bar {
            Some(bar) => {
                self.style("{msg}");
                bar.set_message("caught up; promoting to voter");
            }
            None => tracing::info!("caught up; promoting to voter"),
        }
    }

    fn finish(self) {
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
        }
    }
}

fn print_placed(output: Output, store: u64) {
    match output {
        Output::Json => {
            print_json(&json!({ "store": store, "regions": [], "placed_by": "placement driver" }))
        }
        Output::Table => println!(
            "store {store} joined; the placement driver moves replicas onto it (`tinykv store show {store}`)"
        ),
    }
}

fn print_joined(output: Output, store: u64, regions: &[u64], voter: bool) {
    let role = if voter { "voter" } else { "learner" };
    match output {
        Output::Json => print_json(&json!({ "store": store, "regions": regions, "role": role })),
        Output::Table => println!("store {store} is a {role} of regions {regions:?}"),
    }
}

/// `node promote`: the store's learners become voters once caught up.
async fn promote(global: &GlobalArgs, store: u64, wait: Duration) -> CliResult {
    let client = connect::client(global).await?;
    let regions = client.regions().await?;
    let learner_of: Vec<u64> = regions
        .iter()
        .filter(|r| {
            r.region
                .peer_on_store(store)
                .is_some_and(|p| p.is_learner())
        })
        .map(|r| r.region.id)
        .collect();
    let member_of = regions
        .iter()
        .any(|r| r.region.peer_on_store(store).is_some());
    if !member_of {
        return Err(CliError::new(
            crate::exit::Exit::NotFound,
            format!("store {store} holds no peer of any region"),
        )
        .hint("`tinykv node join` adds a store; `tinykv region list` shows the peers"));
    }
    for region in &learner_of {
        client.promote_learner(*region, store, wait).await?;
    }
    match global.output {
        Output::Json => print_json(&json!({ "store": store, "promoted_in": learner_of })),
        Output::Table => println!(
            "store {store} is a voter of every region it holds (promoted in {learner_of:?})"
        ),
    }
    Ok(())
}

async fn leave(global: &GlobalArgs, store: u64) -> CliResult {
    let client = connect::client(global).await?;
    let info = client.cluster().await?;
    if !info.stores.iter().any(|s| s.store_id == store) {
        return Err(CliError::new(
            crate::exit::Exit::NotFound,
            format!("store {store} is not in the cluster"),
        )
        .hint("`tinykv cluster status` lists the stores"));
    }
    let mut removed = Vec::new();
    // Every region of the cluster: the store that answered hosts only some.
    for r in &client.regions().await? {
        if r.region.peers.iter().any(|p| p.store_id == store) {
            // Moves leadership off the store first where it leads.
            client.remove_peer(r.region.id, store).await?;
            removed.push(r.region.id);
        }
    }
    match global.output {
        Output::Json => print_json(&json!({ "store": store, "removed_from": removed })),
        Output::Table => println!("store {store} removed from regions {removed:?}"),
    }
    Ok(())
}
