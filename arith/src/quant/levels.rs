//! Learnable quantization levels and channel-wise activation clipping (quantization.md § Direct
//! quantization with learnable levels; Hoang, Do, Nguyen, Cheung, IJCAI 2020).
//!
//! **Weights.** A layer has a table of `2^k` arbitrary float levels learned in training (not
//! necessarily uniform, sorted or distinct). A weight is stored as the `k`-bit index of the level
//! nearest to it; in hardware the code indexes a small table. Ties (two levels equally near,
//! including duplicate levels) go to the **lower index**, a rule that does not depend on the
//! order of the values in the table being sorted. The hardware loads integer levels, so
//! [`LevelTable::to_fixed`] converts the table to signed fixed point with one power-of-two scale
//! `2^-frac_bits` for the whole table.
//!
//! **Activations.** The paper's activation quantizers account for the error of each channel, so
//! that the quantizer fits most channels rather than a few high-variance ones; in hardware that is
//! a per-channel clip and scale. This is PACT ([`super::pact`]) with one alpha per channel;
//! [`channel_alphas`] picks those alphas from calibration data by an [`AlphaRule`].

use super::{
    check_bits, check_count, check_input, pact, round_f64, CodeMap, Granularity, QuantError,
    Quantized, Rounding,
};

/// Smallest supported weight bit-width (table of 2 levels).
pub const MIN_BITS: u32 = 1;
/// Largest supported weight bit-width (table of 256 levels).
pub const MAX_BITS: u32 = 8;
/// Largest total width of a fixed-point level (`i32`).
pub const MAX_TOTAL_BITS: u32 = 32;
/// Largest number of fractional bits of a fixed-point level.
pub const MAX_FRAC_BITS: u32 = 62;
/// Most Lloyd steps of [`LevelTable::fit`].
pub const FIT_MAX_ITERATIONS: usize = 100;

/// A per-layer table of `2^bits` learned levels.
#[derive(Debug, Clone, PartialEq)]
pub struct LevelTable {
    bits: u32,
    levels: Vec<f64>,
}

impl LevelTable {
    /// A table of `2^bits` finite levels (`bits` in [`MIN_BITS`]`..=`[`MAX_BITS`]).
    pub fn new(bits: u32, levels: Vec<f64>) -> Result<Self, QuantError> {
        check_bits("learnable-level weight bits", bits, MIN_BITS, MAX_BITS)?;
        check_count("levels (2^bits)", 1usize << bits, levels.len())?;
        if let Some((index, &value)) = levels.iter().enumerate().find(|(_, v)| !v.is_finite()) {
            return Err(QuantError::NonFinite {
                what: "level",
                index,
                value,
            });
        }
        Ok(LevelTable { bits, levels })
    }

    /// Fits a table of `2^bits` levels to weights `w` when no trained table is at hand: 1-D
    /// k-means (Lloyd's algorithm) started from quantiles.
    ///
    /// * Start: level `i` is the sorted weight of rank `floor((2i + 1) * N / 2^(bits + 1))` (0-based),
    ///   the midpoint quantile of the `i`-th of `2^bits` equal-count groups.
    /// * Step: every weight goes to its nearest level (the levels are sorted, so the groups are
    ///   runs of the sorted weights split at the midpoints between adjacent levels; a weight exactly
    ///   at a midpoint goes to the lower level); each level with weights moves to their mean. A
    ///   level without any (a repeated start level, for example) moves to the weight farthest from
    ///   its group's mean in the group of largest squared error that has two distinct values, or
    ///   keeps its value if there is none. The levels are then sorted again.
    /// * Stop: when no level changes, or after [`FIT_MAX_ITERATIONS`] steps.
    ///
    /// No step raises the squared error (the assignment is nearest, the mean is the least-squares
    /// level of its group, and a moved empty level only adds a choice), so the result is never worse
    /// than the quantile start. The levels are sorted ascending; at the end of the fit they repeat
    /// only when the weights have fewer distinct values than levels (then every value is a level and
    /// the error is 0). `w` must be nonempty and finite.
    pub fn fit(bits: u32, w: &[f32]) -> Result<Self, QuantError> {
        check_bits("learnable-level weight bits", bits, MIN_BITS, MAX_BITS)?;
        check_input(w, Granularity::PerTensor)?;
        let mut a: Vec<f64> = w.iter().map(|&v| f64::from(v)).collect();
        a.sort_by(f64::total_cmp);
        let n = a.len();
        let k = 1usize << bits;
        let (mut prefix, mut prefix_sq) = (vec![0.0; n + 1], vec![0.0; n + 1]);
        for (i, &v) in a.iter().enumerate() {
            prefix[i + 1] = prefix[i] + v;
            prefix_sq[i + 1] = prefix_sq[i] + v * v;
        }
        let sse = |(b, e): (usize, usize)| {
            let m = (e - b) as f64;
            (prefix_sq[e] - prefix_sq[b]) - (prefix[e] - prefix[b]).powi(2) / m
        };
        let mut levels: Vec<f64> = (0..k)
            .map(|i| a[((2 * i + 1) * n / (2 * k)).min(n - 1)])
            .collect();
        for _ in 0..FIT_MAX_ITERATIONS {
            // groups: runs of the sorted weights, split at the midpoints between adjacent levels
            let mut bounds = Vec::with_capacity(k);
            let mut start = 0;
            for i in 0..k {
                let end = if i + 1 == k {
                    n
                } else {
                    let t = 0.5 * (levels[i] + levels[i + 1]);
                    start + a[start..].partition_point(|&v| v <= t)
                };
                bounds.push((start, end));
                start = end;
            }
            let mut next: Vec<f64> = bounds
                .iter()
                .zip(&levels)
                .map(|(&(b, e), &l)| {
                    if e > b {
                        (prefix[e] - prefix[b]) / (e - b) as f64
                    } else {
                        l
                    }
                })
                .collect();
            // an empty group's level moves to the weight farthest from its group's mean in the
            // group of largest squared error (among groups with two distinct values)
            let mut split = vec![false; k];
            for i in 0..k {
                if bounds[i].1 > bounds[i].0 {
                    continue;
                }
                let donor = (0..k)
                    .filter(|&j| !split[j] && bounds[j].1 > bounds[j].0 + 1)
                    .filter(|&j| a[bounds[j].0] != a[bounds[j].1 - 1])
                    .max_by(|&x, &y| sse(bounds[x]).total_cmp(&sse(bounds[y])));
                if let Some(j) = donor {
                    split[j] = true;
                    let (b, e) = bounds[j];
                    let (lo, hi) = (a[b], a[e - 1]);
                    next[i] = if next[j] - lo >= hi - next[j] { lo } else { hi };
                }
            }
            next.sort_by(f64::total_cmp);
            if next == levels {
                break;
            }
            levels = next;
        }
        Ok(LevelTable { bits, levels })
    }

    /// Bit-width of the codes.
    pub fn bits(&self) -> u32 {
        self.bits
    }

    /// The levels, indexed by code.
    pub fn levels(&self) -> &[f64] {
        &self.levels
    }

    /// Index of the level nearest to `x`; among equally near levels the lowest index.
    pub fn nearest(&self, x: f64) -> u32 {
        let mut best = 0;
        let mut best_dist = f64::INFINITY;
        for (i, &level) in self.levels.iter().enumerate() {
            let d = (x - level).abs();
            if d < best_dist {
                best = i;
                best_dist = d;
            }
        }
        best as u32
    }

    /// Quantizes weights to codes of their nearest levels. The result has a
    /// [`CodeMap::Table`] and per-tensor granularity (one table per layer).
    pub fn quantize(&self, w: &[f32]) -> Result<Quantized, QuantError> {
        let layout = check_input(w, Granularity::PerTensor)?;
        let codes = w.iter().map(|&v| self.nearest(f64::from(v))).collect();
        let map = CodeMap::Table {
            levels: self.levels.clone(),
        };
        Ok(Quantized::new(
            self.bits,
            Granularity::PerTensor,
            layout,
            codes,
            map,
        ))
    }

    /// The table in signed fixed point: `level_int = round(level * 2^frac_bits)` with
    /// [`Rounding::HalfEven`], which must fit a `total_bits`-bit two's complement integer.
    /// See [`LevelTable::to_fixed_with`].
    pub fn to_fixed(&self, frac_bits: u32, total_bits: u32) -> Result<FixedLevels, QuantError> {
        self.to_fixed_with(frac_bits, total_bits, Rounding::HalfEven)
    }

    /// The table in signed fixed point with an explicit rounding rule:
    /// `level_int = round(level * 2^frac_bits)`, represented value `level_int * 2^-frac_bits`.
    ///
    /// `total_bits` must be in `1..=`[`MAX_TOTAL_BITS`] and `frac_bits` in
    /// `0..=`[`MAX_FRAC_BITS`]. A level whose rounded value falls outside
    /// `-2^(total_bits-1)..=2^(total_bits-1) - 1` is an error ([`QuantError::LevelOverflow`],
    /// naming the first such level); nothing saturates silently.
    pub fn to_fixed_with(
        &self,
        frac_bits: u32,
        total_bits: u32,
        rounding: Rounding,
    ) -> Result<FixedLevels, QuantError> {
        check_bits("fixed-point total_bits", total_bits, 1, MAX_TOTAL_BITS)?;
        check_bits("fixed-point frac_bits", frac_bits, 0, MAX_FRAC_BITS)?;
        let min = -(1i64 << (total_bits - 1));
        let max = (1i64 << (total_bits - 1)) - 1;
        let unit = (1u64 << frac_bits) as f64; // exactly 2^frac_bits
        let mut levels = Vec::with_capacity(self.levels.len());
        for (index, &level) in self.levels.iter().enumerate() {
            let scaled = round_f64(level * unit, rounding);
            if !(scaled >= min as f64 && scaled <= max as f64) {
                return Err(QuantError::LevelOverflow {
                    index,
                    level,
                    frac_bits,
                    scaled,
                    total_bits,
                    min,
                    max,
                });
            }
            levels.push(scaled as i32);
        }
        Ok(FixedLevels {
            levels,
            frac_bits,
            total_bits,
        })
    }
}

/// A level table in signed fixed point: level `i` stands for `levels[i] * 2^-frac_bits`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FixedLevels {
    levels: Vec<i32>,
    frac_bits: u32,
    total_bits: u32,
}

impl FixedLevels {
    /// The integer levels, indexed by code; each fits `total_bits` two's complement bits.
    pub fn levels(&self) -> &[i32] {
        &self.levels
    }

    /// Fractional bits: the common scale is `2^-frac_bits`.
    pub fn frac_bits(&self) -> u32 {
        self.frac_bits
    }

    /// Width of each integer level.
    pub fn total_bits(&self) -> u32 {
        self.total_bits
    }

    /// The common scale `2^-frac_bits`.
    pub fn scale(&self) -> f64 {
        1.0 / (1u64 << self.frac_bits) as f64
    }

    /// The real values the integer levels stand for.
    pub fn to_f64(&self) -> Vec<f64> {
        let scale = self.scale();
        self.levels.iter().map(|&l| f64::from(l) * scale).collect()
    }
}

/// How [`channel_alphas`] picks a channel's PACT clip level from calibration activations.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum AlphaRule {
    /// The channel's maximum: nothing is clipped above.
    Max,
    /// The nearest-rank percentile `p` (in `(0, 100]`) of the channel's values: the value of
    /// rank `ceil(p / 100 * N)` (1-based) in ascending order, so a fraction of about
    /// `1 - p / 100` of the values is clipped. `Percentile(100.0)` is [`AlphaRule::Max`]. The
    /// rank is computed with a slack of 1e-9 so that decimal `p` such as 99.9 hits exact ranks.
    Percentile(f64),
}

/// One PACT clip level per channel of channel-major activations `x` (`[axis0_len][...]`),
/// chosen by `rule`.
///
/// Fallback: a channel whose rule gives a value `<= 0` (for example a mostly-zero ReLU channel
/// under a percentile) uses its own maximum if that is `> 0`; a channel with no positive value at
/// all (which PACT clips entirely to code 0, whatever alpha is) borrows the largest alpha of the
/// other channels, so that its scale stays in the common range, or 1.0 if no channel has one.
pub fn channel_alphas(
    x: &[f32],
    axis0_len: usize,
    rule: AlphaRule,
) -> Result<Vec<f64>, QuantError> {
    if let AlphaRule::Percentile(p) = rule {
        if !(p > 0.0 && p <= 100.0) {
            return Err(QuantError::InvalidParameter {
                what: "percentile",
                index: 0,
                value: p,
                requirement: "in (0, 100]",
            });
        }
    }
    let layout = check_input(x, Granularity::PerChannel { axis0_len })?;
    let picked: Vec<Option<f64>> = x
        .chunks(layout.row_len)
        .map(|row| {
            let mut v: Vec<f64> = row.iter().map(|&e| f64::from(e)).collect();
            v.sort_by(f64::total_cmp);
            let n = v.len();
            let max = v[n - 1];
            let chosen = match rule {
                AlphaRule::Max => max,
                AlphaRule::Percentile(p) => {
                    let rank = (p / 100.0 * n as f64 - 1e-9).ceil().clamp(1.0, n as f64);
                    v[rank as usize - 1]
                }
            };
            if chosen > 0.0 {
                Some(chosen)
            } else if max > 0.0 {
                Some(max)
            } else {
                None
            }
        })
        .collect();
    let shared = picked
        .iter()
        .flatten()
        .copied()
        .fold(None, |m: Option<f64>, a| Some(m.map_or(a, |m| m.max(a))));
    Ok(picked
        .into_iter()
        .map(|a| a.or(shared).unwrap_or(1.0))
        .collect())
}

/// Channel-wise activation quantizer: [`channel_alphas`] followed by per-channel PACT
/// ([`pact::quantize`] with [`Granularity::PerChannel`]).
pub fn channelwise_pact(
    x: &[f32],
    axis0_len: usize,
    rule: AlphaRule,
    bits: u32,
    rounding: Rounding,
) -> Result<Quantized, QuantError> {
    let alphas = channel_alphas(x, axis0_len, rule)?;
    pact::quantize(
        x,
        Granularity::PerChannel { axis0_len },
        &alphas,
        bits,
        rounding,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Nearest level with ties to the lower index, on an unsorted table.
    #[test]
    fn nearest_ties_lower_index() {
        let t = LevelTable::new(2, vec![2.0, -1.0, 1.0, 0.0]).unwrap();
        // 0.5: levels 1 (index 2) and 0 (index 3) are both 0.5 away -> index 2.
        assert_eq!(t.nearest(0.5), 2);
        // 1.5: levels 2 (index 0) and 1 (index 2) -> index 0.
        assert_eq!(t.nearest(1.5), 0);
        // -0.5: levels -1 (index 1) and 0 (index 3) -> index 1.
        assert_eq!(t.nearest(-0.5), 1);
        assert_eq!(t.nearest(0.1), 3);
        assert_eq!(t.nearest(10.0), 0);
        assert_eq!(t.nearest(-10.0), 1);
        let dup = LevelTable::new(1, vec![0.25, 0.25]).unwrap();
        assert_eq!(dup.nearest(3.0), 0);

        let q = t.quantize(&[0.5, 1.5, -0.5, 0.1, 10.0]).unwrap();
        assert_eq!(q.codes(), &[2, 0, 1, 3, 0]);
        assert_eq!(q.dequantize_f64(), vec![1.0, 2.0, -1.0, 0.0, 2.0]);
        assert_eq!(q.int_values(), None);
    }

    /// Fixed point: round(level * 2^f), overflow reported, ties by the rounding rule.
    #[test]
    fn to_fixed_by_hand() {
        let t = LevelTable::new(2, vec![0.5, -0.25, 1.75, -2.0]).unwrap();
        let f = t.to_fixed(2, 4).unwrap();
        assert_eq!(f.levels(), &[2, -1, 7, -8]);
        assert_eq!(f.scale(), 0.25);
        assert_eq!(f.to_f64(), vec![0.5, -0.25, 1.75, -2.0]);
        assert_eq!(
            t.to_fixed(2, 3),
            Err(QuantError::LevelOverflow {
                index: 2,
                level: 1.75,
                frac_bits: 2,
                scaled: 7.0,
                total_bits: 3,
                min: -4,
                max: 3,
            })
        );
        // Range edges of 4-bit two's complement (-8..=7) at frac_bits 2: 1.75 -> 7 and
        // -2.0 -> -8 fit, 2.0 -> 8 and -2.25 -> -9 do not.
        let edge = LevelTable::new(1, vec![1.75, -2.0]).unwrap();
        assert_eq!(edge.to_fixed(2, 4).unwrap().levels(), &[7, -8]);
        for (bad, scaled) in [(2.0, 8.0), (-2.25, -9.0)] {
            let t = LevelTable::new(1, vec![0.0, bad]).unwrap();
            assert!(matches!(
                t.to_fixed(2, 4),
                Err(QuantError::LevelOverflow { index: 1, scaled: s, min: -8, max: 7, .. }) if s == scaled
            ));
        }
        // 0.375 * 4 = 1.5, 0.625 * 4 = 2.5, -0.625 * 4 = -2.5, 0.3 * 4 = 1.2.
        let t = LevelTable::new(2, vec![0.375, 0.625, -0.625, 0.3]).unwrap();
        assert_eq!(
            t.to_fixed_with(2, 8, Rounding::HalfEven).unwrap().levels(),
            &[2, 2, -2, 1]
        );
        assert_eq!(
            t.to_fixed_with(2, 8, Rounding::HalfUp).unwrap().levels(),
            &[2, 3, -2, 1]
        );
        assert!(matches!(
            t.to_fixed(63, 8),
            Err(QuantError::BitsOutOfRange { max: 62, .. })
        ));
        assert!(matches!(
            t.to_fixed(2, 33),
            Err(QuantError::BitsOutOfRange { max: 32, .. })
        ));
        assert!(matches!(
            t.to_fixed(2, 0),
            Err(QuantError::BitsOutOfRange { .. })
        ));
    }

    /// The fit: quantile start, Lloyd steps to the group means, sorted levels, never worse than
    /// the start, and exact when the weights have 2^bits distinct values.
    #[test]
    fn fit_by_hand_and_never_worse_than_the_start() {
        // 30 x -1, 3 x 0, 3 x 2, 4 x 5: the quantile start (ranks 5, 15, 25, 35) is
        // [-1, -1, -1, 2]; the repeated levels leave groups empty, which take the far ends of the
        // largest-error group, and the fit ends at the four values, with zero error.
        let mut w = vec![-1.0f32; 30];
        w.extend([0.0; 3]);
        w.extend([2.0; 3]);
        w.extend([5.0; 4]);
        let t = LevelTable::fit(2, &w).unwrap();
        assert_eq!(t.levels(), &[-1.0, 0.0, 2.0, 5.0]);
        assert!(t.quantize(&w).unwrap().dequantize() == w);
        // one value: every level is that value
        assert_eq!(LevelTable::fit(1, &[0.5; 3]).unwrap().levels(), &[0.5, 0.5]);
        assert!(matches!(
            LevelTable::fit(0, &w),
            Err(QuantError::BitsOutOfRange { .. })
        ));
        assert_eq!(LevelTable::fit(2, &[]), Err(QuantError::EmptyTensor));
        let sse = |t: &LevelTable, w: &[f32]| -> f64 {
            let d = t.quantize(w).unwrap().dequantize_f64();
            w.iter()
                .zip(d)
                .map(|(&a, b)| (f64::from(a) - b).powi(2))
                .sum()
        };
        let mut rng = crate::quant::SplitMix64(17);
        for case in 0..300 {
            let n = 1 + rng.below(60) as usize;
            let grid = case % 3 == 0;
            let w: Vec<f32> = (0..n)
                .map(|_| {
                    if grid {
                        rng.below(5) as f32 - 2.0
                    } else {
                        (rng.uniform(-1.0, 1.0).powi(3) * 4.0) as f32
                    }
                })
                .collect();
            let bits = 1 + (case % 4) as u32;
            let t = LevelTable::fit(bits, &w).unwrap();
            assert!(
                t.levels().windows(2).all(|p| p[0] <= p[1]),
                "{:?}",
                t.levels()
            );
            let mut sorted = w.clone();
            sorted.sort_by(f32::total_cmp);
            let k = 1usize << bits;
            let start: Vec<f64> = (0..k)
                .map(|i| f64::from(sorted[((2 * i + 1) * n / (2 * k)).min(n - 1)]))
                .collect();
            let start = LevelTable::new(bits, start).unwrap();
            let err = sse(&t, &w);
            assert!(
                err <= sse(&start, &w) * (1.0 + 1e-12) + 1e-12,
                "case {case}"
            );
            // at most 2^bits distinct values: every one gets a level of its own
            sorted.dedup();
            if sorted.len() <= k {
                assert_eq!(err, 0.0, "case {case}: {w:?} -> {:?}", t.levels());
            }
        }
    }

    /// Table construction validates size and values.
    #[test]
    fn table_validation() {
        assert!(matches!(
            LevelTable::new(2, vec![0.0; 3]),
            Err(QuantError::ShapeMismatch {
                expected: 4,
                found: 3,
                ..
            })
        ));
        assert!(matches!(
            LevelTable::new(1, vec![0.0, f64::NAN]),
            Err(QuantError::NonFinite {
                what: "level",
                index: 1,
                ..
            })
        ));
        assert!(matches!(
            LevelTable::new(9, vec![0.0; 512]),
            Err(QuantError::BitsOutOfRange { .. })
        ));
        let t = LevelTable::new(1, vec![0.0, 1.0]).unwrap();
        assert_eq!(t.quantize(&[]), Err(QuantError::EmptyTensor));
        assert!(matches!(
            t.quantize(&[f32::NAN]),
            Err(QuantError::NonFinite { .. })
        ));
    }

    /// Per-channel alphas by max and by nearest-rank percentile, with the documented fallbacks.
    #[test]
    fn channel_alphas_by_hand() {
        let x = [
            0.0, 1.0, 2.0, 3.0, // channel 0
            -1.0, 5.0, 0.5, 4.0, // channel 1
            -1.0, -2.0, 0.0, 0.0, // channel 2: nothing positive
            0.0, 0.0, 0.0, 6.0, // channel 3: mostly zero
        ];
        assert_eq!(
            channel_alphas(&x, 4, AlphaRule::Max).unwrap(),
            vec![3.0, 5.0, 6.0, 6.0]
        );
        // Ranks ceil(0.5 * 4) = 2: channel 0 -> 1, channel 1 -> 0.5, channel 2 -> -1 (fallback:
        // own max 0 is not positive, borrow the largest other alpha 6), channel 3 -> 0
        // (fallback: own max 6).
        assert_eq!(
            channel_alphas(&x, 4, AlphaRule::Percentile(50.0)).unwrap(),
            vec![1.0, 0.5, 6.0, 6.0]
        );
        // Rank ceil(0.75 * 4) = 3.
        assert_eq!(
            channel_alphas(&x, 4, AlphaRule::Percentile(75.0)).unwrap(),
            vec![2.0, 4.0, 6.0, 6.0]
        );
        assert_eq!(
            channel_alphas(&x, 4, AlphaRule::Percentile(100.0)).unwrap(),
            channel_alphas(&x, 4, AlphaRule::Max).unwrap()
        );
        // 99.9% of 1000 values: rank 999.
        let ramp: Vec<f32> = (1..=1000).map(|i| i as f32).collect();
        assert_eq!(
            channel_alphas(&ramp, 1, AlphaRule::Percentile(99.9)).unwrap(),
            vec![999.0]
        );
        assert_eq!(
            channel_alphas(&[-1.0, 0.0], 2, AlphaRule::Max).unwrap(),
            vec![1.0, 1.0]
        );
        for p in [0.0, -5.0, 100.5, f64::NAN] {
            assert!(matches!(
                channel_alphas(&x, 4, AlphaRule::Percentile(p)),
                Err(QuantError::InvalidParameter {
                    what: "percentile",
                    ..
                })
            ));
        }
        assert!(matches!(
            channel_alphas(&x, 3, AlphaRule::Max),
            Err(QuantError::ChannelSplit {
                len: 16,
                axis0_len: 3
            })
        ));
    }

    proptest! {
        /// Invariant: the chosen code is a nearest level, and no lower index is equally near.
        #[test]
        fn nearest_is_nearest_lowest(
            bits in MIN_BITS..=4u32,
            seed in any::<u64>(),
            w in prop::collection::vec(-3f32..3.0, 1..30),
        ) {
            let mut rng = crate::quant::SplitMix64(seed);
            // Levels on a coarse grid so that duplicates and exact ties occur.
            let levels: Vec<f64> =
                (0..1u32 << bits).map(|_| (rng.below(13) as f64 - 6.0) * 0.5).collect();
            let t = LevelTable::new(bits, levels.clone()).unwrap();
            let q = t.quantize(&w).unwrap();
            for (&v, &c) in w.iter().zip(q.codes()) {
                let d = |i: usize| (f64::from(v) - levels[i]).abs();
                let c = c as usize;
                for j in 0..levels.len() {
                    prop_assert!(d(c) <= d(j));
                    if j < c {
                        prop_assert!(d(c) < d(j), "index {} ties with lower index {}", c, j);
                    }
                }
            }
        }

        /// Invariant: a fixed-point level that fits is within half an LSB (2^-(f+1)) of the float
        /// level, and fits total_bits.
        #[test]
        fn fixed_within_half_lsb(
            levels in prop::collection::vec(-4f64..4.0, 4),
            frac_bits in 0u32..20,
        ) {
            let t = LevelTable::new(2, levels.clone()).unwrap();
            let f = t.to_fixed(frac_bits, 32).unwrap();
            let lsb = 2f64.powi(-(frac_bits as i32));
            for (l, r) in levels.iter().zip(f.to_f64()) {
                prop_assert!((l - r).abs() <= 0.5 * lsb);
            }
        }

        /// Invariant: with per-channel max alphas, every nonnegative activation is reconstructed
        /// within half of its own channel's step max_c / (2^bits - 1), however different the
        /// channels' ranges are.
        #[test]
        fn channelwise_max_half_step_per_channel(
            rows in 1usize..5,
            cols in 1usize..10,
            seed in any::<u64>(),
            bits in 1u32..=8,
        ) {
            let mut rng = crate::quant::SplitMix64(seed);
            let ranges: Vec<f64> = (0..rows).map(|_| 10f64.powf(rng.uniform(-2.0, 2.0))).collect();
            let x: Vec<f32> = (0..rows * cols)
                .map(|i| rng.uniform(0.0, ranges[i / cols]) as f32)
                .collect();
            let q = channelwise_pact(&x, rows, AlphaRule::Max, bits, Rounding::HalfEven).unwrap();
            let d = q.dequantize_f64();
            for (r, row) in x.chunks(cols).enumerate() {
                let max = row.iter().fold(0.0f64, |m, &v| m.max(f64::from(v)));
                let step = if max > 0.0 { max / f64::from((1u32 << bits) - 1) } else { 0.0 };
                for (k, &v) in row.iter().enumerate() {
                    let err = (f64::from(v) - d[r * cols + k]).abs();
                    prop_assert!(err <= 0.5 * step * (1.0 + 1e-9), "row {} err {} step {}", r, err, step);
                }
            }
        }
    }
}
