//! Locking the client's shared state. Each mutex guards plain data that no panic can leave
//! half-updated in a way that matters (caches, marks, counters), so a poisoned one is used as is.

use std::sync::{Mutex, MutexGuard, PoisonError};

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}
