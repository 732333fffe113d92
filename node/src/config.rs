//! A node's configuration: one YAML file, kebab-case keys, every field defaulted, unknown keys
//! refused with their name, sizes written as `100MiB` and durations as `1s`.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use thiserror::Error;

/// Why a configuration was refused. Each variant names the file or key at fault.
#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config key `{key}`: {message}")]
    Invalid { key: &'static str, message: String },
}

/// A byte count, written `100MiB`, `64KiB`, `1GB` or a plain number of bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

impl ByteSize {
    pub const fn mib(n: u64) -> ByteSize {
        ByteSize(n * 1024 * 1024)
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [(u64, &str); 4] = [
            (1 << 40, "TiB"),
            (1 << 30, "GiB"),
            (1 << 20, "MiB"),
            (1 << 10, "KiB"),
        ];
        for (size, unit) in UNITS {
            if self.0 >= size && self.0.is_multiple_of(size) {
                return write!(f, "{}{}", self.0 / size, unit);
            }
        }
        write!(f, "{}B", self.0)
    }
}

impl FromStr for ByteSize {
    type Err = String;
    fn from_str(s: &str) -> Result<ByteSize, String> {
        s.trim()
            .parse::<bytesize::ByteSize>()
            .map(|b| ByteSize(b.as_u64()))
            .map_err(|e| format!("`{s}` is not a size like 100MiB: {e}"))
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<ByteSize, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Number(n) => Ok(ByteSize(n)),
            Raw::Text(t) => t.parse().map_err(serde::de::Error::custom),
        }
    }
}

/// A duration, written `100ms`, `1s`, `2m`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct ReadableDuration(pub Duration);

impl ReadableDuration {
    pub const fn millis(ms: u64) -> ReadableDuration {
        ReadableDuration(Duration::from_millis(ms))
    }
}

impl fmt::Display for ReadableDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

impl FromStr for ReadableDuration {
    type Err = String;
    fn from_str(s: &str) -> Result<ReadableDuration, String> {
        humantime::parse_duration(s.trim())
            .map(ReadableDuration)
            .map_err(|e| format!("`{s}` is not a duration like 1s or 100ms: {e}"))
    }
}

impl Serialize for ReadableDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ReadableDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<ReadableDuration, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// One member of the initial cluster, written `ID=HOST:PORT` as in etcd's `initial-cluster`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    pub store_id: u64,
    pub addr: SocketAddr,
}

impl fmt::Display for Member {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.store_id, self.addr)
    }
}

impl FromStr for Member {
    type Err = String;
    fn from_str(s: &str) -> Result<Member, String> {
        let (id, addr) = s
            .split_once('=')
            .ok_or_else(|| format!("`{s}` is not a member like 1=127.0.0.1:20160"))?;
        let store_id = id
            .trim()
            .parse::<u64>()
            .ok()
            .filter(|&id| id != 0)
            .ok_or_else(|| format!("`{id}` in `{s}` is not a store id (a number above 0)"))?;
        let addr = addr
            .trim()
            .parse()
            .map_err(|_| format!("`{addr}` in `{s}` is not an address like 127.0.0.1:20160"))?;
        Ok(Member { store_id, addr })
    }
}

impl Serialize for Member {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Member {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Member, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// The certificate files a node presents and trusts.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct TlsConfig {
    /// The cluster CA certificate (PEM).
    pub ca: PathBuf,
    /// This node's certificate (PEM), naming `store-<id>.tinykv`.
    pub cert: PathBuf,
    /// This node's private key (PEM).
    pub key: PathBuf,
}

/// Raft timing and flow control.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct RaftConfig {
    /// One Raft tick; election and heartbeat timeouts are counted in ticks.
    pub base_tick_interval: ReadableDuration,
    pub heartbeat_ticks: usize,
    /// The election timeout is drawn from [election-timeout-ticks, 2 × election-timeout-ticks).
    pub election_timeout_ticks: usize,
    pub max_inflight_msgs: usize,
    pub max_size_per_msg: ByteSize,
    pub pre_vote: bool,
    pub check_quorum: bool,
    /// How often a leader checks whether its log should be compacted.
    pub log_gc_tick_interval: ReadableDuration,
    /// Compact once at least this many applied entries are kept that every peer already has.
    pub log_gc_threshold: u64,
    /// Compact to the applied index, whatever followers still need, once more than this many
    /// applied entries are kept (a follower that far behind is sent a snapshot).
    pub log_gc_count_limit: u64,
    /// The same, once the kept entries take about this many bytes.
    pub log_gc_size_limit: ByteSize,
    /// A learner is promoted to voter only while its log is at most this many entries behind
    /// the leader's.
    pub learner_max_lag: u64,
    /// A region at rest (every peer holds the whole log, nothing waiting) stops ticking until
    /// something new reaches it; see `hibernation.rs`.
    pub hibernate_regions: bool,
}

impl Default for RaftConfig {
    fn default() -> RaftConfig {
        RaftConfig {
            base_tick_interval: ReadableDuration::millis(100),
            heartbeat_ticks: 2,
            election_timeout_ticks: 10,
            max_inflight_msgs: 256,
            max_size_per_msg: ByteSize::mib(1),
            pre_vote: true,
            check_quorum: true,
            log_gc_tick_interval: ReadableDuration::millis(10_000),
            log_gc_threshold: 50,
            log_gc_count_limit: 10_000,
            log_gc_size_limit: ByteSize::mib(72),
            learner_max_lag: 1_000,
            hibernate_regions: true,
        }
    }
}

impl RaftConfig {
    /// The shortest election timeout in wall time.
    pub fn election_timeout(&self) -> Duration {
        self.base_tick_interval.0 * self.election_timeout_ticks as u32
    }
}

/// Snapshot transfer limits.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct SnapshotConfig {
    /// Shared by every outgoing snapshot of the node; 0 means unlimited.
    pub max_bytes_per_sec: ByteSize,
    pub chunk_size: ByteSize,
    pub concurrent_send_limit: usize,
    pub concurrent_recv_limit: usize,
}

impl Default for SnapshotConfig {
    fn default() -> SnapshotConfig {
        SnapshotConfig {
            max_bytes_per_sec: ByteSize::mib(100),
            chunk_size: ByteSize::mib(1),
            concurrent_send_limit: 4,
            concurrent_recv_limit: 4,
        }
    }
}

/// Limits on the node's use of its data dir.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct StorageConfig {
    /// Client writes are refused while the data dir's filesystem has less than this available,
    /// so that Raft appends, log compaction and a restart still find room; 0 turns the check off.
    pub reserve_space: ByteSize,
}

impl Default for StorageConfig {
    fn default() -> StorageConfig {
        StorageConfig {
            reserve_space: ByteSize::mib(64),
        }
    }
}

/// When a region splits (TiKV's defaults). A region is split once it holds more than
/// `max-size` or `max-keys`, into regions of about `split-size` / `split-keys`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct RegionConfig {
    pub split_size: ByteSize,
    pub max_size: ByteSize,
    pub split_keys: u64,
    pub max_keys: u64,
    /// How often each region's leader has its size measured; a region that grew by a
    /// sixteenth of `split-size` is measured sooner.
    pub split_check_interval: ReadableDuration,
}

impl Default for RegionConfig {
    fn default() -> RegionConfig {
        RegionConfig {
            split_size: ByteSize::mib(96),
            max_size: ByteSize::mib(144),
            split_keys: 960_000,
            max_keys: 1_440_000,
            split_check_interval: ReadableDuration::millis(10_000),
        }
    }
}

impl RegionConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key, message: String| Err(ConfigError::Invalid { key, message });
        if self.split_size.0 == 0 {
            return invalid("region.split-size", "must be above 0".into());
        }
        if self.max_size.0 < self.split_size.0 {
            return invalid(
                "region.max-size",
                format!("must be at least region.split-size ({})", self.split_size),
            );
        }
        if self.split_keys == 0 {
            return invalid("region.split-keys", "must be above 0".into());
        }
        if self.max_keys < self.split_keys {
            return invalid(
                "region.max-keys",
                format!("must be at least region.split-keys ({})", self.split_keys),
            );
        }
        if self.split_check_interval.0.is_zero() {
            return invalid("region.split-check-interval", "must be above 0".into());
        }
        Ok(())
    }
}

/// The placement driver, which runs on region 1's leader: what stores and region leaders
/// report to it, and how it repairs and balances (PD's schedule settings).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct PlacementConfig {
    /// Whether this node reports to the driver and, when it leads region 1, runs it. Off,
    /// regions keep the replicas an operator gives them by hand. The same on every node.
    pub enabled: bool,
    pub store_heartbeat_interval: ReadableDuration,
    /// A region's leader reports it at once on a change (epoch, leader, lagging or silent
    /// peers) and at least this often.
    pub region_heartbeat_interval: ReadableDuration,
    pub max_replicas: usize,
    pub max_store_down_time: ReadableDuration,
    pub leader_moves_per_store: usize,
    pub region_moves_per_store: usize,
}

impl Default for PlacementConfig {
    fn default() -> PlacementConfig {
        PlacementConfig {
            enabled: true,
            store_heartbeat_interval: ReadableDuration::millis(10_000),
            region_heartbeat_interval: ReadableDuration::millis(60_000),
            max_replicas: 3,
            max_store_down_time: ReadableDuration::millis(30 * 60 * 1000),
            leader_moves_per_store: 4,
            region_moves_per_store: 4,
        }
    }
}

impl PlacementConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key, message: String| Err(ConfigError::Invalid { key, message });
        if self.store_heartbeat_interval.0.is_zero() {
            return invalid(
                "placement.store-heartbeat-interval",
                "must be above 0".into(),
            );
        }
        if self.region_heartbeat_interval.0.is_zero() {
            return invalid(
                "placement.region-heartbeat-interval",
                "must be above 0".into(),
            );
        }
        if self.max_replicas == 0 {
            return invalid("placement.max-replicas", "must be above 0".into());
        }
        if self.max_store_down_time.0 <= self.store_heartbeat_interval.0 {
            return invalid(
                "placement.max-store-down-time",
                format!(
                    "must be longer than placement.store-heartbeat-interval ({})",
                    self.store_heartbeat_interval
                ),
            );
        }
        if self.leader_moves_per_store == 0 {
            return invalid("placement.leader-moves-per-store", "must be above 0".into());
        }
        if self.region_moves_per_store == 0 {
            return invalid("placement.region-moves-per-store", "must be above 0".into());
        }
        Ok(())
    }
}

/// A node's whole configuration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct NodeConfig {
    /// This node's store id, unique in the cluster and never 0.
    pub store_id: u64,
    /// The UDP address the node's QUIC endpoint binds (Raft, clients and admin alike).
    pub listen_addr: SocketAddr,
    /// The address other nodes and clients dial; defaults to `listen-addr`.
    pub advertise_addr: Option<SocketAddr>,
    /// The TCP address of the HTTP status server (`/metrics`, `/health`, `/status`). Unset:
    /// `listen-addr`'s host with its port + 100 (TiKV's 20160 and 20180 are 20 apart; ours
    /// leave room for a playground's nodes). Empty: no status server.
    pub status_addr: Option<String>,
    pub data_dir: PathBuf,
    /// The founding members, `ID=HOST:PORT` each, the same list on every founding node. Empty for
    /// a node that joins a running cluster.
    pub initial_cluster: Vec<Member>,
    /// Distinguishes clusters: a data dir made for another token is refused.
    pub initial_cluster_token: String,
    pub tls: TlsConfig,
    pub raft: RaftConfig,
    pub snapshot: SnapshotConfig,
    pub storage: StorageConfig,
    pub region: RegionConfig,
    pub placement: PlacementConfig,
    /// How long a client request may wait for its answer before `Timeout`.
    pub request_timeout: ReadableDuration,
    /// Accept `SetFaults`/`ClearFaults` admin requests (network faults, slow fsync). For tests
    /// only: anyone holding a client certificate could then cut the node off.
    pub fault_injection: bool,
}

impl Default for NodeConfig {
    fn default() -> NodeConfig {
        NodeConfig {
            store_id: 1,
            listen_addr: SocketAddr::from(([127, 0, 0, 1], 20160)),
            advertise_addr: None,
            status_addr: None,
            data_dir: PathBuf::from("tinykv-data"),
            initial_cluster: Vec::new(),
            initial_cluster_token: "tinykv".to_string(),
            tls: TlsConfig::default(),
            raft: RaftConfig::default(),
            snapshot: SnapshotConfig::default(),
            storage: StorageConfig::default(),
            region: RegionConfig::default(),
            placement: PlacementConfig::default(),
            request_timeout: ReadableDuration::millis(5_000),
            fault_injection: false,
        }
    }
}

/// The 1-based line of the dotted `key` (`raft.base-tick-interval`) in YAML `text`: each
/// segment is looked for, as `segment:`, after the line where the previous one was found.
fn key_line(text: &str, key: &str) -> Option<usize> {
    let lines: Vec<&str> = text.lines().collect();
    let mut from = 0;
    let mut found = None;
    for segment in key.split('.') {
        let at = (from..lines.len()).find(|&i| {
            let l = lines[i].trim_start().trim_start_matches("- ");
            l.strip_prefix(segment)
                .is_some_and(|rest| rest.trim_start().starts_with(':'))
        })?;
        found = Some(at + 1);
        from = at + 1;
    }
    found
}

impl NodeConfig {
    /// Reads and validates a YAML file.
    pub fn load(path: &Path) -> Result<NodeConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let config = NodeConfig::parse(&text).map_err(|message| ConfigError::Parse {
            path: path.to_path_buf(),
            message,
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Parses YAML text without validating it. The message names the unknown or bad key and
    /// where it is.
    pub fn parse(text: &str) -> Result<NodeConfig, String> {
        if text.trim().is_empty() {
            return Ok(NodeConfig::default());
        }
        let de = serde_yaml_ng::Deserializer::from_str(text);
        serde_path_to_error::deserialize(de).map_err(|e| {
            let key = e.path().to_string();
            let inner = e.into_inner().to_string();
            if key.is_empty() || key == "." {
                return inner;
            }
            // A value that fails inside a section is reported at the section; point at the key.
            let mut reason = inner.split(" at line ").next().unwrap_or(&inner);
            // The YAML reader prefixes the section it was in; the key says more.
            if let Some((section, rest)) = reason.split_once(": ")
                && key.starts_with(section)
            {
                reason = rest;
            }
            match key_line(text, &key) {
                Some(line) => format!("{key}: {reason} at line {line}"),
                None => format!("{key}: {reason}"),
            }
        })
    }

    pub fn to_yaml(&self) -> String {
        serde_yaml_ng::to_string(self).unwrap_or_else(|e| format!("# cannot render config: {e}\n"))
    }

    pub fn advertise_addr(&self) -> SocketAddr {
        self.advertise_addr.unwrap_or(self.listen_addr)
    }

    /// Where the status server listens, or `None` when `status-addr` is empty.
    pub fn status_addr(&self) -> Result<Option<SocketAddr>, ConfigError> {
        let invalid = |message: String| ConfigError::Invalid {
            key: "status-addr",
            message,
        };
        match self.status_addr.as_deref().map(str::trim) {
            Some("") => Ok(None),
            Some(text) => text.parse().map(Some).map_err(|_| {
                invalid(format!(
                    "`{text}` is not an address like 127.0.0.1:20260 (empty turns the status \
                     server off)"
                ))
            }),
            None => {
                let port = self.listen_addr.port().checked_add(100).ok_or_else(|| {
                    invalid(format!(
                        "listen-addr's port {} + 100 is not a port: set status-addr",
                        self.listen_addr.port()
                    ))
                })?;
                Ok(Some(SocketAddr::new(self.listen_addr.ip(), port)))
            }
        }
    }

    /// The id that ties a data dir to its cluster, derived from the token (FNV-1a, stable
    /// across versions and platforms).
    pub fn cluster_id(&self) -> u64 {
        cluster_id_from_token(&self.initial_cluster_token)
    }

    /// Checks the values serde cannot: ranges and cross-field rules.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key, message: String| Err(ConfigError::Invalid { key, message });
        if self.store_id == 0 {
            return invalid("store-id", "must be a number above 0".into());
        }
        if self.initial_cluster_token.is_empty() {
            return invalid("initial-cluster-token", "must not be empty".into());
        }
        self.status_addr()?;
        if !self.initial_cluster.is_empty() {
            let mut ids: Vec<u64> = self.initial_cluster.iter().map(|m| m.store_id).collect();
            ids.sort_unstable();
            if let Some(w) = ids.windows(2).find(|w| w[0] == w[1]) {
                return invalid(
                    "initial-cluster",
                    format!("store id {} is listed twice", w[0]),
                );
            }
            if !ids.contains(&self.store_id) {
                return invalid(
                    "initial-cluster",
                    format!("does not list this node's store-id {}", self.store_id),
                );
            }
        }
        let r = &self.raft;
        if r.base_tick_interval.0.is_zero() {
            return invalid("raft.base-tick-interval", "must be above 0".into());
        }
        if r.heartbeat_ticks == 0 {
            return invalid("raft.heartbeat-ticks", "must be above 0".into());
        }
        if r.election_timeout_ticks <= r.heartbeat_ticks {
            return invalid(
                "raft.election-timeout-ticks",
                format!(
                    "must be greater than raft.heartbeat-ticks ({} <= {})",
                    r.election_timeout_ticks, r.heartbeat_ticks
                ),
            );
        }
        if r.max_inflight_msgs == 0 {
            return invalid("raft.max-inflight-msgs", "must be above 0".into());
        }
        if r.max_size_per_msg.0 == 0 {
            return invalid("raft.max-size-per-msg", "must be above 0".into());
        }
        if r.log_gc_tick_interval.0.is_zero() {
            return invalid("raft.log-gc-tick-interval", "must be above 0".into());
        }
        if r.log_gc_count_limit == 0 {
            return invalid("raft.log-gc-count-limit", "must be above 0".into());
        }
        if r.log_gc_threshold == 0 {
            return invalid("raft.log-gc-threshold", "must be above 0".into());
        }
        if r.log_gc_size_limit.0 == 0 {
            return invalid("raft.log-gc-size-limit", "must be above 0".into());
        }
        let s = &self.snapshot;
        if s.chunk_size.0 == 0 || s.chunk_size.0 > 64 * 1024 * 1024 {
            return invalid("snapshot.chunk-size", "must be between 1B and 64MiB".into());
        }
        if s.max_bytes_per_sec.0 != 0 && s.max_bytes_per_sec.0 < s.chunk_size.0 {
            return invalid(
                "snapshot.max-bytes-per-sec",
                format!(
                    "must be 0 (unlimited) or at least snapshot.chunk-size ({})",
                    s.chunk_size
                ),
            );
        }
        if s.concurrent_send_limit == 0 {
            return invalid("snapshot.concurrent-send-limit", "must be above 0".into());
        }
        if s.concurrent_recv_limit == 0 {
            return invalid("snapshot.concurrent-recv-limit", "must be above 0".into());
        }
        self.region.validate()?;
        self.placement.validate()?;
        if self.request_timeout.0.is_zero() {
            return invalid("request-timeout", "must be above 0".into());
        }
        for (key, path) in [
            ("tls.ca", &self.tls.ca),
            ("tls.cert", &self.tls.cert),
            ("tls.key", &self.tls.key),
        ] {
            if path.as_os_str().is_empty() {
                return invalid(key, "is required: every connection uses mutual TLS".into());
            }
        }
        Ok(())
    }

    /// A complete configuration with a comment on every key, for `tinykv config default`.
    pub fn default_yaml() -> String {
        let d = NodeConfig::default();
        let r = &d.raft;
        let s = &d.snapshot;
        format!(
            "# tinykv node configuration. Every key is optional; shown are the defaults.\n\
             # This node's id, unique in the cluster, above 0.\n\
             store-id: {store_id}\n\
             # UDP address of the node's QUIC endpoint: Raft, clients and admin share it.\n\
             listen-addr: {listen}\n\
             # Address others dial; defaults to listen-addr.\n\
             advertise-addr: null\n\
             # TCP address of the HTTP status server: /metrics (Prometheus), /health, /status.\n\
             # null: listen-addr's host, port + 100; '' turns it off.\n\
             status-addr: null\n\
             # Where the node keeps its data (fjall) and snapshots.\n\
             data-dir: {data_dir}\n\
             # Founding members, ID=HOST:PORT, the same list on each founding node; empty to join.\n\
             initial-cluster: []\n\
             # A data dir made under another token is refused.\n\
             initial-cluster-token: {token}\n\
             # Mutual TLS: the cluster CA, this node's certificate and key (PEM). Required.\n\
             tls:\n  ca: ''\n  cert: ''\n  key: ''\n\
             raft:\n\
             \x20 # One tick; the timeouts below are counted in ticks.\n\
             \x20 base-tick-interval: {tick}\n\
             \x20 heartbeat-ticks: {hb}\n\
             \x20 # Elections start after a random [n, 2n) ticks without a leader.\n\
             \x20 election-timeout-ticks: {et}\n\
             \x20 # Append messages in flight per follower.\n\
             \x20 max-inflight-msgs: {inflight}\n\
             \x20 # Entry bytes in one append message.\n\
             \x20 max-size-per-msg: {msgsize}\n\
             \x20 pre-vote: {prevote}\n\
             \x20 check-quorum: {cq}\n\
             \x20 # How often the leader considers compacting its log.\n\
             \x20 log-gc-tick-interval: {gctick}\n\
             \x20 # Compact once this many applied entries are kept that every peer has.\n\
             \x20 log-gc-threshold: {gcthreshold}\n\
             \x20 # Compact whatever followers still need once more entries than this are kept\n\
             \x20 # (a follower that far behind gets a snapshot)...\n\
             \x20 log-gc-count-limit: {gclimit}\n\
             \x20 # ...or once they take about this much space.\n\
             \x20 log-gc-size-limit: {gcsize}\n\
             \x20 # A joining store is added as a learner and promoted to voter once its log is\n\
             \x20 # at most this many entries behind the leader's.\n\
             \x20 learner-max-lag: {maxlag}\n\
             \x20 # A region at rest (every replica holds the whole log, no request waiting)\n\
             \x20 # stops ticking and heartbeating until a request, a message or the loss of a\n\
             \x20 # store wakes it, so idle regions cost next to nothing (TiKV's hibernate-regions).\n\
             \x20 hibernate-regions: {hibernate}\n\
             snapshot:\n\
             \x20 # Shared by all outgoing snapshots of the node; 0 is unlimited.\n\
             \x20 max-bytes-per-sec: {rate}\n\
             \x20 chunk-size: {chunk}\n\
             \x20 concurrent-send-limit: {sends}\n\
             \x20 concurrent-recv-limit: {recvs}\n\
             storage:\n\
             \x20 # Client writes (put, delete) are refused with DiskFull while the data dir's\n\
             \x20 # filesystem has less than this available; reads, log compaction and Raft\n\
             \x20 # replication go on, and writes resume once space returns. 0 turns it off.\n\
             \x20 reserve-space: {reserve}\n\
             region:\n\
             \x20 # A region holding more than max-size bytes or max-keys keys of user data is\n\
             \x20 # split into regions of about split-size bytes or split-keys keys.\n\
             \x20 split-size: {split_size}\n\
             \x20 max-size: {max_size}\n\
             \x20 split-keys: {split_keys}\n\
             \x20 max-keys: {max_keys}\n\
             \x20 # How often each region's leader measures the region; one that grew by a\n\
             \x20 # sixteenth of split-size is measured at the next tick.\n\
             \x20 split-check-interval: {split_check}\n\
             placement:\n\
             \x20 # The placement driver runs on region 1's leader: stores and region leaders\n\
             \x20 # report to it, and it keeps every region at max-replicas voters on live stores,\n\
             \x20 # replaces replicas on stores down for max-store-down-time, drains stores\n\
             \x20 # `store delete` retires, and evens out leaders and data. false: regions keep\n\
             \x20 # the replicas given by hand. Set it the same on every node.\n\
             \x20 enabled: {pd_enabled}\n\
             \x20 store-heartbeat-interval: {store_hb}\n\
             \x20 # A region's leader reports it on any change, and at least this often.\n\
             \x20 region-heartbeat-interval: {region_hb}\n\
             \x20 # Voters each region keeps, on distinct stores.\n\
             \x20 max-replicas: {max_replicas}\n\
             \x20 # A store silent this long is Down and its replicas are replaced elsewhere.\n\
             \x20 max-store-down-time: {down_time}\n\
             \x20 # Operators moving a leader, or a replica (a snapshot), to or from one store\n\
             \x20 # at once.\n\
             \x20 leader-moves-per-store: {leader_moves}\n\
             \x20 region-moves-per-store: {region_moves}\n\
             # A client request not answered within this is answered Timeout.\n\
             request-timeout: {timeout}\n\
             # Accept fault-injection admin requests (tests only: network faults, slow fsync).\n\
             fault-injection: {faults}\n",
            store_id = d.store_id,
            listen = d.listen_addr,
            data_dir = d.data_dir.display(),
            token = d.initial_cluster_token,
            tick = r.base_tick_interval,
            hb = r.heartbeat_ticks,
            et = r.election_timeout_ticks,
            inflight = r.max_inflight_msgs,
            msgsize = r.max_size_per_msg,
            prevote = r.pre_vote,
            cq = r.check_quorum,
            gctick = r.log_gc_tick_interval,
            gcthreshold = r.log_gc_threshold,
            gclimit = r.log_gc_count_limit,
            gcsize = r.log_gc_size_limit,
            maxlag = r.learner_max_lag,
            hibernate = r.hibernate_regions,
            rate = s.max_bytes_per_sec,
            chunk = s.chunk_size,
            sends = s.concurrent_send_limit,
            recvs = s.concurrent_recv_limit,
            reserve = d.storage.reserve_space,
            split_size = d.region.split_size,
            max_size = d.region.max_size,
            split_keys = d.region.split_keys,
            max_keys = d.region.max_keys,
            split_check = d.region.split_check_interval,
            pd_enabled = d.placement.enabled,
            store_hb = d.placement.store_heartbeat_interval,
            region_hb = d.placement.region_heartbeat_interval,
            max_replicas = d.placement.max_replicas,
            down_time = d.placement.max_store_down_time,
            leader_moves = d.placement.leader_moves_per_store,
            region_moves = d.placement.region_moves_per_store,
            timeout = d.request_timeout,
            faults = d.fault_injection,
        )
    }
}

/// FNV-1a of the token; never 0.
pub fn cluster_id_from_token(token: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in token.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_yaml_parses_to_the_defaults() {
        assert_eq!(
            NodeConfig::parse(&NodeConfig::default_yaml()).unwrap(),
            NodeConfig::default()
        );
    }

    #[test]
    fn rendered_yaml_round_trips() {
        let mut c = NodeConfig {
            initial_cluster: vec![
                "1=127.0.0.1:1".parse().unwrap(),
                "2=127.0.0.1:2".parse().unwrap(),
            ],
            ..NodeConfig::default()
        };
        c.raft.max_size_per_msg = ByteSize(1536);
        c.raft.base_tick_interval = ReadableDuration::millis(1500);
        assert_eq!(NodeConfig::parse(&c.to_yaml()).unwrap(), c);
    }

    #[test]
    fn fault_injection_is_off_unless_asked_for() {
        assert!(!NodeConfig::default().fault_injection);
        assert!(NodeConfig::default_yaml().contains("fault-injection: false"));
        assert!(
            NodeConfig::parse("fault-injection: true\n")
                .unwrap()
                .fault_injection
        );
    }

    #[test]
    fn units_are_read() {
        let c = NodeConfig::parse(
            "raft:\n  base-tick-interval: 50ms\n  max-size-per-msg: 512KiB\nsnapshot:\n  max-bytes-per-sec: 16MiB\n  chunk-size: 65536\n",
        )
        .unwrap();
        assert_eq!(c.raft.base_tick_interval.0, Duration::from_millis(50));
        assert_eq!(c.raft.max_size_per_msg.0, 512 * 1024);
        assert_eq!(c.snapshot.max_bytes_per_sec.0, 16 * 1024 * 1024);
        assert_eq!(c.snapshot.chunk_size.0, 65536);
        assert_eq!(ByteSize(16 * 1024 * 1024).to_string(), "16MiB");
        assert_eq!(ByteSize(1000).to_string(), "1000B");
    }

    #[test]
    fn unknown_keys_are_named() {
        let err = NodeConfig::parse("raft:\n  heartbeat-tick: 3\n").unwrap_err();
        assert!(err.contains("heartbeat-tick"), "{err}");
        let err = NodeConfig::parse("listen-adress: 127.0.0.1:1\n").unwrap_err();
        assert!(err.contains("listen-adress"), "{err}");
    }

    #[test]
    fn bad_values_are_named() {
        let err = NodeConfig::parse("raft:\n  base-tick-interval: soon\n").unwrap_err();
        assert!(err.contains("soon"), "{err}");
        let err = NodeConfig::parse("initial-cluster: [\"1=nowhere\"]\n").unwrap_err();
        assert!(err.contains("nowhere"), "{err}");
        let err = NodeConfig::parse("snapshot:\n  chunk-size: lots\n").unwrap_err();
        assert!(err.contains("lots"), "{err}");
    }

    fn valid() -> NodeConfig {
        NodeConfig {
            tls: TlsConfig {
                ca: "ca.pem".into(),
                cert: "n.pem".into(),
                key: "n.key".into(),
            },
            initial_cluster: vec!["1=127.0.0.1:20160".parse().unwrap()],
            ..NodeConfig::default()
        }
    }

    #[test]
    fn validation_names_the_key() {
        assert!(valid().validate().is_ok());
        let key_of = |c: NodeConfig| match c.validate() {
            Err(ConfigError::Invalid { key, .. }) => key,
            other => panic!("expected an invalid key, got {other:?}"),
        };
        let mut c = valid();
        c.store_id = 0;
        assert_eq!(key_of(c), "store-id");
        let mut c = valid();
        c.raft.election_timeout_ticks = 2;
        assert_eq!(key_of(c), "raft.election-timeout-ticks");
        let mut c = valid();
        c.initial_cluster = vec!["2=127.0.0.1:1".parse().unwrap()];
        assert_eq!(key_of(c), "initial-cluster");
        let mut c = valid();
        c.initial_cluster.push("1=127.0.0.1:2".parse().unwrap());
        assert_eq!(key_of(c), "initial-cluster");
        let mut c = valid();
        c.tls.key = PathBuf::new();
        assert_eq!(key_of(c), "tls.key");
        let mut c = valid();
        c.snapshot.max_bytes_per_sec = ByteSize(10);
        assert_eq!(key_of(c), "snapshot.max-bytes-per-sec");
    }

    #[test]
    fn load_reports_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.yaml");
        assert!(matches!(
            NodeConfig::load(&missing),
            Err(ConfigError::Read { .. })
        ));
        let bad = dir.path().join("bad.yaml");
        std::fs::write(&bad, "store-id: [1\n").unwrap();
        let err = NodeConfig::load(&bad).unwrap_err().to_string();
        assert!(err.contains("bad.yaml"), "{err}");
    }

    #[test]
    fn cluster_id_is_stable() {
        assert_eq!(
            cluster_id_from_token("tinykv"),
            cluster_id_from_token("tinykv")
        );
        assert_ne!(
            cluster_id_from_token("tinykv"),
            cluster_id_from_token("tinykv2")
        );
    }
}
