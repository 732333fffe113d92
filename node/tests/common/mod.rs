//! Shared by the node's integration tests: the in-process cluster and logging.
#![allow(dead_code)]

pub use tinykv_node::testing::*;

/// Logs to the test's output when `RUST_LOG` is set.
pub fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}
