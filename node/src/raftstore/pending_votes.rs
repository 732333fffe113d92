//! Vote requests for regions a split has not created on this store yet.

use std::collections::VecDeque;

use tinykv_raft::MessageType;

use crate::message::RaftMessage;

/// The most vote messages kept for regions a split has not created on this store yet.
const MAX_PENDING_VOTES: usize = 256;

/// Vote requests of new regions that arrived before the split that creates them applied here
/// (TiKV's pending messages): handed to the new peer as soon as it exists, so the new region
/// elects without waiting out an election timeout.
#[derive(Debug, Default)]
pub(crate) struct PendingVotes {
    votes: VecDeque<(u64, RaftMessage)>,
}

impl PendingVotes {
    /// Keeps `msg` if it asks for a vote; the oldest is dropped when full.
    pub fn keep(&mut self, from_store: u64, msg: &RaftMessage) {
        if !matches!(
            msg.message.msg_type,
            MessageType::RequestVote | MessageType::RequestPreVote
        ) {
            return;
        }
        if self.votes.len() >= MAX_PENDING_VOTES {
            self.votes.pop_front();
        }
        self.votes.push_back((from_store, msg.clone()));
    }

    /// Takes the votes kept for `region_id`.
    pub fn take(&mut self, region_id: u64) -> Vec<(u64, RaftMessage)> {
        let mut mine = Vec::new();
        self.votes.retain(|(from, m)| {
            let is_mine = m.region_id == region_id;
            if is_mine {
                mine.push((*from, m.clone()));
            }
            !is_mine
        });
        mine
    }
}
