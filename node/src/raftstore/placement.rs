//! The placement driver on this store: started when this store's peer of region 1 leads, with
//! the record region 1 keeps, stopped when it does not; its heartbeats and operators'
//! requests answered here; the record changes it decides proposed to region 1, counting only
//! once they applied; its pool of peer ids refilled from the allocator region 1 keeps.

use tinykv_proto::api::{AdminResponse, AdminResult, KvError};
use tinykv_proto::placement::{DriverId, Heartbeat, PlacementAnswer, PlacementRequest};
use tinykv_storage::{CLUSTER_REGION_ID, PlacementRecord};
use tokio::sync::oneshot;
use tracing::{info, warn};

use super::msg::StoreMsg;
use super::store::Store;
use crate::cmd::{CmdBody, RaftCmd};
use crate::placement_host::{ID_BATCH, PlacementHost};
use crate::reply::Reply;

impl Store {
    /// Starts or stops the driver as this store's leadership of region 1 goes, and lets a
    /// running one act.
    pub(super) fn drive_placement(&mut self) {
        if !self.config.placement.enabled {
            return;
        }
        let term = self
            .peers
            .get(&CLUSTER_REGION_ID)
            .filter(|p| p.is_leader())
            .map(|p| p.raw.raft().term());
        let running = self.placement.as_ref().map(|h| h.id().term);
        if running.is_some() && running != term {
            info!("placement driver stopped: this store no longer leads region 1");
            self.placement = None;
        }
        if let (Some(term), None) = (term, &self.placement) {
            let record = match self.engines.placement_record() {
                Ok(r) => r.unwrap_or_default(),
                Err(e) => {
                    warn!(error = %e, "cannot read the placement record; driver not started");
                    return;
                }
            };
            let id = DriverId {
                store_id: self.store_id,
                term,
            };
            self.placement = Some(PlacementHost::new(
                id,
                &self.config.placement,
                record,
                &self.directory,
            ));
        }
        let Some(host) = self.placement.as_mut() else {
            return;
        };
        if let Some(record) = host.tick() {
            self.propose_placement_record(record, None);
        }
        let Some(host) = self.placement.as_mut() else {
            return;
        };
        if host.wants_ids() {
            host.asking_ids = true;
            let (reply, answer) = oneshot::channel();
            self.alloc_ids(ID_BATCH, reply);
            let tx = self.splits.tx.clone();
            self.background.spawn(async move {
                let ids = match answer.await {
                    Ok(Ok(AdminResponse::Ids { first, count })) => Some((first, count)),
                    _ => None,
                };
                let _ = tx.send(StoreMsg::PlacementIds(ids)).await;
            });
        }
    }

    pub(super) fn on_placement_ids(&mut self, ids: Option<(u64, u32)>) {
        if let Some(host) = self.placement.as_mut() {
            match ids {
                Some((first, count)) => host.add_ids(first, count),
                None => host.asking_ids = false,
            }
        }
    }

    /// Region 1 applied a new record: the driver, if it runs here, goes by it from now on.
    pub(super) fn on_placement_record_applied(&mut self, record: PlacementRecord) {
        if let Some(host) = self.placement.as_mut() {
            host.load_record(record);
        }
    }

    /// The running driver, or why there is none here.
    fn driver(&mut self) -> Result<&mut PlacementHost, KvError> {
        if !self.config.placement.enabled {
            return Err(KvError::BadRequest(format!(
                "the placement driver is off (placement.enabled is false on store {})",
                self.store_id
            )));
        }
        self.leader_peer(CLUSTER_REGION_ID)?;
        // Leading, but the driver starts at the next round.
        self.placement.as_mut().ok_or(KvError::ServerBusy)
    }

    pub(super) fn on_placement_heartbeat(&mut self, hb: Heartbeat) -> AdminResult {
        let host = self.driver()?;
        Ok(AdminResponse::HeartbeatAnswer(host.on_heartbeat(hb)))
    }

    pub(super) fn on_placement_request(
        &mut self,
        req: PlacementRequest,
        reply: oneshot::Sender<AdminResult>,
    ) {
        let host = match self.driver() {
            Ok(h) => h,
            Err(e) => {
                let _ = reply.send(Err(e));
                return;
            }
        };
        let answer = match req {
            PlacementRequest::Status => Ok(PlacementAnswer::Status(host.status())),
            PlacementRequest::Stores => Ok(PlacementAnswer::Stores(host.stores())),
            PlacementRequest::Operators => Ok(PlacementAnswer::Operators(host.operators())),
            PlacementRequest::Schedulers => Ok(PlacementAnswer::Schedulers(host.schedulers())),
            PlacementRequest::AddOperator(spec) => host.add_operator(spec),
            PlacementRequest::RemoveOperator { region_id } => host.remove_operator(region_id),
            PlacementRequest::Locate { key } => Ok(PlacementAnswer::Located(host.locate(&key))),
            PlacementRequest::Regions => Ok(PlacementAnswer::Regions(host.regions())),
            // The rest change the record: answered once region 1 applied the new one.
            PlacementRequest::DeleteStore { store_id } => {
                let record = host.retire_store(store_id);
                return self.propose_or_refuse(record, reply);
            }
            PlacementRequest::PauseScheduler { name } => {
                let record = host.set_paused(&name, true);
                return self.propose_or_refuse(record, reply);
            }
            PlacementRequest::ResumeScheduler { name } => {
                let record = host.set_paused(&name, false);
                return self.propose_or_refuse(record, reply);
            }
        };
        let _ = reply.send(answer.map(AdminResponse::Placement));
    }

    fn propose_or_refuse(
        &mut self,
        record: Result<PlacementRecord, KvError>,
        reply: oneshot::Sender<AdminResult>,
    ) {
        match record {
            Ok(record) => self.propose_placement_record(record, Some(reply)),
            Err(e) => {
                let _ = reply.send(Err(e));
            }
        }
    }

    /// Proposes `record` to region 1; `reply`, if given, is answered once it applied.
    fn propose_placement_record(
        &mut self,
        record: PlacementRecord,
        reply: Option<oneshot::Sender<AdminResult>>,
    ) {
        let peer = match self.leader_peer(CLUSTER_REGION_ID) {
            Ok(p) => p,
            Err(e) => {
                if let Some(r) = reply {
                    let _ = r.send(Err(e));
                }
                return;
            }
        };
        let cmd = RaftCmd {
            region_id: CLUSTER_REGION_ID,
            epoch: peer.region().epoch,
            body: CmdBody::Placement(record),
        };
        match reply {
            Some(r) => {
                // Applying the record answers `Done`; the asker hears it as recorded.
                let (applied, answer) = oneshot::channel();
                peer.propose_cmd(cmd, Reply::Admin(applied));
                self.background.spawn(async move {
                    let result = match answer.await {
                        Ok(Ok(_)) => Ok(AdminResponse::Placement(PlacementAnswer::Recorded)),
                        Ok(Err(e)) => Err(e),
                        Err(_) => Err(KvError::OutcomeUnknown {
                            region_id: CLUSTER_REGION_ID,
                            reason: "the store stopped before the record applied".into(),
                        }),
                    };
                    let _ = r.send(result);
                });
            }
            None => {
                if let Err(e) = peer.raw.propose(cmd.encode()) {
                    warn!(error = %e, "placement record not proposed; proposed again next round");
                } else {
                    peer.proposed.inc();
                }
            }
        }
    }
}
