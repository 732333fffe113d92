//! The node's client and admin services: decode a request, hand it to the raft loop, wait for
//! the answer within the request timeout, encode it. A full loop answers `ServerBusy` at once
//! rather than queue without bound. Each request is checked against the caller's certificate
//! role first (`permission.rs`): a refused one never reaches the loop. Fault-injection requests
//! are answered here, off the raft loop, so a test can partition a node whose loop is busy or
//! stuck.

use std::path::PathBuf;
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use tinykv_proto::api::{
    self, AdminRequest, AdminResponse, AdminResult, KvError, KvOp, KvRequest, KvResponse, KvResult,
};
use tinykv_proto::fault::FaultSpec;
use tinykv_storage::engines::SyncDelay;
use tinykv_transport::{Endpoint, Identity, RpcFuture, RpcHandler, Service};
use tokio::sync::{mpsc, oneshot};
use tracing::{info, warn};

use crate::message::RaftMessage;
use crate::permission;
use crate::raftstore::StoreMsg;
use crate::read_views::ReadViews;

pub(crate) struct Services {
    pub tx: mpsc::Sender<StoreMsg>,
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Backup views, read here rather than on the raft loop (a chunk is a disk read).
    pub views: Arc<ReadViews>,
    pub timeout: Duration,
    pub data_dir: PathBuf,
    /// Present only when the configuration enables fault injection.
    pub faults: Option<Arc<FaultHooks>>,
}

/// What fault injection acts on. The endpoint is held weakly: it owns these services, and a
/// strong reference would keep it from shutting down.
pub(crate) struct FaultHooks {
    pub endpoint: Weak<Endpoint<RaftMessage>>,
    pub sync_delay: SyncDelay,
    pub snapshot_delay: SyncDelay,
}

impl FaultHooks {
    fn set(&self, spec: &FaultSpec) -> AdminResult {
        let rules = crate::fault::rules(spec).map_err(|e| KvError::FaultInjection {
            reason: e.to_string(),
        })?;
        let endpoint = self
            .endpoint
            .upgrade()
            .ok_or_else(|| KvError::Storage("the node is shutting down".into()))?;
        warn!(rules = ?rules, sync_delay = ?spec.sync_delay, snapshot_delay = ?spec.snapshot_delay, "fault injection: faults set");
        endpoint.filter().set(rules);
        self.sync_delay.set(spec.sync_delay);
        self.snapshot_delay.set(spec.snapshot_delay);
        Ok(AdminResponse::Done)
    }

    fn clear(&self) -> AdminResult {
        if let Some(endpoint) = self.endpoint.upgrade() {
            endpoint.filter().clear();
        }
        self.sync_delay.set(Duration::ZERO);
        self.snapshot_delay.set(Duration::ZERO);
        warn!("fault injection: faults cleared");
        Ok(AdminResponse::Done)
    }
}

impl RpcHandler for Services {
    fn call(&self, from: Identity, service: Service, body: Bytes) -> RpcFuture {
        let tx = self.tx.clone();
        let metrics = self.metrics.clone();
        let views = self.views.clone();
        let timeout = self.timeout;
        let data_dir = self.data_dir.clone();
        let faults = self.faults.clone();
        Box::pin(async move {
            let reply = match service {
                Service::Client => {
                    api::encode(&serve_kv(&tx, &metrics, &views, timeout, &from, &body).await)
                }
                Service::Admin => api::encode(
                    &serve_admin(
                        &tx,
                        &metrics,
                        timeout,
                        &from,
                        &body,
                        data_dir,
                        faults.as_deref(),
                    )
                    .await,
                ),
            };
            Ok(reply)
        })
    }
}

async fn serve_kv(
    tx: &mpsc::Sender<StoreMsg>,
    metrics: &crate::metrics::Metrics,
    views: &Arc<ReadViews>,
    timeout: Duration,
    from: &Identity,
    body: &[u8],
) -> KvResult {
    let started = std::time::Instant::now();
    let req: KvRequest = api::decode("kv request", body)?;
    let need = permission::kv(&req.op);
    let result = match permission::check(from, need) {
        Err(refused) => {
            info!(%from, request = need.request, "refused: the certificate's role does not allow it");
            Err(refused)
        }
        Ok(()) => match req.op {
            // Views are read here, not on the raft loop: a chunk is a disk read.
            KvOp::ViewScan {
                view,
                from: start,
                max_bytes,
            } => {
                let views = views.clone();
                tokio::task::spawn_blocking(move || views.scan(view, &start, max_bytes))
                    .await
                    .unwrap_or_else(|e| Err(KvError::Storage(format!("view scan failed: {e}"))))
            }
            KvOp::CloseView { view } => {
                views.close(view);
                Ok(KvResponse::ViewClosed)
            }
            KvOp::RenewViews { views: ids } => Ok(KvResponse::ViewsRenewed {
                missing: views.renew(&ids),
            }),
            _ => {
                let (reply, rx) = oneshot::channel();
                match submit(tx, StoreMsg::Kv { req, reply }) {
                    Ok(()) => wait(rx, timeout).await,
                    Err(e) => Err(e),
                }
            }
        },
    };
    let op = need.request;
    metrics.request(op, result.as_ref().map(|_| ()), started.elapsed());
    result
}

async fn serve_admin(
    tx: &mpsc::Sender<StoreMsg>,
    metrics: &crate::metrics::Metrics,
    timeout: Duration,
    from: &Identity,
    body: &[u8],
    data_dir: PathBuf,
    faults: Option<&FaultHooks>,
) -> AdminResult {
    let req: AdminRequest = api::decode("admin request", body)?;
    let need = permission::admin(&req);
    if let Err(refused) = permission::check(from, need) {
        info!(%from, request = need.request, "refused: the certificate's role does not allow it");
        metrics.admin_refused(need.request);
        return Err(refused);
    }
    match (&req, faults) {
        (AdminRequest::SetFaults(_) | AdminRequest::ClearFaults, None) => {
            return Err(KvError::FaultInjection {
                reason: "this store's configuration has `fault-injection: false`".into(),
            });
        }
        (AdminRequest::SetFaults(spec), Some(hooks)) => return hooks.set(spec),
        (AdminRequest::ClearFaults, Some(hooks)) => return hooks.clear(),
        _ => {}
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;
    use tinykv_proto::api::{KvOp, KvResponse, ReadMode};
    use tinykv_proto::fault::NetworkFault;
    use tinykv_transport::Role;

    fn client(role: Role) -> Identity {
        Identity::Client {
            name: "app".into(),
            role,
        }
    }

    #[tokio::test]
    async fn a_refused_request_never_reaches_the_loop_and_is_counted() {
        let (tx, mut rx) = mpsc::channel(4);
        let metrics = Metrics::new(None);
        let put = api::encode(&KvRequest {
            region_id: 1,
            epoch: None,
            op: KvOp::Put {
                key: Bytes::from_static(b"k"),
                value: Bytes::from_static(b"v"),
            },
        });
        let err = serve_kv(
            &tx,
            &metrics,
            &Arc::new(ReadViews::new()),
            Duration::from_secs(1),
            &client(Role::ReadOnly),
            &put,
        )
        .await
        .unwrap_err();
        assert!(
            matches!(&err, KvError::PermissionDenied { needed, had, .. } if needed == "readwrite" && had == "readonly"),
            "{err:?}"
        );
        // A fault request from a non-admin is refused for its role, whether or not the store
        // injects faults.
        let faults = api::encode(&AdminRequest::ClearFaults);
        let err = serve_admin(
            &tx,
            &metrics,
            Duration::from_secs(1),
            &client(Role::ReadWrite),
            &faults,
            PathBuf::new(),
            None,
        )
        .await
        .unwrap_err();
        assert!(
            matches!(&err, KvError::PermissionDenied { request, .. } if request == "clear_faults"),
            "{err:?}"
        );
        assert!(rx.try_recv().is_err());
        let text = metrics.encode();
        assert!(
            text.contains(r#"tinykv_requests_total{op="put",outcome="permission_denied"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"tinykv_admin_requests_refused_total{request="clear_faults"} 1"#),
            "{text}"
        );

        // What the role allows goes on to the loop.
        let get = api::encode(&KvRequest {
            region_id: 1,
            epoch: None,
            op: KvOp::Get {
                key: Bytes::from_static(b"k"),
                read: ReadMode::Stale,
            },
        });
        let reader = client(Role::ReadOnly);
        let views = Arc::new(ReadViews::new());
        let serve = serve_kv(&tx, &metrics, &views, Duration::from_secs(5), &reader, &get);
        let answer = async {
            match rx.recv().await {
                Some(StoreMsg::Kv { reply, .. }) => {
                    let _ = reply.send(Ok(KvResponse::Value(None)));
                }
                _ => panic!("the read did not reach the loop"),
            }
        };
        let (result, ()) = tokio::join!(serve, answer);
        assert_eq!(result, Ok(KvResponse::Value(None)));
    }

    #[tokio::test]
    async fn a_store_without_fault_injection_refuses_faults_naming_the_key() {
        let (tx, mut rx) = mpsc::channel(4);
        for req in [
            AdminRequest::SetFaults(FaultSpec {
                network: vec![NetworkFault::block(&[2])],
                ..FaultSpec::default()
            }),
            AdminRequest::ClearFaults,
        ] {
            let body = api::encode(&req);
            let err = serve_admin(
                &tx,
                &Metrics::new(None),
                Duration::from_secs(1),
                &Identity::Store(2),
                &body,
                PathBuf::new(),
                None,
            )
            .await
            .unwrap_err();
            assert!(matches!(err, KvError::FaultInjection { .. }), "{err:?}");
            assert!(err.to_string().contains("fault-injection"), "{err}");
        }
        // Refused before reaching the raft loop.
        assert!(rx.try_recv().is_err());
    }

    #[tokio::test]
    async fn an_invalid_fault_is_refused_and_changes_nothing() {
        let (tx, _rx) = mpsc::channel(4);
        let hooks = FaultHooks {
            endpoint: Weak::new(),
            sync_delay: SyncDelay::default(),
            snapshot_delay: SyncDelay::default(),
        };
        let spec = FaultSpec {
            network: vec![NetworkFault::drop_ppm(&[1], 2_000_000)],
            sync_delay: Duration::from_millis(50),
            snapshot_delay: Duration::from_secs(1),
        };
        let body = api::encode(&AdminRequest::SetFaults(spec));
        let err = serve_admin(
            &tx,
            &Metrics::new(None),
            Duration::from_secs(1),
            &Identity::Store(2),
            &body,
            PathBuf::new(),
            Some(&hooks),
        )
        .await
        .unwrap_err();
        assert!(err.to_string().contains("parts per million"), "{err}");
        assert_eq!(hooks.sync_delay.get(), Duration::ZERO);
        assert_eq!(hooks.snapshot_delay.get(), Duration::ZERO);
    }
}
