//! Acting on a store at most once per backoff (TiKV's store-unreachable backoff). Used for
//! unreachable stores: a report walks every region with a peer on the store, and a send to a
//! dead store fails for every message. Raft's answer to a report (stop streaming to the peer,
//! probe it once per heartbeat) lasts until the peer answers, so a report repeated sooner would
//! change nothing. Used too for looking up a store's unknown address (`resolve.rs`): one
//! lookup at a time is enough.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// The least time between two acts on one store.
pub(super) const UNREACHABLE_BACKOFF: Duration = Duration::from_secs(1);

#[derive(Debug, Default)]
pub(super) struct StoreBackoff {
    last: HashMap<u64, Instant>,
}

impl StoreBackoff {
    /// Whether to act on `store_id` at `now` (and, if so, that it was acted on).
    pub fn should_act(&mut self, store_id: u64, now: Instant) -> bool {
        match self.last.get(&store_id) {
            Some(at) if now.saturating_duration_since(*at) < UNREACHABLE_BACKOFF => false,
            _ => {
                self.last.insert(store_id, now);
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_is_reported_at_most_once_per_backoff() {
        let mut reports = StoreBackoff::default();
        let t0 = Instant::now();
        assert!(reports.should_act(2, t0));
        assert!(!reports.should_act(2, t0 + UNREACHABLE_BACKOFF / 2));
        // Another store is its own matter.
        assert!(reports.should_act(3, t0 + UNREACHABLE_BACKOFF / 2));
        assert!(reports.should_act(2, t0 + UNREACHABLE_BACKOFF));
        assert!(!reports.should_act(2, t0 + UNREACHABLE_BACKOFF));
    }
}
