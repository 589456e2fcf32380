//! `qmac net`: whole networks. A network description ([`format`], `net.toml`) with float weights is
//! lowered to compute stages with batch norm folded in ([`lower`]), calibrated on data ([`calibrate`]),
//! quantized layer by layer with each layer's output codes as the next layer's input codes
//! ([`chain`]), and run on real data through the integer reference and the generated array in
//! Verilator ([`rtl`]), with a report ([`report`]). docs/network.md describes the format, the
//! calibration, the chaining and the host/hardware split.
//!
//! The flow, with the function that does each step:
//!
//! 1. [`Network::from_file`]: parse and validate `net.toml`, every layer's shape derived.
//! 2. [`lower::lower`]: read the tensors, check their shapes, fold batch norm: a list of [`lower::Stage`]s
//!    (compute, max-pool, flatten), the float network.
//! 3. [`calibrate::calibrate`]: the float network on the calibration set ([`float::forward_with`]);
//!    every PACT clip and every set of binary basis scales: a [`calibrate::Calibrated`] (which training
//!    can give instead).
//! 4. [`chain::chain`]: every compute stage through [`crate::quantize::quantize_layer_to`] with its
//!    output stage (PACT, basis codes, logits), the previous layer's per-channel output scales folded
//!    into its weights (or its basis scales into the pair scales): a [`chain::QuantizedNet`].
//! 5. [`chain::QuantizedNet::run`]: the integer reference on data; [`rtl::simulate`]: every layer in
//!    Verilator, layers with the same hardware on one cached build.

pub mod calibrate;
pub mod chain;
pub mod cli;
pub mod data;
pub mod float;
pub mod flow;
pub mod format;
pub mod lower;
pub mod report;
pub mod rtl;

pub use format::{
    CalibRule, Calibration, Layer, LayerKind, LayerQuant, Network, OutputMode, Shape,
};

use std::path::PathBuf;

/// Everything that can go wrong in `qmac net`.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// A field of the network description has a value outside what is allowed.
    #[error("{layer}field `{field}` = {value} is invalid: {allowed}")]
    Field {
        /// `layer N `name`: ` or empty for a network-wide field.
        layer: String,
        /// The field.
        field: String,
        /// The value given (capped in length).
        value: String,
        /// What is allowed.
        allowed: String,
    },
    /// The description could not be parsed.
    #[error("cannot parse {origin}: {message}")]
    Parse {
        /// The file, and the layer if the error is inside one.
        origin: String,
        /// The parser's message.
        message: String,
    },
    /// A tensor does not fit its layer.
    #[error("layer {index} `{name}`: {what}")]
    Tensor {
        /// Layer index.
        index: usize,
        /// Layer name.
        name: String,
        /// What is wrong, with the tensor name and shapes.
        what: String,
    },
    /// A layer could not be quantized.
    #[error("layer {index} `{name}`: {source}")]
    Layer {
        /// Layer index.
        index: usize,
        /// Layer name.
        name: String,
        /// The cause.
        source: Box<crate::quantize::QuantizeError>,
    },
    /// A data file does not fit the network.
    #[error("{}: {message}", path.display())]
    Data {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A tensor file could not be read.
    #[error(transparent)]
    Read(#[from] crate::quantize::QuantizeError),
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The system's error.
        source: std::io::Error,
    },
    /// `network.json` is not one `qmac net quantize` wrote.
    #[error("{}: not a qmac net quantize directory: {message}", path.display())]
    NotANetDir {
        /// The directory or file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The array configuration or a Verilator run failed.
    #[error(transparent)]
    Sim(#[from] crate::sim::SimError),
    /// Generating a design failed.
    #[error(transparent)]
    Emit(#[from] crate::emit::EmitError),
    /// A derived configuration is invalid.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// Parameters do not fit the shared configuration (a bug if it ever happens).
    #[error(transparent)]
    Params(#[from] crate::reference::ParamError),
}
