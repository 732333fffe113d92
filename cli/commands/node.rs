//! `node start|join|leave`: one node in the foreground until SIGINT/SIGTERM, and retiring a store.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;
use tinykv_node::api::{AdminRequest, AdminResponse};
use tinykv_node::config::{Member, NodeConfig};
use tinykv_node::{Client, ClientConfig, Node};
use tinykv_transport::TlsFiles;
use tokio::signal::unix::{SignalKind, signal};

use crate::args::{GlobalArgs, NodeCmd, NodeStartArgs, Output};
use crate::connect;
use crate::exit::{CliError, CliResult};
use crate::output::print_json;

pub async fn run(global: &GlobalArgs, cmd: NodeCmd) -> CliResult {
    match cmd {
        NodeCmd::Start(args) => {
            let config = node_config(global, &args)?;
            let mut stop = StopSignal::install()?;
            let node = Node::start(config).await.map_err(start_error)?;
            tracing::info!(store = node.store_id(), addr = %node.addr(), "serving; stop with Ctrl-C or SIGTERM");
            serve(node, &mut stop).await
        }
        NodeCmd::Join { start, seed } => {
            let config = node_config(global, &start)?;
            let tls = TlsFiles {
                ca: config.tls.ca.clone(),
                cert: config.tls.cert.clone(),
                key: config.tls.key.clone(),
            };
            let mut stop = StopSignal::install()?;
            let node = Node::join(config, seed).await.map_err(start_error)?;
            tracing::info!(store = node.store_id(), %seed, "joined the cluster");
            tokio::select! {
                caught_up = catch_up(&node, seed, tls) => {
                    if let Err(e) = caught_up {
                        tracing::warn!(error = %e, "cannot follow the catch-up; the node keeps running");
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
        NodeCmd::Leave { store } => leave(global, store).await,
    }
}

/// The config file (or the defaults) with the command-line overrides applied, validated.
fn node_config(global: &GlobalArgs, args: &NodeStartArgs) -> CliResult<NodeConfig> {
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
    if let Some(dir) = &global.data_dir {
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
/// when it joined: a progress bar on a terminal, a log line otherwise.
async fn catch_up(node: &Node, seed: SocketAddr, tls: TlsFiles) -> Result<(), String> {
    let client = Client::connect(ClientConfig {
        endpoints: vec![seed],
        tls,
        timeout: Duration::from_secs(10),
    })
    .await
    .map_err(|e| e.to_string())?;
    let info = client.cluster().await.map_err(|e| e.to_string())?;
    let targets: Vec<(u64, u64)> = info
        .regions
        .iter()
        .filter(|r| r.region.peers.iter().any(|p| p.store_id == node.store_id()))
        .map(|r| (r.region.id, r.applied))
        .collect();
    let total: u64 = targets.iter().map(|(_, applied)| applied).sum();
    let bar = if std::io::stderr().is_terminal() {
        let bar = ProgressBar::new(total);
        if let Ok(style) =
            ProgressStyle::with_template("catching up {bar:40} {pos}/{len} entries applied")
        {
            bar.set_style(style);
        }
        Some(bar)
    } else {
        None
    };
    let mut ticker = tokio::time::interval(Duration::from_millis(200));
    loop {
        ticker.tick().await;
        let mut done = 0;
        for (region, target) in &targets {
            let applied = match node
                .admin(AdminRequest::RaftState { region_id: *region })
                .await
            {
                Ok(AdminResponse::RaftState(s)) => s.state.applied,
                _ => 0,
            };
            done += applied.min(*target);
        }
        if let Some(bar) = &bar {
            bar.set_position(done);
        }
        if done >= total {
            if let Some(bar) = bar {
                bar.finish();
            }
            tracing::info!(applied = done, "caught up with the cluster");
            return Ok(());
        }
    }
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
    for r in &info.regions {
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
