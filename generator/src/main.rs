use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use qmac::config::{Config, EncodingName, MemoryStyleName, OutModeName, OutputUnitsName, PackName, RawConfig, RequantName, RoundingName, BITS_RANGE, DIM_RANGE, MAX_DEPTH_LIMIT};
use qmac::flow::{self, SimOptions};
use qmac::vectors::StimulusOptions;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// qmac: bit-exact low-bit quantized MAC-array hardware for FPGAs, with an open flow.
///
/// Pick weight and activation precisions (1 to 8 bits), get synthesizable Verilog-2005 for a MAC array
/// with PACT clipping and per-channel requantization, prove it bit-exact against the software reference
/// in Verilator, and take it through Yosys and nextpnr.
///
/// Typical use:
///   qmac generate --weight-bits 2 --act-bits 4 --rows 8 --cols 8 -o build/w2a4
///   qmac sim build/w2a4
///   qmac run                 (the whole job on the built-in default configuration)
///   qmac net quantize --model mlp.toml --weights mlp.npz --calib train.npz -o build/mlp
///   qmac net sim build/mlp --data test.npz      (a whole network through the RTL)
///
/// Every external tool runs with a time limit (lint, yosys check and bitstream packing 10 min,
/// verilation 15 min, model compile and simulation 60 min, synthesis and each place-and-route seed
/// 120 min); on timeout or Ctrl-C the tool is stopped with every process it started.
#[derive(Parser, Debug)]
#[command(name = "qmac", version, verbatim_doc_comment)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
    /// Multiply every external tool's time limit by FACTOR (0.001 to 1000; e.g. 3 on a slow machine).
    #[arg(long, global = true, value_name = "FACTOR", env = qmac::runner::SCALE_VAR, value_parser = qmac::runner::parse_scale)]
    timeout_scale: Option<f64>,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Generate Verilog, filelist.f, manifest.json and config.toml into a build directory.
    ///
    /// The configuration comes from --config (TOML; fields as in `qmac config`), then each flag given
    /// overrides its field. The output directory is written all at once: a failure leaves nothing half
    /// written, and an existing directory is replaced only if it is a qmac build directory.
    Generate(GenerateArgs),
    /// Lint (verilator --lint-only -Wall) and check (yosys proc; check -assert; no latches) a build directory.
    Check {
        /// Build directory made by `qmac generate`.
        dir: PathBuf,
    },
    /// Co-simulate a build directory in Verilator against the reference model.
    ///
    /// Writes random stimulus, then directed corner stimulus (exact rounding ties, the clip level +-1,
    /// the first saturating value, the accumulator's extremes, thresholds +-1), and the reference's
    /// expected outputs; builds the Verilator model with the self-checking testbench (reused when up to
    /// date), and runs it with random valid/ready stalls on every stream and a reset in the middle of a
    /// stream. Prints PASS or the first mismatch, and how often each corner class was hit (n/a: the
    /// design cannot reach it).
    Sim(SimArgs),
    /// The main job: generate for a target with its defaults, lint and check, simulate against the
    /// reference, synthesise beside the plain array, and print a summary with each step's time.
    ///
    /// Without --config the configuration is configs/main-job.toml (built in; flags override it): a
    /// W2A2 array of 4x4 PEs with 4 lanes, 64 MACs per cycle like the plain 8x8 array it is compared
    /// with, on the iCE40 UP5K.
    Run(RunArgs),
    /// Synthesise, place and route a build directory with Yosys and nextpnr (iCE40, ECP5), inside a small
    /// board wrapper that serialises the wide buses; prints a QoR report (LUTs, FFs, DSPs, fmax, GOPS)
    /// and writes qor.json. `--baseline` also runs the plain behavioural array of the same shape.
    Synth(qmac::synth::cli::SynthArgs),
    /// Generate and synthesise a grid of precisions (in parallel), with a table, JSON and an SVG plot of
    /// LUTs per MAC and fmax against precision. 1-bit widths use binary (+-1) encodings.
    Sweep(SweepCmd),
    /// Quantize a trained layer's float tensors (safetensors, .npy, .npz) into the array's integer
    /// parameters, with a quantization-error report per scheme; see docs/quantize.md.
    Quantize(qmac::quantize::cli::QuantizeArgs),
    /// Whole networks: `qmac net quantize` (calibrate and quantize a trained network described in
    /// TOML) and `qmac net sim` (run a data set through every layer in the generated array, bit-exact,
    /// with accuracy and cycles); see docs/network.md.
    #[command(subcommand)]
    Net(qmac::net::cli::NetCmd),
    /// Train a network (float, then quantization-aware training with PACT, SAWB, learnable levels) and
    /// export it into a directory that `qmac net sim` runs through the array, bit-exact.
    ///
    /// Example:
    ///   qmac train --model cnn.toml --data train.npz --scheme w2a2 -o build/cnn --val test.npz
    ///   qmac net sim build/cnn --data test.npz
    ///
    /// The model is a network description in the format of `qmac net` (docs/network.md): dense,
    /// conv2d (square kernel), batch_norm, max_pool, flatten, activation layers; the last layer dense
    /// (the logits). Its [quant] is replaced by the scheme's; [input] bits, [array] and the tensor
    /// names are kept (the names of the exported weights). The data files are .npz with `x` ([N, ...]
    /// samples, float) and `y` ([N] integer labels 0..classes).
    ///
    /// Schemes: wKaM (SAWB K-bit weights, PACT M-bit activations, one learned clip per layer),
    /// wKaM-pc (a learned clip per channel), wKaM-levels (a learned table of 2^K weight levels,
    /// channel-wise PACT), wKaM-uniform (plain uniform weights, calibrated clips); K, M in 1..=8;
    /// binary-ls1, binary-ls2, binary-lsT, binary-gf1, binary-gf2 (ls-1 weights; binary activations
    /// of that least-squares scheme, computed by each layer's output stage from the pre-activation;
    /// the model's activation layers mark where they go).
    ///
    /// Writes network.json, net.toml and weights.safetensors (the trained network in the network
    /// format: batch norm folded, every trained clip and level table given), model.toml (the model
    /// as given), quantize.md, and train.json (every epoch, float / post-training / QAT accuracy, and
    /// the exported integer network's accuracy, which is the array's). See docs/training.md.
    #[command(verbatim_doc_comment)]
    Train(TrainArgs),
    /// Compare the quantization schemes (uniform, SAWB, learnable levels, ls-1/ls-2/ls-T/gf-k with PACT
    /// or binary activations) on a seeded sample layer: weight, activation and layer-output error, and
    /// with --target the LUT4 per MAC and fmax of each scheme's array at one shape (docs/quantize.md).
    Schemes(qmac::schemes::SchemesArgs),
    /// Print the configuration (default, or --config with flags applied) as TOML, every field explained
    /// in `docs/configuration.md`.
    Config(ConfigArgs),
    /// Measure: generation time of a 64x64 array; Verilator build time and simulated cycles per second
    /// of the default 8x8 W4A4 array. Prints a table and writes JSON (docs/performance.md has figures).
    Bench {
        /// Scratch directory.
        #[arg(long, default_value = "build/bench")]
        dir: PathBuf,
        /// Print JSON instead of the table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args, Debug, Default, Clone)]
struct ConfigFlags {
    /// TOML configuration file; flags below override its fields.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Module name prefix.
    #[arg(long)]
    prefix: Option<String>,
    /// PE rows (1..=64).
    #[arg(long, value_parser = within(DIM_RANGE))]
    rows: Option<u32>,
    /// PE columns = output channels (1..=64).
    #[arg(long, value_parser = within(DIM_RANGE))]
    cols: Option<u32>,
    /// Products per PE per cycle (1..=64).
    #[arg(long, value_parser = within(DIM_RANGE))]
    lanes: Option<u32>,
    /// Largest reduction depth K in elements (lanes..=16777216); sizes the accumulator.
    #[arg(long, value_parser = within(1..=MAX_DEPTH_LIMIT))]
    max_depth: Option<u32>,
    /// Weight bits (1..=8).
    #[arg(long, value_parser = within(BITS_RANGE))]
    weight_bits: Option<u32>,
    /// Weight encoding (codebook: codes index a run-time table of learned levels; bases: one bit per
    /// binary basis, weight-bits = number of bases).
    #[arg(long, value_enum)]
    weight_encoding: Option<EncodingName>,
    /// Width of a codebook level or of a basis-pair scale (2..=16).
    #[arg(long)]
    level_bits: Option<u32>,
    /// Activation bits (1..=8).
    #[arg(long, value_parser = within(BITS_RANGE))]
    act_bits: Option<u32>,
    /// Activation encoding.
    #[arg(long, value_enum)]
    act_encoding: Option<EncodingName>,
    /// Output code bits (1..=8); default: act bits.
    #[arg(long, value_parser = within(BITS_RANGE))]
    out_bits: Option<u32>,
    /// What the output stage computes: pact (clipped PACT codes), logits (the signed biased
    /// accumulator, unclipped: for a last layer, exact argmax), or bases (the next layer's binary-basis
    /// activation codes, 1 or 2 bases = out-bits, by thresholds on the pre-activation).
    #[arg(long, value_enum)]
    out_mode: Option<OutModeName>,
    /// Fractional bits of the bias (0..=16): the output stage adds the bias to acc * 2^F, so the bias,
    /// clip level and requantizer input are in units of 2^-F accumulator units.
    #[arg(long)]
    bias_frac_bits: Option<u32>,
    /// Accumulator bits; default: exactly enough for max-depth.
    #[arg(long)]
    acc_bits: Option<u32>,
    /// Saturate a narrower accumulator.
    #[arg(long)]
    acc_saturate: bool,
    /// Requantization multiplier bits (1..=32).
    #[arg(long)]
    mult_bits: Option<u32>,
    /// Rounding of the requantization shift.
    #[arg(long, value_enum)]
    rounding: Option<RoundingName>,
    /// Output stage: clip/multiply/shift, or thresholds (out-bits <= 2); auto picks thresholds for
    /// out-bits <= 2.
    #[arg(long, value_enum)]
    requant: Option<RequantName>,
    /// One output unit per column, or one shared unit (smaller; drains rows*cols cycles per tile).
    #[arg(long, value_enum)]
    output_units: Option<OutputUnitsName>,
    /// Bit-serial activations: one activation bit per cycle, a step takes act-bits cycles (no
    /// multipliers in the PEs; unsigned or int activations).
    #[arg(long)]
    act_serial: bool,
    /// No hold registers: the accumulators shift out themselves and the next tile waits for the drain
    /// (one register per PE fewer).
    #[arg(long)]
    no_double_buffer: bool,
    /// Adder levels per pipeline stage in the PEs' adder trees (1..=4; 1 for the highest clock).
    #[arg(long)]
    tree_levels_per_stage: Option<u32>,
    /// No input registers in the array: the PEs' first stage takes the input ports (one cycle less
    /// latency, rows*lanes*act-bits + cols*lanes*weight-bits flip-flops fewer; drive the ports from
    /// registers). Not with --act-serial.
    #[arg(long)]
    no_input_registers: bool,
    /// Running totals: accumulators are never cleared between tiles; the drain subtracts each PE's
    /// previous total, kept in block RAM (one or two drain stages more; fewer logic cells on iCE40).
    /// Not with --no-double-buffer, --acc-saturate or bases.
    #[arg(long)]
    running_totals: bool,
    /// Each PE registers its own copy of its inputs (one more cycle of latency, lanes * (act-bits +
    /// weight-bits) flip-flops per PE): broadcasts along rows and columns become register-to-register
    /// paths. For fmax on ECP5 (with --running-totals); costs logic cells on iCE40. With --pack the
    /// lane operands are registered once more before the multiplies and the products once more after
    /// them (two more cycles).
    #[arg(long)]
    pe_input_regs: bool,
    /// Exact DSP packing: `off`, `auto` (the most lanes whose packed operands fit 16 x 16 bits: an
    /// iCE40 SB_MAC16, an ECP5 MULT18X18D), or lanes per multiply 2..=8 (operands up to 18 x 18
    /// bits). One multiply computes a group's dot product exactly (W4A4: 2 lanes, W2A2: 3); int
    /// weights with unsigned activations are then multiplied as offset-binary codes (w + 2^(b-1)) with
    /// a per-row correction, which needs no borrow. Synthesise with --dsp so that each multiply
    /// becomes one DSP block (on ECP5 with --pe-input-regs for fmax).
    #[arg(long, value_name = "off|auto|N")]
    pack: Option<PackName>,
    /// Lane pairs per PE computed by a paired 8 x 8 product unit, which qmac synth maps onto one iCE40
    /// SB_MAC16 in its dual 8x8 mode (two MACs per block); the other lanes are plain products. Lane
    /// operands must fit 8 bits; not with --pack.
    #[arg(long, value_name = "N")]
    dsp_pairs: Option<u32>,
    /// Lane multipliers instead of bit-plane lane products. By default a PE whose lane products have
    /// at most 4 one-bit partial products (W2A2, W1A2, W2A1, ...; unsigned or two's complement
    /// operands) counts them by weight on carry chains: fewer logic cells, on iCE40 a lower fmax.
    #[arg(long)]
    no_bit_planes: bool,
    /// What the small memories (the shared unit's parameters and output buffer, the running totals'
    /// previous totals) are built from: block (block RAM, the default) or distributed (LUT RAM on
    /// ECP5, flip-flops on iCE40). On ECP5 a block RAM read is the W1A1 and W2A2 designs' critical
    /// path (the ECP5 targets' default is distributed).
    #[arg(long, value_enum, value_name = "STYLE")]
    memory_style: Option<MemoryStyleName>,
}

impl ConfigFlags {
    /// The configuration: built-in defaults < the `--config` file's keys < flags.
    fn resolve(&self) -> Result<Config> {
        let (raw, _) = self.raw(None)?;
        Ok(Config::new(raw)?)
    }

    /// The configuration for `target`, with the target's defaults (docs/synthesis.md, "Per-target
    /// defaults") applied to every field that neither the `--config` file (a key present) nor a flag
    /// sets; without a target as [`ConfigFlags::resolve`].
    fn resolve_for(&self, target: Option<qmac::synth::Target>) -> Result<(Config, Option<TargetApplied>)> {
        self.resolve_for_with(target, None)
    }

    /// [`ConfigFlags::resolve_for`] with `fallback` (name, TOML text) as the file when no `--config`
    /// is given.
    fn resolve_for_with(&self, target: Option<qmac::synth::Target>, fallback: Option<(&str, &str)>) -> Result<(Config, Option<TargetApplied>)> {
        let (raw, explicit) = self.raw(fallback)?;
        match target {
            None => Ok((Config::new(raw)?, None)),
            Some(t) => {
                let (cfg, applied) = qmac::synth::target_defaults::apply(t, raw, &explicit)?;
                Ok((cfg, Some(applied)))
            }
        }
    }

    /// The raw configuration and the names of the fields the user set (keys of the `--config` file,
    /// and the fields of the flags given).
    fn raw(&self, fallback: Option<(&str, &str)>) -> Result<(RawConfig, BTreeSet<String>)> {
        let mut explicit = BTreeSet::new();
        let file = match &self.config {
            Some(p) => {
                let text = qmac::limits::read_text(p, qmac::limits::MAX_TOML_BYTES).with_context(|| format!("cannot read config {}", p.display()))?;
                Some((p.display().to_string(), text))
            }
            None => fallback.map(|(name, text)| (name.to_string(), text.to_string())),
        };
        let mut raw = match file {
            Some((name, text)) => {
                let bad = |e: toml::de::Error| anyhow::anyhow!("cannot parse config {name}: {}", qmac::limits::capped_lines(e.to_string().trim()));
                let raw = toml::from_str::<RawConfig>(&text).map_err(bad)?;
                // the keys present (RawConfig's serde defaults cannot tell absent from default)
                explicit.extend(toml::from_str::<toml::Table>(&text).map_err(bad)?.keys().cloned());
                raw
            }
            None => RawConfig::default(),
        };
        macro_rules! set {
            ($($f:ident => $t:ident),*) => { $( if let Some(v) = &self.$f { raw.$t = v.clone(); explicit.insert(stringify!($t).to_string()); } )* };
        }
        set!(prefix => module_prefix, rows => rows, cols => cols, lanes => lanes, max_depth => max_depth,
             weight_bits => weight_bits, weight_encoding => weight_encoding, level_bits => level_bits, act_bits => act_bits,
             act_encoding => act_encoding, mult_bits => mult_bits, rounding => rounding, requant => requant, output_units => output_units,
             tree_levels_per_stage => tree_levels_per_stage, out_mode => out_mode, bias_frac_bits => bias_frac_bits, pack => pack, dsp_pairs => dsp_pairs, memory_style => memory_style);
        macro_rules! opt {
            ($($f:ident),*) => { $( if self.$f.is_some() { raw.$f = self.$f; explicit.insert(stringify!($f).to_string()); } )* };
        }
        opt!(out_bits, acc_bits);
        macro_rules! flag {
            ($($f:ident => $t:ident = $v:expr),*) => { $( if self.$f { raw.$t = $v; explicit.insert(stringify!($t).to_string()); } )* };
        }
        flag!(acc_saturate => acc_saturate = true, act_serial => act_serial = true, no_input_registers => input_registers = false,
              running_totals => running_totals = true, pe_input_regs => pe_input_regs = true, no_double_buffer => double_buffer = false,
              no_bit_planes => bit_planes = false);
        Ok((raw, explicit))
    }
}

type TargetApplied = qmac::synth::target_defaults::Applied;

/// The line that says what a target's defaults set.
fn describe_applied(a: &TargetApplied) -> String {
    let set: Vec<String> = a.set.iter().map(|s| format!("{} = {}", s.field(), s.value())).collect();
    format!(
        "target {}: its defaults set {}; DSP policy {} (manifest.json records both)",
        a.target,
        if set.is_empty() { "nothing (every field was given)".to_string() } else { set.join(", ") },
        a.dsp.name()
    )
}

#[derive(Args, Debug)]
struct GenerateArgs {
    #[command(flatten)]
    cfg: ConfigFlags,
    /// Output build directory: created, or replaced whole if qmac wrote it (its .qmac-owned marker
    /// lists everything in it); any other non-empty directory is refused.
    #[arg(short, long, value_name = "DIR")]
    out: PathBuf,
    /// The device the design is for: ice40-up5k, ice40-hx8k, ecp5-25k, ecp5-85k. Its defaults (the
    /// options measured best there: docs/synthesis.md) fill every field that neither --config nor a
    /// flag sets; manifest.json records the target, those fields and the DSP policy, which
    /// `qmac synth` then uses when given none.
    #[arg(long, value_parser = parse_target)]
    target: Option<qmac::synth::Target>,
}

fn parse_target(s: &str) -> Result<qmac::synth::Target, String> {
    s.parse::<qmac::synth::Target>().map_err(|e| e.to_string())
}

#[derive(Args, Debug)]
struct StimFlags {
    /// Seed of the stimulus, parameters and stalls.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Stall probability on every stream, percent (0..=90).
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u32).range(0..=90))]
    stall: u32,
    /// Parameter sets (layers) loaded one after another (1..=1000).
    #[arg(long, default_value_t = 2, value_parser = within(flow::LAYERS_RANGE))]
    layers: u32,
    /// Tiles per layer (1..=100000).
    #[arg(long, default_value_t = 6, value_parser = within(flow::TILES_RANGE))]
    tiles: u32,
    /// Most steps per tile (at least 1; capped at max-depth / lanes). A run holds at most 2^24
    /// activation and weight codes: layers x tiles x steps x (rows + cols) x lanes.
    #[arg(long, default_value_t = 8, value_parser = within(flow::MAX_STEPS_RANGE))]
    max_steps: u32,
}

impl StimFlags {
    fn options(&self) -> SimOptions {
        SimOptions {
            seed: self.seed,
            stall_pct: self.stall,
            stimulus: StimulusOptions { layers: self.layers, tiles: self.tiles, max_steps: self.max_steps, abort: true },
            ..SimOptions::default()
        }
    }
}

#[derive(Args, Debug)]
struct SimArgs {
    /// Build directory made by `qmac generate`, or with --inputs a directory made by `qmac quantize`.
    dir: PathBuf,
    /// Real input activations (float tensor: .npy, .npz or .safetensors) to run through the quantized
    /// layer in DIR: the array is generated into DIR/hw and checked bit-exact on this data.
    #[arg(long, value_name = "FILE")]
    inputs: Option<PathBuf>,
    /// Tensor name inside --inputs (for .npz and .safetensors files with several tensors).
    #[arg(long, value_name = "NAME")]
    inputs_name: Option<String>,
    #[command(flatten)]
    stim: StimFlags,
}

#[derive(Args, Debug)]
struct RunArgs {
    #[command(flatten)]
    cfg: ConfigFlags,
    /// Build directory.
    #[arg(short, long, value_name = "DIR", default_value = "build/default")]
    out: PathBuf,
    #[command(flatten)]
    stim: StimFlags,
    /// The target: ice40-up5k, ice40-hx8k, ecp5-25k, ecp5-85k. Its defaults (as for
    /// `qmac generate --target`) fill every field that neither --config nor a flag sets, and its
    /// DSP policy is used for synthesis.
    #[arg(long, default_value = "ice40-up5k", value_parser = parse_target)]
    target: qmac::synth::Target,
    /// Skip synthesis.
    #[arg(long)]
    no_synth: bool,
    /// Do not synthesise the plain array of the same shape and precision beside the design.
    #[arg(long)]
    no_baseline: bool,
}

#[derive(Args, Debug)]
struct SweepCmd {
    #[command(flatten)]
    sweep: qmac::synth::cli::SweepArgs,
    /// Output units of every generated point (per-column or shared) [default: shared, or with
    /// --target-defaults the target's].
    #[arg(long, value_enum)]
    output_units: Option<OutputUnitsName>,
    /// Largest reduction depth K of every generated point (sizes the accumulators; lanes..=16777216).
    #[arg(long, default_value_t = 512, value_parser = within(1..=MAX_DEPTH_LIMIT))]
    max_depth: u32,
}

#[derive(Args, Debug)]
struct ConfigArgs {
    #[command(flatten)]
    cfg: ConfigFlags,
}

/// A clap parser for a `u32` in `r` (the ranges come from the configuration and the flows).
fn within(r: std::ops::RangeInclusive<u32>) -> clap::builder::RangedI64ValueParser<u32> {
    clap::value_parser!(u32).range(i64::from(*r.start())..=i64::from(*r.end()))
}

fn step(msg: &str) {
    eprintln!("qmac: {msg}");
}

fn generate(cfg: &Config, applied: Option<&TargetApplied>, out: &Path) -> Result<()> {
    let record = applied.map(|a| a.record());
    let g = flow::generate_for(cfg, record.as_ref(), out)?;
    println!("generated {} ({} modules, acc {} bits, latency {} cycles, {} MACs/cycle) in {}", cfg.short_name(), g.rtl.len(), cfg.acc_bits(), cfg.latency(), cfg.macs_per_cycle(), out.display());
    if let Some(a) = applied {
        println!("{}", describe_applied(a));
    }
    Ok(())
}

fn simulate(dir: &Path, opts: &SimOptions) -> Result<()> {
    step("building the Verilator model and simulating against the reference");
    let t0 = Instant::now();
    let o = flow::simulate(dir, opts)?;
    println!("sim: {} (model build {:.1} s, total {:.1} s)", o.report.summary.trim_start_matches("qmac-tb: "), o.build_time.as_secs_f64(), t0.elapsed().as_secs_f64());
    println!("corners hit: {}", o.corners);
    Ok(())
}

/// Errors print as their message and its causes on one line (never a backtrace), exit status 1.
fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    if let Some(scale) = cli.timeout_scale {
        qmac::runner::set_timeout_scale(scale);
    }
    if let Err(e) = qmac::runner::install_interrupt_handler() {
        eprintln!("qmac: warning: cannot watch for Ctrl-C ({e}); an interrupted run may leave a tool running");
    }
    match run(cli.cmd) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cmd: Cmd) -> Result<()> {
    match cmd {
        Cmd::Generate(a) => {
            let (cfg, applied) = a.cfg.resolve_for(a.target)?;
            generate(&cfg, applied.as_ref(), &a.out)
        }
        Cmd::Check { dir } => {
            flow::check(&dir)?;
            println!("check: verilator -Wall lint clean; yosys check -assert clean, no latches");
            Ok(())
        }
        Cmd::Sim(a) => match &a.inputs {
            None => simulate(&a.dir, &a.stim.options()),
            Some(inputs) => {
                step("generating the layer's array and simulating it on the given inputs");
                let o = flow::simulate_layer(&a.dir, inputs, a.inputs_name.as_deref(), &a.stim.options())?;
                println!("sim: {} output codes of real data bit-exact in the RTL ({}); array in {}", o.codes, o.sim.report.summary.trim_start_matches("qmac-tb: "), o.hw_dir.display());
                println!("corners hit: {}", o.sim.corners);
                println!("layer error vs float: {:?}", o.error);
                Ok(())
            }
        },
        Cmd::Quantize(a) => qmac::quantize::cli::run_quantize(&a),
        Cmd::Net(c) => qmac::net::cli::run_net(&c),
        Cmd::Train(a) => train(&a),
        Cmd::Run(a) => main_job(&a),
        Cmd::Synth(a) => qmac::synth::cli::run_synth(&a),
        Cmd::Sweep(SweepCmd { sweep: a, output_units, max_depth }) => {
            let lanes = a.points().iter().map(|p| p.lanes).max().unwrap_or(1);
            if max_depth < lanes {
                anyhow::bail!("--max-depth {max_depth} is below --lanes {lanes}: a tile has at least one step of lanes products (allowed lanes..={MAX_DEPTH_LIMIT})");
            }
            let point_config = |p: &qmac::synth::SweepPoint| sweep_config(p, max_depth, output_units, a.target_defaults);
            let mut points = a.points();
            if a.target_defaults && a.dsp.is_none() {
                for p in &mut points {
                    // a point whose configuration is invalid fails in its generator below
                    if let Ok((_, Some(applied))) = point_config(p) {
                        p.dsp = Some(applied.dsp);
                    }
                }
            }
            let command = std::env::args().collect::<Vec<_>>().join(" ");
            let command = command.replacen(&std::env::args().next().unwrap_or_default(), "qmac", 1);
            qmac::synth::cli::run_sweep(&a, &points, Some(command), |p, dir| {
                let (cfg, applied) = point_config(p).map_err(|e| format!("{e:#}"))?;
                let record = applied.map(|a| a.record());
                qmac::emit::write_for(&cfg, record.as_ref(), dir).map(|_| ()).map_err(|e| e.to_string())
            })
        }
        Cmd::Bench { dir, json } => {
            step("benchmarking (about a minute)");
            // the scratch build and bench.json replace `dir` at the end (qmac::outdir)
            let staged = qmac::outdir::Staged::begin(&dir, qmac::outdir::Kind::Bench)?;
            let r = flow::bench(staged.path())?;
            let text = serde_json::to_string_pretty(&r)?;
            staged.write("bench.json", format!("{text}\n"))?;
            staged.commit()?;
            if json {
                println!("{text}");
            } else {
                println!("generate {}: {:.1} ms ({} lines of Verilog)", r.generate_config, r.generate_ms, r.generate_lines);
                println!("verilator build {} ({}): {:.1} s", r.sim_config, r.sim_opt, r.verilator_build_s);
                println!("simulation {}: {:.2} M cycles/s without stalls, {:.2} M cycles/s with 30% stalls ({} cycles)", r.sim_config, r.cycles_per_s / 1e6, r.cycles_per_s_stalled / 1e6, r.cycles);
                println!("(JSON: {})", dir.join("bench.json").display());
            }
            Ok(())
        }
        Cmd::Schemes(a) => qmac::schemes::run(&a),
        Cmd::Config(a) => {
            print!("{}", a.cfg.resolve()?.to_toml());
            Ok(())
        }
    }
}

/// The configuration of a sweep point: its shape and precision (1-bit widths binary, i.e. `odd`),
/// `max_depth`, and `output_units` if given (else shared); with `target_defaults` the point's target
/// defaults fill the rest, as `qmac generate --target` would.
fn sweep_config(p: &qmac::synth::SweepPoint, max_depth: u32, output_units: Option<OutputUnitsName>, target_defaults: bool) -> Result<(Config, Option<TargetApplied>)> {
    let binary = |bits: u32, other: EncodingName| if bits == 1 { EncodingName::Odd } else { other };
    let flags = ConfigFlags {
        rows: Some(p.rows),
        cols: Some(p.cols),
        lanes: Some(p.lanes),
        max_depth: Some(max_depth),
        output_units: output_units.or((!target_defaults).then_some(OutputUnitsName::Shared)),
        weight_bits: Some(p.weight_bits),
        weight_encoding: Some(binary(p.weight_bits, EncodingName::Int)),
        act_bits: Some(p.act_bits),
        act_encoding: Some(binary(p.act_bits, EncodingName::Unsigned)),
        ..ConfigFlags::default()
    };
    flags.resolve_for(target_defaults.then_some(p.target))
}

/// The main job's configuration when no --config is given (`configs/main-job.toml`).
const MAIN_JOB: (&str, &str) = ("configs/main-job.toml", include_str!("../../configs/main-job.toml"));

/// `qmac run`: generate for the target with its defaults, lint and check, co-simulate, synthesise
/// (with the plain array beside it unless --no-baseline), with each step's wall time.
fn main_job(a: &RunArgs) -> Result<()> {
    let t_all = Instant::now();
    let (cfg, applied) = a.cfg.resolve_for_with(Some(a.target), Some(MAIN_JOB))?;
    let applied = applied.expect("a target was given");
    let n = if a.no_synth { 3 } else { 4 };
    let mut times: Vec<(&str, f64)> = Vec::new();
    let mut timed = |name: &'static str, t: Instant| {
        let s = t.elapsed().as_secs_f64();
        step(&format!("{name}: {s:.1} s"));
        times.push((name, s));
    };
    step(&format!("[1/{n}] generating {} for {}", cfg.short_name(), a.target));
    let t = Instant::now();
    generate(&cfg, Some(&applied), &a.out)?;
    timed("generate", t);
    step(&format!("[2/{n}] lint and structural check"));
    let t = Instant::now();
    flow::check(&a.out)?;
    println!("check: verilator -Wall lint clean; yosys check -assert clean, no latches");
    timed("check", t);
    step(&format!("[3/{n}] co-simulation against the reference"));
    let t = Instant::now();
    simulate(&a.out, &a.stim.options())?;
    timed("simulate", t);
    if !a.no_synth {
        let with = if a.no_baseline { "" } else { ", then the plain array of the same shape" };
        step(&format!("[4/{n}] synthesis, place and route for {} (DSP policy {}){with}", a.target, applied.dsp.name()));
        let t = Instant::now();
        let mut opts = qmac::synth::SynthOptions::new(a.target);
        opts.dsp = applied.dsp;
        opts.baseline = !a.no_baseline;
        let report = qmac::synth::synth(&a.out, &opts)?;
        println!("{report}");
        timed("synthesis", t);
    }
    let list: Vec<String> = times.iter().map(|(k, s)| format!("{k} {s:.1} s")).collect();
    println!("steps: {}; total {:.1} s", list.join(", "), t_all.elapsed().as_secs_f64());
    println!("done: {} is generated, lint-clean, bit-exact against the reference{}", a.out.display(), if a.no_synth { "" } else { " and placed and routed" });
    Ok(())
}

/// `qmac train`.
#[derive(Args, Debug, Clone)]
struct TrainArgs {
    /// The network description (TOML, the format of `qmac net`; see docs/network.md).
    #[arg(long, value_name = "FILE")]
    model: PathBuf,
    /// Training data: .npz with `x` (samples) and `y` (labels).
    #[arg(long, value_name = "FILE")]
    data: PathBuf,
    /// The quantization scheme: wKaM, wKaM-pc, wKaM-levels, wKaM-uniform (K, M in 1..=8),
    /// binary-ls1, binary-ls2, binary-lsT, binary-gf1, binary-gf2.
    #[arg(long)]
    scheme: String,
    /// Output directory, written all at once; replaced only if `qmac train` wrote it (or it is empty).
    #[arg(short, long, value_name = "DIR")]
    out: PathBuf,
    /// Validation data (.npz), evaluated after every epoch and by the exported integer network.
    #[arg(long, value_name = "FILE")]
    val: Option<PathBuf>,
    /// Seed of the initial weights, the batch order and the quantizer set-up.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Epochs of float training.
    #[arg(long, default_value_t = 60, value_name = "N")]
    float_epochs: usize,
    /// Epochs of quantization-aware training.
    #[arg(long, default_value_t = 120, value_name = "N")]
    qat_epochs: usize,
    /// Samples per mini-batch.
    #[arg(long, default_value_t = 32, value_name = "N")]
    batch: usize,
    /// Learning rate of float training (Adam, cosine decay to 0).
    #[arg(long, default_value_t = 2e-3)]
    lr: f64,
    /// Learning rate of quantization-aware training.
    #[arg(long, default_value_t = 1e-2)]
    qat_lr: f64,
    /// Decoupled weight decay of the weights (AdamW).
    #[arg(long, default_value_t = 0.05)]
    weight_decay: f64,
    /// L2 regularisation of the PACT clips (PACT's alpha decay).
    #[arg(long, default_value_t = 1e-4)]
    alpha_decay: f64,
    /// Weight bits of the first dense or conv2d layer (2..=8; plain uniform weights there, a level
    /// table with -levels schemes), instead of the scheme's.
    #[arg(long, value_name = "BITS")]
    first_weight_bits: Option<u32>,
}

fn train(a: &TrainArgs) -> anyhow::Result<()> {
    let job = qmac::train::TrainJob {
        model: a.model.clone(),
        data: a.data.clone(),
        val: a.val.clone(),
        scheme: a.scheme.clone(),
        config: qmac_train::TrainConfig {
            seed: a.seed,
            float_epochs: a.float_epochs,
            qat_epochs: a.qat_epochs,
            batch: a.batch,
            lr: a.lr,
            qat_lr: a.qat_lr,
            weight_decay: a.weight_decay,
            alpha_decay: a.alpha_decay,
            first_weight_bits: a.first_weight_bits,
            ..Default::default()
        },
        out: a.out.clone(),
    };
    let pct = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{:.2} %", 100.0 * v));
    let (fe, qe) = (a.float_epochs, a.qat_epochs);
    let run = qmac::train::train_to_dir(&job, &mut |e| {
        let (phase, total) = match e.phase {
            qmac_train::Phase::Float => ("float", fe),
            qmac_train::Phase::Qat => ("qat", qe),
        };
        println!("{phase:5} epoch {:>3}/{total}  loss {:.4}  train {}  val {}", e.epoch, e.loss, pct(Some(e.train_accuracy)), pct(e.val_accuracy));
    })
    .with_context(|| format!("qmac train {}", a.model.display()))?;
    let r = &run.report;
    println!(
        "{} {}: float {}, post-training {}, QAT {} (the trainer's forward pass); exported integer network (the array's): train {}, val {}; trained in {:.1} s",
        a.model.display(),
        a.scheme,
        pct(r.log.float_accuracy),
        pct(r.log.post_training_accuracy),
        pct(r.log.qat_accuracy),
        pct(Some(r.integer.train)),
        pct(r.integer.val),
        r.train_seconds
    );
    println!("wrote network.json, net.toml, weights.safetensors, model.toml, quantize.md, train.json to {}; next: qmac net sim {} --data <test.npz>", a.out.display(), a.out.display());
    Ok(())
}
