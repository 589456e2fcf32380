//! Command-line front end of `qmac quantize` (clap argument struct and entry point).
//!
//! The binary wires it as a subcommand:
//!
//! ```ignore
//! #[derive(clap::Subcommand)]
//! enum Cmd {
//!     /// Quantize a trained layer's float tensors into the array's integer parameters, with an error report.
//!     Quantize(qmac::quantize::cli::QuantizeArgs),
//! }
//! // ...
//! Cmd::Quantize(a) => qmac::quantize::cli::run_quantize(&a),
//! ```

use super::quantize_to_dir;
use anyhow::Context;
use clap::Args;
use std::path::PathBuf;

/// `qmac quantize --weights layer.safetensors --spec layer.toml -o build/layer1 [--inputs acts.npy]`
#[derive(Args, Debug, Clone)]
pub struct QuantizeArgs {
    /// Float tensors of the layer: .safetensors (F32, F16, BF16, F64), .npy or .npz.
    #[arg(long, value_name = "FILE")]
    pub weights: PathBuf,
    /// Layer spec (TOML): tensor names, weight scheme (sawb, uniform, ls1, ls2, lsT, gf, levels) and
    /// bits, layout, input activations (PACT, or binary bases ls1, ls2, lsT, gf), output PACT, array
    /// shape. See docs/quantize.md.
    #[arg(long, value_name = "FILE")]
    pub spec: PathBuf,
    /// Output directory: quantized.json, config.toml, spec.toml, report.json, report.md (and
    /// vectors.txt with --inputs). Written all at once; an existing directory is replaced only if
    /// `qmac quantize` wrote it.
    #[arg(short, long, value_name = "DIR")]
    pub out: PathBuf,
    /// Float input activations to run through the quantized layer (.npy, .npz or .safetensors):
    /// [N, in] for a fully connected layer, [N, C, H, W] for a convolution. Adds vectors.txt (for
    /// the co-simulation testbench) and the output error against float to the report. With a binary
    /// input scheme and no input.scales in the spec, the basis scales are calibrated on these inputs
    /// and written into spec.toml and quantized.json.
    #[arg(long, value_name = "FILE")]
    pub inputs: Option<PathBuf>,
    /// Name of the input tensor in an .npz or .safetensors file holding several.
    #[arg(long, value_name = "NAME", requires = "inputs")]
    pub inputs_name: Option<String>,
}

/// Run `qmac quantize`.
pub fn run_quantize(args: &QuantizeArgs) -> anyhow::Result<()> {
    let inputs = args.inputs.as_deref().map(|p| (p, args.inputs_name.as_deref()));
    let run = quantize_to_dir(&args.weights, &args.spec, &args.out, inputs).with_context(|| format!("qmac quantize {} with {}", args.weights.display(), args.spec.display()))?;
    let q = &run.layer;
    let cfg = q.config()?;
    let e = &run.weights.chosen.tensor;
    println!(
        "quantized `{}` ({} {} {}, {}): {} output channels, K = {}; weight MSE {:.4e}, max abs error {:.4e}",
        q.source.tensor,
        q.weights.scheme.name(),
        q.weights.bits,
        if q.weights.encoding == crate::config::EncodingName::Bases { "bases" } else { "bits" },
        q.weights.granularity.name(),
        q.geometry.out_channels,
        q.geometry.k,
        e.mse,
        e.max_abs
    );
    if q.input.scheme.is_binary() {
        let from = if q.input.calibrated { "calibrated on the inputs" } else { "from the spec" };
        println!("input {} with {} bases, basis scales {:?} ({from})", q.input.scheme.name(), q.input.bits, q.input.basis_scales);
    }
    println!("array {} (acc {} bits, mult {} bits)", cfg.short_name(), cfg.acc_bits(), cfg.mult_bits);
    if let Some(v) = &run.vectors {
        let c = &v.error.codes_vs_float;
        println!(
            "layer run: {} x {} outputs; {:.2} % equal to and {:.2} % within one code of PACT of the float layer (largest difference {})",
            v.patches,
            v.out_channels,
            100.0 * c.exact_fraction(),
            100.0 * c.within_one_fraction(),
            c.max_diff
        );
    }
    println!("wrote {} to {}", run.files.join(", "), args.out.display());
    Ok(())
}
