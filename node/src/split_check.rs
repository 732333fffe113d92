//! The split-check worker: measures regions on its own thread, off the raft loop, and hands
//! each result back (a region's size, key count and where to cut it, TinyKV's split checker).

use std::sync::mpsc::{SyncSender, TrySendError, sync_channel};

use tinykv_storage::{Engines, Region, RegionEpoch, RegionSize, SplitLimits};
use tracing::warn;

/// Regions waiting for the worker; the store checks a region again on its next round when
/// the queue was full.
const QUEUE: usize = 1024;

/// One region measured, as it was when the check started.
#[derive(Debug)]
pub(crate) struct SplitCheckResult {
    pub region_id: u64,
    pub epoch: RegionEpoch,
    pub size: Result<RegionSize, String>,
}

pub(crate) struct SplitChecker {
    tx: SyncSender<Region>,
}

impl SplitChecker {
    /// Starts the worker; `done` receives each result and returns false once nobody listens,
    /// which stops the worker (as does dropping the checker).
    pub fn start(
        engines: Engines,
        limits: SplitLimits,
        done: impl Fn(SplitCheckResult) -> bool + Send + 'static,
    ) -> std::io::Result<SplitChecker> {
        let (tx, rx) = sync_channel::<Region>(QUEUE);
        std::thread::Builder::new()
            .name("split-check".into())
            .spawn(move || {
                while let Ok(region) = rx.recv() {
                    let size = engines.check_split(&region, &limits).map_err(|e| {
                        warn!(region = region.id, error = %e, "split check failed");
                        e.to_string()
                    });
                    let result = SplitCheckResult {
                        region_id: region.id,
                        epoch: region.epoch,
                        size,
                    };
                    if !done(result) {
                        return;
                    }
                }
            })?;
        Ok(SplitChecker { tx })
    }

    /// Queues `region` for a check; false when the queue is full or the worker stopped.
    pub fn schedule(&self, region: Region) -> bool {
        match self.tx.try_send(region) {
            Ok(()) => true,
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => false,
        }
    }
}
