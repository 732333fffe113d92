//! `kvbench`: the load driver of the side-by-side etcd comparison. It measures etcd and tinykv
//! with one load loop (same key choice, same value, same latency recording), so the two figures
//! differ only by the system under test and its client library. It also measures tinykv's
//! failover time and prints the comparison table from recorded results.
//!
//! It is a measuring tool for loopback playgrounds started by `bench/compare-etcd.sh`, not a
//! production client, and it is not part of the tinykv workspace: its etcd client brings tonic,
//! prost and a protoc build step that the store must not depend on.

mod args;
mod backend;
mod failover;
mod latency;
mod leader;
mod load;
mod ports;
mod procstat;
mod table;

use anyhow::Result;
use clap::Parser;

use crate::args::{Cli, Command};

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Run(run) => {
            let report = load::run(&run).await?;
            println!("{}", serde_json::to_string(&report)?);
        }
        Command::EtcdLeader(args) => println!("{}", leader::etcd_leader(&args.endpoints).await?),
        Command::Failover(args) => {
            let report = failover::run(&args).await?;
            println!("{}", serde_json::to_string(&report)?);
        }
        Command::Table(args) => print!("{}", table::render(&args.results)?),
        Command::FreePorts(args) => {
            let mut out: Vec<String> = Vec::new();
            let tcp = ports::tcp(args.tcp)?;
            out.extend(tcp.iter().map(u16::to_string));
            if args.udp_run > 0 {
                out.push(ports::udp_run(args.udp_run, &tcp)?.to_string());
            }
            println!("{}", out.join(" "));
        }
    }
    Ok(())
}
