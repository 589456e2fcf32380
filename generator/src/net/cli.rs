//! Command-line front end of `qmac net` (clap arguments and entry points).

use super::flow::{quantize_to_dir, simulate_dir, DataNames, NetSimOptions};
use super::rtl::RtlOptions;
use crate::sim::BuildOptions;
use anyhow::Context;
use clap::{Args, Subcommand};
use std::path::PathBuf;

/// `qmac net <command>`.
#[derive(Subcommand, Debug, Clone)]
pub enum NetCmd {
    /// Quantize a trained network: calibrate the PACT clips on data, quantize every layer with the
    /// previous layer's output codes as its input codes; writes network.json, net.toml, quantize.md.
    ///
    /// Example:
    ///   qmac net quantize --model mlp.toml --weights mlp.npz --calib train.npz -o build/mlp
    ///
    /// The model file (TOML) lists the layers in order (dense, conv2d, batch_norm, max_pool, flatten,
    /// activation) with the names of their tensors in --weights, the network-wide quantization
    /// ([quant]: weights = "sawb", weight_bits, act = "pact" | "ls1" | "ls2" | "lsT" | "gf",
    /// act_bits, bias_frac_bits, ...) with per-layer overrides (quant = { ... }), the calibration rule
    /// ([calibration] rule = "max" | "percentile" | "mse") and the array ([array] rows, cols, lanes,
    /// output_units = "per_column" | "shared"). See docs/network.md.
    ///
    /// The last layer gives logits (the array's signed biased accumulator, exact argmax); a layer with
    /// binary activations (act = "ls2", ...) has its output stage compute the next layer's basis codes
    /// from the pre-activation, with basis scales fitted on --calib; every bias has the fractional bits
    /// that keep its rounding error under 1/8 of an output step unless bias_frac_bits is given.
    #[command(verbatim_doc_comment)]
    Quantize(NetQuantizeArgs),
    /// Run a data set through a quantized network: the float network, the integer reference, and every
    /// layer through the generated array in Verilator, compared bit-exact; writes sim/ (each layer's
    /// output codes, logits.npy with the real logits, logits-int.npy with the integers the array sent,
    /// report.json, report.md) into the directory and prints the report.
    ///
    /// Example:
    ///   qmac net sim build/mlp --data test.npz --clock-mhz 100
    ///
    /// Layers with the same hardware share one Verilator build, cached by a hash of the design (a
    /// second run builds nothing). Build time is reported apart from simulation time.
    #[command(verbatim_doc_comment)]
    Sim(NetSimArgs),
}

/// Names of the arrays in the data files.
#[derive(Args, Debug, Clone)]
pub struct DataNameArgs {
    /// Name of the samples in the data files: [N, features] or [N, C, H, W] (any [N, ...] with the
    /// network input's element count).
    #[arg(long, default_value = "x", value_name = "NAME")]
    pub x_name: String,
    /// Name of the integer labels in the data files ([N]).
    #[arg(long, default_value = "y", value_name = "NAME")]
    pub y_name: String,
}

impl DataNameArgs {
    fn names(&self) -> DataNames {
        DataNames {
            x: self.x_name.clone(),
            y: self.y_name.clone(),
        }
    }
}

/// `qmac net quantize`.
#[derive(Args, Debug, Clone)]
pub struct NetQuantizeArgs {
    /// The network description (TOML); see docs/network.md.
    #[arg(long, value_name = "FILE")]
    pub model: PathBuf,
    /// Float tensors named in the model: .safetensors or .npz (or .npy for a single tensor).
    #[arg(long, value_name = "FILE")]
    pub weights: PathBuf,
    /// Calibration set (.npz): samples (and, if present, labels for the accuracy in quantize.md).
    #[arg(long, value_name = "FILE")]
    pub calib: PathBuf,
    /// Output directory, written all at once; an existing one is replaced only if `qmac net quantize`
    /// wrote it (or it is empty).
    #[arg(short, long, value_name = "DIR")]
    pub out: PathBuf,
    #[command(flatten)]
    pub names: DataNameArgs,
}

/// `qmac net sim`.
#[derive(Args, Debug, Clone)]
pub struct NetSimArgs {
    /// A directory written by `qmac net quantize`.
    pub dir: PathBuf,
    /// The data set (.npz with samples and labels).
    #[arg(long, value_name = "FILE")]
    pub data: PathBuf,
    #[command(flatten)]
    pub names: DataNameArgs,
    /// Clock for the inferences/s figure, MHz.
    #[arg(long, default_value_t = 100.0, value_name = "MHZ")]
    pub clock_mhz: f64,
    /// Integer reference only: no Verilator.
    #[arg(long)]
    pub reference_only: bool,
    /// Random stalls on every stream, percent (0: the cycle counts are those of an unstalled array).
    #[arg(long, default_value_t = 0, value_name = "PCT")]
    pub stall: u32,
    /// Seed of the stalls.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Where Verilator models are cached (default: $QMAC_CACHE_DIR, else ~/.cache/qmac).
    #[arg(long, value_name = "DIR")]
    pub cache: Option<PathBuf>,
}

/// Run `qmac net ...`.
pub fn run_net(cmd: &NetCmd) -> anyhow::Result<()> {
    match cmd {
        NetCmd::Quantize(a) => {
            let r = quantize_to_dir(&a.model, &a.weights, &a.calib, &a.names.names(), &a.out)
                .with_context(|| format!("qmac net quantize {}", a.model.display()))?;
            print!("{}", super::flow::quantize_md(&r.net, r.calib_accuracy));
            println!(
                "wrote network.json, net.toml, quantize.md to {} in {:.2} s",
                a.out.display(),
                r.seconds
            );
            Ok(())
        }
        NetCmd::Sim(a) => {
            if !(a.clock_mhz.is_finite() && a.clock_mhz > 0.0) {
                anyhow::bail!(
                    "--clock-mhz {} is invalid: allowed a number > 0",
                    a.clock_mhz
                );
            }
            if a.stall > 90 {
                anyhow::bail!("--stall {} is invalid: allowed 0..=90", a.stall);
            }
            let rtl = (!a.reference_only).then(|| RtlOptions {
                cache: a.cache.clone().unwrap_or_else(crate::sim::cache_dir),
                work: a.dir.join("work"),
                seed: a.seed,
                stall_pct: a.stall,
                // one model is built at a time here: its C++ compile may take every core
                build: BuildOptions { jobs: std::thread::available_parallelism().map_or(1, |n| u32::try_from(n.get()).unwrap_or(1)), ..Default::default() },
                progress: true,
            });
            let rep = simulate_dir(
                &a.dir,
                &a.data,
                &a.names.names(),
                &NetSimOptions {
                    rtl,
                    clock_mhz: a.clock_mhz,
                },
            )
            .with_context(|| format!("qmac net sim {}", a.dir.display()))?;
            print!("{}", super::report::markdown(&rep));
            println!("wrote {}", a.dir.join("sim").display());
            if rep.bit_exact == Some(false) {
                anyhow::bail!("not every layer is bit-exact in the RTL (see the table)");
            }
            Ok(())
        }
    }
}
