//! SplitMix64 (Steele, Lea, Flood 2014): the one deterministic pseudo-random generator behind qmac's
//! test stimulus, its quantizer tests and the trainer, so that a seed gives the same numbers on every
//! machine and toolchain.

/// SplitMix64: 64-bit state, full period.
#[derive(Clone, Debug)]
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[lo, hi)`.
    pub fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        let unit = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        lo + (hi - lo) * unit
    }

    /// Integer in `0..bound` (`bound > 0`) by remainder.
    pub fn below(&mut self, bound: u64) -> u64 {
        self.next_u64() % bound
    }
}
