//! Letting regions at rest hibernate and waking them (the protocol is in `hibernation.rs`):
//! asking followers on a leader's tick, the signals peers exchange, and waking a region when
//! something new reaches it.

use tinykv_raft::{Message, MessageType, StateRole};
use tracing::debug;

use crate::message::{RaftMessage, Signal};

use super::store::Store;
use super::tick::compact_to;

impl Store {
    /// On a leader's tick, before Raft's: when its group is at rest, every member alive and
    /// nothing waiting, asks the followers that have not agreed yet to hibernate.
    pub(super) fn consider_hibernating(&mut self, region_id: u64) {
        if !self.config.raft.hibernate_regions {
            return;
        }
        let window = self.alive_window();
        let gc = self.gc_limits();
        // Followers learn the last commit with the heartbeat round after appends stop, and a
        // round leaves out whoever was sent an append since the last one: two rounds.
        let quiet = 2 * self.config.raft.heartbeat_ticks;
        let Some(peer) = self.peers.get_mut(&region_id) else {
            return;
        };
        let others = peer.other_members();
        let at_rest = peer.raw.settled_index().filter(|_| {
            !peer.raw.has_ready()
                && peer.proposals.is_empty()
                && peer.reads.is_empty()
                && others.iter().all(|id| peer.is_alive(*id, window))
                // Its log is compacted first: a hibernating region keeps what it has.
                && compact_to(peer, Some(gc)).is_none()
        });
        let Some(index) = at_rest else {
            peer.sleep.unsettle();
            return;
        };
        let term = peer.raw.raft().term();
        for id in peer.sleep.ask(term, index, &others, quiet) {
            if let Some(to) = peer.peer_by_id(id) {
                self.outbox
                    .send_signal(peer, to, Signal::Hibernate { term, index });
            }
        }
        if peer.sleep.is_asleep() {
            debug!(region = region_id, index, "region hibernates");
        }
    }

    /// A hibernation signal from another peer of the region (the envelope is checked).
    pub(super) fn on_signal(&mut self, msg: &RaftMessage) {
        let region_id = msg.region_id;
        let hibernate = self.config.raft.hibernate_regions;
        let Some(peer) = self.peers.get_mut(&region_id) else {
            return;
        };
        match msg.signal {
            Signal::Hibernate { term, index } => {
                let raft = peer.raw.raft();
                let at_rest = hibernate
                    && raft.role() == StateRole::Follower
                    && raft.term() == term
                    && raft.leader_id() == msg.from_peer.id
                    && raft.last_index() == index
                    && raft.committed() == index
                    && peer.proposals.is_empty()
                    && peer.reads.is_empty();
                if at_rest {
                    peer.sleep.sleep();
                    self.outbox.send_signal(
                        peer,
                        msg.from_peer,
                        Signal::Hibernated { term, index },
                    );
                }
            }
            Signal::Hibernated { term, index } => {
                let others = peer.other_members();
                if peer.is_leader() && peer.sleep.agreed(msg.from_peer.id, term, index, &others) {
                    debug!(region = region_id, index, "region hibernates");
                }
            }
            Signal::WakeUp => self.wake(region_id, None),
            Signal::Raft | Signal::Tombstone => {}
        }
    }

    /// Wakes this store's peer of `region_id` if it hibernates; `lost_store` is the store whose
    /// loss woke it, if that is why. A leader sends a heartbeat round at once; a follower tells
    /// its leader, which does the same, so that no follower's election timer runs out while
    /// the leader lives.
    pub(super) fn wake(&mut self, region_id: u64, lost_store: Option<u64>) {
        let Some(peer) = self.peers.get_mut(&region_id) else {
            return;
        };
        if !peer.sleep.wake() {
            return;
        }
        debug!(region = region_id, ?lost_store, "region wakes");
        peer.heard_from_all_but(lost_store);
        self.active.insert(region_id);
        let raft = peer.raw.raft();
        if raft.role() == StateRole::Leader {
            peer.raw.ping();
            return;
        }
        let leader = raft.leader_id();
        if leader == 0 {
            return;
        }
        if let Some(to) = peer
            .peer_by_id(leader)
            .filter(|p| Some(p.store_id) != lost_store)
        {
            self.outbox.send_signal(peer, to, Signal::WakeUp);
        }
    }

    /// Wakes every hibernating leader among `regions` that has work (a proposal, a read, a
    /// message to send): whatever brought it, its followers must hear from it again.
    pub(super) fn wake_busy_leaders(&mut self, regions: &[u64]) {
        for region_id in regions {
            let busy = self.peers.get(region_id).is_some_and(|p| {
                p.sleep.is_asleep() && p.raw.raft().role() == StateRole::Leader && p.raw.has_ready()
            });
            if busy {
                self.wake(*region_id, None);
            }
        }
    }
}

/// Whether a Raft message leaves a hibernating peer asleep: the leader's heartbeat and its
/// answer, in the current term. Anything else means the group has work or lost its leader.
pub(super) fn keeps_asleep(msg: &Message, term: u64) -> bool {
    matches!(
        msg.msg_type,
        MessageType::Heartbeat | MessageType::HeartbeatResponse
    ) && msg.term == term
}
