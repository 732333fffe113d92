//! Linearizable reads waiting on ReadIndex. Reads that arrive in the same turn of the raft loop
//! share one ReadIndex round (one heartbeat round for many reads); a round's reads run once the
//! applied index reaches the read index Raft confirmed for it.
//!
//! A round's context is unique in its region: the peer that started it, the term it started
//! in and a sequence number. A leader queues forwarded rounds of other peers beside its own
//! and drops a context it already holds, so two peers numbering rounds alike made one of them
//! wait for an answer that never came.

use std::collections::VecDeque;

use bytes::Bytes;

/// One ReadIndex round and the reads riding on it.
#[derive(Debug)]
struct Round<R> {
    ctx: RoundId,
    /// Set once Raft confirmed the round.
    index: Option<u64>,
    reads: Vec<R>,
}

/// What a round's context says: who started it, in which term, and its number there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct RoundId {
    peer: u64,
    term: u64,
    seq: u64,
}

impl RoundId {
    const LEN: usize = 24;

    fn encode(self) -> Bytes {
        let mut out = Vec::with_capacity(Self::LEN);
        out.extend_from_slice(&self.peer.to_be_bytes());
        out.extend_from_slice(&self.term.to_be_bytes());
        out.extend_from_slice(&self.seq.to_be_bytes());
        Bytes::from(out)
    }

    fn decode(ctx: &[u8]) -> Option<RoundId> {
        let ctx: &[u8; Self::LEN] = ctx.try_into().ok()?;
        let word = |i: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&ctx[i * 8..i * 8 + 8]);
            u64::from_be_bytes(w)
        };
        Some(RoundId {
            peer: word(0),
            term: word(1),
            seq: word(2),
        })
    }
}

#[derive(Debug)]
pub struct ReadQueue<R> {
    /// The peer whose rounds these are.
    peer: u64,
    next_seq: u64,
    /// Reads not yet sent to Raft.
    incoming: Vec<R>,
    /// Rounds in the order they were sent; Raft confirms them in that order.
    rounds: VecDeque<Round<R>>,
}

impl<R> ReadQueue<R> {
    /// The read queue of peer `peer`.
    pub fn new(peer: u64) -> ReadQueue<R> {
        ReadQueue {
            peer,
            next_seq: 1,
            incoming: Vec::new(),
            rounds: VecDeque::new(),
        }
    }
}

impl<R> ReadQueue<R> {
    pub fn push(&mut self, read: R) {
        self.incoming.push(read);
    }

    /// Starts a round, in `term`, for the reads that arrived since the last one; returns the
    /// context to pass to `RawNode::read_index`, or `None` when nothing waits.
    pub fn start_round(&mut self, term: u64) -> Option<Bytes> {
        if self.incoming.is_empty() {
            return None;
        }
        let ctx = RoundId {
            peer: self.peer,
            term,
            seq: self.next_seq,
        };
        self.next_seq += 1;
        let reads = std::mem::take(&mut self.incoming);
        self.rounds.push_back(Round {
            ctx,
            index: None,
            reads,
        });
        Some(ctx.encode())
    }

    /// Raft confirmed the round with this context at `index`. Unknown contexts are ignored.
    pub fn confirm(&mut self, ctx: &[u8], index: u64) {
        let Some(ctx) = RoundId::decode(ctx) else {
            return;
        };
        if let Some(round) = self.rounds.iter_mut().find(|r| r.ctx == ctx) {
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

    pub fn is_empty(&self) -> bool {
        self.incoming.is_empty() && self.rounds.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_of_one_turn_share_a_round() {
        let mut q = ReadQueue::new(1);
        assert!(q.start_round(5).is_none());
        q.push("a");
        q.push("b");
        let ctx = q.start_round(5).unwrap();
        q.push("c");
        let ctx2 = q.start_round(5).unwrap();
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
    fn rounds_of_different_peers_and_terms_never_share_a_context() {
        let mut a = ReadQueue::new(1);
        let mut b = ReadQueue::new(2);
        a.push("a");
        b.push("b");
        let (ca, cb) = (a.start_round(5).unwrap(), b.start_round(5).unwrap());
        assert_ne!(ca, cb, "the first rounds of two peers");
        // A peer restarted in a later term numbers from 1 again.
        let mut again = ReadQueue::new(1);
        again.push("c");
        assert_ne!(again.start_round(6).unwrap(), ca);
        // A context of another peer confirms nothing here.
        a.confirm(&cb, 10);
        assert!(a.ready(100).is_empty());
        a.confirm(&ca, 10);
        assert_eq!(a.ready(10), vec!["a"]);
    }

    #[test]
    fn take_all_returns_everything_waiting() {
        let mut q = ReadQueue::new(1);
        q.push(1);
        q.start_round(5);
        q.push(2);
        assert_eq!(q.take_all(), vec![1, 2]);
        assert!(q.is_empty());
    }
}
