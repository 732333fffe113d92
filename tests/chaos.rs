//! Nemesis suite over real processes: five `tinykv node` processes on loopback, five clients
//! doing put, linearizable get, delete and scan over a few keys, and a seeded schedule of
//! faults — `kill -9` and restart (random nodes and the leader), partitions (majority/minority,
//! bridge, isolated leader) through the nodes' fault-injection hook and, where nftables works,
//! by dropping UDP between node ports, SIGSTOP/SIGCONT pauses, a slow fsync, a lossy link, and
//! membership churn: a store (the leader's or another) removed from every region and added
//! back under new peer ids, a store whose data dir is wiped rebuilt by `node leave` and
//! `node join`, and leadership transfers. Regions are small (`region.max-size` 32 B), so
//! regions split on their own all through the run, and the nemesis splits some by hand.
//!
//! Once in a run a store new to the cluster joins (a learner, promoted once caught up). While
//! the faults run, every store's committed Raft log is polled and audited
//! (`support/log_audit.rs`).
//!
//! Afterwards everything is healed, every store is made a voter again, and the run must show:
//! a linearizable history (with a final read of every key), a committed log in which no client
//! write stands twice and no two stores disagree, every store's regions tiling the key space
//! with no gap and no overlap, every region at the same applied index with the same checksum
//! on every store, a bounded Raft log everywhere, and a cluster that still takes writes.
//!
//! With `TINYKV_CHAOS_PLACEMENT=1` the placement driver runs and decides membership: instead of
//! the hand-made churn a store is killed and kept down past `max-store-down-time` (20 s) so
//! the driver replaces its replicas during the faults, a new store joins and is filled by the
//! driver, and at the end every region must have three voters on running stores, its replicas
//! converged (the regions tiling the key space together rather than on every store).
//!
//! `TINYKV_CHAOS_SEED` (default 7) picks the schedule, `TINYKV_CHAOS_SECS` (default 120) how long
//! faults are injected, `TINYKV_CHAOS_LOG` (default `info`) the nodes' log filter. A failing run keeps its directory (seed, fault schedule as executed,
//! history as JSON lines, node logs) and prints it with the command that replays the seed.

mod support;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use support::history::{self, History, Outcome, Request};
use support::log_audit::LogAudit;
use support::nemesis::{
    Cluster, Cut, NftTable, admin_until, cut_between, find_leader, hook_spec_for, store_status,
};
use tinykv_client::{Client, ClientConfig};
use tinykv_proto::api::{AdminRequest, AdminResponse, ReadMode, RegionInfo};
use tinykv_proto::fault::{FaultSpec, NetworkFault};

const NODES: u64 = 5;
const CLIENTS: u64 = 5;
const KEYS: usize = 8;
const DEFAULT_SEED: u64 = 7;
const DEFAULT_SECS: u64 = 120;
/// How long `kill-keep-down` keeps a store down with the placement driver on: past its
/// `max-store-down-time` (5 s shorter), so the driver replaces the store's replicas.
const PLACEMENT_DOWN_HOLD: Duration = Duration::from_secs(25);
/// Low so that log GC and snapshots to lagging stores happen many times in a run.
const GC_COUNT_LIMIT: u64 = 100;
/// What "bounded" means for a settled store's log: compaction keeps at most the limit's worth
/// of applied entries, and the leader checks once per GC tick.
const LOG_BOUND: u64 = 2 * GC_COUNT_LIMIT;
const CLIENT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long the nemesis waits for a re-added store to catch up before promoting it; one that
/// is not promoted by then stays a learner until the end, where it is promoted.
const PROMOTE_WAIT: Duration = Duration::from_secs(10);
/// Caps on waiting for the cluster once healed: generous, two cores are shared.
const SETTLE_CAP: Duration = Duration::from_secs(60);
/// Small enough that the eight keys' region splits again and again as values are written.
const REGION_MAX_SIZE: u64 = 32;
const REGION_SPLIT_SIZE: u64 = 16;

fn env_u64(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a number")),
        Err(_) => default,
    }
}

fn key_names() -> Vec<String> {
    (0..KEYS).map(|i| format!("k{i}")).collect()
}

/// The run's directory: removed when the run passes, kept (and named with the replay command)
/// when it fails or panics.
struct RunDir {
    path: PathBuf,
    seed: u64,
    secs: u64,
    passed: bool,
}

impl RunDir {
    fn new(seed: u64, secs: u64) -> RunDir {
        let path =
            std::env::temp_dir().join(format!("tinykv-chaos-seed{seed}-pid{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create run dir");
        std::fs::write(
            path.join("seed"),
            format!("TINYKV_CHAOS_SEED={seed}\nTINYKV_CHAOS_SECS={secs}\n"),
        )
        .expect("write seed");
        RunDir {
            path,
            seed,
            secs,
            passed: false,
        }
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        if self.passed {
            let _ = std::fs::remove_dir_all(&self.path);
            return;
        }
        eprintln!(
            "chaos: run FAILED; kept {} (seed, faults.log, history.jsonl, cluster/nodeI/node.log)\n\
             chaos: replay the schedule with: TINYKV_CHAOS_SEED={} TINYKV_CHAOS_SECS={} \
             cargo test -p tinykv --release --test chaos -- --nocapture",
            self.path.display(),
            self.seed,
            self.secs
        );
    }
}

/// How a partition is made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Via {
    /// The nodes' fault-injection admin hook (the transport's filter).
    Hook,
    /// nftables dropping UDP between node ports; the node code is untouched.
    Nft,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Shape {
    MajorityMinority,
    Bridge,
    IsolatedLeader,
}

/// The nemesis: applies one fault at a time from the seeded schedule and undoes it.
struct Nemesis<'a> {
    rng: StdRng,
    cluster: &'a mut Cluster,
    admin: &'a Client,
    rt: &'a tokio::runtime::Runtime,
    nft: Option<&'a NftTable>,
    history: &'a History,
    log: std::fs::File,
    counts: BTreeMap<String, u64>,
    /// Stores that hold injected faults right now.
    faulted: BTreeSet<u64>,
    audit: &'a LogAudit,
    /// The step at which a store new to the cluster joins (once a run).
    join_new_at: u64,
    steps: u64,
    /// The placement driver runs (`TINYKV_CHAOS_PLACEMENT=1`): it, not the nemesis, decides
    /// membership, so the hand-made membership churn gives way to stores kept down past
    /// `max-store-down-time` (their replicas replaced while the faults go on).
    placement: bool,
    /// Set while the clients are to send nothing (so that regions hibernate).
    quiet: Arc<AtomicBool>,
}

impl Nemesis<'_> {
    fn note(&mut self, line: &str) {
        use std::io::Write;
        let text = format!("[{:9.3}s] {line}", self.history.seconds());
        let _ = writeln!(self.log, "{text}");
        println!("chaos: {text}");
    }

    fn count(&mut self, kind: &str) {
        *self.counts.entry(kind.to_string()).or_default() += 1;
    }

    fn hold(&mut self, min_ms: u64, max_ms: u64) {
        let ms = self.rng.random_range(min_ms..=max_ms);
        // The fault's duration, drawn from the schedule; nothing is being waited for.
        std::thread::sleep(Duration::from_millis(ms));
    }

    /// Every region as its leader describes it (empty when the cluster cannot be asked).
    fn regions(&mut self) -> Vec<RegionInfo> {
        self.rt.block_on(self.admin.regions()).unwrap_or_default()
    }

    fn leader(&mut self) -> Option<u64> {
        let live = self.cluster.live();
        self.rt
            .block_on(find_leader(self.admin, self.cluster, &live))
    }

    /// Waits until node `id` answers again after a restart.
    fn await_up(&mut self, id: u64) {
        let addr = self.cluster.node(id).addr;
        let up = self.rt.block_on(admin_until(
            self.admin,
            addr,
            AdminRequest::StoreStatus,
            SETTLE_CAP,
        ));
        if let Err(e) = up {
            panic!(
                "store {id} did not come back within {SETTLE_CAP:?}: {e}; log {}",
                self.cluster.node(id).log_path().display()
            );
        }
    }

    fn set_faults(&mut self, id: u64, spec: FaultSpec) {
        let addr = self.cluster.node(id).addr;
        self.faulted.insert(id);
        let r = self.rt.block_on(admin_until(
            self.admin,
            addr,
            AdminRequest::SetFaults(spec),
            Duration::from_secs(10),
        ));
        if let Err(e) = r {
            self.note(&format!("  store {id}: faults not set: {e}"));
        }
    }

    fn clear_faults(&mut self) {
        for id in std::mem::take(&mut self.faulted) {
            let addr = self.cluster.node(id).addr;
            let r = self.rt.block_on(admin_until(
                self.admin,
                addr,
                AdminRequest::ClearFaults,
                SETTLE_CAP,
            ));
            if let Err(e) = r {
                panic!("store {id}: faults could not be cleared: {e}");
            }
        }
    }

    fn run(&mut self, secs: u64) {
        let end = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < end {
            self.step();
            self.hold(300, 1_500);
        }
    }

    fn step(&mut self) {
        self.steps += 1;
        if self.steps == self.join_new_at {
            self.join_new();
            return;
        }
        let ids = self.cluster.ids();
        match self.rng.random_range(0..106u32) {
            0..13 => {
                let id = ids[self.rng.random_range(0..ids.len())];
                self.kill_restart("kill-random", id);
            }
            13..26 => match self.leader() {
                Some(id) => self.kill_restart("kill-leader", id),
                None => self.note("kill-leader: no leader known, skipped"),
            },
            26..36 => {
                let leader = self.rng.random_bool(0.5).then(|| self.leader()).flatten();
                let id = leader.unwrap_or_else(|| ids[self.rng.random_range(0..ids.len())]);
                let kind = if leader.is_some() {
                    "pause-leader"
                } else {
                    "pause-random"
                };
                self.pause_resume(kind, id);
            }
            36..62 => {
                let via = if self.nft.is_some() && self.rng.random_bool(0.5) {
                    Via::Nft
                } else {
                    Via::Hook
                };
                let shape = match self.rng.random_range(0..3u32) {
                    0 => Shape::MajorityMinority,
                    1 => Shape::Bridge,
                    _ => Shape::IsolatedLeader,
                };
                self.partition(via, shape);
            }
            62..74 => self.slow_disk(),
            74..84 => self.lossy(),
            84..92 if self.placement => {
                let id = ids[self.rng.random_range(0..ids.len())];
                self.kill_keep_down(id);
            }
            84..87 => {
                let id = ids[self.rng.random_range(0..ids.len())];
                self.rebuild(id);
            }
            87..92 => {
                let leader = self.rng.random_bool(0.5).then(|| self.leader()).flatten();
                match leader {
                    Some(id) => self.leave_rejoin("leave-leader", id),
                    None => {
                        let id = ids[self.rng.random_range(0..ids.len())];
                        self.leave_rejoin("leave-random", id);
                    }
                }
            }
            92..96 => self.split(),
            96..100 => {
                let to = ids[self.rng.random_range(0..ids.len())];
                self.transfer_leader(to);
            }
            100..103 => self.quiet_then("hibernating-kill-leader"),
            _ => self.quiet_then("hibernating-pause-leader"),
        }
    }

    /// Lets the clients pause until a region hibernates, then kills (-9) or pauses (SIGSTOP)
    /// the store leading it, and lets the clients go on: with nothing ticking in the region,
    /// only the lost store (or a request to a follower) can wake the followers to elect.
    fn quiet_then(&mut self, kind: &str) {
        self.quiet.store(true, Ordering::Relaxed);
        let deadline = Instant::now() + Duration::from_secs(20);
        let target = loop {
            if let Some(found) = self.hibernating_leader() {
                break Some(found);
            }
            if Instant::now() >= deadline {
                break None;
            }
            // The state lives in other processes; asking again is the only way to see it.
            std::thread::sleep(Duration::from_millis(200));
        };
        let Some((id, region)) = target else {
            self.quiet.store(false, Ordering::Relaxed);
            self.count(&format!("{kind}-skipped"));
            self.note(&format!(
                "{kind}: no region hibernated within 20 s, skipped"
            ));
            return;
        };
        self.count(kind);
        self.note(&format!(
            "{kind}: region {region} hibernates, led by store {id}"
        ));
        if kind.ends_with("kill-leader") {
            self.note(&format!("{kind}: kill -9 store {id}"));
            self.cluster.kill(id);
            self.quiet.store(false, Ordering::Relaxed);
            self.hold(500, 6_000);
            self.cluster.start(id);
            self.await_up(id);
            self.note(&format!("{kind}: store {id} restarted and answering"));
        } else {
            self.note(&format!("{kind}: SIGSTOP store {id}"));
            self.cluster.pause(id);
            self.quiet.store(false, Ordering::Relaxed);
            self.hold(500, 8_000);
            self.cluster.resume(id);
            self.note(&format!("{kind}: SIGCONT store {id}"));
        }
    }

    /// A live store leading a hibernating region, and the region.
    fn hibernating_leader(&mut self) -> Option<(u64, u64)> {
        for id in self.cluster.live() {
            let addr = self.cluster.node(id).addr;
            let Some(status) = self.rt.block_on(store_status(self.admin, addr)) else {
                continue;
            };
            if let Some(p) = status
                .peers
                .iter()
                .find(|p| p.hibernating && p.role == "leader")
            {
                return Some((id, p.state.region));
            }
        }
        None
    }

    /// Removes store `id`'s peer (moving leadership first if it leads), waits, and adds the
    /// store back: it returns under a new peer id over its tombstone and catches up.
    fn leave_rejoin(&mut self, kind: &str, id: u64) {
        self.count(kind);
        self.note(&format!("{kind}: remove store {id} from every region"));
        match self.remove_everywhere(id) {
            Ok(()) => self.note(&format!("{kind}: store {id} removed")),
            // Refused (too few live voters), or its outcome unknown under the faults of the
            // moment: the check at the end adds back whatever is missing.
            Err(e) => {
                self.count("membership-change-not-done");
                self.note(&format!("{kind}: removal of store {id} not done: {e}"));
            }
        }
        self.hold(300, 3_000);
        self.add_back(kind, id);
    }

    /// Removes store `id` from every region that lists it (what `node leave` does).
    fn remove_everywhere(&mut self, id: u64) -> Result<(), String> {
        let regions = self.regions();
        if regions.is_empty() {
            return Err("no region could be listed".into());
        }
        for r in regions {
            if r.region.peer_on_store(id).is_some() {
                self.rt
                    .block_on(self.admin.remove_peer(r.region.id, id))
                    .map_err(|e| format!("region {}: {e}", r.region.id))?;
            }
        }
        Ok(())
    }

    /// Splits the region holding a random key there, by hand (`region split`).
    fn split(&mut self) {
        self.count("split-by-hand");
        let keys = key_names();
        let mut at = keys[self.rng.random_range(0..keys.len())].clone();
        if self.rng.random_bool(0.5) {
            // Between two keys as well as at one.
            at.push('5');
        }
        let regions = self.regions();
        let Some(region) = regions.iter().find(|r| r.region.contains(at.as_bytes())) else {
            self.note(&format!(
                "split-by-hand: no region known for {at:?}; skipped"
            ));
            return;
        };
        let region_id = region.region.id;
        if region.region.start_key == at.as_bytes() {
            self.note(&format!(
                "split-by-hand: region {region_id} starts at {at:?} already"
            ));
            return;
        }
        match self
            .rt
            .block_on(self.admin.split_region(region_id, vec![at.clone().into()]))
        {
            Ok(regions) => {
                let ids: Vec<u64> = regions.iter().map(|r| r.id).collect();
                self.note(&format!(
                    "split-by-hand: region {region_id} at {at:?} -> {ids:?}"
                ));
            }
            Err(e) => self.note(&format!(
                "split-by-hand: region {region_id} at {at:?} not split: {e}"
            )),
        }
    }

    /// A store loses its disk and is rebuilt by the documented flow: `kill -9`, its peer
    /// removed, its data dir wiped, `node join` with an empty data dir. When the removal is
    /// not confirmed the store keeps its data and restarts as it was.
    fn rebuild(&mut self, id: u64) {
        self.count("rebuild-wiped");
        self.note(&format!("rebuild-wiped: kill -9 store {id}"));
        self.cluster.kill(id);
        self.hold(200, 1_000);
        if let Err(e) = self.remove_everywhere(id) {
            self.count("membership-change-not-done");
            self.note(&format!(
                "rebuild-wiped: removal of store {id} not done ({e}); restarting it with its data"
            ));
            self.cluster.start(id);
            self.await_up(id);
            return;
        }
        self.cluster.wipe(id);
        self.note(&format!(
            "rebuild-wiped: store {id} removed and wiped; joining again"
        ));
        for attempt in 1..=3 {
            let seed = self.cluster.addrs()[(id as usize) % self.cluster.nodes.len()];
            self.cluster.start_joining(id, seed);
            if self.await_join(id) {
                self.note(&format!(
                    "rebuild-wiped: store {id} joined (attempt {attempt})"
                ));
                return;
            }
            self.note(&format!("rebuild-wiped: join of store {id} gave up; again"));
        }
        panic!(
            "store {id} could not join again; log {}",
            self.cluster.node(id).log_path().display()
        );
    }

    /// A store the cluster never had joins with `node join`: a learner under a new peer id,
    /// filled by snapshot, promoted once caught up. From then on it is one of the stores the
    /// faults pick from.
    fn join_new(&mut self) {
        self.count("join-new-store");
        let id = self.cluster.add_store();
        self.audit.watch(self.cluster.node(id).addr);
        let seed = self.cluster.addrs()[self.rng.random_range(0..id as usize - 1)];
        self.note(&format!("join-new-store: store {id} joins through {seed}"));
        for attempt in 1..=3 {
            self.cluster.start_joining(id, seed);
            if self.await_join(id) {
                self.note(&format!(
                    "join-new-store: store {id} joined (attempt {attempt})"
                ));
                return;
            }
            self.note(&format!(
                "join-new-store: join of store {id} gave up; again"
            ));
        }
        panic!(
            "store {id} could not join; log {}",
            self.cluster.node(id).log_path().display()
        );
    }

    /// Waits until a joining store has its region's data, or its `node join` process gives up.
    fn await_join(&mut self, id: u64) -> bool {
        let addr = self.cluster.node(id).addr;
        let started = Instant::now();
        while started.elapsed() < SETTLE_CAP {
            if self.cluster.exited(id) {
                return false;
            }
            // The driver moves replicas onto it when balance asks: it is in once it answers.
            if self.placement {
                let up = self
                    .rt
                    .block_on(self.admin.admin(addr, AdminRequest::StoreStatus));
                if up.is_ok() {
                    return true;
                }
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
            // Filled by its snapshot: it applied past the bootstrap index.
            let filled = matches!(
                self.rt.block_on(self.admin.admin(addr, AdminRequest::StoreStatus)),
                Ok(AdminResponse::StoreStatus(s))
                    if s.peers.iter().any(|p| p.state.region == 1 && p.state.applied > 5)
            );
            if filled {
                return true;
            }
            // The process is another one; asking again is the only way to see it come up.
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("store {id} did not come up joining within {SETTLE_CAP:?}");
    }

    /// Adds store `id` back to every region that lacks it, the documented way: a learner
    /// under a new peer id, promoted once it caught up.
    fn add_back(&mut self, kind: &str, id: u64) {
        let addr = self.cluster.node(id).addr.to_string();
        let missing: Vec<u64> = self
            .regions()
            .into_iter()
            .filter(|r| r.region.peer_on_store(id).is_none_or(|p| p.is_learner()))
            .map(|r| r.region.id)
            .collect();
        for region_id in missing {
            let added = self
                .rt
                .block_on(self.admin.add_peer(region_id, id, &addr, PROMOTE_WAIT));
            match added {
                Ok(_) => self.note(&format!(
                    "{kind}: store {id} added back to region {region_id}"
                )),
                Err(e) => {
                    self.count("membership-change-not-done");
                    self.note(&format!(
                        "{kind}: store {id} not added back to region {region_id} yet: {e}"
                    ));
                }
            }
        }
    }

    fn transfer_leader(&mut self, to: u64) {
        self.count("transfer-leader");
        let regions = self.regions();
        let region_id = if regions.is_empty() {
            1
        } else {
            regions[self.rng.random_range(0..regions.len())].region.id
        };
        let req = AdminRequest::TransferLeader {
            region_id,
            to_store: to,
        };
        match self.rt.block_on(self.admin.admin_leader(region_id, req)) {
            Ok(_) => self.note(&format!(
                "transfer-leader: region {region_id} to store {to} asked"
            )),
            Err(e) => self.note(&format!(
                "transfer-leader: region {region_id} to store {to} not asked: {e}"
            )),
        }
    }

    /// After healing: every store is a voter of every region again, as the leaders see it.
    fn restore_membership(&mut self) {
        let started = Instant::now();
        loop {
            let regions = self.regions();
            let ids = self.cluster.ids();
            let missing: Vec<(u64, u64)> = regions
                .iter()
                .flat_map(|r| {
                    ids.iter()
                        .filter(|id| r.region.peer_on_store(**id).is_none_or(|p| p.is_learner()))
                        .map(|id| (r.region.id, *id))
                })
                .collect();
            if !regions.is_empty() && missing.is_empty() {
                return;
            }
            if started.elapsed() >= SETTLE_CAP {
                let regions: BTreeSet<u64> = missing.iter().map(|(r, _)| *r).collect();
                let states: Vec<String> = regions
                    .iter()
                    .map(|r| {
                        let states = raft_states(self.rt, self.admin, self.cluster, *r);
                        format!("region {r}:\n{states}")
                    })
                    .collect();
                panic!(
                    "regions still miss stores (region, store) {missing:?} after {SETTLE_CAP:?}; \
                     Raft per store:\n{}",
                    states.concat()
                );
            }
            let stores: BTreeSet<u64> = missing.iter().map(|(_, s)| *s).collect();
            for id in stores {
                self.add_back("heal", id);
            }
            // The membership lives in other processes; asking again is the only way to see it.
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// Kills a store and keeps it down past `max-store-down-time`, so the placement driver
    /// declares it Down and replaces its replicas while the clients go on; then restarts it,
    /// and the driver moves replicas back onto it as balance asks.
    fn kill_keep_down(&mut self, id: u64) {
        self.count("kill-keep-down");
        self.note(&format!(
            "kill-keep-down: kill -9 store {id} for {PLACEMENT_DOWN_HOLD:?}"
        ));
        self.cluster.kill(id);
        std::thread::sleep(PLACEMENT_DOWN_HOLD);
        self.cluster.start(id);
        self.await_up(id);
        self.note(&format!(
            "kill-keep-down: store {id} restarted and answering"
        ));
    }

    /// After healing, with the placement driver: every region at three voters on stores that
    /// run, none a learner, as the leaders see it.
    fn await_placement(&mut self) {
        let started = Instant::now();
        loop {
            let regions = self.regions();
            let live = self.cluster.live();
            let off: Vec<String> = regions
                .iter()
                .filter(|r| {
                    r.region.peers.len() != 3
                        || r.region
                            .peers
                            .iter()
                            .any(|p| p.is_learner() || !live.contains(&p.store_id))
                })
                .map(|r| format!("region {}: {:?}", r.region.id, r.region.peers))
                .collect();
            if !regions.is_empty() && off.is_empty() {
                return;
            }
            assert!(
                started.elapsed() < SETTLE_CAP * 3,
                "the placement driver did not settle every region at three live voters: {off:#?}"
            );
            // The membership lives in other processes; asking again is the only way to see it.
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    fn kill_restart(&mut self, kind: &str, id: u64) {
        self.count(kind);
        self.note(&format!("{kind}: kill -9 store {id}"));
        self.cluster.kill(id);
        self.hold(200, 4_000);
        self.cluster.start(id);
        self.await_up(id);
        self.note(&format!("{kind}: store {id} restarted and answering"));
    }

    fn pause_resume(&mut self, kind: &str, id: u64) {
        self.count(kind);
        self.note(&format!("{kind}: SIGSTOP store {id}"));
        self.cluster.pause(id);
        self.hold(500, 4_000);
        self.cluster.resume(id);
        self.note(&format!("{kind}: SIGCONT store {id}"));
    }

    fn partition(&mut self, via: Via, shape: Shape) {
        let mut ids = self.cluster.ids();
        ids.shuffle(&mut self.rng);
        let (cut, what): (Cut, String) = match shape {
            Shape::MajorityMinority => (
                cut_between(&ids[..2], &ids[2..]),
                format!("minority {:?} | majority {:?}", &ids[..2], &ids[2..]),
            ),
            Shape::Bridge => (
                cut_between(&ids[..2], &ids[3..]),
                format!("{:?} | bridge {} | {:?}", &ids[..2], ids[2], &ids[3..]),
            ),
            Shape::IsolatedLeader => {
                let leader = self.leader().unwrap_or(ids[0]);
                let rest: Vec<u64> = ids.iter().copied().filter(|&i| i != leader).collect();
                (
                    cut_between(&[leader], &rest),
                    format!("leader {leader} alone | {rest:?}"),
                )
            }
        };
        let kind = format!(
            "partition-{}-{}",
            match shape {
                Shape::MajorityMinority => "majority-minority",
                Shape::Bridge => "bridge",
                Shape::IsolatedLeader => "isolated-leader",
            },
            match via {
                Via::Hook => "hook",
                Via::Nft => "nft",
            }
        );
        self.count(&kind);
        self.note(&format!("{kind}: {what}"));
        match via {
            Via::Hook => {
                for id in self.cluster.ids() {
                    let spec = hook_spec_for(id, &cut);
                    if !spec.network.is_empty() {
                        self.set_faults(id, spec);
                    }
                }
            }
            Via::Nft => {
                let ports: Vec<(u16, u16)> = cut
                    .iter()
                    .map(|(a, b)| {
                        (
                            self.cluster.node(*a).addr.port(),
                            self.cluster.node(*b).addr.port(),
                        )
                    })
                    .collect();
                if let Some(nft) = self.nft
                    && let Err(e) = nft.cut(&ports)
                {
                    panic!("nft rules could not be added: {e}");
                }
            }
        }
        self.hold(1_000, 6_000);
        match via {
            Via::Hook => self.clear_faults(),
            Via::Nft => {
                if let Some(nft) = self.nft
                    && let Err(e) = nft.heal()
                {
                    panic!("nft rules could not be removed: {e}");
                }
            }
        }
        self.note(&format!("{kind}: healed"));
    }

    fn slow_disk(&mut self) {
        self.count("slow-fsync");
        let mut ids = self.cluster.ids();
        ids.shuffle(&mut self.rng);
        let n = self.rng.random_range(1..=2);
        let delay = Duration::from_millis(self.rng.random_range(20..=200));
        // A slow disk slows snapshot builds and installs too, which must hold only their region.
        let snapshot_delay = Duration::from_millis(self.rng.random_range(500..=5_000));
        self.note(&format!(
            "slow-fsync: {delay:?} before each fsync, {snapshot_delay:?} before each snapshot \
             build or install on {:?}",
            &ids[..n]
        ));
        for &id in &ids[..n] {
            self.set_faults(
                id,
                FaultSpec {
                    network: Vec::new(),
                    sync_delay: delay,
                    snapshot_delay,
                },
            );
        }
        self.hold(1_000, 5_000);
        self.clear_faults();
        self.note("slow-fsync: cleared");
    }

    fn lossy(&mut self) {
        self.count("lossy-link");
        let ids = self.cluster.ids();
        let id = ids[self.rng.random_range(0..ids.len())];
        let ppm = self.rng.random_range(100_000..=500_000);
        self.note(&format!(
            "lossy-link: store {id} drops {}% of its Raft messages",
            ppm / 10_000
        ));
        self.set_faults(
            id,
            FaultSpec {
                network: vec![NetworkFault::drop_ppm(&[], ppm)],
                ..FaultSpec::default()
            },
        );
        self.hold(1_000, 5_000);
        self.clear_faults();
        self.note("lossy-link: cleared");
    }

    /// Undoes everything: no injected faults, no nft rules, every node running.
    fn heal_all(&mut self) {
        self.note("heal: clearing faults, resuming and restarting every node");
        if let Some(nft) = self.nft
            && let Err(e) = nft.heal()
        {
            panic!("nft rules could not be removed: {e}");
        }
        self.cluster.restore_all();
        self.faulted = self.cluster.ids().into_iter().collect();
        self.clear_faults();
    }
}

/// One client: random operations over the keys until told to stop.
async fn client_loop(
    id: u64,
    seed: u64,
    config: ClientConfig,
    history: History,
    [stop, quiet]: [Arc<AtomicBool>; 2],
) {
    let client = loop {
        match Client::connect(config.clone()).await {
            Ok(c) => break c,
            Err(e) if stop.load(Ordering::Relaxed) => panic!("client {id} never connected: {e}"),
            // The cluster is still electing; connecting again is the only way to know.
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    };
    let keys = key_names();
    let mut rng = StdRng::seed_from_u64(seed ^ id.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let mut seq = 0u64;
    // The value this client last saw each key hold (`None`: absent), for its swaps.
    let mut seen: HashMap<String, Option<String>> = HashMap::new();
    while !stop.load(Ordering::Relaxed) {
        if quiet.load(Ordering::Relaxed) {
            // The nemesis lets regions hibernate; it says when to go on.
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        }
        let key = keys[rng.random_range(0..keys.len())].clone();
        let request = match rng.random_range(0..100u32) {
            0..30 => {
                seq += 1;
                Request::Put {
                    key,
                    value: format!("c{id}-{seq}"),
                }
            }
            30..62 => Request::Get { key },
            62..72 => Request::Delete { key },
            // Swaps from the value this client last saw for the key (often current, so some
            // win), or from absent.
            72..84 => {
                seq += 1;
                Request::Cas {
                    expected: seen.get(&key).cloned().flatten(),
                    key,
                    value: format!("c{id}-{seq}"),
                }
            }
            _ => Request::Scan { keys: keys.clone() },
        };
        let call = history.now();
        let result = match &request {
            Request::Put { key, value } => client
                .put(key.clone().into_bytes(), value.clone().into_bytes())
                .await
                .map(|()| Outcome::Written),
            Request::Get { key } => client
                .get(key.clone().into_bytes())
                .await
                .map(|v| Outcome::Value(v.map(|b| String::from_utf8_lossy(&b).into_owned()))),
            Request::Delete { key } => client
                .delete(key.clone().into_bytes())
                .await
                .map(|()| Outcome::Written),
            Request::Cas {
                key,
                expected,
                value,
            } => client
                .compare_and_swap(
                    key.clone().into_bytes(),
                    expected.clone().map(|e| e.into_bytes().into()),
                    value.clone().into_bytes(),
                )
                .await
                .map(|(swapped, previous)| {
                    Outcome::Swapped(
                        swapped,
                        previous.map(|b| String::from_utf8_lossy(&b).into_owned()),
                    )
                }),
            // Every key lies in [k, l).
            Request::Scan { .. } => client
                .scan(&b"k"[..], &b"l"[..], 1_000, ReadMode::Linearizable)
                .await
                .map(|pairs| {
                    Outcome::Pairs(
                        pairs
                            .into_iter()
                            .map(|(k, v)| {
                                (
                                    String::from_utf8_lossy(&k).into_owned(),
                                    String::from_utf8_lossy(&v).into_owned(),
                                )
                            })
                            .collect(),
                    )
                }),
        };
        let outcome = result.unwrap_or_else(|e| history::classify_error(&request, &e));
        remember(&mut seen, &request, &outcome);
        history.record(id, call, request, outcome);
        // Think time: a couple of hundred operations a second in all keeps a half-hour history
        // within what the checker can hold in memory (its memo grows with the square of a
        // key's operations), while leaving writes in flight whenever a fault strikes.
        tokio::time::sleep(Duration::from_millis(rng.random_range(10..40))).await;
    }
}

/// Notes what `request` showed the key to hold, for the client's next swap of it.
fn remember(seen: &mut HashMap<String, Option<String>>, request: &Request, outcome: &Outcome) {
    match (request, outcome) {
        (Request::Put { key, value }, Outcome::Written) => {
            seen.insert(key.clone(), Some(value.clone()));
        }
        (Request::Delete { key }, Outcome::Written)
        | (Request::Get { key }, Outcome::Value(None)) => {
            seen.insert(key.clone(), None);
        }
        (Request::Get { key }, Outcome::Value(Some(v))) => {
            seen.insert(key.clone(), Some(v.clone()));
        }
        (Request::Cas { key, value, .. }, Outcome::Swapped(true, _)) => {
            seen.insert(key.clone(), Some(value.clone()));
        }
        (Request::Cas { key, .. }, Outcome::Swapped(false, previous)) => {
            seen.insert(key.clone(), previous.clone());
        }
        _ => {}
    }
}

/// Reads every key once more, after healing, so that a lost write cannot hide at the end.
fn final_reads(rt: &tokio::runtime::Runtime, config: ClientConfig, history: &History) {
    rt.block_on(async {
        let client = Client::connect(config)
            .await
            .expect("final reader connects");
        for key in key_names() {
            let deadline = Instant::now() + SETTLE_CAP;
            loop {
                let call = history.now();
                match client.get(key.clone().into_bytes()).await {
                    Ok(v) => {
                        let value = v.map(|b| String::from_utf8_lossy(&b).into_owned());
                        history.record(0, call, Request::Get { key }, Outcome::Value(value));
                        break;
                    }
                    Err(_) if Instant::now() < deadline => {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                    Err(e) => panic!("final read of {key} failed for {SETTLE_CAP:?}: {e}"),
                }
            }
        }
    });
}

/// Every store's initialized regions (`None` for a store that did not answer).
fn regions_of(
    rt: &tokio::runtime::Runtime,
    admin: &Client,
    cluster: &Cluster,
) -> Vec<Option<Vec<RegionInfo>>> {
    rt.block_on(async {
        let mut out = Vec::new();
        for node in &cluster.nodes {
            out.push(match admin.admin(node.addr, AdminRequest::Cluster).await {
                Ok(AdminResponse::Cluster(info)) => Some(info.regions),
                _ => None,
            });
        }
        out
    })
}

/// Whether `regions` cover every key once: sorted by start, the first starts at the empty
/// key, each ends where the next starts, the last is unbounded. The problem, when not.
fn tiling_problem(regions: &[RegionInfo]) -> Option<String> {
    let mut ranges: Vec<(&[u8], &[u8], u64)> = regions
        .iter()
        .map(|r| (&r.region.start_key[..], &r.region.end_key[..], r.region.id))
        .collect();
    ranges.sort();
    let describe = || format!("{ranges:?}");
    match ranges.first() {
        None => return Some("no region".into()),
        Some((start, _, _)) if !start.is_empty() => {
            return Some(format!("a gap before the first region: {}", describe()));
        }
        _ => {}
    }
    for w in ranges.windows(2) {
        if w[0].1.is_empty() || w[0].1 != w[1].0 {
            return Some(format!(
                "a gap or an overlap after region {}: {}",
                w[0].2,
                describe()
            ));
        }
    }
    match ranges.last() {
        Some((_, end, _)) if !end.is_empty() => {
            Some(format!("a gap after the last region: {}", describe()))
        }
        _ => None,
    }
}

/// Polls until every store hosts the same regions, tiling the key space, and every region has
/// the same applied index and checksum on every store. Returns each region's applied index,
/// the number of keys, and how long it took.
fn converge(
    rt: &tokio::runtime::Runtime,
    admin: &Client,
    cluster: &Cluster,
    placement: bool,
) -> (BTreeMap<u64, u64>, u64, Duration) {
    let started = Instant::now();
    loop {
        let result = if placement {
            converged_placed(rt, admin, cluster)
        } else {
            converged(rt, admin, cluster)
        };
        let problem = match result {
            Ok((applied, keys)) => return (applied, keys, started.elapsed()),
            Err(problem) => problem,
        };
        assert!(
            started.elapsed() < SETTLE_CAP,
            "stores did not converge within {SETTLE_CAP:?}: {problem}"
        );
        // The state lives in other processes; asking again is the only way to see it change.
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// `(applied, crc32, keys)` of `region_id` at each address, `None` where there is no answer
/// (or no address).
fn checksums(
    rt: &tokio::runtime::Runtime,
    admin: &Client,
    addrs: &[Option<SocketAddr>],
    region_id: u64,
) -> Vec<Option<(u64, u32, u64)>> {
    rt.block_on(async {
        let mut out = Vec::new();
        for addr in addrs {
            let Some(addr) = addr else {
                out.push(None);
                continue;
            };
            let answer = admin
                .admin(*addr, AdminRequest::RegionChecksum { region_id })
                .await;
            out.push(match answer {
                Ok(AdminResponse::Checksum {
                    applied,
                    crc32,
                    keys,
                }) => Some((applied, crc32, keys)),
                _ => None,
            });
        }
        out
    })
}

/// With the placement driver, each store holds some regions: the regions as their leaders
/// describe them tile the key space, and every region's replicas hold the same data at the
/// same applied index.
fn converged_placed(
    rt: &tokio::runtime::Runtime,
    admin: &Client,
    cluster: &Cluster,
) -> Result<(BTreeMap<u64, u64>, u64), String> {
    let regions = rt.block_on(admin.regions()).map_err(|e| e.to_string())?;
    if let Some(problem) = tiling_problem(&regions) {
        return Err(format!("the regions do not tile: {problem}"));
    }
    let mut applied = BTreeMap::new();
    let mut keys = 0;
    for r in &regions {
        let region_id = r.region.id;
        let addrs: Vec<Option<SocketAddr>> = r
            .region
            .peers
            .iter()
            .map(|p| {
                cluster
                    .nodes
                    .iter()
                    .find(|n| n.id == p.store_id)
                    .map(|n| n.addr)
            })
            .collect();
        let seen = checksums(rt, admin, &addrs, region_id);
        match seen.first() {
            Some(Some(first)) if seen.iter().all(|s| s.as_ref() == Some(first)) => {
                applied.insert(region_id, first.0);
                keys += first.2;
            }
            _ => {
                return Err(format!(
                    "region {region_id}: (applied, crc32, keys) per replica {seen:?}"
                ));
            }
        }
    }
    Ok((applied, keys))
}

fn converged(
    rt: &tokio::runtime::Runtime,
    admin: &Client,
    cluster: &Cluster,
) -> Result<(BTreeMap<u64, u64>, u64), String> {
    let per_store = regions_of(rt, admin, cluster);
    let mut ids: Option<BTreeSet<u64>> = None;
    for (node, regions) in cluster.nodes.iter().zip(&per_store) {
        let regions = regions
            .as_ref()
            .ok_or_else(|| format!("store {} did not answer", node.id))?;
        if let Some(problem) = tiling_problem(regions) {
            return Err(format!(
                "store {}'s regions do not tile: {problem}",
                node.id
            ));
        }
        let mine: BTreeSet<u64> = regions.iter().map(|r| r.region.id).collect();
        match &ids {
            Some(first) if *first != mine => {
                return Err(format!(
                    "stores host different regions: {first:?} and {mine:?}"
                ));
            }
            _ => ids = Some(mine),
        }
    }
    let mut applied = BTreeMap::new();
    let mut keys = 0;
    for region_id in ids.unwrap_or_default() {
        let addrs: Vec<Option<SocketAddr>> = cluster.nodes.iter().map(|n| Some(n.addr)).collect();
        let seen = checksums(rt, admin, &addrs, region_id);
        match seen.first() {
            Some(Some(first)) if seen.iter().all(|s| s.as_ref() == Some(first)) => {
                applied.insert(region_id, first.0);
                keys += first.2;
            }
            _ => {
                return Err(format!(
                    "region {region_id}: (applied, crc32, keys) per store {seen:?}; Raft per store:\n{}",
                    raft_states(rt, admin, cluster, region_id)
                ));
            }
        }
    }
    Ok((applied, keys))
}

/// Every store's live Raft view of `region_id`, a line each, with the leader's progress of
/// the other peers: what tells a follower left behind from a leader that stopped sending.
fn raft_states(
    rt: &tokio::runtime::Runtime,
    admin: &Client,
    cluster: &Cluster,
    region_id: u64,
) -> String {
    rt.block_on(async {
        let mut out = String::new();
        for node in &cluster.nodes {
            let line = match admin
                .admin(node.addr, AdminRequest::RaftState { region_id })
                .await
            {
                Ok(AdminResponse::RaftState(s)) => format!(
                    "{} leader {} {:?} progress {:?}",
                    s.role, s.leader_peer, s.state, s.progress
                ),
                other => format!("{other:?}"),
            };
            out.push_str(&format!("  store {}: {line}\n", node.id));
        }
        out
    })
}

/// Polls until every store's log of every region holds at most `LOG_BOUND` entries past its
/// truncation point.
fn logs_bounded(rt: &tokio::runtime::Runtime, admin: &Client, cluster: &Cluster) -> u64 {
    let started = Instant::now();
    loop {
        let longest: Result<u64, String> = rt.block_on(async {
            let mut longest = 0;
            for node in &cluster.nodes {
                let status = match admin.admin(node.addr, AdminRequest::StoreStatus).await {
                    Ok(AdminResponse::StoreStatus(s)) => s,
                    other => return Err(format!("store {}: {other:?}", node.id)),
                };
                for p in status.peers {
                    let len = p.state.last_index - p.state.truncated_index;
                    if len > LOG_BOUND {
                        return Err(format!(
                            "store {} region {}: last - truncated {len}",
                            node.id, p.state.region
                        ));
                    }
                    longest = longest.max(len);
                }
            }
            Ok(longest)
        });
        match longest {
            Ok(l) => return l,
            Err(problem) => assert!(
                started.elapsed() < SETTLE_CAP,
                "raft logs not bounded by {LOG_BOUND} within {SETTLE_CAP:?}: {problem}"
            ),
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The cluster takes a write after everything, and reads it back.
fn still_writable(rt: &tokio::runtime::Runtime, config: ClientConfig, seed: u64) -> Duration {
    let started = Instant::now();
    rt.block_on(async {
        let client = Client::connect(config).await.expect("writer connects");
        let value = format!("after-chaos-{seed}");
        loop {
            match client
                .put(&b"chaos-final"[..], value.clone().into_bytes())
                .await
            {
                Ok(()) => break,
                Err(_) if started.elapsed() < SETTLE_CAP => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => panic!("the healed cluster refused writes for {SETTLE_CAP:?}: {e}"),
            }
        }
        let read = client.get(&b"chaos-final"[..]).await.expect("read back");
        assert_eq!(read.as_deref(), Some(value.as_bytes()));
    });
    started.elapsed()
}

fn write_failure(dir: &Path, text: &str) {
    let _ = std::fs::write(dir.join("failure.txt"), text);
}

#[test]
fn nemesis_keeps_the_history_linearizable_and_the_stores_convergent() {
    let seed = env_u64("TINYKV_CHAOS_SEED", DEFAULT_SEED);
    let secs = env_u64("TINYKV_CHAOS_SECS", DEFAULT_SECS);
    let placement = env_u64("TINYKV_CHAOS_PLACEMENT", 0) == 1;
    let started = Instant::now();
    let mut run_dir = RunDir::new(seed, secs);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");

    let mut cluster = Cluster::create(&run_dir.path.join("cluster"), NODES, |c| {
        c.fault_injection = true;
        c.raft.log_gc_count_limit = GC_COUNT_LIMIT;
        c.raft.log_gc_tick_interval = tinykv_node::config::ReadableDuration::millis(1_000);
        c.region.max_size = tinykv_node::config::ByteSize(REGION_MAX_SIZE);
        c.region.split_size = tinykv_node::config::ByteSize(REGION_SPLIT_SIZE);
        c.region.split_check_interval = tinykv_node::config::ReadableDuration::millis(500);
        // Without the driver the nemesis shapes membership by hand (leave, re-add, join).
        c.placement.enabled = placement;
        c.placement.store_heartbeat_interval = tinykv_node::config::ReadableDuration::millis(1_000);
        c.placement.region_heartbeat_interval =
            tinykv_node::config::ReadableDuration::millis(10_000);
        c.placement.max_store_down_time =
            tinykv_node::config::ReadableDuration(PLACEMENT_DOWN_HOLD - Duration::from_secs(5));
    });
    let admin = rt.block_on(async {
        let deadline = Instant::now() + SETTLE_CAP;
        loop {
            match Client::connect(cluster.client_config(Duration::from_secs(2))).await {
                Ok(c) => break c,
                Err(e) if Instant::now() >= deadline => panic!("cluster never answered: {e}"),
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    });
    support::wait_for("a first leader", SETTLE_CAP, || {
        rt.block_on(find_leader(&admin, &cluster, &cluster.live()))
    });

    let nft_name = format!("tinykv_chaos_{}", std::process::id());
    let nft = match NftTable::create(&nft_name) {
        Ok(t) => Some(t),
        Err(e) => {
            println!("chaos: UDP-level (nftables) partitions skipped: {e}");
            None
        }
    };

    let audit = LogAudit::new(admin.clone(), rt.handle().clone());
    for addr in cluster.addrs() {
        audit.watch(addr);
    }
    let history = History::new();
    let stop = Arc::new(AtomicBool::new(false));
    let quiet = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (1..=CLIENTS)
        .map(|id| {
            rt.spawn(client_loop(
                id,
                seed,
                cluster.client_config(CLIENT_TIMEOUT),
                history.clone(),
                [stop.clone(), quiet.clone()],
            ))
        })
        .collect();

    let log = std::fs::File::create(run_dir.path.join("faults.log")).expect("faults.log");
    let mut nemesis = Nemesis {
        rng: StdRng::seed_from_u64(seed),
        cluster: &mut cluster,
        admin: &admin,
        rt: &rt,
        nft: nft.as_ref(),
        history: &history,
        log,
        counts: BTreeMap::new(),
        faulted: BTreeSet::new(),
        audit: &audit,
        join_new_at: StdRng::seed_from_u64(seed ^ 0x6a6f_696e).random_range(3..12),
        steps: 0,
        quiet: quiet.clone(),
        placement,
    };
    nemesis.note(&format!(
        "seed {seed}, {secs} s of faults, nft {}",
        if nft.is_some() { "on" } else { "off" }
    ));
    nemesis.run(secs);
    nemesis.heal_all();
    for id in nemesis.cluster.ids() {
        nemesis.await_up(id);
    }
    if placement {
        nemesis.await_placement();
    } else {
        nemesis.restore_membership();
    }
    let faults = std::mem::take(&mut nemesis.counts);
    nemesis.note("heal: every node answers; stopping the clients");
    drop(nemesis);

    stop.store(true, Ordering::Relaxed);
    for c in clients {
        rt.block_on(c).expect("client task");
    }
    // Written now so that a run failing in the final reads still keeps its history.
    let history_path = run_dir.path.join("history.jsonl");
    history::write_jsonl(&history.records(), &history_path).expect("write history");
    final_reads(&rt, cluster.client_config(Duration::from_secs(5)), &history);

    // (a) The whole history, final reads included, is linearizable.
    let records = history.records();
    history::write_jsonl(&records, &history_path).expect("write history");
    let ops = history::to_operations(&records);
    let check_started = Instant::now();
    let verdict = tinykv_lincheck::check_kv(&ops);
    let check_time = check_started.elapsed();
    if let Err(v) = &verdict {
        write_failure(&run_dir.path, &v.to_string());
        panic!("history is not linearizable:\n{v}");
    }

    // (b) Every store's regions tile the key space, and every region converges to the same
    // applied index and data on every store.
    let (applied, data_keys, converge_time) = converge(&rt, &admin, &cluster, placement);
    // (c) The committed log holds no client write twice, and no two stores disagree on it.
    let audit = audit.finish(&applied);
    // An entry can be committed, compacted and deleted on every store between two polls; the
    // audit must still have seen nearly all of them for "none twice" to mean something.
    assert!(
        audit.missed * 100 <= audit.span,
        "the log audit missed {} of {} committed entries (first: {:?})",
        audit.missed,
        audit.span,
        audit.missed_sample
    );
    if !audit.duplicates.is_empty() || !audit.conflicts.is_empty() {
        let text = format!(
            "the committed log is wrong: writes applied more than once {:?}; stores disagreeing \
             {:?}",
            audit.duplicates, audit.conflicts
        );
        write_failure(&run_dir.path, &text);
        panic!("{text}");
    }
    // (d) Every store's raft log is bounded.
    let longest_log = logs_bounded(&rt, &admin, &cluster);
    // (e) The cluster still takes writes.
    let write_time = still_writable(&rt, cluster.client_config(CLIENT_TIMEOUT), seed);

    let mut by_kind: BTreeMap<(&str, &str), u64> = BTreeMap::new();
    for r in &records {
        *by_kind
            .entry((r.request.kind(), r.outcome.label()))
            .or_default() += 1;
    }
    let keys_checked: BTreeSet<&[u8]> = ops.iter().map(|o| o.kind.key()).collect();
    let faults_text: Vec<String> = faults.iter().map(|(k, n)| format!("{k} {n}")).collect();
    let ops_text: Vec<String> = by_kind
        .iter()
        .map(|((k, o), n)| format!("{k}/{o} {n}"))
        .collect();
    println!(
        "chaos summary: seed {seed}, {secs} s of faults ({:.1} s in all); faults injected: {} \
         ({} in all; nft partitions {}); operations: {} ({} recorded, {} checker operations after \
         splitting scans); {} keys checked, linearizable, checker {:.3} s; {} regions, tiling \
         the key space {}, converged with {data_keys} keys in {:.1} s; committed \
         logs audited: {} entries seen of {} in {} regions ({} missed: {:?}), {} puts ({} \
         refused at apply after a split and sent again), none applied twice; longest raft log \
         last - truncated {longest_log} (bound {LOG_BOUND}); a write after healing took {:.2} s.",
        started.elapsed().as_secs_f64(),
        faults_text.join(", "),
        faults.values().sum::<u64>(),
        if nft.is_some() { "on" } else { "skipped" },
        ops_text.join(", "),
        records.len(),
        ops.len(),
        keys_checked.len(),
        check_time.as_secs_f64(),
        applied.len(),
        if placement {
            "(three replicas each, placed by the driver)"
        } else {
            "on every store"
        },
        converge_time.as_secs_f64(),
        audit.seen,
        audit.span,
        audit.regions,
        audit.missed,
        audit.missed_sample,
        audit.puts,
        audit.refused_puts,
        write_time.as_secs_f64(),
    );
    drop(nft);
    run_dir.passed = true;
}
