//! The training loop: float training, then quantization-aware fine-tuning.

use candle_core::{Device, Tensor, D};
use qmac_arith::quant::Rounding;
use serde::Serialize;

use crate::data::Dataset;
use crate::error::TrainError;
use crate::model::{LayerParams, Mode, ModelSpec, Net};
use crate::optim::Adam;
use crate::rng::Rng;
use crate::scheme::Scheme;

/// Samples evaluated per forward pass outside training.
const EVAL_CHUNK: usize = 512;
/// Samples the activation quantizers are calibrated on.
const CALIB_SAMPLES: usize = 512;
/// The smallest value a learned PACT clip may take.
const MIN_ALPHA: f32 = 1e-3;

/// Training settings.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TrainConfig {
    /// Seed of the initial weights and of the batch order.
    pub seed: u64,
    /// Epochs of float training.
    pub float_epochs: usize,
    /// Epochs of quantization-aware fine-tuning (with a scheme).
    pub qat_epochs: usize,
    /// Samples per batch.
    pub batch: usize,
    /// Adam's learning rate in float training (cosine decay to 0 over the phase).
    pub lr: f64,
    /// Adam's learning rate in quantization-aware training (cosine decay to 0 over the phase).
    pub qat_lr: f64,
    /// Decoupled weight decay of the dense and conv2d weights (AdamW), both phases.
    pub weight_decay: f64,
    /// L2 regularisation of the PACT clips: `alpha_decay * sum alpha^2` is added to the loss.
    pub alpha_decay: f64,
    /// Bits of the network input's PACT codes (its clip is the largest training value).
    pub input_bits: u32,
    /// Weight bits of the first dense or conv2d layer, if not the scheme's: the first layer at 8
    /// bits, as is common. Plain uniform weights there (a level table for `levels` schemes).
    pub first_weight_bits: Option<u32>,
    /// Rounding of every quantizer.
    #[serde(serialize_with = "rounding_name")]
    pub rounding: Rounding,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            seed: 1,
            float_epochs: 60,
            qat_epochs: 120,
            batch: 32,
            lr: 2e-3,
            qat_lr: 1e-2,
            weight_decay: 0.05,
            alpha_decay: 1e-4,
            input_bits: 8,
            first_weight_bits: None,
            rounding: Rounding::HalfEven,
        }
    }
}

fn rounding_name<S: serde::Serializer>(r: &Rounding, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(r.name())
}

impl TrainConfig {
    fn validate(&self) -> Result<(), TrainError> {
        let bad = |field, value: String, allowed| {
            Err(TrainError::Setting {
                field,
                value,
                allowed,
            })
        };
        if self.batch == 0 {
            return bad("batch", self.batch.to_string(), "1 or more");
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return bad("lr", self.lr.to_string(), "finite and > 0");
        }
        if !(self.qat_lr.is_finite() && self.qat_lr > 0.0) {
            return bad("qat_lr", self.qat_lr.to_string(), "finite and > 0");
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return bad(
                "weight_decay",
                self.weight_decay.to_string(),
                "finite and >= 0",
            );
        }
        if !(self.alpha_decay.is_finite() && self.alpha_decay >= 0.0) {
            return bad(
                "alpha_decay",
                self.alpha_decay.to_string(),
                "finite and >= 0",
            );
        }
        if let Some(b) = self.first_weight_bits.filter(|b| !(2..=8).contains(b)) {
            return bad("first_weight_bits", b.to_string(), "2..=8");
        }
        if !(1..=8).contains(&self.input_bits) {
            return bad("input_bits", self.input_bits.to_string(), "1..=8");
        }
        Ok(())
    }
}

/// A training phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Float training.
    Float,
    /// Quantization-aware training.
    Qat,
}

impl Phase {
    fn name(self) -> &'static str {
        match self {
            Phase::Float => "float",
            Phase::Qat => "qat",
        }
    }
}

/// One epoch's figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EpochLog {
    /// The phase.
    pub phase: Phase,
    /// Epoch within the phase, from 1.
    pub epoch: usize,
    /// Mean training loss (cross-entropy, plus the clips' L2 term in QAT).
    pub loss: f64,
    /// Training accuracy over the epoch's batches (in training mode).
    pub train_accuracy: f64,
    /// Accuracy on the validation data, if given.
    pub val_accuracy: Option<f64>,
}

/// The whole run's log.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TrainLog {
    /// The scheme of the quantization-aware phase, if any.
    pub scheme: Option<String>,
    /// The settings.
    pub config: TrainConfig,
    /// Samples trained on.
    pub samples: usize,
    /// Every epoch, float first.
    pub epochs: Vec<EpochLog>,
    /// Validation accuracy of the float network (batch norm folded), if validation data was given.
    pub float_accuracy: Option<f64>,
    /// Validation accuracy of the float network's weights under the scheme's quantizers before
    /// fine-tuning (post-training quantization), if validation data was given.
    pub post_training_accuracy: Option<f64>,
    /// Validation accuracy after quantization-aware training, if validation data was given.
    pub qat_accuracy: Option<f64>,
}

/// A trained network: its parameters, its quantizers' parameters and the log.
pub struct Trained {
    net: Net,
    /// The training log.
    pub log: TrainLog,
}

impl std::fmt::Debug for Trained {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trained")
            .field("spec", &self.net.spec)
            .field("log", &self.log)
            .finish()
    }
}

impl Trained {
    /// The model.
    pub fn spec(&self) -> &ModelSpec {
        &self.net.spec
    }

    /// Every layer's parameters (batch norm folded into the preceding layer), the quantizers'
    /// clips, scales and level tables.
    pub fn layers(&self) -> Result<Vec<LayerParams>, TrainError> {
        self.net.export()
    }

    /// The weights of layer `layer` as the quantized network computes with them (dequantized
    /// codes), or `None` for a layer without weights or a float-only training.
    pub fn quantized_weights(&self, layer: usize) -> Result<Option<Vec<f32>>, TrainError> {
        self.net.quantized_weights(layer)
    }

    /// The network input's PACT clip and bits (quantized networks).
    pub fn input_quantizer(&self) -> (f64, u32) {
        self.net.input_quantizer()
    }

    /// Predicted classes of every sample of `data` (quantized if trained with a scheme).
    pub fn predict(&mut self, data: &Dataset) -> Result<Vec<u32>, TrainError> {
        data.check_model(&self.net.spec)?;
        let mode = self.eval_mode();
        predict(&mut self.net, data, mode)
    }

    /// The logits (`[N, classes]`, row-major) of every sample of `data` from the forward pass of
    /// evaluation (quantized if trained with a scheme; float accumulation).
    pub fn logits(&mut self, data: &Dataset) -> Result<Vec<f32>, TrainError> {
        data.check_model(&self.net.spec)?;
        let mode = self.eval_mode();
        let idx: Vec<usize> = (0..data.len()).collect();
        let mut out = Vec::with_capacity(data.len() * self.net.spec.classes());
        for chunk in idx.chunks(EVAL_CHUNK) {
            let (x, _) = batch_tensors(&self.net, data, chunk)?;
            out.extend(crate::ops::host(&self.net.forward(&x, mode)?)?);
        }
        Ok(out)
    }

    fn eval_mode(&self) -> Mode {
        if self.log.scheme.is_some() {
            Mode::Quant { train: false }
        } else {
            Mode::Float { train: false }
        }
    }
}

fn batch_tensors(net: &Net, data: &Dataset, idx: &[usize]) -> Result<(Tensor, Tensor), TrainError> {
    let n = data.sample_len();
    let mut x = Vec::with_capacity(idx.len() * n);
    for &i in idx {
        x.extend_from_slice(&data.x()[i * n..(i + 1) * n]);
    }
    let mut shape = vec![idx.len()];
    shape.extend_from_slice(&net.spec.input);
    let y: Vec<u32> = idx.iter().map(|&i| data.y()[i]).collect();
    Ok((
        Tensor::from_vec(x, shape, &Device::Cpu)?,
        Tensor::from_vec(y, idx.len(), &Device::Cpu)?,
    ))
}

fn predict(net: &mut Net, data: &Dataset, mode: Mode) -> Result<Vec<u32>, TrainError> {
    let idx: Vec<usize> = (0..data.len()).collect();
    let mut out = Vec::with_capacity(data.len());
    for chunk in idx.chunks(EVAL_CHUNK) {
        let (x, _) = batch_tensors(net, data, chunk)?;
        let logits = net.forward(&x, mode)?;
        out.extend(logits.argmax(D::Minus1)?.to_vec1::<u32>()?);
    }
    Ok(out)
}

fn accuracy(net: &mut Net, data: &Dataset, mode: Mode) -> Result<f64, TrainError> {
    let p = predict(net, data, mode)?;
    Ok(hits(&p, data.y()) as f64 / data.len() as f64)
}

fn hits(p: &[u32], y: &[u32]) -> usize {
    p.iter().zip(y).filter(|(a, b)| a == b).count()
}

/// Mean cross-entropy of `logits` (`[N, classes]`) against labels `y` (`[N]`).
fn cross_entropy(logits: &Tensor, y: &Tensor) -> Result<Tensor, TrainError> {
    let lse = logits.log_sum_exp(D::Minus1)?.unsqueeze(1)?;
    let logp = logits.broadcast_sub(&lse)?;
    let picked = logp.gather(&y.unsqueeze(1)?, 1)?;
    Ok(picked.mean_all()?.neg()?)
}

/// Trains `spec` on `data`: float training, then, with a `scheme`, quantization-aware fine-tuning.
/// `val` (optional) is evaluated after every epoch; `progress` sees every epoch's figures.
pub fn train(
    spec: &ModelSpec,
    data: &Dataset,
    val: Option<&Dataset>,
    scheme: Option<&Scheme>,
    config: &TrainConfig,
    progress: &mut dyn FnMut(&EpochLog),
) -> Result<Trained, TrainError> {
    config.validate()?;
    spec.shapes()?;
    data.check_model(spec)?;
    if let Some(v) = val {
        v.check_model(spec)?;
    }
    let mut rng = Rng::new(config.seed);
    let mut net = Net::new(
        spec,
        &mut rng,
        config.input_bits,
        config.first_weight_bits,
        config.rounding,
    )?;
    let mut log = TrainLog {
        scheme: scheme.map(|s| s.name.clone()),
        config: config.clone(),
        samples: data.len(),
        epochs: Vec::new(),
        float_accuracy: None,
        post_training_accuracy: None,
        qat_accuracy: None,
    };
    run_phase(
        &mut net,
        data,
        val,
        Phase::Float,
        config,
        &mut rng,
        &mut log,
        progress,
    )?;
    net.fold_batch_norm()?;
    let eval = |net: &mut Net, mode| val.map(|v| accuracy(net, v, mode)).transpose();
    log.float_accuracy = eval(&mut net, Mode::Float { train: false })?;
    if let Some(scheme) = scheme {
        let calib: Vec<usize> = (0..data.len().min(CALIB_SAMPLES)).collect();
        let (cx, _) = batch_tensors(&net, data, &calib)?;
        net.start_quantization(scheme, &cx, data.max_value())?;
        log.post_training_accuracy = eval(&mut net, Mode::Quant { train: false })?;
        run_phase(
            &mut net,
            data,
            val,
            Phase::Qat,
            config,
            &mut rng,
            &mut log,
            progress,
        )?;
        log.qat_accuracy = eval(&mut net, Mode::Quant { train: false })?;
    }
    Ok(Trained { net, log })
}

#[allow(clippy::too_many_arguments)]
fn run_phase(
    net: &mut Net,
    data: &Dataset,
    val: Option<&Dataset>,
    phase: Phase,
    config: &TrainConfig,
    rng: &mut Rng,
    log: &mut TrainLog,
    progress: &mut dyn FnMut(&EpochLog),
) -> Result<(), TrainError> {
    let (epochs, lr, mode, eval_mode) = match phase {
        Phase::Float => (
            config.float_epochs,
            config.lr,
            Mode::Float { train: true },
            Mode::Float { train: false },
        ),
        Phase::Qat => (
            config.qat_epochs,
            config.qat_lr,
            Mode::Quant { train: true },
            Mode::Quant { train: false },
        ),
    };
    let mut adam = Adam::new(net.vars(config.weight_decay), lr)?;
    let alphas = net.alphas();
    for epoch in 1..=epochs {
        // cosine decay from lr to 0 over the phase, one value per epoch
        let t = (epoch - 1) as f64 / epochs as f64;
        adam.set_lr(lr * 0.5 * (1.0 + (std::f64::consts::PI * t).cos()));
        let order = rng.permutation(data.len());
        let (mut loss_sum, mut correct) = (0.0, 0usize);
        for idx in order.chunks(config.batch) {
            let (x, y) = batch_tensors(net, data, idx)?;
            let logits = net.forward(&x, mode)?;
            let mut loss = cross_entropy(&logits, &y)?;
            if phase == Phase::Qat && config.alpha_decay > 0.0 {
                for a in &alphas {
                    loss = (loss + (a.as_tensor().sqr()?.sum_all()? * config.alpha_decay)?)?;
                }
            }
            let l = f64::from(loss.to_scalar::<f32>()?);
            if !l.is_finite() {
                return Err(TrainError::Diverged {
                    phase: phase.name(),
                    epoch,
                    loss: l,
                });
            }
            loss_sum += l * idx.len() as f64;
            let pred = logits.argmax(D::Minus1)?.to_vec1::<u32>()?;
            correct += hits(&pred, &y.to_vec1::<u32>()?);
            adam.step(&loss)?;
            net.clamp_alphas(MIN_ALPHA)?;
        }
        let entry = EpochLog {
            phase,
            epoch,
            loss: loss_sum / data.len() as f64,
            train_accuracy: correct as f64 / data.len() as f64,
            val_accuracy: val.map(|v| accuracy(net, v, eval_mode)).transpose()?,
        };
        progress(&entry);
        log.epochs.push(entry);
    }
    Ok(())
}
