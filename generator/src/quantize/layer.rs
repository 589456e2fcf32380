//! Running real data through a quantized layer: input codes, GEMM tiles for the array, vectors for the
//! testbench, and the error against the float layer.
//!
//! [`layer_vectors`] takes float input activations in the layer's natural layout:
//!
//! | layout | input shape | GEMM rows `P` |
//! |---|---|---|
//! | `fc` | `[N, in]` or `[in]` | `N` |
//! | `conv` | `[N, C, H, W]` or `[C, H, W]` | `N * OH * OW` (im2col, [`super::im2col`]) |
//!
//! It quantizes them with the spec's input quantizer and lowers them to GEMM rows `[P][K]`:
//!
//! * PACT: `clamp(round(clip(x, 0, alpha_in) / s_a), 0, n)`, one clip for the tensor;
//! * binary bases (ls1, ls2, lsT, gf): the residual signs with the layer's fixed basis scales `v`
//!   ([`super::encode_bases`]); bit `j` of a code is the sign of basis `j`. A convolution's zero
//!   padding gets the code of the value 0 (`s_1 = +1`, then the residual signs of `-v_1`, ...), so
//!   padding the codes still equals quantizing the padded floats.
//!
//! The array computes the GEMM in tiles: a tile is `rows` GEMM rows times `cols` output channels; step
//! `s` of a tile carries, for PE row `r` and lane `l`, the input code of GEMM row `tile_row * rows + r`
//! at `k = s * lanes + l`, and for column `c` the weight code of output channel `group * cols + c` at
//! the same `k`. Rows past `P`, depths past `K` and columns past the output channels are padded with
//! code 0 (a PACT input code 0 has value 0, so padded depths add nothing; with binary activations a
//! padded element adds `sum_p m[p]`, which the channel's bias already subtracts,
//! [`super::ChannelQuant::acc_offset`]; padded rows and columns are ignored, and padded columns get
//! all-zero parameters and pair scales). Each group of `cols` output channels is one [`Layer`] (its own
//! parameter load, with the group's run-time table: [`QuantizedLayer::table`]) with the tiles of every
//! row block.
//!
//! The float reference is the layer on the original float weights and inputs,
//! `y[p][o] = sum_k W[o][k] * x[p][k] + b[o]`, PACT-quantized with the output clip. The array's codes
//! differ from it by the weight and input quantization error (and, far less, by the rounding of the
//! integer bias, clip and multiplier); against the same sum computed in float from the *quantized*
//! weights and inputs, they differ only by the latter (and, with binary activations, by the rounding
//! of the integer basis-pair scales).

use super::{encode_bases, pact_code, QuantizeError, QuantizedLayer};
use crate::config::Config;
use crate::reference::{basis_sign, tile_outputs_table, Step};
use crate::vectors::{Item, Layer};
use qmac_arith::pipeline::ChannelParams;
use qmac_arith::quant::{pact, ErrorStats, Granularity};

/// How well two sets of output codes agree.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Serialize)]
pub struct CodeAgreement {
    /// Outputs compared.
    pub total: usize,
    /// Outputs with equal codes.
    pub exact: usize,
    /// Outputs whose codes differ by at most 1.
    pub within_one: usize,
    /// Largest code difference.
    pub max_diff: u64,
}

impl CodeAgreement {
    /// Compare two code lists of equal length.
    pub fn of(a: &[u64], b: &[u64]) -> CodeAgreement {
        let mut r = CodeAgreement { total: a.len(), ..CodeAgreement::default() };
        for (&x, &y) in a.iter().zip(b) {
            let d = x.abs_diff(y);
            r.exact += usize::from(d == 0);
            r.within_one += usize::from(d <= 1);
            r.max_diff = r.max_diff.max(d);
        }
        r
    }

    /// Fraction of outputs within one code.
    pub fn within_one_fraction(&self) -> f64 {
        if self.total == 0 {
            1.0
        } else {
            self.within_one as f64 / self.total as f64
        }
    }

    /// Fraction of outputs with equal codes.
    pub fn exact_fraction(&self) -> f64 {
        if self.total == 0 {
            1.0
        } else {
            self.exact as f64 / self.total as f64
        }
    }
}

/// Error of the array's output against float.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct OutputError {
    /// Real-valued: the array's codes times the output scale against the float layer output clipped
    /// to `[0, alpha]` (what PACT would pass on without quantization).
    pub vs_float: ErrorStats,
    /// The array's codes against PACT of the float layer output.
    pub codes_vs_float: CodeAgreement,
    /// The array's codes against PACT of the layer output computed in float from the quantized weights
    /// and inputs (isolates the integer parameters' rounding from the quantization error).
    pub codes_vs_quantized: CodeAgreement,
}

/// The layer run on real inputs: what the array computes and what float computes.
#[derive(Clone, Debug)]
pub struct LayerVectors {
    /// The array configuration.
    pub config: Config,
    /// One [`Layer`] per group of `cols` output channels (parameters padded to `cols`), each with the
    /// tiles of every block of `rows` GEMM rows: ready for [`crate::vectors::render`].
    pub layers: Vec<Layer>,
    /// GEMM rows `P` (`N` for fc, `N * OH * OW` for conv).
    pub patches: usize,
    /// Output channels.
    pub out_channels: usize,
    /// Output height and width (conv only).
    pub out_hw: Option<[usize; 2]>,
    /// Input codes after im2col, `[P][K]`.
    pub input_codes: Vec<u64>,
    /// The array's output codes (from the reference model on the tiles), `[P][out]`.
    pub codes: Vec<u64>,
    /// Float layer output before the activation, `[P][out]`.
    pub float_output: Vec<f64>,
    /// PACT of the float layer output, `[P][out]`.
    pub float_codes: Vec<u64>,
    /// Errors.
    pub error: OutputError,
}

fn stats(reference: &[f64], approx: &[f64]) -> ErrorStats {
    let mut sum = 0.0;
    let mut max: f64 = 0.0;
    for (&r, &a) in reference.iter().zip(approx) {
        let d = r - a;
        sum += d * d;
        max = max.max(d.abs());
    }
    ErrorStats { mse: if reference.is_empty() { 0.0 } else { sum / reference.len() as f64 }, max_abs: max }
}

/// Run float input activations through the quantized layer (see the module docs for the input layouts
/// and the tiling): quantize them with the input PACT, build the array's tiles and [`Layer`]s with the
/// layer's parameters, compute the array's outputs with the reference model
/// ([`crate::reference::tile_outputs`]) and compare them with the float layer.
pub fn layer_vectors(q: &QuantizedLayer, inputs: &[f32], shape: &[usize]) -> Result<LayerVectors, QuantizeError> {
    let cfg = q.config()?;
    let geo = &q.geometry;
    let (out, k) = (geo.out_channels, geo.k);
    let shape_err = |what: String| QuantizeError::Shape { what };
    let shape_text = crate::limits::capped(&format!("{shape:?}")).into_owned();
    if inputs.len() != shape.iter().product::<usize>() {
        return Err(shape_err(format!("inputs have {} values but shape {shape_text}", inputs.len())));
    }
    let rounding = q.rounding();
    let bases = q.is_bases();
    let (codes_in, pad_code) = if bases {
        (encode_bases(inputs, &q.input.basis_scales)?, encode_bases(&[0.0], &q.input.basis_scales)?[0])
    } else {
        let c = pact::quantize(inputs, Granularity::PerTensor, &[q.input.alpha], q.input.bits, rounding).map_err(|source| QuantizeError::Quant { what: "input activations".into(), source })?;
        (c.codes().iter().map(|&c| u64::from(c)).collect(), 0)
    };
    let (x_rows, a_rows, patches, out_hw) = match &geo.conv {
        None => {
            let ok = match shape {
                [n, kk] => *kk == k && *n > 0,
                [kk] => *kk == k,
                _ => false,
            };
            if !ok {
                return Err(shape_err(format!("inputs of shape {shape_text} do not fit a fully connected layer with {k} inputs; allowed [N, {k}] or [{k}]")));
            }
            (inputs.to_vec(), codes_in, inputs.len() / k, None)
        }
        Some(g) => {
            let (n, c, h, w) = match shape {
                [n, c, h, w] => (*n, *c, *h, *w),
                [c, h, w] => (1, *c, *h, *w),
                _ => return Err(shape_err(format!("inputs of shape {shape_text} do not fit a convolution; allowed [N, C, H, W] or [C, H, W]"))),
            };
            if c != g.in_channels || n == 0 {
                return Err(shape_err(format!("inputs of shape {shape_text} have {c} channels; the convolution has {} input channels", g.in_channels)));
            }
            if let Some([oh, ow]) = g.output_size(h, w) {
                let values = [n, oh, ow, k].iter().try_fold(1u64, |a, &d| a.checked_mul(d as u64));
                let max = crate::limits::MAX_TENSOR_BYTES / 8;
                if values.is_none_or(|v| v > max) {
                    return Err(shape_err(format!("inputs of shape {shape_text} give {n} x {oh} x {ow} output pixels of K = {k} codes each (im2col); allowed at most {max} codes")));
                }
            }
            let too_small = || shape_err(format!("inputs of {h}x{w} pixels are smaller than the {}x{} kernel (dilation {:?}, padding {:?})", g.kernel[0], g.kernel[1], g.dilation, g.padding));
            let (x_rows, hw) = super::im2col(inputs, n, h, w, g, 0.0f32).ok_or_else(too_small)?;
            let (a_rows, _) = super::im2col(&codes_in, n, h, w, g, pad_code).ok_or_else(too_small)?;
            let p = n * hw[0] * hw[1];
            (x_rows, a_rows, p, Some(hw))
        }
    };
    if patches == 0 {
        return Err(shape_err("no input vectors".into()));
    }

    let (layers, codes) = gemm_layers(q, &cfg, &a_rows, patches, cfg.max_steps() as usize);

    // float references
    let mut float_output = vec![0.0f64; patches * out];
    let mut quant_output = vec![0.0f64; patches * out];
    let (wb, ab) = (q.weights.bits, q.input.bits);
    for p in 0..patches {
        let x = &x_rows[p * k..(p + 1) * k];
        let a = &a_rows[p * k..(p + 1) * k];
        for o in 0..out {
            let wf = &q.weights.float[o];
            let y: f64 = wf.iter().zip(x).map(|(&w, &v)| f64::from(w) * f64::from(v)).sum::<f64>() + f64::from(q.bias[o]);
            float_output[p * out + o] = y;
            quant_output[p * out + o] = if bases {
                // sum_ij u[i] v[j] D_ij with the float basis scales (D_ij exact)
                let u = q.weights.basis_scales_of(o);
                let mut yq = f64::from(q.bias[o]);
                for i in 0..wb {
                    for j in 0..ab {
                        let d: i64 = (0..k).map(|kk| basis_sign(q.weights.codes[o][kk], i) * basis_sign(a[kk], j)).sum();
                        yq += u[i as usize] * q.input.basis_scales[j as usize] * d as f64;
                    }
                }
                yq
            } else {
                let acc: i64 = (0..k).map(|kk| q.weights.value(o, kk) * a[kk] as i64).sum();
                q.weights.scale(o) * q.input.scale * acc as f64 + f64::from(q.bias[o])
            };
        }
    }
    let bits = q.output.bits;
    let alpha = |i: usize| q.output.alphas[i % out];
    let float_codes: Vec<u64> = float_output.iter().enumerate().map(|(i, &y)| pact_code(y, alpha(i), bits, rounding)).collect();
    let quant_codes: Vec<u64> = quant_output.iter().enumerate().map(|(i, &y)| pact_code(y, alpha(i), bits, rounding)).collect();
    let clipped: Vec<f64> = float_output.iter().enumerate().map(|(i, &y)| y.clamp(0.0, alpha(i))).collect();
    let dequant: Vec<f64> = codes.iter().enumerate().map(|(i, &c)| c as f64 * q.output.scales[i % out]).collect();
    let error = OutputError { vs_float: stats(&clipped, &dequant), codes_vs_float: CodeAgreement::of(&codes, &float_codes), codes_vs_quantized: CodeAgreement::of(&codes, &quant_codes) };
    Ok(LayerVectors { config: cfg, layers, patches, out_channels: out, out_hw, input_codes: a_rows, codes, float_output, float_codes, error })
}

/// The array's tiles for GEMM rows `a_rows` (`[patches][K]` input codes) of the quantized layer `q`, on
/// the array `cfg` (the layer's own configuration, or a larger one that serves several layers, with
/// its parameters as [`QuantizedLayer::params_on`] loads them there), with
/// `steps` steps per tile (at least `K / lanes` rounded up; the layer's own `max_depth / lanes` with
/// binary activations, whose bias takes off exactly that many padded elements): one [`Layer`] per
/// group of `cols` output channels (see the module docs), and the array's output codes `[patches][out]`
/// from the reference model.
pub fn gemm_layers(q: &QuantizedLayer, cfg: &Config, a_rows: &[u64], patches: usize, steps: usize) -> (Vec<Layer>, Vec<u64>) {
    let (out, k) = (q.geometry.out_channels, q.geometry.k);
    let (rows, cols, lanes) = (cfg.rows as usize, cfg.cols as usize, cfg.lanes as usize);
    let params = q.params_on(cfg);
    let zero = ChannelParams { bias: 0, alpha: 0, mult: 0, shift: 0 };
    let mut layers = Vec::new();
    let mut codes = vec![0u64; patches * out];
    for group in 0..out.div_ceil(cols) {
        let ch = |c: usize| group * cols + c;
        let gparams: Vec<ChannelParams> = (0..cols).map(|c| if ch(c) < out { params[ch(c)] } else { zero }).collect();
        let table = q.table(group);
        let mut items = Vec::new();
        for block in 0..patches.div_ceil(rows) {
            let row = |r: usize| block * rows + r;
            let tile: Vec<Step> = (0..steps)
                .map(|s| {
                    let mut a = vec![0u64; rows * lanes];
                    let mut w = vec![0u64; cols * lanes];
                    for l in 0..lanes {
                        let kk = s * lanes + l;
                        if kk >= k {
                            continue;
                        }
                        for r in 0..rows {
                            if row(r) < patches {
                                a[r * lanes + l] = a_rows[row(r) * k + kk];
                            }
                        }
                        for c in 0..cols {
                            if ch(c) < out {
                                w[c * lanes + l] = q.weights.codes[ch(c)][kk];
                            }
                        }
                    }
                    Step { a, w }
                })
                .collect();
            let y = tile_outputs_table(cfg, &tile, &gparams, &table);
            for r in 0..rows {
                for c in 0..cols {
                    if row(r) < patches && ch(c) < out {
                        codes[row(r) * out + ch(c)] = y[r * cols + c];
                    }
                }
            }
            items.push(Item::Tile(tile));
        }
        layers.push(Layer { params: gparams, table, items });
    }

    (layers, codes)
}
