//! Test stimulus and expected outputs, computed by the [`crate::reference`] model, in the text format the
//! Verilator testbench (`testbenches/harness/tb.cpp`) reads.
//!
//! Format (one record per line, numbers in decimal, buses in hexadecimal, most significant digit first):
//!
//! ```text
//! qmac-vectors 1
//! ports <a_bits> <w_bits> <y_bits> <prm_addr_bits> <prm_data_bits>
//! shape <rows> <cols> <out_bits>
//! latency <cycles>
//! layer <writes>            then <writes> lines:  p <addr> <data>
//! tile <steps>              then <steps> lines:   b <a_data> <w_data>, then <rows> lines: y <y_data>
//! abort <steps>             then <steps> lines:   b ...; the testbench resets the design mid-stream
//! end
//! ```
//!
//! The testbench sends each layer's parameter writes when the design is idle, then streams the tiles;
//! the last step of a tile carries `a_last`. An aborted tile is cut short by a reset, which must leave no
//! stale or duplicated output behind: everything not yet received when the reset comes is dropped.

use crate::config::Config;
use crate::reference::{check_table, check_params, param_writes, table_writes, tile_outputs_table, ParamError, Step};
use crate::rng::Rng;
use qmac_arith::code::Encoding;
use qmac_arith::pipeline::ChannelParams;
use std::fmt::Write as _;

/// One item of a layer's stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Item {
    /// A complete tile.
    Tile(Vec<Step>),
    /// Steps of a tile cut short by a reset.
    Abort(Vec<Step>),
}

/// Parameters and the tiles computed with them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layer {
    /// One set per output channel.
    pub params: Vec<ChannelParams>,
    /// The run-time table: the codebook's levels, or the basis-pair scales of every channel (empty
    /// for other encodings).
    pub table: Vec<i64>,
    /// The stream.
    pub items: Vec<Item>,
}

/// Options for random stimulus.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StimulusOptions {
    /// Layers (parameter sets).
    pub layers: u32,
    /// Tiles per layer.
    pub tiles: u32,
    /// Most steps per tile (at most the config's `max_steps`).
    pub max_steps: u32,
    /// Insert one tile aborted by a reset.
    pub abort: bool,
}

impl Default for StimulusOptions {
    fn default() -> Self {
        StimulusOptions { layers: 2, tiles: 6, max_steps: 8, abort: true }
    }
}

/// Random codes for one step: uniform, with some extreme-value steps so the corners of every range
/// are reached.
fn random_step(cfg: &Config, rng: &mut Rng, corner: Option<bool>) -> Step {
    let code = |rng: &mut Rng, bits: u32, enc: Encoding, corner: Option<bool>| -> u64 {
        match corner {
            None => rng.below(1 << bits),
            Some(high) => {
                let (lo, hi) = enc.range(bits);
                let v = if high { hi } else { lo };
                enc.code_of(bits, v).expect("range ends are codes")
            }
        }
    };
    let wc = corner.map(|h| if rng.chance(50) { h } else { !h });
    let a = (0..cfg.rows * cfg.lanes).map(|_| code(rng, cfg.act_bits, cfg.act_enc(), corner)).collect();
    let w = (0..cfg.cols * cfg.lanes).map(|_| code(rng, cfg.weight_bits, cfg.weight_enc(), wc)).collect();
    Step { a, w }
}

/// Random per-channel parameters that put the clip level and scale where the accumulators of
/// `steps`-step tiles land, so outputs spread over the code range, with exact ties reachable. With
/// `bias_frac_bits = F` the bias and clip level are in units of `2^-F` (their low bits random too);
/// with basis-coded outputs `mult / 2^shift` puts the sign decisions (`z = 0, +-1`) in the same range.
pub fn random_params(cfg: &Config, rng: &mut Rng, steps: u32) -> Vec<ChannelParams> {
    let aw = cfg.acc_bits();
    let frac = cfg.bias_frac_bits;
    let (plo, phi) = cfg.product_range();
    let span = (phi - plo).max(1) as i128 * i128::from(steps.max(1)) * i128::from(cfg.lanes);
    let amax = (1i128 << aw) - 1;
    let bmax = (1i128 << (aw - 1)) - 1;
    let n = (1u64 << cfg.out_bits().min(8)) - 1;
    (0..cfg.cols)
        .map(|_| {
            let typical = (span / 4).clamp(1, amax) as i64;
            // (no draw without fractional bits: the stimulus of existing designs stays the same)
            let fine = |rng: &mut Rng, v: i64| if frac == 0 { v } else { (v << frac) | rng.below(1 << frac) as i64 };
            let alpha = rng.range_i64(1, typical);
            let alpha = fine(rng, alpha) as u64;
            let bias = rng.range_i64(-(typical / 2).min(bmax as i64), (typical / 2).min(bmax as i64));
            let bias = fine(rng, bias);
            let max_shift = cfg.max_shift().min(24 + frac);
            let shift = rng.below(u64::from(max_shift) + 1) as u32;
            let mmax = (1u128 << cfg.mult_bits) - 1;
            let ideal = (u128::from(n) << shift) / u128::from(alpha);
            let mult = if rng.chance(15) { rng.below(mmax.min(u128::from(u64::MAX)) as u64 + 1) as u128 } else { ideal.clamp(0, mmax) };
            ChannelParams { bias, alpha, mult: mult as u64, shift }
        })
        .collect()
}

/// A random run-time table (empty for encodings without one). Codebook: distinct sorted levels spread
/// over the level range, with both range ends present, as a trained table would be loaded. Bases: pair
/// scales anywhere in the level range (negative ones included), with both range ends present.
pub fn random_table(cfg: &Config, rng: &mut Rng) -> Vec<i64> {
    let n = cfg.table_entries() as usize;
    if n == 0 {
        return Vec::new();
    }
    let (lo, hi) = (-(1i64 << (cfg.level_bits - 1)), (1i64 << (cfg.level_bits - 1)) - 1);
    let mut v: Vec<i64> = (0..n).map(|_| rng.range_i64(lo, hi)).collect();
    v[0] = lo;
    if n > 1 {
        v[n - 1] = hi;
    }
    if cfg.is_codebook() {
        v.sort_unstable();
    }
    v
}

/// Random layers for `cfg`.
pub fn random_layers(cfg: &Config, seed: u64, opts: &StimulusOptions) -> Vec<Layer> {
    let mut rng = Rng::new(seed);
    let max_steps = opts.max_steps.clamp(1, cfg.max_steps());
    let mut layers = Vec::new();
    for li in 0..opts.layers {
        let params = random_params(cfg, &mut rng, max_steps);
        let table = random_table(cfg, &mut rng);
        let mut items = Vec::new();
        for ti in 0..opts.tiles {
            let steps = if ti == 0 { max_steps } else { 1 + rng.below(u64::from(max_steps)) as u32 };
            let corner_tile = ti == 1;
            let tile: Vec<Step> = (0..steps)
                .map(|_| {
                    let corner = if corner_tile || rng.chance(10) { Some(rng.chance(50)) } else { None };
                    random_step(cfg, &mut rng, corner)
                })
                .collect();
            items.push(Item::Tile(tile));
            if opts.abort && li == 0 && ti == opts.tiles / 2 {
                let steps = 1 + rng.below(u64::from(max_steps)) as u32;
                items.push(Item::Abort((0..steps).map(|_| random_step(cfg, &mut rng, None)).collect()));
            }
        }
        layers.push(Layer { params, table, items });
    }
    layers
}

/// Pack codes of `bits` bits, element 0 in the least significant bits, as hexadecimal.
pub fn pack_hex(codes: impl IntoIterator<Item = u128>, bits: u32) -> String {
    let mut words: Vec<u64> = Vec::new();
    let mut pos = 0u32;
    for c in codes {
        for b in 0..bits {
            let bit = (c >> b) & 1;
            let (wi, bi) = ((pos / 64) as usize, pos % 64);
            if wi >= words.len() {
                words.push(0);
            }
            words[wi] |= (bit as u64) << bi;
            pos += 1;
        }
    }
    let digits = pos.div_ceil(4).max(1) as usize;
    let mut s = String::with_capacity(digits);
    for d in (0..digits).rev() {
        let bit = d as u32 * 4;
        let (wi, bi) = ((bit / 64) as usize, bit % 64);
        let nib = words.get(wi).map_or(0, |w| (w >> bi) & 0xf);
        let _ = write!(s, "{nib:x}");
    }
    s
}

/// The inverse of [`pack_hex`]: `count` codes of `bits` bits from hexadecimal text, element 0 in the
/// least significant bits; `None` if the text is not hexadecimal or holds set bits past the codes.
pub fn unpack_hex(hex: &str, count: usize, bits: u32) -> Option<Vec<u64>> {
    let mut out = vec![0u64; count];
    for (d, ch) in hex.trim().chars().rev().enumerate() {
        let nib = ch.to_digit(16)?;
        for b in 0..4 {
            if nib >> b & 1 == 0 {
                continue;
            }
            let pos = d * 4 + b;
            let (i, j) = (pos / bits as usize, pos % bits as usize);
            *out.get_mut(i)? |= 1 << j;
        }
    }
    Some(out)
}

/// The vector file for `layers`, with the expected outputs from the reference model.
pub fn render(cfg: &Config, layers: &[Layer]) -> Result<String, ParamError> {
    let mut s = String::new();
    let _ = writeln!(s, "qmac-vectors 1");
    let _ = writeln!(s, "ports {} {} {} {} {}", cfg.a_data_bits(), cfg.w_data_bits(), cfg.y_data_bits(), cfg.prm_addr_bits(), cfg.prm_data_bits());
    let _ = writeln!(s, "shape {} {} {}", cfg.rows, cfg.cols, cfg.out_bits());
    let _ = writeln!(s, "latency {}", cfg.latency());
    let step_line = |s: &mut String, st: &Step| {
        let a = pack_hex(st.a.iter().map(|&v| u128::from(v)), cfg.act_bits);
        let w = pack_hex(st.w.iter().map(|&v| u128::from(v)), cfg.weight_bits);
        let _ = writeln!(s, "b {a} {w}");
    };
    for layer in layers {
        check_params(cfg, &layer.params)?;
        check_table(cfg, &layer.table)?;
        let mut writes = param_writes(cfg, &layer.params);
        writes.extend(table_writes(cfg, &layer.table));
        let _ = writeln!(s, "layer {}", writes.len());
        for (addr, data) in writes {
            let _ = writeln!(s, "p {addr:x} {data:x}");
        }
        for item in &layer.items {
            match item {
                Item::Tile(steps) => {
                    let _ = writeln!(s, "tile {}", steps.len());
                    for st in steps {
                        step_line(&mut s, st);
                    }
                    let out = tile_outputs_table(cfg, steps, &layer.params, &layer.table);
                    for row in out.chunks(cfg.cols as usize) {
                        let _ = writeln!(s, "y {}", pack_hex(row.iter().map(|&v| u128::from(v)), cfg.out_bits()));
                    }
                }
                Item::Abort(steps) => {
                    let _ = writeln!(s, "abort {}", steps.len());
                    for st in steps {
                        step_line(&mut s, st);
                    }
                }
            }
        }
    }
    let _ = writeln!(s, "end");
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pack_hex_orders_elements_lsb_first() {
        // codes 1, 2, 3 of 4 bits -> 0x321
        assert_eq!(pack_hex([1u128, 2, 3], 4), "321");
        // 3 codes of 3 bits (9 bits -> 3 hex digits): 7, 0, 1 -> 0b001_000_111 = 0x047
        assert_eq!(pack_hex([7u128, 0, 1], 3), "047");
        assert_eq!(pack_hex([1u128; 70], 1), format!("3f{}", "f".repeat(16)));
    }

    #[test]
    fn unpack_hex_inverts_pack_hex() {
        let codes = [5u64, 0, 15, 9, 1];
        assert_eq!(unpack_hex(&pack_hex(codes.iter().map(|&c| u128::from(c)), 4), 5, 4), Some(codes.to_vec()));
        assert_eq!(unpack_hex("047", 3, 3), Some(vec![7, 0, 1]));
        // a set bit past the last code, and a non-hex digit
        assert_eq!(unpack_hex("200", 3, 3), None);
        assert_eq!(unpack_hex("0g", 2, 4), None);
    }

    #[test]
    fn random_params_are_loadable_and_vary() {
        let cfg = Config::default();
        let mut rng = Rng::new(3);
        let p = random_params(&cfg, &mut rng, 8);
        check_params(&cfg, &p).unwrap();
        assert!(p.windows(2).any(|w| w[0] != w[1]));
    }
}
