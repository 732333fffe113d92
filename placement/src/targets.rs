//! Which stores may receive a new replica of a region. One rule for every scheduler, so that a
//! `Down`, `Offline` or `Tombstone` store (or one silent for a while) never becomes a target.

use crate::cluster::Cluster;
use crate::controller::OperatorController;
use crate::operator::StoreLimitKind;
use crate::region_meta::RegionMeta;
use crate::settings::Settings;
use crate::store::StoreInfo;

/// Stores that may take a new replica of `meta`: `Up`, heard from within the heartbeat
/// window, holding no peer of the region (a learner included), with room in their region
/// budget.
pub fn replica_targets<'a>(
    cluster: &'a Cluster,
    controller: &'a OperatorController,
    settings: &'a Settings,
    meta: &'a RegionMeta,
    now_ms: u64,
) -> impl Iterator<Item = &'a StoreInfo> + 'a {
    cluster.stores().filter(move |s| {
        s.accepts_new_work(now_ms, settings.store_heartbeat_window_ms)
            && !meta.holds_store(s.id)
            && controller.has_room(s.id, StoreLimitKind::Region, settings)
    })
}
