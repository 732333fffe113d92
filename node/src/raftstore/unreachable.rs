//! Which unreachable stores to report to the regions: a report walks every region with a peer
//! on the store, and a send to a dead store fails for every message, so a store is reported at
//! most once per backoff (TiKV's store-unreachable backoff). Raft's answer to a report (stop
//! streaming to the peer, probe it once per heartbeat) lasts until the peer answers, so a
//! report repeated sooner would change nothing.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// The least time between two reports of one store.
pub(super) const UNREACHABLE_BACKOFF: Duration = Duration::from_secs(1);

#[derive(Debug, Default)]
pub(super) struct UnreachableReports {
    last: HashMap<u64, Instant>,
}

impl UnreachableReports {
    /// Whether `store_id`, found unreachable at `now`, is to be reported to its regions.
    pub fn should_report(&mut self, store_id: u64, now: Instant) -> bool {
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
        let mut reports = UnreachableReports::default();
        let t0 = Instant::now();
        assert!(reports.should_report(2, t0));
        assert!(!reports.should_report(2, t0 + UNREACHABLE_BACKOFF / 2));
        // Another store is its own matter.
        assert!(reports.should_report(3, t0 + UNREACHABLE_BACKOFF / 2));
        assert!(reports.should_report(2, t0 + UNREACHABLE_BACKOFF));
        assert!(!reports.should_report(2, t0 + UNREACHABLE_BACKOFF));
    }
}
