//! Raft's configuration from the node's, and the time a snapshot send is given.

use tinykv_raft::Config as RaftConfig;

use crate::config::NodeConfig;

pub(crate) fn raft_config(config: &NodeConfig) -> RaftConfig {
    RaftConfig {
        election_tick: config.raft.election_timeout_ticks,
        heartbeat_tick: config.raft.heartbeat_ticks,
        max_size_per_msg: config.raft.max_size_per_msg.0,
        max_inflight_msgs: config.raft.max_inflight_msgs,
        check_quorum: config.raft.check_quorum,
        pre_vote: config.raft.pre_vote,
        // Every snapshot send ends in a report within `snapshot_send_timeout`, which grows with
        // the snapshot: Raft's own timeout is only a backstop, and one shorter than a large
        // snapshot's transfer would make the leader build and send it again meanwhile.
        snapshot_pending_timeout_ticks: ticks_in(config, SNAPSHOT_PENDING_BACKSTOP),
        // With many busy regions a commit-only append per region and write doubles the messages
        // and makes followers apply one write at a time; they learn commits from the next append
        // or heartbeat instead (clients hear from the leader, which applies at once). Splits ask
        // for the broadcast (`broadcast_commit_of`), membership changes get it from Raft.
        skip_bcast_commit: true,
        ..RaftConfig::default()
    }
}

/// How many ticks of `config` make `d` (at least one).
pub(super) fn ticks_in(config: &NodeConfig, d: std::time::Duration) -> usize {
    let tick = config.raft.base_tick_interval.0.as_millis().max(1);
    usize::try_from(d.as_millis() / tick)
        .unwrap_or(usize::MAX)
        .max(1)
}

/// Raft's backstop for a snapshot send that never reported.
pub(super) const SNAPSHOT_PENDING_BACKSTOP: std::time::Duration =
    std::time::Duration::from_secs(3600);

/// The slowest rate a snapshot send is given time for when the rate is not limited lower.
pub(super) const SNAPSHOT_FLOOR_RATE: u64 = 10 * 1024 * 1024;

/// How long sending a snapshot of `size` bytes may take at `rate` bytes a second (0:
/// unlimited): twice what its bytes need at that rate or at a 10 MiB/s floor, whichever is
/// slower, plus a minute for connecting and the receiver's checks.
pub(super) fn snapshot_send_timeout(size: u64, rate: u64) -> std::time::Duration {
    let rate = if rate == 0 {
        SNAPSHOT_FLOOR_RATE
    } else {
        rate.min(SNAPSHOT_FLOOR_RATE)
    };
    std::time::Duration::from_secs(60 + 2 * size.div_ceil(rate))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_send_has_time_for_its_size_at_the_rate_limit() {
        let mib = 1024 * 1024;
        // 1 GiB at 100 MiB/s needs about 10 s; it gets the 10 MiB/s floor's 103 s, twice.
        assert_eq!(
            snapshot_send_timeout(1024 * mib, 100 * mib).as_secs(),
            60 + 2 * 103
        );
        // A limit below the floor is what bounds it.
        assert_eq!(snapshot_send_timeout(100 * mib, mib).as_secs(), 60 + 200);
        assert_eq!(snapshot_send_timeout(0, 0).as_secs(), 60);
        let config = NodeConfig::default();
        assert_eq!(ticks_in(&config, SNAPSHOT_PENDING_BACKSTOP), 36_000);
        assert_eq!(raft_config(&config).snapshot_pending_timeout_ticks, 36_000);
    }
}
