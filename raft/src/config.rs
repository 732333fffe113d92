//! Per-node Raft configuration.

use crate::error::{Error, Result};

/// How a leader serves read-index requests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ReadOnlyOption {
    /// Confirm leadership with a heartbeat round to a quorum (linearizable, costs a round trip).
    #[default]
    Safe,
    /// Trust the leader lease that check quorum maintains (needs `check_quorum`; assumes bounded
    /// clock drift).
    LeaseBased,
}

/// Configuration of one Raft node.
#[derive(Clone, Debug)]
pub struct Config {
    /// This node's id; never 0.
    pub id: u64,
    /// Voters of a brand-new group. Used only when storage reports an empty membership;
    /// a restarted node takes its membership from storage.
    pub peers: Vec<u64>,
    /// Election timeout in ticks; the effective timeout is drawn from `[election_tick, 2*election_tick)`.
    pub election_tick: usize,
    /// Heartbeat interval in ticks; must be below `election_tick`.
    pub heartbeat_tick: usize,
    /// The last applied index on restart (entries above it and up to commit are handed out again).
    pub applied: u64,
    /// The most bytes of entries in one append message (at least one entry is always sent).
    pub max_size_per_msg: u64,
    /// The most append messages in flight to one peer while replicating.
    pub max_inflight_msgs: usize,
    /// A leader steps down when it has not heard from a quorum within an election timeout.
    pub check_quorum: bool,
    /// Campaign with a pre-vote round first, so a rejoining node cannot bump the term.
    pub pre_vote: bool,
    pub read_only_option: ReadOnlyOption,
    /// Ticks after which a snapshot sent to a peer and never reported counts as failed.
    pub snapshot_pending_timeout_ticks: usize,
    /// Seed of the node's random election timeouts (deterministic for tests and simulations).
    pub seed: u64,
    /// A leader does not send an append only to tell followers a new commit index; they learn
    /// it from the next append or heartbeat. With many busy groups this halves the messages per
    /// write and lets followers apply in batches, at the cost of followers applying up to a
    /// heartbeat later. Commits of membership changes, and of indices named with
    /// [`crate::RawNode::broadcast_commit_of`], are still sent at once.
    pub skip_bcast_commit: bool,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            id: 0,
            peers: Vec::new(),
            election_tick: 10,
            heartbeat_tick: 2,
            applied: 0,
            max_size_per_msg: 1024 * 1024,
            max_inflight_msgs: 256,
            check_quorum: true,
            pre_vote: true,
            read_only_option: ReadOnlyOption::Safe,
            snapshot_pending_timeout_ticks: 100,
            seed: 0,
            skip_bcast_commit: false,
        }
    }
}

impl Config {
    pub fn new(id: u64) -> Config {
        Config {
            id,
            seed: id,
            ..Config::default()
        }
    }

    pub fn validate(&self) -> Result<()> {
        if self.id == 0 {
            return Err(Error::ConfigInvalid("id must not be 0".into()));
        }
        if self.heartbeat_tick == 0 {
            return Err(Error::ConfigInvalid(
                "heartbeat_tick must be greater than 0".into(),
            ));
        }
        if self.election_tick <= self.heartbeat_tick {
            return Err(Error::ConfigInvalid(format!(
                "election_tick ({}) must be greater than heartbeat_tick ({})",
                self.election_tick, self.heartbeat_tick
            )));
        }
        if self.max_inflight_msgs == 0 {
            return Err(Error::ConfigInvalid(
                "max_inflight_msgs must be greater than 0".into(),
            ));
        }
        if self.read_only_option == ReadOnlyOption::LeaseBased && !self.check_quorum {
            return Err(Error::ConfigInvalid(
                "read_only_option LeaseBased needs check_quorum".into(),
            ));
        }
        if self.snapshot_pending_timeout_ticks == 0 {
            return Err(Error::ConfigInvalid(
                "snapshot_pending_timeout_ticks must be greater than 0".into(),
            ));
        }
        Ok(())
    }
}
