//! A tiny deterministic PRNG for election timeouts. The core must not read OS randomness, so
//! that a run replays exactly from `Config::seed`.

/// SplitMix64: small, fast, and every output bit depends on the whole seed, which matters when
/// seeds differ only in the node id.
#[derive(Clone, Debug)]
pub(crate) struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    pub(crate) fn new(seed: u64) -> SplitMix64 {
        SplitMix64 { state: seed }
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[low, high)`; `high` must exceed `low`. The modulo bias is below 2^-50 for
    /// the ranges used here.
    pub(crate) fn gen_range(&mut self, low: usize, high: usize) -> usize {
        let span = (high - low) as u64;
        low + (self.next_u64() % span) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_sequence_and_range_covered() {
        let mut a = SplitMix64::new(7);
        let mut b = SplitMix64::new(7);
        let mut seen = [false; 10];
        for _ in 0..1000 {
            let x = a.gen_range(10, 20);
            assert_eq!(x, b.gen_range(10, 20));
            assert!((10..20).contains(&x));
            seen[x - 10] = true;
        }
        assert!(seen.iter().all(|s| *s));
    }
}
