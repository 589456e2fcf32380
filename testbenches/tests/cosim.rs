//! Bit-exact co-simulation of generated arrays against the reference model, with random valid/ready
//! stalls on every stream and a reset in the middle of a stream, plus `verilator --lint-only -Wall`
//! and `yosys check -assert` of every configuration.

use qmac::config::{EncodingName, OutModeName, OutputUnitsName, RawConfig, RequantName, RoundingName};
use qmac::rng::Rng;
use qmac::vectors::StimulusOptions;
use qmac_testbenches::{check_all, with_slot, work_dir};

fn small(wb: u32, we: EncodingName, ab: u32, ae: EncodingName) -> RawConfig {
    RawConfig {
        rows: 2,
        cols: 3,
        lanes: 2,
        max_depth: 64,
        weight_bits: wb,
        weight_encoding: we,
        act_bits: ab,
        act_encoding: ae,
        ..RawConfig::default()
    }
}

const STIM: StimulusOptions = StimulusOptions { layers: 2, tiles: 6, max_steps: 8, abort: true };

/// All 64 (weight_bits, act_bits) pairs with two's complement weights and unsigned activations.
fn int_pairs(wbs: std::ops::RangeInclusive<u32>) -> Vec<RawConfig> {
    wbs.flat_map(|wb| (1..=8).map(move |ab| small(wb, EncodingName::Int, ab, EncodingName::Unsigned))).collect()
}

/// All 64 pairs with odd-level weights; 1-bit activations are +-1 (odd), so W1A1 is XNOR/popcount.
fn odd_pairs(wbs: std::ops::RangeInclusive<u32>) -> Vec<RawConfig> {
    wbs.flat_map(|wb| {
        (1..=8).map(move |ab| small(wb, EncodingName::Odd, ab, if ab == 1 { EncodingName::Odd } else { EncodingName::Unsigned }))
    })
    .collect()
}

#[test]
fn pairs_int_weights_1_to_4_bits() {
    check_all("int-w1-4", int_pairs(1..=4), &[1], STIM);
}

#[test]
fn pairs_int_weights_5_to_8_bits() {
    check_all("int-w5-8", int_pairs(5..=8), &[1], STIM);
}

#[test]
fn pairs_odd_weights_1_to_4_bits() {
    check_all("odd-w1-4", odd_pairs(1..=4), &[1], STIM);
}

#[test]
fn pairs_odd_weights_5_to_8_bits() {
    check_all("odd-w5-8", odd_pairs(5..=8), &[1], STIM);
}

/// Shapes (single PE, single row or column, non-powers of two, the default 8x8), reduction depths up to
/// the configured maximum, other encodings and rounding, a saturating accumulator, both output stages at
/// small output widths, and bit-plane lane products of every operand kind they take, each with several
/// seeds on one model.
#[test]
fn shapes_depths_and_modes() {
    let base = RawConfig { max_depth: 64, ..RawConfig::default() };
    let cfgs = vec![
        RawConfig { rows: 1, cols: 1, lanes: 1, ..base.clone() },
        RawConfig { rows: 1, cols: 5, lanes: 3, ..base.clone() },
        RawConfig { rows: 5, cols: 1, lanes: 4, ..base.clone() },
        RawConfig { rows: 3, cols: 5, lanes: 7, weight_bits: 3, act_bits: 5, ..base.clone() },
        RawConfig { rows: 8, cols: 8, lanes: 4, max_depth: 512, ..base.clone() },
        RawConfig { rows: 2, cols: 2, lanes: 16, weight_bits: 1, weight_encoding: EncodingName::Odd, act_bits: 1, act_encoding: EncodingName::Odd, max_depth: 4096, ..base.clone() },
        RawConfig { rows: 2, cols: 3, lanes: 2, act_encoding: EncodingName::Int, act_bits: 6, weight_bits: 5, ..base.clone() },
        RawConfig { rows: 2, cols: 2, lanes: 64, weight_bits: 3, act_bits: 2, weight_encoding: EncodingName::Odd, act_encoding: EncodingName::Int, max_depth: 4096, ..base.clone() },
        RawConfig { rows: 2, cols: 2, lanes: 33, weight_bits: 2, act_bits: 3, max_depth: 4096, ..base.clone() },
        RawConfig { rows: 2, cols: 3, lanes: 3, act_encoding: EncodingName::Odd, act_bits: 3, weight_encoding: EncodingName::Odd, weight_bits: 2, ..base.clone() },
        RawConfig { rows: 2, cols: 3, lanes: 2, act_encoding: EncodingName::Int, act_bits: 4, weight_encoding: EncodingName::Odd, weight_bits: 3, ..base.clone() },
        RawConfig { rows: 2, cols: 2, lanes: 2, rounding: RoundingName::HalfUp, mult_bits: 5, out_bits: Some(8), ..base.clone() },
        RawConfig { rows: 2, cols: 2, lanes: 2, mult_bits: 32, out_bits: Some(2), ..base.clone() },
        RawConfig { rows: 3, cols: 2, lanes: 2, acc_bits: Some(18), acc_saturate: true, weight_bits: 8, act_bits: 8, ..base.clone() },
        RawConfig { rows: 2, cols: 2, lanes: 1, module_prefix: "layer3".into(), ..base.clone() },
        RawConfig { rows: 2, cols: 3, lanes: 2, weight_bits: 2, act_bits: 2, out_bits: Some(1), requant: RequantName::Multiply, ..base.clone() },
        RawConfig { rows: 2, cols: 3, lanes: 2, weight_bits: 6, act_bits: 8, out_bits: Some(2), requant: RequantName::Thresholds, rounding: RoundingName::HalfUp, ..base.clone() },
        // bit-plane lane products: 16 lanes (classes of 16, 32 and 16 partial products, one count
        // registered at its root) with the PE's input copies; two's complement activations (both
        // operands' top bits negative), an odd lane count and a register after every level; odd-level
        // weights' unsigned codes
        RawConfig { rows: 2, cols: 2, lanes: 16, weight_bits: 2, act_bits: 2, pe_input_regs: true, max_depth: 512, ..base.clone() },
        RawConfig { rows: 2, cols: 3, lanes: 13, weight_bits: 2, act_bits: 2, act_encoding: EncodingName::Int, tree_levels_per_stage: 1, ..base.clone() },
        RawConfig { rows: 3, cols: 2, lanes: 6, weight_bits: 1, weight_encoding: EncodingName::Odd, act_bits: 3, ..base },
    ];
    let deep = StimulusOptions { layers: 2, tiles: 5, max_steps: 64, abort: true };
    check_all("shapes", cfgs, &[1, 2, 3], deep);
}

/// Codebook weights (learnable levels): every code width 1..=4 with several level widths and
/// activation encodings; each layer loads its own random level table at run time.
#[test]
fn codebook_weights() {
    let mut cfgs = Vec::new();
    for wb in 1..=4u32 {
        for (lb, ab, ae) in [(2 + wb, 4, EncodingName::Unsigned), (8, 3, EncodingName::Int), (12, 1, EncodingName::Odd)] {
            cfgs.push(RawConfig {
                rows: 2,
                cols: 3,
                lanes: 2,
                max_depth: 64,
                weight_bits: wb,
                weight_encoding: EncodingName::Codebook,
                level_bits: lb,
                act_bits: ab,
                act_encoding: ae,
                out_bits: Some(4),
                ..RawConfig::default()
            });
        }
    }
    check_all("codebook", cfgs, &[1, 2], STIM);
}

/// Multi-basis binary operands (ls-2, ls-T, gf-k): every (weight bases, activation bases) pair up to 4 x 4,
/// 1-bit `odd` (one basis) against bases on either side, per-column and shared output units, both
/// output stages; each layer loads its own random pair scales (negative and extreme ones included).
#[test]
fn multi_basis_binary() {
    let base = RawConfig {
        rows: 2,
        cols: 3,
        lanes: 3,
        max_depth: 48,
        weight_encoding: EncodingName::Bases,
        act_encoding: EncodingName::Bases,
        level_bits: 6,
        out_bits: Some(4),
        output_units: OutputUnitsName::PerColumn,
        ..RawConfig::default()
    };
    let mut cfgs = Vec::new();
    for wb in 1..=4u32 {
        for ab in 1..=4u32 {
            let shared = (wb + ab) % 2 == 0;
            cfgs.push(RawConfig {
                weight_bits: wb,
                act_bits: ab,
                level_bits: 3 + wb + ab,
                output_units: if shared { OutputUnitsName::Shared } else { OutputUnitsName::PerColumn },
                ..base.clone()
            });
        }
    }
    // ls-1 weights (1-bit odd) x 2-basis activations, 2-basis weights x +-1 activations
    cfgs.push(RawConfig { weight_bits: 1, weight_encoding: EncodingName::Odd, act_bits: 2, lanes: 8, ..base.clone() });
    cfgs.push(RawConfig { weight_bits: 2, act_bits: 1, act_encoding: EncodingName::Odd, rows: 3, cols: 1, ..base.clone() });
    // thresholds (2-bit outputs), shared and per column; one PE; rounding half_up
    cfgs.push(RawConfig { weight_bits: 1, act_bits: 2, out_bits: Some(2), ..base.clone() });
    cfgs.push(RawConfig { weight_bits: 2, act_bits: 2, out_bits: Some(1), output_units: OutputUnitsName::Shared, ..base.clone() });
    cfgs.push(RawConfig { rows: 1, cols: 1, lanes: 1, weight_bits: 2, act_bits: 3, rounding: RoundingName::HalfUp, ..base });
    check_all("bases", cfgs, &[1, 2], StimulusOptions { layers: 2, tiles: 5, max_steps: 16, abort: true });
}

/// Bit-serial activations: unsigned and signed activations of 1 to 8 bits against int, odd and codebook
/// weights, per-column and shared output units, both output stages, a saturating accumulator; the
/// exact latency check covers the extra act_bits - 1 cycles. Also arrays without hold registers
/// (`double_buffer = false`), bit-serial and parallel.
#[test]
fn bit_serial_activations() {
    let base = RawConfig { rows: 2, cols: 3, lanes: 2, max_depth: 64, act_serial: true, output_units: OutputUnitsName::PerColumn, ..RawConfig::default() };
    use EncodingName::{Codebook, Int, Odd, Unsigned};
    let cfgs = vec![
        RawConfig { weight_bits: 8, act_bits: 8, ..base.clone() },
        RawConfig { weight_bits: 4, act_bits: 4, act_encoding: Int, ..base.clone() },
        RawConfig { weight_bits: 3, weight_encoding: Odd, act_bits: 5, ..base.clone() },
        RawConfig { weight_bits: 2, act_bits: 1, ..base.clone() },
        RawConfig { weight_bits: 4, act_bits: 1, act_encoding: Int, ..base.clone() },
        RawConfig { weight_bits: 3, weight_encoding: Codebook, level_bits: 6, act_bits: 3, ..base.clone() },
        RawConfig { rows: 3, cols: 4, weight_bits: 8, act_bits: 8, output_units: OutputUnitsName::Shared, ..base.clone() },
        RawConfig { lanes: 5, weight_bits: 6, act_bits: 7, act_encoding: Int, output_units: OutputUnitsName::Shared, ..base.clone() },
        RawConfig { weight_bits: 2, act_bits: 8, out_bits: Some(2), ..base.clone() },
        RawConfig { lanes: 16, weight_bits: 1, weight_encoding: Odd, act_bits: 4, act_encoding: Unsigned, max_depth: 256, ..base.clone() },
        RawConfig { rows: 1, cols: 1, lanes: 1, weight_bits: 8, act_bits: 8, ..base.clone() },
        RawConfig { rows: 3, cols: 2, lanes: 1, weight_bits: 5, act_bits: 6, act_encoding: Int, output_units: OutputUnitsName::Shared, ..base.clone() },
        // no hold registers: bit-serial and parallel, per column and shared
        RawConfig { rows: 3, weight_bits: 8, act_bits: 8, double_buffer: false, ..base.clone() },
        RawConfig { rows: 3, cols: 4, lanes: 3, act_serial: false, weight_bits: 4, act_bits: 4, double_buffer: false, output_units: OutputUnitsName::Shared, ..base.clone() },
        RawConfig { rows: 4, cols: 2, act_serial: false, weight_bits: 3, weight_encoding: Odd, act_bits: 2, out_bits: Some(2), double_buffer: false, ..base },
    ];
    check_all("serial", cfgs, &[1, 2], StimulusOptions { layers: 2, tiles: 5, max_steps: 16, abort: true });
}

/// One output unit shared by all columns: both output stages, several column counts (including one),
/// rounding modes and codebook weights.
#[test]
fn shared_output_unit() {
    let base = RawConfig { rows: 3, cols: 4, lanes: 2, max_depth: 64, output_units: OutputUnitsName::Shared, ..RawConfig::default() };
    let cfgs = vec![
        base.clone(),
        RawConfig { cols: 1, ..base.clone() },
        RawConfig { cols: 5, weight_bits: 8, act_bits: 8, rounding: RoundingName::HalfUp, ..base.clone() },
        RawConfig { cols: 3, out_bits: Some(2), ..base.clone() },
        RawConfig { cols: 2, rows: 1, weight_bits: 1, weight_encoding: EncodingName::Odd, act_bits: 1, act_encoding: EncodingName::Odd, lanes: 8, ..base.clone() },
        RawConfig { cols: 3, weight_bits: 3, weight_encoding: EncodingName::Codebook, level_bits: 7, act_bits: 5, ..base },
    ];
    check_all("shared", cfgs, &[1, 2, 3], StimulusOptions { layers: 2, tiles: 5, max_steps: 24, abort: true });
}

/// Arrays without input registers (`input_registers = false`): the PEs' first stage takes the ports.
/// Every PE kind (products, odd weights with their row correction, XNOR, bases, codebook levels),
/// both output arrangements, no hold registers, a saturating accumulator.
#[test]
fn without_input_registers() {
    use EncodingName::*;
    let base = RawConfig { rows: 2, cols: 3, lanes: 4, max_depth: 64, input_registers: false, ..RawConfig::default() };
    let cfgs = vec![
        base.clone(),
        RawConfig { weight_encoding: Odd, weight_bits: 3, output_units: OutputUnitsName::PerColumn, ..base.clone() },
        RawConfig { lanes: 16, weight_bits: 1, weight_encoding: Odd, act_bits: 1, act_encoding: Odd, tree_levels_per_stage: 1, ..base.clone() },
        RawConfig { weight_bits: 2, weight_encoding: Bases, act_bits: 2, act_encoding: Bases, ..base.clone() },
        RawConfig { weight_bits: 2, weight_encoding: Codebook, act_encoding: Int, ..base.clone() },
        RawConfig { lanes: 2, double_buffer: false, ..base.clone() },
        RawConfig { acc_bits: Some(20), acc_saturate: true, weight_bits: 8, act_bits: 8, ..base },
    ];
    check_all("no-input-regs", cfgs, &[1, 2], StimulusOptions { layers: 2, tiles: 5, max_steps: 24, abort: true });
}

/// Running totals (`running_totals = true`): accumulators never cleared, the drain subtracts each PE's
/// previous total. One output unit per column and shared, one row and one column (the one-item
/// register form), two items per tile (the memory read at the issue), more (read a cycle ahead), products, odd weights, XNOR, codebook levels, bit-serial activations, thresholds,
/// W8A8, with and without input registers.
#[test]
fn running_totals() {
    use EncodingName::*;
    let base = RawConfig { rows: 3, cols: 2, lanes: 4, max_depth: 64, running_totals: true, ..RawConfig::default() };
    let per_col = OutputUnitsName::PerColumn;
    let cfgs = vec![
        base.clone(),
        RawConfig { output_units: per_col, ..base.clone() },
        RawConfig { rows: 1, cols: 1, ..base.clone() },
        RawConfig { rows: 1, cols: 3, output_units: per_col, ..base.clone() },
        // two values per tile through a difference unit: its memory is read at the issue
        RawConfig { rows: 2, output_units: per_col, ..base.clone() },
        RawConfig { rows: 1, cols: 2, ..base.clone() },
        // one column with its own output unit: the difference unit takes the whole hold-register bus
        // (Yosys' check once failed on a signed cast of that whole-bus port connection)
        RawConfig { rows: 2, cols: 1, output_units: per_col, ..base.clone() },
        RawConfig { rows: 4, cols: 3, weight_encoding: Odd, weight_bits: 3, act_encoding: Int, ..base.clone() },
        RawConfig { lanes: 16, weight_bits: 1, weight_encoding: Odd, act_bits: 1, act_encoding: Odd, output_units: per_col, tree_levels_per_stage: 1, ..base.clone() },
        RawConfig { lanes: 32, weight_bits: 1, weight_encoding: Odd, act_bits: 1, act_encoding: Odd, input_registers: false, ..base.clone() },
        RawConfig { weight_bits: 2, act_bits: 2, input_registers: false, ..base.clone() },
        RawConfig { weight_bits: 2, weight_encoding: Codebook, act_encoding: Int, output_units: per_col, ..base.clone() },
        RawConfig { lanes: 2, act_serial: true, act_bits: 3, ..base.clone() },
        RawConfig { lanes: 1, act_serial: true, act_encoding: Int, act_bits: 4, output_units: per_col, ..base.clone() },
        // wide products and a deep tile: the totals wrap many times over a run
        RawConfig { lanes: 2, weight_bits: 8, act_bits: 8, max_depth: 512, ..base },
    ];
    check_all("running-totals", cfgs, &[1, 2, 3], StimulusOptions { layers: 2, tiles: 6, max_steps: 24, abort: true });
}

/// PEs with their own copy of their inputs (`pe_input_regs = true`): every PE kind, bit-serial with one
/// lane and several, with running totals and without input registers.
#[test]
fn pe_input_copies() {
    use EncodingName::*;
    let base = RawConfig { rows: 3, cols: 3, lanes: 4, max_depth: 64, pe_input_regs: true, ..RawConfig::default() };
    let cfgs = vec![
        RawConfig { running_totals: true, ..base.clone() },
        RawConfig { weight_encoding: Odd, weight_bits: 3, output_units: OutputUnitsName::PerColumn, ..base.clone() },
        RawConfig { lanes: 16, weight_bits: 1, weight_encoding: Odd, act_bits: 1, act_encoding: Odd, input_registers: false, ..base.clone() },
        RawConfig { weight_bits: 2, weight_encoding: Bases, act_bits: 2, act_encoding: Bases, ..base.clone() },
        RawConfig { lanes: 1, act_serial: true, act_bits: 4, running_totals: true, ..base.clone() },
        RawConfig { lanes: 3, act_serial: true, act_encoding: Int, act_bits: 3, ..base },
    ];
    check_all("pe-copies", cfgs, &[1, 2], StimulusOptions { layers: 2, tiles: 5, max_steps: 24, abort: true });
}

/// Output modes for networks: logits (the signed biased accumulator), a finer bias (`bias_frac_bits`)
/// through the clip/multiply stage and the thresholds, and basis-coded outputs (the sign decision
/// tree of 1 or 2 bases) after products, XNOR and bases PEs; per column and shared, the thresholds'
/// two-half comparison, running totals.
#[test]
fn network_output_modes() {
    use EncodingName::*;
    use OutModeName::{Bases as BasesOut, Logits};
    let base = RawConfig { rows: 2, cols: 3, lanes: 2, max_depth: 64, output_units: OutputUnitsName::PerColumn, ..RawConfig::default() };
    let shared = OutputUnitsName::Shared;
    let cfgs = vec![
        RawConfig { out_mode: Logits, ..base.clone() },
        RawConfig { out_mode: Logits, weight_bits: 2, act_bits: 2, bias_frac_bits: 3, output_units: shared, ..base.clone() },
        RawConfig { out_mode: Logits, weight_bits: 2, weight_encoding: Bases, act_bits: 2, act_encoding: Bases, level_bits: 6, bias_frac_bits: 2, ..base.clone() },
        RawConfig { bias_frac_bits: 4, ..base.clone() },
        RawConfig { bias_frac_bits: 8, weight_bits: 8, act_bits: 8, mult_bits: 5, output_units: shared, ..base.clone() },
        RawConfig { bias_frac_bits: 3, weight_bits: 2, act_bits: 2, max_depth: 4096, ..base.clone() },
        RawConfig { out_mode: BasesOut, weight_bits: 2, act_bits: 2, ..base.clone() },
        RawConfig { out_mode: BasesOut, weight_bits: 1, weight_encoding: Odd, act_bits: 1, act_encoding: Odd, lanes: 8, output_units: shared, ..base.clone() },
        RawConfig { out_mode: BasesOut, weight_bits: 2, weight_encoding: Bases, act_bits: 2, act_encoding: Bases, level_bits: 6, bias_frac_bits: 2, max_depth: 2048, output_units: shared, ..base.clone() },
        RawConfig { out_mode: BasesOut, weight_bits: 4, act_bits: 4, out_bits: Some(2), running_totals: true, rows: 3, ..base },
    ];
    check_all("out-modes", cfgs, &[1, 2], StimulusOptions { layers: 2, tiles: 5, max_steps: 24, abort: true });
}

/// A seeded random sweep over the whole configuration space (within a size that simulates quickly).
#[test]
fn random_config_sweep() {
    let mut rng = Rng::new(2026);
    let enc = |rng: &mut Rng, w: bool| match rng.below(if w { 2 } else { 3 }) {
        0 => EncodingName::Int,
        1 => EncodingName::Odd,
        _ => EncodingName::Unsigned,
    };
    let cfgs: Vec<RawConfig> = (0..16)
        .map(|_| {
            let lanes = 1 + rng.below(8) as u32;
            RawConfig {
                rows: 1 + rng.below(4) as u32,
                cols: 1 + rng.below(4) as u32,
                lanes,
                max_depth: lanes * (1 + rng.below(100) as u32),
                weight_bits: 1 + rng.below(8) as u32,
                weight_encoding: enc(&mut rng, true),
                act_bits: 1 + rng.below(8) as u32,
                act_encoding: enc(&mut rng, false),
                out_bits: Some(1 + rng.below(8) as u32),
                mult_bits: 1 + rng.below(24) as u32,
                rounding: if rng.chance(50) { RoundingName::HalfEven } else { RoundingName::HalfUp },
                ..RawConfig::default()
            }
        })
        .collect();
    check_all("random", cfgs, &[7, 8], StimulusOptions { layers: 2, tiles: 5, max_steps: 16, abort: true });
}

/// Generate `raw` into `work_dir(group)`, check that the default `qmac sim` stimulus passes on it,
/// apply `mutate` to the emitted `rtl/<file>` (which must change it: `moved` says what was not found),
/// and check that the same stimulus then fails with a mismatch. Returns the passing run.
fn mutation_fails(group: &str, raw: RawConfig, file: &str, moved: &str, mutate: impl Fn(&str) -> String) -> qmac::flow::SimOutcome {
    use qmac::config::Config;
    use qmac::flow::{self, SimOptions};
    let cfg = Config::new(raw).unwrap();
    let dir = work_dir(group);
    flow::generate(&cfg, &dir).unwrap();
    let opts = SimOptions::default();
    let ok = with_slot(|| flow::simulate_rtl(&dir, &cfg, &opts)).unwrap();
    assert!(ok.report.summary.contains("PASS"), "{}", ok.report.summary);
    let path = dir.join("rtl").join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    let mutated = mutate(&text);
    assert_ne!(mutated, text, "{moved}");
    std::fs::write(&path, mutated).unwrap();
    let e = with_slot(|| flow::simulate_rtl(&dir, &cfg, &opts)).expect_err("the mutated design must fail");
    let e = e.to_string();
    assert!(e.contains("mismatch"), "{e}");
    ok
}

/// The directed corners catch a requantizer that rounds ties the wrong way: with the emitted rounding
/// flipped from half_even to half_up (the tie bit `q_low[0]` replaced by 1), the default `qmac sim`
/// stimulus fails, where random stimulus alone had no exact tie with an even quotient. The same
/// design unaltered passes first.
#[test]
fn flipped_rounding_mode_fails_the_default_simulation() {
    let raw = RawConfig { rows: 2, cols: 2, lanes: 2, max_depth: 64, ..RawConfig::default() };
    assert_eq!(raw.rounding, RoundingName::HalfEven);
    let ok = mutation_fails("mutation-rounding", raw, "qmac_requant.v", "the tie term of the emitted requantizer has moved", |t| {
        t.replace("(sticky || q_low[0])", "(sticky || 1'b1)")
    });
    assert!(ok.corners.get(qmac::corners::Corner::TieEven).unwrap() > 0, "{}", ok.corners);
}

/// Exact DSP packing (`pack`): W4A4 two lanes per multiply and W2A2 three (`auto`), a remaining
/// plain lane, int weights with unsigned activations as offset-binary codes (borrow-free; 1-bit and
/// codebook weights too), odd-level weights (their codes packed; borrow-free with unsigned
/// activations), signed and odd activations (the
/// borrow of a negative low field either way), a saturating accumulator, running totals, PE input
/// copies (with them the lane operands are registered before the multiplies: the row correction one
/// stage later, a plain lane beside the groups), no input registers, per column and shared output
/// units.
#[test]
fn packed_dsp_lanes() {
    use EncodingName::*;
    use qmac::config::PackName::{Auto, Lanes};
    let base = RawConfig { rows: 2, cols: 3, lanes: 4, max_depth: 64, pack: Lanes(2), ..RawConfig::default() };
    let cfgs = vec![
        base.clone(),
        RawConfig { weight_bits: 2, act_bits: 2, lanes: 7, pack: Auto, output_units: OutputUnitsName::PerColumn, ..base.clone() },
        RawConfig { weight_bits: 3, weight_encoding: Odd, act_bits: 3, act_encoding: Int, lanes: 5, running_totals: true, pe_input_regs: true, ..base.clone() },
        RawConfig { weight_bits: 2, act_bits: 3, act_encoding: Odd, lanes: 6, pack: Lanes(3), pe_input_regs: true, ..base.clone() },
        RawConfig { weight_bits: 2, weight_encoding: Codebook, level_bits: 5, act_bits: 3, input_registers: false, ..base.clone() },
        RawConfig { acc_bits: Some(12), acc_saturate: true, lanes: 8, ..base.clone() },
        RawConfig { rows: 3, cols: 2, weight_bits: 5, act_bits: 5, act_encoding: Int, lanes: 2, out_bits: Some(2), ..base.clone() },
        RawConfig { lanes: 5, pe_input_regs: true, running_totals: true, ..base.clone() },
        RawConfig { weight_bits: 1, act_bits: 2, lanes: 6, pack: Auto, ..base.clone() },
        RawConfig { weight_bits: 3, weight_encoding: Odd, lanes: 5, pack: Auto, tree_levels_per_stage: 1, ..base },
    ];
    check_all("packed", cfgs, &[1, 2], StimulusOptions { layers: 2, tiles: 5, max_steps: 24, abort: true });
}

/// The packing's borrow correction is needed: with the borrow bit dropped from every packed group of
/// the emitted PE (W4A4 with signed activations, whose low fields can be negative), the default
/// `qmac sim` stimulus fails; the same design unaltered passes first.
#[test]
fn packing_without_the_borrow_fails_the_simulation() {
    use qmac::config::PackName;
    let raw = RawConfig { rows: 2, cols: 2, lanes: 4, max_depth: 64, pack: PackName::Lanes(2), act_encoding: EncodingName::Int, ..RawConfig::default() };
    mutation_fails("mutation-borrow", raw, "qmac_pe.v", "the borrow terms of the emitted PE have moved", |text| {
        let mutated = text.replace("{8'd0, pack0_q[0]}", "9'd0").replace("{8'd0, pack1_q[0]}", "9'd0");
        assert_eq!(text.matches("_q[0]}").count(), 2, "the borrow terms of the emitted PE have moved");
        assert_eq!(mutated.matches("_q[0]}").count(), 0);
        mutated
    });
}

/// Packed int weights with unsigned activations are multiplied as offset-binary codes, and the row
/// correction `8 * sum a` makes the dot product exact: with the emitted correction halved, the
/// default `qmac sim` stimulus fails; the same design unaltered passes first.
#[test]
fn packed_offset_codes_without_their_correction_fail_the_simulation() {
    use qmac::config::PackName;
    let raw = RawConfig { rows: 2, cols: 2, lanes: 4, max_depth: 64, pack: PackName::Lanes(2), ..RawConfig::default() };
    assert_eq!(format!("{:?}", qmac::config::Config::new(raw.clone()).unwrap().mac_kind()), "OffsetWeights");
    mutation_fails("mutation-offset", raw, "qmac_rowsum.v", "the row correction of the emitted design has moved", |text| {
        assert_eq!(text.matches("sum_w << 3;").count(), 1, "the row correction of the emitted design has moved");
        text.replace("sum_w << 3;", "sum_w << 2;")
    });
}

/// Paired 8 x 8 products (`dsp_pairs`): every signedness of the unit (int x unsigned W8A8, int x int,
/// odd-level weight codes x unsigned and x odd activations), a plain lane beside a pair, products
/// narrower than the unit's 16 bits, codebook levels, PE input copies, running totals, no input
/// registers, a saturating accumulator, per column and shared output units.
#[test]
fn dsp_pair_lanes() {
    use EncodingName::*;
    let base = RawConfig { rows: 2, cols: 3, lanes: 3, max_depth: 64, weight_bits: 8, act_bits: 8, dsp_pairs: 1, ..RawConfig::default() };
    let cfgs = vec![
        base.clone(),
        RawConfig { lanes: 4, dsp_pairs: 2, act_encoding: Int, output_units: OutputUnitsName::PerColumn, ..base.clone() },
        RawConfig { lanes: 2, weight_encoding: Odd, weight_bits: 5, running_totals: true, ..base.clone() },
        RawConfig { lanes: 5, dsp_pairs: 2, weight_encoding: Odd, act_encoding: Odd, act_bits: 7, pe_input_regs: true, ..base.clone() },
        RawConfig { weight_bits: 3, act_bits: 2, input_registers: false, output_units: OutputUnitsName::PerColumn, ..base.clone() },
        RawConfig { lanes: 4, weight_encoding: Codebook, weight_bits: 3, level_bits: 8, act_encoding: Int, act_bits: 6, ..base.clone() },
        RawConfig { rows: 3, cols: 2, lanes: 2, acc_bits: Some(18), acc_saturate: true, ..base },
    ];
    check_all("dsp-pairs", cfgs, &[1, 2], StimulusOptions { layers: 2, tiles: 5, max_steps: 24, abort: true });
}

/// The co-simulation sees the paired unit's signedness: with the unsigned activations of the emitted
/// `qmac_mul8x2` read as signed in one product, the default `qmac sim` stimulus fails; the same
/// design unaltered passes first.
#[test]
fn paired_unit_with_signed_activations_fails_the_simulation() {
    let raw = RawConfig { rows: 2, cols: 2, lanes: 2, max_depth: 64, weight_bits: 8, act_bits: 8, dsp_pairs: 1, ..RawConfig::default() };
    mutation_fails("mutation-pair-sign", raw, "qmac_mul8x2.v", "the second product of the emitted unit has moved", |t| {
        t.replace("$signed({{7{y1_v[8]}}, y1_v})", "$signed({{8{y1_i[7]}}, y1_i})")
    });
}
