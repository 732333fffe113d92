//! Faults a test injects into a running node from outside its process, through the admin
//! service: network rules for the transport's filter, a delay before every fsync of the Raft
//! log and one before snapshot work. They travel as [`FaultSpec`] inside
//! `AdminRequest::SetFaults`, and a node accepts them only when its configuration says
//! `fault-injection: true`.
//!
//! The network rules mirror what `tinykv_transport::Rule` can express; the node turns them into
//! rules (node's `fault.rs`), so this crate needs no transport. Fractions are carried as parts
//! per million so the admin types keep exact equality.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// One million: a drop of this many parts per million drops everything.
pub const PPM: u32 = 1_000_000;

/// Which way the faulted traffic flows, seen from the node that holds the rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FaultDirection {
    Outgoing,
    Incoming,
    Both,
}

/// Which traffic a network fault applies to. Client and admin RPCs are never filtered, so a
/// partitioned node stays reachable for tests and for healing it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FaultTraffic {
    Raft,
    Snapshot,
    All,
}

/// What happens to matching traffic.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FaultAction {
    /// Discard this many parts per million of matching messages (the node's filter draws them).
    Drop { ppm: u32 },
    /// Hold matching traffic back this long.
    Delay(Duration),
    /// Behave as if the stores were unreachable.
    Block,
}

/// One network fault: `action` on `traffic` going `direction` to or from `stores` (empty: every
/// store).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkFault {
    pub stores: Vec<u64>,
    pub direction: FaultDirection,
    pub traffic: FaultTraffic,
    pub action: FaultAction,
}

impl NetworkFault {
    /// Cuts all traffic with `stores` both ways.
    pub fn block(stores: &[u64]) -> NetworkFault {
        NetworkFault {
            stores: stores.to_vec(),
            direction: FaultDirection::Both,
            traffic: FaultTraffic::All,
            action: FaultAction::Block,
        }
    }

    /// Drops `ppm` parts per million of the Raft messages exchanged with `stores`.
    pub fn drop_ppm(stores: &[u64], ppm: u32) -> NetworkFault {
        NetworkFault {
            stores: stores.to_vec(),
            direction: FaultDirection::Both,
            traffic: FaultTraffic::Raft,
            action: FaultAction::Drop { ppm },
        }
    }

    /// Delays all traffic exchanged with `stores`.
    pub fn delay(stores: &[u64], delay: Duration) -> NetworkFault {
        NetworkFault {
            stores: stores.to_vec(),
            direction: FaultDirection::Both,
            traffic: FaultTraffic::All,
            action: FaultAction::Delay(delay),
        }
    }

    /// The same fault, restricted to one direction.
    pub fn only(mut self, direction: FaultDirection) -> NetworkFault {
        self.direction = direction;
        self
    }

    /// Whether a node can apply this fault: a drop of at most everything, a delay of at most
    /// [`MAX_DELAY`].
    pub fn check(&self) -> Result<(), FaultError> {
        match self.action {
            FaultAction::Drop { ppm } if ppm > PPM => Err(FaultError::Fraction(ppm)),
            FaultAction::Delay(d) if d > MAX_DELAY => Err(FaultError::Delay(d)),
            FaultAction::Drop { .. } | FaultAction::Delay(_) | FaultAction::Block => Ok(()),
        }
    }
}

/// Every fault a node should have from now on; setting one replaces the previous one whole.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultSpec {
    pub network: Vec<NetworkFault>,
    /// Slept before each fsyncing commit of the Raft log: a slow disk as the raft loop sees it.
    pub sync_delay: Duration,
    /// Slept by the snapshot worker before it builds a snapshot or writes a received one's
    /// data: slow snapshot work, which must hold only its own region.
    pub snapshot_delay: Duration,
}

impl FaultSpec {
    /// Whether a node can apply every fault here; the first one it cannot, when not.
    pub fn check(&self) -> Result<(), FaultError> {
        if self.sync_delay > MAX_DELAY {
            return Err(FaultError::Delay(self.sync_delay));
        }
        if self.snapshot_delay > MAX_SNAPSHOT_DELAY {
            return Err(FaultError::SnapshotDelay(self.snapshot_delay));
        }
        self.network.iter().try_for_each(NetworkFault::check)
    }
}

/// Longest delay accepted for a message or an fsync: beyond it a node would look dead, which a
/// test can have more honestly by pausing or killing the process.
pub const MAX_DELAY: Duration = Duration::from_secs(10);
/// Longest delay accepted before snapshot work: it holds only its own region, so the node
/// stays alive, and clearing the fault ends it early.
pub const MAX_SNAPSHOT_DELAY: Duration = Duration::from_secs(60);

/// Why a fault specification was refused.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum FaultError {
    #[error("a drop of {0} parts per million is more than everything ({PPM})")]
    Fraction(u32),
    #[error("a delay of {0:?} is longer than the {MAX_DELAY:?} allowed")]
    Delay(Duration),
    #[error("a snapshot delay of {0:?} is longer than the {MAX_SNAPSHOT_DELAY:?} allowed")]
    SnapshotDelay(Duration),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{self, AdminRequest};

    #[test]
    fn out_of_range_faults_are_refused() {
        let too_much = FaultSpec {
            network: vec![NetworkFault::drop_ppm(&[1], PPM + 1)],
            ..FaultSpec::default()
        };
        assert_eq!(too_much.check(), Err(FaultError::Fraction(PPM + 1)));
        let too_slow = FaultSpec {
            sync_delay: Duration::from_secs(11),
            ..FaultSpec::default()
        };
        assert!(matches!(too_slow.check(), Err(FaultError::Delay(_))));
        let slow_install = FaultSpec {
            snapshot_delay: Duration::from_secs(60),
            ..FaultSpec::default()
        };
        assert!(slow_install.check().is_ok());
        let too_slow_install = FaultSpec {
            snapshot_delay: Duration::from_secs(61),
            ..FaultSpec::default()
        };
        assert!(matches!(
            too_slow_install.check(),
            Err(FaultError::SnapshotDelay(_))
        ));
        let slow_link = NetworkFault::delay(&[2], Duration::from_secs(11));
        assert!(matches!(slow_link.check(), Err(FaultError::Delay(_))));
    }

    #[test]
    fn fault_requests_round_trip() {
        let req = AdminRequest::SetFaults(FaultSpec {
            network: vec![NetworkFault::block(&[5]).only(FaultDirection::Outgoing)],
            sync_delay: Duration::from_millis(20),
            snapshot_delay: Duration::from_secs(2),
        });
        let back: AdminRequest = api::decode("admin request", &api::encode(&req)).unwrap();
        assert_eq!(back, req);
    }
}
