//! What the loop does on every tick: Raft ticks of the regions not hibernating (and asking
//! leaders at rest to hibernate), log GC, snapshot file housekeeping, and recording stores
//! that started.

use tracing::debug;

use crate::cmd::{CmdBody, RaftCmd};
use crate::log_gc::{GcLimits, LogView, compact_index};
use crate::peer::Peer;
use crate::reply::Reply;

use super::snapshot_files::prune_generated_snapshots;
use super::store::Store;

impl Store {
    pub(super) fn on_tick(&mut self) {
        self.ticks += 1;
        self.disk.on_tick(self.ticks);
        let gc = self.ticks.is_multiple_of(self.gc_every_ticks);
        let limits = self.gc_limits();
        // Before Raft's tick: a heartbeat it sends would leave the group not at rest.
        let leaders: Vec<u64> = self
            .peers
            .iter()
            .filter(|(id, p)| {
                p.is_leader() && !p.sleep.is_asleep() && !self.installing.contains_key(id)
            })
            .map(|(id, _)| *id)
            .collect();
        for region_id in leaders {
            self.consider_hibernating(region_id);
        }
        for (region_id, peer) in self.peers.iter_mut() {
            if self.installing.contains_key(region_id) || peer.sleep.is_asleep() {
                continue;
            }
            peer.raw.tick();
            self.active.insert(*region_id);
            if gc && peer.is_leader() {
                maybe_compact(peer, Some(limits), None);
            }
        }
        self.schedule_split_checks();
        let full_round = self.ticks.is_multiple_of(self.gauge_every_ticks);
        if full_round {
            self.region_health();
            self.drive_placement();
        }
        if self
            .ticks
            .is_multiple_of(self.gauge_every_ticks.div_ceil(5))
        {
            self.report_to_placement(full_round);
        }
        if gc {
            prune_generated_snapshots(self.engines.snap_dir());
            // A record proposed but lost (leadership moved) is proposed again.
            self.registering.clear();
        }
        self.record_started_stores();
    }

    /// As region 1's leader, records every store it hears from that the registry lacks, so
    /// that a founding store coming back with an empty data dir can be told it lost its data.
    pub(super) fn record_started_stores(&mut self) {
        let window = self.alive_window();
        let Some(peer) = self.peers.get_mut(&crate::FIRST_REGION_ID) else {
            return;
        };
        if !peer.is_leader() {
            return;
        }
        let new: Vec<u64> = peer
            .region()
            .peers
            .iter()
            .filter(|p| peer.is_alive(p.id, window))
            .map(|p| p.store_id)
            .filter(|s| !self.started_stores.contains(s) && !self.registering.contains(s))
            .collect();
        for store_id in new {
            let cmd = RaftCmd {
                region_id: peer.region_id(),
                epoch: peer.region().epoch,
                body: CmdBody::StoreStarted { store_id },
            };
            match peer.raw.propose(cmd.encode()) {
                Ok(_) => {
                    peer.proposed.inc();
                    self.registering.insert(store_id);
                }
                Err(e) => debug!(store = store_id, error = %e, "store record not proposed"),
            }
        }
    }
}

impl Store {
    pub(super) fn gc_limits(&self) -> GcLimits {
        let r = &self.config.raft;
        GcLimits {
            threshold: r.log_gc_threshold,
            count_limit: r.log_gc_count_limit,
            size_limit: r.log_gc_size_limit.0,
        }
    }
}

/// Proposes `CompactLog` where the GC rules say (`limits`), or as far as it can go when an
/// operator asks (`None`). `reply`, if given, is answered either way.
pub(super) fn maybe_compact(peer: &mut Peer, limits: Option<GcLimits>, reply: Option<Reply>) {
    let storage = peer.raw.store();
    let index = compact_to(peer, limits);
    let term = index.and_then(|i| tinykv_raft::Storage::term(storage, i).ok().map(|t| (i, t)));
    let Some((index, term)) = term else {
        if let Some(r) = reply {
            r.done();
        }
        return;
    };
    let cmd = RaftCmd {
        region_id: peer.region_id(),
        epoch: peer.region().epoch,
        body: CmdBody::CompactLog { index, term },
    };
    match reply {
        Some(r) => {
            peer.propose_cmd(cmd, r);
        }
        None => match peer.raw.propose(cmd.encode()) {
            Ok(_) => {
                peer.proposed.inc();
            }
            Err(e) => {
                debug!(region = peer.region_id(), error = %e, "compaction not proposed")
            }
        },
    }
}

/// Where [`maybe_compact`] would compact the log to, if anywhere.
pub(super) fn compact_to(peer: &Peer, limits: Option<GcLimits>) -> Option<u64> {
    let storage = peer.raw.store();
    let applied = storage.applied_index();
    let first = storage.truncated_state().index + 1;
    match limits {
        None => (applied > first).then(|| applied - 1),
        Some(limits) => {
            let me = peer.meta.id;
            let view = LogView {
                first,
                applied,
                size: peer.log_size,
                matched: peer
                    .raw
                    .status()
                    .progress
                    .iter()
                    .filter(|(id, _)| *id != me)
                    .map(|(_, p)| p.matched)
                    .collect(),
            };
            compact_index(&view, limits)
        }
    }
}
