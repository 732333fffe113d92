//! Point-in-time views a backup reads: `OpenView` takes one on the raft loop, at a moment its
//! region has applied everything a ReadIndex round promised, and `ViewScan` reads it later off
//! the loop, a chunk at a time. Each is a fjall snapshot, so it keeps old versions of the data
//! from being compacted away while open: views are few, closed when read, and closed by
//! themselves when left idle.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tinykv_proto::api::{KvError, KvResponse, KvResult, VIEW_IDLE_SECS};
use tinykv_storage::engines::ReadView;

/// The most views a store holds open at once; one more is answered `ServerBusy`.
pub(crate) const MAX_OPEN_VIEWS: usize = 256;

/// The most bytes one `ViewScan` answers with (its frame must stay far below the transport's
/// frame limit).
pub(crate) const MAX_VIEW_SCAN_BYTES: u32 = 4 << 20;

pub(crate) struct ReadViews {
    inner: Mutex<Inner>,
    idle: Duration,
}

struct Inner {
    /// Ids start at a random point, so a view id a client holds from before a restart of this
    /// store names no view opened since (it would read another region's data).
    next: u64,
    open: HashMap<u64, OpenView>,
}

struct OpenView {
    view: Arc<ReadView>,
    start: Vec<u8>,
    end: Vec<u8>,
    last_used: Instant,
}

impl ReadViews {
    pub(crate) fn new() -> ReadViews {
        Self::with_idle(Duration::from_secs(VIEW_IDLE_SECS))
    }

    fn with_idle(idle: Duration) -> ReadViews {
        ReadViews {
            inner: Mutex::new(Inner {
                next: rand::random::<u64>() >> 1,
                open: HashMap::new(),
            }),
            idle,
        }
    }

    /// Holds `view` over `[start, end)` (an empty `end`: no end) and names it.
    pub(crate) fn open(&self, view: ReadView, start: &[u8], end: &[u8]) -> Result<u64, KvError> {
        let mut inner = self.lock();
        let idle = self.idle;
        inner.open.retain(|_, v| v.last_used.elapsed() < idle);
        if inner.open.len() >= MAX_OPEN_VIEWS {
            return Err(KvError::ServerBusy);
        }
        inner.next = inner.next.wrapping_add(1);
        let id = inner.next;
        inner.open.insert(
            id,
            OpenView {
                view: Arc::new(view),
                start: start.to_vec(),
                end: end.to_vec(),
                last_used: Instant::now(),
            },
        );
        Ok(id)
    }

    /// The view's pairs from `from` on, about `max_bytes` of them (see `KvOp::ViewScan`).
    /// Reads the disk: call it off the raft loop.
    pub(crate) fn scan(&self, id: u64, from: &[u8], max_bytes: u32) -> KvResult {
        let (view, start, end) = {
            let mut inner = self.lock();
            let idle = self.idle;
            inner.open.retain(|_, v| v.last_used.elapsed() < idle);
            let open = inner
                .open
                .get_mut(&id)
                .ok_or(KvError::ViewNotOpen { view: id })?;
            open.last_used = Instant::now();
            let start = std::cmp::max(from, open.start.as_slice()).to_vec();
            (open.view.clone(), start, open.end.clone())
        };
        let max = max_bytes.clamp(1, MAX_VIEW_SCAN_BYTES) as usize;
        let (pairs, more) = view
            .scan_bytes(&start, &end, max)
            .map_err(|e| KvError::Storage(e.to_string()))?;
        // A long read counts as use: the idle clock starts when the answer leaves.
        if let Some(open) = self.lock().open.get_mut(&id) {
            open.last_used = Instant::now();
        }
        Ok(KvResponse::Pairs {
            pairs: pairs
                .into_iter()
                .map(|(k, v)| (Bytes::from(k), Bytes::from(v)))
                .collect(),
            more,
        })
    }

    /// Restarts the idle clock of `ids`; those no longer open.
    pub(crate) fn renew(&self, ids: &[u64]) -> Vec<u64> {
        let mut inner = self.lock();
        let idle = self.idle;
        inner.open.retain(|_, v| v.last_used.elapsed() < idle);
        let now = Instant::now();
        let mut missing = Vec::new();
        for id in ids {
            match inner.open.get_mut(id) {
                Some(open) => open.last_used = now,
                None => missing.push(*id),
            }
        }
        missing
    }

    pub(crate) fn close(&self, id: u64) {
        self.lock().open.remove(&id);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use tinykv_storage::engines::{Engines, OpenOptions};

    use super::*;

    fn pairs(resp: KvResult) -> (Vec<(Bytes, Bytes)>, bool) {
        match resp {
            Ok(KvResponse::Pairs { pairs, more }) => (pairs, more),
            other => panic!("not pairs: {other:?}"),
        }
    }

    #[test]
    fn a_view_keeps_its_point_in_time_and_its_range_and_closes() {
        let dir = tempfile::tempdir().unwrap();
        let (engines, _) = Engines::open(dir.path(), OpenOptions::default()).unwrap();
        engines
            .load_user_data([("a", "1"), ("b", "2"), ("c", "3"), ("d", "4")])
            .unwrap();
        let views = ReadViews::new();
        let id = views.open(engines.read_view(), b"b", b"d").unwrap();
        // Written after the view was taken: not in it.
        engines
            .load_user_data([("b", "changed"), ("bb", "new")])
            .unwrap();

        let (first, more) = pairs(views.scan(id, b"", 1));
        assert_eq!(first, vec![(Bytes::from("b"), Bytes::from("2"))]);
        assert!(more);
        let (rest, more) = pairs(views.scan(id, b"b\0", 1 << 20));
        assert_eq!(rest, vec![(Bytes::from("c"), Bytes::from("3"))]);
        assert!(!more);

        views.close(id);
        assert_eq!(
            views.scan(id, b"", 100),
            Err(KvError::ViewNotOpen { view: id })
        );
    }

    #[test]
    fn an_idle_view_closes_by_itself() {
        let dir = tempfile::tempdir().unwrap();
        let (engines, _) = Engines::open(dir.path(), OpenOptions::default()).unwrap();
        let views = ReadViews::with_idle(Duration::ZERO);
        let id = views.open(engines.read_view(), b"", b"").unwrap();
        assert_eq!(views.renew(&[id]), vec![id]);
        assert_eq!(
            views.scan(id, b"", 100),
            Err(KvError::ViewNotOpen { view: id })
        );
    }

    #[test]
    fn renewing_names_the_views_no_longer_open() {
        let dir = tempfile::tempdir().unwrap();
        let (engines, _) = Engines::open(dir.path(), OpenOptions::default()).unwrap();
        let views = ReadViews::new();
        let a = views.open(engines.read_view(), b"", b"m").unwrap();
        let b = views.open(engines.read_view(), b"m", b"").unwrap();
        views.close(b);
        assert_eq!(views.renew(&[a, b]), vec![b]);
    }
}
