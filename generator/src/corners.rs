//! Directed corner stimulus for every co-simulation, and how often each corner class is hit.
//!
//! Random stimulus rarely lands on the values where an output stage is most likely to be wrong: an
//! exact rounding tie, the clip level, the first saturating value, the accumulator's extremes, a
//! threshold. [`corner_layers`] builds extra layers (parameter sets and tiles) that hit each of them on
//! purpose. The operands of a layer's short tiles are chosen first (every row gets the same activation
//! codes, so each column has one accumulator value per tile); then each column's run-time parameters
//! (`bias`, `alpha`, `mult`, `shift`) are solved so that this accumulator lands exactly on the column's
//! target. The reference model still decides every expected output. [`count`] classifies every output
//! of a stream (random and directed alike) and counts the hits per [`Corner`]; a class the design
//! cannot reach is `None` (reported as n/a), never a silent 0.

use crate::config::Config;
use crate::reference::{basis_sign, check_params, thresholds, tile_acc_table, Step};
use crate::rng::Rng;
use crate::vectors::{random_params, random_table, Item, Layer};
use qmac_arith::code::Encoding;
use qmac_arith::pipeline::{output_code, ChannelParams};
use qmac_arith::round::shift_round;
use std::fmt;

/// A corner class of the output stage, the accumulator or the operands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Corner {
    /// An exact rounding tie (`x * mult` has remainder `2^(shift-1)`) with an even quotient: the two
    /// rounding modes differ here.
    TieEven,
    /// An exact tie with an odd quotient.
    TieOdd,
    /// An exact tie with a negative accumulator (the bias brings it into the clip range).
    TieNegAcc,
    /// An exact tie with an accumulator `>= 0`.
    TiePosAcc,
    /// `acc + bias = alpha - 1` (with `alpha >= 1`): just inside the PACT clip.
    ClipBelow,
    /// `acc + bias = alpha`.
    ClipAt,
    /// `acc + bias = alpha + 1`: just clipped.
    ClipAbove,
    /// The rounded value is exactly `2^out_bits - 1`: the largest code without saturation.
    SatMax,
    /// The rounded value is exactly `2^out_bits`: the first saturating value.
    SatOver,
    /// The accumulator at the most negative value a tile can reach.
    AccMin,
    /// The accumulator at the most positive value a tile can reach.
    AccMax,
    /// A weight code of the smallest value of its encoding (codebook and bases: code 0).
    WeightMin,
    /// A weight code of the largest value (codebook and bases: the all-ones code).
    WeightMax,
    /// An activation code of the smallest value (bases: code 0).
    ActMin,
    /// An activation code of the largest value (bases: the all-ones code).
    ActMax,
    /// Output code 0.
    OutZero,
    /// Output code `2^out_bits - 1`.
    OutMax,
    /// Threshold stage: the accumulator at `T_k - 1` for some `k`.
    ThresholdBelow,
    /// Threshold stage: the accumulator at `T_k`.
    ThresholdAt,
}

impl Corner {
    /// Every class, in report order.
    pub const ALL: [Corner; 19] = [
        Corner::TieEven,
        Corner::TieOdd,
        Corner::TieNegAcc,
        Corner::TiePosAcc,
        Corner::ClipBelow,
        Corner::ClipAt,
        Corner::ClipAbove,
        Corner::SatMax,
        Corner::SatOver,
        Corner::AccMin,
        Corner::AccMax,
        Corner::WeightMin,
        Corner::WeightMax,
        Corner::ActMin,
        Corner::ActMax,
        Corner::OutZero,
        Corner::OutMax,
        Corner::ThresholdBelow,
        Corner::ThresholdAt,
    ];

    /// The name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Corner::TieEven => "tie-even",
            Corner::TieOdd => "tie-odd",
            Corner::TieNegAcc => "tie-neg-acc",
            Corner::TiePosAcc => "tie-pos-acc",
            Corner::ClipBelow => "alpha-1",
            Corner::ClipAt => "alpha",
            Corner::ClipAbove => "alpha+1",
            Corner::SatMax => "code-max",
            Corner::SatOver => "saturate",
            Corner::AccMin => "acc-min",
            Corner::AccMax => "acc-max",
            Corner::WeightMin => "w-min",
            Corner::WeightMax => "w-max",
            Corner::ActMin => "a-min",
            Corner::ActMax => "a-max",
            Corner::OutZero => "y-0",
            Corner::OutMax => "y-max",
            Corner::ThresholdBelow => "T-1",
            Corner::ThresholdAt => "T",
        }
    }

    fn index(self) -> usize {
        Corner::ALL.iter().position(|&c| c == self).expect("listed")
    }
}

/// Tiles deeper than this many steps are not driven to the accumulator's extremes (the vector file
/// would grow with the depth); [`Corner::AccMin`] and [`Corner::AccMax`] are then n/a.
pub const MAX_EXTREME_STEPS: u32 = 4096;

/// Hits per corner class; `None` for a class the design cannot reach.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CornerCounts {
    counts: [Option<u64>; Corner::ALL.len()],
}

impl CornerCounts {
    /// All reachable classes at 0 for `cfg`.
    pub fn new(cfg: &Config) -> CornerCounts {
        let mut counts = [Some(0); Corner::ALL.len()];
        for c in Corner::ALL {
            if !reachable(cfg, c) {
                counts[c.index()] = None;
            }
        }
        CornerCounts { counts }
    }

    /// Hits of class `c`, `None` if the design cannot reach it.
    pub fn get(&self, c: Corner) -> Option<u64> {
        self.counts[c.index()]
    }

    fn hit(&mut self, c: Corner, n: u64) {
        if let Some(v) = &mut self.counts[c.index()] {
            *v += n;
        }
    }

    /// The reachable classes that were never hit.
    pub fn missed(&self) -> Vec<Corner> {
        Corner::ALL.into_iter().filter(|&c| self.get(c) == Some(0)).collect()
    }
}

impl fmt::Display for CornerCounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = Corner::ALL.iter().map(|&c| format!("{} {}", c.name(), self.get(c).map_or_else(|| "n/a".to_string(), |n| n.to_string()))).collect();
        write!(f, "{}", parts.join(", "))
    }
}

/// Whether a design can reach class `c` at all.
fn reachable(cfg: &Config, c: Corner) -> bool {
    let n = (1u64 << cfg.out_bits()) - 1;
    match c {
        Corner::ThresholdBelow | Corner::ThresholdAt => cfg.uses_thresholds(),
        Corner::AccMin | Corner::AccMax => cfg.max_steps() <= MAX_EXTREME_STEPS,
        Corner::TieNegAcc => cfg.acc_range().0 < 0,
        // x * mult = 3 * 2^(s-1) at least
        Corner::TieOdd => x_max(cfg) * ((1i128 << cfg.mult_bits) - 1) >= 3,
        Corner::SatMax | Corner::OutMax => !sat_shapes(cfg, n).is_empty(),
        Corner::SatOver => !sat_shapes(cfg, n + 1).is_empty(),
        _ => true,
    }
}

/// The largest clip input `x = acc + bias` a design can form: `alpha` and the bias are `acc_bits` wide.
fn x_max(cfg: &Config) -> i128 {
    let aw = cfg.acc_bits();
    let hi = cfg.acc_range().1.min((1i128 << (aw - 1)) - 1);
    ((1i128 << aw) - 1).min(hi + (1i128 << (aw - 1)) - 1)
}

/// `(x, mult, shift)` with `round(x * mult / 2^shift) = v` within the design's field ranges: exact
/// factorizations, then rounded quotients by the largest multipliers.
fn sat_shapes(cfg: &Config, v: u64) -> Vec<(u64, u64, u32)> {
    let (xm, mm) = (x_max(cfg), (1i128 << cfg.mult_bits) - 1);
    let mut out: Vec<(u64, u64, u32)> = vec![(v, 1, 0), (1, v, 0)];
    out.extend((2..=v.min(256)).filter(|x| v % x == 0).map(|x| (x, v / x, 0)));
    for s in 1..=cfg.max_shift().min(12) {
        for mult in [mm, mm - 1, mm / 2 + 1] {
            if mult > 0 {
                let x = ((i128::from(v) << s) + mult / 2) / mult;
                out.push((x.min(i128::from(u64::MAX)) as u64, mult as u64, s));
            }
        }
    }
    out.retain(|&(x, m, s)| i128::from(x) <= xm && i128::from(m) <= mm && shift_round(i128::from(x) * i128::from(m), s, cfg.rounding_rule()) == i128::from(v));
    out
}

/// The output stage's view of one output: what classes `acc` with `p` falls in (the operand and
/// accumulator-extreme classes are counted separately).
fn output_classes(cfg: &Config, acc: i64, p: &ChannelParams, thr: &[i64], mut hit: impl FnMut(Corner)) {
    let n = (1i128 << cfg.out_bits()) - 1;
    let t = i128::from(acc) + i128::from(p.bias);
    let alpha = i128::from(p.alpha);
    let x = t.clamp(0, alpha);
    let prod = x * i128::from(p.mult);
    if p.shift >= 1 && p.shift < 127 {
        let s = p.shift;
        if prod.rem_euclid(1i128 << s) == 1i128 << (s - 1) {
            hit(if (prod >> s) & 1 == 0 { Corner::TieEven } else { Corner::TieOdd });
            hit(if acc < 0 { Corner::TieNegAcc } else { Corner::TiePosAcc });
        }
    }
    if alpha >= 1 && t == alpha - 1 {
        hit(Corner::ClipBelow);
    }
    if t == alpha {
        hit(Corner::ClipAt);
    }
    if t == alpha + 1 {
        hit(Corner::ClipAbove);
    }
    let rounded = if p.shift < 127 { shift_round(prod, p.shift, cfg.rounding_rule()) } else { 0 };
    if rounded == n {
        hit(Corner::SatMax);
    }
    if rounded == n + 1 {
        hit(Corner::SatOver);
    }
    let code = output_code(acc, p, cfg.rounding_rule(), cfg.out_bits());
    if code == 0 {
        hit(Corner::OutZero);
    }
    if i128::from(code) == n {
        hit(Corner::OutMax);
    }
    if cfg.uses_thresholds() {
        let aw = cfg.acc_bits();
        let hi = (1i64 << (aw - 1)) - 1;
        for &tk in thr.iter().filter(|&&tk| tk <= hi) {
            if acc == tk - 1 {
                hit(Corner::ThresholdBelow);
            }
            if acc == tk {
                hit(Corner::ThresholdAt);
            }
        }
    }
}

/// The codes of the smallest and largest value of an operand: `(min, max)`.
fn extreme_codes(bits: u32, enc: Option<Encoding>) -> (u64, u64) {
    match enc {
        Some(e) => {
            let (lo, hi) = e.range(bits);
            (e.code_of(bits, lo).expect("range end"), e.code_of(bits, hi).expect("range end"))
        }
        // codebook (levels sorted by code) and bases: code 0 and the all-ones code
        None => (0, (1u64 << bits) - 1),
    }
}

fn weight_extremes(cfg: &Config) -> (u64, u64) {
    let plain = !cfg.is_codebook() && cfg.weight_encoding != crate::config::EncodingName::Bases;
    extreme_codes(cfg.weight_bits, plain.then(|| cfg.weight_enc()))
}

fn act_extremes(cfg: &Config) -> (u64, u64) {
    let plain = cfg.act_encoding != crate::config::EncodingName::Bases;
    extreme_codes(cfg.act_bits, plain.then(|| cfg.act_enc()))
}

/// The value one element (one weight code times one activation code) adds to column `c`'s
/// accumulator, with the layer's table.
fn element(cfg: &Config, w: u64, a: u64, c: usize, table: &[i64]) -> i64 {
    match cfg.bases() {
        Some((kw, ka)) => {
            let np = (kw * ka) as usize;
            (0..kw).flat_map(|i| (0..ka).map(move |j| (i, j))).map(|(i, j)| table[c * np + (i * ka + j) as usize] * basis_sign(w, i) * basis_sign(a, j)).sum()
        }
        None => cfg.weight_value(w, table) * cfg.act_enc().value(cfg.act_bits, a),
    }
}

/// The codes that can give an element its extreme values: every code for bases (at most 16), else the
/// codes of the smallest and largest value (codebook: of the smallest and largest level).
fn candidate_codes(cfg: &Config, table: &[i64]) -> (Vec<u64>, Vec<u64>) {
    let ws = if cfg.bases().is_some() {
        (0..1u64 << cfg.weight_bits).collect()
    } else if cfg.is_codebook() {
        let lo = (0..table.len()).min_by_key(|&i| table[i]).unwrap_or(0) as u64;
        let hi = (0..table.len()).max_by_key(|&i| table[i]).unwrap_or(0) as u64;
        vec![lo, hi]
    } else {
        let (lo, hi) = weight_extremes(cfg);
        vec![lo, hi]
    };
    let a = if cfg.bases().is_some() {
        (0..1u64 << cfg.act_bits).collect()
    } else {
        let (lo, hi) = act_extremes(cfg);
        vec![lo, hi]
    };
    (ws, a)
}

/// The most negative and most positive accumulator of column `c` over any tile, with the layer's
/// table: every element of a full-depth tile at its extreme (saturated by a saturating accumulator).
fn acc_reach(cfg: &Config, c: usize, table: &[i64]) -> (i128, i128) {
    let (ws, acts) = candidate_codes(cfg, table);
    let vals: Vec<i64> = ws.iter().flat_map(|&w| acts.iter().map(move |&a| (w, a))).map(|(w, a)| element(cfg, w, a, c, table)).collect();
    let depth = i128::from(cfg.max_steps()) * i128::from(cfg.lanes);
    let (lo, hi) = (i128::from(*vals.iter().min().expect("codes")) * depth, i128::from(*vals.iter().max().expect("codes")) * depth);
    if cfg.acc_saturates() {
        let aw = cfg.acc_bits();
        let (alo, ahi) = (-(1i128 << (aw - 1)), (1i128 << (aw - 1)) - 1);
        (lo.clamp(alo, ahi), hi.clamp(alo, ahi))
    } else {
        (lo, hi)
    }
}

/// Count the corner classes every complete tile of `layers` hits (each output once per class it falls
/// in; operands once per code).
pub fn count(cfg: &Config, layers: &[Layer]) -> CornerCounts {
    let mut counts = CornerCounts::new(cfg);
    let (wmin, wmax) = weight_extremes(cfg);
    let (amin, amax) = act_extremes(cfg);
    let cols = cfg.cols as usize;
    for layer in layers {
        let thr: Vec<Vec<i64>> = if cfg.uses_thresholds() { layer.params.iter().map(|p| thresholds(cfg, p)).collect() } else { vec![Vec::new(); cols] };
        let reach: Vec<(i128, i128)> = (0..cols).map(|c| acc_reach(cfg, c, &layer.table)).collect();
        for item in &layer.items {
            let Item::Tile(steps) = item else { continue };
            for s in steps {
                counts.hit(Corner::WeightMin, s.w.iter().filter(|&&w| w == wmin).count() as u64);
                counts.hit(Corner::WeightMax, s.w.iter().filter(|&&w| w == wmax).count() as u64);
                counts.hit(Corner::ActMin, s.a.iter().filter(|&&a| a == amin).count() as u64);
                counts.hit(Corner::ActMax, s.a.iter().filter(|&&a| a == amax).count() as u64);
            }
            for (i, &acc) in tile_acc_table(cfg, steps, &layer.table).iter().enumerate() {
                let c = i % cols;
                let (lo, hi) = reach[c];
                if i128::from(acc) == lo {
                    counts.hit(Corner::AccMin, 1);
                }
                if i128::from(acc) == hi {
                    counts.hit(Corner::AccMax, 1);
                }
                output_classes(cfg, acc, &layer.params[c], &thr[c], |k| counts.hit(k, 1));
            }
        }
    }
    counts
}

/// A target of the output stage: the class a column's parameters are solved for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Target {
    /// A tie with an even (`false`) or odd (`true`) quotient, at a negative (`true`) or non-negative
    /// accumulator.
    Tie { odd: bool, negative: bool },
    /// `acc + bias = alpha + delta`, `delta` in -1..=1.
    Clip(i8),
    /// Rounded value `2^out_bits - 1 + over`.
    Sat(u8),
    /// The accumulator at `T_k + delta` (`delta` -1 or 0) for a `k` chosen at random.
    Threshold(i8),
}

impl Target {
    fn class(self) -> Corner {
        match self {
            Target::Tie { odd: false, .. } => Corner::TieEven,
            Target::Tie { odd: true, .. } => Corner::TieOdd,
            Target::Clip(-1) => Corner::ClipBelow,
            Target::Clip(0) => Corner::ClipAt,
            Target::Clip(_) => Corner::ClipAbove,
            Target::Sat(0) => Corner::SatMax,
            Target::Sat(_) => Corner::SatOver,
            Target::Threshold(-1) => Corner::ThresholdBelow,
            Target::Threshold(_) => Corner::ThresholdAt,
        }
    }
}

/// Shapes of parameters (`alpha`, `mult`, `shift`) and the value `t = acc + bias` to aim at, for a
/// target; the bias follows from the accumulator.
fn shapes(cfg: &Config, target: Target, rng: &mut Rng) -> Vec<(u64, u64, u32, i128)> {
    let n = (1u64 << cfg.out_bits()) - 1;
    let smax = cfg.max_shift().min(24);
    let mut out = Vec::new();
    match target {
        Target::Tie { odd, .. } => {
            // x * mult = 2^(s-1) * (2 q0 + 1): quotient q0, remainder exactly half
            let parity = u64::from(odd);
            let spread = n.saturating_sub(1) / 2;
            let q0s = [parity, parity + 2 * rng.below(spread + 1), parity + 2];
            for s in [1 + rng.below(u64::from(smax)) as u32, 1, 2, 3] {
                if s > smax {
                    continue;
                }
                for q0 in q0s {
                    let half = 1u64 << (s - 1);
                    let odd_part = 2 * q0 + 1;
                    // form A: mult 1, x = q0 * 2^s + 2^(s-1); form B: mult 2 q0 + 1, x = 2^(s-1)
                    let xa = q0 * (1 << s) + half;
                    out.push((xa + rng.below(xa + 1), 1, s, i128::from(xa)));
                    out.push((half + rng.below(half + 1), odd_part, s, i128::from(half)));
                }
            }
        }
        Target::Clip(d) => {
            // code = min(x, n) (mult 1, shift 0) or x * 3 / 2: alpha - 1, alpha and a clipped alpha + 1
            // give distinct values for a small alpha
            for alpha in [1 + rng.below(n.max(2) - 1), 1, 2, 1 + rng.below(n.max(1))] {
                out.push((alpha, 1, 0, i128::from(alpha) + i128::from(d)));
                out.push((alpha, 3, 1, i128::from(alpha) + i128::from(d)));
            }
        }
        Target::Sat(over) => {
            for (x, mult, s) in sat_shapes(cfg, n + u64::from(over)).into_iter().take(8) {
                out.push((x + rng.below(4), mult, s, i128::from(x)));
                out.push((x, mult, s, i128::from(x)));
            }
        }
        Target::Threshold(d) => {
            // thresholds of code = min(round(clamp(t, 0, alpha) * mult / 2^s), n); aim at T_k + d
            let k = 1 + rng.below(n);
            for (alpha, mult, s) in [(n + rng.below(4), 1, 0), (2 * n + rng.below(4), 1, 1), (n, 1, 0), (2 * n + 1, 1, 1)] {
                let p = ChannelParams { bias: 0, alpha, mult, shift: s };
                if let Some(tk) = (0..=alpha).find(|&t| output_code(t as i64, &p, cfg.rounding_rule(), cfg.out_bits()) >= k) {
                    out.push((alpha, mult, s, i128::from(tk) + i128::from(d)));
                }
            }
        }
    }
    out
}

/// Parameters that put the accumulator `acc` of a column on `target`, or `None`.
fn solve(cfg: &Config, acc: i64, target: Target, rng: &mut Rng) -> Option<ChannelParams> {
    let aw = cfg.acc_bits();
    let (blo, bhi) = (-(1i128 << (aw - 1)), (1i128 << (aw - 1)) - 1);
    let amax = (1u128 << aw) - 1;
    let mmax = (1u128 << cfg.mult_bits) - 1;
    for (alpha, mult, shift, t) in shapes(cfg, target, rng) {
        let bias = t - i128::from(acc);
        if !(blo..=bhi).contains(&bias) || u128::from(alpha) > amax || u128::from(mult) > mmax || shift > cfg.max_shift() {
            continue;
        }
        let p = ChannelParams { bias: bias as i64, alpha, mult, shift };
        let thr = if cfg.uses_thresholds() { thresholds(cfg, &p) } else { Vec::new() };
        let mut hit = false;
        output_classes(cfg, acc, &p, &thr, |c| hit |= c == target.class());
        let sign_ok = match target {
            Target::Tie { negative, .. } => (acc < 0) == negative,
            _ => true,
        };
        if hit && sign_ok {
            return Some(p);
        }
    }
    None
}

/// A one-step tile with every row's activations `a` (lanes codes) and column `c`'s weights `w[c]`.
fn uniform_rows(cfg: &Config, a: &[u64], w: &[Vec<u64>]) -> Vec<Step> {
    vec![Step { a: (0..cfg.rows).flat_map(|_| a.iter().copied()).collect(), w: w.iter().flatten().copied().collect() }]
}

/// The targets a design's output stage is driven to.
fn targets(cfg: &Config) -> Vec<Target> {
    let mut t = Vec::new();
    for odd in [false, true] {
        for negative in [false, true] {
            if !negative || reachable(cfg, Corner::TieNegAcc) {
                t.push(Target::Tie { odd, negative });
            }
        }
    }
    t.extend([Target::Clip(-1), Target::Clip(0), Target::Clip(1), Target::Sat(0), Target::Sat(1)]);
    if cfg.uses_thresholds() {
        let n = (1usize << cfg.out_bits()) - 1;
        for _ in 0..n {
            t.extend([Target::Threshold(-1), Target::Threshold(0)]);
        }
    }
    t.retain(|g| reachable(cfg, g.class()));
    t
}

/// The directed layers: each output-stage target twice (in layers of `cols` targets, one per column,
/// each with short one-step tiles whose rows are equal), then one layer per accumulator extreme with a
/// full-depth tile of extreme operands (when the depth is at most [`MAX_EXTREME_STEPS`] steps).
pub fn corner_layers(cfg: &Config, seed: u64) -> Vec<Layer> {
    let mut rng = Rng::new(seed ^ 0xc0e2_5eed);
    let (cols, lanes) = (cfg.cols as usize, cfg.lanes as usize);
    let mut goals: Vec<Target> = targets(cfg);
    goals.extend(targets(cfg));
    let mut layers = Vec::new();
    let (wmin, wmax) = weight_extremes(cfg);
    let (amin, amax) = act_extremes(cfg);
    for chunk in goals.chunks(cols) {
        let table = random_table(cfg, &mut rng);
        // candidate tiles: extreme operands of both signs, and random ones
        let code = |rng: &mut Rng, bits: u32| rng.below(1 << bits);
        let mut tiles = Vec::new();
        for (wc, ac) in [(wmin, amax), (wmax, amax), (wmin, amin)] {
            tiles.push(uniform_rows(cfg, &vec![ac; lanes], &vec![vec![wc; lanes]; cols]));
        }
        for _ in 0..3 {
            let a: Vec<u64> = (0..lanes).map(|_| code(&mut rng, cfg.act_bits)).collect();
            let w: Vec<Vec<u64>> = (0..cols).map(|_| (0..lanes).map(|_| code(&mut rng, cfg.weight_bits)).collect()).collect();
            tiles.push(uniform_rows(cfg, &a, &w));
        }
        let accs: Vec<Vec<i64>> = tiles.iter().map(|t| tile_acc_table(cfg, t, &table)).collect();
        let mut params = random_params(cfg, &mut rng, 1);
        for (c, &target) in chunk.iter().enumerate() {
            let mut cand: Vec<i64> = accs.iter().map(|a| a[c]).collect();
            cand.sort_by_key(|a| a.unsigned_abs());
            cand.dedup();
            if let Some(p) = cand.iter().find_map(|&acc| solve(cfg, acc, target, &mut rng)) {
                params[c] = p;
            }
        }
        debug_assert!(check_params(cfg, &params).is_ok());
        layers.push(Layer { params, table, items: tiles.into_iter().map(Item::Tile).collect() });
    }
    if cfg.max_steps() <= MAX_EXTREME_STEPS {
        for want_max in [false, true] {
            layers.push(extreme_layer(cfg, want_max, &mut rng));
        }
    }
    layers
}

/// A layer whose one tile drives every accumulator to its most negative (or most positive) reachable
/// value; each column's bias brings that value to a small clip input so an error of one shows.
fn extreme_layer(cfg: &Config, want_max: bool, rng: &mut Rng) -> Layer {
    let (cols, lanes) = (cfg.cols as usize, cfg.lanes as usize);
    let mut table = random_table(cfg, rng);
    if cfg.bases().is_some() {
        // every pair scale at the most negative level: the widest accumulator range
        let lmin = -(1i64 << (cfg.level_bits - 1));
        table.iter_mut().for_each(|v| *v = lmin);
    }
    let (ws, acts) = candidate_codes(cfg, &table);
    let pairs = ws.iter().flat_map(|&w| acts.iter().map(move |&a| (w, a)));
    let (w, a) = if want_max { pairs.max_by_key(|&(w, a)| element(cfg, w, a, 0, &table)) } else { pairs.min_by_key(|&(w, a)| element(cfg, w, a, 0, &table)) }.expect("codes");
    let step = Step { a: vec![a; cfg.rows as usize * lanes], w: vec![w; cols * lanes] };
    let tile = vec![step; cfg.max_steps() as usize];
    let acc = tile_acc_table(cfg, &tile, &table);
    let aw = cfg.acc_bits();
    let (blo, bhi) = (-(1i128 << (aw - 1)), (1i128 << (aw - 1)) - 1);
    let n = (1u64 << cfg.out_bits()) - 1;
    let params = (0..cols)
        .map(|c| {
            let x0 = i128::from(n / 2 + 1);
            let bias = (x0 - i128::from(acc[c])).clamp(blo, bhi) as i64;
            let alpha = ((1u128 << aw) - 1).min(u128::from(n) + 2) as u64;
            ChannelParams { bias, alpha, mult: 1, shift: 0 }
        })
        .collect();
    Layer { params, table, items: vec![Item::Tile(tile)] }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{EncodingName, OutputUnitsName, RawConfig, RequantName, RoundingName};

    fn configs() -> Vec<Config> {
        let mut v = Vec::new();
        for (we, ae) in [(EncodingName::Int, EncodingName::Unsigned), (EncodingName::Odd, EncodingName::Unsigned), (EncodingName::Odd, EncodingName::Int), (EncodingName::Codebook, EncodingName::Unsigned)] {
            for wb in [1, 2, 3, 4, 8] {
                for ab in [1, 2, 4, 8] {
                    let ae = if ab == 1 && we == EncodingName::Odd && ae == EncodingName::Unsigned { EncodingName::Odd } else { ae };
                    let raw = RawConfig { rows: 2, cols: 3, lanes: 2, max_depth: 16, weight_bits: wb, weight_encoding: we, act_bits: ab, act_encoding: ae, level_bits: 6, ..RawConfig::default() };
                    if let Ok(c) = Config::new(raw) {
                        v.push(c);
                    }
                }
            }
        }
        let extra = [
            RawConfig { rows: 1, cols: 1, lanes: 1, max_depth: 1, ..RawConfig::default() },
            RawConfig { rows: 1, cols: 1, lanes: 2, max_depth: 2, weight_bits: 1, act_bits: 1, weight_encoding: EncodingName::Odd, act_encoding: EncodingName::Odd, ..RawConfig::default() },
            RawConfig { rounding: RoundingName::HalfUp, ..RawConfig::default() },
            RawConfig { mult_bits: 1, rows: 2, cols: 2, ..RawConfig::default() },
            RawConfig { acc_bits: Some(10), acc_saturate: true, rows: 2, cols: 2, lanes: 2, ..RawConfig::default() },
            RawConfig { out_bits: Some(2), requant: RequantName::Multiply, ..RawConfig::default() },
            RawConfig { out_bits: Some(1), ..RawConfig::default() },
            RawConfig { out_bits: Some(8), act_bits: 8, weight_bits: 8, ..RawConfig::default() },
            RawConfig { output_units: OutputUnitsName::Shared, cols: 5, ..RawConfig::default() },
            RawConfig { weight_encoding: EncodingName::Bases, act_encoding: EncodingName::Bases, weight_bits: 2, act_bits: 3, level_bits: 5, cols: 2, rows: 2, lanes: 3, max_depth: 30, ..RawConfig::default() },
            RawConfig { weight_encoding: EncodingName::Odd, weight_bits: 1, act_encoding: EncodingName::Bases, act_bits: 2, out_bits: Some(2), cols: 1, rows: 1, lanes: 1, max_depth: 4, ..RawConfig::default() },
            RawConfig { act_serial: true, act_encoding: EncodingName::Int, act_bits: 3, ..RawConfig::default() },
        ];
        v.extend(extra.into_iter().map(|r| Config::new(r).unwrap()));
        v
    }

    /// Invariant: the directed layers hit every class a design can reach at least once, on every
    /// configuration tried (all encoding pairs at several widths, both output stages, narrow
    /// multipliers, a saturating accumulator, bases), and their parameters fit the fields.
    #[test]
    fn directed_layers_hit_every_reachable_class() {
        for cfg in configs() {
            for seed in [1, 2] {
                let layers = corner_layers(&cfg, seed);
                for l in &layers {
                    check_params(&cfg, &l.params).unwrap();
                    crate::reference::check_table(&cfg, &l.table).unwrap();
                }
                let counts = count(&cfg, &layers);
                assert!(counts.missed().is_empty(), "{} seed {seed}: missed {:?}; {counts}", cfg.short_name(), counts.missed());
            }
        }
    }

    /// Classes a design cannot reach are n/a, not 0.
    #[test]
    fn unreachable_classes_are_na() {
        let mult = Config::default();
        assert!(!mult.uses_thresholds());
        let c = count(&mult, &corner_layers(&mult, 1));
        assert_eq!(c.get(Corner::ThresholdAt), None);
        assert!(c.to_string().contains("T n/a"), "{c}");
        let thr = Config::new(RawConfig { out_bits: Some(2), ..RawConfig::default() }).unwrap();
        let c = count(&thr, &corner_layers(&thr, 1));
        assert!(c.get(Corner::ThresholdAt).unwrap() > 0 && c.get(Corner::ThresholdBelow).unwrap() > 0, "{c}");
        let deep = Config::new(RawConfig { lanes: 1, max_depth: MAX_EXTREME_STEPS + 1, ..RawConfig::default() }).unwrap();
        assert_eq!(CornerCounts::new(&deep).get(Corner::AccMax), None);
    }

    /// The classifier by hand: 5 * 1 / 2 = 2.5 is an even tie; 7 / 2 = 3.5 an odd one; clip and
    /// saturation edges.
    #[test]
    fn classes_by_hand() {
        let cfg = Config::default(); // 4-bit output, half_even
        let classes = |acc: i64, p: ChannelParams| {
            let mut v = Vec::new();
            output_classes(&cfg, acc, &p, &[], |c| v.push(c));
            v
        };
        let p = ChannelParams { bias: 0, alpha: 100, mult: 1, shift: 1 };
        assert!(classes(5, p).contains(&Corner::TieEven) && classes(5, p).contains(&Corner::TiePosAcc));
        assert!(classes(7, p).contains(&Corner::TieOdd));
        assert!(!classes(6, p).iter().any(|c| matches!(c, Corner::TieEven | Corner::TieOdd)));
        let neg = ChannelParams { bias: 10, ..p };
        assert!(classes(-5, neg).contains(&Corner::TieNegAcc));
        let clip = ChannelParams { bias: 0, alpha: 9, mult: 1, shift: 0 };
        assert!(classes(8, clip).contains(&Corner::ClipBelow));
        assert!(classes(9, clip).contains(&Corner::ClipAt));
        assert!(classes(10, clip).contains(&Corner::ClipAbove));
        let sat = ChannelParams { bias: 0, alpha: 100, mult: 1, shift: 0 };
        assert!(classes(15, sat).contains(&Corner::SatMax) && classes(15, sat).contains(&Corner::OutMax));
        assert!(classes(16, sat).contains(&Corner::SatOver));
        assert!(classes(-1, sat).contains(&Corner::OutZero));
    }
}
