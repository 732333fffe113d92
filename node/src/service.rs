//! The node's client and admin services: decode a request, hand it to the raft loop, wait for
//! the answer within the request timeout, encode it. A full loop answers `ServerBusy` at once
//! rather than queue without bound.

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use tinykv_transport::{Identity, RpcFuture, RpcHandler, Service};
use tokio::sync::{mpsc, oneshot};

use crate::api::{self, AdminRequest, AdminResponse, AdminResult, KvError, KvRequest, KvResult};
use crate::store::StoreMsg;

pub(crate) struct Services {
    pub tx: mpsc::Sender<StoreMsg>,
    pub timeout: Duration,
    pub data_dir: PathBuf,
}

impl RpcHandler for Services {
    fn call(&self, _from: Identity, service: Service, body: Bytes) -> RpcFuture {
        let tx = self.tx.clone();
        let timeout = self.timeout;
        let data_dir = self.data_dir.clone();
        Box::pin(async move {
            let reply = match service {
                Service::Client => api::encode(&serve_kv(&tx, timeout, &body).await),
                Service::Admin => api::encode(&serve_admin(&tx, timeout, &body, data_dir).await),
            };
            Ok(reply)
        })
    }
}

async fn serve_kv(tx: &mpsc::Sender<StoreMsg>, timeout: Duration, body: &[u8]) -> KvResult {
    let req: KvRequest = api::decode("kv request", body)?;
    let (reply, rx) = oneshot::channel();
    submit(tx, StoreMsg::Kv { req, reply })?;
    wait(rx, timeout).await
}

async fn serve_admin(
    tx: &mpsc::Sender<StoreMsg>,
    timeout: Duration,
    body: &[u8],
    data_dir: PathBuf,
) -> AdminResult {
    let req: AdminRequest = api::decode("admin request", body)?;
    let (reply, rx) = oneshot::channel();
    submit(tx, StoreMsg::Admin { req, reply })?;
    let mut result = wait(rx, timeout).await;
    if let Ok(AdminResponse::StoreStatus(status)) = &mut result {
        // Walking the data dir is file-system work: keep it off the raft loop.
        status.disk_bytes = tokio::task::spawn_blocking(move || dir_size(&data_dir))
            .await
            .unwrap_or(0);
    }
    result
}

fn submit(tx: &mpsc::Sender<StoreMsg>, msg: StoreMsg) -> Result<(), KvError> {
    tx.try_send(msg).map_err(|e| match e {
        mpsc::error::TrySendError::Full(_) => KvError::ServerBusy,
        mpsc::error::TrySendError::Closed(_) => {
            KvError::Storage("the store is shutting down".into())
        }
    })
}

async fn wait<T>(
    rx: oneshot::Receiver<Result<T, KvError>>,
    timeout: Duration,
) -> Result<T, KvError> {
    match tokio::time::timeout(timeout, rx).await {
        Ok(Ok(result)) => result,
        Ok(Err(_)) => Err(KvError::Storage(
            "the store stopped before answering".into(),
        )),
        Err(_) => Err(KvError::Timeout),
    }
}

/// Bytes under `dir`, following no links; unreadable entries count as 0.
pub(crate) fn dir_size(dir: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_size(&e.path()),
            Ok(t) if t.is_file() => e.metadata().map(|m| m.len()).unwrap_or(0),
            _ => 0,
        })
        .sum()
}
