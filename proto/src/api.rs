//! The client and admin services as they travel between a `tinykv` client and a node: request
//! and answer types, encoded with postcard inside the transport's RPC frames. Enum variants are
//! only ever appended (postcard encodes them by position).

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::fault::FaultSpec;
use crate::placement::{Heartbeat, HeartbeatAnswer, PlacementAnswer, PlacementRequest};
pub use crate::region::StoreAddr;
use crate::region::{Region, RegionEpoch};

/// Encodes a service message (infallible for these types).
pub fn encode<T: Serialize>(value: &T) -> Bytes {
    Bytes::from(postcard::to_allocvec(value).unwrap_or_default())
}

/// Decodes a service message; the error says what was expected.
pub fn decode<T: serde::de::DeserializeOwned>(
    what: &'static str,
    bytes: &[u8],
) -> Result<T, ApiError> {
    postcard::from_bytes(bytes).map_err(|e| ApiError::Decode {
        what: what.to_string(),
        reason: e.to_string(),
    })
}

/// A request that could not be read.
#[derive(Clone, Debug, PartialEq, Eq, Error, Serialize, Deserialize)]
pub enum ApiError {
    #[error("cannot decode {what}: {reason}")]
    Decode { what: String, reason: String },
}

/// How fresh a read must be.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReadMode {
    /// Reflects every write acknowledged before the read began (ReadIndex on the leader).
    #[default]
    Linearizable,
    /// Served from this node's applied state, possibly behind the leader.
    Stale,
}

/// One key-value operation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum KvOp {
    Get {
        key: Bytes,
        read: ReadMode,
    },
    /// Keys in `[start, end)` within the region; an empty `end` means the region's end.
    Scan {
        start: Bytes,
        end: Bytes,
        limit: u32,
        read: ReadMode,
    },
    Put {
        key: Bytes,
        value: Bytes,
    },
    Delete {
        key: Bytes,
    },
    /// Deletes every key in `[start, end)` within the region (an empty `end`: to the region's
    /// end), as one log entry; answered `Deleted` with the count. `start` routes it: it must
    /// be in the region. New variants go at the end: the encoding is positional.
    DeleteRange {
        start: Bytes,
        end: Bytes,
    },
    /// Opens a point-in-time view of the region's data from `start` (which routes it: it must
    /// be in the region) to the region's end, after a ReadIndex round like a linearizable read;
    /// answered `ViewOpened`. A backup opens one per region, then reads them with `ViewScan`
    /// from the store that answered, off its raft loop. A view idle for `VIEW_IDLE_SECS` closes.
    OpenView {
        start: Bytes,
    },
    /// Pairs of an open view in key order from `from` (inclusive, clamped to the view's range),
    /// about `max_bytes` of keys and values at most (one pair at least); `more` when some are
    /// left. Served by the store that opened the view; `region_id` is not looked at.
    ViewScan {
        view: u64,
        from: Bytes,
        max_bytes: u32,
    },
    /// Closes a view (closing one that is not open succeeds); answered `ViewClosed`.
    CloseView {
        view: u64,
    },
    /// Writes `value` only if the key's value is `expected` (`None`: only if the key is
    /// absent), decided when the entry applies, so every replica decides the same; answered
    /// `Swapped`.
    Cas {
        key: Bytes,
        expected: Option<Bytes>,
        value: Bytes,
    },
    /// Restarts the idle clock of views a backup has not read yet (a long backup reads the
    /// last regions long after it opened their views); answered `ViewsRenewed`. Served like
    /// `ViewScan`.
    RenewViews {
        views: Vec<u64>,
    },
}

/// How long a view opened with `KvOp::OpenView` stays open without a `ViewScan`.
pub const VIEW_IDLE_SECS: u64 = 60;

impl KvOp {
    pub fn is_write(&self) -> bool {
        matches!(
            self,
            KvOp::Put { .. } | KvOp::Delete { .. } | KvOp::DeleteRange { .. } | KvOp::Cas { .. }
        )
    }
}

/// A key-value request routed to one region. `epoch`, when given, must match the region's.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvRequest {
    pub region_id: u64,
    pub epoch: Option<RegionEpoch>,
    pub op: KvOp,
}

/// A successful answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum KvResponse {
    Value(Option<Bytes>),
    /// In key order; `more` when the limit cut the scan short.
    Pairs {
        pairs: Vec<(Bytes, Bytes)>,
        more: bool,
    },
    Written,
    /// How many keys a `DeleteRange` deleted in its region.
    Deleted(u64),
    /// A view is open on the answering store over `[start, region.end_key)` of `region` as
    /// it stood when the view was taken, with every write applied through `applied`.
    ViewOpened {
        view: u64,
        region: Region,
        applied: u64,
    },
    ViewClosed,
    /// Whether a `Cas` wrote, and the value the key held when it applied (the one it
    /// replaced, or the one that did not match).
    Swapped {
        swapped: bool,
        previous: Option<Bytes>,
    },
    /// The views of a `RenewViews` that were no longer open.
    ViewsRenewed {
        missing: Vec<u64>,
    },
}

/// Why a node did not carry out a request. Each says what the client should do.
#[derive(Clone, Debug, PartialEq, Eq, Error, Serialize, Deserialize)]
pub enum KvError {
    #[error("store is not the leader of region {region_id}{}", leader_hint(.leader))]
    NotLeader {
        region_id: u64,
        leader: Option<StoreAddr>,
    },
    /// `regions` are the region asked for (first) and the answering store's regions around
    /// the key, for the client's cache.
    #[error("key {key:?} is not in region {region_id}")]
    KeyNotInRegion {
        key: Bytes,
        region_id: u64,
        regions: Vec<Region>,
    },
    /// The region split or changed membership since the request was routed: `regions` are the
    /// answering store's current regions over its range, so the client fixes its cache without
    /// asking again.
    #[error("region epoch changed; the range is now held by regions {}", region_ids(.regions))]
    EpochNotMatch { regions: Vec<Region> },
    #[error("region {region_id} is not on this store")]
    RegionNotFound { region_id: u64 },
    #[error(
        "the command was overtaken by a new leader or term; its outcome is unknown, retry if idempotent"
    )]
    StaleCommand,
    #[error("timed out; the outcome of a write is unknown")]
    Timeout,
    #[error("the store is busy; retry later")]
    ServerBusy,
    #[error("the store cannot write: {0}")]
    Storage(String),
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error("fault injection refused: {reason}")]
    FaultInjection { reason: String },
    /// The store's data dir is below `storage.reserve-space`: the write was not proposed.
    #[error(
        "store {store_id} is low on disk space ({} available, storage.reserve-space is {}): \
         writes are refused until space is freed; reads still work",
        human_bytes(*.available),
        human_bytes(*.reserve)
    )]
    DiskFull {
        store_id: u64,
        available: u64,
        reserve: u64,
    },
    /// The proposal reached the log but its peer went away before it applied (removed from
    /// its region): it may still commit under another leader. Never resend it as if it had
    /// not happened.
    #[error("region {region_id}: {reason}; the write may or may not have taken effect")]
    OutcomeUnknown { region_id: u64, reason: String },
    /// A membership change the leader would not propose; nothing changed.
    #[error("region {region_id}: membership change refused: {refusal}")]
    ConfChangeRefused {
        region_id: u64,
        refusal: ConfChangeRefusal,
    },
    /// The request itself is wrong (a bad argument, a peer that cannot do what was asked).
    #[error("bad request: {0}")]
    BadRequest(String),
    /// The client certificate's role does not allow the request; it was not carried out. The
    /// roles travel as their names (`admin`, `readwrite`, `readonly`) so that a client built
    /// before a role existed still reads the refusal.
    #[error(
        "permission denied: {request} needs a certificate with role {needed}; {who} has role {had}"
    )]
    PermissionDenied {
        request: String,
        needed: String,
        had: String,
        /// The refused certificate as the node saw it (e.g. `client "app"`).
        who: String,
    },
    /// A `ViewScan` for a view this store does not have open: it was idle for
    /// `VIEW_IDLE_SECS`, was closed, or the store restarted. The backup must start again.
    #[error(
        "view {view} is not open on this store (idle for {VIEW_IDLE_SECS} s, closed, or the \
         store restarted); start the backup again"
    )]
    ViewNotOpen { view: u64 },
}

/// Why a leader refused a membership change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Error)]
pub enum ConfChangeRefusal {
    /// The peer to remove is the leader itself: leadership must move first (`node leave` does
    /// that), since a leader that applies its own removal drops what it was serving.
    #[error("store {store_id} holds the leader; transfer leadership away first")]
    RemovesLeader { store_id: u64 },
    /// Too few voters would be left alive to commit anything (etcd's strict reconfiguration
    /// check): `live` of the `voters` that would remain answered lately, and `quorum` are needed.
    #[error(
        "after removing store {store_id}, {live} of the {voters} remaining voters are alive, \
         fewer than the {quorum} a quorum needs; bring the others back first"
    )]
    LosesQuorum {
        store_id: u64,
        voters: usize,
        live: usize,
        quorum: usize,
    },
    /// A learner is promoted only once it has caught up (`raft.learner-max-lag`): promoted
    /// earlier, it would count toward the quorum while it cannot yet acknowledge anything.
    #[error(
        "the learner on store {store_id} has {matched} of the leader's {last_index} entries; \
         it is promoted once it has answered and is at most {max_lag} behind: wait for it to \
         catch up"
    )]
    LearnerBehind {
        store_id: u64,
        matched: u64,
        last_index: u64,
        max_lag: u64,
    },
    /// Only a learner of the region can be promoted.
    #[error("store {store_id} holds no peer of the region to promote; add it as a learner first")]
    NoLearner { store_id: u64 },
    /// A peer id must be new: allocated for this change (`AllocIds`), never used before.
    #[error("peer id {peer_id} is not a fresh allocated id")]
    StalePeerId { peer_id: u64 },
}

fn human_bytes(n: u64) -> String {
    bytesize::ByteSize::b(n).display().iec().to_string()
}

fn region_ids(regions: &[Region]) -> String {
    let ids: Vec<String> = regions.iter().map(|r| r.id.to_string()).collect();
    ids.join(", ")
}

fn leader_hint(leader: &Option<StoreAddr>) -> String {
    match leader {
        Some(l) => format!("; the leader is store {} at {}", l.store_id, l.addr),
        None => "; no leader is known".to_string(),
    }
}

pub type KvResult = Result<KvResponse, KvError>;

/// A region as the admin service describes it (its peers carry their roles).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegionInfo {
    pub region: Region,
    pub leader_store: Option<u64>,
    /// Applied index and approximate data size and key count on the answering store (as of its
    /// last split check; 0 before one ran).
    pub applied: u64,
    pub approximate_size: u64,
    pub approximate_keys: u64,
}

/// The ids a region created by a split takes: its own and one per peer of the parent, in the
/// parent's peer order (the new peer lives on the same store, with the same role).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewRegionIds {
    pub region_id: u64,
    pub peer_ids: Vec<u64>,
}

/// What one store knows of the cluster.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterInfo {
    pub cluster_id: u64,
    /// The answering store.
    pub store_id: u64,
    pub stores: Vec<StoreAddr>,
    pub regions: Vec<RegionInfo>,
    /// The stores the cluster has seen running (a founding store that comes back empty while
    /// listed here lost its data).
    pub started_stores: Vec<u64>,
}

/// The most ids one `AllocIds` request may ask for.
pub const MAX_ALLOC_IDS: u32 = 1000;

/// A region peer's Raft state, the same online and offline.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RaftStateInfo {
    pub region: u64,
    pub peer: u64,
    pub term: u64,
    pub vote: u64,
    pub commit: u64,
    pub applied: u64,
    pub truncated_index: u64,
    pub truncated_term: u64,
    pub last_index: u64,
    pub last_term: u64,
}

/// Live Raft status of a running peer.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerStatus {
    pub state: RaftStateInfo,
    /// "leader", "follower", "candidate" or "pre-candidate".
    pub role: String,
    pub leader_peer: u64,
    /// Proposals waiting for their entries to apply.
    pub pending_proposals: u64,
    /// On a leader, the peers it has not heard from within two election timeouts.
    pub down_peers: Vec<u64>,
    /// The region is at rest and this peer does not tick (hibernating).
    pub hibernating: bool,
    /// On a leader, what it knows of each other peer's log; empty elsewhere.
    pub progress: Vec<PeerProgressInfo>,
    /// On a leader, the peers that cannot catch up from its log: being sent a snapshot, or
    /// known to hold less than the log it still keeps (a new learner, one long gone). New
    /// fields go at the end.
    pub pending_peers: Vec<u64>,
}

/// A leader's view of one follower or learner: how far their logs agree and how it sends.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerProgressInfo {
    pub peer: u64,
    /// The highest index known to be in the peer's log.
    pub matched: u64,
    /// The next index the leader sends.
    pub next: u64,
    /// "probe" (finding where the logs agree), "replicate" (streaming) or "snapshot".
    pub state: String,
    /// Nothing new goes out until the peer answers.
    pub paused: bool,
    /// The index of the snapshot in flight, in state "snapshot"; else 0.
    pub pending_snapshot: u64,
    /// Heard from within the current election timeout.
    pub recent_active: bool,
    pub learner: bool,
}

/// One log entry, described.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEntryInfo {
    pub index: u64,
    pub term: u64,
    /// "normal", "conf-change" or "noop".
    pub entry_type: String,
    pub size: u64,
    /// A short human description of the command.
    pub summary: String,
}

/// A store's own view of itself, for `cluster status`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreStatus {
    pub store_id: u64,
    pub addr: String,
    pub peers: Vec<PeerStatus>,
    pub leader_of: Vec<u64>,
    pub disk_bytes: u64,
    pub uptime_secs: u64,
    /// Region snapshots this store finished sending and receiving since it started.
    pub snapshots_sent: u64,
    pub snapshots_received: u64,
    /// Snapshots arriving right now.
    pub receiving: Vec<SnapshotTransfer>,
    /// Regions whose peer here knows no leader (electing, or cut off from the rest): what
    /// makes the store's `/health` answer 503. New fields go at the end.
    pub regions_without_leader: Vec<u64>,
    /// The build the store runs: version and commit.
    pub version: String,
}

/// A snapshot on its way in: how far it came.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotTransfer {
    pub region_id: u64,
    pub from_store: u64,
    pub bytes: u64,
    pub total: u64,
}

/// A committed log entry as `RaftEntries` carries it. The fields, their order and the variants
/// of [`RaftEntryType`] are `tinykv_raft::Entry`'s, which the node stores and this answer
/// carried before: the same bytes on the wire, without this crate depending on the Raft core.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RaftEntry {
    pub entry_type: RaftEntryType,
    pub term: u64,
    pub index: u64,
    pub data: Bytes,
}

/// What a log entry carries. New variants go at the end: the encoding is positional.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RaftEntryType {
    /// A node's command; an entry with empty data is the no-op a new leader appends.
    #[default]
    Normal,
    /// A membership change.
    ConfChange,
}

/// Requests of the admin service.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AdminRequest {
    Cluster,
    StoreStatus,
    RaftState {
        region_id: u64,
    },
    RaftLog {
        region_id: u64,
        from: u64,
        to: u64,
    },
    TransferLeader {
        region_id: u64,
        to_store: u64,
    },
    CompactLog {
        region_id: u64,
    },
    SnapshotTrigger {
        region_id: u64,
    },
    /// Add a learner `peer_id` (an id from `AllocIds`) on `store_id`, reachable at `addr`;
    /// answered once applied. Done also when the store already holds a peer of the region.
    AddLearner {
        region_id: u64,
        store_id: u64,
        peer_id: u64,
        addr: String,
    },
    /// Make the region's learner on `store_id` a voter, once it has caught up; answered once
    /// applied. Done also when it votes already.
    PromoteLearner {
        region_id: u64,
        store_id: u64,
    },
    /// The region's committed log entries in `[from, to]` (`to` 0: through the commit index)
    /// as stored, compacted ones that log GC has not deleted yet included, at most 1000 or
    /// about 4 MiB of them: for tools that audit the log itself.
    RaftEntries {
        region_id: u64,
        from: u64,
        to: u64,
    },
    /// `count` (1 to 1000) ids from the cluster's allocator, never handed out before or again.
    /// Served by region 1's leader.
    AllocIds {
        count: u32,
    },
    /// Remove the region's peer on `store_id`; answered once applied.
    RemovePeer {
        region_id: u64,
        store_id: u64,
    },
    /// A checksum of the region's user data at the answering store's applied index.
    RegionChecksum {
        region_id: u64,
    },
    /// Replaces the node's injected faults (tests; needs `fault-injection: true`).
    SetFaults(FaultSpec),
    /// Removes every injected fault (tests; needs `fault-injection: true`).
    ClearFaults,
    /// Split the region at `split_keys` under ids allocated for it (see `CmdBody::Split`), if
    /// its epoch is still `epoch`; answered once applied with the resulting regions.
    SplitRegion {
        region_id: u64,
        epoch: RegionEpoch,
        split_keys: Vec<Bytes>,
        new_regions: Vec<NewRegionIds>,
    },
    /// A store's heartbeat to the placement driver (region 1's leader).
    PlacementHeartbeat(Heartbeat),
    /// An operator's question or order to the placement driver (region 1's leader).
    Placement(PlacementRequest),
}

/// Answers of the admin service.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AdminResponse {
    Cluster(ClusterInfo),
    StoreStatus(StoreStatus),
    RaftState(PeerStatus),
    RaftLog(Vec<LogEntryInfo>),
    Done,
    Checksum {
        applied: u64,
        crc32: u32,
        keys: u64,
    },
    /// Ids `first .. first + count`.
    Ids {
        first: u64,
        count: u32,
    },
    RaftEntries(Vec<RaftEntry>),
    /// The regions a split left, left to right: the split region first.
    Split {
        regions: Vec<Region>,
    },
    HeartbeatAnswer(HeartbeatAnswer),
    Placement(PlacementAnswer),
}

pub type AdminResult = Result<AdminResponse, KvError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_and_garbage_is_an_error() {
        let req = KvRequest {
            region_id: 1,
            epoch: Some(RegionEpoch {
                conf_ver: 2,
                version: 1,
            }),
            op: KvOp::Scan {
                start: Bytes::from_static(b"a"),
                end: Bytes::new(),
                limit: 10,
                read: ReadMode::Stale,
            },
        };
        let back: KvRequest = decode("kv request", &encode(&req)).unwrap();
        assert_eq!(back, req);
        let err = decode::<KvRequest>("kv request", b"\xff\xff\xff").unwrap_err();
        assert!(err.to_string().contains("kv request"));
    }

    #[test]
    fn permission_denied_is_appended_and_says_what_was_needed() {
        let e = KvError::PermissionDenied {
            request: "remove_peer".into(),
            needed: "admin".into(),
            had: "readwrite".into(),
            who: "client \"app\"".into(),
        };
        assert_eq!(
            e.to_string(),
            "permission denied: remove_peer needs a certificate with role admin; client \"app\" has role readwrite"
        );
        // Variants are encoded by position: the refusal must come after every older one so
        // that older clients still decode those.
        assert_eq!(encode(&e)[0], 14);
        assert_eq!(encode(&KvError::BadRequest(String::new()))[0], 13);
        assert_eq!(decode::<KvError>("kv error", &encode(&e)), Ok(e));
    }

    #[test]
    fn not_leader_names_the_leader() {
        let e = KvError::NotLeader {
            region_id: 1,
            leader: Some(StoreAddr {
                store_id: 2,
                addr: "127.0.0.1:20161".into(),
            }),
        };
        assert!(e.to_string().contains("store 2 at 127.0.0.1:20161"));
    }
}
