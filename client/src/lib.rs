//! tinykv-client: the Rust client of a tinykv cluster, for applications, the `tinykv` command
//! line and the nodes themselves (a store asks the cluster's id allocator through it). It
//! depends on the shared types (tinykv-proto) and the network (tinykv-transport), not on the
//! server, so an application builds neither the Raft core nor the storage engine.
//!
//! A [`Client`] learns the cluster (stores, regions, leaders) from any endpoint, asks the
//! placement driver where a key it has no route for lives, routes each key to its region's
//! leader, follows `NotLeader` hints and refreshes its routes when a region
//! changed.
//!
//! It retries only what is safe: a request refused before it took effect (not the leader, a
//! stale route, a busy or unreachable node) and any read. A write whose outcome is unknown
//! (timed out, connection lost after sending, overtaken by a new leader) is never sent again:
//! the caller gets an error that says so, because repeating it could apply it twice.
//!
//! # Map
//! - `client.rs`: [`Client`] and [`ClientConfig`]: learning the cluster, finding a region's
//!   leader, admin requests.
//! - `kv.rs`: get, put, delete and scan, and which of their failures are retried.
//! - `admin.rs`: membership changes, id allocation and splits.
//! - `backup.rs`: a backup of every region at one point in time each; `backup_file.rs`: the
//!   file it writes and the reader that checks one.
//! - `region_cache.rs`: the regions by range, their leaders and the stores' addresses.
//! - `driver_lookup.rs`: asking the placement driver where a key lives.
//! - `region_check.rs`: regions with missing, extra, down or pending peers.
//! - `connections.rs`: one connection per node, and the nodes avoided after a failure.
//! - `retry.rs`: the pause between attempts.
//! - `error.rs`: [`ClientError`], and what a transport error means for the caller.
//!
//! Requests and answers are tinykv-proto's types: depend on it beside this crate.

mod admin;
mod backup;
pub mod backup_file;
mod client;
mod connections;
mod driver_lookup;
mod error;
mod kv;
mod region_cache;
mod region_check;
mod retry;
mod sync;

pub use backup::BackupProgress;
pub use client::{Client, ClientConfig};
pub use error::ClientError;
pub use kv::prefix_end;
pub use region_check::{RegionCheck, RegionProblem};
