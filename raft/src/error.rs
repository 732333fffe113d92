//! Errors of the Raft core and of the storage it reads.

use thiserror::Error;

/// What a [`crate::Storage`] can answer instead of log data.
#[derive(Debug, Error)]
pub enum StorageError {
    /// The requested index is at or below the compacted (truncated) index.
    #[error("log index is compacted")]
    Compacted,
    /// The requested index is past the last stored entry.
    #[error("log index is unavailable")]
    Unavailable,
    /// A newer snapshot is already in place.
    #[error("snapshot is out of date")]
    SnapshotOutOfDate,
    /// A snapshot is being generated; ask again later.
    #[error("snapshot is temporarily unavailable")]
    SnapshotTemporarilyUnavailable,
    /// The backend failed (I/O, a corrupt record, ...).
    #[error("storage failed: {0}")]
    Other(Box<dyn std::error::Error + Send + Sync>),
}

/// Errors returned by [`crate::RawNode`] and [`crate::Raft`].
#[derive(Debug, Error)]
pub enum Error {
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// A local message kind (Hup, Beat, Propose) was handed to `step` as if it came from a peer.
    #[error("cannot step a local message kind {0:?} from the network")]
    StepLocalMsg(crate::MessageType),
    /// A response came from a peer that is not in the group.
    #[error("message from unknown peer {0}")]
    StepPeerNotFound(u64),
    /// This node cannot take the proposal now (not leader, a leader transfer is under way, or a
    /// conf change is still pending).
    #[error("proposal dropped")]
    ProposalDropped,
    /// The configuration is invalid; the text says which field and why.
    #[error("invalid raft config: {0}")]
    ConfigInvalid(String),
}

pub type Result<T> = std::result::Result<T, Error>;
