//! tinykv-storage: a node's durable state on one fjall database — Raft logs and raft states,
//! apply and region states, user data — plus the snapshot files that move regions between
//! nodes. It implements [`tinykv_raft::Storage`] for each region peer ([`PeerStorage`]) and the
//! write paths the node drives. It does not run Raft, route requests, talk to the network or
//! decide when to compact or snapshot: those belong to tinykv-node.
//!
//! # Map
//! - [`engines`]: [`Engines`] — open (refusing foreign or corrupt data dirs), bootstrap, list
//!   regions, consistent reads ([`ReadView`]).
//! - [`keys`] and [`records`]: the key layout (DESIGN §3) and the postcard records stored
//!   under it. The region metadata types inside them ([`Region`], [`Peer`], [`RegionEpoch`])
//!   come from tinykv-proto, shared with clients, and are re-exported here; [`conf_state`] is
//!   the Raft membership of a region.
//! - [`write_batch`]: group commit of many peers' readies with one fsync.
//! - [`peer_storage`]: [`PeerStorage`], one per region peer.
//! - [`apply`]: [`ApplyBatch`], user writes plus the apply state in one batch.
//! - [`destroy`]: what is deleted when a peer is removed, and the tombstone kept.
//! - [`log_gc`] and [`workers`]: the background threads ([`StorageWorkers`]).
//! - [`snapshot`]: snapshot files — build, chunked transfer, apply, restart recovery.
//!
//! # Persisting readies (one raft-loop round)
//! ```text
//! let mut wb = engines.raft_batch();
//! for peer in peers_with_ready { peer.storage().save_ready(&mut wb, &ready)?; }
//! let mut persisted = engines.commit(wb)?;          // one fsync for every peer
//! for peer in peers_with_ready { peer.mut_storage().post_persist(&mut persisted)?; }
//! // now send the readies' messages, then apply committed entries
//! ```
//! Only [`Engines::commit`] (which always fsyncs) or the explicitly named
//! [`Engines::commit_without_fsync`] turn a batch into the [`PersistedBatch`] that
//! `post_persist` needs, so a peer's in-memory state never runs ahead of the disk.
//!
//! # Applying committed entries
//! ```text
//! let mut ab = engines.apply_batch();
//! ab.put(&region, key, value)?;                     // refused outside the region's range
//! let mut state = *storage.apply_state();
//! state.applied_index = entry.index;
//! state.compact_to(idx, term);                      // for a CompactLog command
//! ab.set_apply_state(region.id, state);
//! let applied = engines.commit_apply(ab)?;          // atomic; the log is the durable copy
//! storage.post_apply(&applied)?;                    // schedules log GC if truncated moved
//! ```
//!
//! # Snapshots
//! A leader's Raft calls `PeerStorage::snapshot`, which asks the snapshot worker to build a file
//! from one fjall snapshot and answers `SnapshotTemporarilyUnavailable` until it is ready; the
//! Raft snapshot then carries a [`SnapshotDescriptor`]. The node streams the file with
//! [`SnapshotChunks`]; the receiver writes it with [`SnapshotReceiver`] (size and checksum
//! checked) before stepping the message. The follower's ready carries the snapshot:
//! `save_ready` stages it (log cleared, region `Applying`) in the same group commit, and
//! `post_persist` starts the data apply on the worker; poll
//! [`PeerStorage::snapshot_apply_status`] and hold back committed entries until it is
//! `Finished`. A restart that finds `Applying` completes the apply from the file or resets the
//! region to ask for a new snapshot ([`RecoveryReport`]).

pub mod apply;
pub mod destroy;
pub mod engines;
pub mod entry_cache;
pub mod error;
pub mod keys;
pub mod log_gc;
pub mod peer_storage;
pub mod records;
pub mod snapshot;
pub mod split_check;
pub mod workers;
pub mod write_batch;

pub use apply::{AppliedBatch, ApplyBatch};
pub use engines::{Engines, KV_KEYSPACE, META_KEYSPACE, OpenOptions, RAFT_KEYSPACE, ReadView};
pub use error::{Result, StorageError};
pub use log_gc::{LogGcScheduler, LogGcTask, LogGcWorker};
pub use peer_storage::{PeerStorage, SnapshotApplyStatus};
pub use records::{
    CLUSTER_REGION_ID, DATA_FORMAT_VERSION, DataFormat, INIT_EPOCH_CONF_VER, INIT_EPOCH_VER,
    IdAllocState, Peer, PeerRole, PeerState, PlacementRecord, RAFT_INIT_LOG_INDEX,
    RAFT_INIT_LOG_TERM, RaftApplyState, RaftLocalState, RaftTruncatedState, RangeEnd, Record,
    Region, RegionEpoch, RegionLocalState, RetiredStore, StoreAddress, StoreIdent, StoreStarted,
    conf_state,
};
pub use snapshot::apply::apply_snapshot_file;
pub use snapshot::build::build_snapshot;
pub use snapshot::format::SnapshotHeader;
pub use snapshot::recovery::{RecoveryReport, recover_region};
pub use snapshot::transfer::{SnapshotChunks, SnapshotReceiver};
pub use snapshot::worker::{SnapshotScheduler, SnapshotWorker};
pub use snapshot::{
    SnapshotDescriptor, SnapshotFile, generated_path, inspect_snapshot_file, received_path,
};
pub use split_check::{RegionSize, SplitLimits};
pub use workers::{StorageWorkers, WorkerHandles};
pub use write_batch::{PersistedBatch, RaftWriteBatch};
