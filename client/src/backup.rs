//! Backing a cluster up: every region's data at one point in time per region, written to a
//! backup file ([`crate::backup_file`]).
//!
//! First a view is opened on every region, left to right, each by its leader after a ReadIndex
//! round (so it holds every write acknowledged before it was opened) and each starting where
//! the previous one ended, so the views tile the key space however regions split meanwhile.
//! Opening them all takes one round trip per region; only then are they read, a chunk at a
//! time, from the stores that hold them. The backup's points in time therefore all lie in the
//! short window of the first phase, not spread over the whole copy.

use std::collections::BTreeMap;
use std::io::{Seek, Write};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tinykv_proto::api::{self, KvError, KvOp, KvRequest, KvResponse, KvResult, VIEW_IDLE_SECS};
use tinykv_transport::Service;
use tokio::time::Instant;

use crate::backup_file::{BackupHeader, BackupWriter, RegionPoint};
use crate::client::Client;
use crate::error::{ClientError, rpc_error};
use crate::retry::backoff;
use crate::sync::lock;

/// Bytes of keys and values asked for per chunk.
const CHUNK_BYTES: u32 = 1 << 20;

/// How often the views not read yet are renewed: well within the time an idle view stays
/// open.
const RENEW_EVERY: Duration = Duration::from_secs(VIEW_IDLE_SECS / 4);

/// How far a backup got.
#[derive(Clone, Debug, Default)]
pub struct BackupProgress {
    pub regions: u64,
    pub regions_done: u64,
    pub keys: u64,
    pub data_bytes: u64,
}

/// A view opened on a region, and the store that holds it.
struct OpenedView {
    view: u64,
    addr: SocketAddr,
    point: RegionPoint,
}

impl Client {
    /// Writes every key of the cluster to `out` as a backup file and returns its header and
    /// `out` (for the caller to sync). `written_by` names the program in the header (its
    /// version, say); `progress` hears after every chunk.
    pub async fn backup<W: Write + Seek>(
        &self,
        out: W,
        written_by: &str,
        mut progress: impl FnMut(&BackupProgress),
    ) -> Result<(BackupHeader, W), ClientError> {
        let cluster_id = self.refresh().await?.cluster_id;
        let started_ms = unix_ms();
        let mut writer = BackupWriter::new(out)?;
        let views = self.open_views().await?;
        let opened_ms = unix_ms();
        let result = self.read_views(&views, &mut writer, &mut progress).await;
        if result.is_err() {
            // Leave nothing open behind a failed backup (each view read is closed already).
            for v in &views {
                self.close_view(v).await;
            }
        }
        result?;
        let header = BackupHeader {
            cluster_id,
            written_by: written_by.to_string(),
            started_ms,
            opened_ms,
            finished_ms: unix_ms(),
            regions: 0,
            keys: 0,
            data_bytes: 0,
            body_bytes: 0,
            body_crc32: 0,
        };
        Ok(writer.finish(header)?)
    }

    /// One view per region, tiling the key space left to right.
    async fn open_views(&self) -> Result<Vec<OpenedView>, ClientError> {
        let mut views: Vec<OpenedView> = Vec::new();
        let mut from = Bytes::new();
        loop {
            let op = KvOp::OpenView {
                start: from.clone(),
            };
            let opened = match self.kv_in_region(&from, op).await {
                Ok((
                    KvResponse::ViewOpened {
                        view,
                        region,
                        applied,
                    },
                    _,
                    addr,
                )) => Ok(OpenedView {
                    view,
                    addr,
                    point: RegionPoint {
                        region_id: region.id,
                        epoch: region.epoch,
                        start_key: from.clone(),
                        end_key: Bytes::from(region.end_key),
                        applied,
                        store_id: self.store_at(addr),
                    },
                }),
                Ok((other, ..)) => Err(self.unexpected(other)),
                Err(e) => Err(e),
            };
            let opened = match opened {
                Ok(v) => v,
                Err(e) => {
                    // Leave nothing open behind a failed backup (they would close when idle).
                    for v in &views {
                        self.close_view(v).await;
                    }
                    return Err(e);
                }
            };
            let end = opened.point.end_key.clone();
            views.push(opened);
            if end.is_empty() {
                return Ok(views);
            }
            from = end;
        }
    }

    /// Reads every view in order, closing each once read. Meanwhile the views not read yet
    /// are renewed every `RENEW_EVERY`: a long backup reaches the last regions long after it
    /// opened their views, and an idle view closes.
    async fn read_views<W: Write + Seek>(
        &self,
        views: &[OpenedView],
        writer: &mut BackupWriter<W>,
        progress: &mut impl FnMut(&BackupProgress),
    ) -> Result<(), ClientError> {
        let unread: Arc<Mutex<Vec<(SocketAddr, u64, u64)>>> = Arc::new(Mutex::new(
            views
                .iter()
                .map(|v| (v.addr, v.point.region_id, v.view))
                .collect(),
        ));
        let renewer = {
            let client = self.clone();
            let unread = unread.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(RENEW_EVERY).await;
                    let mut by_store: BTreeMap<SocketAddr, (u64, Vec<u64>)> = BTreeMap::new();
                    for (addr, region_id, view) in lock(&unread).iter() {
                        by_store
                            .entry(*addr)
                            .or_insert_with(|| (*region_id, Vec::new()))
                            .1
                            .push(*view);
                    }
                    for (addr, (region_id, ids)) in by_store {
                        // A view found closed fails its read later, which says so.
                        let _ = client
                            .view_call(addr, region_id, KvOp::RenewViews { views: ids })
                            .await;
                    }
                }
            })
        };
        let result = self.read_each(views, writer, progress, &unread).await;
        renewer.abort();
        result
    }

    async fn read_each<W: Write + Seek>(
        &self,
        views: &[OpenedView],
        writer: &mut BackupWriter<W>,
        progress: &mut impl FnMut(&BackupProgress),
        unread: &Mutex<Vec<(SocketAddr, u64, u64)>>,
    ) -> Result<(), ClientError> {
        let mut done = BackupProgress {
            regions: views.len() as u64,
            ..BackupProgress::default()
        };
        for v in views {
            writer.region(v.point.clone())?;
            let mut from = v.point.start_key.clone();
            loop {
                let op = KvOp::ViewScan {
                    view: v.view,
                    from: from.clone(),
                    max_bytes: CHUNK_BYTES,
                };
                let (pairs, more) = match self.view_call(v.addr, v.point.region_id, op).await? {
                    KvResponse::Pairs { pairs, more } => (pairs, more),
                    other => return Err(self.unexpected(other)),
                };
                if let Some((last, _)) = pairs.last() {
                    let mut next = last.to_vec();
                    next.push(0);
                    from = Bytes::from(next);
                }
                writer.pairs(pairs)?;
                done.keys = writer.keys();
                done.data_bytes = writer.data_bytes();
                progress(&done);
                if !more {
                    break;
                }
            }
            lock(unread).retain(|(_, _, view)| *view != v.view);
            self.close_view(v).await;
            done.regions_done += 1;
            progress(&done);
        }
        Ok(())
    }

    fn store_at(&self, addr: SocketAddr) -> u64 {
        self.read_route()
            .stores
            .iter()
            .find(|(_, a)| **a == addr)
            .map_or(0, |(s, _)| *s)
    }

    async fn close_view(&self, v: &OpenedView) {
        let _ = self
            .view_call(v.addr, v.point.region_id, KvOp::CloseView { view: v.view })
            .await;
    }

    /// A view request to the store holding the view. Reading a view has no effect, so a lost
    /// connection or a busy store is tried again until the timeout.
    async fn view_call(
        &self,
        addr: SocketAddr,
        region_id: u64,
        op: KvOp,
    ) -> Result<KvResponse, ClientError> {
        let deadline = Instant::now() + self.timeout();
        let body = api::encode(&KvRequest {
            region_id,
            epoch: None,
            op,
        });
        let mut attempt = 0;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            let last_error = match self
                .connections()
                .call(addr, Service::Client, body.clone(), remaining)
                .await
            {
                Ok(answer) => {
                    let result: KvResult =
                        api::decode("kv answer", &answer).map_err(|e| ClientError::Protocol {
                            addr,
                            detail: e.to_string(),
                        })?;
                    match result {
                        Ok(resp) => return Ok(resp),
                        Err(KvError::ServerBusy) => ClientError::Kv(KvError::ServerBusy),
                        Err(e) => return Err(ClientError::Kv(e)),
                    }
                }
                Err(e) if e.is_tls_refused() => return Err(rpc_error(addr, e, false)),
                Err(e) => rpc_error(addr, e, false),
            };
            attempt += 1;
            if backoff(attempt, deadline).await.is_none() {
                return Err(last_error);
            }
        }
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
