//! The log-GC worker: deletes Raft log entries that compaction made obsolete, on its own
//! thread, after the new truncated state is already persisted. Its batches are not fsynced: a
//! deletion lost in a crash leaves entries at or below the truncated index, which reads ignore
//! and the next GC of the region deletes again.

use std::sync::mpsc::{self, Receiver, Sender};
use std::thread::JoinHandle;

use crate::engines::Engines;
use crate::error::{Result, StorageError};
use crate::keys;

const NAME: &str = "log-gc";
const BATCH_KEYS: usize = 4096;

/// Delete the region's log entries in `[start, end)`; `start == 0` means "from the first
/// stored entry".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogGcTask {
    pub region_id: u64,
    pub start: u64,
    pub end: u64,
}

enum Msg {
    Gc(LogGcTask),
    /// Answered once every task sent before it is done, with the first error since the last
    /// flush.
    Flush(Sender<Result<u64>>),
    Stop,
}

/// Hands tasks to the log-GC worker. Cheap to clone.
#[derive(Clone)]
pub struct LogGcScheduler {
    tx: Sender<Msg>,
}

impl std::fmt::Debug for LogGcScheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LogGcScheduler")
    }
}

impl LogGcScheduler {
    pub fn schedule(&self, task: LogGcTask) -> Result<()> {
        self.tx
            .send(Msg::Gc(task))
            .map_err(|_| StorageError::WorkerStopped(NAME))
    }

    /// Waits until every task scheduled before is done; returns how many keys they deleted, or
    /// the first error one of them hit. For shutdown paths and tests.
    pub fn flush(&self) -> Result<u64> {
        let (reply, rx) = mpsc::channel();
        self.tx
            .send(Msg::Flush(reply))
            .map_err(|_| StorageError::WorkerStopped(NAME))?;
        rx.recv().map_err(|_| StorageError::WorkerStopped(NAME))?
    }
}

/// The log-GC thread. Stops (after the tasks already queued) on `shutdown` or drop.
pub struct LogGcWorker {
    tx: Sender<Msg>,
    handle: Option<JoinHandle<()>>,
}

impl LogGcWorker {
    pub fn start(engines: Engines) -> Result<LogGcWorker> {
        let (tx, rx) = mpsc::channel();
        let handle = std::thread::Builder::new()
            .name("log-gc".into())
            .spawn(move || run(&engines, &rx))
            .map_err(|e| StorageError::io("log-gc thread", e))?;
        Ok(LogGcWorker {
            tx,
            handle: Some(handle),
        })
    }

    pub fn scheduler(&self) -> LogGcScheduler {
        LogGcScheduler {
            tx: self.tx.clone(),
        }
    }

    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if let Some(handle) = self.handle.take() {
            let _ = self.tx.send(Msg::Stop);
            if handle.join().is_err() {
                tracing::error!("log-gc worker panicked");
            }
        }
    }
}

impl Drop for LogGcWorker {
    fn drop(&mut self) {
        self.stop();
    }
}

fn run(engines: &Engines, rx: &Receiver<Msg>) {
    let mut deleted = 0u64;
    let mut first_error: Option<StorageError> = None;
    while let Ok(msg) = rx.recv() {
        match msg {
            Msg::Gc(task) => match gc(engines, task) {
                Ok(n) => deleted += n,
                Err(e) => {
                    tracing::error!(region_id = task.region_id, "log gc failed: {e}");
                    first_error.get_or_insert(e);
                }
            },
            Msg::Flush(reply) => {
                let result = match first_error.take() {
                    Some(e) => Err(e),
                    None => Ok(deleted),
                };
                deleted = 0;
                let _ = reply.send(result);
            }
            Msg::Stop => break,
        }
    }
}

/// Deletes the log keys that exist in the task's range; returns how many.
pub(crate) fn gc(engines: &Engines, task: LogGcTask) -> Result<u64> {
    if task.start >= task.end {
        return Ok(0);
    }
    // The truncated state that allows these deletions was written by an apply batch that is
    // not fsynced (the log is its durable copy). Deletions flushed into a table of the raft
    // keyspace could outlive a power loss that takes the journal's tail, and with it that
    // apply state: the log would then have a hole below the applied index. One fsync of the
    // journal first makes the apply state at least as durable as the deletions.
    engines.sync()?;
    let range = keys::raft_log_key(task.region_id, task.start)
        ..keys::raft_log_key(task.region_id, task.end);
    let mut batch = engines.db().batch();
    let mut deleted = 0u64;
    for guard in engines.raft().range(range) {
        batch.remove(engines.raft(), guard.key()?);
        deleted += 1;
        if batch.len() >= BATCH_KEYS {
            std::mem::replace(&mut batch, engines.db().batch()).commit()?;
        }
    }
    batch.commit()?;
    Ok(deleted)
}
