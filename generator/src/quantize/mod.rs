//! `qmac quantize`: import the float tensors of a trained layer and turn them into the integer
//! parameters the array loads, with a quantization-error report (docs/quantize.md).
//!
//! The flow, with the function that does each step:
//!
//! 1. [`Spec::from_file`]: the layer spec (TOML): tensor names, weight scheme (`sawb`, `uniform`,
//!    `ls1`, `ls2`, `lsT`, `gf`, `levels`), bits, granularity, layout (fully connected or
//!    convolution), input activations (PACT clip, or binary bases `ls1`, `ls2`, `lsT`, `gf` with
//!    fixed basis scales, [`calibrate_input_scales`] if the spec has none), output PACT clips,
//!    rounding, array shape.
//! 2. [`LayerTensors::load`]: the float tensors from `.safetensors`, `.npy` or `.npz`
//!    ([`read_tensor`]).
//! 3. [`quantize_layer`]: weight codes in the array's encoding (`odd`, `int`, `codebook`, `bases`),
//!    per-channel [`ChannelParams`] (`bias`, `alpha`, `mult`, `shift` in the accumulator domain), the
//!    run-time table (codebook levels, [`codebook`]; or basis-pair scales, [`pair_scales`]) and the
//!    derived [`Config`]: a [`QuantizedLayer`], written as `quantized.json`.
//! 4. [`report::weight_report`]: weight quantization error of the chosen scheme (per tensor and per
//!    output channel) and of every other scheme on the same tensor.
//! 5. [`layer_vectors`]: float input activations in, PACT input codes, GEMM tiles
//!    ([`crate::reference::Step`]s) and [`crate::vectors::Layer`]s for [`crate::vectors::render`] out,
//!    with the float reference and its error.
//!
//! # Files
//!
//! `spec.rs` (the spec), `import.rs` (tensor files, im2col), `tensors.rs` (the layer's tensors and
//! GEMM shape), `weights.rs` (the weights by scheme), one file per scheme family with parameters of
//! its own, mirroring `qmac_arith::quant` (`levels.rs`: codebook; `lsq.rs`: binary bases and pair
//! scales; `pact.rs`: PACT codes and the requantizer's multiplier), `channels.rs` ([`quantize_layer`]:
//! per-channel parameters and the array configuration), `quantized.rs` (the `quantized.json` types),
//! `layer.rs` (a layer run on real inputs), `report.rs` (the error report), `cli.rs` (the command), and
//! here the error type and the whole job ([`quantize_to_dir`], [`write_dir`]).
//!
//! # Integer parameters (the accumulator domain)
//!
//! With weight scale `s_w[o]` (per output channel `o`, or one per tensor), input scale
//! `s_a = alpha_in / (2^in_bits - 1)`, float bias `b[o]`, output clip `alpha[o]` and
//! `n = 2^out_bits - 1`, one accumulator unit is worth `s_acc[o] = s_w[o] * s_a`, and:
//!
//! ```text
//! bias  = round(b[o] / s_acc[o] * 2^F)              F = bias_frac_bits ([`bias_frac_bits_for`])
//! alpha = max(round(alpha[o] / s_acc[o] * 2^F), 1)
//! mult / 2^shift ~= s_acc[o] * n / alpha[o] / 2^F  largest shift with mult <= 2^mult_bits - 1
//! ```
//!
//! so the array's `min(round(clamp(acc * 2^F + bias, 0, alpha) * mult / 2^shift), n)` is PACT's
//! `clamp(round(clip(y, 0, alpha[o]) * n / alpha[o]), 0, n)` of the layer output
//! `y = s_acc[o] * acc + b[o]`, up to the rounding of `bias`, `alpha` and `mult`. `bias` and `alpha`
//! are then reduced without changing any output to the channel's reachable accumulator range
//! `[lo, hi]` (from its own weight codes and any input codes): a clip above `hi * 2^F + bias` is
//! lowered to it. A channel whose output is the same for every input gets `alpha = 1`,
//! `bias = 1 - lo * 2^F` (so `acc * 2^F + bias >= 1` always) and `mult / 2^shift` = that code (or all four 0 for code 0): a channel
//! with all-zero weights (scale 0, output PACT of `b[o]`), or one whose bias keeps `acc + bias <= 0`
//! or `>= alpha` for every input. The accumulator of the derived [`Config`] is the exact no-overflow
//! width, widened only if a `bias` or `alpha` still needs more bits.
//!
//! Codebook weights (`levels`): `s_w = 2^-e` for integer levels `round(level * 2^e)` ([`fixed_levels`]).
//! Binary activations (`bases`): the array computes `acc = sum_p m[p] D_p` from per-pair counts, with
//! `s_acc[o] = max_ij |u[o][i] v[j]| / (2^(level_bits - 1) - 1)` and `m[p] = round(u[o][i] v[j] /
//! s_acc[o])` ([`pair_scales`]); the padded elements of a tile (codes 0, every basis -1) add
//! `(max_depth - K) * sum_p m[p]`, which is taken off the bias ([`ChannelQuant::acc_offset`]).

pub mod cli;
pub mod import;
pub mod layer;
pub mod report;
pub mod spec;
mod channels;
mod levels;
mod lsq;
mod pact;
mod quantized;
mod tensors;
mod validate;
mod weights;

pub use import::{im2col, read_tensor, tensor_names, ConvGeometry};
pub use layer::{gemm_layers, layer_vectors, CodeAgreement, LayerVectors, OutputError};
pub use channels::{bias_frac_bits_for, quantize_layer, quantize_layer_to, OutputStage};
pub use levels::{codebook, fixed_levels};
pub use lsq::{calibrate_input_scales, encode_bases, pair_scales};
pub use pact::{mult_shift, pact_code};
pub use quantized::{ChannelQuant, CodebookLevels, Geometry, InputQuant, OutputQuant, QuantizedLayer, QuantizedWeights, Source, FORMAT};
pub use tensors::{LayerTensors, CONV_K_ORDER, FC_K_ORDER};
pub use spec::{ActScheme, AlphaSpec, ArraySpec, ConvSpec, GranularityName, InputScheme, InputSpec, LayoutName, OutputSpec, Spec, WeightScheme, WeightSpec};
use crate::config::ConfigError;
use crate::reference::ParamError;
use qmac_arith::quant::QuantError;
use std::path::{Path, PathBuf};

/// Everything that can go wrong in `qmac quantize`.
#[derive(Debug, thiserror::Error)]
pub enum QuantizeError {
    /// A spec field has a value outside what is allowed.
    #[error("spec field `{field}` = {} is invalid: {allowed}", crate::limits::capped(.value))]
    Spec {
        /// The field, as a dotted path (`weights.bits`).
        field: String,
        /// The value given.
        value: String,
        /// What is allowed.
        allowed: String,
    },
    /// The spec could not be parsed (TOML syntax, unknown field, wrong type, missing field).
    #[error("cannot parse spec {path}: {message}")]
    SpecParse {
        /// The spec file.
        path: String,
        /// The parser's message (names the field and position).
        message: String,
    },
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The system's error.
        source: std::io::Error,
    },
    /// A tensor file is malformed or of an unknown kind.
    #[error("{}: {}", path.display(), crate::limits::capped_lines(.message))]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A named tensor is not in the file.
    #[error("tensor `{}` not found in {}; the file has: {}", crate::limits::capped(.name), path.display(), crate::limits::capped_lines(.available))]
    MissingTensor {
        /// The file.
        path: PathBuf,
        /// The name asked for.
        name: String,
        /// The tensors in the file.
        available: String,
    },
    /// No tensor name was given and the file has several.
    #[error("{} holds several tensors ({}); name the one to use", path.display(), crate::limits::capped_lines(.available))]
    AmbiguousTensor {
        /// The file.
        path: PathBuf,
        /// The tensors in the file.
        available: String,
    },
    /// A tensor's element type cannot be converted to `f32`.
    #[error("{}: tensor `{}` has dtype {}, which is not supported; allowed: {allowed}", path.display(), crate::limits::capped(.name), crate::limits::capped(.dtype))]
    Dtype {
        /// The file.
        path: PathBuf,
        /// The tensor.
        name: String,
        /// Its dtype.
        dtype: String,
        /// The supported dtypes.
        allowed: &'static str,
    },
    /// A tensor's shape does not fit the spec.
    #[error("{what}")]
    Shape {
        /// What does not fit, with the shapes.
        what: String,
    },
    /// A quantizer rejected its input.
    #[error("{what}: {source}")]
    Quant {
        /// Which tensor was being quantized.
        what: String,
        /// The quantizer's error.
        source: QuantError,
    },
    /// The derived hardware configuration is invalid.
    #[error("derived array configuration: {0}")]
    Config(#[from] ConfigError),
    /// Derived parameters do not fit the configuration (a bug if it ever happens).
    #[error("derived channel parameters: {0}")]
    Params(#[from] ParamError),
    /// A channel's parameters cannot be represented.
    #[error("output channel {channel}: {message}")]
    Requant {
        /// The output channel.
        channel: usize,
        /// Why.
        message: String,
    },
    /// The output directory cannot be written (it is not one `qmac quantize` wrote, or a file system
    /// error); nothing in it was changed.
    #[error(transparent)]
    OutDir(#[from] crate::outdir::OutDirError),
    /// `quantized.json` has another format.
    #[error("{}: not a valid {FORMAT} file: {message}", path.display())]
    BadQuantized {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

fn shape_err(what: impl Into<String>) -> QuantizeError {
    QuantizeError::Shape { what: what.into() }
}

fn quant_err(what: impl Into<String>) -> impl FnOnce(QuantError) -> QuantizeError {
    let what = what.into();
    move |source| QuantizeError::Quant { what, source }
}

/// Write `files` as the whole content of `out`, as [`crate::outdir`] describes: only over an empty
/// directory or one `qmac quantize` wrote, all at once, one run at a time.
pub fn write_dir(out: &Path, files: &[(&str, String)]) -> Result<(), QuantizeError> {
    crate::outdir::write_files(out, crate::outdir::Kind::Quantized, files)?;
    Ok(())
}

/// Write `files` (paths relative to `out`, subdirectories made as needed) as the whole content of
/// `out`, a directory of `kind`, as [`crate::outdir`] describes.
pub fn replace_dir(out: &Path, kind: crate::outdir::Kind, files: &[(String, Vec<u8>)]) -> Result<(), QuantizeError> {
    crate::outdir::write_files(out, kind, &files.iter().map(|(n, d)| (n.as_str(), d.as_slice())).collect::<Vec<_>>())?;
    Ok(())
}

/// What [`quantize_to_dir`] produced.
#[derive(Clone, Debug)]
pub struct QuantizeRun {
    /// The quantized layer (`quantized.json`).
    pub layer: QuantizedLayer,
    /// The weight report.
    pub weights: report::WeightReport,
    /// The layer run on the given inputs, if any (`vectors.txt`).
    pub vectors: Option<LayerVectors>,
    /// The files written, relative to the output directory.
    pub files: Vec<String>,
}

/// The whole `qmac quantize` job: read the spec and the tensors, quantize, report, and write
/// `quantized.json`, `config.toml`, `spec.toml`, `report.json`, `report.md` (and, with `inputs`,
/// `vectors.txt`: the layer run on those inputs, for `qmac sim`) into `out`, all at once.
///
/// A binary input scheme without `input.scales` has its basis scales calibrated on `inputs`
/// ([`calibrate_input_scales`]); they are written into `spec.toml` and `quantized.json`, so the layer
/// runs later inputs with the same fixed scales. Without `inputs` that is an error naming `input.scales`.
pub fn quantize_to_dir(weights: &Path, spec_path: &Path, out: &Path, inputs: Option<(&Path, Option<&str>)>) -> Result<QuantizeRun, QuantizeError> {
    let mut spec = Spec::from_file(spec_path)?;
    let x = match inputs {
        Some((path, name)) => Some(read_tensor(path, name)?),
        None => None,
    };
    let mut calibrated = false;
    if let (true, None, Some((x, _))) = (spec.input.scheme.is_binary(), &spec.input.scales, &x) {
        spec.input.scales = Some(calibrate_input_scales(&spec, x)?);
        calibrated = true;
    }
    let tensors = LayerTensors::load(&spec, weights)?;
    let source = Source { weights_file: weights.display().to_string(), tensor: spec.weights.tensor.clone(), bias: spec.weights.bias.clone() };
    let mut layer = quantize_layer(&spec, &tensors, source)?;
    layer.input.calibrated = calibrated;
    let wr = report::weight_report(&layer)?;
    let vectors = match &x {
        Some((x, shape)) => Some(layer_vectors(&layer, x, shape)?),
        None => None,
    };
    let cfg = layer.config()?;
    let mut files: Vec<(&str, String)> = vec![
        ("quantized.json", layer.to_json()),
        ("config.toml", cfg.to_toml()),
        ("spec.toml", spec.to_toml()),
        ("report.json", serde_json::to_string_pretty(&report::report_json(&layer, &wr, vectors.as_ref())).expect("report serialises") + "\n"),
        ("report.md", report::report_markdown(&layer, &wr, vectors.as_ref())),
    ];
    if let Some(v) = &vectors {
        files.push(("vectors.txt", crate::vectors::render(&v.config, &v.layers)?));
    }
    write_dir(out, &files)?;
    Ok(QuantizeRun { layer, weights: wr, vectors, files: files.iter().map(|(n, _)| n.to_string()).collect() })
}

/// Specs for the unit tests of the quantizer's files.
#[cfg(test)]
pub(crate) mod test_specs {
    use super::{Source, Spec};

    pub(crate) fn spec(scheme: &str, bits: u32) -> Spec {
        Spec::from_toml(
            &format!(
                "[weights]\ntensor = \"w\"\nscheme = \"{scheme}\"\nbits = {bits}\ngranularity = \"per_channel\"\nlayout = \"fc\"\n\
                 [input]\nbits = 4\nalpha = 1.5\n[output]\nscheme = \"pact\"\nbits = 4\nalpha = 2.0\n[array]\nrows = 2\ncols = 2\nlanes = 3\nbias_frac_bits = 0\n"
            ),
            "t",
        )
        .unwrap()
    }

    pub(crate) fn src() -> Source {
        Source { weights_file: "mem".into(), tensor: "w".into(), bias: None }
    }

    pub(crate) fn binary_spec(wscheme: &str, wbits: u32, input: &str, array: &str) -> Spec {
        Spec::from_toml(
            &format!(
                "[weights]\ntensor = \"w\"\nscheme = \"{wscheme}\"\nbits = {wbits}\ngranularity = \"per_channel\"\nlayout = \"fc\"\n\
                 [input]\n{input}\n[output]\nscheme = \"pact\"\nbits = 4\nalpha = 2.0\n[array]\n{array}\n"
            ),
            "t",
        )
        .unwrap()
    }
}
