//! Region administration built on admin requests to a region's leader: membership changes
//! (learners first, a leader never removing itself), ids from the cluster's allocator, and
//! splits by hand.

use std::time::Duration;

use bytes::Bytes;
use tinykv_proto::api::{AdminRequest, AdminResponse, ConfChangeRefusal, KvError, MAX_ALLOC_IDS};
use tinykv_proto::placement::{Heartbeat, HeartbeatAnswer, PlacementAnswer, PlacementRequest};
use tinykv_proto::split::{check_split_keys, deal_ids, ids_needed};
use tinykv_proto::{CLUSTER_REGION_ID, PeerRole, Region};
use tokio::time::Instant;

use crate::client::Client;
use crate::error::ClientError;
use crate::retry::backoff;

/// How often `remove_peer` asks again when the leader counts too few live voters.
const LOSES_QUORUM_RETRIES: u32 = 8;

impl Client {
    /// Removes `store_id`'s peer from `region_id`. A leader never removes itself, so when that
    /// peer leads, leadership moves to another voter first. Done also when the store holds no
    /// peer of the region.
    pub async fn remove_peer(&self, region_id: u64, store_id: u64) -> Result<(), ClientError> {
        let deadline = Instant::now() + self.timeout();
        let mut attempt = 0u32;
        loop {
            let req = AdminRequest::RemovePeer {
                region_id,
                store_id,
            };
            match self.admin_leader(region_id, req).await {
                Err(ClientError::Kv(KvError::ConfChangeRefused {
                    refusal: ConfChangeRefusal::RemovesLeader { .. },
                    ..
                })) => self.move_leader_off(region_id, store_id, attempt).await?,
                // A leader elected a moment ago may not have heard from every voter yet: ask
                // again for about a second before taking the refusal as the answer.
                Err(ClientError::Kv(KvError::ConfChangeRefused {
                    refusal: ConfChangeRefusal::LosesQuorum { .. },
                    ..
                })) if attempt < LOSES_QUORUM_RETRIES => {}
                other => return other.map(|_| ()),
            }
            attempt += 1;
            backoff(attempt, deadline)
                .await
                .ok_or(ClientError::Timeout(self.timeout()))?;
        }
    }

    /// `count` fresh ids from the cluster's allocator (kept by region 1): never handed out
    /// before, never again. Returns the first; the ids are `first .. first + count`.
    pub async fn alloc_ids(&self, count: u32) -> Result<u64, ClientError> {
        let req = AdminRequest::AllocIds { count };
        if self.read_route().region(CLUSTER_REGION_ID).is_none() {
            // Region 1 always holds the smallest keys: a split leaves it the leftmost range.
            self.refresh_for(Some(b"")).await?;
        }
        match self.admin_leader(CLUSTER_REGION_ID, req).await? {
            AdminResponse::Ids { first, count: got } if got == count => Ok(first),
            other => Err(ClientError::Protocol {
                addr: self.endpoints()[0],
                detail: format!("unexpected answer to an id allocation: {other:?}"),
            }),
        }
    }

    /// A store's heartbeat to the placement driver (region 1's leader), answered with the
    /// steps for the regions it reported.
    pub async fn placement_heartbeat(&self, hb: Heartbeat) -> Result<HeartbeatAnswer, ClientError> {
        match self
            .to_cluster_region(AdminRequest::PlacementHeartbeat(hb))
            .await?
        {
            AdminResponse::HeartbeatAnswer(a) => Ok(a),
            other => Err(self.unexpected_admin("a placement heartbeat", other)),
        }
    }

    /// Asks the placement driver (region 1's leader). Orders that change what it does
    /// (`DeleteStore`, pausing and resuming) are answered once its record is replicated.
    pub async fn placement(&self, req: PlacementRequest) -> Result<PlacementAnswer, ClientError> {
        let what = format!("{req:?}");
        match self.to_cluster_region(AdminRequest::Placement(req)).await? {
            AdminResponse::Placement(a) => Ok(a),
            other => Err(self.unexpected_admin(&what, other)),
        }
    }

    async fn to_cluster_region(&self, req: AdminRequest) -> Result<AdminResponse, ClientError> {
        if self.read_route().region(CLUSTER_REGION_ID).is_none() {
            // Region 1 always holds the smallest keys: a split leaves it the leftmost range.
            self.refresh_for(Some(b"")).await?;
        }
        self.admin_leader(CLUSTER_REGION_ID, req).await
    }

    fn unexpected_admin(&self, what: &str, answer: AdminResponse) -> ClientError {
        ClientError::Protocol {
            addr: self.endpoints()[0],
            detail: format!("unexpected answer to {what}: {answer:?}"),
        }
    }

    /// Splits `region_id` at `split_keys` (strictly increasing, inside its range, none its start
    /// key): the region keeps the range left of the first key and each key starts a new region
    /// on the same stores, under ids allocated for it. Returns the regions the split left,
    /// left to right, once it applied. The split is asked again with the region's new epoch
    /// when the region changed meanwhile (a membership change), and while the leader is busy
    /// with another change of the region.
    pub async fn split_region(
        &self,
        region_id: u64,
        split_keys: Vec<Bytes>,
    ) -> Result<Vec<Region>, ClientError> {
        let deadline = Instant::now() + self.timeout();
        let known = self.read_route().region(region_id).cloned();
        let mut region = match known {
            Some(r) => r,
            None => self
                .regions()
                .await?
                .into_iter()
                .map(|r| r.region)
                .find(|r| r.id == region_id)
                .ok_or(ClientError::Kv(KvError::RegionNotFound { region_id }))?,
        };
        let mut attempt = 0u32;
        loop {
            check_split_keys(&region, &split_keys)
                .map_err(|reason| ClientError::Kv(KvError::BadRequest(reason)))?;
            let peers = region.peers.len();
            let count = ids_needed(split_keys.len(), peers);
            let count = u32::try_from(count)
                .ok()
                .filter(|c| *c <= MAX_ALLOC_IDS)
                .ok_or_else(|| {
                    ClientError::Kv(KvError::BadRequest(format!(
                        "{} split keys need {count} ids; split in smaller steps",
                        split_keys.len()
                    )))
                })?;
            let first = self.alloc_ids(count).await?;
            let req = AdminRequest::SplitRegion {
                region_id,
                epoch: region.epoch,
                split_keys: split_keys.clone(),
                new_regions: deal_ids(first, split_keys.len(), peers),
            };
            match self.admin_leader(region_id, req).await {
                Ok(AdminResponse::Split { regions }) => {
                    let mut route = self.write_route();
                    for r in &regions {
                        route.insert(r);
                    }
                    return Ok(regions);
                }
                Ok(other) => {
                    return Err(ClientError::Protocol {
                        addr: self.endpoints()[0],
                        detail: format!("unexpected answer to a split: {other:?}"),
                    });
                }
                Err(ClientError::Kv(KvError::EpochNotMatch { regions })) => {
                    match regions.into_iter().find(|r| r.id == region_id) {
                        Some(r) => region = r,
                        None => return Err(ClientError::Kv(KvError::RegionNotFound { region_id })),
                    }
                }
                Err(ClientError::Kv(KvError::ServerBusy)) => {}
                Err(e) => return Err(e),
            }
            attempt += 1;
            backoff(attempt, deadline)
                .await
                .ok_or(ClientError::Timeout(self.timeout()))?;
        }
    }

    /// Adds a learner on `store_id` (reachable at `addr`) to `region_id` under a freshly
    /// allocated peer id, and returns once the change applied. Done also when the store holds
    /// a peer of the region already.
    pub async fn add_learner(
        &self,
        region_id: u64,
        store_id: u64,
        addr: &str,
    ) -> Result<(), ClientError> {
        let peer_id = self.alloc_ids(1).await?;
        let req = AdminRequest::AddLearner {
            region_id,
            store_id,
            peer_id,
            addr: addr.to_string(),
        };
        self.admin_leader(region_id, req).await.map(|_| ())
    }

    /// Promotes the learner on `store_id` to voter once it has caught up, asking again while the
    /// leader answers that it is behind, for at most `wait`. Done also when it votes already.
    pub async fn promote_learner(
        &self,
        region_id: u64,
        store_id: u64,
        wait: Duration,
    ) -> Result<(), ClientError> {
        let deadline = Instant::now() + wait;
        let mut attempt = 0u32;
        loop {
            let req = AdminRequest::PromoteLearner {
                region_id,
                store_id,
            };
            match self.admin_leader(region_id, req).await {
                Err(ClientError::Kv(KvError::ConfChangeRefused {
                    refusal: ConfChangeRefusal::LearnerBehind { .. },
                    ..
                })) if Instant::now() < deadline => {}
                other => return other.map(|_| ()),
            }
            attempt += 1;
            // Catching up takes as long as the data takes to stream: poll at a steady pace.
            tokio::time::sleep(Duration::from_millis(50 * u64::from(attempt.min(10)))).await;
        }
    }

    /// Adds `store_id` to `region_id` as a voter the safe way: a learner first, promoted once
    /// it has caught up (within `wait`). A store that never comes up stays a learner and never
    /// counts toward the quorum.
    pub async fn add_peer(
        &self,
        region_id: u64,
        store_id: u64,
        addr: &str,
        wait: Duration,
    ) -> Result<(), ClientError> {
        self.add_learner(region_id, store_id, addr).await?;
        self.promote_learner(region_id, store_id, wait).await
    }

    /// Asks the leader on `store_id` to hand `region_id` to another of its voters (a different
    /// one on each attempt) and waits until some other store leads.
    async fn move_leader_off(
        &self,
        region_id: u64,
        store_id: u64,
        attempt: u32,
    ) -> Result<(), ClientError> {
        let info = self.refresh().await?;
        let others: Vec<u64> = info
            .regions
            .iter()
            .find(|r| r.region.id == region_id)
            .map(|r| {
                r.region
                    .peers
                    .iter()
                    .filter(|p| p.store_id != store_id && p.role == PeerRole::Voter)
                    .map(|p| p.store_id)
                    .collect()
            })
            .unwrap_or_default();
        let Some(&to_store) = others.get(attempt as usize % others.len().max(1)) else {
            return Err(ClientError::Kv(KvError::ConfChangeRefused {
                region_id,
                refusal: ConfChangeRefusal::RemovesLeader { store_id },
            }));
        };
        let req = AdminRequest::TransferLeader {
            region_id,
            to_store,
        };
        self.admin_leader(region_id, req).await?;
        let deadline = Instant::now() + self.timeout() / 2;
        let mut polls = 0u32;
        loop {
            let info = self.refresh().await?;
            let leader = info
                .regions
                .iter()
                .find(|r| r.region.id == region_id)
                .and_then(|r| r.leader_store);
            if leader.is_some_and(|l| l != store_id) {
                return Ok(());
            }
            polls += 1;
            // The transfer may not take (the target lagged or died): the caller tries again.
            if backoff(polls, deadline).await.is_none() {
                return Ok(());
            }
        }
    }
}
