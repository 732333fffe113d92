//! Whether a region's peer ticks (TiKV's hibernate regions). A store hosting thousands of
//! regions would otherwise spend a heartbeat round on each of them every few ticks, written
//! or not. A leader whose group is at rest asks its followers to hibernate; a follower that
//! rests at the same point agrees and stops ticking; once every peer agreed, the leader stops
//! too. Anything new wakes a peer: a proposal or read, a Raft message other than the leader's
//! heartbeat, a request, or the loss of a store the region has a peer on (which is how
//! followers of a leader that died start their election).

use std::collections::BTreeSet;

/// A peer's hibernation state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) enum Hibernation {
    #[default]
    Awake,
    /// As leader, the group at rest at `index` of `term` for `ticks` ticks; once that is
    /// long enough, asking the followers to hibernate. `agreed` are those that did.
    Asking {
        term: u64,
        index: u64,
        ticks: usize,
        agreed: BTreeSet<u64>,
    },
    /// Not ticking.
    Asleep,
}

impl Hibernation {
    pub fn is_asleep(&self) -> bool {
        *self == Hibernation::Asleep
    }

    /// As leader, on a tick with the group at rest at `index` of `term`: which of `others`
    /// (every other peer of the region) to ask now. A new rest point starts a new round, whose
    /// asks go out once the rest point has held for `quiet` ticks: a follower agrees only once
    /// it knows the last commit, which reaches it with a heartbeat round, so asking a region
    /// between two writes would only be refused (with hundreds of busy regions that was
    /// thousands of signals a second). Once all of them agreed the leader is asleep and asks
    /// no one.
    pub fn ask(&mut self, term: u64, index: u64, others: &[u64], quiet: usize) -> Vec<u64> {
        match self {
            Hibernation::Asking {
                term: t,
                index: i,
                ticks,
                ..
            } if *t == term && *i == index => *ticks = ticks.saturating_add(1),
            Hibernation::Asleep => {}
            _ => {
                *self = Hibernation::Asking {
                    term,
                    index,
                    ticks: 1,
                    agreed: BTreeSet::new(),
                }
            }
        }
        self.settle(others);
        match self {
            Hibernation::Asking { agreed, ticks, .. } if *ticks >= quiet => others
                .iter()
                .copied()
                .filter(|p| !agreed.contains(p))
                .collect(),
            _ => Vec::new(),
        }
    }

    /// As leader: `from` agreed to hibernate at `index` of `term`. True when the leader is now
    /// asleep (everyone in `others` agreed to this round).
    pub fn agreed(&mut self, from: u64, term: u64, index: u64, others: &[u64]) -> bool {
        if let Hibernation::Asking {
            term: t,
            index: i,
            agreed,
            ..
        } = self
            && *t == term
            && *i == index
        {
            agreed.insert(from);
            self.settle(others);
            return self.is_asleep();
        }
        false
    }

    /// As leader: the group is no longer at rest; a round under way is void.
    pub fn unsettle(&mut self) {
        if matches!(self, Hibernation::Asking { .. }) {
            *self = Hibernation::Awake;
        }
    }

    /// As follower: agreed to hibernate.
    pub fn sleep(&mut self) {
        *self = Hibernation::Asleep;
    }

    /// Wakes the peer; true when it was asleep.
    pub fn wake(&mut self) -> bool {
        std::mem::take(self) == Hibernation::Asleep
    }

    fn settle(&mut self, others: &[u64]) {
        if let Hibernation::Asking { agreed, .. } = self
            && others.iter().all(|p| agreed.contains(p))
        {
            *self = Hibernation::Asleep;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_leader_sleeps_once_every_other_peer_agreed_to_the_same_rest_point() {
        let mut h = Hibernation::default();
        assert_eq!(h.ask(2, 10, &[2, 3], 1), vec![2, 3]);
        assert!(!h.agreed(2, 2, 10, &[2, 3]));
        assert_eq!(
            h.ask(2, 10, &[2, 3], 1),
            vec![3],
            "only who has not agreed is asked again"
        );
        assert!(
            !h.agreed(3, 2, 9, &[2, 3]),
            "an answer to an older round counts for nothing"
        );
        assert!(!h.agreed(3, 3, 10, &[2, 3]), "nor one of another term");
        assert!(!h.is_asleep());
        assert!(h.agreed(3, 2, 10, &[2, 3]));
        assert!(h.is_asleep());
        assert_eq!(h.ask(2, 10, &[2, 3], 1), Vec::<u64>::new());
    }

    #[test]
    fn a_new_rest_point_starts_a_new_round() {
        let mut h = Hibernation::default();
        h.ask(2, 10, &[2, 3], 1);
        h.agreed(2, 2, 10, &[2, 3]);
        assert_eq!(
            h.ask(2, 11, &[2, 3], 1),
            vec![2, 3],
            "2 agreed to 10, not 11"
        );
        assert!(!h.agreed(3, 2, 10, &[2, 3]));
        h.unsettle();
        assert_eq!(h, Hibernation::Awake);
        assert!(!h.agreed(2, 2, 11, &[2, 3]), "no round is under way");
    }

    #[test]
    fn a_rest_point_is_asked_about_once_it_held_for_the_quiet_ticks() {
        let mut h = Hibernation::default();
        assert_eq!(h.ask(2, 10, &[2, 3], 3), Vec::<u64>::new());
        assert_eq!(h.ask(2, 10, &[2, 3], 3), Vec::<u64>::new());
        // A write between two ticks: the count starts again.
        assert_eq!(h.ask(2, 11, &[2, 3], 3), Vec::<u64>::new());
        assert_eq!(h.ask(2, 11, &[2, 3], 3), Vec::<u64>::new());
        assert_eq!(h.ask(2, 11, &[2, 3], 3), vec![2, 3]);
        assert!(!h.agreed(2, 2, 11, &[2, 3]));
        assert_eq!(h.ask(2, 11, &[2, 3], 3), vec![3]);
        assert!(h.agreed(3, 2, 11, &[2, 3]));
        assert!(h.is_asleep());
        // Going to sleep is no new rest point, and an unsettled round starts from nothing.
        assert_eq!(h.ask(2, 11, &[2, 3], 3), Vec::<u64>::new());
        assert!(h.is_asleep());
        h.wake();
        h.ask(3, 20, &[2, 3], 3);
        h.unsettle();
        assert_eq!(h.ask(3, 20, &[2, 3], 3), Vec::<u64>::new());
    }

    #[test]
    fn a_lone_leader_sleeps_at_once() {
        let mut h = Hibernation::default();
        assert_eq!(h.ask(1, 5, &[], 4), Vec::<u64>::new());
        assert!(h.is_asleep());
    }

    #[test]
    fn waking_says_whether_the_peer_slept() {
        let mut h = Hibernation::default();
        assert!(!h.wake());
        h.ask(1, 5, &[2], 1);
        assert!(!h.wake(), "asking is not sleeping");
        assert_eq!(h, Hibernation::Awake);
        h.sleep();
        assert!(h.wake());
        assert!(!h.is_asleep());
    }
}
