//! Least-squares binary quantization (quantization.md § Least-squares binary quantization;
//! Pouransari, Tu, Tuzel, CVPR workshops 2020).
//!
//! A vector `x` is approximated by a sum of scaled binary bases `x^ = sum_i v_i * s_i` with
//! `s_i in {-1, +1}^N` and scalars `v_i >= 0`, per tensor or per channel (output channel for
//! weights). `sign(0) = +1` throughout.
//!
//! | scheme | bases | definition |
//! |---|---|---|
//! | ls-1 | 1 | `v1 = mean|x|`, `s1 = sign(x)` |
//! | ls-2 | 2 | `s1 = sign(x)`, `s2 = sign(x - v1 s1)`, `v2 = mean|x - v1 s1|`, `v1` optimal (below) |
//! | ls-T | 2 | ternary: as ls-2 but `v2 = v1`, so `x^ in {-2 v1, 0, +2 v1}`, `v1` optimal |
//! | gf-k | k | greedy: `r1 = x`, `v_i = mean|r_i|`, `s_i = sign(r_i)`, `r_(i+1) = r_i - v_i s_i` |
//!
//! # Exact v1 for ls-2 and ls-T
//!
//! With `a = |x|` the ls-2 reconstruction has magnitude `v1 - v2` where `a < v1` and `v1 + v2`
//! where `a >= v1`, so it is a two-level quantizer of `a`. The paper sorts `a` and considers the
//! thresholds `t` with `t = 0.5 * (mean of a <= t + mean of a > t)`, keeping the one with the
//! least squared error. We evaluate every split of the sorted `a` into a low prefix and a high
//! suffix, take the split with the least two-group squared error (equivalently the largest
//! `S_low^2 / n_low + S_high^2 / n_high` with `S` the group sums, which avoids cancellation), and
//! set `v1 = 0.5 * (mean_low + mean_high)`. The paper's candidates are a subset of these splits, and
//! the best split is one of them: in an optimal split every element is nearest its own group's
//! mean (else moving it would lower the error), so the threshold `v1` reproduces the split, which
//! is the paper's self-consistency condition. Searching all splits gives the same optimum without
//! testing that condition in floating point. Then `v2 = mean|a - v1| = 0.5 * (mean_high - mean_low)`.
//!
//! For ls-T the reconstruction magnitude is 0 where `a < v1` and `2 v1` where `a >= v1`; the
//! candidates are `t = 0.5 * mean of a > t`. We evaluate every split into the `m` largest
//! elements (`m >= 1`) and the rest, keep the largest `S_top^2 / m`, and set
//! `v1 = 0.5 * S_top / m`.
//!
//! Ties between equally good splits go to the first one found (smallest prefix for ls-2, fewest
//! top elements for ls-T); they have the same error.
//!
//! # Output for hardware
//!
//! Each basis is stored as sign bits (`1` means `+1`, `0` means `-1`) and one scale per channel,
//! so the hardware computes a dot product of two binary-basis vectors as
//! `sum_(i,j) v_i u_j (2 popcount(XNOR(s_i, t_j)) - N)` ([`basis_dot`], [`dot`]).

use super::{check_bits, check_count, check_input, sign_bit, ErrorReport, Granularity, QuantError};

/// Largest number of greedy (gf-k) bases.
pub const MAX_GREEDY_BASES: u32 = 8;

/// Which least-squares binary scheme to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BinaryScheme {
    /// ls-1: one basis, `v1 = mean|x|` (the least-squares optimum for `s1 = sign(x)`).
    Ls1,
    /// ls-2: two bases, optimal `v1` found exactly.
    Ls2,
    /// ls-T: ternary, two bases with `v2 = v1`, optimal `v1` found exactly.
    LsTernary,
    /// gf-k: `bases` greedy bases (`1..=`[`MAX_GREEDY_BASES`]); gf-1 is ls-1.
    Greedy {
        /// Number of bases k.
        bases: u32,
    },
}

impl BinaryScheme {
    /// Number of binary bases the scheme produces.
    pub fn bases(self) -> u32 {
        match self {
            BinaryScheme::Ls1 => 1,
            BinaryScheme::Ls2 | BinaryScheme::LsTernary => 2,
            BinaryScheme::Greedy { bases } => bases,
        }
    }
}

/// One binary basis: a sign bit per element and a scale per channel.
#[derive(Debug, Clone, PartialEq)]
pub struct BinaryBasis {
    signs: Vec<u8>,
    scales: Vec<f64>,
}

impl BinaryBasis {
    /// Sign bits in input order: 1 means +1, 0 means -1.
    pub fn signs(&self) -> &[u8] {
        &self.signs
    }

    /// The basis scale `v_i` of each channel (`>= 0`).
    pub fn scales(&self) -> &[f64] {
        &self.scales
    }
}

/// A tensor quantized to binary bases: `x^[e] = sum_i scales_i[ch(e)] * (2 * signs_i[e] - 1)`.
#[derive(Debug, Clone, PartialEq)]
pub struct BinaryQuantized {
    granularity: Granularity,
    row_len: usize,
    bases: Vec<BinaryBasis>,
}

impl BinaryQuantized {
    /// Granularity of the scales.
    pub fn granularity(&self) -> Granularity {
        self.granularity
    }

    /// Elements per channel row.
    pub fn row_len(&self) -> usize {
        self.row_len
    }

    /// The bases, in order (basis 0 is `s1`/`v1`).
    pub fn bases(&self) -> &[BinaryBasis] {
        &self.bases
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.bases.first().map_or(0, |b| b.signs.len())
    }

    /// True if there are no elements (never the case for a quantizer's output).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Reconstruction `sum_i v_i * s_i` in `f64`.
    pub fn dequantize_f64(&self) -> Vec<f64> {
        let mut out = vec![0.0; self.len()];
        for basis in &self.bases {
            for (e, (o, &s)) in out.iter_mut().zip(&basis.signs).enumerate() {
                let v = basis.scales[e / self.row_len];
                *o += if s == 1 { v } else { -v };
            }
        }
        out
    }

    /// Reconstruction rounded to `f32`.
    pub fn dequantize(&self) -> Vec<f32> {
        self.dequantize_f64()
            .into_iter()
            .map(|v| v as f32)
            .collect()
    }

    /// Quantization error against the original tensor, per tensor and per channel.
    pub fn error_report(&self, original: &[f32]) -> Result<ErrorReport, QuantError> {
        ErrorReport::new(original, &self.dequantize_f64(), self.granularity)
    }
}

/// Quantizes `x` to binary bases with `scheme`, per tensor or per channel.
pub fn quantize(
    x: &[f32],
    granularity: Granularity,
    scheme: BinaryScheme,
) -> Result<BinaryQuantized, QuantError> {
    if let BinaryScheme::Greedy { bases } = scheme {
        check_bits("gf-k basis count", bases, 1, MAX_GREEDY_BASES)?;
    }
    let layout = check_input(x, granularity)?;
    let k = scheme.bases() as usize;
    let mut bases: Vec<BinaryBasis> = (0..k)
        .map(|_| BinaryBasis {
            signs: Vec::with_capacity(x.len()),
            scales: Vec::with_capacity(layout.channels),
        })
        .collect();
    for row in x.chunks(layout.row_len) {
        let row: Vec<f64> = row.iter().map(|&v| f64::from(v)).collect();
        for (basis, (signs, scale)) in bases.iter_mut().zip(row_bases(&row, scheme)) {
            basis.signs.extend(signs);
            basis.scales.push(scale);
        }
    }
    Ok(BinaryQuantized {
        granularity,
        row_len: layout.row_len,
        bases,
    })
}

/// Binary bases of `x` (one tensor, one channel) with **fixed** basis scales `scales = [v1, v2, ...]`:
/// the residual signs `s_1 = sign(x)`, `s_(i+1) = sign(x - v_1 s_1 - ... - v_i s_i)` (`sign(0) = +1`),
/// the greedy step every scheme of this module shares once its scales are known.
///
/// This is how hardware with fixed (run-time loaded) basis scales encodes new data: with the scales
/// that [`quantize`] fitted on `x` itself (per tensor), the signs are exactly those of [`quantize`]
/// for every scheme (ls-1, ls-2, ls-T, gf-k), since its signs are this recursion with those scales.
/// `scales` must have `1..=`[`MAX_GREEDY_BASES`] entries, each finite and `>= 0`.
pub fn quantize_with_scales(x: &[f32], scales: &[f64]) -> Result<BinaryQuantized, QuantError> {
    check_bits(
        "basis count",
        scales.len().min(u32::MAX as usize) as u32,
        1,
        MAX_GREEDY_BASES,
    )?;
    if let Some((index, &value)) = scales
        .iter()
        .enumerate()
        .find(|(_, v)| !(v.is_finite() && **v >= 0.0))
    {
        return Err(QuantError::InvalidParameter {
            what: "basis scale",
            index,
            value,
            requirement: "finite and >= 0",
        });
    }
    let layout = check_input(x, Granularity::PerTensor)?;
    let mut r: Vec<f64> = x.iter().map(|&v| f64::from(v)).collect();
    let bases = scales
        .iter()
        .map(|&v| {
            let (signs, v) = peel(&mut r, v);
            BinaryBasis {
                signs,
                scales: vec![v],
            }
        })
        .collect();
    Ok(BinaryQuantized {
        granularity: Granularity::PerTensor,
        row_len: layout.row_len,
        bases,
    })
}

/// The optimal ls-2 `v1` of one vector (see the module docs).
pub fn ls2_v1(x: &[f32]) -> Result<f64, QuantError> {
    check_input(x, Granularity::PerTensor)?;
    Ok(ls2_v1_of(&abs_of(x)))
}

/// The optimal ls-T `v1` of one vector (reconstruction levels `{-2 v1, 0, 2 v1}`).
pub fn ternary_v1(x: &[f32]) -> Result<f64, QuantError> {
    check_input(x, Granularity::PerTensor)?;
    Ok(ternary_v1_of(&abs_of(x)))
}

/// `sum_e (2 a_e - 1)(2 b_e - 1) = 2 * popcount(XNOR(a, b)) - N` for sign-bit vectors of equal
/// length `N` (bits must be 0 or 1): the integer a hardware XNOR/popcount unit computes for one
/// basis pair.
pub fn basis_dot(a: &[u8], b: &[u8]) -> Result<i64, QuantError> {
    check_count("sign bits", a.len(), b.len())?;
    if let Some((index, &bit)) = a.iter().chain(b).enumerate().find(|(_, &bit)| bit > 1) {
        return Err(QuantError::InvalidParameter {
            what: "sign bit",
            index: index % a.len().max(1),
            value: f64::from(bit),
            requirement: "0 or 1",
        });
    }
    let matches = a.iter().zip(b).filter(|(x, y)| x == y).count() as i64;
    Ok(2 * matches - a.len() as i64)
}

/// Dot product of two per-tensor binary-quantized vectors of equal length the way hardware does
/// it: `sum_(i,j) v_i u_j * basis_dot(s_i, t_j)`, one popcount per basis pair.
pub fn dot(a: &BinaryQuantized, b: &BinaryQuantized) -> Result<f64, QuantError> {
    for q in [a, b] {
        if q.granularity != Granularity::PerTensor {
            return Err(QuantError::ShapeMismatch {
                what: "channels (dot needs per-tensor vectors)",
                expected: 1,
                found: q.granularity.channels(),
            });
        }
    }
    let mut sum = 0.0;
    for s in &a.bases {
        for t in &b.bases {
            sum += s.scales[0] * t.scales[0] * basis_dot(&s.signs, &t.signs)? as f64;
        }
    }
    Ok(sum)
}

fn abs_of(x: &[f32]) -> Vec<f64> {
    x.iter().map(|&v| f64::from(v).abs()).collect()
}

/// Bases of one row: (sign bits, scale) per basis.
fn row_bases(x: &[f64], scheme: BinaryScheme) -> Vec<(Vec<u8>, f64)> {
    let mut r = x.to_vec();
    match scheme {
        BinaryScheme::Ls1 => vec![peel(&mut r, mean_abs(x))],
        BinaryScheme::Greedy { bases } => (0..bases)
            .map(|_| {
                let v = mean_abs(&r);
                peel(&mut r, v)
            })
            .collect(),
        BinaryScheme::Ls2 => {
            let first = peel(&mut r, ls2_v1_of(&abs_vec(x)));
            let v2 = mean_abs(&r);
            vec![first, peel(&mut r, v2)]
        }
        BinaryScheme::LsTernary => {
            let v1 = ternary_v1_of(&abs_vec(x));
            let first = peel(&mut r, v1);
            vec![first, peel(&mut r, v1)]
        }
    }
}

/// One basis step: `s = sign(r)`, `r <- r - v * s`; returns `(s as bits, v)`.
fn peel(r: &mut [f64], v: f64) -> (Vec<u8>, f64) {
    let signs: Vec<u8> = r.iter().map(|&e| sign_bit(e)).collect();
    for (e, &s) in r.iter_mut().zip(&signs) {
        *e -= if s == 1 { v } else { -v };
    }
    (signs, v)
}

fn mean_abs(x: &[f64]) -> f64 {
    x.iter().map(|v| v.abs()).sum::<f64>() / x.len() as f64
}

fn abs_vec(x: &[f64]) -> Vec<f64> {
    x.iter().map(|v| v.abs()).collect()
}

/// Exact ls-2 `v1` for magnitudes `a` (nonempty): best split of sorted `a` into two groups.
fn ls2_v1_of(a: &[f64]) -> f64 {
    let mut a = a.to_vec();
    a.sort_by(f64::total_cmp);
    let n = a.len();
    // suffix[m] = sum of a[m..]
    let mut suffix = vec![0.0; n + 1];
    for m in (0..n).rev() {
        suffix[m] = suffix[m + 1] + a[m];
    }
    // One group (all magnitudes equal, or n = 1): v1 = mean, v2 = mean|a - v1|.
    let mut best_score = suffix[0] * suffix[0] / n as f64;
    let mut best_v1 = suffix[0] / n as f64;
    let mut low = 0.0;
    for m in 1..n {
        low += a[m - 1];
        let high = suffix[m];
        let (n_low, n_high) = (m as f64, (n - m) as f64);
        let score = low * low / n_low + high * high / n_high;
        if score > best_score {
            best_score = score;
            best_v1 = 0.5 * (low / n_low + high / n_high);
        }
    }
    best_v1
}

/// Exact ls-T `v1` for magnitudes `a` (nonempty): best set of the `m` largest as the nonzero group.
fn ternary_v1_of(a: &[f64]) -> f64 {
    let mut a = a.to_vec();
    a.sort_by(|p, q| q.total_cmp(p));
    let Some(&largest) = a.first() else {
        return 0.0;
    };
    let mut top = largest;
    let mut best_score = top * top;
    let mut best_v1 = 0.5 * top;
    for (i, &v) in a.iter().enumerate().skip(1) {
        top += v;
        let m = (i + 1) as f64;
        let score = top * top / m;
        if score > best_score {
            best_score = score;
            best_v1 = 0.5 * top / m;
        }
    }
    best_v1
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::SplitMix64;
    use proptest::prelude::*;

    fn sse(x: &[f32], q: &BinaryQuantized) -> f64 {
        x.iter()
            .zip(q.dequantize_f64())
            .map(|(&a, b)| (f64::from(a) - b).powi(2))
            .sum()
    }

    fn per_tensor(x: &[f32], scheme: BinaryScheme) -> BinaryQuantized {
        quantize(x, Granularity::PerTensor, scheme).unwrap()
    }

    /// Squared error of a group around its own mean (0 for an empty group).
    fn group_sse(g: &[f64]) -> f64 {
        if g.is_empty() {
            return 0.0;
        }
        let mean = g.iter().sum::<f64>() / g.len() as f64;
        g.iter().map(|v| (v - mean).powi(2)).sum()
    }

    /// Brute-force ls-2 reference: the least squared error over ALL 2^N assignments of the
    /// magnitudes |x| to two groups with free levels (each group at its mean). ls-2 keeps
    /// s1 = sign(x) and reconstructs the magnitude as one of two levels v1 -+ v2, so this is the
    /// best the ls-2 family can do. Exponential: small N only.
    fn ls2_brute_force(x: &[f32]) -> f64 {
        let a: Vec<f64> = x.iter().map(|&v| f64::from(v).abs()).collect();
        let n = a.len();
        assert!(n <= 16, "brute force is exponential");
        let mut best = f64::INFINITY;
        for mask in 0u32..(1 << n) {
            let group = |bit: u32| -> Vec<f64> {
                (0..n)
                    .filter(|i| mask >> i & 1 == bit)
                    .map(|i| a[i])
                    .collect()
            };
            let (hi, lo) = (group(1), group(0));
            best = best.min(group_sse(&hi) + group_sse(&lo));
        }
        best
    }

    /// Brute-force ls-T reference: least squared error over ALL subsets of elements reconstructed
    /// as +-level (level free, so the subset's mean magnitude), the rest as 0.
    fn ternary_brute_force(x: &[f32]) -> f64 {
        let a: Vec<f64> = x.iter().map(|&v| f64::from(v).abs()).collect();
        let n = a.len();
        assert!(n <= 16, "brute force is exponential");
        let mut best = f64::INFINITY;
        for mask in 0u32..(1 << n) {
            let hi: Vec<f64> = (0..n)
                .filter(|i| mask >> i & 1 == 1)
                .map(|i| a[i])
                .collect();
            let zeroed: f64 = (0..n)
                .filter(|i| mask >> i & 1 == 0)
                .map(|i| a[i] * a[i])
                .sum();
            best = best.min(group_sse(&hi) + zeroed);
        }
        best
    }

    /// The paper's ls-2 reconstruction error for a given v1, straight from the definition:
    /// s1 = sign(x), r = x - v1 s1, v2 = mean|r|, x^ = v1 s1 + v2 sign(r).
    fn ls2_error_at(x: &[f32], v1: f64) -> f64 {
        let sgn = |v: f64| if v >= 0.0 { 1.0 } else { -1.0 };
        let r: Vec<f64> = x
            .iter()
            .map(|&v| f64::from(v) - v1 * sgn(f64::from(v)))
            .collect();
        let v2 = r.iter().map(|v| v.abs()).sum::<f64>() / r.len() as f64;
        r.iter().map(|&e| (e - v2 * sgn(e)).powi(2)).sum()
    }

    /// Random small vector; with `grid` the values are multiples of 0.25 so that repeated
    /// magnitudes and exact ties occur.
    fn random_vector(rng: &mut SplitMix64, grid: bool) -> Vec<f32> {
        let n = 1 + rng.below(10) as usize;
        (0..n)
            .map(|_| {
                if grid {
                    (rng.below(17) as f32 - 8.0) * 0.25
                } else {
                    rng.uniform(-3.0, 3.0) as f32
                }
            })
            .collect()
    }

    fn close(a: f64, b: f64, scale: f64) -> bool {
        (a - b).abs() <= 1e-9 * (1.0 + scale)
    }

    /// ls-2's exact search reaches the brute-force optimum over all partitions on thousands of
    /// seeded random vectors (continuous values and values with many ties), and no v1 on a fine
    /// grid does better.
    #[test]
    fn ls2_matches_brute_force() {
        let mut rng = SplitMix64(0x1234_5678);
        for case in 0..3000 {
            let x = random_vector(&mut rng, case % 2 == 1);
            let energy: f64 = x.iter().map(|&v| f64::from(v).powi(2)).sum();
            let q = per_tensor(&x, BinaryScheme::Ls2);
            let err = sse(&x, &q);
            let brute = ls2_brute_force(&x);
            assert!(
                close(err, brute, energy),
                "x={x:?}: ls-2 {err} vs brute force {brute}"
            );
            if case % 10 == 0 {
                let max = x.iter().fold(0.0f64, |m, &v| m.max(f64::from(v).abs()));
                for i in 0..=400 {
                    let v1 = max * f64::from(i) / 400.0;
                    assert!(
                        err <= ls2_error_at(&x, v1) + 1e-9 * (1.0 + energy),
                        "x={x:?} v1={v1}"
                    );
                }
            }
        }
    }

    /// The optimal v1 satisfies the paper's self-consistency t = 0.5 (mean a<=t + mean a>t) when
    /// both groups are nonempty (continuous random data, so no magnitude sits exactly at t).
    #[test]
    fn ls2_v1_is_self_consistent() {
        let mut rng = SplitMix64(99);
        for _ in 0..1000 {
            let x = random_vector(&mut rng, false);
            let t = ls2_v1(&x).unwrap();
            let a: Vec<f64> = x.iter().map(|&v| f64::from(v).abs()).collect();
            let lo: Vec<f64> = a.iter().copied().filter(|&v| v <= t).collect();
            let hi: Vec<f64> = a.iter().copied().filter(|&v| v > t).collect();
            if !lo.is_empty() && !hi.is_empty() {
                let mean = |g: &[f64]| g.iter().sum::<f64>() / g.len() as f64;
                let rhs = 0.5 * (mean(&lo) + mean(&hi));
                assert!(
                    (t - rhs).abs() <= 1e-9 * (1.0 + t),
                    "x={x:?} t={t} rhs={rhs}"
                );
            }
        }
    }

    /// ls-T's exact search reaches the brute-force ternary optimum, and its values are in
    /// {-2 v1, 0, 2 v1}.
    #[test]
    fn ternary_matches_brute_force() {
        let mut rng = SplitMix64(0xfeed);
        for case in 0..3000 {
            let x = random_vector(&mut rng, case % 2 == 1);
            let energy: f64 = x.iter().map(|&v| f64::from(v).powi(2)).sum();
            let q = per_tensor(&x, BinaryScheme::LsTernary);
            let v1 = q.bases()[0].scales()[0];
            assert_eq!(q.bases()[1].scales()[0], v1);
            for d in q.dequantize_f64() {
                assert!(
                    d == 0.0 || d == 2.0 * v1 || d == -2.0 * v1,
                    "value {d} with v1 {v1}"
                );
            }
            let err = sse(&x, &q);
            let brute = ternary_brute_force(&x);
            assert!(
                close(err, brute, energy),
                "x={x:?}: ls-T {err} vs brute force {brute}"
            );
        }
    }

    /// Hand-computed examples of every scheme.
    #[test]
    fn hand_examples() {
        // ls-1: v1 = mean |x| = (1 + 3 + 0 + 2) / 4 = 1.5, sign(0) = +1.
        let x = [1.0f32, -3.0, 0.0, 2.0];
        let q = per_tensor(&x, BinaryScheme::Ls1);
        assert_eq!(q.bases().len(), 1);
        assert_eq!(q.bases()[0].signs(), &[1, 0, 1, 1]);
        assert_eq!(q.bases()[0].scales(), &[1.5]);
        assert_eq!(q.dequantize_f64(), vec![1.5, -1.5, 1.5, 1.5]);

        // gf-3 on [1, -3]: v1 = 2, r2 = [-1, -1], v2 = 1, r3 = [0, 0], v3 = 0.
        let q = per_tensor(&[1.0, -3.0], BinaryScheme::Greedy { bases: 3 });
        let scales: Vec<f64> = q.bases().iter().map(|b| b.scales()[0]).collect();
        assert_eq!(scales, vec![2.0, 1.0, 0.0]);
        assert_eq!(q.bases()[0].signs(), &[1, 0]);
        assert_eq!(q.bases()[1].signs(), &[0, 0]);
        assert_eq!(q.bases()[2].signs(), &[1, 1]);
        assert_eq!(q.dequantize_f64(), vec![1.0, -3.0]);

        // ls-2 on magnitudes {1, 1, 5, 5}: groups {1, 1} and {5, 5}, v1 = 3, v2 = 2, exact.
        let x = [1.0f32, -1.0, 5.0, -5.0];
        assert_eq!(ls2_v1(&x).unwrap(), 3.0);
        let q = per_tensor(&x, BinaryScheme::Ls2);
        assert_eq!(q.bases()[1].scales(), &[2.0]);
        assert_eq!(q.dequantize_f64(), vec![1.0, -1.0, 5.0, -5.0]);

        // ls-T on magnitudes {0, 0.5, 4, 4}: nonzero group {4, 4} (score 32) beats {4, 4, 0.5}
        // (score 8.5^2 / 3 = 24.08), so v1 = 2 and 0.5 is zeroed.
        let x = [0.0f32, 0.5, 4.0, -4.0];
        assert_eq!(ternary_v1(&x).unwrap(), 2.0);
        let q = per_tensor(&x, BinaryScheme::LsTernary);
        assert_eq!(q.dequantize_f64(), vec![0.0, 0.0, 4.0, -4.0]);

        // All-zero input: every scale is 0 and the reconstruction is exact.
        for scheme in [
            BinaryScheme::Ls1,
            BinaryScheme::Ls2,
            BinaryScheme::LsTernary,
        ] {
            let q = per_tensor(&[0.0; 5], scheme);
            assert!(q.dequantize_f64().iter().all(|&v| v == 0.0), "{scheme:?}");
        }
    }

    /// The XNOR/popcount identity on hand-made sign vectors.
    #[test]
    fn basis_dot_by_hand() {
        // (+1,+1,-1,-1) . (+1,-1,-1,+1) = 1 - 1 + 1 - 1 = 0; two matches: 2*2 - 4 = 0.
        assert_eq!(basis_dot(&[1, 1, 0, 0], &[1, 0, 0, 1]), Ok(0));
        assert_eq!(basis_dot(&[1, 0, 1], &[1, 0, 1]), Ok(3));
        assert_eq!(basis_dot(&[1, 0, 1], &[0, 1, 0]), Ok(-3));
        assert!(matches!(
            basis_dot(&[1, 0], &[1]),
            Err(QuantError::ShapeMismatch { .. })
        ));
        assert!(matches!(
            basis_dot(&[1, 2], &[1, 1]),
            Err(QuantError::InvalidParameter {
                what: "sign bit",
                index: 1,
                ..
            })
        ));
    }

    /// With the scales `quantize` fitted on the tensor itself, the fixed-scale encoding gives the
    /// same signs (and so the same reconstruction) for every scheme; other scales follow the residual
    /// recursion written out here.
    #[test]
    fn fixed_scales_reproduce_the_fitted_signs() {
        let mut rng = SplitMix64(0xabc);
        let schemes = [
            BinaryScheme::Ls1,
            BinaryScheme::Ls2,
            BinaryScheme::LsTernary,
            BinaryScheme::Greedy { bases: 3 },
            BinaryScheme::Greedy { bases: 4 },
        ];
        for case in 0..400 {
            let x = random_vector(&mut rng, case % 2 == 1);
            for scheme in schemes {
                let q = per_tensor(&x, scheme);
                let scales: Vec<f64> = q.bases().iter().map(|b| b.scales()[0]).collect();
                let fixed = quantize_with_scales(&x, &scales).unwrap();
                assert_eq!(fixed, q, "{scheme:?} x={x:?}");
            }
        }
        // by hand: scales [1, 0.5] on x = [0, 1.2, -0.3, -2]:
        // s1 = [+, +, -, -]; r = [-1, 0.2, 0.7, -1]; s2 = [-, +, +, -]
        let q = quantize_with_scales(&[0.0, 1.2, -0.3, -2.0], &[1.0, 0.5]).unwrap();
        assert_eq!(q.bases()[0].signs(), &[1, 1, 0, 0]);
        assert_eq!(q.bases()[1].signs(), &[0, 1, 1, 0]);
        assert_eq!(q.dequantize_f64(), vec![0.5, 1.5, -0.5, -1.5]);
        // a zero residual takes sign +1: x = 1 with v1 = 1 leaves r = 0
        let q = quantize_with_scales(&[1.0], &[1.0, 0.25]).unwrap();
        assert_eq!(q.bases()[1].signs(), &[1]);
        assert!(matches!(
            quantize_with_scales(&[1.0], &[]),
            Err(QuantError::BitsOutOfRange { .. })
        ));
        assert!(matches!(
            quantize_with_scales(&[1.0], &[1.0, -0.5]),
            Err(QuantError::InvalidParameter {
                what: "basis scale",
                index: 1,
                ..
            })
        ));
        assert_eq!(
            quantize_with_scales(&[], &[1.0]),
            Err(QuantError::EmptyTensor)
        );
    }

    /// Bad input is an error, not a panic.
    #[test]
    fn rejects_bad_input() {
        let g = Granularity::PerTensor;
        assert_eq!(
            quantize(&[], g, BinaryScheme::Ls2),
            Err(QuantError::EmptyTensor)
        );
        for bases in [0, MAX_GREEDY_BASES + 1] {
            assert!(matches!(
                quantize(&[1.0], g, BinaryScheme::Greedy { bases }),
                Err(QuantError::BitsOutOfRange {
                    min: 1,
                    max: MAX_GREEDY_BASES,
                    ..
                })
            ));
        }
        assert!(matches!(
            quantize(&[1.0, f32::NAN], g, BinaryScheme::Ls1),
            Err(QuantError::NonFinite { index: 1, .. })
        ));
        assert!(matches!(
            quantize(
                &[1.0; 6],
                Granularity::PerChannel { axis0_len: 4 },
                BinaryScheme::Ls1
            ),
            Err(QuantError::ChannelSplit { .. })
        ));
        assert_eq!(ls2_v1(&[]), Err(QuantError::EmptyTensor));
    }

    fn scheme() -> impl Strategy<Value = BinaryScheme> {
        prop_oneof![
            Just(BinaryScheme::Ls1),
            Just(BinaryScheme::Ls2),
            Just(BinaryScheme::LsTernary),
            (1..=MAX_GREEDY_BASES).prop_map(|bases| BinaryScheme::Greedy { bases }),
        ]
    }

    proptest! {
        /// Invariant: ls-2 is optimal over its family, so it is never worse than gf-2 (same
        /// family, v1 = mean|x|) nor ls-T (same family, v2 = v1); gf-1 equals ls-1.
        #[test]
        fn ls2_dominates_gf2_and_ternary(x in prop::collection::vec(-5f32..5.0, 1..40)) {
            let energy: f64 = x.iter().map(|&v| f64::from(v).powi(2)).sum();
            let tol = 1e-9 * (1.0 + energy);
            let ls2 = sse(&x, &per_tensor(&x, BinaryScheme::Ls2));
            let gf2 = sse(&x, &per_tensor(&x, BinaryScheme::Greedy { bases: 2 }));
            let ternary = sse(&x, &per_tensor(&x, BinaryScheme::LsTernary));
            prop_assert!(ls2 <= gf2 + tol, "ls-2 {} > gf-2 {}", ls2, gf2);
            prop_assert!(ls2 <= ternary + tol, "ls-2 {} > ls-T {}", ls2, ternary);
            prop_assert_eq!(
                per_tensor(&x, BinaryScheme::Greedy { bases: 1 }),
                per_tensor(&x, BinaryScheme::Ls1)
            );
        }

        /// Invariant: every greedy basis lowers (or keeps) the squared error, since
        /// v = mean|r| is the least-squares scale for sign(r).
        #[test]
        fn greedy_error_non_increasing(x in prop::collection::vec(-5f32..5.0, 1..40)) {
            let energy: f64 = x.iter().map(|&v| f64::from(v).powi(2)).sum();
            let mut prev = energy;
            for k in 1..=MAX_GREEDY_BASES {
                let e = sse(&x, &per_tensor(&x, BinaryScheme::Greedy { bases: k }));
                prop_assert!(e <= prev + 1e-9 * (1.0 + energy), "k={} {} > {}", k, e, prev);
                prev = e;
            }
        }

        /// Invariant: sign bits are 0/1, agree with the sign of x for the first basis
        /// (sign(0) = +1), scales are >= 0, and the dequantized value is sum v_i (2 s_i - 1).
        #[test]
        fn signs_and_scales_well_formed(
            x in prop::collection::vec(-5f32..5.0, 1..40),
            scheme in scheme(),
        ) {
            let q = per_tensor(&x, scheme);
            prop_assert_eq!(q.bases().len() as u32, scheme.bases());
            for b in q.bases() {
                prop_assert!(b.signs().iter().all(|&s| s <= 1));
                prop_assert!(b.scales()[0] >= 0.0);
            }
            for (e, &v) in x.iter().enumerate() {
                prop_assert_eq!(q.bases()[0].signs()[e], u8::from(v >= 0.0));
            }
            let manual: Vec<f64> = (0..x.len())
                .map(|e| q.bases().iter().map(|b| {
                    b.scales()[0] * (2.0 * f64::from(b.signs()[e]) - 1.0)
                }).sum())
                .collect();
            prop_assert_eq!(q.dequantize_f64(), manual);
        }

        /// Invariant: the popcount dot product of two binary-quantized vectors equals the float
        /// dot product of their reconstructions.
        #[test]
        fn popcount_dot_equals_float_dot(
            pairs in prop::collection::vec((-5f32..5.0, -5f32..5.0), 1..40),
            sa in scheme(),
            sb in scheme(),
        ) {
            let (a, b): (Vec<f32>, Vec<f32>) = pairs.into_iter().unzip();
            let (qa, qb) = (per_tensor(&a, sa), per_tensor(&b, sb));
            let float: f64 = qa.dequantize_f64().iter().zip(qb.dequantize_f64()).map(|(p, q)| p * q).sum();
            let hw = dot(&qa, &qb).unwrap();
            prop_assert!((hw - float).abs() <= 1e-9 * (1.0 + float.abs()), "{} vs {}", hw, float);
        }

        /// Invariant: per-channel quantization equals per-tensor quantization of each row
        /// (same signs, same scales).
        #[test]
        fn per_channel_is_per_tensor_per_row(
            rows in 1usize..5,
            cols in 1usize..10,
            seed in any::<u64>(),
            scheme in scheme(),
        ) {
            let mut rng = SplitMix64(seed);
            let x: Vec<f32> = (0..rows * cols).map(|_| rng.uniform(-2.0, 2.0) as f32).collect();
            let pc = quantize(&x, Granularity::PerChannel { axis0_len: rows }, scheme).unwrap();
            for (r, row) in x.chunks(cols).enumerate() {
                let pt = per_tensor(row, scheme);
                for (bc, bt) in pc.bases().iter().zip(pt.bases()) {
                    prop_assert_eq!(&bc.signs()[r * cols..(r + 1) * cols], bt.signs());
                    prop_assert_eq!(bc.scales()[r], bt.scales()[0]);
                }
                prop_assert_eq!(&pc.dequantize_f64()[r * cols..(r + 1) * cols], &pt.dequantize_f64()[..]);
            }
        }
    }
}
