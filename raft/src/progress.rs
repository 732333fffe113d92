//! What a leader knows about one peer's log, and how it decides what to send next.

use crate::inflights::Inflights;
use crate::raw_node::{PeerProgress, ProgressState};

/// Replication progress of one peer, kept by the leader.
#[derive(Clone, Debug)]
pub(crate) struct Progress {
    /// The highest index known to be replicated on the peer.
    pub(crate) matched: u64,
    /// The index of the next entry to send.
    pub(crate) next_idx: u64,
    pub(crate) state: ProgressState,
    /// The snapshot index sent while in `Snapshot` state.
    pub(crate) pending_snapshot: u64,
    /// Ticks spent in `Snapshot` state; past the configured limit the snapshot counts as lost.
    pub(crate) snapshot_ticks: usize,
    /// In `Probe` state, one append is outstanding and no other goes until an answer comes.
    pub(crate) probe_sent: bool,
    /// Heard from within the current check-quorum period.
    pub(crate) recent_active: bool,
    pub(crate) is_learner: bool,
    pub(crate) ins: Inflights,
    /// An append went to the peer since the last heartbeat round, which then leaves it out
    /// (see `Raft::bcast_heartbeat_with_ctx`).
    pub(crate) appended: bool,
}

impl Progress {
    pub(crate) fn new(next_idx: u64, max_inflight: usize, is_learner: bool) -> Progress {
        Progress {
            matched: 0,
            next_idx,
            state: ProgressState::Probe,
            pending_snapshot: 0,
            snapshot_ticks: 0,
            probe_sent: false,
            recent_active: false,
            is_learner,
            ins: Inflights::new(max_inflight),
            appended: false,
        }
    }

    /// Forgets everything about the peer's log except that it may need entries from `next_idx`.
    pub(crate) fn reset(&mut self, next_idx: u64) {
        self.matched = 0;
        self.next_idx = next_idx;
        self.reset_state(ProgressState::Probe);
        self.recent_active = false;
        self.appended = false;
    }

    fn reset_state(&mut self, state: ProgressState) {
        self.state = state;
        self.probe_sent = false;
        self.pending_snapshot = 0;
        self.snapshot_ticks = 0;
        self.ins.reset();
    }

    pub(crate) fn become_probe(&mut self) {
        // After a snapshot the peer holds at least the snapshot, unless the send failed (then
        // `pending_snapshot` was cleared first).
        let next = if self.state == ProgressState::Snapshot {
            self.matched.max(self.pending_snapshot) + 1
        } else {
            self.matched + 1
        };
        self.reset_state(ProgressState::Probe);
        self.next_idx = next;
    }

    pub(crate) fn become_replicate(&mut self) {
        self.reset_state(ProgressState::Replicate);
        self.next_idx = self.matched + 1;
    }

    pub(crate) fn become_snapshot(&mut self, snapshot_index: u64) {
        self.reset_state(ProgressState::Snapshot);
        self.pending_snapshot = snapshot_index;
    }

    /// The peer acknowledged `n`; returns whether that is news.
    pub(crate) fn maybe_update(&mut self, n: u64) -> bool {
        let updated = self.matched < n;
        if updated {
            self.matched = n;
            self.probe_sent = false;
        }
        if self.next_idx < n + 1 {
            self.next_idx = n + 1;
        }
        updated
    }

    /// Entries up to `n` were sent optimistically.
    pub(crate) fn optimistic_update(&mut self, n: u64) {
        self.next_idx = n + 1;
    }

    /// The peer rejected an append at `rejected`; `match_hint` is the highest index where the
    /// logs may still agree. Returns false when the rejection is stale.
    pub(crate) fn maybe_decr_to(&mut self, rejected: u64, match_hint: u64) -> bool {
        if self.state == ProgressState::Replicate {
            if rejected <= self.matched {
                return false;
            }
            self.next_idx = self.matched + 1;
            return true;
        }
        // In probe state only the answer to the last probe (sent at next - 1) counts.
        if self.next_idx == 0 || self.next_idx - 1 != rejected {
            return false;
        }
        self.next_idx = rejected
            .min(match_hint.saturating_add(1))
            .max(self.matched + 1)
            .max(1);
        self.probe_sent = false;
        true
    }

    pub(crate) fn is_paused(&self) -> bool {
        match self.state {
            ProgressState::Probe => self.probe_sent,
            ProgressState::Replicate => self.ins.full(),
            ProgressState::Snapshot => true,
        }
    }

    pub(crate) fn to_public(&self) -> PeerProgress {
        PeerProgress {
            matched: self.matched,
            next_idx: self.next_idx,
            state: self.state,
            pending_snapshot: self.pending_snapshot,
            recent_active: self.recent_active,
            is_learner: self.is_learner,
            paused: self.is_paused(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decr_in_probe_ignores_stale_rejections() {
        let mut pr = Progress::new(10, 4, false);
        pr.matched = 3;
        // A rejection for an append we did not last send is stale.
        assert!(!pr.maybe_decr_to(5, 5));
        assert!(pr.maybe_decr_to(9, 6));
        assert_eq!(pr.next_idx, 7);
        // The hint never takes next below matched + 1.
        assert!(pr.maybe_decr_to(6, 0));
        assert_eq!(pr.next_idx, 4);
    }

    #[test]
    fn decr_in_replicate_falls_back_to_matched() {
        let mut pr = Progress::new(10, 4, false);
        pr.matched = 5;
        pr.become_replicate();
        pr.optimistic_update(9);
        assert!(!pr.maybe_decr_to(5, 5));
        assert!(pr.maybe_decr_to(8, 2));
        assert_eq!(pr.next_idx, 6);
    }

    #[test]
    fn update_and_pause_rules() {
        let mut pr = Progress::new(5, 2, false);
        pr.probe_sent = true;
        assert!(pr.is_paused());
        assert!(pr.maybe_update(4));
        assert!(!pr.is_paused());
        assert!(!pr.maybe_update(4));
        assert_eq!(pr.next_idx, 5);
        pr.become_snapshot(20);
        assert!(pr.is_paused());
        pr.become_probe();
        assert_eq!(pr.next_idx, 21);
        pr.become_replicate();
        assert_eq!(pr.next_idx, 5);
        pr.ins.add(6);
        pr.ins.add(7);
        assert!(pr.is_paused());
    }
}
