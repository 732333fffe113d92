//! ReadIndex requests a leader holds while a heartbeat round confirms it still leads.

use std::collections::{BTreeSet, HashMap, VecDeque};

use bytes::Bytes;

use crate::message::Message;

/// One read request waiting for a quorum of heartbeat acknowledgements.
#[derive(Clone, Debug)]
pub(crate) struct ReadIndexStatus {
    /// The request as it arrived (its `from` says who gets the answer).
    pub(crate) req: Message,
    /// The leader's commit index when the request arrived.
    pub(crate) index: u64,
    pub(crate) acks: BTreeSet<u64>,
}

/// Requests keyed by their context, answered in arrival order: a quorum acknowledging a later
/// request's round also confirms every earlier one.
#[derive(Clone, Debug, Default)]
pub(crate) struct ReadOnly {
    pending: HashMap<Bytes, ReadIndexStatus>,
    queue: VecDeque<Bytes>,
}

impl ReadOnly {
    /// Queues a request; a second request with a context already queued is dropped, since its
    /// answer could not be told apart.
    pub(crate) fn add_request(&mut self, index: u64, req: Message, self_id: u64) {
        let ctx = req.context.clone();
        if self.pending.contains_key(&ctx) {
            return;
        }
        let acks = BTreeSet::from([self_id]);
        self.pending
            .insert(ctx.clone(), ReadIndexStatus { req, index, acks });
        self.queue.push_back(ctx);
    }

    /// Records a heartbeat acknowledgement; returns the acks so far, or `None` for an unknown
    /// context.
    pub(crate) fn recv_ack(&mut self, from: u64, ctx: &Bytes) -> Option<&BTreeSet<u64>> {
        let status = self.pending.get_mut(ctx)?;
        status.acks.insert(from);
        Some(&status.acks)
    }

    /// Removes and returns every request up to and including `ctx`, oldest first.
    pub(crate) fn advance(&mut self, ctx: &Bytes) -> Vec<ReadIndexStatus> {
        let Some(pos) = self.queue.iter().position(|c| c == ctx) else {
            return Vec::new();
        };
        self.queue
            .drain(..=pos)
            .filter_map(|c| self.pending.remove(&c))
            .collect()
    }

    pub(crate) fn last_pending_request_ctx(&self) -> Option<Bytes> {
        self.queue.back().cloned()
    }

    pub(crate) fn pending_count(&self) -> usize {
        self.queue.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::MessageType;

    fn req(ctx: &'static [u8]) -> Message {
        Message {
            context: Bytes::from_static(ctx),
            ..Message::new(MessageType::ReadIndex, 1, 1)
        }
    }

    #[test]
    fn advance_releases_earlier_requests_in_order() {
        let mut ro = ReadOnly::default();
        ro.add_request(3, req(b"a"), 1);
        ro.add_request(4, req(b"b"), 1);
        ro.add_request(9, req(b"b"), 1);
        ro.add_request(5, req(b"c"), 1);
        assert_eq!(ro.pending_count(), 3);
        assert_eq!(
            ro.last_pending_request_ctx(),
            Some(Bytes::from_static(b"c"))
        );
        let acks = ro.recv_ack(2, &Bytes::from_static(b"b")).unwrap();
        assert_eq!(acks.len(), 2);
        assert!(ro.recv_ack(2, &Bytes::from_static(b"zz")).is_none());
        let done = ro.advance(&Bytes::from_static(b"b"));
        assert_eq!(done.iter().map(|s| s.index).collect::<Vec<_>>(), vec![3, 4]);
        assert_eq!(ro.pending_count(), 1);
        assert!(ro.advance(&Bytes::from_static(b"a")).is_empty());
    }
}
