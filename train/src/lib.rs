//! Quantization-aware training for qmac networks, with the quantizers of the seed papers.
//!
//! A pure training engine: a model description ([`ModelSpec`]: dense, conv2d, max-pool, flatten,
//! ReLU, batch norm), a labelled dataset ([`Dataset`]), float training and then quantization-aware
//! fine-tuning ([`train`]) under one of the [`Scheme`]s, and the trained float parameters with
//! every quantizer parameter the array needs ([`Trained`]). Tensors and automatic differentiation
//! come from candle (CPU only); docs/training.md says why.
//!
//! The quantizers' forward passes are the integer quantizers of `qmac-arith` (`arith/src/quant`):
//! SAWB clips and coefficients, PACT codes and rounding, least-squares binary bases, learnable
//! level tables. Only their backward rules live here ([`ops`]), each as its paper defines it.
//!
//! Everything is deterministic for a seed: the initial weights, the batch order and every
//! reduction come from the seed alone (no thread-count dependence).
#![warn(missing_docs)]

mod data;
mod error;
mod integer;
mod model;
pub mod ops;
mod optim;
mod rng;
mod scheme;
mod train;

pub use data::Dataset;
pub use error::TrainError;
pub use integer::{IntBasesIn, IntCompute, IntConv, IntNet, IntOutput, IntStage};
pub use model::{Layer, LayerParams, ModelSpec};
pub use scheme::{ActQuant, Scheme, WeightQuant, SCHEME_FORMS};
pub use train::{train, EpochLog, Phase, TrainConfig, TrainLog, Trained};
