//! Asking the placement driver where keys live (PD's `GetRegion`): one small request to region
//! 1's leader instead of walking the stores, each of which knows only the regions it hosts. The
//! driver knows what the regions' leaders last reported, so its answer is a guess like any
//! cached route: a stale one is refused by the node with the current regions. A cluster without
//! a driver (`placement.enabled: false`) says so once, and the client walks the stores from
//! then on; a driver that does not answer in time (region 1 electing) is passed over.

use std::sync::atomic::Ordering;
use std::time::Duration;

use tinykv_proto::api::KvError;
use tinykv_proto::placement::{PlacementAnswer, PlacementRequest};

use crate::client::Client;
use crate::error::ClientError;

/// How long a lookup waits for the driver before the stores are asked instead.
const DRIVER_LOOKUP_TIMEOUT: Duration = Duration::from_secs(1);

impl Client {
    /// The driver's answer to `req`, or `None` when there is no driver or it did not answer in
    /// time.
    pub(crate) async fn ask_driver(&self, req: PlacementRequest) -> Option<PlacementAnswer> {
        if self.driver_off().load(Ordering::Relaxed) {
            return None;
        }
        match tokio::time::timeout(DRIVER_LOOKUP_TIMEOUT, self.placement(req)).await {
            Ok(Ok(answer)) => Some(answer),
            // Only the "placement driver is off" refusal is a bad request here.
            Ok(Err(ClientError::Kv(KvError::BadRequest(_)))) => {
                self.driver_off().store(true, Ordering::Relaxed);
                None
            }
            Ok(Err(_)) | Err(_) => None,
        }
    }

    /// Learns the region holding `key` from the driver; whether the route now has one.
    pub(crate) async fn locate_at_driver(&self, key: &[u8]) -> bool {
        let req = PlacementRequest::Locate { key: key.to_vec() };
        if let Some(PlacementAnswer::Located(Some(route))) = self.ask_driver(req).await {
            self.write_route().learn_located(&route);
        }
        self.read_route().locate(key).is_some()
    }
}
