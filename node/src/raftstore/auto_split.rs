//! What a store needs to split the regions it leads on its own: the split-check worker, the
//! regions being measured or split, and a client for the cluster's id allocator.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;

use tinykv_client::{Client, ClientConfig};
use tinykv_storage::{Engines, SplitLimits, StorageError};
use tinykv_transport::TlsFiles;
use tokio::sync::mpsc;

use super::msg::StoreMsg;
use crate::config::NodeConfig;
use crate::peer::Peer;
use crate::split_check::SplitChecker;

/// What a store needs to split its regions on its own: the split-check worker, which regions
/// are being measured or split, and a client for the cluster's id allocator.
pub(crate) struct AutoSplit {
    pub(super) checker: SplitChecker,
    /// Regions being measured, and regions whose split is being asked for (neither is started
    /// twice at once).
    pub(super) checking: HashSet<u64>,
    pub(super) splitting: HashSet<u64>,
    /// Regions that grew by `growth_step` bytes since their last check: measured at the next
    /// tick rather than at the next interval.
    pub(super) grown: Vec<u64>,
    pub(super) growth_step: u64,
    pub(super) every_ticks: u64,
    pub(super) ids: Arc<tokio::sync::OnceCell<Client>>,
    pub(super) client_config: ClientConfig,
    pub(super) tx: mpsc::Sender<StoreMsg>,
}

/// The most split keys one automatic split proposes; a region still too large is cut again
/// at its next check.
const MAX_AUTO_SPLIT_KEYS: usize = 10;

impl AutoSplit {
    /// Starts the split-check worker; `addr` is this store's, where the allocator's client
    /// connects.
    pub fn start(
        config: &NodeConfig,
        engines: &Engines,
        addr: SocketAddr,
        tx: &mpsc::Sender<StoreMsg>,
    ) -> Result<AutoSplit, StorageError> {
        let c = &config.region;
        let limits = SplitLimits {
            split_size: c.split_size.0,
            max_size: c.max_size.0,
            split_keys: c.split_keys,
            max_keys: c.max_keys,
            max_split_keys: MAX_AUTO_SPLIT_KEYS,
        };
        let checked = tx.clone();
        let checker = SplitChecker::start(engines.clone(), limits, move |result| {
            checked
                .blocking_send(StoreMsg::SplitChecked(result))
                .is_ok()
        })
        .map_err(|source| StorageError::Io {
            path: config.data_dir.clone(),
            source,
        })?;
        let tick = config.raft.base_tick_interval.0.as_millis().max(1);
        let every_ticks = (c.split_check_interval.0.as_millis() / tick).max(1) as u64;
        let tls = &config.tls;
        Ok(AutoSplit {
            checker,
            checking: HashSet::new(),
            splitting: HashSet::new(),
            grown: Vec::new(),
            growth_step: (c.split_size.0 / 16).max(1),
            every_ticks,
            ids: Arc::new(tokio::sync::OnceCell::new()),
            client_config: ClientConfig {
                endpoints: vec![addr],
                tls: TlsFiles {
                    ca: tls.ca.clone(),
                    cert: tls.cert.clone(),
                    key: tls.key.clone(),
                },
                timeout: config.request_timeout.0,
            },
            tx: tx.clone(),
        })
    }

    /// After `peer` applied entries: a leader whose region grew by a step is measured soon.
    pub fn note_growth(&mut self, region_id: u64, peer: Option<&Peer>) {
        if let Some(peer) = peer
            && peer.is_leader()
            && peer.size_diff >= self.growth_step
            && !self.checking.contains(&region_id)
            && !self.grown.contains(&region_id)
        {
            self.grown.push(region_id);
        }
    }

    pub fn done(&mut self, region_id: u64) {
        self.splitting.remove(&region_id);
    }
}
