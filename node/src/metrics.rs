//! What a node counts for its operators, served by the status server's `/metrics` in the
//! Prometheus text format. The raft loop and the services update these as they work (atomics,
//! no lock on the hot path); what already lives elsewhere (the transport's counters and
//! connections, the data dir's disk) is read when a scrape asks.

use std::sync::Weak;
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};
use tinykv_proto::api::{KvError, KvOp};
use tinykv_raft::MessageType;
use tinykv_transport::Endpoint;

use crate::message::RaftMessage;

type Label = [(&'static str, &'static str); 1];
type Labels = [(&'static str, &'static str); 2];

/// Every Raft message type in declaration order, so that `msg_type as usize` indexes it.
const MESSAGE_TYPES: [(MessageType, &str); 17] = [
    (MessageType::Hup, "hup"),
    (MessageType::Beat, "beat"),
    (MessageType::Propose, "propose"),
    (MessageType::Append, "append"),
    (MessageType::AppendResponse, "append_response"),
    (MessageType::RequestVote, "request_vote"),
    (MessageType::RequestVoteResponse, "request_vote_response"),
    (MessageType::RequestPreVote, "request_pre_vote"),
    (
        MessageType::RequestPreVoteResponse,
        "request_pre_vote_response",
    ),
    (MessageType::Snapshot, "snapshot"),
    (MessageType::Heartbeat, "heartbeat"),
    (MessageType::HeartbeatResponse, "heartbeat_response"),
    (MessageType::TransferLeader, "transfer_leader"),
    (MessageType::TimeoutNow, "timeout_now"),
    (MessageType::ReadIndex, "read_index"),
    (MessageType::ReadIndexResponse, "read_index_response"),
    // Signals between peers that are not Raft's (tombstone, hibernation) are counted here.
    (MessageType::Hup, "signal"),
];
const SIGNAL: usize = MESSAGE_TYPES.len() - 1;

/// Latency buckets from 50 µs to about 26 s, doubling: an fsync, an apply round and a client
/// request all fall inside.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_05, 2.0, 20))
}

/// The node's metrics. Cheap to update from any thread.
pub struct Metrics {
    registry: Registry,
    pub(crate) proposals: Counter,
    pub(crate) proposal_duration: Histogram,
    pub(crate) committed_entries: Counter,
    pub(crate) applied_entries: Counter,
    pub(crate) apply_duration: Histogram,
    pub(crate) fsync_duration: Histogram,
    pub(crate) log_bytes_written: Counter,
    pub(crate) data_bytes_written: Counter,
    messages_sent: Vec<Counter>,
    messages_received: Vec<Counter>,
    pub(crate) regions: Gauge,
    pub(crate) leaders: Gauge,
    pub(crate) regions_without_leader: Gauge,
    pub(crate) snapshots_generated: Counter,
    pub(crate) snapshots_applied: Counter,
    requests: Family<Labels, Counter>,
    request_duration: Family<Label, Histogram, fn() -> Histogram>,
    admin_refused: Family<Label, Counter>,
    disk_used: Gauge,
    disk_available: Gauge,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// Metrics of a node whose transport is `endpoint` (held weakly: the endpoint's services
    /// hold these metrics).
    pub fn new(endpoint: Option<Weak<Endpoint<RaftMessage>>>) -> Metrics {
        let mut reg = Registry::with_prefix("tinykv");
        let proposals = Counter::default();
        reg.register(
            "raft_proposals",
            "Commands this store's leaders proposed (client writes and admin commands)",
            proposals.clone(),
        );
        let proposal_duration = latency_histogram();
        reg.register_with_unit(
            "raft_proposal_duration",
            "From a command's proposal to its entry applied on the leader",
            Unit::Seconds,
            proposal_duration.clone(),
        );
        let committed_entries = Counter::default();
        reg.register(
            "raft_committed_entries",
            "Log entries this store's peers learnt were committed and began to apply",
            committed_entries.clone(),
        );
        let applied_entries = Counter::default();
        reg.register(
            "raft_applied_entries",
            "Log entries this store's peers applied",
            applied_entries.clone(),
        );
        let apply_duration = latency_histogram();
        reg.register_with_unit(
            "raft_apply_duration",
            "Applying one loop round's committed entries of every region, write included",
            Unit::Seconds,
            apply_duration.clone(),
        );
        let fsync_duration = latency_histogram();
        reg.register_with_unit(
            "storage_fsync_duration",
            "Committing one loop round's Raft writes with an fsync (group commit)",
            Unit::Seconds,
            fsync_duration.clone(),
        );
        let log_bytes_written = Counter::default();
        reg.register_with_unit(
            "storage_log_written",
            "Bytes of Raft log entries written",
            Unit::Bytes,
            log_bytes_written.clone(),
        );
        let data_bytes_written = Counter::default();
        reg.register_with_unit(
            "storage_data_written",
            "Bytes of user keys and values written by applied commands",
            Unit::Bytes,
            data_bytes_written.clone(),
        );
        let sent = Family::<Label, Counter>::default();
        reg.register(
            "raft_messages_sent",
            "Raft messages this store's peers sent, by type",
            sent.clone(),
        );
        let received = Family::<Label, Counter>::default();
        reg.register(
            "raft_messages_received",
            "Raft messages this store's peers were handed, by type",
            received.clone(),
        );
        let by_type = |family: &Family<Label, Counter>| {
            MESSAGE_TYPES
                .iter()
                .map(|(_, name)| family.get_or_create_owned(&[("type", *name)]))
                .collect()
        };
        let regions = Gauge::default();
        reg.register(
            "regions",
            "Regions this store holds a peer of",
            regions.clone(),
        );
        let leaders = Gauge::default();
        reg.register(
            "region_leaders",
            "Regions whose leader is on this store",
            leaders.clone(),
        );
        let regions_without_leader = Gauge::default();
        reg.register(
            "regions_without_leader",
            "Regions of this store whose peer knows no leader it can reach",
            regions_without_leader.clone(),
        );
        let snapshots_generated = Counter::default();
        reg.register(
            "snapshots_generated",
            "Region snapshots this store built and handed to the transport for a peer",
            snapshots_generated.clone(),
        );
        let snapshots_applied = Counter::default();
        reg.register(
            "snapshots_applied",
            "Region snapshots installed on this store",
            snapshots_applied.clone(),
        );
        let requests = Family::<Labels, Counter>::default();
        reg.register(
            "requests",
            "Client requests answered, by operation and outcome (ok or the error's kind)",
            requests.clone(),
        );
        let request_duration =
            Family::<Label, Histogram, fn() -> Histogram>::new_with_constructor(latency_histogram);
        reg.register_with_unit(
            "request_duration",
            "From a client request's arrival to its answer, by operation",
            Unit::Seconds,
            request_duration.clone(),
        );
        // Admin requests are not counted in `requests` (their mix says little about load), but
        // a refused one is worth an alert: something holds a certificate it should not use so.
        let admin_refused = Family::<Label, Counter>::default();
        reg.register(
            "admin_requests_refused",
            "Admin requests refused because the client certificate's role does not allow them, \
             by request (refused key-value requests are in requests, outcome permission_denied)",
            admin_refused.clone(),
        );
        let disk_used = Gauge::default();
        reg.register_with_unit(
            "disk_used",
            "Bytes in the data dir",
            Unit::Bytes,
            disk_used.clone(),
        );
        let disk_available = Gauge::default();
        reg.register_with_unit(
            "disk_available",
            "Bytes still available to the node on the data dir's filesystem",
            Unit::Bytes,
            disk_available.clone(),
        );
        if let Some(endpoint) = endpoint {
            reg.register_collector(Box::new(TransportCollector { endpoint }));
        }
        Metrics {
            registry: reg,
            proposals,
            proposal_duration,
            committed_entries,
            applied_entries,
            apply_duration,
            fsync_duration,
            log_bytes_written,
            data_bytes_written,
            messages_sent: by_type(&sent),
            messages_received: by_type(&received),
            regions,
            leaders,
            regions_without_leader,
            snapshots_generated,
            snapshots_applied,
            requests,
            request_duration,
            admin_refused,
            disk_used,
            disk_available,
        }
    }

    /// Counts a Raft message sent (`Some(type)`) or a store signal (`None`).
    pub(crate) fn message_sent(&self, msg_type: Option<MessageType>) {
        self.messages_sent[message_index(msg_type)].inc();
    }

    pub(crate) fn message_received(&self, msg_type: Option<MessageType>) {
        self.messages_received[message_index(msg_type)].inc();
    }

    /// Counts a client request (`op` from [`op_name`]) and how long its answer took.
    pub(crate) fn request(&self, op: &'static str, result: Result<(), &KvError>, took: Duration) {
        let outcome = result.map_or_else(error_kind, |()| "ok");
        self.requests
            .get_or_create(&[("op", op), ("outcome", outcome)])
            .inc();
        self.request_duration
            .get_or_create(&[("op", op)])
            .observe(took.as_secs_f64());
    }

    /// Counts an admin request refused for the caller's role (`request` as the refusal names it).
    pub(crate) fn admin_refused(&self, request: &'static str) {
        self.admin_refused
            .get_or_create(&[("request", request)])
            .inc();
    }

    /// Records the data dir's size and its filesystem's free space (file-system work: call it
    /// off the async runtime).
    pub(crate) fn set_disk(&self, used: u64, available: u64) {
        self.disk_used.set(i64::try_from(used).unwrap_or(i64::MAX));
        self.disk_available
            .set(i64::try_from(available).unwrap_or(i64::MAX));
    }

    /// Everything in the Prometheus text format (version 0.0.4).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail; a collector's error would leave a partial page.
        if let Err(e) =
            prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
        {
            tracing::warn!(error = %e, "metrics encoding failed");
        }
        out
    }
}

/// The content type of [`Metrics::encode`]'s text.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// The `op` label of a client request.
pub(crate) fn op_name(op: &KvOp) -> &'static str {
    match op {
        KvOp::Get { .. } => "get",
        KvOp::Scan { .. } => "scan",
        KvOp::Put { .. } => "put",
        KvOp::Delete { .. } => "delete",
        KvOp::DeleteRange { .. } => "delete_range",
        KvOp::OpenView { .. } => "open_view",
        KvOp::ViewScan { .. } => "view_scan",
        KvOp::CloseView { .. } => "close_view",
        KvOp::RenewViews { .. } => "renew_views",
        KvOp::Cas { .. } => "cas",
    }
}

fn message_index(msg_type: Option<MessageType>) -> usize {
    match msg_type {
        Some(t) => (t as usize).min(SIGNAL - 1),
        None => SIGNAL,
    }
}

/// A short, stable name for an error, for the `outcome` label.
fn error_kind(e: &KvError) -> &'static str {
    match e {
        KvError::NotLeader { .. } => "not_leader",
        KvError::KeyNotInRegion { .. } => "key_not_in_region",
        KvError::EpochNotMatch { .. } => "epoch_not_match",
        KvError::RegionNotFound { .. } => "region_not_found",
        KvError::StaleCommand => "stale_command",
        KvError::Timeout => "timeout",
        KvError::ServerBusy => "server_busy",
        KvError::Storage(_) => "storage",
        KvError::ViewNotOpen { .. } => "view_not_open",
        KvError::Api(_) => "bad_request",
        KvError::FaultInjection { .. } => "fault_injection",
        KvError::DiskFull { .. } => "disk_full",
        KvError::OutcomeUnknown { .. } => "outcome_unknown",
        KvError::ConfChangeRefused { .. } => "conf_change_refused",
        KvError::BadRequest(_) => "bad_request",
        KvError::PermissionDenied { .. } => "permission_denied",
    }
}

/// Reads the transport's own counters and its connections when a scrape asks.
struct TransportCollector {
    endpoint: Weak<Endpoint<RaftMessage>>,
}

impl std::fmt::Debug for TransportCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TransportCollector").finish_non_exhaustive()
    }
}

fn counter(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    value: u64,
) -> Result<(), std::fmt::Error> {
    let c = ConstCounter::new(value);
    c.encode(encoder.encode_descriptor(name, help, unit, c.metric_type())?)
}

impl Collector for TransportCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(endpoint) = self.endpoint.upgrade() else {
            return Ok(());
        };
        let s = endpoint.stats();
        let e = &mut encoder;
        counter(
            e,
            "transport_frames_sent",
            "Batch frames of Raft messages written",
            None,
            s.batches_sent,
        )?;
        counter(
            e,
            "transport_messages_dropped",
            "Raft messages dropped: peer queue full, peer unreachable, filtered or oversized",
            None,
            s.dropped_queue_full
                + s.dropped_unreachable
                + s.dropped_by_filter
                + s.dropped_oversized,
        )?;
        counter(
            e,
            "transport_frame_errors",
            "Streams closed on a frame that could not be read",
            None,
            s.frame_errors,
        )?;
        counter(
            e,
            "transport_handshakes_refused",
            "Incoming connections refused in the TLS handshake or hello (wrong certificate)",
            None,
            s.handshakes_refused + s.hellos_refused,
        )?;
        counter(
            e,
            "transport_rpcs_served",
            "Client and admin requests served",
            None,
            s.rpcs_served,
        )?;
        counter(
            e,
            "quic_connections_dialed",
            "QUIC connections this store opened",
            None,
            s.connections_dialed,
        )?;
        counter(
            e,
            "snapshots_sent",
            "Region snapshots sent and acknowledged",
            None,
            s.snapshots_sent,
        )?;
        counter(
            e,
            "snapshots_received",
            "Region snapshots received and verified",
            None,
            s.snapshots_received,
        )?;
        counter(
            e,
            "snapshots_rejected",
            "Incoming region snapshots refused or broken off",
            None,
            s.snapshots_rejected,
        )?;
        counter(
            e,
            "snapshot_sent",
            "Snapshot bytes sent",
            Some(&Unit::Bytes),
            s.snapshot_bytes_sent,
        )?;
        counter(
            e,
            "snapshot_received",
            "Snapshot bytes received",
            Some(&Unit::Bytes),
            s.snapshot_bytes_received,
        )?;
        let waited = ConstCounter::new(s.snapshot_rate_limit_wait_micros as f64 / 1e6);
        waited.encode(e.encode_descriptor(
            "snapshot_rate_limit_wait",
            "Time outgoing snapshots waited on snapshot.max-bytes-per-sec",
            Some(&Unit::Seconds),
            waited.metric_type(),
        )?)?;

        let conns = endpoint.connections();
        let open = ConstGauge::new(conns.len() as i64);
        open.encode(e.encode_descriptor(
            "quic_connections",
            "QUIC connections this store dialed and holds",
            None,
            open.metric_type(),
        )?)?;
        let rtt = ConstGauge::new(0.0f64);
        let mut family = e.encode_descriptor(
            "quic_rtt",
            "Round-trip time to each store this one dialed, as QUIC estimates it",
            Some(&Unit::Seconds),
            rtt.metric_type(),
        )?;
        for c in &conns {
            let store = c.store_id.to_string();
            let labels = [("store", store.as_str())];
            ConstGauge::new(c.rtt.as_secs_f64()).encode(family.encode_family(&labels)?)?;
        }
        let lost = ConstCounter::new(0u64);
        let mut family = e.encode_descriptor(
            "quic_lost_packets",
            "Packets declared lost on the connection to each store (reset when it reconnects)",
            None,
            lost.metric_type(),
        )?;
        for c in &conns {
            let store = c.store_id.to_string();
            let labels = [("store", store.as_str())];
            ConstCounter::new(c.lost_packets).encode(family.encode_family(&labels)?)?;
        }
        let sent = ConstCounter::new(0u64);
        let mut family = e.encode_descriptor(
            "quic_sent_packets",
            "Packets sent on the connection to each store (reset when it reconnects)",
            None,
            sent.metric_type(),
        )?;
        for c in &conns {
            let store = c.store_id.to_string();
            let labels = [("store", store.as_str())];
            ConstCounter::new(c.sent_packets).encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_types_are_indexed_by_their_discriminant() {
        for (i, (t, _)) in MESSAGE_TYPES[..SIGNAL].iter().enumerate() {
            assert_eq!(*t as usize, i, "{t:?}");
        }
        assert_eq!(message_index(None), SIGNAL);
    }
}
