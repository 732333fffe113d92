//! `Client`: the Rust client of a tinykv cluster. It learns the cluster (stores, regions,
//! leaders) from any endpoint, routes each key to its region's leader, follows `NotLeader`
//! hints and refreshes its routes when a region changed.
//!
//! It retries only what is safe: a request refused before it took effect (not the leader, a
//! stale route, a busy or unreachable node) and any read. A write whose outcome is unknown
//! (timed out, connection lost after sending, overtaken by a new leader) is never sent again:
//! the caller gets an error that says so, because repeating it could apply it twice.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::ops::Bound;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use bytes::Bytes;
use thiserror::Error;
use tinykv_transport::{
    CertError, ConnectionTuning, RpcClient, RpcClientOptions, RpcError, Service, TlsFiles,
    TlsIdentity,
};
use tokio::time::Instant;

use crate::api::{
    self, AdminRequest, AdminResponse, AdminResult, ClusterInfo, ConfChangeRefusal, KvError, KvOp,
    KvRequest, KvResponse, KvResult, PeerRole, ReadMode, RegionInfo,
};
use tinykv_storage::{RangeEnd, Region};

/// How to reach a cluster.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    pub endpoints: Vec<SocketAddr>,
    pub tls: TlsFiles,
    /// How long one operation may take, retries included.
    pub timeout: Duration,
}

/// Why an operation failed. Each says whether the operation may have taken effect.
#[derive(Debug, Error)]
pub enum ClientError {
    #[error("no endpoint given: pass -e HOST:PORT or set TINYKV_ENDPOINTS")]
    NoEndpoints,
    #[error(transparent)]
    Tls(#[from] CertError),
    #[error("cannot reach any node ({addrs}): {detail}")]
    Unreachable { addrs: String, detail: String },
    #[error("the node at {addr} refused the TLS handshake: {detail}")]
    TlsRefused { addr: SocketAddr, detail: String },
    #[error("no answer within {0:?}; a write may or may not have taken effect")]
    Timeout(Duration),
    #[error(
        "the connection to {addr} was lost after the write was sent; it may or may not have taken effect"
    )]
    Ambiguous { addr: SocketAddr },
    #[error("{0}")]
    Kv(KvError),
    #[error("bad answer from {addr}: {detail}")]
    Protocol { addr: SocketAddr, detail: String },
}

impl ClientError {
    /// True when no node could be reached or none answered in time (exit code 3).
    pub fn is_unreachable(&self) -> bool {
        matches!(
            self,
            ClientError::Unreachable { .. } | ClientError::Timeout(_) | ClientError::NoEndpoints
        ) || matches!(self, ClientError::Kv(KvError::Timeout))
    }

    /// True when a certificate was refused (exit code 4).
    pub fn is_tls_refused(&self) -> bool {
        matches!(self, ClientError::TlsRefused { .. } | ClientError::Tls(_))
    }
}

/// What the client knows of where keys live: regions by range (TiKV's region cache), the
/// leader last seen for each, and the stores' addresses.
#[derive(Default)]
struct Route {
    regions: BTreeMap<RangeEnd, Region>,
    stores: HashMap<u64, SocketAddr>,
    leaders: HashMap<u64, u64>,
}

impl Route {
    fn locate(&self, key: &[u8]) -> Option<&Region> {
        let after = Bound::Excluded(RangeEnd::Key(key.to_vec()));
        let (_, region) = self.regions.range((after, Bound::Unbounded)).next()?;
        region.contains(key).then_some(region)
    }

    fn region(&self, region_id: u64) -> Option<&Region> {
        self.regions.values().find(|r| r.id == region_id)
    }

    /// Learns `region`, dropping the cached regions it overlaps, unless one of them is newer
    /// (then `region` is the stale one and is ignored).
    fn insert(&mut self, region: &Region) {
        let after = Bound::Excluded(RangeEnd::Key(region.start_key.clone()));
        let overlapping: Vec<RangeEnd> = self
            .regions
            .range((after, Bound::Unbounded))
            .take_while(|(_, r)| region.end_key.is_empty() || r.start_key < region.end_key)
            .map(|(end, _)| end.clone())
            .collect();
        let newer = overlapping.iter().any(|end| {
            let cached = &self.regions[end];
            cached.epoch.version > region.epoch.version
                || (cached.id == region.id && cached.epoch.conf_ver > region.epoch.conf_ver)
        });
        if newer {
            return;
        }
        for end in overlapping {
            if let Some(old) = self.regions.remove(&end)
                && old.id != region.id
            {
                self.leaders.remove(&old.id);
            }
        }
        self.regions.insert(region.range_end(), region.clone());
    }
}

/// A cluster client; cheap to clone, share it between tasks.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    identity: TlsIdentity,
    endpoints: Vec<SocketAddr>,
    timeout: Duration,
    conns: Mutex<HashMap<SocketAddr, Arc<RpcClient>>>,
    /// Nodes that recently timed out or could not be reached, and since when: routing avoids
    /// them for `SUSPECT_FOR` while others remain, so a dead leader whose connection has not
    /// been declared dead yet does not swallow every request.
    suspects: Mutex<HashMap<SocketAddr, Instant>>,
    route: RwLock<Route>,
}

impl Client {
    /// Loads the certificates and learns the cluster from the first endpoint that answers.
    pub async fn connect(config: ClientConfig) -> Result<Client, ClientError> {
        if config.endpoints.is_empty() {
            return Err(ClientError::NoEndpoints);
        }
        let identity = TlsIdentity::load(&config.tls)?;
        let client = Client {
            inner: Arc::new(Inner {
                identity,
                endpoints: config.endpoints,
                timeout: config.timeout,
                conns: Mutex::new(HashMap::new()),
                suspects: Mutex::new(HashMap::new()),
                route: RwLock::new(Route::default()),
            }),
        };
        client.refresh().await?;
        Ok(client)
    }

    pub fn endpoints(&self) -> &[SocketAddr] {
        &self.inner.endpoints
    }

    pub fn timeout(&self) -> Duration {
        self.inner.timeout
    }

    /// Asks the cluster for its stores, regions and leaders, and returns what it said.
    pub async fn cluster(&self) -> Result<ClusterInfo, ClientError> {
        self.refresh().await
    }

    async fn refresh(&self) -> Result<ClusterInfo, ClientError> {
        self.refresh_for(None).await
    }

    /// Learns the cluster from the first store that answers with regions; with `key`, goes on
    /// asking stores until one holds the key's region (each store knows only the regions it
    /// hosts). Returns the first answer with regions.
    async fn refresh_for(&self, key: Option<&[u8]>) -> Result<ClusterInfo, ClientError> {
        let mut candidates: Vec<SocketAddr> = self.inner.endpoints.clone();
        {
            let route = self.read_route();
            for addr in route.stores.values() {
                if !candidates.contains(addr) {
                    candidates.push(*addr);
                }
            }
        }
        let mut last = None;
        let mut regionless = None;
        let mut first = None;
        for addr in &candidates {
            match self.admin(*addr, AdminRequest::Cluster).await {
                // A store that hosts no region (removed, or still joining) knows too little.
                Ok(AdminResponse::Cluster(info)) if info.regions.is_empty() => {
                    regionless = Some(info)
                }
                Ok(AdminResponse::Cluster(info)) => {
                    self.install(&info);
                    let found = key.is_none_or(|k| self.read_route().locate(k).is_some());
                    let first = first.get_or_insert(info);
                    if found {
                        return Ok(first.clone());
                    }
                }
                Ok(other) => {
                    return Err(ClientError::Protocol {
                        addr: *addr,
                        detail: format!("unexpected {other:?}"),
                    });
                }
                Err(e @ ClientError::TlsRefused { .. }) => return Err(e),
                Err(e) => last = Some(e),
            }
        }
        if let Some(info) = first.or(regionless) {
            self.install(&info);
            return Ok(info);
        }
        Err(match last {
            Some(ClientError::Kv(e)) => ClientError::Kv(e),
            Some(e) => ClientError::Unreachable {
                addrs: join_addrs(&candidates),
                detail: e.to_string(),
            },
            None => ClientError::NoEndpoints,
        })
    }

    fn install(&self, info: &ClusterInfo) {
        let mut route = self.write_route();
        for s in &info.stores {
            if let Ok(addr) = s.addr.parse() {
                route.stores.insert(s.store_id, addr);
            }
        }
        for r in &info.regions {
            route.insert(&r.region);
            if let Some(leader) = r.leader_store {
                route.leaders.insert(r.region.id, leader);
            }
        }
    }

    /// Every region of the cluster, each as the store that leads it (or else the one with the
    /// newest epoch) describes it: every reachable store is asked, since each knows only the
    /// regions it hosts. In key order.
    pub async fn regions(&self) -> Result<Vec<RegionInfo>, ClientError> {
        self.refresh().await?;
        let addrs: Vec<SocketAddr> = self.read_route().stores.values().copied().collect();
        let mut best: HashMap<u64, RegionInfo> = HashMap::new();
        for addr in addrs {
            let Ok(AdminResponse::Cluster(info)) = self.admin(addr, AdminRequest::Cluster).await
            else {
                continue;
            };
            self.install(&info);
            for r in info.regions {
                let answered_by_leader = r.leader_store == Some(info.store_id);
                let better = match best.get(&r.region.id) {
                    None => true,
                    Some(b) => {
                        let (new, old) = (r.region.epoch, b.region.epoch);
                        (new.version, new.conf_ver) > (old.version, old.conf_ver)
                            || ((new.version, new.conf_ver) == (old.version, old.conf_ver)
                                && answered_by_leader)
                    }
                };
                if better {
                    best.insert(r.region.id, r);
                }
            }
        }
        // A region that split after a store described it overlaps the regions it became.
        let mut out: Vec<RegionInfo> = best.into_values().collect();
        out.sort_by(|a, b| {
            a.region
                .start_key
                .cmp(&b.region.start_key)
                .then(b.region.epoch.version.cmp(&a.region.epoch.version))
        });
        let mut tiled: Vec<RegionInfo> = Vec::with_capacity(out.len());
        for r in out {
            let covered = tiled.iter().any(|t| {
                t.region.epoch.version >= r.region.epoch.version
                    && t.region
                        .overlaps_range(&r.region.start_key, &r.region.end_key)
            });
            if !covered {
                tiled.push(r);
            }
        }
        Ok(tiled)
    }

    fn read_route(&self) -> std::sync::RwLockReadGuard<'_, Route> {
        self.inner
            .route
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write_route(&self) -> std::sync::RwLockWriteGuard<'_, Route> {
        self.inner
            .route
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn rpc(&self, addr: SocketAddr) -> Result<Arc<RpcClient>, ClientError> {
        let mut conns = self
            .inner
            .conns
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(c) = conns.get(&addr) {
            return Ok(c.clone());
        }
        let options = RpcClientOptions {
            timeout: self.inner.timeout,
            tuning: ConnectionTuning {
                keep_alive: KEEP_ALIVE,
                idle_timeout: DEAD_NODE_AFTER,
                ..ConnectionTuning::default()
            },
            ..RpcClientOptions::default()
        };
        let c = Arc::new(
            RpcClient::new(&self.inner.identity, addr, options).map_err(|e| {
                ClientError::Unreachable {
                    addrs: addr.to_string(),
                    detail: e.to_string(),
                }
            })?,
        );
        conns.insert(addr, c.clone());
        Ok(c)
    }

    async fn call(
        &self,
        addr: SocketAddr,
        service: Service,
        body: Bytes,
        timeout: Duration,
    ) -> Result<Bytes, RpcError> {
        let rpc = self.rpc(addr).map_err(|e| RpcError::Setup(e.to_string()))?;
        rpc.call_with_timeout(service, body, timeout).await
    }

    /// Sends an admin request to the node at `addr`.
    pub async fn admin(
        &self,
        addr: SocketAddr,
        req: AdminRequest,
    ) -> Result<AdminResponse, ClientError> {
        let body = self
            .call(addr, Service::Admin, api::encode(&req), self.inner.timeout)
            .await
            .map_err(|e| rpc_error(addr, e, false))?;
        let result: AdminResult =
            api::decode("admin answer", &body).map_err(|e| ClientError::Protocol {
                addr,
                detail: e.to_string(),
            })?;
        result.map_err(ClientError::Kv)
    }

    /// Sends an admin request to a region's leader, following `NotLeader` hints.
    pub async fn admin_leader(
        &self,
        region_id: u64,
        req: AdminRequest,
    ) -> Result<AdminResponse, ClientError> {
        let deadline = Instant::now() + self.inner.timeout;
        let mut attempt = 0u32;
        loop {
            let addr = self.target(region_id, attempt)?;
            match self.admin(addr, req.clone()).await {
                Err(ClientError::Kv(KvError::NotLeader { leader, .. })) => {
                    self.learn_leader(region_id, leader.map(|l| l.store_id))
                }
                Err(e) if e.is_unreachable() && !e.is_tls_refused() => {
                    self.forget_leader(region_id)
                }
                // The store asked no longer hosts the region (it was removed, or the cache is
                // old): the request never reached a log, so ask where the region is now and go
                // there.
                Err(ClientError::Kv(KvError::RegionNotFound { region_id: missing })) => {
                    self.forget_leader(region_id);
                    let start = self
                        .read_route()
                        .region(region_id)
                        .map(|r| r.start_key.clone());
                    let _ = self.refresh_for(start.as_deref()).await;
                    if start.is_none() && self.read_route().region(region_id).is_none() {
                        // No store knows it: that is the answer.
                        return Err(ClientError::Kv(KvError::RegionNotFound {
                            region_id: missing,
                        }));
                    }
                }
                other => return other,
            }
            attempt += 1;
            backoff(attempt, deadline)
                .await
                .ok_or(ClientError::Timeout(self.inner.timeout))?;
        }
    }

    /// Removes `store_id`'s peer from `region_id`. A leader never removes itself, so when that
    /// peer leads, leadership moves to another voter first. Done also when the store holds no
    /// peer of the region.
    pub async fn remove_peer(&self, region_id: u64, store_id: u64) -> Result<(), ClientError> {
        let deadline = Instant::now() + self.inner.timeout;
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
                .ok_or(ClientError::Timeout(self.inner.timeout))?;
        }
    }

    /// `count` fresh ids from the cluster's allocator (kept by region 1): never handed out
    /// before, never again. Returns the first; the ids are `first .. first + count`.
    pub async fn alloc_ids(&self, count: u32) -> Result<u64, ClientError> {
        let req = AdminRequest::AllocIds { count };
        if self
            .read_route()
            .region(tinykv_storage::CLUSTER_REGION_ID)
            .is_none()
        {
            // Region 1 always holds the smallest keys: a split leaves it the leftmost range.
            self.refresh_for(Some(b"")).await?;
        }
        match self
            .admin_leader(tinykv_storage::CLUSTER_REGION_ID, req)
            .await?
        {
            AdminResponse::Ids { first, count: got } if got == count => Ok(first),
            other => Err(ClientError::Protocol {
                addr: self.inner.endpoints[0],
                detail: format!("unexpected answer to an id allocation: {other:?}"),
            }),
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
        let deadline = Instant::now() + self.inner.timeout;
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
            crate::split::check_split_keys(&region, &split_keys)
                .map_err(|reason| ClientError::Kv(KvError::BadRequest(reason)))?;
            let peers = region.peers.len();
            let count = crate::split::ids_needed(split_keys.len(), peers);
            let count = u32::try_from(count)
                .ok()
                .filter(|c| *c <= crate::raftstore::MAX_ALLOC_IDS)
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
                new_regions: crate::split::deal_ids(first, split_keys.len(), peers),
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
                        addr: self.inner.endpoints[0],
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
                .ok_or(ClientError::Timeout(self.inner.timeout))?;
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
        let deadline = Instant::now() + self.inner.timeout / 2;
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

    pub async fn get(&self, key: impl Into<Bytes>) -> Result<Option<Bytes>, ClientError> {
        self.get_with(key, ReadMode::Linearizable).await
    }

    pub async fn get_with(
        &self,
        key: impl Into<Bytes>,
        read: ReadMode,
    ) -> Result<Option<Bytes>, ClientError> {
        let key = key.into();
        match self.kv(&key.clone(), KvOp::Get { key, read }).await? {
            KvResponse::Value(v) => Ok(v),
            other => Err(self.unexpected(other)),
        }
    }

    pub async fn put(
        &self,
        key: impl Into<Bytes>,
        value: impl Into<Bytes>,
    ) -> Result<(), ClientError> {
        let key = key.into();
        self.kv(
            &key.clone(),
            KvOp::Put {
                key,
                value: value.into(),
            },
        )
        .await
        .map(|_| ())
    }

    pub async fn delete(&self, key: impl Into<Bytes>) -> Result<(), ClientError> {
        let key = key.into();
        self.kv(&key.clone(), KvOp::Delete { key })
            .await
            .map(|_| ())
    }

    /// Keys in `[start, end)` (empty `end`: no end), at most `limit`, across regions in key order.
    pub async fn scan(
        &self,
        start: impl Into<Bytes>,
        end: impl Into<Bytes>,
        limit: u32,
        read: ReadMode,
    ) -> Result<Vec<(Bytes, Bytes)>, ClientError> {
        let end: Bytes = end.into();
        let mut from: Bytes = start.into();
        let mut out = Vec::new();
        loop {
            let want = limit.saturating_sub(out.len() as u32);
            if want == 0 {
                return Ok(out);
            }
            let op = KvOp::Scan {
                start: from.clone(),
                end: end.clone(),
                limit: want,
                read,
            };
            let (pairs, more, region) = match self.kv_in_region(&from.clone(), op).await? {
                (KvResponse::Pairs { pairs, more }, region) => (pairs, more, region),
                (other, _) => return Err(self.unexpected(other)),
            };
            out.extend(pairs);
            if more {
                continue_after(&mut from, &out);
                continue;
            }
            // The region that answered is exhausted (the node checked that its range is the
            // one routed to): go on with the next one, if the range reaches it.
            let region_end = region.end_key;
            if region_end.is_empty() || (!end.is_empty() && region_end.as_slice() >= end.as_ref()) {
                return Ok(out);
            }
            from = Bytes::from(region_end);
        }
    }

    fn unexpected(&self, resp: KvResponse) -> ClientError {
        ClientError::Protocol {
            addr: self.inner.endpoints[0],
            detail: format!("unexpected answer {resp:?}"),
        }
    }

    /// Forgets `addr`'s connection and avoids it for a while.
    fn suspect(&self, addr: SocketAddr) {
        self.inner
            .suspects
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(addr, Instant::now());
        self.inner
            .conns
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&addr);
    }

    fn is_suspect(&self, addr: &SocketAddr) -> bool {
        let mut suspects = self
            .inner
            .suspects
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        suspects.retain(|_, since| since.elapsed() < SUSPECT_FOR);
        suspects.contains_key(addr)
    }

    fn target(&self, region_id: u64, attempt: u32) -> Result<SocketAddr, ClientError> {
        let route = self.read_route();
        let region = route.region(region_id);
        let leader = route
            .leaders
            .get(&region_id)
            .and_then(|s| route.stores.get(s))
            .copied();
        if let Some(addr) = leader.filter(|a| !self.is_suspect(a)) {
            return Ok(addr);
        }
        let candidates: Vec<SocketAddr> = match region {
            Some(r) => r
                .peers
                .iter()
                .filter_map(|p| route.stores.get(&p.store_id).copied())
                .collect(),
            None => Vec::new(),
        };
        let candidates = if candidates.is_empty() {
            self.inner.endpoints.clone()
        } else {
            candidates
        };
        let healthy: Vec<SocketAddr> = candidates
            .iter()
            .copied()
            .filter(|a| !self.is_suspect(a))
            .collect();
        let pool = if healthy.is_empty() {
            candidates
        } else {
            healthy
        };
        Ok(pool[attempt as usize % pool.len()])
    }

    fn learn_leader(&self, region_id: u64, store: Option<u64>) {
        let mut route = self.write_route();
        match store {
            Some(s) => route.leaders.insert(region_id, s),
            None => route.leaders.remove(&region_id),
        };
    }

    fn forget_leader(&self, region_id: u64) {
        self.write_route().leaders.remove(&region_id);
    }

    async fn kv(&self, route_key: &[u8], op: KvOp) -> Result<KvResponse, ClientError> {
        self.kv_in_region(route_key, op).await.map(|(resp, _)| resp)
    }

    /// Sends `op` to the leader of the region holding `route_key`; the answer and the region
    /// (as routed, which the node checked) that gave it.
    async fn kv_in_region(
        &self,
        route_key: &[u8],
        op: KvOp,
    ) -> Result<(KvResponse, Region), ClientError> {
        let deadline = Instant::now() + self.inner.timeout;
        let write = op.is_write();
        let mut attempt = 0u32;
        loop {
            let located = self.read_route().locate(route_key).cloned();
            let region = match located {
                Some(r) => r,
                None => {
                    self.refresh_for(Some(route_key)).await?;
                    let located = self.read_route().locate(route_key).cloned();
                    match located {
                        Some(r) => r,
                        // A gap: a region split and the stores asked have not all applied it
                        // yet. Ask again shortly.
                        None => {
                            attempt += 1;
                            backoff(attempt, deadline)
                                .await
                                .ok_or(ClientError::Timeout(self.inner.timeout))?;
                            continue;
                        }
                    }
                }
            };
            let (region_id, epoch) = (region.id, region.epoch);
            let addr = self.target(region_id, attempt)?;
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(ClientError::Timeout(self.inner.timeout));
            }
            let req = KvRequest {
                region_id,
                epoch: Some(epoch),
                op: op.clone(),
            };
            match self
                .call(addr, Service::Client, api::encode(&req), remaining)
                .await
            {
                Ok(body) => {
                    let result: KvResult =
                        api::decode("kv answer", &body).map_err(|e| ClientError::Protocol {
                            addr,
                            detail: e.to_string(),
                        })?;
                    match result {
                        Ok(resp) => {
                            let store = self
                                .read_route()
                                .stores
                                .iter()
                                .find(|(_, a)| **a == addr)
                                .map(|(s, _)| *s);
                            if let Some(store) = store {
                                self.learn_leader_if_unknown(region_id, store);
                            }
                            return Ok((resp, region));
                        }
                        Err(KvError::NotLeader { leader, .. }) => {
                            self.learn_leader(region_id, leader.as_ref().map(|l| l.store_id));
                            if let Some(l) = leader
                                && let Ok(a) = l.addr.parse()
                            {
                                self.write_route().stores.insert(l.store_id, a);
                            }
                        }
                        // The node's own regions around the key come with the answer: learning
                        // them fixes the route without asking anyone.
                        Err(
                            KvError::EpochNotMatch { regions }
                            | KvError::KeyNotInRegion { regions, .. },
                        ) => {
                            let mut route = self.write_route();
                            for r in &regions {
                                route.insert(r);
                            }
                            if !regions.iter().any(|r| r.id == region_id) {
                                route.leaders.remove(&region_id);
                            }
                        }
                        // Not on that store (removed, or a new region not created there yet).
                        Err(KvError::RegionNotFound { .. }) => {
                            self.forget_leader(region_id);
                            let _ = self.refresh_for(Some(route_key)).await;
                        }
                        Err(KvError::ServerBusy) => {}
                        Err(KvError::Timeout | KvError::StaleCommand) if !write => {
                            self.forget_leader(region_id)
                        }
                        Err(e) => {
                            // A leader that timed out or lost its term is no guide for the next
                            // request; this one is not sent again (its outcome is unknown).
                            if matches!(e, KvError::Timeout | KvError::StaleCommand) {
                                self.forget_leader(region_id);
                            }
                            return Err(ClientError::Kv(e));
                        }
                    }
                }
                Err(e) if e.is_tls_refused() => return Err(rpc_error(addr, e, write)),
                Err(RpcError::Connect(_) | RpcError::Setup(_)) => {
                    self.suspect(addr);
                    self.forget_leader(region_id);
                }
                Err(e) => {
                    self.suspect(addr);
                    self.forget_leader(region_id);
                    if write {
                        return Err(rpc_error(addr, e, true));
                    }
                }
            }
            attempt += 1;
            backoff(attempt, deadline)
                .await
                .ok_or(ClientError::Timeout(self.inner.timeout))?;
        }
    }

    fn learn_leader_if_unknown(&self, region_id: u64, store: u64) {
        self.write_route().leaders.entry(region_id).or_insert(store);
    }
}

/// How often `remove_peer` asks again when the leader counts too few live voters.
const LOSES_QUORUM_RETRIES: u32 = 8;
/// How long a node that failed a call is avoided while others are available.
const SUSPECT_FOR: Duration = Duration::from_secs(3);
/// A request in flight to a node that died gets no answer and no error: only the connection's
/// idle timeout ends it. QUIC takes the smaller of both sides' idle timeouts, so the client
/// alone can shorten it; with pings this frequent a live node, even a busy one, answers well
/// within it, and a killed leader costs its clients about this long, not the whole request
/// timeout, before they move on to the next leader.
const DEAD_NODE_AFTER: Duration = Duration::from_secs(1);
const KEEP_ALIVE: Duration = Duration::from_millis(250);

/// Sets `from` just past the last key returned.
fn continue_after(from: &mut Bytes, out: &[(Bytes, Bytes)]) {
    if let Some((k, _)) = out.last() {
        let mut next = k.to_vec();
        next.push(0);
        *from = Bytes::from(next);
    }
}

/// Waits before the next attempt: immediately after the first, then doubling up to 200 ms.
/// `None` when the deadline has passed.
async fn backoff(attempt: u32, deadline: Instant) -> Option<()> {
    let wait = if attempt <= 1 {
        Duration::ZERO
    } else {
        Duration::from_millis(5u64 << attempt.min(6)).min(Duration::from_millis(200))
    };
    let now = Instant::now();
    if now + wait >= deadline {
        return None;
    }
    tokio::time::sleep(wait).await;
    Some(())
}

fn rpc_error(addr: SocketAddr, e: RpcError, write: bool) -> ClientError {
    if e.is_tls_refused() {
        return ClientError::TlsRefused {
            addr,
            detail: e.to_string(),
        };
    }
    match e {
        RpcError::Timeout(d) => ClientError::Timeout(d),
        RpcError::ConnectionLost(_) if write => ClientError::Ambiguous { addr },
        RpcError::Remote(r) => ClientError::Protocol {
            addr,
            detail: r.to_string(),
        },
        RpcError::Frame(f) => ClientError::Protocol {
            addr,
            detail: f.to_string(),
        },
        other => ClientError::Unreachable {
            addrs: addr.to_string(),
            detail: other.to_string(),
        },
    }
}

fn join_addrs(addrs: &[SocketAddr]) -> String {
    addrs
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}
