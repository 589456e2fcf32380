//! Lowering a validated [`Network`] with its float tensors to [`Stage`]s: compute stages (dense or
//! conv2d with any batch norm folded in and the ReLU that follows as a flag), max-pool and flatten.
//! This is the network's internal representation, the float network and the plan of the integer one.
//!
//! A QONNX graph maps onto it the same way: `MatMul`/`Gemm` and `Conv` become compute stages (with an
//! `Add` of a constant as the bias and a `BatchNormalization` folded), the `Quant` node on their weight
//! input gives the weight scheme and bits, the `Quant` (or `MultiThreshold`) node after them gives the
//! output mode (PACT bits and clips: a `Quant` with zero point 0 after a `Relu`; a `MultiThreshold`'s
//! thresholds are the output stage's thresholds), `BipolarQuant` gives binary weights or activations,
//! `MaxPool` and `Flatten`/`Reshape` become the host stages.
//!
//! Batch norm `gamma (y - mean) / sqrt(var + eps) + beta` after a layer `y = W x + b` folds to
//! `W' = s W`, `b' = s (b - mean) + beta` with `s = gamma / sqrt(var + eps)`, per output channel.

use super::format::{Layer, LayerKind, LayerQuant, Network, Shape};
use super::NetError;
use crate::quantize::read_tensor;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Convolution geometry of a compute stage.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConvParams {
    /// `[kh, kw]`.
    pub kernel: [usize; 2],
    /// `[sy, sx]`.
    pub stride: [usize; 2],
    /// `[py, px]`.
    pub padding: [usize; 2],
}

/// A dense or conv2d layer as the array computes it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Compute {
    /// Index of the layer in `net.toml`.
    pub index: usize,
    /// Its name.
    pub name: String,
    /// Weight tensor name (for reports).
    pub tensor: String,
    /// Convolution geometry (`None`: dense).
    pub conv: Option<ConvParams>,
    /// Float weights with any batch norm folded in, C order.
    pub weight: Vec<f32>,
    /// `[out, in]` or `[out, in, kh, kw]`.
    pub weight_shape: Vec<usize>,
    /// Float bias (folded), one per output channel.
    pub bias: Vec<f32>,
    /// Name of the folded batch norm layer, if any.
    pub batch_norm: Option<String>,
    /// A ReLU follows.
    pub relu: bool,
    /// Input shape of one sample.
    pub input: Shape,
    /// Output shape of one sample.
    pub output: Shape,
    /// Quantization.
    pub quant: LayerQuant,
}

impl Compute {
    /// Output channels.
    pub fn out_channels(&self) -> usize {
        self.weight_shape[0]
    }

    /// K: weights per output channel.
    pub fn k(&self) -> usize {
        self.weight.len() / self.out_channels()
    }
}

/// A stage the host runs on codes (and the float network on values): max-pool or flatten. The same
/// type serves the float network ([`Stage::Host`]) and the quantized one
/// ([`super::chain::QStage::Host`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HostStage {
    /// Max pooling.
    MaxPool {
        /// Layer name.
        name: String,
        /// `[ph, pw]`.
        size: [usize; 2],
        /// `[sy, sx]`.
        stride: [usize; 2],
        /// Input shape.
        input: Shape,
        /// Output shape.
        output: Shape,
    },
    /// Flatten (a reinterpretation of the channel-major layout).
    Flatten {
        /// Layer name.
        name: String,
        /// Input shape.
        input: Shape,
        /// Output shape.
        output: Shape,
    },
}

impl HostStage {
    /// Input shape of one sample.
    pub fn input(&self) -> Shape {
        match self {
            HostStage::MaxPool { input, .. } | HostStage::Flatten { input, .. } => *input,
        }
    }

    /// Output shape of one sample.
    pub fn output(&self) -> Shape {
        match self {
            HostStage::MaxPool { output, .. } | HostStage::Flatten { output, .. } => *output,
        }
    }

    /// The stage on `n` samples `x` (channel-major per sample) of any ordered type.
    pub fn run<T: Copy + PartialOrd>(&self, x: Vec<T>, n: usize) -> Vec<T> {
        match self {
            HostStage::MaxPool { size, stride, input, output, .. } => {
                let len = input.len();
                (0..n).flat_map(|i| max_pool(&x[i * len..(i + 1) * len], *input, *size, *stride, *output)).collect()
            }
            HostStage::Flatten { .. } => x,
        }
    }

    /// True if the geometry fits the shapes (a `network.json` edited by hand is checked with it).
    pub fn fits(&self) -> bool {
        match self {
            HostStage::MaxPool { size, stride, input, output, .. } => match (input, output) {
                (Shape::Image([c, h, w]), Shape::Image([c2, oh, ow])) => {
                    c == c2 && size.iter().chain(stride).all(|&v| v > 0) && size[0] <= *h && size[1] <= *w && (h - size[0]) / stride[0] + 1 == *oh && (w - size[1]) / stride[1] + 1 == *ow
                }
                _ => false,
            },
            HostStage::Flatten { input, output, .. } => input.len() == output.len() && matches!(output, Shape::Flat(_)),
        }
    }
}

/// One step of the lowered network.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Computed by the array.
    Compute(Compute),
    /// Max-pool or flatten, in the host.
    Host(HostStage),
}

impl Stage {
    /// Output shape of one sample.
    pub fn output(&self) -> Shape {
        match self {
            Stage::Compute(c) => c.output,
            Stage::Host(h) => h.output(),
        }
    }
}

/// Reads a named tensor: `(values, shape)`.
pub type TensorSource<'a> = dyn FnMut(&str) -> Result<(Vec<f32>, Vec<usize>), crate::quantize::QuantizeError> + 'a;

fn tensor(
    l: &Layer,
    read: &mut TensorSource<'_>,
    name: &str,
    what: &str,
) -> Result<(Vec<f32>, Vec<usize>), NetError> {
    read(name).map_err(|e| NetError::Tensor {
        index: l.index,
        name: l.name.clone(),
        what: format!("{what}: {e}"),
    })
}

fn shape_err(l: &Layer, what: String) -> NetError {
    NetError::Tensor {
        index: l.index,
        name: l.name.clone(),
        what,
    }
}

/// Read every tensor from `weights`, check it against the derived shapes, fold batch norms, and
/// return the stages.
pub fn lower(net: &Network, weights: &Path) -> Result<Vec<Stage>, NetError> {
    lower_from(net, &mut |name| read_tensor(weights, Some(name)))
}

/// [`lower`] with the tensors from `weights` (a file, or tensors in memory: `qmac train`).
pub fn lower_from(net: &Network, weights: &mut TensorSource<'_>) -> Result<Vec<Stage>, NetError> {
    let mut stages: Vec<Stage> = Vec::new();
    for l in &net.layers {
        match &l.kind {
            LayerKind::Dense {
                weight,
                bias,
                quant,
            }
            | LayerKind::Conv2d {
                weight,
                bias,
                quant,
                ..
            } => {
                let (w, shape) = tensor(l, weights, weight, "weight tensor")?;
                let out = l.output.channels();
                let (expect, conv) = match &l.kind {
                    LayerKind::Conv2d {
                        kernel,
                        stride,
                        padding,
                        ..
                    } => (
                        vec![out, l.input.channels(), kernel[0], kernel[1]],
                        Some(ConvParams {
                            kernel: *kernel,
                            stride: *stride,
                            padding: *padding,
                        }),
                    ),
                    _ => (vec![out, l.input.len()], None),
                };
                if shape != expect {
                    let layout = if conv.is_some() {
                        "[channels, in channels, kh, kw]"
                    } else {
                        "[units, in features]"
                    };
                    return Err(shape_err(l, format!("weight tensor `{weight}` has shape {shape:?}; this layer needs {expect:?} ({layout}, from its input {} and its fields)", l.input)));
                }
                if let Some(i) = w.iter().position(|v| !v.is_finite()) {
                    return Err(shape_err(
                        l,
                        format!("weight tensor `{weight}` value {i} is {}, not finite", w[i]),
                    ));
                }
                let b = match bias {
                    Some(name) => {
                        let (b, bs) = tensor(l, weights, name, "bias tensor")?;
                        if b.len() != out {
                            return Err(shape_err(l, format!("bias tensor `{name}` has shape {bs:?}; this layer needs [{out}]")));
                        }
                        if let Some(i) = b.iter().position(|v| !v.is_finite()) {
                            return Err(shape_err(
                                l,
                                format!("bias tensor `{name}` value {i} is {}, not finite", b[i]),
                            ));
                        }
                        b
                    }
                    None => vec![0.0; out],
                };
                stages.push(Stage::Compute(Compute {
                    index: l.index,
                    name: l.name.clone(),
                    tensor: weight.clone(),
                    conv,
                    weight: w,
                    weight_shape: shape,
                    bias: b,
                    batch_norm: None,
                    relu: false,
                    input: l.input,
                    output: l.output,
                    quant: quant.clone(),
                }));
            }
            LayerKind::BatchNorm { tensors, eps } => {
                let Some(Stage::Compute(c)) = stages.last_mut() else {
                    unreachable!("validated: batch_norm follows a compute layer")
                };
                let out = c.out_channels();
                let mut v = Vec::with_capacity(4);
                for (t, what) in tensors.iter().zip(["gamma", "beta", "mean", "var"]) {
                    let (x, s) = tensor(l, weights, t, what)?;
                    if x.len() != out {
                        return Err(shape_err(l, format!("{what} tensor `{t}` has shape {s:?}; the layer before has {out} output channels")));
                    }
                    v.push(x);
                }
                let k = c.k();
                for (o, (ws, b)) in c.weight.chunks_mut(k).zip(c.bias.iter_mut()).enumerate() {
                    let var = f64::from(v[3][o]) + eps;
                    if !(var > 0.0 && var.is_finite()) {
                        return Err(shape_err(l, format!("var tensor `{}` value {o} is {} (with eps {eps}): allowed var + eps > 0", tensors[3], v[3][o])));
                    }
                    let s = f64::from(v[0][o]) / var.sqrt();
                    for w in ws {
                        *w = (f64::from(*w) * s) as f32;
                    }
                    *b = ((f64::from(*b) - f64::from(v[2][o])) * s + f64::from(v[1][o])) as f32;
                }
                if let Some(i) = c.weight.iter().chain(&c.bias).position(|x| !x.is_finite()) {
                    return Err(shape_err(
                        l,
                        format!("folding gives a non-finite value at element {i}"),
                    ));
                }
                c.batch_norm = Some(l.name.clone());
            }
            LayerKind::Relu => {
                if let Some(Stage::Compute(c)) = stages.last_mut() {
                    c.relu = true;
                }
            }
            LayerKind::MaxPool { size, stride } => stages.push(Stage::Host(HostStage::MaxPool {
                name: l.name.clone(),
                size: *size,
                stride: *stride,
                input: l.input,
                output: l.output,
            })),
            LayerKind::Flatten => stages.push(Stage::Host(HostStage::Flatten {
                name: l.name.clone(),
                input: l.input,
                output: l.output,
            })),
        }
    }
    Ok(stages)
}

/// Max pooling of one sample's channel-major values `[C][H][W]` (any ordered type: codes or floats).
pub fn max_pool<T: Copy + PartialOrd>(
    x: &[T],
    input: Shape,
    size: [usize; 2],
    stride: [usize; 2],
    output: Shape,
) -> Vec<T> {
    let Shape::Image(chw) = input else {
        unreachable!("validated: max_pool on images")
    };
    let out = qmac_arith::pool::max_pool(x, chw, size, stride);
    debug_assert_eq!(out.len(), output.len());
    out
}

impl ConvParams {
    /// The im2col geometry for `in_channels` input channels.
    pub fn geometry(&self, in_channels: usize) -> crate::quantize::ConvGeometry {
        crate::quantize::ConvGeometry {
            in_channels,
            kernel: self.kernel,
            stride: self.stride,
            padding: self.padding,
            dilation: [1, 1],
        }
    }
}

/// The GEMM rows of `n` samples of a compute stage's input `x` (of shape `input`) (channel-major per sample): the samples
/// themselves for a dense stage, im2col rows (`pad` outside the image) for a convolution.
pub fn gemm_rows<T: Copy>(
    conv: Option<&ConvParams>,
    input: Shape,
    x: &[T],
    n: usize,
    pad: T,
) -> Vec<T> {
    match (conv, input) {
        (Some(p), Shape::Image([ch, h, w])) => {
            crate::quantize::im2col(x, n, h, w, &p.geometry(ch), pad)
                .expect("validated shapes")
                .0
        }
        _ => x.to_vec(),
    }
}

/// GEMM outputs `[n * P][out]` (`P` output pixels per sample) back to channel-major samples
/// `[n][out][P]`.
pub fn to_channel_major<T: Copy>(y: &[T], n: usize, out: usize) -> Vec<T> {
    let p = y.len() / (n * out).max(1);
    let mut r = Vec::with_capacity(y.len());
    for s in 0..n {
        for o in 0..out {
            r.extend((0..p).map(|i| y[(s * p + i) * out + o]));
        }
    }
    r
}
