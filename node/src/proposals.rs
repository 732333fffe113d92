//! A peer's proposals waiting for their entries to apply. Each is answered exactly once: with its
//! result when the entry it created applies (same index and term), or `StaleCommand` when the log
//! moved on without it (another entry took its index, or the peer lost its leadership).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// One waiting proposal; `reply` is whatever answers the caller.
#[derive(Debug)]
pub struct Proposal<R> {
    pub index: u64,
    pub term: u64,
    pub reply: R,
    /// When it was proposed, for the proposal latency metric.
    pub at: Instant,
}

/// Proposals in log order (a leader's proposals get increasing indices).
#[derive(Debug)]
pub struct ProposalQueue<R> {
    queue: VecDeque<Proposal<R>>,
}

impl<R> Default for ProposalQueue<R> {
    fn default() -> Self {
        ProposalQueue {
            queue: VecDeque::new(),
        }
    }
}

/// What became of the proposals an applied entry concerns.
#[derive(Debug)]
pub struct Settled<R> {
    /// The proposal this entry fulfils, if any.
    pub done: Option<R>,
    /// Proposals overtaken by this entry: answer them `StaleCommand`.
    pub stale: Vec<R>,
    /// How long the fulfilled proposal waited for its entry to apply.
    pub waited: Option<Duration>,
}

impl<R> ProposalQueue<R> {
    /// Adds a proposal. Proposals made in a new term may reuse indices of an older term's
    /// uncommitted tail; those older ones can never apply, so they are returned to be answered
    /// `StaleCommand`.
    pub fn push(&mut self, index: u64, term: u64, reply: R) -> Vec<R> {
        let mut stale = Vec::new();
        while self.queue.back().is_some_and(|p| p.index >= index) {
            if let Some(p) = self.queue.pop_back() {
                stale.push(p.reply);
            }
        }
        self.queue.push_back(Proposal {
            index,
            term,
            reply,
            at: Instant::now(),
        });
        stale
    }

    pub fn len(&self) -> usize {
        self.queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// The entry at `index` with `term` was applied.
    pub fn settle(&mut self, index: u64, term: u64) -> Settled<R> {
        let mut settled = Settled {
            done: None,
            stale: Vec::new(),
            waited: None,
        };
        while let Some(front) = self.queue.front() {
            if front.index > index {
                break;
            }
            let Some(p) = self.queue.pop_front() else {
                break;
            };
            let (pi, pt, reply) = (p.index, p.term, p.reply);
            if pi == index && pt == term {
                settled.done = Some(reply);
                settled.waited = Some(p.at.elapsed());
            } else {
                // Either an earlier index that will never apply (it was skipped only if it was
                // overwritten) or this index with another term: overtaken.
                settled.stale.push(reply);
            }
        }
        settled
    }

    /// Every waiting proposal, for when the peer stops (removed, shut down) or steps down.
    pub fn take_all(&mut self) -> Vec<R> {
        self.queue.drain(..).map(|p| p.reply).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn applied_entry_answers_its_proposal() {
        let mut q = ProposalQueue::default();
        q.push(6, 2, "a");
        q.push(7, 2, "b");
        let s = q.settle(6, 2);
        assert_eq!(s.done, Some("a"));
        assert!(s.stale.is_empty());
        assert!(s.waited.is_some());
        assert_eq!(q.len(), 1);
    }

    #[test]
    fn entries_of_another_term_make_proposals_stale() {
        let mut q = ProposalQueue::default();
        q.push(6, 2, "a");
        q.push(7, 2, "b");
        q.push(8, 2, "c");
        // A new leader wrote index 7 in term 3: "a" is passed (6 applied earlier without it).
        let s = q.settle(7, 3);
        assert_eq!(s.done, None);
        assert_eq!(s.stale, vec!["a", "b"]);
        assert_eq!(q.take_all(), vec!["c"]);
        assert!(q.is_empty());
    }

    #[test]
    fn a_new_term_reusing_indices_drops_the_old_tail() {
        let mut q = ProposalQueue::default();
        assert!(q.push(6, 2, "a").is_empty());
        assert!(q.push(7, 2, "b").is_empty());
        assert_eq!(q.push(7, 3, "c"), vec!["b"]);
        assert_eq!(q.settle(7, 3).done, Some("c"));
    }

    #[test]
    fn earlier_entries_leave_later_proposals_waiting() {
        let mut q = ProposalQueue::default();
        q.push(10, 4, "a");
        let s = q.settle(9, 4);
        assert!(s.done.is_none() && s.stale.is_empty());
        assert_eq!(q.len(), 1);
    }
}
