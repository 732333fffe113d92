//! Who may do what: the least certificate role each request needs, checked before a request
//! reaches the raft loop. Every request is named here without a wildcard, so a new variant does
//! not compile until someone decides who may send it.

use tinykv_proto::api::{AdminRequest, KvError, KvOp};
use tinykv_proto::placement::PlacementRequest;
use tinykv_transport::{Identity, Role};

/// What a request needs: its name (in refusals and metrics) and the least role that may send it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Need {
    pub request: &'static str,
    pub role: Role,
}

const fn need(request: &'static str, role: Role) -> Need {
    Need { request, role }
}

/// Reads need `readonly`, writes `readwrite`. The names are the `op` labels of the request
/// metrics. A backup only reads (its views), so a `readonly` certificate may take one.
pub(crate) fn kv(op: &KvOp) -> Need {
    let role = match op {
        KvOp::Get { .. }
        | KvOp::Scan { .. }
        | KvOp::OpenView { .. }
        | KvOp::ViewScan { .. }
        | KvOp::CloseView { .. }
        | KvOp::RenewViews { .. } => Role::ReadOnly,
        KvOp::Put { .. } | KvOp::Delete { .. } | KvOp::DeleteRange { .. } | KvOp::Cas { .. } => {
            Role::ReadWrite
        }
    };
    need(crate::metrics::op_name(op), role)
}

/// What only describes the cluster needs `readonly`; whatever changes it (membership,
/// leadership, the log, ids, faults, splits) needs `admin`.
pub(crate) fn admin(req: &AdminRequest) -> Need {
    use Role::{Admin, ReadOnly};
    match req {
        AdminRequest::Cluster => need("cluster", ReadOnly),
        AdminRequest::StoreStatus => need("store_status", ReadOnly),
        AdminRequest::RaftState { .. } => need("raft_state", ReadOnly),
        AdminRequest::RaftLog { .. } => need("raft_log", ReadOnly),
        AdminRequest::RaftEntries { .. } => need("raft_entries", ReadOnly),
        AdminRequest::RegionChecksum { .. } => need("region_checksum", ReadOnly),
        AdminRequest::TransferLeader { .. } => need("transfer_leader", Admin),
        AdminRequest::CompactLog { .. } => need("compact_log", Admin),
        AdminRequest::SnapshotTrigger { .. } => need("snapshot_trigger", Admin),
        AdminRequest::AddLearner { .. } => need("add_learner", Admin),
        AdminRequest::PromoteLearner { .. } => need("promote_learner", Admin),
        // Ids are never handed out twice: a caller could use them up.
        AdminRequest::AllocIds { .. } => need("alloc_ids", Admin),
        AdminRequest::RemovePeer { .. } => need("remove_peer", Admin),
        AdminRequest::SetFaults(_) => need("set_faults", Admin),
        AdminRequest::ClearFaults => need("clear_faults", Admin),
        AdminRequest::SplitRegion { .. } => need("split_region", Admin),
        // Only stores report: a false report could make the driver move replicas.
        AdminRequest::PlacementHeartbeat(_) => need("placement_heartbeat", Admin),
        AdminRequest::Placement(req) => placement(req),
    }
}

/// Asking the placement driver what it knows needs `readonly`; changing what it does needs
/// `admin`.
fn placement(req: &PlacementRequest) -> Need {
    use Role::{Admin, ReadOnly};
    match req {
        PlacementRequest::Status => need("placement_status", ReadOnly),
        PlacementRequest::Stores => need("store_list", ReadOnly),
        PlacementRequest::Operators => need("operator_list", ReadOnly),
        PlacementRequest::Schedulers => need("scheduler_list", ReadOnly),
        PlacementRequest::DeleteStore { .. } => need("store_delete", Admin),
        PlacementRequest::AddOperator(_) => need("operator_add", Admin),
        PlacementRequest::RemoveOperator { .. } => need("operator_remove", Admin),
        PlacementRequest::PauseScheduler { .. } => need("scheduler_pause", Admin),
        PlacementRequest::ResumeScheduler { .. } => need("scheduler_resume", Admin),
        PlacementRequest::Locate { .. } => need("region_locate", ReadOnly),
        PlacementRequest::Regions => need("region_list", ReadOnly),
    }
}

/// Lets the request through when `from`'s role allows it; otherwise the refusal names the
/// request, the role it needs and the role the certificate has.
pub(crate) fn check(from: &Identity, need: Need) -> Result<(), KvError> {
    let had = from.role();
    if had.allows(need.role) {
        return Ok(());
    }
    let who = match from {
        Identity::Store(id) => format!("store {id}"),
        Identity::Client { name, .. } => format!("client {name:?}"),
    };
    Err(KvError::PermissionDenied {
        request: need.request.to_string(),
        needed: need.role.to_string(),
        had: had.to_string(),
        who,
    })
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use tinykv_proto::api::ReadMode;
    use tinykv_proto::fault::FaultSpec;
    use tinykv_proto::region::RegionEpoch;

    use super::*;

    fn client(role: Role) -> Identity {
        Identity::Client {
            name: "app".into(),
            role,
        }
    }

    fn allowed(role: Role, need: Need) -> bool {
        check(&client(role), need).is_ok()
    }

    #[test]
    fn readonly_reads_readwrite_writes_and_only_admin_changes_the_cluster() {
        let key = Bytes::from_static(b"k");
        let reads = [
            KvOp::Get {
                key: key.clone(),
                read: ReadMode::Linearizable,
            },
            KvOp::Scan {
                start: key.clone(),
                end: Bytes::new(),
                limit: 1,
                read: ReadMode::Stale,
            },
            KvOp::OpenView { start: key.clone() },
            KvOp::ViewScan {
                view: 1,
                from: key.clone(),
                max_bytes: 1,
            },
            KvOp::CloseView { view: 1 },
            KvOp::RenewViews { views: vec![1] },
        ];
        let writes = [
            KvOp::Put {
                key: key.clone(),
                value: key.clone(),
            },
            KvOp::Delete { key: key.clone() },
            KvOp::DeleteRange {
                start: key.clone(),
                end: Bytes::new(),
            },
        ];
        for op in &reads {
            for role in Role::ALL {
                assert!(allowed(role, kv(op)), "{role} {op:?}");
            }
        }
        for op in &writes {
            assert!(!allowed(Role::ReadOnly, kv(op)), "{op:?}");
            assert!(allowed(Role::ReadWrite, kv(op)), "{op:?}");
            assert!(allowed(Role::Admin, kv(op)), "{op:?}");
        }

        let describe = [
            AdminRequest::Cluster,
            AdminRequest::StoreStatus,
            AdminRequest::RaftState { region_id: 1 },
            AdminRequest::RaftLog {
                region_id: 1,
                from: 0,
                to: 0,
            },
            AdminRequest::RaftEntries {
                region_id: 1,
                from: 0,
                to: 0,
            },
            AdminRequest::RegionChecksum { region_id: 1 },
            AdminRequest::Placement(PlacementRequest::Status),
            AdminRequest::Placement(PlacementRequest::Stores),
            AdminRequest::Placement(PlacementRequest::Operators),
            AdminRequest::Placement(PlacementRequest::Schedulers),
        ];
        let change = [
            AdminRequest::TransferLeader {
                region_id: 1,
                to_store: 2,
            },
            AdminRequest::CompactLog { region_id: 1 },
            AdminRequest::SnapshotTrigger { region_id: 1 },
            AdminRequest::AddLearner {
                region_id: 1,
                store_id: 4,
                peer_id: 9,
                addr: "127.0.0.1:1".into(),
            },
            AdminRequest::PromoteLearner {
                region_id: 1,
                store_id: 4,
            },
            AdminRequest::AllocIds { count: 1 },
            AdminRequest::RemovePeer {
                region_id: 1,
                store_id: 2,
            },
            AdminRequest::SetFaults(FaultSpec::default()),
            AdminRequest::ClearFaults,
            AdminRequest::SplitRegion {
                region_id: 1,
                epoch: RegionEpoch {
                    conf_ver: 1,
                    version: 1,
                },
                split_keys: vec![key.clone()],
                new_regions: Vec::new(),
            },
            AdminRequest::PlacementHeartbeat(Default::default()),
            AdminRequest::Placement(PlacementRequest::DeleteStore { store_id: 2 }),
            AdminRequest::Placement(PlacementRequest::AddOperator(
                tinykv_proto::placement::OperatorSpec::TransferLeader {
                    region_id: 1,
                    to_store: 2,
                },
            )),
            AdminRequest::Placement(PlacementRequest::RemoveOperator { region_id: 1 }),
            AdminRequest::Placement(PlacementRequest::PauseScheduler {
                name: "balance-leader".into(),
            }),
            AdminRequest::Placement(PlacementRequest::ResumeScheduler {
                name: "balance-leader".into(),
            }),
        ];
        for req in &describe {
            for role in Role::ALL {
                assert!(allowed(role, admin(req)), "{role} {req:?}");
            }
        }
        for req in &change {
            assert!(!allowed(Role::ReadOnly, admin(req)), "{req:?}");
            assert!(!allowed(Role::ReadWrite, admin(req)), "{req:?}");
            assert!(allowed(Role::Admin, admin(req)), "{req:?}");
            assert!(check(&Identity::Store(2), admin(req)).is_ok(), "{req:?}");
        }
    }

    #[test]
    fn a_refusal_names_the_request_and_both_roles() {
        let err = check(
            &client(Role::ReadWrite),
            admin(&AdminRequest::RemovePeer {
                region_id: 1,
                store_id: 3,
            }),
        )
        .unwrap_err();
        assert_eq!(
            err,
            KvError::PermissionDenied {
                request: "remove_peer".into(),
                needed: "admin".into(),
                had: "readwrite".into(),
                who: "client \"app\"".into(),
            }
        );
    }
}
