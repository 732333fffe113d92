//! tinykv-node: a running tinykv node. It ties the Raft core (tinykv-raft), the storage engines
//! (tinykv-storage) and the network (tinykv-transport) into a store that hosts region peers,
//! proposes and applies commands, serves the client and admin services, and joins or bootstraps
//! a cluster. It also holds the node configuration. The types it shares with clients are in
//! tinykv-proto; the Rust client library, which a store uses to reach the cluster's id
//! allocator, is tinykv-client.

mod apply;
pub mod cmd;
pub mod config;
pub mod fault;
mod hibernation;
pub mod inspect;
mod log_gc;
pub mod message;
pub mod metrics;
mod peer;
mod permission;
mod placement_host;
mod proposals;
mod raftstore;
mod read_queue;
mod read_views;
mod reply;
pub mod restore;
mod server;
mod service;
mod split;
mod split_check;
mod status_server;

pub use server::{FIRST_REGION_ID, JoinAs, Node, NodeError};

static BUILD: std::sync::OnceLock<&'static str> = std::sync::OnceLock::new();

/// Names the running build (version and commit) in `/status` and `cluster status`. The binary
/// sets it once as it starts; the library alone knows only its version.
pub fn set_build(build: &'static str) {
    let _ = BUILD.set(build);
}

pub(crate) fn build() -> &'static str {
    BUILD.get().copied().unwrap_or(env!("CARGO_PKG_VERSION"))
}
pub mod testing;
