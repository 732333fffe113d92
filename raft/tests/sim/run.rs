//! One seeded run: a random sequence of fault and client steps with every invariant checked
//! after each, then a liveness phase without faults.

use std::cell::Cell;

use tinykv_raft::{ConfChange, ConfChangeType, Storage};

use super::checker::{Check, Invariant, Violation};
use super::cluster::{Cluster, Coverage, Fate, RaftParams, Stop};
use super::rng::SimRng;

/// Rounds the liveness phase may take to elect a stable leader and converge. A round is one
/// tick of every node plus delivery of everything in flight, so this is a few hundred election
/// timeouts: far more than a healthy group needs.
const LIVENESS_ROUNDS: u64 = 3000;

/// Rounds after which a fresh proposal that did not commit (its leader lost the term) is made
/// again.
const FRESH_PROPOSAL_PATIENCE: u64 = 60;

thread_local! {
    static CURRENT_STEP: Cell<u64> = const { Cell::new(0) };
}

/// The step the run on this thread is at; read after a panic to say where it happened.
pub fn current_step() -> u64 {
    CURRENT_STEP.with(Cell::get)
}

/// Why a run failed.
#[derive(Debug)]
pub struct Failure {
    pub step: u64,
    pub violation: Violation,
    /// The nodes and the network when it happened.
    pub state: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Action {
    TickAll,
    TickSome,
    DeliverSome,
    DeliverAll,
    Propose,
    Partition,
    Heal,
    Crash,
    Restart,
    ConfChange,
    Compact,
    TransferLeader,
    ReadIndex,
    Campaign,
}

/// How often each action is drawn, relative to the others.
const ACTIONS: [(Action, u64); 14] = [
    (Action::TickAll, 220),
    (Action::TickSome, 50),
    (Action::DeliverSome, 230),
    (Action::DeliverAll, 90),
    (Action::Propose, 150),
    (Action::Partition, 25),
    (Action::Heal, 30),
    (Action::Crash, 25),
    (Action::Restart, 40),
    (Action::ConfChange, 25),
    (Action::Compact, 30),
    (Action::TransferLeader, 15),
    (Action::ReadIndex, 60),
    (Action::Campaign, 10),
];

struct Run {
    rng: SimRng,
    cluster: Cluster,
    trace: bool,
    step: u64,
    /// Chance, per mille, that a delivered message is lost or duplicated during the fault phase.
    loss: u64,
    duplication: u64,
}

/// Runs seed `seed`; returns the number of steps taken and what they exercised.
pub fn run_seed(seed: u64, trace: bool) -> Result<(u64, Coverage), Failure> {
    CURRENT_STEP.with(|s| s.set(0));
    let mut rng = SimRng::new(seed);
    let members = if rng.chance(500) { 3 } else { 5 };
    let universe = members + 2;
    let election_tick = rng.between(4, 12) as usize;
    let params = RaftParams {
        election_tick,
        heartbeat_tick: rng.between(1, 3.min(election_tick as u64 - 1)) as usize,
        check_quorum: rng.chance(750),
        pre_vote: rng.chance(750),
        max_size_per_msg: rng.pick(&[0, 100, 1024 * 1024]).unwrap_or(0),
        max_inflight_msgs: rng.pick(&[1, 2, 4, 256]).unwrap_or(256),
        snapshot_pending_timeout_ticks: rng.between(2 * election_tick as u64, 100) as usize,
        // From a stream of its own, so the schedules the other draws give each seed stay as
        // they were before this setting existed.
        skip_bcast_commit: SimRng::new(seed ^ 0x5EED_B0C5).chance(500),
    };
    let loss = rng.between(0, 150);
    let duplication = rng.between(0, 80);
    let fault_steps = rng.between(200, 400);
    if trace {
        eprintln!(
            "seed {seed}: {members} members of {universe}, {params:?}, loss {loss}‰, duplication {duplication}‰, \
             {fault_steps} fault steps"
        );
    }
    let cluster = match Cluster::new(members, universe, params, &mut rng) {
        Ok(cluster) => cluster,
        Err(violation) => {
            return Err(Failure {
                step: 0,
                violation,
                state: String::new(),
            });
        }
    };
    let mut run = Run {
        rng,
        cluster,
        trace,
        step: 0,
        loss,
        duplication,
    };
    let outcome = run
        .fault_phase(fault_steps)
        .and_then(|()| run.liveness_phase());
    match outcome {
        Ok(()) => Ok((run.step, run.cluster.coverage)),
        Err(violation) => Err(Failure {
            step: run.step,
            violation,
            state: run.cluster.describe(),
        }),
    }
}

impl Run {
    fn begin_step(&mut self) {
        self.step += 1;
        CURRENT_STEP.with(|s| s.set(self.step));
    }

    fn end_step(&mut self, what: &str) -> Check {
        self.cluster.drain_all()?;
        self.cluster.check_state()?;
        if self.trace {
            eprintln!("step {}: {what}\n{}", self.step, self.cluster.describe());
        }
        Ok(())
    }

    fn fault_phase(&mut self, steps: u64) -> Check {
        let weights: Vec<u64> = ACTIONS.iter().map(|&(_, w)| w).collect();
        for _ in 0..steps {
            self.begin_step();
            let action = ACTIONS[self.rng.weighted(&weights)].0;
            let what = self.act(action)?;
            self.end_step(&what)?;
        }
        Ok(())
    }

    fn act(&mut self, action: Action) -> Result<String, Violation> {
        let up = self.cluster.up_ids();
        match action {
            Action::TickAll => {
                let ticks = self.rng.between(1, 3);
                for _ in 0..ticks {
                    for &id in &up {
                        self.cluster.tick(id);
                    }
                }
                Ok(format!("tick all {ticks}x"))
            }
            Action::TickSome => {
                let mut ticked = Vec::new();
                for &id in &up {
                    if self.rng.chance(500) {
                        for _ in 0..self.rng.between(1, 3) {
                            self.cluster.tick(id);
                        }
                        ticked.push(id);
                    }
                }
                Ok(format!("tick {ticked:?}"))
            }
            Action::DeliverSome => {
                let count = self.rng.between(1, 12);
                let mut fates = [0u32; 3];
                for _ in 0..count {
                    let env = if self.rng.chance(500) {
                        self.cluster.net.take_oldest()
                    } else {
                        self.cluster.net.take_random(&mut self.rng)
                    };
                    let Some(env) = env else { break };
                    let fate = self.fate();
                    fates[fate as usize] += 1;
                    self.cluster.deliver(env, fate)?;
                }
                Ok(format!(
                    "deliver some: {} delivered, {} duplicated, {} lost",
                    fates[0], fates[1], fates[2]
                ))
            }
            Action::DeliverAll => {
                let count = self.cluster.net.len();
                for _ in 0..count {
                    let Some(env) = self.cluster.net.take_oldest() else {
                        break;
                    };
                    let fate = self.fate();
                    self.cluster.deliver(env, fate)?;
                }
                Ok(format!("deliver all {count}"))
            }
            Action::Propose => {
                let target = match self.cluster.leaders().first() {
                    Some(&leader) if self.rng.chance(900) => Some(leader),
                    _ => self.rng.pick(&up),
                };
                let Some(target) = target else {
                    return Ok("propose: nobody up".into());
                };
                let mut accepted = Vec::new();
                for _ in 0..self.rng.between(1, 3) {
                    if let Some(proposal) = self.cluster.propose(target)? {
                        accepted.push(proposal);
                    }
                }
                Ok(format!("propose on {target}: accepted {accepted:?}"))
            }
            Action::Partition => Ok(self.partition()),
            Action::Heal => {
                self.cluster.net.heal();
                Ok("heal".into())
            }
            Action::Crash => self.crash(),
            Action::Restart => {
                let down = self.cluster.down_ids();
                let Some(id) = self.rng.pick(&down) else {
                    return Ok("restart: nobody down".into());
                };
                self.cluster.restart(id, &mut self.rng)?;
                Ok(format!("restart {id}"))
            }
            Action::ConfChange => self.conf_change(),
            Action::Compact => {
                let Some(id) = self.rng.pick(&up) else {
                    return Ok("compact: nobody up".into());
                };
                let keep = self.rng.below(5);
                self.cluster.compact(id, keep)?;
                Ok(format!("compact {id} keeping {keep}"))
            }
            Action::TransferLeader => {
                let Some(&leader) = self.cluster.leaders().first() else {
                    return Ok("transfer: no leader".into());
                };
                let conf = &self.cluster.node(leader).sm.conf_state;
                // Learners too: the leader must refuse to hand over to one.
                let candidates: Vec<u64> =
                    conf.voters.iter().chain(&conf.learners).copied().collect();
                let Some(to) = self.rng.pick(&candidates) else {
                    return Ok("transfer: no voters".into());
                };
                // Sometimes ask a follower, which must forward the request to its leader.
                let asked = if self.rng.chance(250) { to } else { leader };
                self.cluster.transfer_leader(asked, to);
                Ok(format!("transfer leadership to {to} (asked {asked})"))
            }
            Action::ReadIndex => {
                let target = match self.cluster.leaders().first() {
                    Some(&leader) if self.rng.chance(500) => Some(leader),
                    _ => self.rng.pick(&up),
                };
                let Some(target) = target else {
                    return Ok("read: nobody up".into());
                };
                self.cluster.read_index(target);
                Ok(format!("read index on {target}"))
            }
            Action::Campaign => {
                let Some(id) = self.rng.pick(&up) else {
                    return Ok("campaign: nobody up".into());
                };
                self.cluster.campaign(id)?;
                Ok(format!("campaign {id}"))
            }
        }
    }

    fn fate(&mut self) -> Fate {
        if self.rng.chance(self.loss) {
            Fate::Lose
        } else if self.rng.chance(self.duplication) {
            Fate::Duplicate
        } else {
            Fate::Deliver
        }
    }

    fn partition(&mut self) -> String {
        let universe = self.cluster.nodes.len();
        let mut sides = vec![0u8; universe + 1];
        let leader = self.cluster.leaders().first().copied();
        let kind = self.rng.below(3);
        match (kind, leader) {
            (0, Some(leader)) => sides[leader as usize] = 1,
            (1, _) => {
                let mut members = self.cluster.committed_members();
                self.rng.shuffle(&mut members);
                let minority = members.len() / 2;
                for &id in members.iter().take(minority) {
                    sides[id as usize] = 1;
                }
            }
            _ => {
                for side in sides.iter_mut().skip(1) {
                    *side = u8::from(self.rng.chance(500));
                }
            }
        }
        self.cluster.net.partition(sides);
        format!("partition {}", self.cluster.net.describe_partition())
    }

    /// Crashes a node, sometimes in the middle of handling a ready: before persisting it (what
    /// it received or proposed is lost), after sending a leader's immediate appends but before
    /// persisting them, after persisting it but before sending its messages, or after sending
    /// them but before applying all its committed entries.
    fn crash(&mut self) -> Result<String, Violation> {
        let up = self.cluster.up_ids();
        let target = match self.cluster.leaders().first() {
            Some(&leader) if self.rng.chance(300) => Some(leader),
            _ => self.rng.pick(&up),
        };
        let Some(id) = target else {
            return Ok("crash: nobody up".into());
        };
        let point = self.rng.below(5);
        if point > 0 {
            self.cluster.tick(id);
            for _ in 0..self.rng.between(0, 3) {
                if let Some(env) = self.cluster.net.take_first_to(id) {
                    self.cluster.deliver(env, Fate::Deliver)?;
                }
            }
            if self.cluster.node(id).is_leader() {
                self.cluster.propose(id)?;
            }
        }
        let idx = (id - 1) as usize;
        let what = match point {
            0 => "idle",
            1 => "before persisting",
            4 => {
                self.cluster.process_ready(idx, Stop::AfterImmediateSend)?;
                "after sending a leader's appends, before persisting"
            }
            2 => {
                self.cluster.process_ready(idx, Stop::AfterPersist)?;
                "after persisting, before sending"
            }
            _ => {
                let apply = self.rng.below(3) as usize;
                self.cluster.process_ready(idx, Stop::AfterSend { apply })?;
                "after sending, before applying"
            }
        };
        self.cluster.crash(id);
        Ok(format!("crash {id} {what}"))
    }

    fn conf_change(&mut self) -> Result<String, Violation> {
        let Some(&leader) = self.cluster.leaders().first() else {
            return Ok("conf change: no leader".into());
        };
        let conf = self.cluster.node(leader).sm.conf_state.clone();
        let outsiders: Vec<u64> = self
            .cluster
            .ids()
            .filter(|id| !conf.voters.contains(id) && !conf.learners.contains(id))
            .collect();
        // Removing a voter must leave at least three; learners can always go.
        let mut removable = conf.learners.clone();
        if conf.voters.len() > 3 {
            removable.extend(&conf.voters);
        }
        let mut options = Vec::new();
        if !outsiders.is_empty() {
            options.push((ConfChangeType::AddNode, outsiders.clone()));
            options.push((ConfChangeType::AddLearnerNode, outsiders));
        }
        if !conf.learners.is_empty() {
            // Promotion of a learner to voter.
            options.push((ConfChangeType::AddNode, conf.learners.clone()));
        }
        if !removable.is_empty() {
            options.push((ConfChangeType::RemoveNode, removable));
        }
        if options.is_empty() {
            return Ok("conf change: nothing to change".into());
        }
        let (change_type, pool) =
            options.swap_remove(self.rng.below(options.len() as u64) as usize);
        let Some(node_id) = self.rng.pick(&pool) else {
            return Ok("conf change: empty pool".into());
        };
        let cc = ConfChange {
            change_type,
            node_id,
            context: bytes::Bytes::new(),
        };
        self.cluster.propose_conf_change(leader, cc)?;
        Ok(format!("propose {change_type:?} {node_id} on {leader}"))
    }

    /// Heals the network, brings every member up and retires non-members (as an operator
    /// would), then lets the group run without faults until it has a stable leader, has
    /// committed a fresh proposal, and every member holds the same state with every
    /// acknowledged proposal in it.
    fn liveness_phase(&mut self) -> Check {
        self.cluster.net.heal();
        let mut fresh: Option<(u64, u64)> = None;
        for round in 0..LIVENESS_ROUNDS {
            self.begin_step();
            let members = self.cluster.committed_members();
            for id in self.cluster.ids().collect::<Vec<_>>() {
                let member = members.contains(&id);
                let up = self.cluster.node(id).is_up();
                if member && !up {
                    self.cluster.restart(id, &mut self.rng)?;
                } else if !member && up {
                    self.cluster.crash(id);
                }
            }
            for id in self.cluster.up_ids() {
                self.cluster.tick(id);
            }
            self.cluster.drain_all()?;
            for _ in 0..32 {
                if self.cluster.net.is_empty() {
                    break;
                }
                for _ in 0..self.cluster.net.len() {
                    let Some(env) = self.cluster.net.take_oldest() else {
                        break;
                    };
                    self.cluster.deliver(env, Fate::Deliver)?;
                }
                self.cluster.drain_all()?;
            }
            self.end_step("liveness round")?;

            let Some(leader) = self.stable_leader(&members) else {
                continue;
            };
            match fresh {
                Some((proposal, _)) if self.cluster.proposals[(proposal - 1) as usize].acked => {
                    if self.converged(leader, &members) {
                        return self.check_acknowledged(&members);
                    }
                }
                Some((_, at)) if round - at < FRESH_PROPOSAL_PATIENCE => {}
                _ => {
                    if let Some(proposal) = self.cluster.propose(leader)? {
                        fresh = Some((proposal, round));
                    }
                }
            }
        }
        Err(Violation::new(
            Invariant::Liveness,
            format!(
                "no stable leader with a committed fresh proposal after {LIVENESS_ROUNDS} fault-free rounds \
                 (members {:?}, fresh proposal {fresh:?})",
                self.cluster.committed_members()
            ),
        ))
    }

    /// The leader every member is up under and agrees on, in one term.
    fn stable_leader(&self, members: &[u64]) -> Option<u64> {
        let leader = *self.cluster.leaders().first()?;
        let term = self.cluster.node(leader).hard_state.term;
        let agreed = members.iter().all(|&m| {
            let node = self.cluster.node(m);
            node.is_up() && node.hard_state.term == term && node.soft_state.leader_id == leader
        });
        (members.contains(&leader) && agreed).then_some(leader)
    }

    /// Every entry the leader holds is committed and every member has applied exactly that.
    fn converged(&self, leader: u64, members: &[u64]) -> bool {
        let l = self.cluster.node(leader);
        let storage = l.storage();
        let last = storage.last_index().unwrap_or(0);
        let all_committed = last == l.hard_state.commit && l.sm.applied == last;
        all_committed
            && members.iter().all(|&m| {
                let node = self.cluster.node(m);
                node.sm.applied == l.sm.applied && node.sm.chain == l.sm.chain
            })
    }

    fn check_acknowledged(&self, members: &[u64]) -> Check {
        let proposals = &self.cluster.proposals;
        for &m in members {
            let mut present = vec![false; proposals.len()];
            for &p in &self.cluster.node(m).sm.proposal_ids {
                if let Some(slot) = p.checked_sub(1).and_then(|i| present.get_mut(i as usize)) {
                    *slot = true;
                }
            }
            for (i, record) in proposals.iter().enumerate() {
                if record.acked && !present[i] {
                    return Err(Violation::new(
                        Invariant::Liveness,
                        format!(
                            "proposal {} (index {}, term {}) was acknowledged by node {} but node {m} never applied it",
                            i + 1,
                            record.index,
                            record.term,
                            record.node
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}
