//! [`Client`]: learning the cluster (stores, regions, leaders) from any endpoint, finding a
//! region's leader and following `NotLeader` hints, and admin requests. The key-value
//! operations are in `kv.rs`, region administration in `admin.rs`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tinykv_proto::api::{
    self, AdminRequest, AdminResponse, AdminResult, ClusterInfo, KvError, RegionInfo,
};
use tinykv_transport::{RpcError, Service, TlsFiles, TlsIdentity};
use tokio::time::Instant;

use crate::connections::Connections;
use crate::error::{ClientError, rpc_error};
use crate::region_cache::Route;
use crate::retry::backoff;
use crate::sync::lock;

/// How long a refresh waits for one store's answer before it asks the next one as well.
const ASK_NEXT_AFTER: Duration = Duration::from_millis(250);

/// How to reach a cluster.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    pub endpoints: Vec<SocketAddr>,
    pub tls: TlsFiles,
    /// How long one operation may take, retries included.
    pub timeout: Duration,
}

/// A cluster client; cheap to clone, share it between tasks.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    endpoints: Vec<SocketAddr>,
    timeout: Duration,
    connections: Connections,
    route: RwLock<Route>,
    /// The cluster said it runs no placement driver: routes come from the stores.
    driver_off: AtomicBool,
    /// The node that answered the last refresh: asked first by the next one.
    answered_last: Mutex<Option<SocketAddr>>,
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
                endpoints: config.endpoints,
                timeout: config.timeout,
                connections: Connections::new(identity, config.timeout),
                route: RwLock::new(Route::default()),
                driver_off: AtomicBool::new(false),
                answered_last: Mutex::new(None),
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

    pub(crate) async fn refresh(&self) -> Result<ClusterInfo, ClientError> {
        self.refresh_for(None).await
    }

    /// Learns the cluster from the first store that answers with regions; with `key`, goes on
    /// asking stores until one holds the key's region (each store knows only the regions it
    /// hosts). Returns the first answer with regions.
    ///
    /// Stores are asked in order (the one that answered the last refresh, the endpoints, then
    /// the stores learned; those that failed lately last), the next one as soon as the last
    /// fails or after [`ASK_NEXT_AFTER`]
    /// without an answer: a dead endpoint at the head of the list costs that, not the whole
    /// connect timeout.
    pub(crate) async fn refresh_for(&self, key: Option<&[u8]>) -> Result<ClusterInfo, ClientError> {
        let candidates = self.refresh_candidates();
        let mut asking = tokio::task::JoinSet::new();
        let mut next = 0;
        let mut last = None;
        let mut regionless = None;
        let mut first = None;
        loop {
            if let Some(&addr) = candidates.get(next) {
                let client = self.clone();
                asking
                    .spawn(async move { (addr, client.admin(addr, AdminRequest::Cluster).await) });
                next += 1;
            }
            let answered = if next < candidates.len() {
                match tokio::time::timeout(ASK_NEXT_AFTER, asking.join_next()).await {
                    Ok(answered) => answered,
                    Err(_) => continue,
                }
            } else {
                asking.join_next().await
            };
            let (addr, answer) = match answered {
                Some(Ok(answered)) => answered,
                Some(Err(e)) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                Some(Err(_)) => continue,
                None => break,
            };
            match answer {
                // A store that hosts no region (removed, or still joining) knows too little.
                Ok(AdminResponse::Cluster(info)) if info.regions.is_empty() => {
                    regionless = Some(info)
                }
                Ok(AdminResponse::Cluster(info)) => {
                    self.install(&info);
                    *lock(&self.inner.answered_last) = Some(addr);
                    let found = key.is_none_or(|k| self.read_route().locate(k).is_some());
                    let first = first.get_or_insert(info);
                    if found {
                        return Ok(first.clone());
                    }
                }
                Ok(other) => {
                    return Err(ClientError::Protocol {
                        addr,
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

    /// The node that answered last, the endpoints, then every store learned; those that
    /// failed lately last.
    fn refresh_candidates(&self) -> Vec<SocketAddr> {
        let mut candidates: Vec<SocketAddr> =
            lock(&self.inner.answered_last).iter().copied().collect();
        for addr in &self.inner.endpoints {
            if !candidates.contains(addr) {
                candidates.push(*addr);
            }
        }
        {
            let route = self.read_route();
            for addr in route.stores.values() {
                if !candidates.contains(addr) {
                    candidates.push(*addr);
                }
            }
        }
        // Stable: the order among the healthy (and among the suspects) stays the caller's.
        candidates.sort_by_key(|a| self.connections().is_suspect(a));
        candidates
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
        // All at once: a store that is down costs one connect timeout, not one each.
        for (_, answer) in self.admin_each(&addrs, AdminRequest::Cluster).await {
            let Ok(AdminResponse::Cluster(info)) = answer else {
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

    pub(crate) fn read_route(&self) -> std::sync::RwLockReadGuard<'_, Route> {
        self.inner
            .route
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn write_route(&self) -> std::sync::RwLockWriteGuard<'_, Route> {
        self.inner
            .route
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn driver_off(&self) -> &AtomicBool {
        &self.inner.driver_off
    }

    pub(crate) fn connections(&self) -> &Connections {
        &self.inner.connections
    }

    /// Sends an admin request to the node at `addr`.
    pub async fn admin(
        &self,
        addr: SocketAddr,
        req: AdminRequest,
    ) -> Result<AdminResponse, ClientError> {
        let body = self
            .connections()
            .call(addr, Service::Admin, api::encode(&req), self.inner.timeout)
            .await
            .map_err(|e| {
                // Never reached: routing and the next refresh try it last for a while.
                if matches!(e, RpcError::Connect(_)) {
                    self.connections().suspect(addr);
                }
                rpc_error(addr, e, false)
            })?;
        let result: AdminResult =
            api::decode("admin answer", &body).map_err(|e| ClientError::Protocol {
                addr,
                detail: e.to_string(),
            })?;
        result.map_err(ClientError::Kv)
    }

    /// Sends `req` to every node of `addrs` at once: one answer per address, in the order of
    /// `addrs`.
    pub async fn admin_each(
        &self,
        addrs: &[SocketAddr],
        req: AdminRequest,
    ) -> Vec<(SocketAddr, Result<AdminResponse, ClientError>)> {
        let mut asking = tokio::task::JoinSet::new();
        for (i, &addr) in addrs.iter().enumerate() {
            let client = self.clone();
            let req = req.clone();
            asking.spawn(async move { (i, client.admin(addr, req).await) });
        }
        let mut answers: Vec<Option<Result<AdminResponse, ClientError>>> =
            addrs.iter().map(|_| None).collect();
        while let Some(answered) = asking.join_next().await {
            match answered {
                Ok((i, answer)) => answers[i] = Some(answer),
                Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                // Cancelled: only a runtime shutting down does that; it is answered below.
                Err(_) => {}
            }
        }
        addrs
            .iter()
            .zip(answers)
            .map(|(&addr, answer)| {
                let answer = answer.unwrap_or_else(|| {
                    Err(ClientError::Unreachable {
                        addrs: addr.to_string(),
                        detail: "the request was cancelled".into(),
                    })
                });
                (addr, answer)
            })
            .collect()
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

    /// Where to send a request for `region_id`: its leader when known and not suspect, else
    /// one of its stores (or an endpoint), a different one on each `attempt`.
    pub(crate) fn target(&self, region_id: u64, attempt: u32) -> Result<SocketAddr, ClientError> {
        let route = self.read_route();
        let region = route.region(region_id);
        let leader = route
            .leaders
            .get(&region_id)
            .and_then(|s| route.stores.get(s))
            .copied();
        if let Some(addr) = leader.filter(|a| !self.connections().is_suspect(a)) {
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
            .filter(|a| !self.connections().is_suspect(a))
            .collect();
        let pool = if healthy.is_empty() {
            candidates
        } else {
            healthy
        };
        Ok(pool[attempt as usize % pool.len()])
    }

    pub(crate) fn learn_leader(&self, region_id: u64, store: Option<u64>) {
        let mut route = self.write_route();
        match store {
            Some(s) => route.leaders.insert(region_id, s),
            None => route.leaders.remove(&region_id),
        };
    }

    pub(crate) fn forget_leader(&self, region_id: u64) {
        self.write_route().leaders.remove(&region_id);
    }

    pub(crate) fn learn_leader_if_unknown(&self, region_id: u64, store: u64) {
        self.write_route().leaders.entry(region_id).or_insert(store);
    }
}

fn join_addrs(addrs: &[SocketAddr]) -> String {
    addrs
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}
