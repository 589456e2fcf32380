//! `qmac train`: float training and quantization-aware training (the `qmac-train` engine) of a
//! network given in the network format (docs/network.md), exported straight into a `qmac net`
//! directory that `qmac net sim` runs through the array.
//!
//! 1. [`model_spec`]: the network description's layers as the trainer's model (dense, conv2d with a
//!    square kernel, batch norm, max-pool, flatten, relu; the last layer dense, giving the logits).
//! 2. `qmac_train::train`: float training, batch norm folded, quantization-aware training under the
//!    scheme.
//! 3. [`export`]: the trained network in the network format: `net.toml` (the model with the scheme's
//!    quantization, batch norm layers removed because they are folded, and every trained quantizer
//!    parameter given: the input clip, each layer's PACT clips, level tables; the last layer gives logits) and
//!    `weights.safetensors` (the folded float weights and biases); `qmac net quantize` of those two
//!    gives `network.json`, which is computed here the same way.
//! 4. [`int_net`]: the integer parameters qmac's reference derived, evaluated by the trainer's integer
//!    network (`qmac_train::IntNet`): the accuracy `qmac train` reports is the array's, sample for sample.

use crate::net::chain::{quantize, QStage, QuantizedNet};
use crate::net::lower::HostStage;
use crate::net::lower::lower_from;
use crate::net::{LayerKind, NetError, Network, OutputMode, Shape};
use crate::outdir::Kind;
use crate::quantize::encode_bases;
use qmac_train::{ActQuant, Dataset, IntBasesIn, IntCompute, IntConv, IntNet, IntOutput, IntStage, Layer, LayerParams, ModelSpec, Scheme, TrainConfig, TrainError, WeightQuant};
use qmac_arith::quant::lsq::BinaryScheme;
use serde::Serialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Everything that can go wrong in `qmac train`.
#[derive(Debug, thiserror::Error)]
pub enum TrainCmdError {
    /// The trainer refused its input or failed.
    #[error(transparent)]
    Train(#[from] TrainError),
    /// The network description, its export or the reference failed.
    #[error(transparent)]
    Net(#[from] NetError),
    /// The model uses something the trainer cannot train or export.
    #[error("{origin}: layer {index} `{name}`: {message}")]
    Unsupported {
        /// The model file.
        origin: String,
        /// Layer index.
        index: usize,
        /// Layer name.
        name: String,
        /// What is not supported and what is.
        message: String,
    },
    /// The scheme cannot be exported into the network format.
    #[error("scheme {scheme}: {message}")]
    Scheme {
        /// The scheme's name.
        scheme: String,
        /// Why, and what to use.
        message: String,
    },
    /// A data file.
    #[error("{}: {source}", path.display())]
    Data {
        /// The file.
        path: PathBuf,
        /// The trainer's error.
        source: TrainError,
    },
    /// Writing the output directory.
    #[error(transparent)]
    Write(#[from] crate::quantize::QuantizeError),
}

/// What `qmac train` is asked to do.
#[derive(Clone, Debug)]
pub struct TrainJob {
    /// The network description (TOML).
    pub model: PathBuf,
    /// Training data (.npz with `x` and `y`).
    pub data: PathBuf,
    /// Validation data, if any.
    pub val: Option<PathBuf>,
    /// The scheme's name.
    pub scheme: String,
    /// Training settings (`input_bits` and `rounding` are taken from the model).
    pub config: TrainConfig,
    /// The output directory.
    pub out: PathBuf,
}

/// Accuracies of the exported integer network (the array's), as fractions.
#[derive(Clone, Debug, Serialize)]
pub struct IntegerAccuracy {
    /// On the training data.
    pub train: f64,
    /// On the validation data, if given.
    pub val: Option<f64>,
}

/// `train.json`: the trainer's log, the integer network's accuracy, the time.
#[derive(Clone, Debug, Serialize)]
pub struct TrainReport {
    /// The model file.
    pub model: String,
    /// The training data.
    pub data: String,
    /// The validation data.
    pub val: Option<String>,
    /// The trainer's log (float, post-training and QAT accuracy of its own quantized forward pass,
    /// which accumulates in float).
    pub log: qmac_train::TrainLog,
    /// The exported network in integers (qmac's reference semantics, identical in the array).
    pub integer: IntegerAccuracy,
    /// Training time (both phases), seconds.
    pub train_seconds: f64,
    /// Whole run, seconds.
    pub seconds: f64,
}

/// What [`train_to_dir`] produced.
pub struct TrainRun {
    /// The report (`train.json`).
    pub report: TrainReport,
    /// The exported network (`network.json`).
    pub net: QuantizedNet,
    /// The integer network the accuracy comes from.
    pub int_net: IntNet,
}

fn unsupported(origin: &Path, net: &Network, i: usize, message: impl Into<String>) -> TrainCmdError {
    TrainCmdError::Unsupported { origin: origin.display().to_string(), index: i, name: net.layers[i].name.clone(), message: message.into() }
}

/// The trainer's model of a network description; one error naming the layer for anything it cannot
/// train.
pub fn model_spec(net: &Network, origin: &Path) -> Result<ModelSpec, TrainCmdError> {
    let input = match net.input {
        Shape::Flat(n) => vec![n],
        Shape::Image(s) => s.to_vec(),
    };
    let square = |i: usize, what: &str, v: [usize; 2]| {
        if v[0] == v[1] {
            Ok(v[0])
        } else {
            Err(unsupported(origin, net, i, format!("{what} {v:?}: the trainer takes equal values in both directions")))
        }
    };
    let mut layers = Vec::with_capacity(net.layers.len());
    for (i, l) in net.layers.iter().enumerate() {
        layers.push(match &l.kind {
            LayerKind::Dense { .. } => Layer::Dense { out: l.output.channels() },
            LayerKind::Conv2d { kernel, stride, padding, .. } => Layer::Conv2d { out: l.output.channels(), kernel: square(i, "kernel", *kernel)?, stride: square(i, "stride", *stride)?, padding: square(i, "padding", *padding)? },
            LayerKind::BatchNorm { .. } => Layer::BatchNorm,
            LayerKind::MaxPool { size, stride } => Layer::MaxPool { size: square(i, "size", *size)?, stride: square(i, "stride", *stride)? },
            LayerKind::Flatten => Layer::Flatten,
            LayerKind::Relu => Layer::Relu,
        });
    }
    let last = net.layers.iter().rposition(|l| l.kind.is_compute()).expect("validated: a compute layer");
    if !matches!(net.layers[last].kind, LayerKind::Dense { .. }) {
        return Err(unsupported(origin, net, last, "the last dense or conv2d layer gives the class logits: it must be dense (add a flatten and a dense layer)"));
    }
    if let Some(j) = net.layers[last + 1..].iter().position(|l| l.kind == LayerKind::Relu) {
        return Err(unsupported(origin, net, last + 1 + j, "an activation after the last dense layer: its outputs are the class logits, which are signed"));
    }
    if let Some(j) = net.layers[last + 1..].iter().position(|l| matches!(l.kind, LayerKind::BatchNorm { .. })) {
        return Err(unsupported(origin, net, last + 1 + j, "a batch norm after the last dense layer: the trainer takes the last layer's outputs as the logits"));
    }
    for (i, l) in net.layers.iter().enumerate() {
        if l.kind.is_compute() && i != last {
            let relu = net.layers[i + 1..].iter().take_while(|x| matches!(x.kind, LayerKind::BatchNorm { .. } | LayerKind::Relu)).any(|x| x.kind == LayerKind::Relu);
            if !relu {
                return Err(unsupported(origin, net, i, "a hidden dense or conv2d layer needs an activation after it (its output is the next layer's PACT codes)"));
            }
        }
    }
    let spec = ModelSpec { input, layers };
    spec.shapes()?;
    Ok(spec)
}

/// Refuses schemes the network format cannot carry yet.
fn check_exportable(scheme: &Scheme) -> Result<(), TrainCmdError> {
    if let ActQuant::Binary(BinaryScheme::Greedy { bases }) = scheme.acts {
        if bases > 2 {
            return Err(TrainCmdError::Scheme {
                scheme: scheme.name.clone(),
                message: format!("{bases} activation bases: the array's output stage computes at most 2 (binary-gf1, binary-gf2, binary-ls1, binary-ls2, binary-lsT)"),
            });
        }
    }
    Ok(())
}

fn data(path: &Path) -> Result<Dataset, TrainCmdError> {
    Dataset::from_npz(path).map_err(|source| TrainCmdError::Data { path: path.to_path_buf(), source })
}

fn accuracy(p: &[u32], y: &[u32]) -> f64 {
    p.iter().zip(y).filter(|(a, b)| a == b).count() as f64 / y.len().max(1) as f64
}

/// The whole `qmac train` job: train, export, derive the integer network, write the directory
/// (`network.json`, `net.toml`, `weights.safetensors`, `model.toml`, `quantize.md`, `train.json`).
/// `progress` sees every epoch.
pub fn train_to_dir(job: &TrainJob, progress: &mut dyn FnMut(&qmac_train::EpochLog)) -> Result<TrainRun, TrainCmdError> {
    let t0 = Instant::now();
    crate::outdir::check(&job.out, Kind::Train).map_err(crate::quantize::QuantizeError::from)?;
    let scheme: Scheme = job.scheme.parse()?;
    check_exportable(&scheme)?;
    let model_text = std::fs::read_to_string(&job.model).map_err(|source| NetError::Io { path: job.model.clone(), source })?;
    let net = Network::from_toml(&model_text, &job.model.display().to_string())?;
    let spec = model_spec(&net, &job.model)?;
    let train_data = data(&job.data)?;
    let val = job.val.as_deref().map(data).transpose()?;
    let with_file = |path: &Path, d: &Dataset| d.check_model(&spec).map_err(|source| TrainCmdError::Data { path: path.to_path_buf(), source });
    with_file(&job.data, &train_data)?;
    if let (Some(p), Some(v)) = (&job.val, &val) {
        with_file(p, v)?;
    }
    let config = TrainConfig { input_bits: net.input_bits, rounding: net.rounding.into(), ..job.config.clone() };
    let t_train = Instant::now();
    let mut trained = qmac_train::train(&spec, &train_data, val.as_ref(), Some(&scheme), &config, progress)?;
    let train_seconds = t_train.elapsed().as_secs_f64();

    let (toml_text, tensors) = export(&model_text, &net, &spec, &scheme, &config, &mut trained)?;
    let enet = Network::from_toml(&toml_text, "the exported net.toml")?;
    let by_name: HashMap<&str, &(Vec<f32>, Vec<usize>)> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
    let stages = lower_from(&enet, &mut |name| Ok(by_name.get(name).map(|t| (*t).clone()).expect("exported tensor")))?;
    let n_calib = train_data.len().min(64);
    let calib = &train_data.x()[..n_calib * train_data.sample_len()];
    let mut q = quantize(&enet, stages, calib, n_calib, "weights.safetensors", &job.data.display().to_string())?;
    q.calibration.rule = "given (qmac train)".into();
    q.calibration.percentile = None;
    let int_net = int_net(&q);
    let predict = |d: &Dataset| int_net.predict(d.x(), d.len());
    let integer = IntegerAccuracy { train: accuracy(&predict(&train_data)?, train_data.y()), val: val.as_ref().map(|v| predict(v).map(|p| accuracy(&p, v.y()))).transpose()? };
    let report = TrainReport {
        model: job.model.display().to_string(),
        data: job.data.display().to_string(),
        val: job.val.as_ref().map(|p| p.display().to_string()),
        log: trained.log.clone(),
        integer,
        train_seconds,
        seconds: t0.elapsed().as_secs_f64(),
    };
    let files = vec![
        ("network.json".to_string(), q.to_json().into_bytes()),
        ("net.toml".to_string(), toml_text.into_bytes()),
        ("weights.safetensors".to_string(), safetensors_bytes(&tensors)),
        ("model.toml".to_string(), model_text.into_bytes()),
        ("quantize.md".to_string(), crate::net::flow::quantize_md(&q, None).into_bytes()),
        ("train.json".to_string(), (serde_json::to_string_pretty(&report).expect("report serialises") + "\n").into_bytes()),
    ];
    crate::quantize::replace_dir(&job.out, Kind::Train, &files)?;
    Ok(TrainRun { report, net: q, int_net })
}

fn safetensors_bytes(tensors: &[(String, (Vec<f32>, Vec<usize>))]) -> Vec<u8> {
    use safetensors::tensor::TensorView;
    let bytes: Vec<Vec<u8>> = tensors.iter().map(|(_, (v, _))| v.iter().flat_map(|x| x.to_le_bytes()).collect()).collect();
    let views: Vec<(&str, TensorView<'_>)> = tensors.iter().zip(&bytes).map(|((n, (_, s)), b)| (n.as_str(), TensorView::new(safetensors::Dtype::F32, s.clone(), b).expect("sizes match"))).collect();
    safetensors::serialize(views, None).expect("safetensors serialise")
}

/// The trained network in the network format: `net.toml` text and the tensors it names.
///
/// The model's `[quant]` becomes the scheme's; every layer's own `quant` table is replaced by the
/// trained parameters (`clips`, `levels`, and the first layer's `weight_bits` override); batch norm
/// layers are removed (folded into the weights); a layer without a bias tensor gets one
/// (`<layer name>.bias`), since training learns one. The input gets its clip (`[input] alpha`).
fn export(
    model_text: &str,
    net: &Network,
    spec: &ModelSpec,
    scheme: &Scheme,
    config: &TrainConfig,
    trained: &mut qmac_train::Trained,
) -> Result<(String, Vec<(String, (Vec<f32>, Vec<usize>))>), TrainCmdError> {
    use toml::Value;
    let mut doc: toml::Table = model_text.parse().expect("validated by Network::from_toml");
    let params = trained.layers()?;
    let (alpha, _) = trained.input_quantizer();
    let input = doc.entry("input").or_insert_with(|| Value::Table(Default::default()));
    if let Value::Table(t) = input {
        t.insert("alpha".into(), Value::Float(alpha));
        t.insert("bits".into(), Value::Integer(i64::from(net.input_bits)));
    }
    let (wname, wbits, granularity) = match scheme.weights {
        WeightQuant::Sawb { bits } => ("sawb", bits, "per_channel"),
        WeightQuant::Uniform { bits } => ("uniform", bits, "per_channel"),
        WeightQuant::Levels { bits } => ("levels", bits, "per_tensor"),
        WeightQuant::Binary(_) => ("ls1", 1, "per_channel"),
    };
    // binary activations: the scheme and its number of bases (computed by the output stage)
    let (act, act_bits, act_granularity) = match scheme.acts {
        ActQuant::Pact { bits, per_channel, .. } => ("pact", bits, if per_channel { "per_channel" } else { "per_tensor" }),
        ActQuant::Binary(b) => match b {
            BinaryScheme::Ls1 => ("ls1", 1, "per_tensor"),
            BinaryScheme::Ls2 => ("ls2", 2, "per_tensor"),
            BinaryScheme::LsTernary => ("lsT", 2, "per_tensor"),
            BinaryScheme::Greedy { bases } => ("gf", bases, "per_tensor"),
        },
    };
    let binary_acts = act != "pact";
    let mut quant = toml::Table::new();
    let old_quant = doc.get("quant").and_then(Value::as_table).cloned().unwrap_or_default();
    quant.insert("weights".into(), Value::String(wname.into()));
    quant.insert("weight_bits".into(), Value::Integer(i64::from(wbits)));
    quant.insert("act".into(), Value::String(act.into()));
    quant.insert("act_bits".into(), Value::Integer(i64::from(act_bits)));
    quant.insert("granularity".into(), Value::String(granularity.into()));
    quant.insert("act_granularity".into(), Value::String(act_granularity.into()));
    for keep in ["rounding"] {
        if let Some(v) = old_quant.get(keep) {
            quant.insert(keep.into(), v.clone());
        }
    }
    doc.insert("quant".into(), Value::Table(quant));
    let first = spec.layers.iter().position(|l| matches!(l, Layer::Dense { .. } | Layer::Conv2d { .. }));
    let last = spec.layers.iter().rposition(|l| matches!(l, Layer::Dense { .. }));
    let raw_layers = doc.get("layer").and_then(Value::as_array).cloned().unwrap_or_default();
    let mut layers = Vec::new();
    let mut tensors = Vec::new();
    for (i, raw) in raw_layers.into_iter().enumerate() {
        let Value::Table(mut t) = raw else { unreachable!("validated: layers are tables") };
        match &params[i] {
            LayerParams::Weights { weight, shape, bias, levels } => {
                let name = net.layers[i].name.clone();
                let wt = t.get("weight").and_then(Value::as_str).expect("validated").to_string();
                let bt = t.get("bias").and_then(Value::as_str).map(String::from).unwrap_or_else(|| format!("{name}.bias"));
                t.insert("bias".into(), Value::String(bt.clone()));
                tensors.push((wt, (weight.clone(), shape.clone())));
                tensors.push((bt, (bias.clone(), vec![bias.len()])));
                let mut q = toml::Table::new();
                if Some(i) == first {
                    if let Some(b) = config.first_weight_bits {
                        let w = if matches!(scheme.weights, WeightQuant::Levels { .. }) { "levels" } else { "uniform" };
                        q.insert("weights".into(), Value::String(w.into()));
                        q.insert("weight_bits".into(), Value::Integer(i64::from(b)));
                    }
                }
                if let Some(l) = levels {
                    q.insert("levels".into(), Value::Array(l.iter().map(|&v| Value::Float(v)).collect()));
                }
                // the PACT quantizer of the relu after this layer (and its batch norm); the last layer
                // gives the logits (the array's logits mode), which have no clips
                if Some(i) != last {
                    let clips = params[i + 1..].iter().find_map(|p| match p {
                        LayerParams::Pact { alpha, .. } => Some(alpha.clone()),
                        LayerParams::Bases { scales } => Some(scales.clone()),
                        _ => None,
                    }).expect("validated: a relu follows");
                    q.insert("clips".into(), Value::Array(clips.into_iter().map(Value::Float).collect()));
                }
                t.insert("quant".into(), Value::Table(q));
                layers.push(Value::Table(t));
            }
            _ if matches!(net.layers[i].kind, LayerKind::BatchNorm { .. }) => {}
            // binary activations are the signs of the pre-activation, computed by the layer's output
            // stage: the network format has no relu after such a layer
            _ if binary_acts && net.layers[i].kind == LayerKind::Relu => {}
            _ => layers.push(Value::Table(t)),
        }
    }
    doc.insert("layer".into(), Value::Array(layers));
    let head = format!("# Exported by qmac train: scheme {}, seed {}; batch norm folded into the weights,\n# every clip, level table and the input clip trained (docs/training.md).\n", scheme.name, config.seed);
    Ok((head + &toml::to_string(&doc).expect("toml serialises"), tensors))
}

/// The integer network of a quantized network: every compute stage's weight code values and output
/// parameters as qmac's reference derived them.
pub fn int_net(q: &QuantizedNet) -> IntNet {
    // the basis scales of the codes entering the next stage, if binary
    let mut bases: Option<Vec<f64>> = None;
    let stages = q
        .stages
        .iter()
        .map(|s| match s {
            QStage::Compute(c) => {
                let l = &c.layer;
                let (out, k) = (l.geometry.out_channels, l.geometry.k);
                let bases_in = l.is_bases().then(|| IntBasesIn {
                    w_bases: l.weights.bits,
                    a_bases: l.input.bits,
                    pairs: l.channels.iter().flat_map(|ch| ch.pair_scales.iter().copied()).collect(),
                    padded: l.config.max_depth as usize - k,
                    pad_code: encode_bases(&[0.0], &l.input.basis_scales).expect("validated scales")[0],
                });
                let output = match c.mode {
                    OutputMode::Pact => IntOutput::Pact,
                    OutputMode::Bases => IntOutput::Bases { bases: l.config.out_bits.unwrap_or(1) },
                    OutputMode::Logits => IntOutput::Logits { units: c.out_scales().to_vec() },
                };
                bases = (c.mode == OutputMode::Bases).then(|| c.basis_scales().to_vec());
                IntStage::Compute(IntCompute {
                    input: match c.input {
                        Shape::Flat(n) => vec![n],
                        Shape::Image(s) => s.to_vec(),
                    },
                    conv: c.conv.map(|p| IntConv { kernel: p.kernel, stride: p.stride, padding: p.padding }),
                    out,
                    // with binary inputs the weights' basis codes, else their values
                    values: (0..out).flat_map(|o| (0..k).map(move |kk| if l.is_bases() { l.weights.codes[o][kk] as i64 } else { l.weights.value(o, kk) })).collect(),
                    params: l.params(),
                    out_bits: l.output.bits,
                    frac: l.config.bias_frac_bits,
                    bases_in,
                    output,
                })
            }
            QStage::Host(HostStage::MaxPool { size, stride, input, .. }) => {
                let Shape::Image(s) = input else { unreachable!("validated: max-pool on images") };
                IntStage::MaxPool { input: *s, size: *size, stride: *stride, bases: bases.clone() }
            }
            QStage::Host(HostStage::Flatten { .. }) => IntStage::Flatten,
        })
        .collect();
    IntNet { input_alpha: q.input.alpha, input_bits: q.input.bits, rounding: q.network.rounding.into(), stages }
}
