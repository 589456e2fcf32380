//! The crate's typed errors.

use thiserror::Error;

/// Everything that can go wrong while training.
#[derive(Debug, Error)]
pub enum TrainError {
    /// A scheme name that is not one of the known ones.
    #[error("unknown scheme {name:?}; allowed: {allowed}")]
    UnknownScheme {
        /// The rejected name (capped in length).
        name: String,
        /// The accepted forms.
        allowed: &'static str,
    },
    /// The model description is inconsistent.
    #[error("model layer {layer} ({kind}): {message}")]
    Model {
        /// Index of the layer (0-based).
        layer: usize,
        /// The layer's kind.
        kind: &'static str,
        /// What is wrong.
        message: String,
    },
    /// The model as a whole is unusable (no layers, no weight layer, bad input shape).
    #[error("model: {0}")]
    ModelShape(String),
    /// The dataset does not fit the model or is malformed.
    #[error("dataset {what}: {message}")]
    Data {
        /// Which part of the dataset (file, `x`, `y`).
        what: String,
        /// What is wrong and what is allowed.
        message: String,
    },
    /// A training setting out of range.
    #[error("training setting `{field}` = {value} is invalid: {allowed}")]
    Setting {
        /// The setting's name.
        field: &'static str,
        /// The rejected value.
        value: String,
        /// What is allowed.
        allowed: &'static str,
    },
    /// Training diverged (a non-finite loss).
    #[error(
        "training diverged: the loss is {loss} in {phase} epoch {epoch}; lower the learning rate"
    )]
    Diverged {
        /// Which phase.
        phase: &'static str,
        /// Epoch (1-based).
        epoch: usize,
        /// The loss.
        loss: f64,
    },
    /// A quantizer rejected its input.
    #[error("quantizer: {0}")]
    Quant(#[from] qmac_arith::quant::QuantError),
    /// The tensor library failed (a bug, not an input error).
    #[error("tensor library: {0}")]
    Tensor(#[from] candle_core::Error),
}

/// Caps a user-supplied string for an error message.
pub(crate) fn capped(s: &str) -> String {
    const MAX: usize = 64;
    if s.chars().count() <= MAX {
        s.to_string()
    } else {
        format!("{}...", s.chars().take(MAX).collect::<String>())
    }
}
