//! The key-value operations: each goes to the leader of the region holding its key, with the
//! epoch it was routed with. Refusals that prove the request did not take effect (not the
//! leader, a stale route, a busy or unreachable node) are retried with what they taught, and so
//! is any read; a write whose outcome is unknown is never sent again.

use std::net::SocketAddr;

use bytes::Bytes;
use tinykv_proto::Region;
use tinykv_proto::api::{self, KvError, KvOp, KvRequest, KvResponse, KvResult, ReadMode};
use tinykv_transport::{RpcError, Service};
use tokio::time::Instant;

use crate::client::Client;
use crate::error::{ClientError, rpc_error};
use crate::retry::backoff;

impl Client {
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

    /// Writes `value` only if `key` holds `expected` (`None`: only if it is absent), decided as
    /// the write applies; whether it wrote, and the value the key held then. Like any write,
    /// one whose outcome is unknown is not sent again (read the key back).
    pub async fn compare_and_swap(
        &self,
        key: impl Into<Bytes>,
        expected: Option<Bytes>,
        value: impl Into<Bytes>,
    ) -> Result<(bool, Option<Bytes>), ClientError> {
        let key = key.into();
        let op = KvOp::Cas {
            key: key.clone(),
            expected,
            value: value.into(),
        };
        match self.kv(&key, op).await? {
            KvResponse::Swapped { swapped, previous } => Ok((swapped, previous)),
            other => Err(self.unexpected(other)),
        }
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
                (KvResponse::Pairs { pairs, more }, region, _) => (pairs, more, region),
                (other, ..) => return Err(self.unexpected(other)),
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

    /// Deletes every key in `[start, end)` (empty `end`: no end), one log entry per region
    /// the range covers, in key order; returns how many keys were deleted. A region whose
    /// outcome is unknown ends it with that error: the regions before it are done, the
    /// rest untouched.
    pub async fn delete_range(
        &self,
        start: impl Into<Bytes>,
        end: impl Into<Bytes>,
    ) -> Result<u64, ClientError> {
        let end: Bytes = end.into();
        let mut from: Bytes = start.into();
        let mut deleted = 0;
        loop {
            if !end.is_empty() && from >= end {
                return Ok(deleted);
            }
            let op = KvOp::DeleteRange {
                start: from.clone(),
                end: end.clone(),
            };
            let region = match self.kv_in_region(&from.clone(), op).await? {
                (KvResponse::Deleted(n), region, _) => {
                    deleted += n;
                    region
                }
                (other, ..) => return Err(self.unexpected(other)),
            };
            // The node deleted up to the end of the region as routed (it checked the epoch).
            let region_end = region.end_key;
            if region_end.is_empty() || (!end.is_empty() && region_end.as_slice() >= end.as_ref()) {
                return Ok(deleted);
            }
            from = Bytes::from(region_end);
        }
    }

    /// Deletes every key that starts with `prefix` (see [`Client::delete_range`]). An empty
    /// prefix is refused: it would delete every key.
    pub async fn delete_prefix(&self, prefix: impl Into<Bytes>) -> Result<u64, ClientError> {
        let prefix: Bytes = prefix.into();
        if prefix.is_empty() {
            return Err(ClientError::Kv(KvError::BadRequest(
                "an empty prefix would delete every key; use delete_range(\"\", \"\") to mean it"
                    .into(),
            )));
        }
        let end = prefix_end(&prefix);
        self.delete_range(prefix, end).await
    }

    pub(crate) fn unexpected(&self, resp: KvResponse) -> ClientError {
        ClientError::Protocol {
            addr: self.endpoints()[0],
            detail: format!("unexpected answer {resp:?}"),
        }
    }

    async fn kv(&self, route_key: &[u8], op: KvOp) -> Result<KvResponse, ClientError> {
        self.kv_in_region(route_key, op)
            .await
            .map(|(resp, ..)| resp)
    }

    /// Sends `op` to the leader of the region holding `route_key`; the answer, the region
    /// (as routed, which the node checked) that gave it, and the node that answered.
    pub(crate) async fn kv_in_region(
        &self,
        route_key: &[u8],
        op: KvOp,
    ) -> Result<(KvResponse, Region, SocketAddr), ClientError> {
        let deadline = Instant::now() + self.timeout();
        let write = op.is_write();
        let mut attempt = 0u32;
        loop {
            let located = self.read_route().locate(route_key).cloned();
            let region = match located {
                Some(r) => r,
                None => {
                    if !self.locate_at_driver(route_key).await {
                        self.refresh_for(Some(route_key)).await?;
                    }
                    let located = self.read_route().locate(route_key).cloned();
                    match located {
                        Some(r) => r,
                        // A gap: a region split and the stores asked have not all applied it
                        // yet. Ask again shortly.
                        None => {
                            attempt += 1;
                            backoff(attempt, deadline)
                                .await
                                .ok_or(ClientError::Timeout(self.timeout()))?;
                            continue;
                        }
                    }
                }
            };
            let (region_id, epoch) = (region.id, region.epoch);
            let addr = self.target(region_id, attempt)?;
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(ClientError::Timeout(self.timeout()));
            }
            let req = KvRequest {
                region_id,
                epoch: Some(epoch),
                op: op.clone(),
            };
            match self
                .connections()
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
                            return Ok((resp, region, addr));
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
                    self.connections().suspect(addr);
                    self.forget_leader(region_id);
                }
                Err(e) => {
                    self.connections().suspect(addr);
                    self.forget_leader(region_id);
                    if write {
                        return Err(rpc_error(addr, e, true));
                    }
                }
            }
            attempt += 1;
            backoff(attempt, deadline)
                .await
                .ok_or(ClientError::Timeout(self.timeout()))?;
        }
    }
}

/// The first key after every key that starts with `prefix`, or empty when there is none
/// (a prefix of 0xff bytes only).
pub fn prefix_end(prefix: &[u8]) -> Bytes {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Bytes::from(end);
        }
    }
    Bytes::new()
}

/// Sets `from` just past the last key returned.
fn continue_after(from: &mut Bytes, out: &[(Bytes, Bytes)]) {
    if let Some((k, _)) = out.last() {
        let mut next = k.to_vec();
        next.push(0);
        *from = Bytes::from(next);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prefix_ends_before_the_next_prefix() {
        assert_eq!(prefix_end(b"user/"), Bytes::from_static(b"user0"));
        assert_eq!(prefix_end(b"a\xff"), Bytes::from_static(b"b"));
        assert_eq!(prefix_end(b"\xff\xff"), Bytes::new());
        assert_eq!(prefix_end(b""), Bytes::new());
    }
}
