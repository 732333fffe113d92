//! The pause between attempts of a retried request: none after the first failure (a stale route
//! or a leader hint is usually fixed at once), then growing so that a cluster electing a leader
//! or applying a split is not flooded.

use std::time::Duration;

use tokio::time::Instant;

/// Waits before the next attempt: immediately after the first, then doubling up to 200 ms.
/// `None` when the deadline has passed.
pub(crate) async fn backoff(attempt: u32, deadline: Instant) -> Option<()> {
    let wait = wait_before(attempt);
    let now = Instant::now();
    if now + wait >= deadline {
        return None;
    }
    tokio::time::sleep(wait).await;
    Some(())
}

fn wait_before(attempt: u32) -> Duration {
    if attempt <= 1 {
        Duration::ZERO
    } else {
        Duration::from_millis(5u64 << attempt.min(6)).min(Duration::from_millis(200))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_up_to_a_ceiling() {
        let waits: Vec<u64> = (0..9).map(|a| wait_before(a).as_millis() as u64).collect();
        assert_eq!(waits, [0, 0, 20, 40, 80, 160, 200, 200, 200]);
    }

    #[tokio::test]
    async fn no_attempt_past_the_deadline() {
        let now = Instant::now();
        assert_eq!(backoff(1, now).await, None);
        assert_eq!(backoff(1, now + Duration::from_secs(5)).await, Some(()));
        assert_eq!(backoff(3, now + Duration::from_millis(10)).await, None);
    }
}
