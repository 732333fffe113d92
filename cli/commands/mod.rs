//! One module per noun; `run` hands the parsed command line to the right one.

mod backup;
mod bench;
mod cert;
mod cluster;
mod config;
mod kv;
mod node;
mod offline;
mod placement;
mod raft;
mod region;

use crate::args::{Cli, Command, CompactCmd, SnapshotCmd};
use crate::exit::CliResult;

pub async fn run(cli: Cli) -> CliResult {
    let global = cli.global;
    match cli.command {
        Command::Cluster(cmd) => cluster::run(&global, cmd).await,
        Command::Node(cmd) => node::run(&global, cmd).await,
        Command::Kv(cmd) => kv::run(&global, cmd).await,
        Command::Region(cmd) => region::run(&global, cmd.data_dir.as_deref(), cmd.cmd).await,
        Command::Raft(cmd) => raft::run(&global, cmd.data_dir.as_deref(), cmd.cmd).await,
        Command::Backup(cmd) => backup::run(&global, cmd).await,
        Command::Store(cmd) => placement::store(&global, cmd).await,
        Command::Operator(cmd) => placement::operator(&global, cmd).await,
        Command::Scheduler(cmd) => placement::scheduler(&global, cmd).await,
        Command::Snapshot(SnapshotCmd::Trigger { region }) => {
            raft::snapshot_trigger(&global, region).await
        }
        Command::Compact(CompactCmd::Log { region }) => raft::compact_log(&global, region).await,
        Command::TransferLeader { region, store } => {
            raft::transfer_leader(&global, region, store).await
        }
        Command::Cert(cmd) => cert::run(&global, cmd),
        Command::Config(cmd) => config::run(cmd),
        Command::Bench(args) => bench::run(&global, args).await,
        Command::Completion { shell } => completion(shell),
    }
}

/// Prints the completion script for `shell`. A reader that stops early (`| head`) is no error.
fn completion(shell: clap_complete::Shell) -> CliResult {
    use std::io::Write;
    let mut cmd = crate::args::command();
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut cmd, "tinykv", &mut script);
    match std::io::stdout().write_all(&script) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(crate::exit::CliError::failed(format!(
            "cannot write the completion script: {e}"
        ))),
    }
}
