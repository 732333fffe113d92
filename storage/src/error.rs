//! The storage error type. Every failure a caller can act on has its own variant; fjall's errors
//! are wrapped, and a poisoned database (a failed fsync) is singled out as fatal.

use std::path::PathBuf;

use thiserror::Error;

/// Errors of tinykv-storage.
#[derive(Debug, Error)]
pub enum StorageError {
    /// A previous fsync failed and fjall refuses further writes. Nothing durable can be promised
    /// any more: the process must stop and restart from what is on disk.
    #[error("storage is poisoned by a failed fsync; restart the node")]
    Poisoned,
    /// Another process holds the data dir.
    #[error("data dir is locked by another process")]
    Locked,
    /// Any other failure of the storage engine.
    #[error("storage engine failed: {0}")]
    Engine(#[source] fjall::Error),
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A stored record or key could not be understood; `key` is hex.
    #[error("corrupt record under key {key} in keyspace {keyspace}: {problem}")]
    CorruptRecord {
        keyspace: &'static str,
        key: String,
        problem: String,
    },
    /// The directory holds something that is not a tinykv data dir.
    #[error("{path} is not a tinykv data dir: {problem}")]
    ForeignDataDir { path: PathBuf, problem: String },
    /// Regions are stored but the store ident (`01 01`) is missing.
    #[error("store ident (meta key 0101) is missing while {regions} region(s) are stored")]
    MissingStoreIdent { regions: usize },
    /// The data dir was written by a newer tinykv whose record layout this build cannot read.
    #[error(
        "{path} holds data format {found}, written by a newer tinykv; this build reads formats \
         1 to {supported}: run the newer build"
    )]
    NewerDataFormat {
        path: PathBuf,
        found: u32,
        supported: u32,
    },
    #[error("data dir belongs to cluster {found}, expected cluster {expected}")]
    ClusterIdMismatch { expected: u64, found: u64 },
    #[error("store is already bootstrapped as cluster {cluster_id} store {store_id}")]
    AlreadyBootstrapped { cluster_id: u64, store_id: u64 },
    #[error("region {0} already exists")]
    RegionExists(u64),
    #[error("region {0} not found")]
    RegionNotFound(u64),
    /// A write outside the region's key range.
    #[error("key {key} is not in region {region_id} [{start}, {end})")]
    KeyNotInRegion {
        region_id: u64,
        key: String,
        start: String,
        end: String,
    },
    /// The caller handed over something inconsistent (a gap in appended entries, the same
    /// region twice in one batch, ...).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// A snapshot file is malformed or does not belong where it is used.
    #[error("snapshot file {path}: {problem}")]
    SnapshotCorrupt { path: PathBuf, problem: String },
    #[error("snapshot file {path}: checksum {actual:08x}, expected {expected:08x}")]
    SnapshotChecksumMismatch {
        path: PathBuf,
        expected: u32,
        actual: u32,
    },
    #[error("snapshot file {path}: {actual} bytes, expected {expected}")]
    SnapshotSizeMismatch {
        path: PathBuf,
        expected: u64,
        actual: u64,
    },
    /// Committed entries of a region could not be read back from the log.
    #[error("the committed log of region {region_id} cannot be read: {detail}")]
    LogUnreadable { region_id: u64, detail: String },
    /// A background worker has stopped (shut down or crashed).
    #[error("{0} worker has stopped")]
    WorkerStopped(&'static str),
}

impl StorageError {
    /// True when the process cannot go on safely and must restart.
    pub fn is_fatal(&self) -> bool {
        matches!(self, StorageError::Poisoned)
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> StorageError {
        StorageError::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn corrupt(
        keyspace: &'static str,
        key: &[u8],
        problem: impl Into<String>,
    ) -> StorageError {
        StorageError::CorruptRecord {
            keyspace,
            key: crate::keys::hex(key),
            problem: problem.into(),
        }
    }
}

impl From<fjall::Error> for StorageError {
    fn from(e: fjall::Error) -> StorageError {
        match e {
            fjall::Error::Poisoned => StorageError::Poisoned,
            fjall::Error::Locked => StorageError::Locked,
            other => StorageError::Engine(other),
        }
    }
}

/// Raft sees storage failures as its own `Other`; log-shape answers keep their meaning.
impl From<StorageError> for tinykv_raft::StorageError {
    fn from(e: StorageError) -> tinykv_raft::StorageError {
        tinykv_raft::StorageError::Other(Box::new(e))
    }
}

pub type Result<T> = std::result::Result<T, StorageError>;
