//! Fault injection for tests: drop, delay or block traffic to or from chosen stores.
//!
//! Compiled into every build but inert until rules are set; with no rules a check is one relaxed
//! atomic load. Rules are consulted on the outgoing and incoming Raft-message and snapshot paths
//! (not on RPC), so cluster tests can partition nodes while clients still reach them.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Which way traffic flows relative to this endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Outgoing,
    Incoming,
    Both,
}

impl Direction {
    fn covers(self, way: Direction) -> bool {
        self == Direction::Both || self == way
    }
}

/// Which traffic a rule applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Traffic {
    Raft,
    Snapshot,
    All,
}

impl Traffic {
    fn covers(self, kind: Traffic) -> bool {
        self == Traffic::All || self == kind
    }
}

/// What happens to matching traffic.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Action {
    /// Silently discard a fraction (0.0..=1.0) of matching messages, chosen by the seeded RNG.
    /// Snapshots that are dropped fail on the sending side as if lost.
    Drop { fraction: f64 },
    /// Hold matching traffic back for this long before it continues.
    Delay(Duration),
    /// Act as if the store were unreachable: outgoing messages are discarded and reported
    /// unreachable to the node, snapshots fail, incoming traffic is discarded or refused.
    Block,
}

/// One rule: `action` for `traffic` going `direction` to or from `stores` (empty = every store).
#[derive(Clone, Debug, PartialEq)]
pub struct Rule {
    pub stores: Vec<u64>,
    pub direction: Direction,
    pub traffic: Traffic,
    pub action: Action,
}

impl Rule {
    /// Drops all Raft messages and snapshots exchanged with `stores` in both directions.
    pub fn drop_all(stores: &[u64]) -> Self {
        Self::new(
            stores,
            Direction::Both,
            Traffic::All,
            Action::Drop { fraction: 1.0 },
        )
    }

    /// Drops `fraction` of the Raft messages exchanged with `stores`.
    pub fn drop_fraction(stores: &[u64], fraction: f64) -> Self {
        Self::new(
            stores,
            Direction::Both,
            Traffic::Raft,
            Action::Drop { fraction },
        )
    }

    /// Delays all traffic exchanged with `stores` by `delay`.
    pub fn delay(stores: &[u64], delay: Duration) -> Self {
        Self::new(stores, Direction::Both, Traffic::All, Action::Delay(delay))
    }

    /// Partitions this endpoint from `stores`.
    pub fn block(stores: &[u64]) -> Self {
        Self::new(stores, Direction::Both, Traffic::All, Action::Block)
    }

    pub fn new(stores: &[u64], direction: Direction, traffic: Traffic, action: Action) -> Self {
        Self {
            stores: stores.to_vec(),
            direction,
            traffic,
            action,
        }
    }

    /// Restricts the rule to one direction.
    pub fn only(mut self, direction: Direction) -> Self {
        self.direction = direction;
        self
    }

    /// Restricts the rule to one kind of traffic.
    pub fn for_traffic(mut self, traffic: Traffic) -> Self {
        self.traffic = traffic;
        self
    }

    fn matches(&self, way: Direction, kind: Traffic, store: u64) -> bool {
        self.direction.covers(way)
            && self.traffic.covers(kind)
            && (self.stores.is_empty() || self.stores.contains(&store))
    }
}

/// The filter's decision for one message or snapshot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    Drop,
    Delay(Duration),
    Block,
}

/// Seed used until [`Filter::reseed`] is called, so fractional drops replay identically.
const DEFAULT_SEED: u64 = 0x7469_6e79_6b76;

/// The set of active rules of one endpoint; shared by all its paths.
#[derive(Debug)]
pub struct Filter {
    active: AtomicBool,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    rules: Vec<Rule>,
    rng: StdRng,
}

impl Default for Filter {
    fn default() -> Self {
        Self {
            active: AtomicBool::new(false),
            state: Mutex::new(State {
                rules: Vec::new(),
                rng: StdRng::seed_from_u64(DEFAULT_SEED),
            }),
        }
    }
}

impl Filter {
    /// Replaces all rules.
    pub fn set(&self, rules: Vec<Rule>) {
        let mut state = self.lock();
        self.active.store(!rules.is_empty(), Ordering::Release);
        state.rules = rules;
    }

    /// Removes all rules.
    pub fn clear(&self) {
        self.set(Vec::new());
    }

    /// Adds one rule to the existing ones.
    pub fn add(&self, rule: Rule) {
        let mut state = self.lock();
        state.rules.push(rule);
        self.active.store(true, Ordering::Release);
    }

    /// Restarts the RNG behind fractional drops from `seed`.
    pub fn reseed(&self, seed: u64) {
        self.lock().rng = StdRng::seed_from_u64(seed);
    }

    pub fn rules(&self) -> Vec<Rule> {
        self.lock().rules.clone()
    }

    /// Whether any rules are set.
    pub fn is_active(&self) -> bool {
        self.active.load(Ordering::Acquire)
    }

    /// Whether the rules cut `store` off entirely in at least one direction (blocked, or all
    /// its Raft traffic dropped): over a real network its connection would time out.
    pub fn cuts_off(&self, store: u64) -> bool {
        if !self.is_active() {
            return false;
        }
        let state = self.lock();
        [Direction::Outgoing, Direction::Incoming]
            .iter()
            .any(|&way| {
                state.rules.iter().any(|r| {
                    r.matches(way, Traffic::Raft, store)
                        && match r.action {
                            Action::Block => true,
                            Action::Drop { fraction } => fraction >= 1.0,
                            Action::Delay(_) => false,
                        }
                })
            })
    }

    /// Decides the fate of traffic of `kind` going `way` (Outgoing or Incoming) to/from `store`.
    /// Block wins over Drop, which wins over Delay; delays of several rules do not add up.
    pub fn check(&self, way: Direction, kind: Traffic, store: u64) -> Verdict {
        if !self.active.load(Ordering::Acquire) {
            return Verdict::Pass;
        }
        let mut state = self.lock();
        let State { rules, rng } = &mut *state;
        let mut delay = None::<Duration>;
        let mut dropped = false;
        for rule in rules.iter().filter(|r| r.matches(way, kind, store)) {
            match rule.action {
                Action::Block => return Verdict::Block,
                Action::Drop { fraction } => {
                    // One draw per matching rule keeps the sequence a function of the seed and
                    // the traffic alone.
                    if fraction >= 1.0 || (fraction > 0.0 && rng.random::<f64>() < fraction) {
                        dropped = true;
                    }
                }
                Action::Delay(d) => delay = Some(delay.map_or(d, |cur| cur.max(d))),
            }
        }
        match (dropped, delay) {
            (true, _) => Verdict::Drop,
            (false, Some(d)) => Verdict::Delay(d),
            (false, None) => Verdict::Pass,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The state has no invariant a panicking holder could break, so poisoning is ignored.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_filter_passes_everything() {
        let f = Filter::default();
        assert_eq!(
            f.check(Direction::Outgoing, Traffic::Raft, 1),
            Verdict::Pass
        );
    }

    #[test]
    fn rules_match_store_direction_and_traffic() {
        let f = Filter::default();
        f.set(vec![
            Rule::block(&[2])
                .only(Direction::Outgoing)
                .for_traffic(Traffic::Snapshot),
        ]);
        assert_eq!(
            f.check(Direction::Outgoing, Traffic::Snapshot, 2),
            Verdict::Block
        );
        assert_eq!(
            f.check(Direction::Incoming, Traffic::Snapshot, 2),
            Verdict::Pass
        );
        assert_eq!(
            f.check(Direction::Outgoing, Traffic::Raft, 2),
            Verdict::Pass
        );
        assert_eq!(
            f.check(Direction::Outgoing, Traffic::Snapshot, 3),
            Verdict::Pass
        );
        f.clear();
        assert_eq!(
            f.check(Direction::Outgoing, Traffic::Snapshot, 2),
            Verdict::Pass
        );
    }

    #[test]
    fn precedence_is_block_then_drop_then_longest_delay() {
        let f = Filter::default();
        f.set(vec![
            Rule::delay(&[], Duration::from_millis(5)),
            Rule::delay(&[1], Duration::from_millis(9)),
            Rule::drop_all(&[2]),
            Rule::block(&[3]),
        ]);
        assert_eq!(
            f.check(Direction::Incoming, Traffic::Raft, 1),
            Verdict::Delay(Duration::from_millis(9))
        );
        assert_eq!(
            f.check(Direction::Incoming, Traffic::Raft, 2),
            Verdict::Drop
        );
        assert_eq!(
            f.check(Direction::Incoming, Traffic::Raft, 3),
            Verdict::Block
        );
        assert_eq!(
            f.check(Direction::Incoming, Traffic::Raft, 4),
            Verdict::Delay(Duration::from_millis(5))
        );
    }

    #[test]
    fn fractional_drop_is_seeded_and_near_the_fraction() {
        let run = |seed| {
            let f = Filter::default();
            f.reseed(seed);
            f.set(vec![Rule::drop_fraction(&[], 0.3)]);
            (0..10_000)
                .map(|_| f.check(Direction::Outgoing, Traffic::Raft, 1) == Verdict::Drop)
                .collect::<Vec<_>>()
        };
        let a = run(42);
        assert_eq!(a, run(42));
        assert_ne!(a, run(43));
        let dropped = a.iter().filter(|d| **d).count();
        assert!(
            (2_700..3_300).contains(&dropped),
            "dropped {dropped} of 10000"
        );
    }
}
