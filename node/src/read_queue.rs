//! Linearizable reads waiting on ReadIndex. Reads that arrive in the same turn of the raft loop
//! share one ReadIndex round (one heartbeat round for many reads); a round's reads run once the
//! applied index reaches the read index Raft confirmed for it.

use std::collections::VecDeque;

use bytes::Bytes;

/// One ReadIndex round and the reads riding on it.
#[derive(Debug)]
struct Round<R> {
    id: u64,
    /// Set once Raft confirmed the round.
    index: Option<u64>,
    reads: Vec<R>,
}

#[derive(Debug)]
pub struct ReadQueue<R> {
    next_id: u64,
    /// Reads not yet sent to Raft.
    incoming: Vec<R>,
    /// Rounds in the order they were sent; Raft confirms them in that order.
    rounds: VecDeque<Round<R>>,
}

impl<R> Default for ReadQueue<R> {
    fn default() -> Self {
        ReadQueue {
            next_id: 1,
            incoming: Vec::new(),
            rounds: VecDeque::new(),
        }
    }
}

impl<R> ReadQueue<R> {
    pub fn push(&mut self, read: R) {
        self.incoming.push(read);
    }

    /// Starts a round for the reads that arrived since the last one; returns the context to pass
    /// to `RawNode::read_index`, or `None` when nothing waits.
    pub fn start_round(&mut self) -> Option<Bytes> {
        if self.incoming.is_empty() {
            return None;
        }
        let id = self.next_id;
        self.next_id += 1;
        let reads = std::mem::take(&mut self.incoming);
        self.rounds.push_back(Round {
            id,
            index: None,
            reads,
        });
        Some(Bytes::copy_from_slice(&id.to_be_bytes()))
    }

    /// Raft confirmed the round with this context at `index`. Unknown contexts are ignored.
    pub fn confirm(&mut self, ctx: &[u8], index: u64) {
        let Ok(id) = <[u8; 8]>::try_from(ctx).map(u64::from_be_bytes) else {
            return;
        };
        if let Some(round) = self.rounds.iter_mut().find(|r| r.id == id) {
            round.index = Some(index);
        }
    }

    /// Reads whose rounds are confirmed at or below `applied`, in arrival order.
    pub fn ready(&mut self, applied: u64) -> Vec<R> {
        let mut out = Vec::new();
        // Rounds are confirmed in order, but check each: a later round may be confirmed while an
        // earlier one is lost (its heartbeat round never reached a quorum).
        let mut i = 0;
        while i < self.rounds.len() {
            if self.rounds[i].index.is_some_and(|idx| idx <= applied) {
                if let Some(r) = self.rounds.remove(i) {
                    out.extend(r.reads);
                }
            } else {
                i += 1;
            }
        }
        out
    }

    /// Every waiting read (the peer lost leadership or stops).
    pub fn take_all(&mut self) -> Vec<R> {
        let mut out: Vec<R> = self.rounds.drain(..).flat_map(|r| r.reads).collect();
        out.append(&mut self.incoming);
        out
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.incoming.is_empty() && self.rounds.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_of_one_turn_share_a_round() {
        let mut q = ReadQueue::default();
        assert!(q.start_round().is_none());
        q.push("a");
        q.push("b");
        let ctx = q.start_round().unwrap();
        q.push("c");
        let ctx2 = q.start_round().unwrap();
        assert_ne!(ctx, ctx2);
        assert!(q.ready(100).is_empty(), "nothing confirmed yet");
        q.confirm(&ctx, 10);
        assert!(q.ready(9).is_empty());
        assert_eq!(q.ready(10), vec!["a", "b"]);
        q.confirm(&ctx2, 12);
        q.confirm(b"garbage", 1);
        assert_eq!(q.ready(12), vec!["c"]);
        assert!(q.is_empty());
    }

    #[test]
    fn take_all_returns_everything_waiting() {
        let mut q = ReadQueue::default();
        q.push(1);
        q.start_round();
        q.push(2);
        assert_eq!(q.take_all(), vec![1, 2]);
        assert!(q.is_empty());
    }
}
