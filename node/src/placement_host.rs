//! The placement driver as region 1's leader runs it: the pure `PlacementDriver` with a clock,
//! a pool of peer ids drawn from the cluster's allocator, the replicated record of what must
//! outlive this leader (retired stores, paused schedulers), and the translation between the
//! driver's types and the messages stores and operators send. Holds no Raft state: the store
//! creates a host when its peer of region 1 becomes leader and drops it when it stops being
//! one, and proposes the record changes the host asks for.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use tinykv_placement::{
    Dispatch, Instruction, OperatorKind, OperatorOutcome, PeerIdSource, PlacementDriver,
    RegionMeta, SchedulerKind, Settings, Step, StoreInfo, StoreState, StoreStats, builder,
};
use tinykv_proto::api::{KvError, StoreAddr};
use tinykv_proto::placement::{
    DriverId, DriverStatus, Heartbeat, HeartbeatAnswer, OperatorDesc, OperatorSpec,
    PlacementAnswer, RefusedReport, RegionDesc, RegionReport, Route, SchedulerDesc, StepDesc,
    StepOrder, StoreDesc,
};
use tinykv_storage::{PlacementRecord, RetiredStore};
use tracing::{info, warn};

use crate::config::PlacementConfig;

/// Ids the host keeps in hand; it asks for more below this.
const ID_LOW_WATER: u64 = 64;
/// The size the driver counts a region at when it holds less (or was not measured yet), as
/// PD does: balance is by data, and regions with none must still spread over the stores.
const EMPTY_REGION_SIZE: u64 = 1024 * 1024;
/// How often a store considers reporting (its loop's round of housekeeping).
pub(crate) const REPORT_ROUND_MS: u64 = 1_000;
/// Scheduling passes per round.
const SCHEDULE_PASSES: usize = 8;
/// Ids asked for at a time.
pub(crate) const ID_BATCH: u32 = 256;

/// The schedulers by the names operators use.
const SCHEDULERS: [(SchedulerKind, &str); 3] = [
    (SchedulerKind::ReplicaChecker, "replica-checker"),
    (SchedulerKind::BalanceLeader, "balance-leader"),
    (SchedulerKind::BalanceRegion, "balance-region"),
];

pub(crate) fn scheduler_kind(name: &str) -> Result<SchedulerKind, KvError> {
    SCHEDULERS
        .iter()
        .find(|(_, n)| *n == name)
        .map(|(k, _)| *k)
        .ok_or_else(|| {
            let names: Vec<&str> = SCHEDULERS.iter().map(|(_, n)| *n).collect();
            KvError::BadRequest(format!(
                "no scheduler named {name:?}; there are {}",
                names.join(", ")
            ))
        })
}

fn scheduler_name(kind: SchedulerKind) -> &'static str {
    SCHEDULERS
        .iter()
        .find(|(k, _)| *k == kind)
        .map_or("unknown", |(_, n)| *n)
}

pub(crate) fn settings_from(config: &PlacementConfig) -> Settings {
    let down = config.max_store_down_time.0.as_millis() as u64;
    // Stores report at most once a round (about a second), whatever the interval says.
    let heartbeat = (config.store_heartbeat_interval.0.as_millis() as u64).max(REPORT_ROUND_MS);
    Settings {
        max_replicas: config.max_replicas,
        max_store_down_time_ms: down,
        // A store that missed three heartbeats gets no new work, though not Down yet.
        store_heartbeat_window_ms: (3 * heartbeat).min(down),
        leader_moves_per_store: config.leader_moves_per_store,
        region_moves_per_store: config.region_moves_per_store,
        // Its leader runs the driver: moving it for balance would restart the driver.
        balance_exempt: [tinykv_storage::CLUSTER_REGION_ID].into(),
        ..Settings::default()
    }
}

pub(crate) struct PlacementHost {
    driver: PlacementDriver,
    id: DriverId,
    origin: Instant,
    /// Nothing is scheduled and no store changes state before this many milliseconds: the
    /// driver first hears every store and, through them, every region.
    warm_up_ms: u64,
    /// Peer ids in hand: `next .. end`.
    next_id: u64,
    end_id: u64,
    pub(crate) asking_ids: bool,
    record: PlacementRecord,
    /// The record `tick` last asked to propose: not asked again until one applies.
    proposing: Option<PlacementRecord>,
    /// The latest leader term reported for each region.
    terms: HashMap<u64, u64>,
}

impl PlacementHost {
    /// A driver for `id`'s term, with the record as this store applied it and the stores this
    /// store knows of (their addresses), each given a full down time before it counts as Down.
    pub(crate) fn new(
        id: DriverId,
        config: &PlacementConfig,
        record: PlacementRecord,
        known_stores: &BTreeMap<u64, String>,
    ) -> PlacementHost {
        let mut driver = PlacementDriver::new(settings_from(config));
        // Operator ids of earlier terms stay below this term's.
        driver.continue_operator_ids_after(id.term << 32);
        for (store_id, addr) in known_stores {
            driver.restore_store(*store_id, addr, StoreState::Up, 0);
        }
        let warm_up = 2 * config.store_heartbeat_interval.0 + Duration::from_secs(1);
        let mut host = PlacementHost {
            driver,
            id,
            origin: Instant::now(),
            warm_up_ms: warm_up.as_millis() as u64,
            next_id: 0,
            end_id: 0,
            asking_ids: false,
            record: PlacementRecord::default(),
            proposing: None,
            terms: HashMap::new(),
        };
        host.load_record(record);
        info!(
            store = id.store_id,
            term = id.term,
            "placement driver started"
        );
        host
    }

    pub(crate) fn id(&self) -> DriverId {
        self.id
    }

    fn now_ms(&self) -> u64 {
        self.origin.elapsed().as_millis() as u64
    }

    fn warm(&self) -> bool {
        self.now_ms() >= self.warm_up_ms
    }

    /// Takes a record region 1 applied: retirements and pauses now count.
    pub(crate) fn load_record(&mut self, record: PlacementRecord) {
        let now = self.now_ms();
        for retired in &record.retired {
            let state = if retired.tombstone {
                StoreState::Tombstone
            } else {
                StoreState::Offline
            };
            self.driver.restore_store(retired.store_id, "", state, now);
        }
        let settings = &mut self.driver.settings;
        for (kind, name) in SCHEDULERS {
            if record.paused.iter().any(|p| p == name) {
                settings.pause(kind);
            } else {
                settings.resume(kind);
            }
        }
        self.record = record;
        self.proposing = None;
    }

    /// Whether the pool needs refilling (and nobody asked yet).
    pub(crate) fn wants_ids(&self) -> bool {
        !self.asking_ids && self.end_id.saturating_sub(self.next_id) < ID_LOW_WATER
    }

    pub(crate) fn add_ids(&mut self, first: u64, count: u32) {
        self.asking_ids = false;
        self.next_id = first;
        self.end_id = first.saturating_add(u64::from(count));
    }

    fn take_id(&mut self) -> Option<u64> {
        (self.next_id < self.end_id).then(|| {
            self.next_id += 1;
            self.next_id - 1
        })
    }

    /// A store's heartbeat: its report, then each region's, answered with the steps for the
    /// regions that have one.
    pub(crate) fn on_heartbeat(&mut self, hb: Heartbeat) -> HeartbeatAnswer {
        let now = self.now_ms();
        let mut answer = HeartbeatAnswer {
            driver: self.id,
            ..HeartbeatAnswer::default()
        };
        let store_id = hb.store.store_id;
        let stats = StoreStats {
            store_id,
            addr: hb.store.addr,
            capacity: hb.store.capacity,
            available: hb.store.available,
        };
        if let Err(e) = self.driver.store_heartbeat(stats, now) {
            answer.refused.push(RefusedReport {
                region_id: 0,
                reason: e.to_string(),
            });
            return answer;
        }
        for report in hb.regions {
            let region_id = report.region.id;
            let known = self.terms.get(&region_id).copied().unwrap_or(0);
            if report.term < known {
                answer.refused.push(RefusedReport {
                    region_id,
                    reason: format!(
                        "reported by a leader of term {}, the region has one of term {known}",
                        report.term
                    ),
                });
                continue;
            }
            self.terms.insert(region_id, report.term);
            match self.driver.region_heartbeat(region_meta(report), now) {
                Ok(dispatch) => {
                    self.log_dispatch(&dispatch);
                    if let Some(order) = dispatch.instruction.and_then(|i| self.order(i)) {
                        answer.orders.push(order);
                    }
                }
                Err(e) => answer.refused.push(RefusedReport {
                    region_id,
                    reason: e.to_string(),
                }),
            }
        }
        answer
    }

    fn log_dispatch(&self, dispatch: &Dispatch) {
        if let Some(event) = dispatch.event {
            match event.outcome {
                OperatorOutcome::Finished => info!(
                    operator = event.operator_id,
                    region = event.region_id,
                    "operator finished"
                ),
                OperatorOutcome::Expired(why) => warn!(
                    operator = event.operator_id,
                    region = event.region_id,
                    ?why,
                    "operator stopped"
                ),
            }
        }
    }

    fn order(&self, i: Instruction) -> Option<StepOrder> {
        let step = match i.step {
            Step::AddLearner { store, peer_id } => StepDesc::AddLearner {
                store_id: store,
                peer_id,
                addr: self.driver.cluster().store(store)?.addr.clone(),
            },
            other => step_desc(other, ""),
        };
        Some(StepOrder {
            operator_id: i.operator_id,
            region_id: i.region_id,
            epoch: i.region_epoch,
            step,
        })
    }

    /// Moves stores along by the clock and runs the schedulers, once warm. Returns the record
    /// to propose when a retired store became a tombstone.
    pub(crate) fn tick(&mut self) -> Option<PlacementRecord> {
        if !self.warm() {
            return None;
        }
        let now = self.now_ms();
        let report = self.driver.tick(now);
        let mut record = self.record.clone();
        for change in &report.store_changes {
            info!(
                store = change.store_id,
                from = change.from.as_str(),
                to = change.to.as_str(),
                "store changed state"
            );
            if change.to == StoreState::Tombstone {
                retire(&mut record, change.store_id, true);
            }
        }
        for event in report.operator_events {
            self.log_dispatch(&Dispatch {
                instruction: None,
                event: Some(event),
            });
        }
        let mut ids = std::mem::take(&mut self.next_id)..self.end_id;
        let mut source = || ids.next();
        // Each pass admits at most one operator per balance scheduler: a few passes let a
        // new store fill at the pace its budget allows rather than one move a second.
        let mut admitted = Vec::new();
        for _ in 0..SCHEDULE_PASSES {
            let more = self
                .driver
                .schedule(now, &mut source as &mut dyn PeerIdSource);
            if more.is_empty() {
                break;
            }
            admitted.extend(more);
        }
        self.next_id = ids.start;
        for op in admitted {
            info!(
                operator = op.id,
                region = op.region_id,
                kind = ?op.kind,
                steps = ?op.steps,
                "operator admitted"
            );
        }
        if record == self.record || self.proposing.as_ref() == Some(&record) {
            return None;
        }
        self.proposing = Some(record.clone());
        Some(record)
    }

    /// The record with `store_id` retired, to propose; the store must be known and not a
    /// tombstone already.
    pub(crate) fn retire_store(&self, store_id: u64) -> Result<PlacementRecord, KvError> {
        match self.driver.cluster().store(store_id) {
            None => Err(KvError::BadRequest(format!(
                "store {store_id} is unknown to the placement driver"
            ))),
            Some(s) if s.state == StoreState::Tombstone => Err(KvError::BadRequest(format!(
                "store {store_id} is a tombstone already"
            ))),
            Some(_) => {
                let mut record = self.record.clone();
                retire(&mut record, store_id, false);
                Ok(record)
            }
        }
    }

    /// The record with `name` paused or resumed, to propose.
    pub(crate) fn set_paused(&self, name: &str, paused: bool) -> Result<PlacementRecord, KvError> {
        let kind = scheduler_kind(name)?;
        let name = scheduler_name(kind).to_string();
        let mut record = self.record.clone();
        record.paused.retain(|p| *p != name);
        if paused {
            record.paused.push(name);
            record.paused.sort();
        }
        Ok(record)
    }

    pub(crate) fn status(&self) -> DriverStatus {
        let cluster = self.driver.cluster();
        DriverStatus {
            driver: self.id,
            uptime_ms: self.now_ms(),
            scheduling: self.warm(),
            stores: cluster.stores().count() as u64,
            regions: cluster.region_count() as u64,
            operators: self.driver.operators().running().count() as u64,
            max_replicas: self.driver.settings.max_replicas as u64,
        }
    }

    pub(crate) fn stores(&self) -> Vec<StoreDesc> {
        let now = self.now_ms();
        self.driver
            .cluster()
            .stores()
            .map(|s| store_desc(s, now))
            .collect()
    }

    /// The region holding `key` as its leader last reported it, and its stores' addresses.
    pub(crate) fn locate(&self, key: &[u8]) -> Option<Route> {
        let cluster = self.driver.cluster();
        let meta = cluster.region_by_key(key)?;
        let stores = meta
            .region
            .peers
            .iter()
            .filter_map(|p| {
                cluster.store(p.store_id).map(|s| StoreAddr {
                    store_id: s.id,
                    addr: s.addr.clone(),
                })
            })
            .collect();
        Some(Route {
            region: self.region_desc(meta),
            stores,
        })
    }

    /// Every region the driver knows, in key order.
    pub(crate) fn regions(&self) -> Vec<RegionDesc> {
        let mut out: Vec<RegionDesc> = self
            .driver
            .cluster()
            .regions()
            .map(|m| self.region_desc(m))
            .collect();
        out.sort_by(|a, b| a.region.start_key.cmp(&b.region.start_key));
        out
    }

    fn region_desc(&self, meta: &RegionMeta) -> RegionDesc {
        let cluster = self.driver.cluster();
        let ids = |peers: &[tinykv_proto::Peer]| peers.iter().map(|p| p.id).collect();
        RegionDesc {
            region: meta.region.clone(),
            leader_store: meta
                .leader
                .and_then(|l| meta.region.peers.iter().find(|p| p.id == l))
                .map(|p| p.store_id),
            pending_peers: ids(&meta.pending_peers),
            down_peers: ids(&meta.down_peers),
            approximate_size: meta.approximate_size,
            approximate_keys: meta.approximate_keys,
            last_heartbeat_ago_ms: cluster
                .region_last_heartbeat_ms(meta.region.id)
                .map_or(0, |at| self.now_ms().saturating_sub(at)),
        }
    }

    pub(crate) fn operators(&self) -> Vec<OperatorDesc> {
        let now = self.now_ms();
        self.driver
            .operators()
            .running()
            .map(|r| OperatorDesc {
                id: r.operator.id,
                region_id: r.operator.region_id,
                kind: match r.operator.kind {
                    OperatorKind::Replica => "replica",
                    OperatorKind::BalanceLeader => "balance-leader",
                    OperatorKind::BalanceRegion => "balance-region",
                    OperatorKind::Admin => "admin",
                }
                .to_string(),
                steps: r
                    .operator
                    .steps
                    .iter()
                    .map(|s| self.describe_step(*s))
                    .collect(),
                next_step: r.next_step as u64,
                age_ms: now.saturating_sub(r.started_ms),
            })
            .collect()
    }

    fn describe_step(&self, step: Step) -> StepDesc {
        let addr = match step {
            Step::AddLearner { store, .. } => self
                .driver
                .cluster()
                .store(store)
                .map_or("", |s| s.addr.as_str()),
            _ => "",
        };
        step_desc(step, addr)
    }

    pub(crate) fn schedulers(&self) -> Vec<SchedulerDesc> {
        SCHEDULERS
            .iter()
            .map(|(kind, name)| SchedulerDesc {
                name: name.to_string(),
                paused: self.driver.settings.is_paused(*kind),
            })
            .collect()
    }

    /// Admits an operator built by hand.
    pub(crate) fn add_operator(&mut self, spec: OperatorSpec) -> Result<PlacementAnswer, KvError> {
        let now = self.now_ms();
        let region_id = match spec {
            OperatorSpec::TransferLeader { region_id, .. }
            | OperatorSpec::MovePeer { region_id, .. } => region_id,
        };
        let Some(meta) = self.driver.cluster().region(region_id).cloned() else {
            return Err(KvError::BadRequest(format!(
                "region {region_id} has not reported to the placement driver yet"
            )));
        };
        let bad = |m: String| Err(KvError::BadRequest(m));
        let operator = match spec {
            OperatorSpec::TransferLeader { to_store, .. } => {
                match meta.region.peer_on_store(to_store) {
                    Some(p) if !p.is_learner() => {}
                    _ => {
                        return bad(format!(
                            "region {region_id} has no voter on store {to_store}"
                        ));
                    }
                }
                builder::transfer_leader(&meta, OperatorKind::Admin, to_store)
            }
            OperatorSpec::MovePeer {
                from_store,
                to_store,
                ..
            } => {
                if !meta.holds_store(from_store) {
                    return bad(format!(
                        "region {region_id} has no peer on store {from_store}"
                    ));
                }
                if meta.holds_store(to_store) {
                    return bad(format!(
                        "region {region_id} has a peer on store {to_store} already"
                    ));
                }
                match self.driver.cluster().store(to_store) {
                    Some(s) if s.state == StoreState::Up => {}
                    Some(s) => {
                        return bad(format!("store {to_store} is {}", s.state.as_str()));
                    }
                    None => return bad(format!("store {to_store} is unknown")),
                }
                let Some(peer_id) = self.take_id() else {
                    return Err(KvError::ServerBusy);
                };
                let mut one = Some(peer_id);
                let mut source = || one.take();
                builder::move_replica(
                    &meta,
                    OperatorKind::Admin,
                    from_store,
                    to_store,
                    &mut source as &mut dyn PeerIdSource,
                )
            }
        };
        let Some(operator) = operator else {
            return bad(format!("region {region_id} has no known leader"));
        };
        match self.driver.add_operator(operator, now) {
            Ok(operator_id) => Ok(PlacementAnswer::OperatorAdded { operator_id }),
            Err(e) => bad(e.to_string()),
        }
    }

    pub(crate) fn remove_operator(&mut self, region_id: u64) -> Result<PlacementAnswer, KvError> {
        let now = self.now_ms();
        match self.driver.cancel_operator(region_id, now) {
            Some(event) => Ok(PlacementAnswer::OperatorRemoved {
                operator_id: event.operator_id,
            }),
            None => Err(KvError::BadRequest(format!(
                "region {region_id} has no operator running"
            ))),
        }
    }
}

fn retire(record: &mut PlacementRecord, store_id: u64, tombstone: bool) {
    match record.retired.iter_mut().find(|r| r.store_id == store_id) {
        Some(r) => r.tombstone |= tombstone,
        None => {
            record.retired.push(RetiredStore {
                store_id,
                tombstone,
            });
            record.retired.sort_by_key(|r| r.store_id);
        }
    }
}

fn region_meta(report: RegionReport) -> RegionMeta {
    let peers = |ids: &[u64]| {
        report
            .region
            .peers
            .iter()
            .copied()
            .filter(|p| ids.contains(&p.id))
            .collect()
    };
    RegionMeta {
        pending_peers: peers(&report.pending_peers),
        down_peers: peers(&report.down_peers),
        leader: Some(report.leader),
        approximate_size: report.approximate_size.max(EMPTY_REGION_SIZE),
        approximate_keys: report.approximate_keys,
        written_bytes: 0,
        region: report.region,
    }
}

fn step_desc(step: Step, addr: &str) -> StepDesc {
    match step {
        Step::AddLearner { store, peer_id } => StepDesc::AddLearner {
            store_id: store,
            peer_id,
            addr: addr.to_string(),
        },
        Step::PromoteLearner { store, peer_id } => StepDesc::PromoteLearner {
            store_id: store,
            peer_id,
        },
        Step::RemovePeer { store } => StepDesc::RemovePeer { store_id: store },
        Step::TransferLeader {
            from_store,
            to_store,
        } => StepDesc::TransferLeader {
            from_store,
            to_store,
        },
    }
}

fn store_desc(s: &StoreInfo, now_ms: u64) -> StoreDesc {
    StoreDesc {
        id: s.id,
        addr: s.addr.clone(),
        state: s.state,
        capacity: s.capacity,
        available: s.available,
        region_count: s.region_count,
        leader_count: s.leader_count,
        region_size: s.region_size,
        pending_peer_count: s.pending_peer_count,
        last_heartbeat_ago_ms: now_ms.saturating_sub(s.last_heartbeat_ms),
    }
}
