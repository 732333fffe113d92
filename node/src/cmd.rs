//! What a region's log entries carry. A normal entry holds one encoded [`RaftCmd`]; an empty
//! normal entry is a new leader's no-op; a conf-change entry holds a `tinykv_raft::ConfChange`
//! whose context is an encoded [`ChangePeer`].

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tinykv_proto::api::NewRegionIds;
use tinykv_proto::display::printable;
use tinykv_storage::RegionEpoch;

/// A command proposed to a region.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RaftCmd {
    pub region_id: u64,
    /// The epoch the proposer saw; a command from an older epoch is refused at apply.
    pub epoch: RegionEpoch,
    pub body: CmdBody,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CmdBody {
    Write(Vec<WriteOp>),
    /// Drop log entries up to and including `index` (whose term is `term`).
    CompactLog {
        index: u64,
        term: u64,
    },
    /// Region 1's leader records that `store_id` has run (see `StoreStarted` in storage).
    StoreStarted {
        store_id: u64,
    },
    /// Region 1 hands out `count` ids from the cluster's allocator (see `IdAllocState`).
    AllocIds {
        count: u32,
    },
    /// Splits the region at `split_keys` (strictly increasing, inside the range, none equal
    /// to its start): the region keeps `[start, split_keys[0])`, and `new_regions[i]` takes
    /// `[split_keys[i], split_keys[i + 1])` (the last one up to the old end). The ids were
    /// allocated for this split; peer ids follow the order of the region's peers. Checked
    /// against the full epoch at apply, like at propose.
    Split {
        split_keys: Vec<Bytes>,
        new_regions: Vec<NewRegionIds>,
    },
    /// Region 1 keeps the placement driver's new record (stores retired, schedulers paused),
    /// replacing the one it had. Appended: the encoding is positional.
    Placement(tinykv_storage::PlacementRecord),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum WriteOp {
    Put {
        key: Bytes,
        value: Bytes,
    },
    Delete {
        key: Bytes,
    },
    /// Every key in `[start, end)` within the region (empty `end`: to its end). Appended:
    /// the encoding is positional, so older entries read as before.
    DeleteRange {
        start: Bytes,
        end: Bytes,
    },
    /// Puts `value` if the key's value is `expected` (`None`: absent) when it applies.
    /// Appended, like `DeleteRange`.
    Cas {
        key: Bytes,
        expected: Option<Bytes>,
        value: Bytes,
    },
}

/// The context of a membership change: which peer, on which store, reachable where. The
/// peer's role follows from the change (`AddLearnerNode`, or `AddNode` to add or promote a
/// voter). Its fields are laid out as in the first format, so older log entries still read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangePeer {
    pub peer_id: u64,
    pub store_id: u64,
    pub addr: String,
}

impl RaftCmd {
    pub fn encode(&self) -> Bytes {
        tinykv_proto::api::encode(self)
    }

    pub fn decode(data: &[u8]) -> Result<RaftCmd, tinykv_proto::api::ApiError> {
        tinykv_proto::api::decode("raft command", data)
    }

    /// A one-line description for `raft log`.
    pub fn summary(&self) -> String {
        match &self.body {
            CmdBody::Write(ops) => {
                let parts: Vec<String> = ops
                    .iter()
                    .take(3)
                    .map(|op| match op {
                        WriteOp::Put { key, value } => {
                            format!("put {} ({} B)", printable(key), value.len())
                        }
                        WriteOp::Delete { key } => format!("delete {}", printable(key)),
                        WriteOp::DeleteRange { start, end } if end.is_empty() => {
                            format!("delete from {} to the region's end", printable(start))
                        }
                        WriteOp::DeleteRange { start, end } => {
                            format!("delete from {} to {}", printable(start), printable(end))
                        }
                        WriteOp::Cas {
                            key,
                            expected: Some(old),
                            value,
                        } => format!(
                            "put {} ({} B) if it holds {}",
                            printable(key),
                            value.len(),
                            printable(old)
                        ),
                        WriteOp::Cas {
                            key,
                            expected: None,
                            value,
                        } => format!("put {} ({} B) if absent", printable(key), value.len()),
                    })
                    .collect();
                let more = ops.len().saturating_sub(3);
                if more > 0 {
                    format!("{} and {more} more", parts.join(", "))
                } else {
                    parts.join(", ")
                }
            }
            CmdBody::CompactLog { index, term } => format!("compact log to {index} (term {term})"),
            CmdBody::StoreStarted { store_id } => format!("store {store_id} started"),
            CmdBody::AllocIds { count } => format!("allocate {count} ids"),
            CmdBody::Placement(record) => {
                let retired: Vec<String> = record
                    .retired
                    .iter()
                    .map(|r| {
                        let state = if r.tombstone { "tombstone" } else { "offline" };
                        format!("store {} {state}", r.store_id)
                    })
                    .collect();
                format!(
                    "placement record: retired [{}], paused [{}]",
                    retired.join(", "),
                    record.paused.join(", ")
                )
            }
            CmdBody::Split {
                split_keys,
                new_regions,
            } => {
                let at: Vec<String> = split_keys.iter().take(3).map(|k| printable(k)).collect();
                let ids: Vec<String> = new_regions
                    .iter()
                    .map(|r| r.region_id.to_string())
                    .collect();
                format!(
                    "split at {}{} into new regions {}",
                    at.join(", "),
                    if split_keys.len() > 3 { ", …" } else { "" },
                    ids.join(", ")
                )
            }
        }
    }
}

impl ChangePeer {
    pub fn encode(&self) -> Bytes {
        tinykv_proto::api::encode(self)
    }

    pub fn decode(data: &[u8]) -> Result<ChangePeer, tinykv_proto::api::ApiError> {
        tinykv_proto::api::decode("change-peer context", data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_round_trip_and_describe_themselves() {
        let cmd = RaftCmd {
            region_id: 1,
            epoch: RegionEpoch {
                conf_ver: 1,
                version: 1,
            },
            body: CmdBody::Write(vec![
                WriteOp::Put {
                    key: Bytes::from_static(b"k"),
                    value: Bytes::from_static(b"vvv"),
                },
                WriteOp::Delete {
                    key: Bytes::from_static(b"\x00\x01"),
                },
            ]),
        };
        assert_eq!(RaftCmd::decode(&cmd.encode()).unwrap(), cmd);
        assert_eq!(cmd.summary(), "put \"k\" (3 B), delete 0x0001");
        assert!(RaftCmd::decode(b"\x01").is_err());
    }
}
