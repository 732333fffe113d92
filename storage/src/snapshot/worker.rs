//! The snapshot worker: a thread that builds and applies snapshot files so that the raft loop
//! never waits on a region's worth of I/O. Results come back on a channel per task, which the
//! caller polls.

use std::sync::mpsc::{self, Receiver, Sender};
use std::thread::JoinHandle;

use crate::engines::Engines;
use crate::error::{Result, StorageError};
use crate::snapshot::{SnapshotFile, apply, build};

const NAME: &str = "snapshot";

enum Task {
    Generate {
        region_id: u64,
        reply: Sender<Result<SnapshotFile>>,
    },
    Apply {
        region_id: u64,
        reply: Sender<Result<()>>,
    },
    Stop,
}

/// Hands tasks to the snapshot worker. Cheap to clone.
#[derive(Clone)]
pub struct SnapshotScheduler {
    tx: Sender<Task>,
}

impl std::fmt::Debug for SnapshotScheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SnapshotScheduler")
    }
}

impl SnapshotScheduler {
    /// Asks for a snapshot of the region at its applied index; the answer arrives on the
    /// returned channel.
    pub fn generate(&self, region_id: u64) -> Result<Receiver<Result<SnapshotFile>>> {
        let (reply, rx) = mpsc::channel();
        self.tx
            .send(Task::Generate { region_id, reply })
            .map_err(|_| StorageError::WorkerStopped(NAME))?;
        Ok(rx)
    }

    /// Asks to apply the snapshot staged for the region (state `Applying`).
    pub fn apply(&self, region_id: u64) -> Result<Receiver<Result<()>>> {
        let (reply, rx) = mpsc::channel();
        self.tx
            .send(Task::Apply { region_id, reply })
            .map_err(|_| StorageError::WorkerStopped(NAME))?;
        Ok(rx)
    }
}

/// The snapshot worker's thread. Stops (after the tasks already queued) on `shutdown` or drop.
pub struct SnapshotWorker {
    tx: Sender<Task>,
    handle: Option<JoinHandle<()>>,
}

impl SnapshotWorker {
    pub fn start(engines: Engines) -> Result<SnapshotWorker> {
        let (tx, rx) = mpsc::channel();
        let handle = std::thread::Builder::new()
            .name("snapshot-worker".into())
            .spawn(move || run(&engines, &rx))
            .map_err(|e| StorageError::io("snapshot-worker thread", e))?;
        Ok(SnapshotWorker {
            tx,
            handle: Some(handle),
        })
    }

    pub fn scheduler(&self) -> SnapshotScheduler {
        SnapshotScheduler {
            tx: self.tx.clone(),
        }
    }

    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if let Some(handle) = self.handle.take() {
            let _ = self.tx.send(Task::Stop);
            if handle.join().is_err() {
                tracing::error!("snapshot worker panicked");
            }
        }
    }
}

impl Drop for SnapshotWorker {
    fn drop(&mut self) {
        self.stop();
    }
}

fn run(engines: &Engines, rx: &Receiver<Task>) {
    while let Ok(task) = rx.recv() {
        match task {
            Task::Generate { region_id, reply } => {
                engines.pause_snapshot_work();
                let result = build::build_snapshot(engines, region_id);
                if let Err(e) = &result {
                    tracing::warn!(region_id, "snapshot generation failed: {e}");
                }
                // The requester may be gone (peer destroyed); nothing to do then.
                let _ = reply.send(result);
            }
            Task::Apply { region_id, reply } => {
                engines.pause_snapshot_work();
                let result = apply::finish(engines, region_id);
                if let Err(e) = &result {
                    tracing::error!(region_id, "snapshot apply failed: {e}");
                }
                let _ = reply.send(result);
            }
            Task::Stop => break,
        }
    }
}
