//! Group membership as the Raft core sees it: a [`Progress`] per peer, the votes of an election,
//! and the quorum arithmetic over voters (learners never count).

use std::collections::BTreeMap;

use crate::message::ConfState;
use crate::progress::Progress;

/// The outcome of an election so far.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum VoteResult {
    Pending,
    Won,
    Lost,
}

/// Peers by id. A `BTreeMap` so that messages go out in a fixed order and runs replay.
#[derive(Clone, Debug, Default)]
pub(crate) struct ProgressTracker {
    pub(crate) progress: BTreeMap<u64, Progress>,
    votes: BTreeMap<u64, bool>,
}

impl ProgressTracker {
    pub(crate) fn get(&self, id: u64) -> Option<&Progress> {
        self.progress.get(&id)
    }

    pub(crate) fn get_mut(&mut self, id: u64) -> Option<&mut Progress> {
        self.progress.get_mut(&id)
    }

    pub(crate) fn contains(&self, id: u64) -> bool {
        self.progress.contains_key(&id)
    }

    pub(crate) fn is_voter(&self, id: u64) -> bool {
        self.progress.get(&id).is_some_and(|p| !p.is_learner)
    }

    pub(crate) fn voter_ids(&self) -> impl Iterator<Item = u64> + '_ {
        self.progress
            .iter()
            .filter(|(_, p)| !p.is_learner)
            .map(|(id, _)| *id)
    }

    pub(crate) fn voter_count(&self) -> usize {
        self.voter_ids().count()
    }

    /// The number of voters that makes a majority.
    pub(crate) fn quorum(&self) -> usize {
        self.voter_count() / 2 + 1
    }

    pub(crate) fn conf_state(&self) -> ConfState {
        let mut cs = ConfState::default();
        for (id, p) in &self.progress {
            if p.is_learner {
                cs.learners.push(*id);
            } else {
                cs.voters.push(*id);
            }
        }
        cs
    }

    pub(crate) fn insert(&mut self, id: u64, progress: Progress) {
        self.progress.insert(id, progress);
    }

    pub(crate) fn remove(&mut self, id: u64) {
        self.progress.remove(&id);
        self.votes.remove(&id);
    }

    pub(crate) fn clear(&mut self) {
        self.progress.clear();
        self.votes.clear();
    }

    /// The highest index a quorum of voters has matched; 0 when there are no voters.
    pub(crate) fn quorum_matched(&self) -> u64 {
        let mut matched: Vec<u64> = self
            .progress
            .values()
            .filter(|p| !p.is_learner)
            .map(|p| p.matched)
            .collect();
        if matched.is_empty() {
            return 0;
        }
        matched.sort_unstable_by(|a, b| b.cmp(a));
        matched[self.quorum() - 1]
    }

    /// Whether a quorum of voters was heard from recently (`self_id` always counts).
    pub(crate) fn quorum_active(&self, self_id: u64) -> bool {
        let active = self
            .progress
            .iter()
            .filter(|(id, p)| !p.is_learner && (p.recent_active || **id == self_id))
            .count();
        self.voter_count() > 0 && active >= self.quorum()
    }

    pub(crate) fn reset_votes(&mut self) {
        self.votes.clear();
    }

    /// Records `id`'s vote (the first one counts) and tallies voters only.
    pub(crate) fn record_vote(&mut self, id: u64, granted: bool) -> VoteResult {
        if self.is_voter(id) {
            self.votes.entry(id).or_insert(granted);
        }
        self.tally()
    }

    pub(crate) fn tally(&self) -> VoteResult {
        let (mut granted, mut rejected) = (0, 0);
        for (id, v) in &self.votes {
            if !self.is_voter(*id) {
                continue;
            }
            if *v {
                granted += 1;
            } else {
                rejected += 1;
            }
        }
        let quorum = self.quorum();
        if granted >= quorum {
            VoteResult::Won
        } else if self.voter_count() - rejected < quorum {
            VoteResult::Lost
        } else {
            VoteResult::Pending
        }
    }

    #[cfg(test)]
    pub(crate) fn vote_of(&self, id: u64) -> Option<bool> {
        self.votes.get(&id).copied()
    }

    /// Whether the voters among `acks` make a quorum.
    pub(crate) fn has_quorum<'a>(&self, acks: impl Iterator<Item = &'a u64>) -> bool {
        acks.filter(|id| self.is_voter(**id)).count() >= self.quorum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tracker(voters: &[u64], learners: &[u64]) -> ProgressTracker {
        let mut t = ProgressTracker::default();
        for &v in voters {
            t.insert(v, Progress::new(1, 4, false));
        }
        for &l in learners {
            t.insert(l, Progress::new(1, 4, true));
        }
        t
    }

    #[test]
    fn quorum_matched_ignores_learners() {
        let mut t = tracker(&[1, 2, 3], &[4]);
        for (id, m) in [(1, 5), (2, 3), (3, 1), (4, 9)] {
            t.get_mut(id).unwrap().matched = m;
        }
        assert_eq!(t.quorum_matched(), 3);
        t.remove(3);
        assert_eq!(t.quorum_matched(), 3);
        assert_eq!(
            t.conf_state(),
            ConfState {
                voters: vec![1, 2],
                learners: vec![4]
            }
        );
    }

    #[test]
    fn votes_count_once_and_only_from_voters() {
        let mut t = tracker(&[1, 2, 3, 4, 5], &[6]);
        assert_eq!(t.record_vote(1, true), VoteResult::Pending);
        assert_eq!(t.record_vote(6, true), VoteResult::Pending);
        assert_eq!(t.record_vote(2, false), VoteResult::Pending);
        assert_eq!(t.record_vote(2, true), VoteResult::Pending);
        assert_eq!(t.record_vote(3, false), VoteResult::Pending);
        assert_eq!(t.record_vote(4, false), VoteResult::Lost);
        let mut t = tracker(&[1, 2, 3], &[]);
        t.record_vote(1, true);
        assert_eq!(t.record_vote(3, true), VoteResult::Won);
    }
}
