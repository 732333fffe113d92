//! Free space on the data dir's filesystem: the guard that refuses client writes while it is
//! below `storage.reserve-space` (so Raft appends, log compaction and a restart still find room),
//! the start-time check that the reserve can be met at all, and the diagnosis of a write that
//! failed anyway. The guard only decides; the raft loop asks it on its tick and before it
//! proposes a client write.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tinykv_proto::api::KvError;
use tinykv_storage::StorageError;
use tracing::{info, warn};

use crate::config::{ConfigError, NodeConfig};

/// How often the raft loop looks at the filesystem. A statvfs costs about a microsecond; the
/// interval bounds how far writes can run past the reserve before they are refused.
pub(crate) const CHECK_INTERVAL: Duration = Duration::from_millis(200);

/// With less than this available after a write failed, the full disk is taken to be the cause
/// even when the engine no longer says so (a failed background flush only poisons it).
const NEARLY_FULL: u64 = 1 << 20;

/// Sizes of a filesystem, in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FsSpace {
    /// What an unprivileged writer may still use (statvfs `f_bavail`).
    pub available: u64,
    pub total: u64,
}

/// The space of the filesystem that holds `path`.
pub(crate) fn fs_space(path: &Path) -> io::Result<FsSpace> {
    let st = rustix::fs::statvfs(path)?;
    Ok(FsSpace {
        available: st.f_bavail.saturating_mul(st.f_frsize),
        total: st.f_blocks.saturating_mul(st.f_frsize),
    })
}

fn human(n: u64) -> String {
    bytesize::ByteSize::b(n).display().iec().to_string()
}

/// The directory whose filesystem `path` is (or will be, once created) on.
fn nearest_existing(path: &Path) -> &Path {
    path.ancestors()
        .find(|p| !p.as_os_str().is_empty() && p.exists())
        .unwrap_or(Path::new("."))
}

/// Refuses a reserve the data dir's filesystem could never leave free: every write would be
/// refused from the first one, which is a configuration mistake better named at start.
pub(crate) fn check_reserve_fits(config: &NodeConfig) -> Result<(), ConfigError> {
    let reserve = config.storage.reserve_space;
    if reserve.0 == 0 {
        return Ok(());
    }
    let dir = nearest_existing(&config.data_dir);
    match fs_space(dir) {
        Ok(space) if reserve.0 >= space.total => Err(ConfigError::Invalid {
            key: "storage.reserve-space",
            message: format!(
                "{reserve} is not below the size of the filesystem holding {} ({}), so every \
                 write would be refused; lower it, or set 0 to turn the check off",
                config.data_dir.display(),
                human(space.total)
            ),
        }),
        Ok(_) => Ok(()),
        Err(e) => {
            warn!(dir = %dir.display(), error = %e, "cannot read the filesystem's size; not checking storage.reserve-space against it");
            Ok(())
        }
    }
}

/// Tracks whether the data dir has less than the reserve available.
#[derive(Debug)]
pub(crate) struct DiskSpaceGuard {
    dir: PathBuf,
    reserve: u64,
    every_ticks: u64,
    /// The available bytes last seen while below the reserve; `None` while writes are accepted.
    low: Option<u64>,
    /// A failed statvfs is logged once per streak, not on every check.
    unreadable: bool,
}

impl DiskSpaceGuard {
    /// A guard for `dir`, checked once now so a store that starts on a full disk refuses writes
    /// from its first request. `reserve` 0 turns it off.
    pub fn new(dir: PathBuf, reserve: u64, tick: Duration) -> DiskSpaceGuard {
        let every_ticks = (CHECK_INTERVAL.as_millis() / tick.as_millis().max(1)).max(1);
        let mut guard = DiskSpaceGuard {
            dir,
            reserve,
            every_ticks: u64::try_from(every_ticks).unwrap_or(u64::MAX),
            low: None,
            unreadable: false,
        };
        guard.check();
        guard
    }

    /// Called on every raft tick; looks at the filesystem every [`CHECK_INTERVAL`].
    pub fn on_tick(&mut self, ticks: u64) {
        if ticks.is_multiple_of(self.every_ticks) {
            self.check();
        }
    }

    fn check(&mut self) {
        if self.reserve == 0 {
            return;
        }
        match fs_space(&self.dir) {
            Ok(space) => {
                if std::mem::take(&mut self.unreadable) {
                    info!(dir = %self.dir.display(), "the data dir's free space can be read again");
                }
                self.observe(space.available);
            }
            Err(e) => {
                // Keep the last decision: an unreadable filesystem is no evidence either way.
                if !self.unreadable {
                    self.unreadable = true;
                    warn!(dir = %self.dir.display(), error = %e, "cannot read the data dir's free space; the disk-full guard keeps its last state");
                }
            }
        }
    }

    /// Takes a reading of the available bytes; logs only when the state changes.
    fn observe(&mut self, available: u64) {
        let below = available < self.reserve;
        match (self.low.is_some(), below) {
            (false, true) => warn!(
                dir = %self.dir.display(),
                available = %human(available),
                reserve = %human(self.reserve),
                "disk space is below storage.reserve-space: client writes are refused until space is freed"
            ),
            (true, false) => info!(
                dir = %self.dir.display(),
                available = %human(available),
                reserve = %human(self.reserve),
                "disk space is back above storage.reserve-space: client writes are accepted again"
            ),
            _ => {}
        }
        self.low = below.then_some(available);
    }

    /// The answer to a client write while space is short; `None` while writes are accepted.
    pub fn refusal(&self, store_id: u64) -> Option<KvError> {
        self.low.map(|available| KvError::DiskFull {
            store_id,
            available,
            reserve: self.reserve,
        })
    }
}

/// Why the raft loop stopped on its own, in words an operator can act on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct StoreFailure {
    pub cause: String,
    /// The disk filled up (the error says so, or hardly any space is left).
    pub out_of_space: bool,
}

/// Describes a storage failure that stopped the store, with the state of the data dir's
/// filesystem, since the engine's own error may not name the cause.
pub(crate) fn diagnose(dir: &Path, reserve: u64, err: &StorageError) -> StoreFailure {
    let io = io_cause(err);
    let mut cause = match (err, io) {
        (_, Some(io)) => format!("a write to {} failed: {io}", dir.display()),
        (StorageError::Poisoned, None) => {
            "the storage engine refuses writes after an earlier write or fsync failed (its log \
             names that error)"
                .to_string()
        }
        (other, None) => other.to_string(),
    };
    let mut out_of_space = io.is_some_and(|e| {
        matches!(
            e.kind(),
            io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
        )
    });
    match fs_space(dir) {
        Ok(space) => {
            out_of_space |= space.available < reserve.max(NEARLY_FULL);
            cause.push_str(&format!(
                "; its filesystem has {} of {} available",
                human(space.available),
                human(space.total)
            ));
        }
        Err(e) => cause.push_str(&format!("; its free space cannot be read: {e}")),
    }
    StoreFailure {
        cause,
        out_of_space,
    }
}

/// The operating system's error behind a storage error, if there is one.
fn io_cause(err: &StorageError) -> Option<&io::Error> {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = current {
        if let Some(io) = e.downcast_ref::<io::Error>() {
            return Some(io);
        }
        current = e.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(reserve: u64) -> DiskSpaceGuard {
        DiskSpaceGuard {
            dir: PathBuf::from("/nowhere"),
            reserve,
            every_ticks: 1,
            low: None,
            unreadable: false,
        }
    }

    #[test]
    fn writes_are_refused_only_while_below_the_reserve() {
        let mut g = guard(100);
        g.observe(100);
        assert_eq!(g.refusal(7), None);
        g.observe(99);
        assert_eq!(
            g.refusal(7),
            Some(KvError::DiskFull {
                store_id: 7,
                available: 99,
                reserve: 100
            })
        );
        g.observe(50);
        assert!(matches!(
            g.refusal(7),
            Some(KvError::DiskFull { available: 50, .. })
        ));
        g.observe(1000);
        assert_eq!(g.refusal(7), None);
    }

    #[test]
    fn a_zero_reserve_never_refuses_and_never_looks() {
        let mut g = guard(0);
        g.check();
        assert!(!g.unreadable, "a disabled guard must not call statvfs");
        g.observe(0);
        assert_eq!(g.refusal(1), None);
    }

    #[test]
    fn an_unreadable_filesystem_keeps_the_last_state() {
        let mut g = guard(100);
        g.observe(10);
        g.check();
        assert!(g.unreadable);
        assert!(g.refusal(1).is_some());
    }

    #[test]
    fn the_check_interval_is_counted_in_ticks() {
        let dir = tempfile::tempdir().unwrap();
        let g = DiskSpaceGuard::new(dir.path().into(), 1, Duration::from_millis(20));
        assert_eq!(g.every_ticks, 10);
        assert_eq!(g.refusal(1), None, "a temp dir has more than one byte free");
        let g = DiskSpaceGuard::new(dir.path().into(), 1, Duration::from_secs(1));
        assert_eq!(g.every_ticks, 1);
    }

    #[test]
    fn a_real_filesystem_reports_its_space() {
        let dir = tempfile::tempdir().unwrap();
        let space = fs_space(dir.path()).unwrap();
        assert!(space.total > 0 && space.available <= space.total);
        assert!(fs_space(&dir.path().join("missing")).is_err());
        assert_eq!(nearest_existing(&dir.path().join("a/b/c")), dir.path());
    }

    #[test]
    fn a_reserve_as_large_as_the_filesystem_is_refused_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let total = fs_space(dir.path()).unwrap().total;
        let mut config = NodeConfig {
            data_dir: dir.path().join("data"),
            ..NodeConfig::default()
        };
        config.storage.reserve_space = crate::config::ByteSize(total);
        match check_reserve_fits(&config) {
            Err(ConfigError::Invalid { key, .. }) => assert_eq!(key, "storage.reserve-space"),
            other => panic!("expected the reserve to be refused, got {other:?}"),
        }
        config.storage.reserve_space = crate::config::ByteSize::mib(1);
        assert!(check_reserve_fits(&config).is_ok());
        config.storage.reserve_space = crate::config::ByteSize(0);
        assert!(check_reserve_fits(&config).is_ok());
    }

    #[test]
    fn a_full_disk_is_named_from_the_os_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = StorageError::Io {
            path: dir.path().join("0.jnl"),
            source: io::Error::from_raw_os_error(28),
        };
        let f = diagnose(dir.path(), 0, &err);
        assert!(f.out_of_space);
        assert!(f.cause.contains("No space left on device"), "{}", f.cause);
        assert!(f.cause.contains("available"), "{}", f.cause);

        let f = diagnose(dir.path(), 0, &StorageError::Poisoned);
        assert!(!f.out_of_space, "a temp dir with room is not out of space");
        assert!(
            f.cause.contains("earlier write or fsync failed"),
            "{}",
            f.cause
        );
    }
}
