//! The window of append messages a leader has in flight to one peer.

use std::collections::VecDeque;

/// Last indices of the appends sent and not yet acknowledged, oldest first. Bounding it keeps a
/// slow peer from being flooded while replicating optimistically.
#[derive(Clone, Debug)]
pub(crate) struct Inflights {
    cap: usize,
    last_indices: VecDeque<u64>,
}

impl Inflights {
    pub(crate) fn new(cap: usize) -> Inflights {
        Inflights {
            cap,
            last_indices: VecDeque::new(),
        }
    }

    pub(crate) fn full(&self) -> bool {
        self.last_indices.len() >= self.cap
    }

    #[cfg(test)]
    pub(crate) fn count(&self) -> usize {
        self.last_indices.len()
    }

    pub(crate) fn add(&mut self, last_index: u64) {
        self.last_indices.push_back(last_index);
    }

    /// Frees every append whose last index is at or below `to` (the peer acknowledged it).
    pub(crate) fn free_to(&mut self, to: u64) {
        while self.last_indices.front().is_some_and(|&i| i <= to) {
            self.last_indices.pop_front();
        }
    }

    /// Frees the oldest slot: a heartbeat answer proves the peer is alive, so one more append may
    /// go out even if acknowledgements were lost.
    pub(crate) fn free_first_one(&mut self) {
        self.last_indices.pop_front();
    }

    pub(crate) fn reset(&mut self) {
        self.last_indices.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_fills_and_frees() {
        let mut ins = Inflights::new(3);
        for i in [2, 4, 6] {
            assert!(!ins.full());
            ins.add(i);
        }
        assert!(ins.full());
        ins.free_to(3);
        assert_eq!(ins.count(), 2);
        ins.free_to(3);
        assert_eq!(ins.count(), 2);
        ins.free_first_one();
        assert_eq!(ins.count(), 1);
        ins.free_to(100);
        assert_eq!(ins.count(), 0);
        ins.add(9);
        ins.reset();
        assert_eq!(ins.count(), 0);
    }
}
