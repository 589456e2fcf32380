//! Software side of qmac's quantization schemes: float tensors in, integer codes and scales out.
//!
//! Pure and I/O-free. Every submodule implements one family of quantizers from the project's
//! reference sheet `quantization.md` (cited below as "quantization.md § section-title"):
//!
//! | module | scheme | quantization.md section |
//! |---|---|---|
//! | [`pact`] | PACT clipped unsigned activations | § PACT: parameterized clipping activation |
//! | [`sawb`] | SAWB symmetric weights without a zero level | § SAWB: statistics-aware weight binning |
//! | [`lsq`] | least-squares binary bases (ls-1, ls-2, ls-T, gf-k) | § Least-squares binary quantization |
//! | [`levels`] | learnable level tables, channel-wise activation clips | § Direct quantization with learnable levels |
//! | [`uniform`] | plain uniform signed / unsigned integers (baseline) | § Integer-only inference |
//!
//! # Conventions
//!
//! * A tensor is a `&[f32]` laid out row-major as `[channels][elements]`: weights are
//!   `[out_channels][fan_in]`, activations are channel-major (for example `[C][H*W]`).
//!   [`Granularity::PerChannel`] gives one parameter set (alpha, scale, ...) per row.
//! * All arithmetic is done in `f64`; scales are reported as `f64`.
//! * Rounding at exact ties is explicit and configurable ([`Rounding`], the crate's one rounding
//!   type from [`crate::round`], applied to floats by [`round_f64`]), as demanded by
//!   quantization.md § Rounding.
//! * Codes are unsigned bit patterns `0..=2^bits - 1`; the integer each stands for follows the
//!   crate's [`Encoding`] (from [`crate::code`]), so the same codes feed the hardware model.
//! * Bad input (empty tensor, bit-width out of range, shape mismatch, non-finite values, bad
//!   parameters) is reported as a [`QuantError`]; nothing here panics on user input.
#![warn(missing_docs)]

use std::ops::RangeInclusive;

use thiserror::Error;

pub use crate::code::Encoding;
pub use crate::round::Rounding;

pub mod levels;
pub mod lsq;
pub mod pact;
pub mod sawb;
pub mod uniform;

/// Everything that can be wrong with a quantizer's input.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum QuantError {
    /// The tensor has no elements.
    #[error("empty tensor: there is nothing to quantize")]
    EmptyTensor,
    /// A bit-width (or another bit count) is outside the range the scheme supports.
    #[error("{what} = {bits} is out of range, allowed {min}..={max}")]
    BitsOutOfRange {
        /// Which scheme or parameter the bit count belongs to.
        what: &'static str,
        /// The rejected bit count.
        bits: u32,
        /// Smallest allowed value.
        min: u32,
        /// Largest allowed value.
        max: u32,
    },
    /// A per-channel granularity does not split the tensor into equal rows.
    #[error(
        "shape mismatch: a tensor of {len} elements cannot be split into {axis0_len} channels \
         (axis0_len must be nonzero and divide the length)"
    )]
    ChannelSplit {
        /// Number of elements in the tensor.
        len: usize,
        /// Requested number of channels (rows).
        axis0_len: usize,
    },
    /// A slice of parameters or a second tensor has the wrong length.
    #[error("shape mismatch: expected {expected} {what}, got {found}")]
    ShapeMismatch {
        /// What was counted.
        what: &'static str,
        /// Expected length.
        expected: usize,
        /// Actual length.
        found: usize,
    },
    /// An input value is NaN or infinite.
    #[error("non-finite {what} at index {index}: {value}")]
    NonFinite {
        /// What kind of value it is.
        what: &'static str,
        /// Position in the slice.
        index: usize,
        /// The offending value.
        value: f64,
    },
    /// A parameter value violates its requirement (for example a PACT alpha <= 0).
    #[error("invalid {what} at index {index}: {value} (must be {requirement})")]
    InvalidParameter {
        /// Which parameter.
        what: &'static str,
        /// Position in the parameter slice (0 for scalars).
        index: usize,
        /// The offending value.
        value: f64,
        /// The requirement it violates.
        requirement: &'static str,
    },
    /// A level does not fit the requested signed fixed-point format.
    #[error(
        "fixed-point overflow: level {index} = {level} times 2^{frac_bits} rounds to {scaled}, \
         outside the signed {total_bits}-bit range {min}..={max}"
    )]
    LevelOverflow {
        /// Index of the level in its table.
        index: usize,
        /// The float level.
        level: f64,
        /// Fractional bits of the format.
        frac_bits: u32,
        /// The rounded scaled value that does not fit.
        scaled: f64,
        /// Total bits of the format (two's complement).
        total_bits: u32,
        /// Smallest representable integer.
        min: i64,
        /// Largest representable integer.
        max: i64,
    },
}

/// How many parameter sets a quantizer uses for a tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Granularity {
    /// One parameter set for the whole tensor.
    #[default]
    PerTensor,
    /// One parameter set per row of a `[axis0_len][len / axis0_len]` row-major tensor: per output
    /// channel for weights `[out_channels][fan_in]`, per channel for channel-major activations.
    PerChannel {
        /// Number of rows (channels); must be nonzero and divide the tensor length.
        axis0_len: usize,
    },
}

/// Validated split of a tensor into rows (internal).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Layout {
    /// Number of parameter sets (rows).
    pub(crate) channels: usize,
    /// Elements per row.
    pub(crate) row_len: usize,
}

impl Granularity {
    /// Number of parameter sets: 1 per tensor, `axis0_len` per channel.
    pub fn channels(self) -> usize {
        match self {
            Granularity::PerTensor => 1,
            Granularity::PerChannel { axis0_len } => axis0_len,
        }
    }

    /// Splits a tensor of `len` elements into rows, or says why it cannot.
    pub(crate) fn layout(self, len: usize) -> Result<Layout, QuantError> {
        if len == 0 {
            return Err(QuantError::EmptyTensor);
        }
        match self {
            Granularity::PerTensor => Ok(Layout {
                channels: 1,
                row_len: len,
            }),
            Granularity::PerChannel { axis0_len } => {
                if len.checked_rem(axis0_len) != Some(0) {
                    Err(QuantError::ChannelSplit { len, axis0_len })
                } else {
                    Ok(Layout {
                        channels: axis0_len,
                        row_len: len / axis0_len,
                    })
                }
            }
        }
    }
}

/// Rounds `x` to an integer-valued `f64` by `rounding` (quantization.md § Rounding); the float
/// counterpart of [`crate::round::shift_round`], with the same tie rules.
///
/// * [`Rounding::HalfEven`]: `f64::round_ties_even` (0.5 -> 0, 1.5 -> 2, 2.5 -> 2, -2.5 -> -2), the
///   rule of `torch.round` and of the QONNX `Quant` operator's default `ROUND`.
/// * [`Rounding::HalfUp`]: `floor(x + 0.5)` in exact arithmetic (0.5 -> 1, 2.5 -> 3, -2.5 -> -2).
///   It is evaluated by comparing the fractional part `x - floor(x)` with 0.5; that difference is
///   exact in binary floating point (or, for `-0.5 < x < 0`, rounded to the correct side of 0.5).
///   The literal `f64` expression `floor(x + 0.5)` would misround 0.49999999999999994 to 1 and odd
///   integers above 2^52 to the next even one, because the addition itself rounds.
///
/// Non-finite inputs are returned unchanged.
pub fn round_f64(x: f64, rounding: Rounding) -> f64 {
    match rounding {
        Rounding::HalfEven => x.round_ties_even(),
        Rounding::HalfUp => {
            let floor = x.floor();
            if x - floor >= 0.5 {
                floor + 1.0
            } else {
                floor
            }
        }
    }
}

/// How codes map back to real values, per channel.
#[derive(Debug, Clone, PartialEq)]
pub enum CodeMap {
    /// `value = (encoding.value(bits, code) - zero_points[ch]) * scales[ch]`, with the integer
    /// value of the code given by [`Encoding`]:
    ///
    /// * PACT: [`Encoding::Unsigned`], zero point 0, scale `alpha / n` (quantization.md § PACT);
    /// * SAWB: [`Encoding::Odd`] (the odd integer `2c - n`), zero point 0, scale `alpha / n`
    ///   (quantization.md § SAWB);
    /// * uniform signed: [`Encoding::Int`] (two's complement), zero point 0;
    /// * uniform unsigned: [`Encoding::Unsigned`] with a zero point.
    Linear {
        /// How a code's bit pattern maps to an integer.
        encoding: Encoding,
        /// Real value of one integer step, per channel.
        scales: Vec<f64>,
        /// Integer value that represents real 0, per channel.
        zero_points: Vec<i64>,
    },
    /// `value = levels[code]`: a learnable level table shared by the whole tensor
    /// (quantization.md § Direct quantization with learnable levels).
    Table {
        /// The `2^bits` levels, indexed by code.
        levels: Vec<f64>,
    },
}

impl CodeMap {
    /// Per-channel scales, if this map has them (`None` for a level table).
    pub fn scales(&self) -> Option<&[f64]> {
        match self {
            CodeMap::Linear { scales, .. } => Some(scales),
            CodeMap::Table { .. } => None,
        }
    }
}

/// A quantized tensor: one `bits`-wide code (an unsigned bit pattern) per element plus what is
/// needed to map codes back to real values.
///
/// Invariants (established by the quantizers, which are the only constructors): every code lies in
/// [`Quantized::code_range`] `= 0..=2^bits - 1`, the map has one parameter set per channel (or a
/// table of `2^bits` levels), and the codes are in the row-major order of the input tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct Quantized {
    bits: u32,
    granularity: Granularity,
    row_len: usize,
    codes: Vec<u32>,
    map: CodeMap,
}

impl Quantized {
    /// Assembles a result; callers guarantee the invariants.
    pub(crate) fn new(
        bits: u32,
        granularity: Granularity,
        layout: Layout,
        codes: Vec<u32>,
        map: CodeMap,
    ) -> Self {
        debug_assert_eq!(codes.len(), layout.channels * layout.row_len);
        debug_assert!(codes.iter().all(|&c| c <= steps(bits)));
        Quantized {
            bits,
            granularity,
            row_len: layout.row_len,
            codes,
            map,
        }
    }

    /// Bit-width of the codes.
    pub fn bits(&self) -> u32 {
        self.bits
    }

    /// Granularity of the parameters.
    pub fn granularity(&self) -> Granularity {
        self.granularity
    }

    /// Number of parameter sets (1 per tensor, rows per channel).
    pub fn channels(&self) -> usize {
        self.granularity.channels()
    }

    /// Elements per channel row (the whole tensor for per-tensor granularity).
    pub fn row_len(&self) -> usize {
        self.row_len
    }

    /// The codes (bit patterns), one per input element, in input order.
    pub fn codes(&self) -> &[u32] {
        &self.codes
    }

    /// The range every code lies in: `0..=2^bits - 1`.
    pub fn code_range(&self) -> RangeInclusive<u32> {
        0..=steps(self.bits)
    }

    /// How codes map back to values.
    pub fn map(&self) -> &CodeMap {
        &self.map
    }

    /// The integer each code stands for in the hardware datapath ([`Encoding::value`]), or `None`
    /// for a level table (whose codes are table indices).
    pub fn int_values(&self) -> Option<Vec<i64>> {
        match &self.map {
            CodeMap::Linear { encoding, .. } => Some(
                self.codes
                    .iter()
                    .map(|&c| encoding.value(self.bits, u64::from(c)))
                    .collect(),
            ),
            CodeMap::Table { .. } => None,
        }
    }

    /// Real value of `code` in `channel`, or `None` if either is out of range.
    pub fn value(&self, channel: usize, code: u32) -> Option<f64> {
        if channel < self.channels() && self.code_range().contains(&code) {
            Some(self.value_unchecked(channel, code))
        } else {
            None
        }
    }

    fn value_unchecked(&self, channel: usize, code: u32) -> f64 {
        match &self.map {
            CodeMap::Linear {
                encoding,
                scales,
                zero_points,
            } => {
                let v = encoding.value(self.bits, u64::from(code)) - zero_points[channel];
                v as f64 * scales[channel]
            }
            CodeMap::Table { levels } => levels[code as usize],
        }
    }

    /// Dequantized tensor in `f64` (no extra rounding).
    pub fn dequantize_f64(&self) -> Vec<f64> {
        self.codes
            .iter()
            .enumerate()
            .map(|(i, &c)| self.value_unchecked(i / self.row_len, c))
            .collect()
    }

    /// Dequantized tensor, rounded to `f32` like the input.
    pub fn dequantize(&self) -> Vec<f32> {
        self.dequantize_f64()
            .into_iter()
            .map(|v| v as f32)
            .collect()
    }

    /// Quantization error against the original tensor, per tensor and per channel of this
    /// result's granularity.
    pub fn error_report(&self, original: &[f32]) -> Result<ErrorReport, QuantError> {
        ErrorReport::new(original, &self.dequantize_f64(), self.granularity)
    }
}

/// Error of an approximation: mean squared error and largest absolute error.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ErrorStats {
    /// Mean of `(original - approx)^2`.
    pub mse: f64,
    /// Largest `|original - approx|`.
    pub max_abs: f64,
}

impl ErrorStats {
    /// Error of `approx` against `original` (same length, nonempty, original finite).
    pub fn between(original: &[f32], approx: &[f64]) -> Result<Self, QuantError> {
        check_input(original, Granularity::PerTensor)?;
        check_count("approximated values", original.len(), approx.len())?;
        Ok(Self::of_pairs(original, approx))
    }

    fn of_pairs(original: &[f32], approx: &[f64]) -> Self {
        let mut sum_sq = 0.0;
        let mut max_abs: f64 = 0.0;
        for (&o, &a) in original.iter().zip(approx) {
            let d = f64::from(o) - a;
            sum_sq += d * d;
            max_abs = max_abs.max(d.abs());
        }
        ErrorStats {
            mse: sum_sq / original.len() as f64,
            max_abs,
        }
    }
}

/// Error of an approximation for the whole tensor and for each channel row.
#[derive(Debug, Clone, PartialEq)]
pub struct ErrorReport {
    /// Over all elements.
    pub tensor: ErrorStats,
    /// One entry per row of `granularity` (a single entry for per-tensor).
    pub per_channel: Vec<ErrorStats>,
}

impl ErrorReport {
    /// Error of `approx` against `original`, split into rows by `granularity` (which need not be
    /// the granularity the approximation was made with: per-channel errors of a per-tensor
    /// quantizer show which channels it fits badly).
    pub fn new(
        original: &[f32],
        approx: &[f64],
        granularity: Granularity,
    ) -> Result<Self, QuantError> {
        let layout = check_input(original, granularity)?;
        check_count("approximated values", original.len(), approx.len())?;
        let per_channel = original
            .chunks(layout.row_len)
            .zip(approx.chunks(layout.row_len))
            .map(|(o, a)| ErrorStats::of_pairs(o, a))
            .collect();
        Ok(ErrorReport {
            tensor: ErrorStats::of_pairs(original, approx),
            per_channel,
        })
    }
}

/// `n = 2^bits - 1`, the number of steps of an unsigned `bits`-bit code (bits <= 31).
pub(crate) fn steps(bits: u32) -> u32 {
    (1u32 << bits) - 1
}

/// Rejects `bits` outside `min..=max`.
pub(crate) fn check_bits(
    what: &'static str,
    bits: u32,
    min: u32,
    max: u32,
) -> Result<(), QuantError> {
    if (min..=max).contains(&bits) {
        Ok(())
    } else {
        Err(QuantError::BitsOutOfRange {
            what,
            bits,
            min,
            max,
        })
    }
}

/// Rejects a length other than `expected`.
pub(crate) fn check_count(
    what: &'static str,
    expected: usize,
    found: usize,
) -> Result<(), QuantError> {
    if expected == found {
        Ok(())
    } else {
        Err(QuantError::ShapeMismatch {
            what,
            expected,
            found,
        })
    }
}

/// Validates a tensor (nonempty, splittable, finite) and returns its row layout.
pub(crate) fn check_input(x: &[f32], granularity: Granularity) -> Result<Layout, QuantError> {
    let layout = granularity.layout(x.len())?;
    if let Some((index, &v)) = x.iter().enumerate().find(|(_, v)| !v.is_finite()) {
        return Err(QuantError::NonFinite {
            what: "input value",
            index,
            value: f64::from(v),
        });
    }
    Ok(layout)
}

/// `sign(x)` as a 0/1 bit with `sign(0) = +1`: 1 for `x >= 0`, 0 for `x < 0`.
pub(crate) fn sign_bit(x: f64) -> u8 {
    u8::from(x >= 0.0)
}

#[cfg(test)]
pub(crate) use crate::splitmix::SplitMix64;

#[cfg(test)]
mod tests {
    use super::*;

    /// Exact ties go to the even neighbour under HalfEven and upwards under HalfUp;
    /// non-ties round to nearest under both.
    #[test]
    fn rounding_at_ties() {
        let cases = [
            // x, half-even, half-up
            (0.5, 0.0, 1.0),
            (1.5, 2.0, 2.0),
            (2.5, 2.0, 3.0),
            (3.5, 4.0, 4.0),
            (-0.5, 0.0, 0.0),
            (-1.5, -2.0, -1.0),
            (-2.5, -2.0, -2.0),
            (2.4, 2.0, 2.0),
            (2.6, 3.0, 3.0),
            (-2.6, -3.0, -3.0),
            (7.0, 7.0, 7.0),
        ];
        for (x, even, up) in cases {
            assert_eq!(round_f64(x, Rounding::HalfEven), even, "half-even of {x}");
            assert_eq!(round_f64(x, Rounding::HalfUp), up, "half-up of {x}");
        }
    }

    fn round_up(x: f64) -> f64 {
        round_f64(x, Rounding::HalfUp)
    }

    /// HalfUp is exact where the naive f64 `floor(x + 0.5)` is not.
    #[test]
    fn half_up_has_no_double_rounding() {
        let just_below_half = 0.499_999_999_999_999_94_f64;
        assert!(just_below_half < 0.5);
        assert_eq!(round_up(just_below_half), 0.0);
        let big_odd = 4_503_599_627_370_497.0_f64; // 2^52 + 1
        assert_eq!(round_up(big_odd), big_odd);
        assert_eq!(round_up(-1e-20), 0.0);
        assert_eq!(round_up(-0.75), -1.0);
    }

    /// Granularity splits only into equal nonempty rows.
    #[test]
    fn layout_validation() {
        assert_eq!(
            Granularity::PerTensor.layout(0),
            Err(QuantError::EmptyTensor)
        );
        assert_eq!(
            Granularity::PerChannel { axis0_len: 3 }.layout(12),
            Ok(Layout {
                channels: 3,
                row_len: 4
            })
        );
        assert_eq!(
            Granularity::PerChannel { axis0_len: 5 }.layout(12),
            Err(QuantError::ChannelSplit {
                len: 12,
                axis0_len: 5
            })
        );
        assert_eq!(
            Granularity::PerChannel { axis0_len: 0 }.layout(12),
            Err(QuantError::ChannelSplit {
                len: 12,
                axis0_len: 0
            })
        );
        assert!(matches!(
            check_input(&[1.0, f32::NAN], Granularity::PerTensor),
            Err(QuantError::NonFinite { index: 1, .. })
        ));
    }

    /// Error messages name the problem and, for bit-widths, the allowed range.
    #[test]
    fn error_messages() {
        let e = check_bits("PACT activation bits", 9, 1, 8).unwrap_err();
        assert_eq!(
            e.to_string(),
            "PACT activation bits = 9 is out of range, allowed 1..=8"
        );
        let e = Granularity::PerChannel { axis0_len: 5 }
            .layout(12)
            .unwrap_err();
        assert!(e
            .to_string()
            .contains("12 elements cannot be split into 5 channels"));
        assert!(QuantError::EmptyTensor.to_string().contains("empty tensor"));
    }

    /// Hand-computed error statistics, per tensor and per row.
    #[test]
    fn error_report_by_hand() {
        let original = [1.0, 2.0, 3.0, 4.0];
        let approx = [1.0, 2.0, 3.0, 5.0];
        let r =
            ErrorReport::new(&original, &approx, Granularity::PerChannel { axis0_len: 2 }).unwrap();
        assert_eq!(
            r.tensor,
            ErrorStats {
                mse: 0.25,
                max_abs: 1.0
            }
        );
        assert_eq!(
            r.per_channel,
            vec![
                ErrorStats {
                    mse: 0.0,
                    max_abs: 0.0
                },
                ErrorStats {
                    mse: 0.5,
                    max_abs: 1.0
                }
            ]
        );
        assert_eq!(
            ErrorStats::between(&original, &approx[..3]),
            Err(QuantError::ShapeMismatch {
                what: "approximated values",
                expected: 4,
                found: 3
            })
        );
    }
}
