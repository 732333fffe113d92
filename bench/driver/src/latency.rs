//! Percentiles over every recorded latency (no histogram buckets, so no rounding).

use std::time::Duration;

/// Nearest-rank percentiles of a sample, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

impl Summary {
    /// `None` for an empty sample. Sorts `samples` in place.
    pub fn of(samples: &mut [Duration]) -> Option<Summary> {
        if samples.is_empty() {
            return None;
        }
        samples.sort_unstable();
        let at = |q: f64| ms(samples[rank(samples.len(), q)]);
        Some(Summary {
            p50_ms: at(0.50),
            p90_ms: at(0.90),
            p99_ms: at(0.99),
            p999_ms: at(0.999),
            max_ms: ms(samples[samples.len() - 1]),
        })
    }
}

/// The 0-based index of the nearest-rank `q` quantile of `n` sorted values (`n > 0`).
fn rank(n: usize, q: f64) -> usize {
    let r = (q * n as f64).ceil() as usize;
    r.clamp(1, n) - 1
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_on_one_to_thousand() {
        let mut v: Vec<Duration> = (1..=1000).rev().map(Duration::from_millis).collect();
        let s = Summary::of(&mut v).expect("non-empty");
        assert_eq!(s.p50_ms, 500.0);
        assert_eq!(s.p90_ms, 900.0);
        assert_eq!(s.p99_ms, 990.0);
        assert_eq!(s.p999_ms, 999.0);
        assert_eq!(s.max_ms, 1000.0);
    }

    #[test]
    fn single_sample_is_every_percentile() {
        let mut v = vec![Duration::from_micros(1500)];
        let s = Summary::of(&mut v).expect("non-empty");
        assert_eq!(s.p50_ms, 1.5);
        assert_eq!(s.p999_ms, 1.5);
    }

    #[test]
    fn empty_sample_has_no_summary() {
        assert!(Summary::of(&mut []).is_none());
    }
}
