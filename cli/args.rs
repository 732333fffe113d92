//! The command tree. Global flags come before or after the noun; every flag with an environment
//! variable can be set once with `. DIR/env` after `tinykv cluster up --dir DIR`.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// This build: the version and the commit it was built from.
pub const BUILD: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("TINYKV_COMMIT"),
    ")"
);

#[derive(Parser, Debug)]
#[command(
    name = "tinykv",
    version = BUILD,
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

/// Commands that talk to no running cluster, and the global flags they do not use: help
/// shows only what a command means (parsing still accepts them, so `. DIR/env` and scripts
/// that pass them everywhere keep working).
const UNUSED_GLOBALS: &[(&[&str], &[&str])] = &[
    (&["cert"], &CLUSTER_FLAGS),
    (&["config"], &CLUSTER_FLAGS),
    (&["completion"], &CLUSTER_FLAGS),
    (&["node", "start"], &CLUSTER_FLAGS),
    (&["node", "join"], &CLUSTER_FLAGS),
    (&["backup", "status"], &CLUSTER_FLAGS),
    (&["backup", "restore"], &CLUSTER_FLAGS),
    (&["cluster", "up"], &CONNECTION_FLAGS),
    (&["cluster", "down"], &CONNECTION_FLAGS),
];
/// The flags that say which cluster to talk to and how.
const CONNECTION_FLAGS: [&str; 4] = ["endpoints", "ca", "cert", "key"];
const CLUSTER_FLAGS: [&str; 5] = ["endpoints", "ca", "cert", "key", "timeout"];

/// The command tree as parsed and as completion scripts see it.
pub fn command() -> clap::Command {
    let mut cmd = <Cli as clap::CommandFactory>::command();
    for (path, flags) in UNUSED_GLOBALS {
        // A global flag reaches a subcommand only where no flag of that name is: a hidden copy
        // placed there first keeps it out of that subtree's help.
        let hidden: Vec<clap::Arg> = cmd
            .get_arguments()
            .filter(|a| flags.contains(&a.get_id().as_str()))
            .map(|a| a.clone().hide(true))
            .collect();
        cmd = add_in(cmd, path, &hidden);
    }
    cmd
}

fn add_in(cmd: clap::Command, path: &[&str], args: &[clap::Arg]) -> clap::Command {
    match path.split_first() {
        Some((first, rest)) => cmd.mut_subcommand(*first, |sub| add_in(sub, rest, args)),
        None => cmd.args(args.iter().cloned()),
    }
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
    Region(Offline<RegionCmd>),
    /// Inspect a region's Raft state and log, online (-e) or offline (--data-dir).
    Raft(Offline<RaftCmd>),
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
    /// The stores as the placement driver sees them; retire one with `store delete`.
    #[command(subcommand)]
    Store(StoreCmd),
    /// The placement driver's operators: the replica and leader moves under way.
    #[command(subcommand)]
    Operator(OperatorCmd),
    /// The placement driver's schedulers: list, pause and resume them.
    #[command(subcommand)]
    Scheduler(SchedulerCmd),
    /// Back a cluster up to a file, check a backup, or make a new cluster from one.
    #[command(subcommand)]
    Backup(BackupCmd),
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

/// A noun whose verbs read a running cluster, or with `--data-dir` a stopped node's data.
#[derive(Args, Debug)]
pub struct Offline<C: Subcommand> {
    /// Read a stopped node's data directory instead of asking a running node.
    #[arg(long, global = true)]
    pub data_dir: Option<PathBuf>,
    #[command(subcommand)]
    pub cmd: C,
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
    /// Each node's state, regions, term and indices; exit code 6 when a node is down or a
    /// region it holds has no leader (what makes its `/health` answer 503).
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
    /// Start a new node and add it to a running cluster, then keep serving in the foreground.
    /// With the placement driver on (`placement.enabled`, the default) the driver moves
    /// replicas onto it; with it off, it joins every region as a learner, catches up (a
    /// snapshot, then the log; progress on a terminal) and is promoted to voter.
    Join {
        #[command(flatten)]
        start: NodeStartArgs,
        /// Any member of the running cluster.
        #[arg(long)]
        seed: SocketAddr,
        /// Stay a learner (receives and applies the log, never votes); `node promote` later.
        /// Only with the placement driver off.
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
    /// Overrides `data-dir`.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
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
        /// Write only if the key is absent (exit 8 and nothing written otherwise).
        #[arg(long)]
        if_absent: bool,
    },
    /// Write NEW only if the key holds OLD, decided as the write applies on the replicas;
    /// exit 8 and nothing written when it holds something else.
    Cas {
        // The id differs from the global --key (the client key file) so clap keeps them apart.
        /// The key.
        #[arg(id = "user_key", value_name = "KEY")]
        key: String,
        /// The value the key must hold.
        old: String,
        /// The value to write.
        new: String,
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
    /// Regions whose replicas need attention: too few or too many voters, peers down, or
    /// peers that cannot catch up from the leader's log (pending).
    Check {
        /// What to look for.
        #[arg(value_enum)]
        kind: CheckKind,
        /// How many voters a region should have.
        #[arg(long, default_value_t = 3)]
        max_replicas: usize,
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
pub enum StoreCmd {
    /// Every store the placement driver knows: state (Up, Offline, Down, Tombstone), address,
    /// regions, leaders, data and disk space, and how long ago it reported.
    List,
    /// One store.
    Show {
        /// The store's id.
        id: u64,
    },
    /// Retire a store: it becomes Offline, the driver moves its replicas to other stores
    /// (writes go on), and it becomes Tombstone once it holds none. The node may then be
    /// stopped. Returns once the retirement is recorded; watch it with `store show ID`.
    Delete {
        /// The store's id.
        id: u64,
    },
}

#[derive(Subcommand, Debug)]
pub enum OperatorCmd {
    /// The operators running: region, kind, steps and how far along.
    List,
    /// Start an operator by hand.
    #[command(subcommand)]
    Add(OperatorAddCmd),
    /// Stop a region's operator. Steps already taken stay taken; the replica checker tidies
    /// up what a half-done move left.
    Remove {
        /// The region's id.
        region: u64,
    },
}

#[derive(Subcommand, Debug)]
pub enum OperatorAddCmd {
    /// Move a region's leadership to its voter on a store.
    TransferLeader {
        /// The region's id.
        region: u64,
        /// The store to lead it.
        store: u64,
    },
    /// Move a region's replica from one store to another (a learner added there, promoted,
    /// then the old replica removed; leadership moves off it first when it leads).
    MovePeer {
        /// The region's id.
        region: u64,
        /// The store whose replica moves.
        from: u64,
        /// The store it moves to.
        to: u64,
    },
}

#[derive(Subcommand, Debug)]
pub enum SchedulerCmd {
    /// The schedulers and whether each runs.
    List,
    /// Stop a scheduler from starting operators (running ones finish). Kept across restarts
    /// and driver moves.
    Pause {
        /// replica-checker, balance-leader or balance-region.
        name: String,
    },
    /// Let a paused scheduler start operators again.
    Resume {
        /// replica-checker, balance-leader or balance-region.
        name: String,
    },
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckKind {
    /// Fewer voters than --max-replicas.
    #[value(name = "miss-peer")]
    Missing,
    /// More voters than --max-replicas.
    #[value(name = "extra-peer")]
    Extra,
    /// Peers the leader has not heard from lately, or on a store that does not answer.
    #[value(name = "down-peer")]
    Down,
    /// Peers being sent a snapshot, or behind what the leader's log still holds.
    #[value(name = "pending-peer")]
    Pending,
}

#[derive(Subcommand, Debug)]
pub enum RaftCmd {
    /// A region's hard state (term, vote, commit), applied index and log bounds, as one
    /// store's peer of it sees them (a leader adds what it knows of every other peer).
    State {
        /// The region's id.
        region: u64,
        /// The store whose peer to ask (default: the node named first in -e).
        #[arg(long, conflicts_with = "data_dir")]
        store: Option<u64>,
    },
    /// A region's log entries, described (at most 1,000), as one store's peer of it holds them.
    Log {
        /// The region's id.
        region: u64,
        /// The store whose peer to ask (default: the node named first in -e).
        #[arg(long, conflicts_with = "data_dir")]
        store: Option<u64>,
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
pub enum BackupCmd {
    /// Write every key of every region to FILE, each region as of one ReadIndex read taken
    /// when the backup starts, with a header (cluster, time, keys, size) and checksums;
    /// progress on a terminal. Writers may keep running.
    Save {
        /// The backup file to write (it appears only once complete).
        file: PathBuf,
    },
    /// Read a backup file end to end, check every checksum and count, and describe it; exits 1
    /// when it is damaged or truncated.
    Status {
        /// The backup file to check.
        file: PathBuf,
    },
    /// Make a new cluster from a backup, offline: a playground directory that `cluster up
    /// --dir` starts, or with --data-dir one store's data dir for `node start`.
    Restore {
        /// The backup file to restore.
        file: PathBuf,
        /// A new playground directory: certificates, configs, data dirs and `env`.
        #[arg(
            long,
            required_unless_present = "data_dir",
            conflicts_with = "data_dir"
        )]
        dir: Option<PathBuf>,
        /// How many nodes the playground gets.
        #[arg(long, default_value_t = 3, conflicts_with = "data_dir")]
        nodes: u64,
        /// The playground's first port; node i listens on base-port + i - 1.
        #[arg(long, default_value_t = 20160, conflicts_with = "data_dir")]
        base_port: u16,
        /// Instead of a playground, write this one store's data dir (it must not exist).
        #[arg(long, requires_all = ["store_id", "initial_cluster"])]
        data_dir: Option<PathBuf>,
        /// With --data-dir: the store the data dir is for.
        #[arg(long)]
        store_id: Option<u64>,
        /// With --data-dir: the new cluster's founding stores (ID=HOST:PORT,...), as every
        /// node of it will be started with.
        #[arg(long, value_delimiter = ',')]
        initial_cluster: Vec<String>,
        /// With --data-dir: the new cluster's `initial-cluster-token`, as its nodes' configs
        /// will say.
        #[arg(long, default_value = "tinykv")]
        initial_cluster_token: String,
    },
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

    /// Help shows a flag only where it means something.
    #[test]
    fn help_shows_flags_only_where_they_mean_something() {
        let help = |path: &[&str]| {
            let mut cmd = super::command();
            cmd.build();
            let mut sub = &mut cmd;
            for p in path {
                sub = sub.find_subcommand_mut(p).expect("a subcommand");
            }
            sub.render_long_help().to_string()
        };
        for path in [
            &["cert", "issue"][..],
            &["config", "default"],
            &["cluster", "up"],
            &["backup", "restore"],
            &["node", "start"],
        ] {
            let text = help(path);
            assert!(
                !text.contains("--endpoints"),
                "{path:?} offers --endpoints:\n{text}"
            );
        }
        for path in [&["cluster", "up"][..], &["kv", "put"], &["cert", "issue"]] {
            let text = help(path);
            assert!(
                !text.contains("--data-dir"),
                "{path:?} offers --data-dir:\n{text}"
            );
        }
        for path in [&["kv", "put"][..], &["region", "list"], &["backup", "save"]] {
            assert!(
                help(path).contains("--endpoints"),
                "{path:?} lacks --endpoints"
            );
        }
        assert!(help(&["region", "list"]).contains("--data-dir"));
        assert!(help(&["raft", "state"]).contains("--data-dir"));
        // Hidden flags still parse: scripts pass them everywhere.
        let parsed = super::command().try_get_matches_from([
            "tinykv",
            "cert",
            "init-ca",
            "--out",
            "x",
            "-e",
            "127.0.0.1:1",
        ]);
        assert!(parsed.is_ok(), "{parsed:?}");
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
