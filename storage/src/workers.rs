//! The background workers of a node's storage, started and stopped together.

use crate::engines::Engines;
use crate::error::Result;
use crate::log_gc::{LogGcScheduler, LogGcWorker};
use crate::snapshot::worker::{SnapshotScheduler, SnapshotWorker};

/// Owns the log-GC and snapshot threads; dropping it stops them after their queued tasks.
pub struct StorageWorkers {
    log_gc: LogGcWorker,
    snapshot: SnapshotWorker,
}

/// The handles peers use to reach the workers. Cheap to clone.
#[derive(Clone, Debug)]
pub struct WorkerHandles {
    pub log_gc: LogGcScheduler,
    pub snapshot: SnapshotScheduler,
}

impl StorageWorkers {
    pub fn start(engines: &Engines) -> Result<StorageWorkers> {
        Ok(StorageWorkers {
            log_gc: LogGcWorker::start(engines.clone())?,
            snapshot: SnapshotWorker::start(engines.clone())?,
        })
    }

    pub fn handles(&self) -> WorkerHandles {
        WorkerHandles {
            log_gc: self.log_gc.scheduler(),
            snapshot: self.snapshot.scheduler(),
        }
    }

    /// Stops both workers, waiting for the tasks already queued.
    pub fn shutdown(self) {
        let StorageWorkers { log_gc, snapshot } = self;
        log_gc.shutdown();
        snapshot.shutdown();
    }
}
