//! The model description, its parameters, and the forward pass in float and quantized form.

use candle_core::{Device, Tensor, Var};
use qmac_arith::quant::levels::{channel_alphas, AlphaRule, LevelTable};
use qmac_arith::quant::Rounding;
use serde::{Deserialize, Serialize};

use crate::error::TrainError;
use crate::ops;
use crate::rng::Rng;
use crate::scheme::{ActQuant, Scheme, WeightQuant};

/// Largest number of elements of one parameter tensor or one sample's activation.
const MAX_ELEMENTS: usize = 1 << 24;
/// Batch norm's epsilon and running-average momentum.
const BN_EPS: f64 = 1e-5;
const BN_MOMENTUM: f32 = 0.1;
/// Running-average momentum of binary activation scales.
const SCALE_MOMENTUM: f64 = 0.1;
/// The percentile of the calibration pre-activations a PACT clip starts at.
const ALPHA_PERCENTILE: f64 = 99.9;

/// One layer of a model, in order. Shapes are per sample: `[features]` or `[channels, h, w]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Layer {
    /// Fully connected: `[in] -> [out]`, weights `[out][in]`, bias `[out]`.
    Dense {
        /// Output features.
        out: usize,
    },
    /// 2-D convolution: `[cin, h, w] -> [out, oh, ow]`, weights `[out][cin][kernel][kernel]`.
    Conv2d {
        /// Output channels.
        out: usize,
        /// Square kernel size.
        kernel: usize,
        /// Stride in both directions.
        stride: usize,
        /// Zero padding on each side.
        padding: usize,
    },
    /// Max pooling over `size x size` windows with the given stride.
    MaxPool {
        /// Window size.
        size: usize,
        /// Stride.
        stride: usize,
    },
    /// `[c, h, w] -> [c * h * w]`.
    Flatten,
    /// ReLU in float training; the activation quantizer in quantized training.
    Relu,
    /// Batch norm of the preceding dense or conv layer's outputs, folded into it before
    /// quantization-aware training.
    BatchNorm,
}

impl Layer {
    /// The layer's name in errors and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Layer::Dense { .. } => "dense",
            Layer::Conv2d { .. } => "conv2d",
            Layer::MaxPool { .. } => "max_pool",
            Layer::Flatten => "flatten",
            Layer::Relu => "relu",
            Layer::BatchNorm => "batch_norm",
        }
    }

    fn has_weights(&self) -> bool {
        matches!(self, Layer::Dense { .. } | Layer::Conv2d { .. })
    }
}

/// A model: the per-sample input shape and the layers. The last layer is a dense layer whose
/// outputs are the class logits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    /// Per-sample input shape: `[features]` or `[channels, height, width]`.
    pub input: Vec<usize>,
    /// The layers in order.
    pub layers: Vec<Layer>,
}

impl ModelSpec {
    /// The per-sample output shape of every layer, or the first inconsistency.
    pub fn shapes(&self) -> Result<Vec<Vec<usize>>, TrainError> {
        let bad = |s: String| Err(TrainError::ModelShape(s));
        if !(self.input.len() == 1 || self.input.len() == 3)
            || self.input.contains(&0)
            || self
                .input
                .iter()
                .try_fold(1usize, |a, &d| a.checked_mul(d))
                .is_none_or(|e| e > MAX_ELEMENTS)
        {
            return bad(format!(
                "input shape {:?} is invalid: allowed [features] or [channels, height, width], \
                 nonzero, at most {MAX_ELEMENTS} elements",
                self.input
            ));
        }
        let Some(last) = self.layers.last() else {
            return bad("no layers".into());
        };
        if !matches!(last, Layer::Dense { .. }) {
            return bad(format!(
                "the last layer is {}: it must be dense (its outputs are the class logits)",
                last.kind()
            ));
        }
        let mut shape = self.input.clone();
        let mut shapes = Vec::with_capacity(self.layers.len());
        for (i, layer) in self.layers.iter().enumerate() {
            let err = |message: String| TrainError::Model {
                layer: i,
                kind: layer.kind(),
                message,
            };
            let prev = i.checked_sub(1).map(|p| self.layers[p]);
            shape = match (*layer, shape.as_slice()) {
                (Layer::Dense { out }, &[features]) => {
                    check_size(out, features, &err)?;
                    vec![out]
                }
                (Layer::Dense { .. }, s) => {
                    return Err(err(format!(
                        "input shape {s:?} is not flat: add a flatten layer"
                    )))
                }
                (
                    Layer::Conv2d {
                        out,
                        kernel,
                        stride,
                        padding,
                    },
                    &[c, h, w],
                ) => {
                    if kernel == 0
                        || stride == 0
                        || kernel > h + 2 * padding
                        || kernel > w + 2 * padding
                    {
                        return Err(err(format!(
                            "kernel {kernel}, stride {stride}, padding {padding} do not fit the \
                             input {h}x{w}: allowed kernel 1..=size + 2 * padding, stride >= 1"
                        )));
                    }
                    check_size(out, c * kernel * kernel, &err)?;
                    vec![
                        out,
                        (h + 2 * padding - kernel) / stride + 1,
                        (w + 2 * padding - kernel) / stride + 1,
                    ]
                }
                (Layer::MaxPool { size, stride }, &[c, h, w]) => {
                    if size == 0 || stride == 0 || size > h || size > w {
                        return Err(err(format!(
                            "window {size}, stride {stride} do not fit the input {h}x{w}"
                        )));
                    }
                    vec![c, (h - size) / stride + 1, (w - size) / stride + 1]
                }
                (Layer::Flatten, s) => vec![s.iter().product()],
                (Layer::Relu, s) => {
                    let pre = match prev {
                        Some(Layer::BatchNorm) => i >= 2 && self.layers[i - 2].has_weights(),
                        Some(p) => p.has_weights(),
                        None => false,
                    };
                    if !pre {
                        return Err(err(
                            "must follow a dense or conv2d layer (or its batch norm): its input \
                             is the pre-activation that the quantizer replaces"
                                .into(),
                        ));
                    }
                    s.to_vec()
                }
                (Layer::BatchNorm, s) => {
                    if !prev.is_some_and(|p| p.has_weights()) {
                        return Err(err(
                            "must follow a dense or conv2d layer (it is folded into it)".into(),
                        ));
                    }
                    s.to_vec()
                }
                (l, s) => {
                    return Err(err(format!(
                        "input shape {s:?} does not fit: {} needs [channels, height, width]",
                        l.kind()
                    )))
                }
            };
            shapes.push(shape.clone());
        }
        Ok(shapes)
    }

    /// Number of classes (outputs of the last layer).
    pub fn classes(&self) -> usize {
        match self.layers.last() {
            Some(Layer::Dense { out }) => *out,
            _ => 0,
        }
    }

    /// Elements of one input sample.
    pub fn input_len(&self) -> usize {
        self.input.iter().product()
    }
}

fn check_size(
    out: usize,
    fan_in: usize,
    err: &dyn Fn(String) -> TrainError,
) -> Result<(), TrainError> {
    if out == 0 || out.checked_mul(fan_in).is_none_or(|e| e > MAX_ELEMENTS) {
        return Err(err(format!(
            "{out} outputs x {fan_in} inputs is invalid: allowed 1 or more outputs, at most \
             {MAX_ELEMENTS} weights"
        )));
    }
    Ok(())
}

/// The trained parameters of one layer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum LayerParams {
    /// A dense or conv2d layer, batch norm folded in.
    Weights {
        /// Float weights, row-major in the layer's weight shape.
        weight: Vec<f32>,
        /// `[out, in]` or `[out, cin, kernel, kernel]`.
        shape: Vec<usize>,
        /// Float bias, one per output.
        bias: Vec<f32>,
        /// The learned level table (`levels` schemes), in code order, in the folded domain: the levels
        /// of the weights times their input scales (`W'[o][k] = W[o][k] s[c(k)]`), as the network
        /// format's `levels` and the integer chaining take them.
        levels: Option<Vec<f64>>,
    },
    /// A PACT activation quantizer: one clip, or one per channel.
    Pact {
        /// The clip values.
        alpha: Vec<f64>,
        /// Code bits.
        bits: u32,
    },
    /// Binary activation bases with fixed scales (one per basis).
    Bases {
        /// The basis scales `v_1..v_k`.
        scales: Vec<f64>,
    },
    /// A layer without parameters (or a folded batch norm, or an unquantized ReLU).
    None,
}

struct WeightVars {
    w: Var,
    b: Var,
    levels: Option<Var>,
}

struct BnState {
    gamma: Var,
    beta: Var,
    mean: Vec<f32>,
    var: Vec<f32>,
}

#[derive(Default)]
struct ActState {
    alpha: Option<Var>,
    scales: Vec<f64>,
}

/// How a forward pass runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Float network; `train` uses batch statistics in batch norm and updates the running ones.
    Float { train: bool },
    /// Quantized network; `train` takes binary activation scales from the batch.
    Quant { train: bool },
}

/// A model's parameters and quantizer state.
pub(crate) struct Net {
    pub(crate) spec: ModelSpec,
    weights: Vec<Option<WeightVars>>,
    bn: Vec<Option<BnState>>,
    acts: Vec<ActState>,
    folded: bool,
    scheme: Option<Scheme>,
    input_alpha: f64,
    input_bits: u32,
    first_weight_bits: Option<u32>,
    rounding: Rounding,
}

fn var(values: Vec<f32>, shape: &[usize]) -> Result<Var, TrainError> {
    Ok(Var::from_tensor(&Tensor::from_vec(
        values,
        shape,
        &Device::Cpu,
    )?)?)
}

impl Net {
    /// He-uniform weights and zero biases from `rng`.
    pub(crate) fn new(
        spec: &ModelSpec,
        rng: &mut Rng,
        input_bits: u32,
        first_weight_bits: Option<u32>,
        rounding: Rounding,
    ) -> Result<Self, TrainError> {
        let shapes = spec.shapes()?;
        let mut weights = Vec::new();
        let mut bn = Vec::new();
        let mut acts = Vec::new();
        for (i, layer) in spec.layers.iter().enumerate() {
            let input = if i == 0 {
                spec.input.clone()
            } else {
                shapes[i - 1].clone()
            };
            let wshape = match *layer {
                Layer::Dense { out } => Some(vec![out, input[0]]),
                Layer::Conv2d { out, kernel, .. } => Some(vec![out, input[0], kernel, kernel]),
                _ => None,
            };
            weights.push(match wshape {
                Some(shape) => {
                    let fan_in: usize = shape[1..].iter().product();
                    let bound = (6.0 / fan_in as f64).sqrt();
                    let n: usize = shape.iter().product();
                    let w = (0..n).map(|_| rng.uniform(-bound, bound) as f32).collect();
                    Some(WeightVars {
                        w: var(w, &shape)?,
                        b: var(vec![0.0; shape[0]], &[shape[0]])?,
                        levels: None,
                    })
                }
                None => None,
            });
            bn.push(match layer {
                Layer::BatchNorm => {
                    let c = shapes[i][0];
                    Some(BnState {
                        gamma: var(vec![1.0; c], &[c])?,
                        beta: var(vec![0.0; c], &[c])?,
                        mean: vec![0.0; c],
                        var: vec![1.0; c],
                    })
                }
                _ => None,
            });
            acts.push(ActState::default());
        }
        Ok(Net {
            spec: spec.clone(),
            weights,
            bn,
            acts,
            folded: false,
            scheme: None,
            input_alpha: 1.0,
            input_bits,
            first_weight_bits,
            rounding,
        })
    }

    /// Every trainable variable in a fixed order, with its weight decay (`decay` for the
    /// weights, 0 for everything else).
    pub(crate) fn vars(&self, decay: f64) -> Vec<(Var, f64)> {
        let mut v = Vec::new();
        for (i, w) in self.weights.iter().enumerate() {
            if let Some(w) = w {
                v.push((w.w.clone(), decay));
                v.push((w.b.clone(), 0.0));
                v.extend(w.levels.clone().map(|l| (l, 0.0)));
            }
            if let (Some(bn), false) = (&self.bn[i], self.folded) {
                v.push((bn.gamma.clone(), 0.0));
                v.push((bn.beta.clone(), 0.0));
            }
            v.extend(self.acts[i].alpha.clone().map(|a| (a, 0.0)));
        }
        v
    }

    /// The learnable clips (for their L2 regularisation).
    pub(crate) fn alphas(&self) -> Vec<Var> {
        self.acts.iter().filter_map(|a| a.alpha.clone()).collect()
    }

    /// The forward pass of a batch `x` (`[N, ...input]`) to logits `[N, classes]`.
    pub(crate) fn forward(&mut self, x: &Tensor, mode: Mode) -> Result<Tensor, TrainError> {
        let mut h = x.clone();
        let scales = if matches!(mode, Mode::Quant { .. }) {
            let alpha = Tensor::new(&[self.input_alpha as f32], &Device::Cpu)?;
            h = ops::pact::pact(&h.detach(), &alpha, self.input_bits, self.rounding)?;
            self.input_scales()?
        } else {
            vec![None; self.spec.layers.len()]
        };
        for (i, s) in scales.iter().enumerate() {
            h = self.layer(i, &h, mode, s.as_deref())?;
        }
        Ok(h)
    }

    /// The real scale of each input channel of every weight layer in quantized mode (`None` for
    /// other layers, or an input that is not PACT codes): `alpha / (2^bits - 1)` of the PACT
    /// quantizer before it (per layer or per channel, kept by max-pool, repeated `h * w` times by
    /// flatten), or the network input's. The integer network folds these into the weights before
    /// the weight quantizer (`W'[o][k] = W[o][k] s[c(k)]`), so training does the same.
    pub(crate) fn input_scales(&self) -> Result<Vec<Option<Vec<f32>>>, TrainError> {
        let shapes = self.spec.shapes()?;
        let in_n = ((1u64 << self.input_bits) - 1) as f64;
        let mut cur: Option<Vec<f32>> = Some(vec![(self.input_alpha / in_n) as f32; self.spec.input[0]]);
        let mut out = Vec::with_capacity(self.spec.layers.len());
        for (i, layer) in self.spec.layers.iter().enumerate() {
            out.push(None);
            match *layer {
                Layer::Dense { .. } | Layer::Conv2d { .. } => {
                    out[i] = cur.take();
                }
                Layer::Relu => {
                    let c = shapes[i][0];
                    cur = match (&self.scheme, &self.acts[i].alpha) {
                        (Some(Scheme { acts: ActQuant::Pact { bits, .. }, .. }), Some(a)) => {
                            let n = ((1u64 << bits) - 1) as f32;
                            let a = ops::host(a.as_tensor())?;
                            Some(if a.len() == 1 { vec![a[0] / n; c] } else { a.iter().map(|v| v / n).collect() })
                        }
                        _ => None,
                    };
                }
                Layer::Flatten => {
                    let per: usize = if i == 0 { self.spec.input[1..].iter().product() } else { shapes[i - 1][1..].iter().product() };
                    cur = cur.map(|s| s.iter().flat_map(|&v| std::iter::repeat_n(v, per)).collect());
                }
                Layer::MaxPool { .. } | Layer::BatchNorm => {}
            }
        }
        Ok(out)
    }

    /// Layer `i`'s weights as the forward pass in `mode` uses them: in quantized mode the weight
    /// quantizer applied to the weights with the input scales `s` folded in, then unfolded:
    /// `Q(W s) / s` (straight-through in `W`; `s` is not differentiated here).
    fn effective_weights(&self, i: usize, mode: Mode, s: Option<&[f32]>) -> Result<Tensor, TrainError> {
        let wv = self.weights[i].as_ref().expect("weight layer has weights");
        let (Mode::Quant { .. }, Some(q)) = (mode, self.weight_quant(i)) else {
            return Ok(wv.w.as_tensor().clone());
        };
        let w = wv.w.as_tensor();
        let st = match s {
            Some(s) => {
                let mut shape = vec![1usize; w.rank()];
                shape[1] = s.len();
                Some(Tensor::from_slice(s, shape, &Device::Cpu)?)
            }
            None => None,
        };
        let folded = match &st {
            Some(st) => w.broadcast_mul(st)?,
            None => w.clone(),
        };
        let q = match q {
            WeightQuant::Levels { bits } => {
                let table = wv.levels.as_ref().expect("levels initialised before QAT");
                let table = (table.as_tensor() * f64::from(level_unit(s)))?;
                ops::levels::quantize(&folded, &table, bits)?
            }
            q => ops::weights::quantize(&folded, q, self.rounding)?,
        };
        Ok(match &st {
            Some(st) => q.broadcast_div(st)?,
            None => q,
        })
    }

    fn layer(&mut self, i: usize, h: &Tensor, mode: Mode, s: Option<&[f32]>) -> Result<Tensor, TrainError> {
        let layer = self.spec.layers[i];
        Ok(match layer {
            Layer::Dense { .. } | Layer::Conv2d { .. } => {
                let w = self.effective_weights(i, mode, s)?;
                let wv = self.weights[i].as_ref().expect("weight layer has weights");
                match layer {
                    Layer::Dense { .. } => h.matmul(&w.t()?)?.broadcast_add(wv.b.as_tensor())?,
                    Layer::Conv2d {
                        stride, padding, ..
                    } => {
                        let y = h.conv2d(&w, padding, stride, 1, 1)?;
                        y.broadcast_add(&wv.b.as_tensor().reshape((1, (), 1, 1))?)?
                    }
                    _ => unreachable!(),
                }
            }
            Layer::BatchNorm if self.folded => h.clone(),
            Layer::BatchNorm => self.batch_norm(i, h, mode)?,
            Layer::Relu => match (mode, &self.scheme) {
                (Mode::Quant { train }, Some(s)) => match s.acts {
                    ActQuant::Pact { bits, .. } => {
                        let alpha = self.acts[i]
                            .alpha
                            .as_ref()
                            .expect("alpha calibrated before QAT");
                        ops::pact::pact(h, alpha.as_tensor(), bits, self.rounding)?
                    }
                    ActQuant::Binary(scheme) => {
                        if train {
                            let batch = ops::binary::batch_scales(&ops::host(h)?, scheme)?;
                            let st = &mut self.acts[i];
                            for (s, b) in st.scales.iter_mut().zip(batch) {
                                *s = (1.0 - SCALE_MOMENTUM) * *s + SCALE_MOMENTUM * b;
                            }
                        }
                        ops::binary::binarize(h, &self.acts[i].scales)?
                    }
                },
                _ => h.relu()?,
            },
            Layer::MaxPool { size, stride } => h.max_pool2d_with_stride(size, stride)?,
            Layer::Flatten => h.flatten_from(1)?,
        })
    }

    fn batch_norm(&mut self, i: usize, h: &Tensor, mode: Mode) -> Result<Tensor, TrainError> {
        let st = self.bn[i].as_mut().expect("batch norm state");
        let rank = h.rank();
        let dims: Vec<usize> = (0..rank).filter(|&d| d != 1).collect();
        let (mean, var) = if matches!(mode, Mode::Float { train: true }) {
            let mean = h.mean_keepdim(dims.as_slice())?;
            let var = h
                .broadcast_sub(&mean)?
                .sqr()?
                .mean_keepdim(dims.as_slice())?;
            let (m, v) = (ops::host(&mean)?, ops::host(&var)?);
            for c in 0..st.mean.len() {
                st.mean[c] = (1.0 - BN_MOMENTUM) * st.mean[c] + BN_MOMENTUM * m[c];
                st.var[c] = (1.0 - BN_MOMENTUM) * st.var[c] + BN_MOMENTUM * v[c];
            }
            (mean, var)
        } else {
            let c = st.mean.len();
            let mean = ops::channel_view(&Tensor::from_slice(&st.mean, c, &Device::Cpu)?, rank)?;
            let var = ops::channel_view(&Tensor::from_slice(&st.var, c, &Device::Cpu)?, rank)?;
            (mean, var)
        };
        let norm = h
            .broadcast_sub(&mean)?
            .broadcast_div(&(var + BN_EPS)?.sqrt()?)?;
        let gamma = ops::channel_view(st.gamma.as_tensor(), rank)?;
        let beta = ops::channel_view(st.beta.as_tensor(), rank)?;
        Ok(norm.broadcast_mul(&gamma)?.broadcast_add(&beta)?)
    }

    /// Folds every batch norm into its preceding layer with the running statistics:
    /// `w' = w * s`, `b' = (b - mean) * s + beta`, `s = gamma / sqrt(var + eps)`, per channel.
    pub(crate) fn fold_batch_norm(&mut self) -> Result<(), TrainError> {
        if self.folded {
            return Ok(());
        }
        for i in 0..self.spec.layers.len() {
            let Some(bn) = &self.bn[i] else { continue };
            let wv = self.weights[i - 1]
                .as_ref()
                .expect("batch norm follows a weight layer");
            let gamma = ops::host(bn.gamma.as_tensor())?;
            let beta = ops::host(bn.beta.as_tensor())?;
            let s: Vec<f32> = gamma
                .iter()
                .zip(&bn.var)
                .map(|(&g, &v)| (f64::from(g) / (f64::from(v) + BN_EPS).sqrt()) as f32)
                .collect();
            let mut w = ops::host(wv.w.as_tensor())?;
            let row = w.len() / s.len();
            for (o, chunk) in w.chunks_mut(row).enumerate() {
                chunk.iter_mut().for_each(|v| *v *= s[o]);
            }
            let b: Vec<f32> = ops::host(wv.b.as_tensor())?
                .iter()
                .enumerate()
                .map(|(o, &b)| (b - bn.mean[o]) * s[o] + beta[o])
                .collect();
            wv.w.set(&Tensor::from_vec(w, wv.w.shape(), &Device::Cpu)?)?;
            wv.b.set(&Tensor::from_vec(b, wv.b.shape(), &Device::Cpu)?)?;
        }
        self.folded = true;
        Ok(())
    }

    /// Sets up quantization-aware training under `scheme`: folds batch norm, fits the level
    /// tables to the weights, and calibrates the activation quantizers on the float
    /// pre-activations of `calib` (a batch of inputs) and the input clip on `input_max`.
    pub(crate) fn start_quantization(
        &mut self,
        scheme: &Scheme,
        calib: &Tensor,
        input_max: f32,
    ) -> Result<(), TrainError> {
        self.fold_batch_norm()?;
        self.input_alpha = if input_max > 0.0 {
            f64::from(input_max)
        } else {
            1.0
        };
        // float pre-activations at every ReLU
        self.scheme = None;
        let mut h = calib.clone();
        for i in 0..self.spec.layers.len() {
            if self.spec.layers[i] == Layer::Relu {
                self.acts[i] = calibrate(&h, scheme.acts)?;
            }
            h = self.layer(i, &h, Mode::Float { train: false }, None)?;
        }
        self.scheme = Some(scheme.clone());
        // level tables fitted to the weights with their input scales folded in, as they are quantized
        let scales = self.input_scales()?;
        for i in 0..self.weights.len() {
            let q = self.weight_quant(i);
            let Some(wv) = self.weights[i].as_mut() else {
                continue;
            };
            if let Some(WeightQuant::Levels { bits }) = q {
                let mut w = ops::host(wv.w.as_tensor())?;
                if let Some(s) = &scales[i] {
                    let inner: usize = wv.w.dims()[2..].iter().product();
                    for (j, v) in w.iter_mut().enumerate() {
                        *v *= s[(j / inner) % s.len()];
                    }
                }
                let t = LevelTable::fit(bits, &w)?;
                let unit = level_unit(scales[i].as_deref());
                let lv: Vec<f32> = t.levels().iter().map(|&l| l as f32 / unit).collect();
                wv.levels = Some(var(lv, &[1 << bits])?);
            }
        }
        Ok(())
    }

    /// The weight quantizer of layer `i` in quantized mode: the scheme's, with the first weight
    /// layer's bits overridden by `first_weight_bits`: plain uniform there (max-abs scale per
    /// channel), except for level tables. SAWB's coefficients are fits over large tensors; on a
    /// first convolution of 9 weights per channel its 8-bit clip cuts off most of them.
    fn weight_quant(&self, i: usize) -> Option<WeightQuant> {
        let q = self.scheme.as_ref()?.weights;
        let first = self.weights.iter().position(Option::is_some);
        Some(match (self.first_weight_bits, first == Some(i)) {
            (Some(bits), true) => match q {
                WeightQuant::Levels { .. } => WeightQuant::Levels { bits },
                _ => WeightQuant::Uniform { bits },
            },
            _ => q,
        })
    }

    /// The weights of layer `i` as the quantized forward pass uses them (dequantized), or `None`
    /// for a layer without weights or a network without a scheme.
    pub(crate) fn quantized_weights(&self, i: usize) -> Result<Option<Vec<f32>>, TrainError> {
        if self.weights.get(i).and_then(Option::as_ref).is_none() || self.weight_quant(i).is_none() {
            return Ok(None);
        }
        let scales = self.input_scales()?;
        let w = self.effective_weights(i, Mode::Quant { train: false }, scales[i].as_deref())?;
        Ok(Some(ops::host(&w)?))
    }

    /// The trained parameters of every layer.
    pub(crate) fn export(&self) -> Result<Vec<LayerParams>, TrainError> {
        let scales = if self.scheme.is_some() { self.input_scales()? } else { vec![None; self.spec.layers.len()] };
        let mut out = Vec::new();
        for (i, layer) in self.spec.layers.iter().enumerate() {
            out.push(if let Some(wv) = &self.weights[i] {
                LayerParams::Weights {
                    weight: ops::host(wv.w.as_tensor())?,
                    shape: wv.w.dims().to_vec(),
                    bias: ops::host(wv.b.as_tensor())?,
                    levels: match &wv.levels {
                        Some(l) => {
                            let unit = level_unit(scales[i].as_deref());
                            Some(ops::host(l.as_tensor())?.iter().map(|&v| f64::from(v * unit)).collect())
                        }
                        None => None,
                    },
                }
            } else if *layer == Layer::Relu {
                match (&self.scheme, &self.acts[i]) {
                    (Some(s), st) => match s.acts {
                        ActQuant::Pact { bits, .. } => LayerParams::Pact {
                            alpha: ops::host(st.alpha.as_ref().expect("calibrated").as_tensor())?
                                .iter()
                                .map(|&a| f64::from(a))
                                .collect(),
                            bits,
                        },
                        ActQuant::Binary(_) => LayerParams::Bases {
                            scales: st.scales.clone(),
                        },
                    },
                    (None, _) => LayerParams::None,
                }
            } else {
                LayerParams::None
            });
        }
        Ok(out)
    }

    /// The network input's clip and bits in quantized mode.
    pub(crate) fn input_quantizer(&self) -> (f64, u32) {
        (self.input_alpha, self.input_bits)
    }

    /// Keeps every learnable clip at least `min` (PACT's alpha must stay positive).
    pub(crate) fn clamp_alphas(&self, min: f32) -> Result<(), TrainError> {
        for a in self.alphas() {
            a.set(&a.as_tensor().clamp(min, f32::MAX)?)?;
        }
        Ok(())
    }
}

/// The unit of a learnable level table: the mean of the layer's input scales (1 without them). The
/// levels quantize the weights with the input scales folded in, which are small numbers (a PACT step);
/// the trained variable holds the levels in this unit, so that its values, and Adam's steps on them,
/// have the size of the weights. [`Net::export`] gives the levels in the folded domain.
fn level_unit(s: Option<&[f32]>) -> f32 {
    match s {
        Some(s) if !s.is_empty() => s.iter().sum::<f32>() / s.len() as f32,
        _ => 1.0,
    }
}

/// The initial quantizer state of one activation from its float pre-activations `h`
/// (`[N, C, ...]`).
fn calibrate(h: &Tensor, q: ActQuant) -> Result<ActState, TrainError> {
    Ok(match q {
        ActQuant::Pact { per_channel, .. } => {
            let c = if per_channel { h.dim(1)? } else { 1 };
            // channel-major values for arith's channel_alphas
            let cm = if per_channel {
                h.transpose(0, 1)?.contiguous()?
            } else {
                h.clone()
            };
            let alphas =
                channel_alphas(&ops::host(&cm)?, c, AlphaRule::Percentile(ALPHA_PERCENTILE))?;
            let a: Vec<f32> = alphas.iter().map(|&a| a as f32).collect();
            ActState {
                alpha: Some(var(a, &[c])?),
                scales: Vec::new(),
            }
        }
        ActQuant::Binary(scheme) => ActState {
            alpha: None,
            scales: ops::binary::batch_scales(&ops::host(h)?, scheme)?,
        },
    })
}
