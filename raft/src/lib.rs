//! tinykv-raft: the Raft consensus algorithm as a pure state machine.
//!
//! It takes messages, ticks and proposals and hands back, as a [`Ready`], what to persist, what
//! to send and what to apply. It does no I/O, reads no clock, spawns no thread and knows no
//! runtime, so every behaviour is testable by calling functions. Persistence, networking and
//! applying entries belong to the caller (tinykv-node, or a test harness over [`MemStorage`]).
//!
//! It implements leader election with pre-vote and check quorum, log replication with flow
//! control and fast log back-up, log compaction and snapshots, single-peer membership changes,
//! leader transfer, and ReadIndex reads.

mod config;
mod error;
mod inflights;
mod message;
mod progress;
mod raft;
mod raft_log;
mod raw_node;
mod read_only;
mod rng;
mod storage;
mod tracker;
mod unstable;

#[cfg(test)]
mod tests;

pub use config::{Config, ReadOnlyOption};
pub use error::{Error, Result, StorageError};
pub use message::{
    ConfChange, ConfChangeType, ConfState, Entry, EntryType, HardState, Message, MessageType,
    Snapshot, SnapshotMetadata,
};
pub use raft::{CAMPAIGN_TRANSFER_CONTEXT, Raft};
pub use raw_node::{
    PeerProgress, ProgressState, Proposed, RawNode, ReadState, Ready, SnapshotStatus, SoftState,
    StateRole, Status,
};
pub use storage::{MemStorage, RaftState, Storage, StorageResult, limit_size};
