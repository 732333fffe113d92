//! tinykv-proto: the types a tinykv client and a tinykv node share, and nothing of either side.
//! An application links it (through tinykv-client) without building the server's Raft core,
//! storage engine or fjall.
//!
//! - [`region`]: region metadata ([`Region`], [`Peer`], [`RegionEpoch`], [`RangeEnd`]). Nodes
//!   also store these records on disk, so their encoding never changes.
//! - [`api`]: the client and admin services' requests and answers, their encoding and errors.
//! - [`fault`]: the faults a test injects into a node through the admin service.
//! - [`placement`]: heartbeats to the placement driver, its orders, and operators' requests.
//! - [`split`]: the split-key checks and id dealing a split request needs on both sides.
//! - [`display`]: keys as people read them in errors and descriptions.
//!
//! Everything is encoded with postcard, which encodes enum variants by position: variants are
//! only ever appended and fields never reordered.

pub mod api;
pub mod display;
pub mod fault;
pub mod placement;
pub mod region;
pub mod split;

pub use region::{CLUSTER_REGION_ID, Peer, PeerRole, RangeEnd, Region, RegionEpoch};
