//! `Engines`: the one fjall database of a node with its three keyspaces, how a data dir is
//! opened (and refused), bootstrapped and inspected, and consistent reads of user data.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use fjall::{Database, Keyspace, KeyspaceCreateOptions, OwnedWriteBatch, PersistMode, Readable};
use tinykv_raft::Entry;

use crate::error::{Result, StorageError};
use crate::keys::{self, MetaKey};
use crate::records::{
    CLUSTER_REGION_ID, DATA_FORMAT_VERSION, DataFormat, IdAllocState, PeerState, PlacementRecord,
    RaftApplyState, RaftLocalState, Record, Region, RegionLocalState, StoreAddress, StoreIdent,
    StoreStarted, decode_exact, v1,
};
use crate::snapshot::recovery::{self, RecoveryReport};

/// Keyspace of Raft logs and raft states.
pub const RAFT_KEYSPACE: &str = "raft";
/// Keyspace of user data (`d` + user key).
pub const KV_KEYSPACE: &str = "kv";
/// Keyspace of apply states, region states and the store ident.
pub const META_KEYSPACE: &str = "meta";

/// Subdirectory of the data dir that holds the fjall database.
const DB_DIR: &str = "db";
/// Subdirectory of the data dir that holds snapshot files.
const SNAP_DIR: &str = "snap";
/// The file fjall writes first in a database directory; its absence in a non-empty directory
/// means the directory is something else.
const FJALL_VERSION_FILE: &str = "version";
/// A copy of the store ident beside the database, read before the database is opened: opening
/// fjall replays and rewrites its journal and manifests, which a refused directory must not see.
const IDENT_FILE: &str = "IDENT";

/// What `Engines::open` checks besides the data dir's own consistency.
#[derive(Clone, Copy, Debug, Default)]
pub struct OpenOptions {
    /// Refuse a data dir whose store ident names another cluster.
    pub expected_cluster_id: Option<u64>,
}

struct Inner {
    dir: PathBuf,
    snap_dir: PathBuf,
    db: Database,
    raft: Keyspace,
    kv: Keyspace,
    meta: Keyspace,
    sync_delay: SyncDelay,
    snapshot_delay: SyncDelay,
}

/// A delay injected into the storage for fault injection: before every fsyncing commit of the
/// Raft log (the raft loop then sees a slow disk), or before the snapshot worker builds or
/// installs a snapshot. Clones
/// share one setting; zero (the default) costs one relaxed atomic load.
#[derive(Clone, Debug, Default)]
pub struct SyncDelay(Arc<AtomicU64>);

impl SyncDelay {
    pub fn set(&self, delay: Duration) {
        let micros = u64::try_from(delay.as_micros()).unwrap_or(u64::MAX);
        self.0.store(micros, Ordering::Relaxed);
    }

    pub fn get(&self) -> Duration {
        Duration::from_micros(self.0.load(Ordering::Relaxed))
    }

    /// Sleeps for the current delay, if any; a delay shortened or cleared meanwhile ends the
    /// sleep early.
    pub(crate) fn pause(&self) {
        let start = std::time::Instant::now();
        loop {
            let elapsed = start.elapsed();
            let Some(left) = self.get().checked_sub(elapsed).filter(|d| !d.is_zero()) else {
                return;
            };
            std::thread::sleep(left.min(Duration::from_millis(50)));
        }
    }
}

/// The storage engines of one node. Cheap to clone: clones share the database.
#[derive(Clone)]
pub struct Engines {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Engines {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engines")
            .field("dir", &self.inner.dir)
            .finish_non_exhaustive()
    }
}

impl Engines {
    /// Opens (or creates) the data dir `dir`, validates every meta record and finishes or
    /// resets snapshot applies a crash interrupted. Refuses, without writing anything, a
    /// directory that is not a tinykv data dir, a corrupt record (the error names the key) and a
    /// store of another cluster.
    pub fn open(dir: impl AsRef<Path>, options: OpenOptions) -> Result<(Engines, RecoveryReport)> {
        let dir = dir.as_ref().to_path_buf();
        let db_dir = dir.join(DB_DIR);
        check_not_foreign(&db_dir)?;
        let ident_file = read_ident_file(&dir)?;
        if let (Some(ident), Some(expected)) = (ident_file, options.expected_cluster_id)
            && ident.cluster_id != expected
        {
            return Err(StorageError::ClusterIdMismatch {
                expected,
                found: ident.cluster_id,
            });
        }
        let snap_dir = dir.join(SNAP_DIR);
        let db = Database::builder(&db_dir).open()?;
        let unknown: Vec<String> = db
            .list_keyspace_names()
            .iter()
            .map(|name| name.as_ref().to_string())
            .filter(|name| ![RAFT_KEYSPACE, KV_KEYSPACE, META_KEYSPACE].contains(&name.as_str()))
            .collect();
        if !unknown.is_empty() {
            return Err(StorageError::ForeignDataDir {
                path: db_dir,
                problem: format!("unknown keyspaces {unknown:?}"),
            });
        }
        let meta = db.keyspace(META_KEYSPACE, KeyspaceCreateOptions::default)?;
        let format = data_format(&meta, &db_dir)?;
        validate_meta(&meta, options.expected_cluster_id, format)?;
        let raft = db.keyspace(RAFT_KEYSPACE, separated_values)?;
        let kv = db.keyspace(KV_KEYSPACE, separated_values)?;
        std::fs::create_dir_all(&snap_dir).map_err(|e| StorageError::io(&snap_dir, e))?;
        let engines = Engines {
            inner: Arc::new(Inner {
                dir,
                snap_dir,
                db,
                raft,
                kv,
                meta,
                sync_delay: SyncDelay::default(),
                snapshot_delay: SyncDelay::default(),
            }),
        };
        if format < DATA_FORMAT_VERSION && engines.store_ident()?.is_some() {
            engines.upgrade(format)?;
        }
        for region in engines.regions()? {
            let id = region.region.id;
            if engines.raft_state(id)?.is_none() && region.state == PeerState::Normal {
                return Err(StorageError::corrupt(
                    RAFT_KEYSPACE,
                    &keys::raft_state_key(id),
                    format!("raft state of region {id} is missing"),
                ));
            }
        }
        let report = recovery::recover_interrupted_applies(&engines)?;
        match (engines.store_ident()?, ident_file) {
            (Some(ident), None) => write_ident_file(&engines.inner.dir, ident)?,
            (Some(ident), Some(file)) if ident != file => {
                return Err(StorageError::ForeignDataDir {
                    path: engines.inner.dir.join(IDENT_FILE),
                    problem: format!(
                        "names cluster {} store {}, the database cluster {} store {}",
                        file.cluster_id, file.store_id, ident.cluster_id, ident.store_id
                    ),
                });
            }
            _ => {}
        }
        Ok((engines, report))
    }

    /// Adds `state` to `batch` under its region's key: the one place region states are written.
    pub(crate) fn put_region_state(&self, batch: &mut OwnedWriteBatch, state: &RegionLocalState) {
        batch.insert(
            self.meta(),
            keys::region_state_key(state.region.id),
            state.encode(),
        );
    }

    /// Whether `dir` holds a database already (a data dir that was opened before).
    pub fn exists(dir: impl AsRef<Path>) -> bool {
        dir.as_ref().join(DB_DIR).join(FJALL_VERSION_FILE).exists()
    }

    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Where snapshot files are built and received.
    pub fn snap_dir(&self) -> &Path {
        &self.inner.snap_dir
    }

    /// Sets the delay slept before every fsyncing commit (see [`SyncDelay`]).
    pub fn set_sync_delay(&self, delay: Duration) {
        self.inner.sync_delay.set(delay);
    }

    /// A handle on the fsync delay that does not keep the database open.
    pub fn sync_delay(&self) -> SyncDelay {
        self.inner.sync_delay.clone()
    }

    pub(crate) fn pause_before_sync(&self) {
        self.inner.sync_delay.pause();
    }

    /// A handle on the delay the snapshot worker sleeps before it builds a snapshot or writes
    /// a received one's data, for fault injection: slow snapshot work, which the raft loop must
    /// not wait for.
    pub fn snapshot_delay(&self) -> SyncDelay {
        self.inner.snapshot_delay.clone()
    }

    pub(crate) fn pause_snapshot_work(&self) {
        self.inner.snapshot_delay.pause();
    }

    pub(crate) fn db(&self) -> &Database {
        &self.inner.db
    }

    pub(crate) fn raft(&self) -> &Keyspace {
        &self.inner.raft
    }

    pub(crate) fn kv(&self) -> &Keyspace {
        &self.inner.kv
    }

    pub(crate) fn meta(&self) -> &Keyspace {
        &self.inner.meta
    }

    /// Writes the store ident; the same ident again is a no-op, another one an error.
    pub fn bootstrap_store(&self, ident: StoreIdent) -> Result<()> {
        if let Some(existing) = self.store_ident()? {
            if existing == ident {
                return Ok(());
            }
            return Err(StorageError::AlreadyBootstrapped {
                cluster_id: existing.cluster_id,
                store_id: existing.store_id,
            });
        }
        let mut batch = self.db().batch().durability(Some(PersistMode::SyncAll));
        batch.insert(self.meta(), keys::STORE_IDENT_KEY, ident.encode());
        self.put_data_format(&mut batch);
        batch.commit()?;
        write_ident_file(&self.inner.dir, ident)
    }

    /// Adds this build's data format record to `batch`.
    fn put_data_format(&self, batch: &mut OwnedWriteBatch) {
        let format = DataFormat {
            version: DATA_FORMAT_VERSION,
        };
        batch.insert(self.meta(), keys::DATA_FORMAT_KEY, format.encode());
    }

    /// Brings an older data dir to this build's format in one fsynced batch (a crash leaves
    /// the old format whole, to be upgraded again). Format 1's region states are rewritten
    /// with roles (every peer of format 1 voted); format 1 had no id allocator, and region 1
    /// starts one on its first allocation (see `IdAllocState`). Format 2 differs from 3 only
    /// in the records it could not hold.
    fn upgrade(&self, from: u32) -> Result<()> {
        let mut batch = self.db().batch().durability(Some(PersistMode::SyncAll));
        let mut upgraded = 0;
        let v1_states = (from < 2).then(|| self.meta().prefix(keys::REGION_META_MIN_KEY));
        for guard in v1_states.into_iter().flatten() {
            let (key, value) = guard.into_inner()?;
            let old: v1::RegionLocalState = decode_exact(&value)
                .map_err(|problem| StorageError::corrupt(META_KEYSPACE, &key, problem))?;
            self.put_region_state(&mut batch, &old.into());
            upgraded += 1;
        }
        self.put_data_format(&mut batch);
        batch.commit()?;
        tracing::info!(
            regions = upgraded,
            "upgraded the data dir from format {from} to {DATA_FORMAT_VERSION}"
        );
        Ok(())
    }

    /// Writes a new region the way TinyKV bootstraps one: log, commit and applied index at
    /// `RAFT_INIT_LOG_INDEX`, so peers that join later are filled by a snapshot. The first
    /// region also starts the cluster's id allocator above every id it uses.
    pub fn bootstrap_region(&self, region: &Region) -> Result<()> {
        if self.store_ident()?.is_none() {
            return Err(StorageError::InvalidRequest(
                "bootstrap the store before its regions".into(),
            ));
        }
        if self.region_state(region.id)?.is_some() {
            return Err(StorageError::RegionExists(region.id));
        }
        let raft_state = RaftLocalState::initial();
        let apply_state = RaftApplyState::initial();
        let region_state = RegionLocalState {
            state: PeerState::Normal,
            region: region.clone(),
        };
        let mut batch = self.db().batch().durability(Some(PersistMode::SyncAll));
        batch.insert(
            self.raft(),
            keys::raft_state_key(region.id),
            raft_state.encode(),
        );
        batch.insert(
            self.meta(),
            keys::apply_state_key(region.id),
            apply_state.encode(),
        );
        self.put_region_state(&mut batch, &region_state);
        if region.id == CLUSTER_REGION_ID {
            let used = region.peers.iter().map(|p| p.id).chain([region.id]).max();
            let alloc = IdAllocState {
                next_id: used.unwrap_or(0) + 1,
            };
            batch.insert(self.meta(), keys::ID_ALLOC_KEY, alloc.encode());
        }
        batch.commit()?;
        Ok(())
    }

    /// The id allocator's state as far as this store applied region 1; `None` on a store that
    /// never held region 1 and on a cluster founded before the allocator existed.
    pub fn id_alloc(&self) -> Result<Option<IdAllocState>> {
        read_record(self.meta(), META_KEYSPACE, &keys::ID_ALLOC_KEY)
    }

    /// The placement driver's record as far as this store applied region 1.
    pub fn placement_record(&self) -> Result<Option<PlacementRecord>> {
        read_record(self.meta(), META_KEYSPACE, &keys::PLACEMENT_KEY)
    }

    pub fn store_ident(&self) -> Result<Option<StoreIdent>> {
        read_record(self.meta(), META_KEYSPACE, &keys::STORE_IDENT_KEY)
    }

    /// The addresses of other stores this node has learned, in store id order.
    pub fn store_addrs(&self) -> Result<Vec<StoreAddress>> {
        let mut out = Vec::new();
        for guard in self.meta().prefix(keys::STORE_ADDR_MIN_KEY) {
            let (key, value) = guard.into_inner()?;
            out.push(StoreAddress::decode(META_KEYSPACE, &key, &value)?);
        }
        Ok(out)
    }

    /// Records store addresses durably (bootstrap, join, and addresses learned from others).
    pub fn put_store_addrs(&self, addrs: &[StoreAddress]) -> Result<()> {
        if addrs.is_empty() {
            return Ok(());
        }
        let mut batch = self.db().batch().durability(Some(PersistMode::SyncAll));
        for rec in addrs {
            batch.insert(
                self.meta(),
                keys::store_addr_key(rec.store_id),
                rec.encode(),
            );
        }
        batch.commit()?;
        Ok(())
    }

    /// The stores the cluster has seen running, as far as this store applied region 1.
    pub fn started_stores(&self) -> Result<Vec<u64>> {
        let mut out = Vec::new();
        for guard in self.meta().prefix(keys::STORE_STARTED_MIN_KEY) {
            let (key, value) = guard.into_inner()?;
            out.push(StoreStarted::decode(META_KEYSPACE, &key, &value)?.store_id);
        }
        Ok(out)
    }

    /// Every region stored on this node, in id order, whatever its state.
    pub fn regions(&self) -> Result<Vec<RegionLocalState>> {
        let mut out = Vec::new();
        for guard in self.meta().prefix(keys::REGION_META_MIN_KEY) {
            let (key, value) = guard.into_inner()?;
            out.push(RegionLocalState::decode(META_KEYSPACE, &key, &value)?);
        }
        Ok(out)
    }

    pub fn region_state(&self, region_id: u64) -> Result<Option<RegionLocalState>> {
        read_record(
            self.meta(),
            META_KEYSPACE,
            &keys::region_state_key(region_id),
        )
    }

    /// A region's Raft state. The record is written when the term or the vote changes, when a
    /// snapshot is installed and when the log's end moves back (a conflicting suffix deleted),
    /// not with every append or commit: the log's end and its term are read from the log itself
    /// (every entry past the recorded end was appended and none was deleted since; the entry at
    /// the recorded end may have been replaced by a later term's), and the commit index is
    /// at least what was applied. Raft does not need the commit index to be durable; a peer
    /// learns it again from its leader.
    pub fn raft_state(&self, region_id: u64) -> Result<Option<RaftLocalState>> {
        let Some(mut state) = self.written_raft_state(region_id)? else {
            return Ok(None);
        };
        if let Some(last) = self
            .raft()
            .prefix(keys::raft_log_prefix(region_id))
            .next_back()
        {
            let (key, value) = last.into_inner()?;
            let entry = Entry::decode(RAFT_KEYSPACE, &key, &value)?;
            // At the recorded end too: a new leader's entry may have replaced the last one in
            // place, which leaves the end where it was and the record as it was.
            if entry.index >= state.last_index {
                state.last_index = entry.index;
                state.last_term = entry.term;
            }
        }
        if let Some(apply) = self.apply_state(region_id)? {
            let truncated = apply.truncated_state;
            if truncated.index > state.last_index {
                // Compacted and collected up to the end of a log whose end was never recorded.
                state.last_index = truncated.index;
                state.last_term = truncated.term;
            }
            let commit = &mut state.hard_state.commit;
            *commit = (*commit).max(apply.applied_index).min(state.last_index);
        }
        Ok(Some(state))
    }

    /// The Raft state record as last written; see [`Engines::raft_state`].
    pub fn written_raft_state(&self, region_id: u64) -> Result<Option<RaftLocalState>> {
        read_record(self.raft(), RAFT_KEYSPACE, &keys::raft_state_key(region_id))
    }

    pub fn apply_state(&self, region_id: u64) -> Result<Option<RaftApplyState>> {
        read_record(
            self.meta(),
            META_KEYSPACE,
            &keys::apply_state_key(region_id),
        )
    }

    /// The stored log entries of a region in `[low, high)`, as they are on disk (entries at or
    /// below the truncated index that log GC has not removed yet included). For inspection;
    /// Raft reads go through `PeerStorage`.
    pub fn log_entries(&self, region_id: u64, low: u64, high: u64) -> Result<Vec<Entry>> {
        let mut out = Vec::new();
        if low >= high {
            return Ok(out);
        }
        let range = keys::raft_log_key(region_id, low)..keys::raft_log_key(region_id, high);
        for guard in self.raft().range(range) {
            let (key, value) = guard.into_inner()?;
            out.push(Entry::decode(RAFT_KEYSPACE, &key, &value)?);
        }
        Ok(out)
    }

    /// The index of the first log entry of a region still stored (compacted entries that log GC
    /// has not deleted yet included), or `None` when its log is empty.
    pub fn first_stored_index(&self, region_id: u64) -> Result<Option<u64>> {
        match self.raft().prefix(keys::raft_log_prefix(region_id)).next() {
            Some(guard) => {
                let key = guard.key()?;
                Ok(keys::decode_raft_log_key(region_id, &key))
            }
            None => Ok(None),
        }
    }

    /// A consistent view of user data: every read through it sees the same point in time.
    pub fn read_view(&self) -> ReadView {
        ReadView {
            engines: self.clone(),
            snapshot: self.db().snapshot(),
        }
    }

    /// Reads one user key at the latest committed state.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.kv().get(keys::data_key(key))?.map(|v| v.to_vec()))
    }

    /// Up to `limit` user pairs in `[start, end)` (an empty `end` is unbounded), from one
    /// consistent view.
    pub fn scan(&self, start: &[u8], end: &[u8], limit: usize) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        self.read_view().scan(start, end, limit)
    }

    /// Every user key in `[start, end)` (an empty `end` is unbounded), without their values:
    /// what a range delete removes. Reads the latest committed state.
    pub fn keys_in_range(&self, start: &[u8], end: &[u8]) -> Result<Vec<Vec<u8>>> {
        let mut out = Vec::new();
        if !end.is_empty() && start >= end {
            return Ok(out);
        }
        let range = keys::data_key(start)..keys::data_end_key(end);
        for guard in self.kv().range(range) {
            let key = guard.key()?;
            let user = keys::user_key(&key)
                .ok_or_else(|| StorageError::corrupt(KV_KEYSPACE, &key, "not a data key"))?;
            out.push(user.to_vec());
        }
        Ok(out)
    }

    /// Writes user pairs straight into the data keyspace, outside any region's log, in one
    /// batch without a sync (`sync` once at the end): for restoring a backup into a data dir
    /// that was just bootstrapped, before any node runs on it.
    pub fn load_user_data<K, V>(&self, pairs: impl IntoIterator<Item = (K, V)>) -> Result<()>
    where
        K: AsRef<[u8]>,
        V: AsRef<[u8]>,
    {
        let mut batch = self.db().batch();
        for (key, value) in pairs {
            batch.insert(self.kv(), keys::data_key(key.as_ref()), value.as_ref());
        }
        batch.commit()?;
        Ok(())
    }

    /// Makes everything written so far durable (for writes committed without a sync).
    pub fn sync(&self) -> Result<()> {
        self.db().persist(PersistMode::SyncAll)?;
        Ok(())
    }
}

/// A user key and its value.
pub type UserPair = (Vec<u8>, Vec<u8>);

/// A point-in-time view of user data (a fjall snapshot). Holding it long keeps old versions
/// from being compacted away, so drop it when done.
pub struct ReadView {
    engines: Engines,
    snapshot: fjall::Snapshot,
}

impl ReadView {
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self
            .snapshot
            .get(self.engines.kv(), keys::data_key(key))?
            .map(|v| v.to_vec()))
    }

    /// User pairs in `[start, end)` (an empty `end` is unbounded) in key order, until their
    /// keys and values reach `max_bytes` (one pair at least); true when pairs are left.
    pub fn scan_bytes(
        &self,
        start: &[u8],
        end: &[u8],
        max_bytes: usize,
    ) -> Result<(Vec<UserPair>, bool)> {
        let mut out = Vec::new();
        if !end.is_empty() && start >= end {
            return Ok((out, false));
        }
        let range = keys::data_key(start)..keys::data_end_key(end);
        let mut bytes = 0;
        for guard in self.snapshot.range(self.engines.kv(), range) {
            if bytes >= max_bytes {
                return Ok((out, true));
            }
            let (key, value) = guard.into_inner()?;
            let user = keys::user_key(&key)
                .ok_or_else(|| StorageError::corrupt(KV_KEYSPACE, &key, "not a data key"))?;
            bytes += user.len() + value.len();
            out.push((user.to_vec(), value.to_vec()));
        }
        Ok((out, false))
    }

    /// Up to `limit` user pairs in `[start, end)`; an empty `end` is unbounded.
    pub fn scan(&self, start: &[u8], end: &[u8], limit: usize) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut out = Vec::new();
        if limit == 0 || (!end.is_empty() && start >= end) {
            return Ok(out);
        }
        let range = keys::data_key(start)..keys::data_end_key(end);
        for guard in self.snapshot.range(self.engines.kv(), range) {
            let (key, value) = guard.into_inner()?;
            let user = keys::user_key(&key)
                .ok_or_else(|| StorageError::corrupt(KV_KEYSPACE, &key, "not a data key"))?;
            out.push((user.to_vec(), value.to_vec()));
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }
}

pub(crate) fn read_record<T: Record>(
    keyspace: &Keyspace,
    name: &'static str,
    key: &[u8],
) -> Result<Option<T>> {
    match keyspace.get(key)? {
        Some(value) => Ok(Some(T::decode(name, key, &value)?)),
        None => Ok(None),
    }
}

/// A directory fjall has not initialised must be empty, or it is someone else's.
/// The ident file's content: `cluster-id N` and `store-id M` lines.
fn read_ident_file(dir: &Path) -> Result<Option<StoreIdent>> {
    let path = dir.join(IDENT_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(StorageError::io(&path, e)),
    };
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse::<u64>().ok())
    };
    match (field("cluster-id "), field("store-id ")) {
        (Some(cluster_id), Some(store_id)) => Ok(Some(StoreIdent {
            cluster_id,
            store_id,
        })),
        _ => Err(StorageError::ForeignDataDir {
            path,
            problem: "not a store ident (expected `cluster-id N` and `store-id M` lines)".into(),
        }),
    }
}

/// Writes the ident file atomically (temporary file, fsync, rename, fsync of the directory).
fn write_ident_file(dir: &Path, ident: StoreIdent) -> Result<()> {
    let path = dir.join(IDENT_FILE);
    let tmp = dir.join(format!("{IDENT_FILE}.tmp"));
    let text = format!(
        "cluster-id {}\nstore-id {}\n",
        ident.cluster_id, ident.store_id
    );
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        std::io::Write::write_all(&mut f, text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)?;
        std::fs::File::open(dir)?.sync_all()
    };
    write().map_err(|e| StorageError::io(&path, e))
}

fn check_not_foreign(db_dir: &Path) -> Result<()> {
    match std::fs::metadata(db_dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(StorageError::io(db_dir, e)),
        Ok(m) if !m.is_dir() => {
            return Err(StorageError::ForeignDataDir {
                path: db_dir.to_path_buf(),
                problem: "expected a directory".into(),
            });
        }
        Ok(_) => {}
    }
    if db_dir.join(FJALL_VERSION_FILE).exists() {
        return Ok(());
    }
    let mut entries = std::fs::read_dir(db_dir).map_err(|e| StorageError::io(db_dir, e))?;
    if entries.next().is_some() {
        return Err(StorageError::ForeignDataDir {
            path: db_dir.to_path_buf(),
            problem: "non-empty directory without a database version marker".into(),
        });
    }
    Ok(())
}

/// Options of the keyspaces that hold values of any size (Raft log entries, user data): values
/// from 1 KiB up are kept in blob files beside the tree. Without that, every flush and compaction
/// rewrote them, the flushes fell behind under large writes, and fjall halted writers (and with
/// them the raft loop and its heartbeats) for up to a second: 64 KiB puts had a p99 of 370 ms,
/// 16 KiB puts stalls of 900 ms, and a leader could lose its term to a follower's election timeout.
/// Fixed when a keyspace is created; data dirs made before keep their layout.
fn separated_values() -> KeyspaceCreateOptions {
    KeyspaceCreateOptions::default().with_kv_separation(Some(fjall::KvSeparationOptions::default()))
}

/// The data dir's format: 1 when it has no format record (written before there was one).
/// A format newer than this build's is refused before anything is decoded.
fn data_format(meta: &Keyspace, db_dir: &Path) -> Result<u32> {
    let format: Option<DataFormat> = read_record(meta, META_KEYSPACE, &keys::DATA_FORMAT_KEY)?;
    let version = format.map_or(1, |f| f.version);
    if version > DATA_FORMAT_VERSION {
        return Err(StorageError::NewerDataFormat {
            path: db_dir.to_path_buf(),
            found: version,
            supported: DATA_FORMAT_VERSION,
        });
    }
    Ok(version)
}

/// Decodes every meta record (region states in the layout of `format`) and checks that they
/// fit together.
fn validate_meta(meta: &Keyspace, expected_cluster_id: Option<u64>, format: u32) -> Result<()> {
    let mut ident = None;
    let mut regions = 0usize;
    for guard in meta.iter() {
        let (key, value) = guard.into_inner()?;
        match keys::decode_meta_key(&key) {
            Some(MetaKey::StoreIdent) => {
                ident = Some(StoreIdent::decode(META_KEYSPACE, &key, &value)?);
            }
            Some(MetaKey::StoreAddr(id)) => {
                let rec = StoreAddress::decode(META_KEYSPACE, &key, &value)?;
                if rec.store_id != id {
                    return Err(StorageError::corrupt(
                        META_KEYSPACE,
                        &key,
                        format!("store address record names store {}", rec.store_id),
                    ));
                }
            }
            Some(MetaKey::StoreStarted(id)) => {
                let rec = StoreStarted::decode(META_KEYSPACE, &key, &value)?;
                if rec.store_id != id {
                    return Err(StorageError::corrupt(
                        META_KEYSPACE,
                        &key,
                        format!("store-started record names store {}", rec.store_id),
                    ));
                }
            }
            Some(MetaKey::ApplyState(_)) => {
                RaftApplyState::decode(META_KEYSPACE, &key, &value)?;
            }
            Some(MetaKey::IdAlloc) => {
                IdAllocState::decode(META_KEYSPACE, &key, &value)?;
            }
            Some(MetaKey::DataFormat) => {
                DataFormat::decode(META_KEYSPACE, &key, &value)?;
            }
            Some(MetaKey::Placement) => {
                PlacementRecord::decode(META_KEYSPACE, &key, &value)?;
            }
            Some(MetaKey::RegionState(id)) => {
                let state: RegionLocalState = if format == 1 {
                    decode_exact::<v1::RegionLocalState>(&value)
                        .map_err(|problem| StorageError::corrupt(META_KEYSPACE, &key, problem))?
                        .into()
                } else {
                    RegionLocalState::decode(META_KEYSPACE, &key, &value)?
                };
                if state.region.id != id {
                    return Err(StorageError::corrupt(
                        META_KEYSPACE,
                        &key,
                        format!("region state names region {}", state.region.id),
                    ));
                }
                regions += 1;
            }
            None => {
                return Err(StorageError::corrupt(
                    META_KEYSPACE,
                    &key,
                    "unknown meta key",
                ));
            }
        }
    }
    match (ident, expected_cluster_id) {
        (None, _) if regions > 0 => Err(StorageError::MissingStoreIdent { regions }),
        (Some(ident), Some(expected)) if ident.cluster_id != expected => {
            Err(StorageError::ClusterIdMismatch {
                expected,
                found: ident.cluster_id,
            })
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn the_sync_delay_is_shared_by_clones_and_slows_only_fsyncing_commits() {
        let dir = tempfile::tempdir().unwrap();
        let (engines, _) = Engines::open(dir.path(), OpenOptions::default()).unwrap();
        let clone = engines.clone();
        let handle = engines.sync_delay();
        clone.set_sync_delay(Duration::from_millis(300));
        assert_eq!(handle.get(), Duration::from_millis(300));

        let started = Instant::now();
        engines.commit(engines.raft_batch()).unwrap();
        assert!(started.elapsed() >= Duration::from_millis(300));

        handle.set(Duration::ZERO);
        assert_eq!(engines.sync_delay().get(), Duration::ZERO);
        let started = Instant::now();
        engines.commit_without_fsync(engines.raft_batch()).unwrap();
        assert!(started.elapsed() < Duration::from_millis(300));
    }

    #[test]
    fn a_delay_cleared_meanwhile_ends_the_pause() {
        let delay = SyncDelay::default();
        delay.set(Duration::from_secs(60));
        let sleeper = delay.clone();
        let started = Instant::now();
        let paused = std::thread::spawn(move || sleeper.pause());
        delay.set(Duration::ZERO);
        paused.join().unwrap();
        assert!(started.elapsed() < Duration::from_secs(60));
    }
}
