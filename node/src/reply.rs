//! Where the answers to a peer's proposals and reads go: the caller's channel (`Reply`), a
//! read waiting for its ReadIndex round (`PendingRead`), and an applied entry's answer sent once
//! the apply batch is committed (`Answer`).

use tinykv_proto::api::{AdminResponse, AdminResult, KvError, KvOp, KvResponse, KvResult};
use tinykv_storage::RegionEpoch;
use tokio::sync::oneshot;

/// Where the answer to a proposal goes.
#[derive(Debug)]
pub(crate) enum Reply {
    Kv(oneshot::Sender<KvResult>),
    Admin(oneshot::Sender<AdminResult>),
}

impl Reply {
    pub(crate) fn fail(self, err: KvError) {
        // A caller that gave up (timed out) dropped its receiver; nothing to tell it.
        match self {
            Reply::Kv(tx) => {
                let _ = tx.send(Err(err));
            }
            Reply::Admin(tx) => {
                let _ = tx.send(Err(err));
            }
        }
    }

    /// Answers success (also when there was nothing to do).
    pub(crate) fn done(self) {
        match self {
            Reply::Kv(tx) => {
                let _ = tx.send(Ok(KvResponse::Written));
            }
            Reply::Admin(tx) => {
                let _ = tx.send(Ok(AdminResponse::Done));
            }
        }
    }
}

/// A linearizable read waiting for its ReadIndex round.
#[derive(Debug)]
pub(crate) struct PendingRead {
    pub op: KvOp,
    /// The epoch the request was routed with: a split between the ReadIndex round and the
    /// read must not serve a shrunk range as if it were the whole one.
    pub epoch: Option<RegionEpoch>,
    pub reply: oneshot::Sender<KvResult>,
}

/// The outcome of applying one entry, answered once the apply batch is committed.
#[derive(Debug)]
pub(crate) enum Answer {
    Done(Reply),
    Failed(Reply, KvError),
    /// A proposal with an answer of its own (allocated ids, a split's regions, the keys a
    /// range delete removed).
    With(Reply, Response),
}

/// What an applied command answers besides success.
#[derive(Debug)]
pub(crate) enum Response {
    Admin(AdminResponse),
    Kv(KvResponse),
}

impl Answer {
    pub(crate) fn send(self) {
        match self {
            Answer::Done(r) => r.done(),
            Answer::Failed(r, e) => r.fail(e),
            Answer::With(Reply::Admin(tx), Response::Admin(resp)) => {
                let _ = tx.send(Ok(resp));
            }
            Answer::With(Reply::Kv(tx), Response::Kv(resp)) => {
                let _ = tx.send(Ok(resp));
            }
            Answer::With(r, _) => r.done(),
        }
    }
}
