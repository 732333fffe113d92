//! The command tree. Global flags come before or after the noun; every flag with an environment
//! variable can be set once with `. DIR/env` after `tinykv cluster up --dir DIR`.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Parser, Debug)]
#[command(
    name = "tinykv",
    version = concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("TINYKV_COMMIT"), ")"),
    about = "A Raft-replicated key-value store over QUIC with mutual TLS",
    propagate_version = true
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args, Debug, Clone)]
pub struct GlobalArgs {
    /// Nodes to talk to, comma separated HOST:PORT.
    #[arg(
        short = 'e',
        long,
        global = true,
        env = "TINYKV_ENDPOINTS",
        value_delimiter = ','
    )]
    pub endpoints: Vec<SocketAddr>,
    /// Read a stopped node's data directory instead of asking a running node.
    #[arg(long, global = true)]
    pub data_dir: Option<PathBuf>,
    /// Output format: a table for people, one JSON document for scripts.
    #[arg(short = 'o', long, global = true, value_enum, default_value_t = Output::Table)]
    pub output: Output,
    /// The cluster CA certificate (PEM).
    #[arg(long, global = true, env = "TINYKV_CA")]
    pub ca: Option<PathBuf>,
    /// The client certificate (PEM).
    #[arg(long, global = true, env = "TINYKV_CERT")]
    pub cert: Option<PathBuf>,
    /// The client private key (PEM).
    #[arg(long, global = true, env = "TINYKV_KEY")]
    pub key: Option<PathBuf>,
    /// How long to wait for an answer, e.g. 5s or 500ms.
    #[arg(long, global = true, default_value = "5s", value_parser = parse_duration)]
    pub timeout: std::time::Duration,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    /// Aligned columns for people.
    Table,
    /// One JSON document for scripts.
    Json,
}

pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    s.parse::<tinykv_node::config::ReadableDuration>()
        .map(|d| d.0)
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// A local cluster for trying tinykv out: certificates, configs and node processes.
    #[command(subcommand)]
    Cluster(ClusterCmd),
    /// Run, join or retire one node.
    #[command(subcommand)]
    Node(NodeCmd),
    /// Read and write keys.
    #[command(subcommand)]
    Kv(KvCmd),
    /// Inspect regions, online (-e) or offline (--data-dir).
    #[command(subcommand)]
    Region(RegionCmd),
    /// Inspect a region's Raft state and log, online (-e) or offline (--data-dir).
    #[command(subcommand)]
    Raft(RaftCmd),
    /// Make a region's leader build a snapshot.
    #[command(subcommand)]
    Snapshot(SnapshotCmd),
    /// Compact a region's Raft log.
    #[command(subcommand)]
    Compact(CompactCmd),
    /// Hand a region's leadership to the peer on another store.
    TransferLeader {
        /// The region's id.
        region: u64,
        /// The store whose peer of the region is to lead it.
        store: u64,
    },
    /// Make a CA and certificates.
    #[command(subcommand)]
    Cert(CertCmd),
    /// Print or check node configuration files.
    #[command(subcommand)]
    Config(ConfigCmd),
    /// Load a running cluster and report throughput and latency.
    Bench(BenchArgs),
    /// Print a shell completion script: `tinykv completion bash > /etc/bash_completion.d/tinykv`.
    Completion {
        /// The shell to complete in.
        shell: clap_complete::Shell,
    },
}

#[derive(Subcommand, Debug)]
pub enum ClusterCmd {
    /// Start a local cluster; runs in the foreground until Ctrl-C unless --detach.
    Up {
        /// How many nodes to start.
        #[arg(long, default_value_t = 3)]
        nodes: u64,
        /// Where certificates, configs, data and logs go.
        #[arg(long, default_value = "tinykv-playground")]
        dir: PathBuf,
        /// The first node's port; node i listens on base-port + i - 1.
        #[arg(long, default_value_t = 20160)]
        base_port: u16,
        /// Leave the nodes running and return.
        #[arg(long)]
        detach: bool,
    },
    /// Stop what `cluster up --detach` started.
    Down {
        /// The directory `cluster up` made.
        #[arg(long, default_value = "tinykv-playground")]
        dir: PathBuf,
        /// Also remove the directory.
        #[arg(long)]
        clean: bool,
    },
    /// Each node's state, regions, term and indices; exit code 6 when a node is down.
    Status {
        /// A directory `cluster up` made: its nodes are listed with their pids, down ones
        /// too. Without it, the nodes of --endpoints are asked.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
pub enum NodeCmd {
    /// Run one node in the foreground.
    Start(NodeStartArgs),
    /// Start a new node and add it to a running cluster: it joins every region as a learner,
    /// catches up (a snapshot, then the log; progress on a terminal) and is promoted to voter,
    /// then keeps serving in the foreground.
    Join {
        #[command(flatten)]
        start: NodeStartArgs,
        /// Any member of the running cluster.
        #[arg(long)]
        seed: SocketAddr,
        /// Stay a learner (receives and applies the log, never votes); `node promote` later.
        #[arg(long)]
        learner: bool,
    },
    /// Remove a store's peers from the cluster (leadership moves off it first).
    Leave {
        /// The store to retire.
        store: u64,
    },
    /// Make a store's learners voters, once each has caught up with its leader.
    Promote {
        /// The store whose learners to promote.
        store: u64,
        /// How long to wait for the learners to catch up.
        #[arg(long, default_value = "60s", value_parser = parse_duration)]
        wait: std::time::Duration,
    },
}

#[derive(Args, Debug, Clone)]
pub struct NodeStartArgs {
    /// The node's YAML configuration file.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Overrides `store-id`.
    #[arg(long)]
    pub store_id: Option<u64>,
    /// Overrides `listen-addr`.
    #[arg(long)]
    pub listen_addr: Option<SocketAddr>,
    /// Overrides `initial-cluster` (ID=HOST:PORT,...).
    #[arg(long, value_delimiter = ',')]
    pub initial_cluster: Vec<String>,
}

#[derive(Subcommand, Debug)]
pub enum KvCmd {
    /// Write a key; answered once the write is applied on a quorum.
    Put {
        // The id differs from the global --key (the client key file) so clap keeps them apart.
        /// The key.
        #[arg(id = "user_key", value_name = "KEY")]
        key: String,
        /// The value; `-` reads it from standard input.
        value: String,
    },
    /// Read a key (linearizable unless --stale); exits 5 when it is absent.
    Get {
        // The id differs from the global --key (the client key file) so clap keeps them apart.
        /// The key.
        #[arg(id = "user_key", value_name = "KEY")]
        key: String,
        /// Serve from any node's applied state (may be stale).
        #[arg(long)]
        stale: bool,
    },
    /// Delete a key (deleting an absent key succeeds), or with --prefix every key that starts
    /// with it (one log entry per region; prints the count).
    Delete {
        // The id differs from the global --key (the client key file) so clap keeps them apart.
        /// The key.
        #[arg(
            id = "user_key",
            value_name = "KEY",
            required_unless_present = "prefix"
        )]
        key: Option<String>,
        /// Delete every key that starts with this (not empty).
        #[arg(long, conflicts_with = "user_key")]
        prefix: Option<String>,
    },
    /// Delete every key in [FROM, TO) across regions, one log entry per region; prints the
    /// count.
    DeleteRange {
        /// Inclusive start; empty for the first key.
        from: String,
        /// Exclusive end; empty for no end.
        to: String,
    },
    /// List keys and values in key order, across regions.
    Scan {
        /// Inclusive start; empty for the first key.
        #[arg(long, default_value = "")]
        from: String,
        /// Exclusive end; empty for no end.
        #[arg(long, default_value = "")]
        to: String,
        /// Only keys that start with this (instead of --from and --to).
        #[arg(long, conflicts_with_all = ["from", "to"])]
        prefix: Option<String>,
        /// At most this many pairs.
        #[arg(long, default_value_t = 100)]
        limit: u32,
        /// Serve from any node's applied state (may be stale).
        #[arg(long)]
        stale: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum RegionCmd {
    /// Every region of the cluster in key order: range, epoch, peers and roles, leader,
    /// approximate size and keys; with --data-dir, the regions a stopped store holds (state,
    /// keys counted) and the store addresses it knows.
    List,
    /// One region, as its leader describes it (with --data-dir, as a stopped store holds it).
    Show {
        /// The region's id.
        id: u64,
    },
    /// The region that holds a key (with --data-dir, among a stopped store's regions).
    Locate {
        // The id differs from the global --key (the client key file) so clap keeps them apart.
        /// The user key.
        #[arg(id = "user_key", value_name = "KEY")]
        key: String,
    },
    /// Split a region at one or more keys: it keeps the range left of the first key, and each
    /// key starts a new region on the same stores.
    Split {
        /// The region's id.
        region: u64,
        /// Where a new region starts; repeat for several (strictly increasing, inside the
        /// region, not its start key).
        #[arg(long = "split-key", value_name = "KEY", required = true)]
        split_keys: Vec<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum RaftCmd {
    /// A region's hard state (term, vote, commit), applied index and log bounds.
    State {
        /// The region's id.
        region: u64,
    },
    /// A region's log entries, described (at most 1,000).
    Log {
        /// The region's id.
        region: u64,
        /// The first index to show (default: the first kept).
        #[arg(long)]
        from: Option<u64>,
        /// The index to stop before (default: past the last).
        #[arg(long)]
        to: Option<u64>,
    },
}

#[derive(Subcommand, Debug)]
pub enum SnapshotCmd {
    /// Have the region's leader build a snapshot now.
    Trigger {
        /// The region's id.
        region: u64,
    },
}

#[derive(Subcommand, Debug)]
pub enum CompactCmd {
    /// Have the region's leader compact its log up to what it applied.
    Log {
        /// The region's id.
        region: u64,
    },
}

#[derive(Subcommand, Debug)]
pub enum CertCmd {
    /// Create a cluster CA in DIR.
    InitCa {
        /// The directory for ca.pem and ca-key.pem.
        #[arg(long)]
        out: PathBuf,
    },
    /// Issue a node (store-ID) or client certificate signed by the CA in --ca-dir.
    Issue {
        /// `store-ID` for a node, any name with --client.
        name: String,
        /// The directory `cert init-ca` wrote.
        #[arg(long)]
        ca_dir: PathBuf,
        /// Extra host names or IPs the certificate is valid for.
        #[arg(long)]
        san: Vec<String>,
        /// A client certificate (for the command line or an application), not a node's.
        #[arg(long)]
        client: bool,
        /// What the client certificate may do (with --client; default readwrite). A client
        /// certificate issued before roles existed counts as readwrite. A node's certificate
        /// may do everything.
        #[arg(long, value_enum, value_name = "ROLE")]
        role: Option<CertRole>,
        /// Where to write NAME.pem and NAME-key.pem (default: the CA directory).
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

/// The roles a client certificate can carry.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum CertRole {
    /// Everything readwrite may, and change the cluster: node leave and promote,
    /// transfer-leader, compact log, snapshot trigger, region split, faults.
    Admin,
    /// Read and write keys, read the cluster's state: what an application needs.
    #[value(name = "readwrite")]
    ReadWrite,
    /// Read keys and the cluster's state (regions, status, Raft state and log).
    #[value(name = "readonly")]
    ReadOnly,
}

impl From<CertRole> for tinykv_transport::Role {
    fn from(role: CertRole) -> Self {
        match role {
            CertRole::Admin => tinykv_transport::Role::Admin,
            CertRole::ReadWrite => tinykv_transport::Role::ReadWrite,
            CertRole::ReadOnly => tinykv_transport::Role::ReadOnly,
        }
    }
}

#[derive(Subcommand, Debug)]
pub enum ConfigCmd {
    /// Print a complete configuration with comments.
    Default,
    /// Validate a configuration file.
    Check {
        /// The YAML file to check.
        file: PathBuf,
    },
}

#[derive(Args, Debug, Clone)]
pub struct BenchArgs {
    /// Concurrent clients, each with one request in flight.
    #[arg(long, default_value_t = 16)]
    pub clients: usize,
    /// How long to run (put, get, mixed).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: std::time::Duration,
    /// Bytes of each value written.
    #[arg(long, default_value_t = 100)]
    pub value_size: usize,
    /// What the clients do.
    #[arg(long, value_enum, default_value_t = BenchOp::Put)]
    pub op: BenchOp,
    /// Distinct keys the load touches.
    #[arg(long, default_value_t = 10_000)]
    pub keys: u64,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum BenchOp {
    /// Random keys, for --duration.
    Put,
    /// Linearizable reads of random keys (written first), for --duration.
    Get,
    /// Half gets, half puts.
    Mixed,
    /// Writes each of the --keys keys once, in order, then stops (pre-loading a cluster).
    Fill,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::Cli;

    /// Every command, argument and choice a user can type says what it is for.
    #[test]
    fn every_command_argument_and_choice_has_help() {
        let mut missing = Vec::new();
        walk(&Cli::command(), "tinykv", &mut missing);
        assert!(missing.is_empty(), "without help text: {missing:#?}");
    }

    fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
        if cmd.get_about().is_none() {
            missing.push(path.to_string());
        }
        for arg in cmd.get_arguments() {
            let id = arg.get_id().as_str();
            if matches!(id, "help" | "version") {
                continue;
            }
            if arg.get_help().is_none() {
                missing.push(format!("{path} <{id}>"));
            }
            // A shell's name needs no gloss.
            if path.ends_with(" completion") {
                continue;
            }
            if !arg.get_action().takes_values() {
                continue;
            }
            for value in arg.get_possible_values() {
                if value.get_help().is_none() {
                    missing.push(format!("{path} <{id}> {}", value.get_name()));
                }
            }
        }
        for sub in cmd.get_subcommands() {
            walk(sub, &format!("{path} {}", sub.get_name()), missing);
        }
    }
}
