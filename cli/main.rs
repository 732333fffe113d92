//! `tinykv`: the one binary of tinykv. It launches nodes (`node start|join`), brings a local
//! playground cluster up and down, reads and writes keys, and inspects regions and Raft state of
//! running or stopped nodes. It is a thin layer over `tinykv_node` (running a node),
//! `tinykv_client` (talking to a cluster) and `tinykv_transport`: it parses, calls, and prints;
//! it holds no storage or replication logic of its own.

mod args;
mod commands;
mod connect;
mod exit;
mod output;
mod process;

use std::process::ExitCode;

use clap::FromArgMatches;
use tracing_subscriber::EnvFilter;

use crate::args::Cli;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // clap prints usage errors itself and exits 2, as scripts expect.
    let cli = match Cli::from_arg_matches(&args::command().get_matches()) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    // A node's log is its record of what happened; every other command stays quiet.
    let default_filter = match &cli.command {
        args::Command::Node(args::NodeCmd::Start(_) | args::NodeCmd::Join { .. }) => {
            "info,fjall=warn,lsm_tree=warn"
        }
        _ => "warn,fjall=warn,lsm_tree=warn",
    };
    init_logs(default_filter);
    tinykv_node::set_build(args::BUILD);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(exit::Exit::Failed as u8);
        }
    };
    match runtime.block_on(commands::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(e.exit as u8)
        }
    }
}

/// Logs go to stderr, filtered by `RUST_LOG`; the storage engine is quiet unless asked.
fn init_logs(default_filter: &str) {
    let filter = match std::env::var("RUST_LOG") {
        Ok(spec) if !spec.trim().is_empty() => EnvFilter::new(spec),
        _ => EnvFilter::new(default_filter),
    };
    // Colour codes only on a terminal: a node's log file must stay greppable.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}
