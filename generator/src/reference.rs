//! The bit-exact software model of the generated array: the single source of truth for its outputs.
//!
//! A tile is a sequence of steps; step `s` carries `lanes` activation codes per row and `lanes`
//! weight codes per column. For row `r` and column `c`:
//!
//! ```text
//! dot_s[r][c] = sum_l value_w(w_s[c][l]) * value_a(a_s[r][l])          exact
//! acc[r][c]   = accumulate(... accumulate(dot_0) ..., dot_last)          per step, acc_bits wide
//! out[r][c]   = output_code(acc[r][c], params[c])                        bias, PACT clip, requantize
//! ```
//!
//! `accumulate` is exact unless the accumulator was configured narrower than the no-overflow width,
//! in which case it saturates after every step, as the hardware does. The functions of
//! [`qmac_arith`] define each operation; this module only applies them to a tile.

use crate::config::{Config, OutModeName};
use qmac_arith::pipeline::{accumulate, bases_code, biased, output_code_frac, ChannelParams};

/// One reduction step of a tile: codes as unsigned bit patterns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    /// Activation codes, row r lane l at `r * lanes + l`.
    pub a: Vec<u64>,
    /// Weight codes, column c lane l at `c * lanes + l`.
    pub w: Vec<u64>,
}

/// Per-channel parameters that do not fit the configured hardware.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParamError {
    /// The number of channels differs from `cols`.
    #[error("{got} per-channel parameter sets given, but the array has cols = {cols} output channels")]
    Count {
        /// Sets given.
        got: usize,
        /// Channels of the array.
        cols: u32,
    },
    /// A parameter is out of its field's range.
    #[error("channel {channel}: `{field}` = {value} is out of range: allowed {allowed}")]
    Range {
        /// Channel index.
        channel: usize,
        /// Field name.
        field: &'static str,
        /// Value given.
        value: String,
        /// Allowed range.
        allowed: String,
    },
}

/// Check per-channel parameters against the configured field widths.
pub fn check_params(cfg: &Config, params: &[ChannelParams]) -> Result<(), ParamError> {
    if params.len() != cfg.cols as usize {
        return Err(ParamError::Count { got: params.len(), cols: cfg.cols });
    }
    // bias and alpha are in units of 2^-bias_frac_bits accumulator units
    let aw = cfg.biased_bits();
    let (blo, bhi) = (-(1i128 << (aw - 1)), (1i128 << (aw - 1)) - 1);
    let width = if cfg.bias_frac_bits > 0 { format!("acc_bits + bias_frac_bits = {aw}") } else { format!("acc_bits = {aw}") };
    for (channel, p) in params.iter().enumerate() {
        let range = |field, value: String, allowed: String| ParamError::Range { channel, field, value, allowed };
        if !(blo..=bhi).contains(&i128::from(p.bias)) {
            return Err(range("bias", p.bias.to_string(), format!("{blo}..={bhi} ({width})")));
        }
        // logits use the bias only; basis codes the bias, mult and shift
        if cfg.out_mode == OutModeName::Logits {
            continue;
        }
        if cfg.out_mode == OutModeName::Pact && u128::from(p.alpha) >= 1u128 << aw {
            return Err(range("alpha", p.alpha.to_string(), format!("0..={}", (1u128 << aw) - 1)));
        }
        if u128::from(p.mult) >= 1u128 << cfg.mult_bits {
            return Err(range("mult", p.mult.to_string(), format!("0..={} (mult_bits = {})", (1u128 << cfg.mult_bits) - 1, cfg.mult_bits)));
        }
        if p.shift > cfg.max_shift() {
            return Err(range("shift", p.shift.to_string(), format!("0..={}", cfg.max_shift())));
        }
    }
    Ok(())
}

/// The value one column of `y_data` carries for accumulator value `acc`, in the low
/// [`Config::out_bits`] bits: the PACT code ([`output_code_frac`]), the basis code ([`bases_code`]), or
/// the logit ([`logit`]) in two's complement.
pub fn output_value(cfg: &Config, acc: i64, p: &ChannelParams) -> u64 {
    match cfg.out_mode {
        OutModeName::Pact => output_code_frac(acc, p, cfg.rounding_rule(), cfg.out_bits(), cfg.bias_frac_bits),
        OutModeName::Bases => bases_code(acc, p, cfg.bias_frac_bits, cfg.out_bits()),
        OutModeName::Logits => (logit(cfg, acc, p) as u64) & (u64::MAX >> (64 - cfg.out_bits())),
    }
}

/// The logit of accumulator value `acc` (`out_mode = "logits"`): `acc * 2^bias_frac_bits + bias`,
/// exact and unclipped; it fits [`Config::logit_bits`] signed bits.
pub fn logit(cfg: &Config, acc: i64, p: &ChannelParams) -> i64 {
    biased(acc, p.bias, cfg.bias_frac_bits) as i64
}

/// A logit as read from `y_data` (the low [`Config::logit_bits`] bits of one column): sign-extended.
pub fn logit_of_bits(cfg: &Config, bits: u64) -> i64 {
    let sh = 64 - cfg.logit_bits();
    ((bits << sh) as i64) >> sh
}

/// The smallest accumulator value for which `holds` is true, for a predicate that is monotone
/// (false, then true) over the accumulator range; one more than the largest value if it never holds.
fn first_acc(cfg: &Config, holds: impl Fn(i64) -> bool) -> i64 {
    let aw = cfg.acc_bits();
    let (lo, hi) = (-(1i64 << (aw - 1)), (1i64 << (aw - 1)) - 1);
    if !holds(hi) {
        return hi + 1;
    }
    let (mut a, mut b) = (lo, hi);
    while a < b {
        let mid = a + (b - a) / 2;
        if holds(mid) {
            b = mid;
        } else {
            a = mid + 1;
        }
    }
    a
}

/// The thresholds of a channel (`2^out_bits - 1` of them), each the smallest accumulator value at
/// which a monotone test becomes true (or one more than the largest accumulator value):
///
/// - PACT codes: `T_k` is where the output code reaches `k` (`k = 1..=2^out_bits - 1`). Because
///   [`output_code_frac`] is monotone in the accumulator, `#{k : acc >= T_k}` equals the code for
///   every accumulator value: the threshold output stage is exact.
/// - Basis codes ([`bases_code`], `z = (acc * 2^F + bias) * mult / 2^shift`): one threshold per node
///   of the sign decision tree, in heap order: `T_1` where `z >= 0` (basis 1), then with 2 bases `T_2`
///   where `z >= -1` (basis 2 after `s_1 = -1`) and `T_3` where `z >= +1` (after `s_1 = +1`). The
///   hardware takes bit 0 = `acc >= T_1` and bit 1 = `acc >= (bit 0 ? T_3 : T_2)`; each test is monotone
///   in `acc` because `mult >= 0`.
pub fn thresholds(cfg: &Config, p: &ChannelParams) -> Vec<i64> {
    if cfg.out_mode == OutModeName::Bases {
        let unit = 1i128 << p.shift;
        let tm = |acc: i64| biased(acc, p.bias, cfg.bias_frac_bits) * i128::from(p.mult);
        let nodes: &[i128] = if cfg.out_bits() == 1 { &[0] } else { &[0, -unit, unit] };
        return nodes.iter().map(|&c| first_acc(cfg, |acc| tm(acc) >= c)).collect();
    }
    let code = |acc: i64| output_value(cfg, acc, p);
    (1..(1u64 << cfg.out_bits())).map(|k| first_acc(cfg, |acc| code(acc) >= k)).collect()
}

/// The output of a threshold stage for accumulator value `acc`, from the comparisons with `t` (as
/// the hardware computes it): the count of reached thresholds (PACT codes), or the walk down the sign
/// decision tree (basis codes, see [`thresholds`]).
pub fn threshold_output(cfg: &Config, t: &[i64], acc: i64) -> u64 {
    if cfg.out_mode == OutModeName::Bases {
        let b0 = acc >= t[0];
        if t.len() == 1 {
            return u64::from(b0);
        }
        let b1 = acc >= if b0 { t[2] } else { t[1] };
        return u64::from(b0) | u64::from(b1) << 1;
    }
    t.iter().filter(|&&tk| acc >= tk).count() as u64
}

/// The parameter-interface writes that load `params`: `(address, data)` pairs, data in the low bits.
/// With the threshold output stage the fields are the thresholds ([`thresholds`]).
pub fn param_writes(cfg: &Config, params: &[ChannelParams]) -> Vec<(u64, u128)> {
    let aw = cfg.acc_bits();
    let mask = (1u128 << cfg.biased_bits()) - 1;
    let mut out = Vec::new();
    if cfg.out_mode == OutModeName::Logits {
        return params.iter().enumerate().map(|(c, p)| (4 * c as u64, (p.bias as i128 as u128) & mask)).collect();
    }
    if cfg.uses_thresholds() {
        let tmask = (1u128 << (aw + 1)) - 1;
        for (c, p) in params.iter().enumerate() {
            for (k, t) in thresholds(cfg, p).into_iter().enumerate() {
                out.push((4 * c as u64 + k as u64, (t as i128 as u128) & tmask));
            }
        }
        return out;
    }
    for (c, p) in params.iter().enumerate() {
        let base = 4 * c as u64;
        out.push((base, (p.bias as i128 as u128) & mask));
        out.push((base + 1, u128::from(p.alpha)));
        out.push((base + 2, u128::from(p.mult)));
        out.push((base + 3, u128::from(p.shift)));
    }
    out
}

/// The parameter-interface writes that load the run-time table (a codebook's levels, or the basis-pair
/// scales): `(address, data)` with the table region's address bit set, entries in `level_bits`-bit two's
/// complement.
pub fn table_writes(cfg: &Config, table: &[i64]) -> Vec<(u64, u128)> {
    if cfg.table_entries() == 0 {
        return Vec::new();
    }
    let region = 1u64 << (cfg.prm_addr_bits() - 1);
    let mask = (1u128 << cfg.level_bits) - 1;
    table.iter().enumerate().map(|(i, &v)| (region + i as u64, (v as i128 as u128) & mask)).collect()
}

/// Check the run-time table: a codebook's `2^weight_bits` levels, or with bases `cols * basis_pairs`
/// pair scales (channel `c`, pair `p = i * act_bases + j` at `c * basis_pairs + p`), each within
/// `level_bits` signed bits; empty for other encodings.
pub fn check_table(cfg: &Config, table: &[i64]) -> Result<(), ParamError> {
    let n = cfg.table_entries() as usize;
    // (one entry's field name, the table's name, its size, entries per channel)
    let (field, plural, what, per_channel) = if cfg.bases().is_some() {
        ("scale", "scales", format!("cols * basis pairs = {} * {}", cfg.cols, cfg.basis_pairs()), cfg.basis_pairs() as usize)
    } else {
        ("level", "levels", "2^weight_bits".to_string(), 1)
    };
    if table.len() != n {
        return Err(ParamError::Range { channel: 0, field: plural, value: format!("{} {plural}", table.len()), allowed: format!("exactly {n} ({what})") });
    }
    let (lo, hi) = (-(1i64 << (cfg.level_bits - 1)), (1i64 << (cfg.level_bits - 1)) - 1);
    if let Some((i, v)) = table.iter().enumerate().find(|(_, v)| !(lo..=hi).contains(*v)) {
        let channel = i / per_channel;
        return Err(ParamError::Range { channel, field, value: v.to_string(), allowed: format!("{lo}..={hi} (level_bits = {})", cfg.level_bits) });
    }
    Ok(())
}

/// The accumulators of a tile, row r column c at `r * cols + c` (not for encodings with a run-time
/// table: see [`tile_acc_table`]).
pub fn tile_acc(cfg: &Config, steps: &[Step]) -> Vec<i64> {
    tile_acc_table(cfg, steps, &[])
}

/// The sign (+1 or -1) of basis `i` of a bases code: bit `i`, 1 meaning +1.
pub fn basis_sign(code: u64, i: u32) -> i64 {
    if (code >> i) & 1 == 1 {
        1
    } else {
        -1
    }
}

/// The accumulators of a tile; `table` is the codebook's levels or the basis-pair scales (empty for
/// other encodings). With bases the accumulator of row r, column c is
/// `sum_p m[c][p] * D_p`, `D_p = sum over the tile's elements of sign_i(w) * sign_j(a)` for
/// `p = i * act_bases + j`: exact, as the hardware's per-pair counts and combination are.
pub fn tile_acc_table(cfg: &Config, steps: &[Step], table: &[i64]) -> Vec<i64> {
    let (rows, cols, lanes) = (cfg.rows as usize, cfg.cols as usize, cfg.lanes as usize);
    let ae = cfg.act_enc();
    let aw = cfg.acc_bits();
    let sat = cfg.acc_saturates();
    let mut acc = vec![0i64; rows * cols];
    if let Some((kw, ka)) = cfg.bases() {
        let np = (kw * ka) as usize;
        let mut d = vec![0i64; rows * cols * np];
        for s in steps {
            for r in 0..rows {
                for c in 0..cols {
                    for l in 0..lanes {
                        let (w, a) = (s.w[c * lanes + l], s.a[r * lanes + l]);
                        for i in 0..kw {
                            for j in 0..ka {
                                d[(r * cols + c) * np + (i * ka + j) as usize] += basis_sign(w, i) * basis_sign(a, j);
                            }
                        }
                    }
                }
            }
        }
        for (k, a) in acc.iter_mut().enumerate() {
            let c = k % cols;
            *a = (0..np).map(|p| table[c * np + p] * d[k * np + p]).sum();
        }
        return acc;
    }
    for s in steps {
        assert_eq!(s.a.len(), rows * lanes);
        assert_eq!(s.w.len(), cols * lanes);
        for r in 0..rows {
            for c in 0..cols {
                let dot: i64 = (0..lanes).map(|l| cfg.weight_value(s.w[c * lanes + l], table) * ae.value(cfg.act_bits, s.a[r * lanes + l])).sum();
                acc[r * cols + c] = accumulate(acc[r * cols + c], dot, aw, sat);
            }
        }
    }
    acc
}

/// The outputs of a tile, row r column c at `r * cols + c` ([`output_value`]: PACT codes, basis codes
/// or logits in two's complement).
pub fn tile_outputs(cfg: &Config, steps: &[Step], params: &[ChannelParams]) -> Vec<u64> {
    tile_outputs_table(cfg, steps, params, &[])
}

/// The output codes of a tile with the run-time table (codebook levels or basis-pair scales; empty
/// for other encodings).
pub fn tile_outputs_table(cfg: &Config, steps: &[Step], params: &[ChannelParams], table: &[i64]) -> Vec<u64> {
    let cols = cfg.cols as usize;
    tile_acc_table(cfg, steps, table).iter().enumerate().map(|(i, &a)| output_value(cfg, a, &params[i % cols])).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{EncodingName, RawConfig};
    use qmac_arith::pipeline::output_code;

    fn cfg(f: impl FnOnce(&mut RawConfig)) -> Config {
        let mut raw = RawConfig { rows: 1, cols: 1, lanes: 2, max_depth: 8, ..RawConfig::default() };
        f(&mut raw);
        Config::new(raw).unwrap()
    }

    #[test]
    fn binary_dot_is_xnor_popcount() {
        let c = cfg(|r| {
            r.weight_bits = 1;
            r.act_bits = 1;
            r.weight_encoding = EncodingName::Odd;
            r.act_encoding = EncodingName::Odd;
        });
        // w = (+1, -1), a = (+1, +1): dot = 0; w = (+1,+1), a = (+1,+1): 2
        let acc = tile_acc(&c, &[Step { a: vec![1, 1], w: vec![1, 0] }, Step { a: vec![1, 1], w: vec![1, 1] }]);
        assert_eq!(acc, vec![2]);
    }

    /// Independent decoding of a code, written from the definitions (not through `Encoding::value`).
    fn decode(enc: EncodingName, bits: u32, code: u64) -> i64 {
        match enc {
            EncodingName::Unsigned => code as i64,
            EncodingName::Int => ((code << (64 - bits)) as i64) >> (64 - bits),
            EncodingName::Odd => 2 * code as i64 - ((1i64 << bits) - 1),
            EncodingName::Codebook | EncodingName::Bases => unreachable!("values come from a table"),
        }
    }

    /// Invariant: for operands of 4 bits or fewer, every encoding pair and every pair of codes, the
    /// reference accumulator of a one-lane tile equals the product of the independently decoded values,
    /// and a two-step tile equals the sum of two products.
    #[test]
    fn products_exhaustive_up_to_4_bits() {
        for we in [EncodingName::Int, EncodingName::Odd] {
            for ae in [EncodingName::Unsigned, EncodingName::Int, EncodingName::Odd] {
                for wb in 1..=4u32 {
                    for ab in 1..=4u32 {
                        let c = Config::new(RawConfig {
                            rows: 1, cols: 1, lanes: 1, max_depth: 2,
                            weight_bits: wb, weight_encoding: we, act_bits: ab, act_encoding: ae,
                            ..RawConfig::default()
                        }).unwrap();
                        for w in 0..(1u64 << wb) {
                            for a in 0..(1u64 << ab) {
                                let want = decode(we, wb, w) * decode(ae, ab, a);
                                assert_eq!(tile_acc(&c, &[Step { a: vec![a], w: vec![w] }]), vec![want]);
                                let a2 = (a + 1) % (1 << ab);
                                let want2 = want + decode(we, wb, w) * decode(ae, ab, a2);
                                assert_eq!(tile_acc(&c, &[Step { a: vec![a], w: vec![w] }, Step { a: vec![a2], w: vec![w] }]), vec![want2]);
                            }
                        }
                    }
                }
            }
        }
    }

    /// Invariant: the derived accumulator width holds the most extreme tile (every product at its
    /// minimum, or every product at its maximum, for max_depth elements) and one bit less does not.
    #[test]
    fn exact_acc_bits_is_tight() {
        for (wb, ab, depth) in [(1, 1, 64), (2, 4, 100), (4, 4, 512), (8, 8, 4096), (3, 7, 9)] {
            let c = Config::new(RawConfig { rows: 1, cols: 1, lanes: 1, max_depth: depth, weight_bits: wb, act_bits: ab, ..RawConfig::default() }).unwrap();
            // int weights x unsigned acts: extremes are -2^(wb-1) * (2^ab - 1) and (2^(wb-1) - 1) * (2^ab - 1)
            let amax = (1i128 << ab) - 1;
            let lo = -(1i128 << (wb - 1)) * amax * i128::from(depth);
            let hi = ((1i128 << (wb - 1)) - 1) * amax * i128::from(depth);
            let bits = c.exact_acc_bits();
            let fits = |b: u32| lo >= -(1i128 << (b - 1)) && hi < (1i128 << (b - 1));
            assert!(fits(bits), "{wb}x{ab}x{depth}: {bits} bits");
            assert!(bits == 2 || !fits(bits - 1), "{wb}x{ab}x{depth}: {bits} bits is not minimal");
        }
    }

    /// Invariant: counting reached thresholds reproduces the output code for every accumulator value of a
    /// small accumulator, for random parameters and both output widths the threshold stage supports.
    #[test]
    fn thresholds_reproduce_output_codes() {
        let mut rng = crate::rng::Rng::new(11);
        for out_bits in 1..=2 {
            let c = cfg(|r| {
                r.weight_bits = 2;
                r.act_bits = 2;
                r.out_bits = Some(out_bits);
            });
            assert!(c.uses_thresholds());
            for _ in 0..200 {
                let p = crate::vectors::random_params(&c, &mut rng, 4)[0];
                let t = thresholds(&c, &p);
                assert_eq!(t.len(), (1 << out_bits) - 1);
                let aw = c.acc_bits();
                for acc in -(1i64 << (aw - 1))..(1i64 << (aw - 1)) {
                    let count = t.iter().filter(|&&tk| acc >= tk).count() as u64;
                    assert_eq!(count, output_code(acc, &p, c.rounding_rule(), out_bits), "acc {acc} params {p:?}");
                    assert_eq!(threshold_output(&c, &t, acc), count);
                }
            }
        }
    }

    /// Invariant: with basis-coded outputs, the threshold stage's walk down the sign decision tree
    /// ([`threshold_output`] on [`thresholds`]) equals the reference encoding [`bases_code`] (itself
    /// the float greedy residual encoder's signs, `qmac_arith::pipeline` tests) for every accumulator
    /// value of a small accumulator, random parameters, 1 and 2 bases and a finer bias.
    #[test]
    fn basis_thresholds_reproduce_the_basis_code() {
        let mut rng = crate::rng::Rng::new(13);
        for (bases, frac) in [(1, 0), (2, 0), (2, 3), (1, 2)] {
            let c = cfg(|r| {
                r.weight_bits = 2;
                r.act_bits = 2;
                r.out_mode = OutModeName::Bases;
                r.out_bits = Some(bases);
                r.bias_frac_bits = frac;
            });
            assert!(c.uses_thresholds());
            let aw = c.acc_bits();
            let mut seen = [false; 4];
            for _ in 0..200 {
                let p = crate::vectors::random_params(&c, &mut rng, 4)[0];
                let t = thresholds(&c, &p);
                assert_eq!(t.len(), (1 << bases) - 1);
                for acc in -(1i64 << (aw - 1))..(1i64 << (aw - 1)) {
                    let want = bases_code(acc, &p, frac, bases);
                    seen[want as usize] = true;
                    assert_eq!(threshold_output(&c, &t, acc), want, "acc {acc} params {p:?}");
                    assert_eq!(output_value(&c, acc, &p), want);
                }
            }
            assert!(seen.iter().take(1 << bases).all(|&s| s), "every code reached: {seen:?}");
        }
    }

    /// Invariant: with a finer bias the PACT thresholds still reproduce the codes of
    /// `output_code_frac` for every accumulator value.
    #[test]
    fn finer_bias_thresholds_reproduce_output_codes() {
        let mut rng = crate::rng::Rng::new(17);
        let c = cfg(|r| {
            r.weight_bits = 2;
            r.act_bits = 2;
            r.bias_frac_bits = 4;
        });
        assert!(c.uses_thresholds());
        for _ in 0..200 {
            let p = crate::vectors::random_params(&c, &mut rng, 4)[0];
            check_params(&c, std::slice::from_ref(&p)).unwrap();
            let t = thresholds(&c, &p);
            let aw = c.acc_bits();
            for acc in -(1i64 << (aw - 1))..(1i64 << (aw - 1)) {
                assert_eq!(threshold_output(&c, &t, acc), output_code_frac(acc, &p, c.rounding_rule(), 2, 4), "acc {acc} params {p:?}");
            }
        }
    }

    /// Logits are the exact biased accumulator: two's complement in `logit_bits` on the bus, read back
    /// by `logit_of_bits`; only the bias is loaded.
    #[test]
    fn logits_are_the_biased_accumulator() {
        let c = cfg(|r| {
            r.out_mode = OutModeName::Logits;
            r.bias_frac_bits = 2;
        });
        assert_eq!(c.out_bits(), c.acc_bits() + 3);
        assert!(!c.uses_thresholds());
        let p = ChannelParams { bias: -7, alpha: 0, mult: 0, shift: 0 };
        let aw = c.acc_bits();
        for acc in [-(1i64 << (aw - 1)), -3, 0, 1, (1i64 << (aw - 1)) - 1] {
            let want = acc * 4 - 7;
            assert_eq!(logit(&c, acc, &p), want);
            let bits = output_value(&c, acc, &p);
            assert!(bits < 1 << c.out_bits());
            assert_eq!(logit_of_bits(&c, bits), want);
        }
        assert_eq!(param_writes(&c, &[p]), vec![(0, ((1u128 << (aw + 2)) - 7))]);
        // the bias range is acc_bits + bias_frac_bits signed
        let big = ChannelParams { bias: 1 << (aw + 1), ..p };
        let e = check_params(&c, &[big]).unwrap_err().to_string();
        assert!(e.contains("`bias`") && e.contains("acc_bits + bias_frac_bits"), "{e}");
    }

    /// One array for several layers (docs/interface.md): a W4A4 layer with 4-bit outputs gives the
    /// same codes on a W8A8 array with 8-bit outputs and a deeper `max_depth` when its weight codes are
    /// sign-extended, its activation codes zero-extended and its parameters keep the clipped top
    /// below 16 (the only change a loader makes: a smaller multiplier where it rounds the top up).
    #[test]
    fn narrower_layers_run_on_a_wider_array() {
        let narrow = cfg(|r| {
            r.weight_bits = 4;
            r.act_bits = 4;
            r.cols = 3;
            r.max_depth = 16;
        });
        let wide = cfg(|r| {
            r.weight_bits = 8;
            r.act_bits = 8;
            r.cols = 3;
            r.max_depth = 64;
        });
        let mut rng = crate::rng::Rng::new(23);
        let top = |p: &ChannelParams| qmac_arith::pipeline::requantize(p.alpha, p.mult, p.shift, narrow.rounding_rule(), 8);
        for _ in 0..50 {
            let mut params = crate::vectors::random_params(&narrow, &mut rng, 8);
            for p in &mut params {
                while top(p) > 15 {
                    p.mult -= 1;
                }
            }
            let steps: Vec<Step> = (0..1 + rng.below(8)).map(|_| Step { a: (0..2).map(|_| rng.below(16)).collect(), w: (0..6).map(|_| rng.below(16)).collect() }).collect();
            let widened: Vec<Step> = steps
                .iter()
                .map(|s| Step { a: s.a.clone(), w: s.w.iter().map(|&c| if c >= 8 { c | 0xf0 } else { c }).collect() })
                .collect();
            let want = tile_outputs(&narrow, &steps, &params);
            assert_eq!(tile_outputs(&wide, &widened, &params), want, "params {params:?}");
            assert!(want.iter().all(|&c| c <= 15));
        }
    }

    #[test]
    fn codebook_values_come_from_the_table() {
        let c = cfg(|r| {
            r.weight_bits = 2;
            r.weight_encoding = EncodingName::Codebook;
            r.level_bits = 6;
        });
        let levels = [-32, -3, 5, 31];
        // w codes (3, 1), a = (2, 7): 31*2 + (-3)*7 = 41
        assert_eq!(tile_acc_table(&c, &[Step { a: vec![2, 7], w: vec![3, 1] }], &levels), vec![41]);
        check_table(&c, &levels).unwrap();
        let e = check_table(&c, &[0, 1, 2]).unwrap_err().to_string();
        assert!(e.contains("3 levels") && e.contains("exactly 4"), "{e}");
        let e = check_table(&c, &[0, 1, 2, 32]).unwrap_err().to_string();
        assert!(e.contains("`level` = 32") && e.contains("-32..=31"), "{e}");
        // table writes go to the region above the channel parameters, two's complement in level_bits
        let w = table_writes(&c, &levels);
        let region = 1u64 << (c.prm_addr_bits() - 1);
        assert_eq!(w[0], (region, 0b100000));
        assert_eq!(w[3], (region + 3, 31));
        assert!(param_writes(&c, &[ChannelParams { bias: 0, alpha: 1, mult: 1, shift: 0 }]).iter().all(|(a, _)| *a < region));
    }

    /// Invariant: with pair scales that factor as `m[i][j] = u_i * v_j` (what a weight basis scale
    /// times an activation basis scale gives), the bases accumulator equals the plain dot product of the
    /// independently decoded values `w = sum_i u_i * s_i`, `a = sum_j v_j * t_j`, for every pair of
    /// 2-basis x 3-basis codes, several scale sets (negative ones included) and a 3-lane, 2-step tile.
    #[test]
    fn bases_accumulator_is_the_dot_product_of_decoded_values() {
        let c = cfg(|r| {
            r.weight_bits = 2;
            r.weight_encoding = EncodingName::Bases;
            r.act_bits = 3;
            r.act_encoding = EncodingName::Bases;
            r.lanes = 3;
            r.level_bits = 10;
        });
        let decode = |code: u64, scales: &[i64]| -> i64 { scales.iter().enumerate().map(|(i, u)| if code >> i & 1 == 1 { *u } else { -*u }).sum() };
        let mut rng = crate::rng::Rng::new(5);
        for (u, v) in [(vec![3, 1], vec![4, 2, 1]), (vec![1, 1], vec![1, 1, 1]), (vec![-5, 2], vec![7, -3, 1])] {
            let table: Vec<i64> = (0..2).flat_map(|i| (0..3).map(move |j| (i, j))).map(|(i, j)| u[i] * v[j]).collect();
            check_table(&c, &table).unwrap();
            for _ in 0..300 {
                let steps: Vec<Step> = (0..2).map(|_| Step { a: (0..3).map(|_| rng.below(8)).collect(), w: (0..3).map(|_| rng.below(4)).collect() }).collect();
                let want: i64 = steps.iter().flat_map(|s| (0..3).map(move |l| (s.w[l], s.a[l]))).map(|(w, a)| decode(w, &u) * decode(a, &v)).sum();
                assert_eq!(tile_acc_table(&c, &steps, &table), vec![want]);
            }
        }
        let e = check_table(&c, &[1; 5]).unwrap_err().to_string();
        assert!(e.contains("5 scales") && e.contains("exactly 6"), "{e}");
        let e = check_table(&c, &[0, 0, 0, 0, 0, 512]).unwrap_err().to_string();
        assert!(e.contains("`scale` = 512") && e.contains("-512..=511"), "{e}");
    }

    #[test]
    fn int_weights_times_unsigned_acts() {
        let c = cfg(|r| {
            r.weight_bits = 4;
            r.act_bits = 4;
        });
        // w = (-8, 7), a = (15, 2): -120 + 14 = -106
        let acc = tile_acc(&c, &[Step { a: vec![15, 2], w: vec![8, 7] }]);
        assert_eq!(acc, vec![-106]);
    }

    #[test]
    fn saturating_accumulator_sticks() {
        let c = cfg(|r| {
            r.weight_bits = 4;
            r.act_bits = 4;
            r.acc_bits = Some(10);
            r.acc_saturate = true;
        });
        assert!(c.acc_saturates());
        let step = Step { a: vec![15, 15], w: vec![7, 7] }; // +210 per step
        assert_eq!(tile_acc(&c, &[step.clone(), step.clone()]), vec![420]);
        assert_eq!(tile_acc(&c, &[step.clone(), step.clone(), step]), vec![511]);
    }

    #[test]
    fn param_count_and_range_errors_name_the_field() {
        let c = cfg(|_| {});
        let p = ChannelParams { bias: 0, alpha: 1, mult: 1, shift: 0 };
        let e = check_params(&c, &[p, p]).unwrap_err().to_string();
        assert!(e.contains("2 per-channel") && e.contains("cols = 1"), "{e}");
        let bad = ChannelParams { shift: 1000, ..p };
        let e = check_params(&c, &[bad]).unwrap_err().to_string();
        assert!(e.contains("`shift` = 1000") && e.contains(&format!("0..={}", c.max_shift())), "{e}");
        let bad = ChannelParams { mult: 1 << 16, ..p };
        let e = check_params(&c, &[bad]).unwrap_err().to_string();
        assert!(e.contains("`mult` = 65536"), "{e}");
    }
}
