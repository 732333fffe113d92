//! Counters an endpoint keeps for monitoring and for tests to observe what happened.

use std::sync::atomic::{AtomicU64, Ordering};

macro_rules! counters {
    ($($(#[$doc:meta])* $name:ident),* $(,)?) => {
        #[derive(Debug, Default)]
        pub(crate) struct Counters {
            $(pub(crate) $name: AtomicU64,)*
            /// Woken on rare events (refusals, errors, snapshots) so tests and monitors can await
            /// them; the per-message counters do not notify, to keep the hot path lock-free.
            pub(crate) changed: tokio::sync::Notify,
        }

        /// A point-in-time copy of an endpoint's counters.
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
        pub struct Stats {
            $($(#[$doc])* pub $name: u64,)*
        }

        impl Counters {
            pub(crate) fn snapshot(&self) -> Stats {
                Stats { $($name: self.$name.load(Ordering::Relaxed),)* }
            }
        }
    };
}

counters! {
    /// Raft messages handed to a link's queue.
    messages_queued,
    /// Raft messages written to a peer in a batch frame.
    messages_sent,
    /// Batch frames written.
    batches_sent,
    /// Raft messages received and delivered to the node.
    messages_received,
    /// Dropped because the peer's queue was full.
    dropped_queue_full,
    /// Dropped because the peer could not be reached or the write failed.
    dropped_unreachable,
    /// Dropped (or refused) by the fault-injection filter.
    dropped_by_filter,
    /// Dropped because one message alone exceeded the maximum frame size.
    dropped_oversized,
    /// Streams closed because a frame could not be read.
    frame_errors,
    /// Incoming connections refused during the TLS handshake.
    handshakes_refused,
    /// Connections closed because the hello named another store than the certificate.
    hellos_refused,
    /// Raft-message streams refused because the peer is not a store.
    raft_streams_refused,
    /// RPC requests answered.
    rpcs_served,
    /// Outgoing connections established.
    connections_dialed,
    /// Snapshots sent and acknowledged.
    snapshots_sent,
    /// Snapshots received, verified and handed to the node.
    snapshots_received,
    /// Incoming snapshots refused or failed.
    snapshots_rejected,
    /// Snapshot file bytes written to peers.
    snapshot_bytes_sent,
    /// Snapshot file bytes received from peers.
    snapshot_bytes_received,
    /// Microseconds outgoing snapshots waited on `snapshot.max-bytes-per-sec`.
    snapshot_rate_limit_wait_micros,
}

impl Counters {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Counts a rare event and wakes whoever waits on [`Counters::wait_until`].
    pub(crate) fn event(&self, counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
        self.changed.notify_waiters();
    }

    pub(crate) async fn wait_until(&self, mut pred: impl FnMut(&Stats) -> bool) -> Stats {
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            // Registering before checking closes the gap in which an event could be missed.
            notified.as_mut().enable();
            let now = self.snapshot();
            if pred(&now) {
                return now;
            }
            notified.await;
        }
    }
}
