//! The raftstore: every region peer of this node and the loop that drives them, one idea a
//! file, shaped like TiKV's raftstore for a store that hosts many regions.
//!
//! - `store.rs`: the `Store` (peers by region id, regions by range, store-wide state) and its
//!   loop, which hands each message to its handler and then runs one ready round.
//! - `msg.rs`: what the loop's channel carries.
//! - Handlers, one `impl Store` each: `raft_message.rs` (peer messages; creating, replacing
//!   and refusing peers), `kv.rs` (client requests and their route check), `admin.rs`
//!   (operator requests), `status.rs` (inspection answers), `tick.rs` (ticks, log GC,
//!   housekeeping), `membership.rs` (conf changes and the id allocator), `split.rs` (proposing
//!   and applying splits, automatic splits), `placement.rs` (the placement driver while this
//!   store leads region 1), `heartbeat.rs` (reporting to the driver, carrying out its steps).
//! - `ready.rs`: the ready round over the regions that had work: collect, persist (one batch,
//!   one fsync), send, apply (one batch), answer and advance.
//! - Leaf parts the handlers use: `ranges.rs` (regions by key range), `outbox.rs` (outgoing
//!   messages and snapshot sends), `pending_votes.rs`, `auto_split.rs`, `disk_space.rs`,
//!   `snapshot_files.rs`, `raft_config.rs`, `unreachable.rs`, `resolve.rs` (asking other
//!   stores for an address this store does not know), `background.rs` (the tasks a store
//!   started on the runtime, aborted when it stops).

mod admin;
mod auto_split;
mod background;
mod disk_space;
mod heartbeat;
mod hibernate;
mod kv;
mod membership;
mod msg;
mod outbox;
mod pending_votes;
mod placement;
mod raft_config;
mod raft_message;
mod ranges;
mod ready;
mod resolve;
mod snapshot_files;
mod split;
mod status;
mod store;
mod tick;
mod unreachable;

pub(crate) use disk_space::{StoreFailure, check_reserve_fits, fs_space};
pub(crate) use msg::{RegionHealth, StoreMsg};
pub(crate) use status::describe_entry;
pub(crate) use store::{Store, StoreParts};
