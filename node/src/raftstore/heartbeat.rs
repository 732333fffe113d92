//! This store's heartbeats to the placement driver, and the steps it answers with. About once
//! a second the store reports itself when its interval is due, and every region it leads
//! whose report changed (epoch, leader, lagging or silent peers), was given a step last time,
//! or has not been reported for the region interval. One heartbeat is in flight at a time;
//! a store that leads region 1 hands it to its own driver without the network. A step is
//! carried out only by the region's leader at the epoch the step names, through the same
//! paths as an operator's requests, so a step repeated (a lost answer, a new driver) changes
//! nothing twice.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use tinykv_client::Client;
use tinykv_proto::api::{AdminRequest, KvError};
use tinykv_proto::placement::{
    DriverId, Heartbeat, HeartbeatAnswer, RegionReport, StepDesc, StepOrder, StoreReport,
};
use tinykv_proto::region::RegionEpoch;
use tokio::sync::oneshot;
use tracing::{debug, info};

use super::disk_space::fs_space;
use super::msg::StoreMsg;
use super::store::Store;
use crate::peer::Peer;

/// What a region's report said, to tell when it changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ReportKey {
    epoch: RegionEpoch,
    leader: u64,
    pending: Vec<u64>,
    down: Vec<u64>,
}

/// The reports a heartbeat carried: recorded as sent once the driver answers.
#[derive(Debug, Default)]
pub(crate) struct SentReports {
    regions: Vec<(u64, ReportKey)>,
    store: bool,
}

#[derive(Default)]
pub(crate) struct PlacementReporter {
    sent: HashMap<u64, (ReportKey, Instant)>,
    /// Regions given a step by the last answer: reported again next round, so the driver
    /// sees the step's effect (or sends it again) without waiting for the interval.
    ordered: BTreeSet<u64>,
    driver: Option<DriverId>,
    in_flight: bool,
    last_store_report: Option<Instant>,
}

fn report_key(peer: &Peer, window: Duration) -> ReportKey {
    ReportKey {
        epoch: peer.region().epoch,
        leader: peer.meta.id,
        pending: peer.pending_peers(),
        down: peer.down_peers(window),
    }
}

impl Store {
    /// Sends the heartbeat that is due, if one is and none is in flight. A `full` round (about
    /// a second apart) looks at every region this store leads; the rounds between look only at
    /// the regions given a step, so an operator's next step follows its last within a fifth
    /// of a second, at a cost proportional to the operators running.
    pub(super) fn report_to_placement(&mut self, full: bool) {
        if !self.config.placement.enabled || self.reporter.in_flight {
            return;
        }
        if !full && self.reporter.ordered.is_empty() {
            return;
        }
        let now = Instant::now();
        let region_every = self.config.placement.region_heartbeat_interval.0;
        let store_every = self.config.placement.store_heartbeat_interval.0;
        let window = self.alive_window();
        let mut regions = Vec::new();
        let mut sent = SentReports::default();
        let candidates: Vec<u64> = if full {
            self.peers.keys().copied().collect()
        } else {
            self.reporter.ordered.iter().copied().collect()
        };
        for region_id in &candidates {
            let Some(peer) = self.peers.get(region_id) else {
                continue;
            };
            if !peer.is_leader() || !peer.raw.store().is_initialized() {
                continue;
            }
            let key = report_key(peer, window);
            let due = match self.reporter.sent.get(region_id) {
                None => true,
                Some((last, at)) => {
                    *last != key
                        || now.duration_since(*at) >= region_every
                        || self.reporter.ordered.contains(region_id)
                }
            };
            if !due {
                continue;
            }
            let (size, keys) = peer.approximate.unwrap_or((0, 0));
            regions.push(RegionReport {
                region: peer.region().clone(),
                leader: peer.meta.id,
                term: peer.raw.raft().term(),
                pending_peers: key.pending.clone(),
                down_peers: key.down.clone(),
                approximate_size: size,
                approximate_keys: keys,
            });
            sent.regions.push((*region_id, key));
        }
        sent.store = full
            && self
                .reporter
                .last_store_report
                .is_none_or(|at| now.duration_since(at) >= store_every);
        if regions.is_empty() && !sent.store {
            return;
        }
        let space = fs_space(&self.config.data_dir).ok();
        let hb = Heartbeat {
            store: StoreReport {
                store_id: self.store_id,
                addr: self.addr.to_string(),
                capacity: space.as_ref().map_or(0, |s| s.total),
                available: space.as_ref().map_or(0, |s| s.available),
            },
            regions,
        };
        self.reporter.ordered.clear();
        if let Some(host) = self.placement.as_mut() {
            let answer = host.on_heartbeat(hb);
            self.on_placement_answer(Ok(answer), sent);
            return;
        }
        self.reporter.in_flight = true;
        let client = self.splits.ids.clone();
        let config = self.splits.client_config.clone();
        let tx = self.splits.tx.clone();
        self.background.spawn(async move {
            let answer = async {
                let client = client
                    .get_or_try_init(|| Client::connect(config))
                    .await
                    .map_err(|e| e.to_string())?;
                client
                    .placement_heartbeat(hb)
                    .await
                    .map_err(|e| e.to_string())
            }
            .await;
            let _ = tx.send(StoreMsg::PlacementAnswered { answer, sent }).await;
        });
    }

    /// Records what the driver took and carries out the steps it ordered.
    pub(super) fn on_placement_answer(
        &mut self,
        answer: Result<HeartbeatAnswer, String>,
        sent: SentReports,
    ) {
        self.reporter.in_flight = false;
        let answer = match answer {
            Ok(a) => a,
            Err(reason) => {
                debug!(%reason, "placement heartbeat not answered; sent again next round");
                return;
            }
        };
        let now = Instant::now();
        if self.reporter.driver != Some(answer.driver) {
            // A new driver knows no region yet: report every one this store leads.
            info!(
                driver_store = answer.driver.store_id,
                term = answer.driver.term,
                "reporting to a new placement driver"
            );
            self.reporter.driver = Some(answer.driver);
            self.reporter.sent.clear();
        } else {
            for (region_id, key) in sent.regions {
                self.reporter.sent.insert(region_id, (key, now));
            }
        }
        if sent.store {
            self.reporter.last_store_report = Some(now);
        }
        for refused in &answer.refused {
            debug!(
                region = refused.region_id,
                reason = %refused.reason,
                "placement driver refused a report"
            );
        }
        for order in answer.orders {
            self.reporter.ordered.insert(order.region_id);
            self.carry_out(order);
        }
        // Forget regions this store no longer leads, so a later leadership reports afresh.
        let peers = &self.peers;
        self.reporter
            .sent
            .retain(|id, _| peers.get(id).is_some_and(Peer::is_leader));
    }

    /// One step, if this store still leads the region at the step's epoch and nothing else
    /// changes the region meanwhile. Its answer is not awaited: the region's next report
    /// shows whether it took effect.
    fn carry_out(&mut self, order: StepOrder) {
        let region_id = order.region_id;
        let Some(peer) = self.peers.get(&region_id) else {
            return;
        };
        if !peer.is_leader() || peer.region().epoch != order.epoch || peer.epoch_change_in_flight()
        {
            debug!(
                region = region_id,
                operator = order.operator_id,
                "step not for now"
            );
            return;
        }
        info!(
            region = region_id,
            operator = order.operator_id,
            step = %order.step,
            "carrying out a placement step"
        );
        let req = match order.step {
            StepDesc::AddLearner {
                store_id,
                peer_id,
                addr,
            } => AdminRequest::AddLearner {
                region_id,
                store_id,
                peer_id,
                addr,
            },
            StepDesc::PromoteLearner { store_id, .. } => AdminRequest::PromoteLearner {
                region_id,
                store_id,
            },
            StepDesc::RemovePeer { store_id } => AdminRequest::RemovePeer {
                region_id,
                store_id,
            },
            StepDesc::TransferLeader { to_store, .. } => AdminRequest::TransferLeader {
                region_id,
                to_store,
            },
        };
        let (reply, answer) = oneshot::channel();
        self.all_active = true;
        self.on_admin(req, reply);
        self.background.spawn(async move {
            if let Ok(Err(e)) = answer.await
                && !matches!(e, KvError::ServerBusy)
            {
                debug!(region = region_id, error = %e, "placement step refused");
            }
        });
    }
}
