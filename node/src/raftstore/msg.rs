//! What the raft loop is asked to do: the messages its channel carries.

use tinykv_proto::api::{AdminRequest, AdminResult, KvRequest, KvResult, StoreAddr};
use tinykv_proto::placement::HeartbeatAnswer;
use tinykv_transport::{Received, ReceivedSnapshot};
use tokio::sync::oneshot;

use super::heartbeat::SentReports;
use crate::message::RaftMessage;
use crate::split_check::SplitCheckResult;

/// How this store's regions stand, for `/health`, `/status` and the region gauges.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct RegionHealth {
    pub regions: u64,
    pub leaders: u64,
    /// Regions whose peer here knows no leader (it is electing one, or was cut off long
    /// enough to start), in id order.
    pub without_leader: Vec<u64>,
}

/// What the raft loop is asked to do.
#[derive(Debug)]
pub(crate) enum StoreMsg {
    /// Raft messages that arrived together.
    Raft(Vec<Received<RaftMessage>>),
    Snapshot(ReceivedSnapshot),
    SnapshotSent {
        region_id: u64,
        to_peer: u64,
        ok: bool,
    },
    Unreachable(u64),
    Tick,
    Kv {
        req: KvRequest,
        reply: oneshot::Sender<KvResult>,
    },
    Admin {
        req: AdminRequest,
        reply: oneshot::Sender<AdminResult>,
    },
    /// Learned store addresses (join, or another store's directory).
    Addresses(Vec<StoreAddr>),
    /// The split-check worker measured a region.
    SplitChecked(SplitCheckResult),
    /// A split this store started on its own has been answered (applied or refused).
    SplitDone {
        region_id: u64,
    },
    /// The placement driver answered this store's heartbeat (or it could not be sent).
    PlacementAnswered {
        answer: Result<HeartbeatAnswer, String>,
        sent: SentReports,
    },
    /// Ids the placement driver asked the allocator for (`None`: the allocation failed).
    PlacementIds(Option<(u64, u32)>),
    /// The status server's health check: answered at once, so an answer also says the loop
    /// is not stuck.
    Health(oneshot::Sender<RegionHealth>),
    Shutdown,
}
