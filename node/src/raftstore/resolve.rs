//! Finding a store whose address this store does not know. A store learns addresses from the
//! entries that add a store to a region; a store that catches up on a region by snapshot never
//! applies those entries. Such a store cannot answer the new store, even when the new store
//! leads one of its regions: its answers have nowhere to go, the leader hears nothing and sends
//! nothing more, and the region stays behind on this store for good. So when a store it does
//! not know of is unreachable, it asks the placement driver, which hears from every store (as
//! a TiKV store asks PD), and without one the stores it does know.

use std::time::{Duration, Instant};

use tinykv_client::Client;
use tinykv_proto::api::{self, AdminRequest, AdminResponse, AdminResult, StoreAddr};
use tinykv_proto::placement::{PlacementAnswer, PlacementRequest};
use tinykv_transport::{Endpoint, Service};
use tracing::{debug, info};

use crate::message::RaftMessage;

use super::msg::StoreMsg;
use super::store::Store;

impl Store {
    /// When no address is known for `store_id`, asks the placement driver (this store's own,
    /// if it runs here), then the stores this one knows, one after another, until one has
    /// it; the address comes back as [`StoreMsg::Addresses`]. At most one lookup per store
    /// per backoff.
    pub(super) fn look_up_if_unknown(&mut self, store_id: u64) {
        if store_id == self.store_id
            || self.directory.contains_key(&store_id)
            || !self.address_lookups.should_act(store_id, Instant::now())
        {
            return;
        }
        let at_driver: Vec<StoreAddr> = self
            .placement
            .as_ref()
            .map(|host| host.stores())
            .unwrap_or_default()
            .into_iter()
            .filter(|s| s.id == store_id)
            .map(|s| StoreAddr {
                store_id: s.id,
                addr: s.addr,
            })
            .collect();
        if !at_driver.is_empty() {
            let _ = self.outbox.tx.try_send(StoreMsg::Addresses(at_driver));
            return;
        }
        let driver = self
            .config
            .placement
            .enabled
            .then(|| (self.splits.ids.clone(), self.splits.client_config.clone()));
        let known: Vec<u64> = self
            .directory
            .keys()
            .copied()
            .filter(|s| *s != self.store_id)
            .collect();
        info!(
            store = store_id,
            asking = ?known,
            "no address known for a store; asking the placement driver or the stores this one knows"
        );
        let endpoint = self.endpoint.clone();
        let tx = self.outbox.tx.clone();
        let timeout = self.config.request_timeout.0;
        self.background.spawn(async move {
            if let Some((client, config)) = driver {
                let found = async {
                    let client = client.get_or_try_init(|| Client::connect(config)).await.ok()?;
                    let asked = client.placement(PlacementRequest::Stores);
                    match tokio::time::timeout(timeout, asked).await {
                        Ok(Ok(PlacementAnswer::Stores(stores))) => {
                            stores.into_iter().find(|s| s.id == store_id)
                        }
                        _ => None,
                    }
                }
                .await;
                if let Some(s) = found {
                    let addr = StoreAddr {
                        store_id,
                        addr: s.addr,
                    };
                    let _ = tx.send(StoreMsg::Addresses(vec![addr])).await;
                    return;
                }
            }
            for asked in known {
                match directory_of(&endpoint, asked, timeout).await {
                    Ok(stores) => {
                        // Only the address looked for: another store's directory may be older
                        // than this one's for the stores this one knows.
                        let found: Vec<StoreAddr> =
                            stores.into_iter().filter(|s| s.store_id == store_id).collect();
                        if !found.is_empty() {
                            let _ = tx.send(StoreMsg::Addresses(found)).await;
                            return;
                        }
                    }
                    Err(e) => debug!(store = store_id, asked, error = %e, "address lookup failed"),
                }
            }
            // Usual for a moment while a store joins: its first connections come before the
            // change that adds it has applied anywhere.
            info!(
                store = store_id,
                "no store this one knows has the address yet; asking again when it is next unreachable"
            );
        });
    }
}

/// The store directory of `store`, asked over the store link.
async fn directory_of(
    endpoint: &Endpoint<RaftMessage>,
    store: u64,
    timeout: Duration,
) -> Result<Vec<StoreAddr>, String> {
    let body = endpoint
        .call(
            store,
            Service::Admin,
            api::encode(&AdminRequest::Cluster),
            timeout,
        )
        .await
        .map_err(|e| e.to_string())?;
    let answer: AdminResult = api::decode("admin answer", &body).map_err(|e| e.to_string())?;
    match answer {
        Ok(AdminResponse::Cluster(info)) => Ok(info.stores),
        Ok(other) => Err(format!("unexpected answer {other:?}")),
        Err(e) => Err(e.to_string()),
    }
}
