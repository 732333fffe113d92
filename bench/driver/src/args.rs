//! Command-line arguments of every subcommand.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Parser, Debug)]
#[command(
    name = "kvbench",
    about = "Measure etcd and tinykv with the same load loop"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run one workload and print one JSON line of results.
    Run(RunArgs),
    /// Print the client URL of the current etcd leader.
    EtcdLeader(EtcdLeaderArgs),
    /// Kill the tinykv leader repeatedly and time the first put acknowledged after each kill.
    Failover(FailoverArgs),
    /// Print the Markdown comparison table of a file of `run` results (JSON lines).
    Table(TableArgs),
    /// Print free loopback ports: the TCP ports asked for, then the first of a run of UDP ports.
    FreePorts(FreePortsArgs),
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    Etcd,
    Tinykv,
}

impl Target {
    pub fn name(self) -> &'static str {
        match self {
            Target::Etcd => "etcd",
            Target::Tinykv => "tinykv",
        }
    }
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Put,
    Get,
    /// 90% linearizable gets, 10% puts.
    Mixed,
}

impl Op {
    pub fn name(self) -> &'static str {
        match self {
            Op::Put => "put",
            Op::Get => "get",
            Op::Mixed => "mixed",
        }
    }
}

/// The TLS files of a tinykv client (the env file of `tinykv cluster up` exports them).
#[derive(Args, Debug, Clone)]
pub struct TlsArgs {
    #[arg(long, env = "TINYKV_CA")]
    pub ca: Option<PathBuf>,
    #[arg(long, env = "TINYKV_CERT")]
    pub cert: Option<PathBuf>,
    #[arg(long, env = "TINYKV_KEY")]
    pub key: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    #[arg(long, value_enum)]
    pub target: Target,
    /// Comma-separated endpoints: `http://HOST:PORT` for etcd, `HOST:PORT` for tinykv.
    #[arg(long, value_delimiter = ',', required = true)]
    pub endpoints: Vec<String>,
    #[command(flatten)]
    pub tls: TlsArgs,
    /// Concurrent request loops.
    #[arg(long, default_value_t = 1)]
    pub clients: usize,
    /// etcd connections the loops are spread over; tinykv always shares one client.
    #[arg(long, default_value_t = 1)]
    pub conns: usize,
    #[arg(long, value_enum, default_value_t = Op::Put)]
    pub op: Op,
    #[arg(long, default_value_t = 100)]
    pub value_size: usize,
    /// Seconds to run; ignored when --total is given.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Stop after this many requests instead of after --duration.
    #[arg(long)]
    pub total: Option<u64>,
    /// Size of the key space; pre-populated before a get or mixed load.
    #[arg(long, default_value_t = 1000)]
    pub keys: u64,
    /// Longest a single request may take before it counts as an error.
    #[arg(long, default_value = "5", value_parser = parse_seconds)]
    pub timeout: Duration,
    /// Name of the workload, copied into the result line (the table groups by it).
    #[arg(long)]
    pub label: Option<String>,
    /// Comma-separated server PIDs whose CPU time and RSS are sampled during the run.
    #[arg(long, value_delimiter = ',')]
    pub pids: Vec<i32>,
    /// Seed of the key and operation choices.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Also write every completed request to this file, one line each: its start as Unix
    /// seconds and its latency in milliseconds (`bench/stalls.py` reads it).
    #[arg(long)]
    pub latency_log: Option<std::path::PathBuf>,
}

#[derive(Args, Debug)]
pub struct EtcdLeaderArgs {
    #[arg(long, value_delimiter = ',', required = true)]
    pub endpoints: Vec<String>,
}

#[derive(Args, Debug)]
pub struct FailoverArgs {
    /// The `tinykv` binary.
    #[arg(long)]
    pub tinykv: PathBuf,
    /// The playground directory of `tinykv cluster up --detach`.
    #[arg(long)]
    pub dir: PathBuf,
    #[arg(long, default_value_t = 10)]
    pub trials: usize,
    /// Concurrent put loops running across each kill.
    #[arg(long, default_value_t = 4)]
    pub writers: usize,
    /// Client timeout of one put, retries included.
    #[arg(long, default_value = "2", value_parser = parse_seconds)]
    pub timeout: Duration,
    /// Give up on a trial when no put is acknowledged this long after the kill.
    #[arg(long, default_value = "30", value_parser = parse_seconds)]
    pub give_up: Duration,
}

#[derive(Args, Debug)]
pub struct TableArgs {
    /// A file of JSON lines printed by `kvbench run --label ...`.
    pub results: PathBuf,
}

#[derive(Args, Debug)]
pub struct FreePortsArgs {
    /// Distinct free TCP ports.
    #[arg(long, default_value_t = 0)]
    pub tcp: usize,
    /// Length of a run of consecutive free UDP ports (0: none).
    #[arg(long, default_value_t = 0)]
    pub udp_run: usize,
}

fn parse_seconds(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .parse()
        .map_err(|e| format!("{s:?} is not a number of seconds: {e}"))?;
    Duration::try_from_secs_f64(secs).map_err(|e| format!("{s:?} is not a duration: {e}"))
}
