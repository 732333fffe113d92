//! The values Raft exchanges and persists: log entries, hard state, membership, snapshots and
//! messages. They derive serde so that storage and transport can encode them (postcard); the
//! Raft core itself never encodes anything.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// What an entry carries. New variants go at the end: the encoding is positional.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EntryType {
    /// Application data; an entry with empty data is the no-op a new leader appends.
    #[default]
    Normal,
    /// `data` is an encoded [`ConfChange`] (see [`ConfChange::encode`]).
    ConfChange,
}

/// One log entry.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub entry_type: EntryType,
    pub term: u64,
    pub index: u64,
    pub data: Bytes,
}

impl Entry {
    /// Bytes this entry counts for in size limits (payload plus a fixed overhead).
    pub fn size(&self) -> u64 {
        self.data.len() as u64 + 24
    }
}

/// The part of a node's state that must be on stable storage before it answers a message.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct HardState {
    pub term: u64,
    /// The peer voted for in `term`, or 0.
    pub vote: u64,
    pub commit: u64,
}

impl HardState {
    pub fn is_empty(&self) -> bool {
        *self == HardState::default()
    }
}

/// Group membership: voters and non-voting learners (disjoint).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ConfState {
    pub voters: Vec<u64>,
    pub learners: Vec<u64>,
}

/// Where a snapshot stands in the log and which membership it carries.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotMetadata {
    pub conf_state: ConfState,
    pub index: u64,
    pub term: u64,
}

/// A snapshot as Raft sees it: metadata plus opaque application data. The node may put only a
/// small descriptor in `data` and stream the region's contents beside the message.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub data: Bytes,
    pub metadata: SnapshotMetadata,
}

impl Snapshot {
    pub fn is_empty(&self) -> bool {
        self.metadata.index == 0
    }
}

/// Message kinds. `Hup`, `Beat` and `Propose` are local: they never travel on the network and
/// stepping one that came from outside is an error. New variants go at the end.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum MessageType {
    /// Local: start an election.
    #[default]
    Hup,
    /// Local: a leader sends heartbeats.
    Beat,
    /// Local: append `entries` to the leader's log.
    Propose,
    Append,
    AppendResponse,
    RequestVote,
    RequestVoteResponse,
    RequestPreVote,
    RequestPreVoteResponse,
    Snapshot,
    Heartbeat,
    HeartbeatResponse,
    /// Ask the leader to hand leadership to `from` (sent to the leader by a follower, or stepped
    /// locally on the leader with `from` = the transferee).
    TransferLeader,
    /// The leader tells the transferee to campaign at once, skipping pre-vote.
    TimeoutNow,
    /// Ask for a read index; `context` identifies the request.
    ReadIndex,
    ReadIndexResponse,
}

impl MessageType {
    /// Local messages are only ever created on the node that steps them.
    pub fn is_local(self) -> bool {
        matches!(
            self,
            MessageType::Hup | MessageType::Beat | MessageType::Propose
        )
    }

    /// Responses are only accepted from peers the node knows.
    pub fn is_response(self) -> bool {
        matches!(
            self,
            MessageType::AppendResponse
                | MessageType::RequestVoteResponse
                | MessageType::RequestPreVoteResponse
                | MessageType::HeartbeatResponse
                | MessageType::ReadIndexResponse
        )
    }
}

/// One Raft message. Fields a kind does not use stay at their defaults.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub msg_type: MessageType,
    pub to: u64,
    pub from: u64,
    /// 0 for local messages.
    pub term: u64,
    /// Append: term of the entry at `index`. Vote requests: the candidate's last term.
    /// Rejected append response: term of the entry at `reject_hint` in the follower's log.
    pub log_term: u64,
    /// Append: index of the entry just before `entries`. Vote requests: the candidate's last
    /// index. Append response: the last index now matched (or the rejected index).
    pub index: u64,
    pub entries: Vec<Entry>,
    pub commit: u64,
    pub snapshot: Option<Snapshot>,
    pub reject: bool,
    /// Rejected append: the follower's hint of where the logs may match.
    pub reject_hint: u64,
    /// Opaque request context: ReadIndex requests and responses, heartbeats carrying a read round.
    pub context: Bytes,
}

impl Message {
    pub fn new(msg_type: MessageType, from: u64, to: u64) -> Message {
        Message {
            msg_type,
            from,
            to,
            ..Message::default()
        }
    }
}

/// A membership change of one peer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ConfChangeType {
    #[default]
    AddNode,
    RemoveNode,
    AddLearnerNode,
}

/// A single-peer membership change, proposed as an entry of type [`EntryType::ConfChange`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfChange {
    pub change_type: ConfChangeType,
    pub node_id: u64,
    /// Opaque to Raft; the node uses it for the peer's store and address.
    pub context: Bytes,
}

impl ConfChange {
    /// The bytes put in the entry's data. A fixed, self-contained layout so the Raft core needs
    /// no codec: one type byte, the node id (u64 big-endian), then the context.
    pub fn encode(&self) -> Bytes {
        let mut out = Vec::with_capacity(9 + self.context.len());
        out.push(match self.change_type {
            ConfChangeType::AddNode => 0,
            ConfChangeType::RemoveNode => 1,
            ConfChangeType::AddLearnerNode => 2,
        });
        out.extend_from_slice(&self.node_id.to_be_bytes());
        out.extend_from_slice(&self.context);
        Bytes::from(out)
    }

    /// Decodes what [`ConfChange::encode`] wrote; `None` when the bytes are not such a record.
    pub fn decode(data: &Bytes) -> Option<ConfChange> {
        if data.len() < 9 {
            return None;
        }
        let change_type = match data[0] {
            0 => ConfChangeType::AddNode,
            1 => ConfChangeType::RemoveNode,
            2 => ConfChangeType::AddLearnerNode,
            _ => return None,
        };
        let mut id = [0u8; 8];
        id.copy_from_slice(&data[1..9]);
        Some(ConfChange {
            change_type,
            node_id: u64::from_be_bytes(id),
            context: data.slice(9..),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conf_change_round_trip() {
        let cc = ConfChange {
            change_type: ConfChangeType::AddLearnerNode,
            node_id: 0x0102_0304_0506_0708,
            context: Bytes::from_static(b"store-4"),
        };
        assert_eq!(ConfChange::decode(&cc.encode()), Some(cc));
        assert_eq!(
            ConfChange::decode(&Bytes::from_static(b"\x07abcdefgh")),
            None
        );
        assert_eq!(ConfChange::decode(&Bytes::from_static(b"\x00abc")), None);
    }
}
