//! Write a seeded random sample of valid configurations over the whole configuration space (every
//! encoding, output stage and option, small shapes) as minimal TOML files, for
//! `scripts/emitted-tree.sh`:
//!
//! ```text
//! cargo run --release -p qmac-testbenches --example random_configs -- <dir> [count] [seed]
//! ```

use qmac::config::{Config, EncodingName, MemoryStyleName, OutModeName, OutputUnitsName, PackName, RawConfig, RequantName, RoundingName};
use qmac::rng::Rng;
use qmac_testbenches::write_configs;
use std::path::PathBuf;

fn pick<T: Copy>(rng: &mut Rng, from: &[T]) -> T {
    from[rng.below(from.len() as u64) as usize]
}

/// `1..=small` with probability `pct` percent, else `1..=large`.
fn upto(rng: &mut Rng, pct: u64, small: u64, large: u64) -> u32 {
    let n = if rng.chance(pct) { small } else { large };
    1 + rng.below(n) as u32
}

/// One random configuration; about half of them are valid.
fn random(rng: &mut Rng) -> RawConfig {
    use EncodingName::*;
    let lanes = upto(rng, 80, 8, 40);
    let bases = rng.chance(15);
    let (wb, ab) = if bases { (1 + rng.below(4) as u32, 1 + rng.below(4) as u32) } else { (1 + rng.below(8) as u32, 1 + rng.below(8) as u32) };
    let weight_encoding = if bases { pick(rng, &[Bases, Bases, Odd]) } else { pick(rng, &[Int, Int, Odd, Codebook]) };
    let act_encoding = if bases && weight_encoding == Odd { Bases } else if bases { pick(rng, &[Bases, Bases, Odd]) } else { pick(rng, &[Unsigned, Unsigned, Int, Odd]) };
    let saturate = rng.chance(10);
    RawConfig {
        module_prefix: if rng.chance(10) { "net_l2".into() } else { "qmac".into() },
        rows: upto(rng, 85, 6, 16),
        cols: upto(rng, 85, 6, 16),
        lanes,
        max_depth: lanes * upto(rng, 80, 64, 2048),
        weight_bits: if weight_encoding == Odd && bases { 1 } else { wb },
        weight_encoding,
        level_bits: 2 + rng.below(15) as u32,
        act_bits: if act_encoding == Odd && bases { 1 } else { ab },
        act_encoding,
        out_bits: rng.chance(60).then(|| 1 + rng.below(8) as u32),
        acc_bits: saturate.then(|| 8 + rng.below(16) as u32),
        acc_saturate: saturate,
        mult_bits: 1 + rng.below(32) as u32,
        rounding: pick(rng, &[RoundingName::HalfEven, RoundingName::HalfUp]),
        requant: pick(rng, &[RequantName::Auto, RequantName::Auto, RequantName::Multiply, RequantName::Thresholds]),
        act_serial: rng.chance(20),
        double_buffer: rng.chance(80),
        tree_levels_per_stage: 1 + rng.below(4) as u32,
        input_registers: rng.chance(75),
        running_totals: rng.chance(25),
        pe_input_regs: rng.chance(20),
        output_units: pick(rng, &[OutputUnitsName::PerColumn, OutputUnitsName::Shared]),
        out_mode: pick(rng, &[OutModeName::Pact, OutModeName::Pact, OutModeName::Pact, OutModeName::Pact, OutModeName::Logits, OutModeName::Bases]),
        bias_frac_bits: if rng.chance(20) { 1 + rng.below(8) as u32 } else { 0 },
        pack: if rng.chance(15) { pick(rng, &[PackName::Auto, PackName::Lanes(2), PackName::Lanes(3)]) } else { PackName::Off },
        // not drawn: the same seed gives the same configurations, which an older qmac can read
        dsp_pairs: 0,
        bit_planes: true,
        memory_style: MemoryStyleName::Block,
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: random_configs <dir> [count (default 400)] [seed (default 2027)]";
    let dir = PathBuf::from(args.first().expect(usage));
    let count: usize = args.get(1).map_or(400, |a| a.parse().expect(usage));
    let seed: u64 = args.get(2).map_or(2027, |a| a.parse().expect(usage));
    let mut rng = Rng::new(seed);
    let mut cfgs = Vec::new();
    let mut tries = 0;
    while cfgs.len() < count {
        tries += 1;
        assert!(tries < 100 * count + 1000, "too few valid random configurations");
        let raw = random(&mut rng);
        if Config::new(raw.clone()).is_ok() {
            cfgs.push(raw);
        }
    }
    write_configs(&dir, &cfgs);
    eprintln!("{} configurations ({tries} drawn) in {}", cfgs.len(), dir.display());
}
