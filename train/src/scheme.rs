//! The quantization schemes a network is trained for, and their names on the command line.

use std::fmt;
use std::str::FromStr;

use qmac_arith::quant::lsq::BinaryScheme;

use crate::error::{capped, TrainError};

/// How a weight layer's weights are quantized in training (forward: the `qmac-arith` quantizer;
/// backward: the straight-through estimator, see [`crate::ops`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightQuant {
    /// SAWB: odd symmetric levels, the clip from the weights' statistics at every step, one clip
    /// per output channel (`arith::quant::sawb`).
    Sawb {
        /// Code bits, 1..=8.
        bits: u32,
    },
    /// Plain uniform two's complement, scale `max |w| / (2^(bits-1) - 1)` per output channel.
    Uniform {
        /// Code bits, 2..=8.
        bits: u32,
    },
    /// Least-squares binary bases per output channel (ls-1, ls-2, ls-T, gf-k).
    Binary(BinaryScheme),
    /// Learnable levels: a per-layer table of `2^bits` levels trained by gradient.
    Levels {
        /// Code bits, 1..=8.
        bits: u32,
    },
}

/// How the activations between weight layers are quantized (they replace the ReLU).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActQuant {
    /// PACT: `clip(x, 0, alpha)` quantized to `bits` unsigned codes.
    Pact {
        /// Code bits, 1..=8.
        bits: u32,
        /// Whether alpha is learned (PACT) or stays at its calibrated value (plain uniform).
        learned: bool,
        /// One alpha per channel (channel-wise quantizers) instead of one per layer.
        per_channel: bool,
    },
    /// Binary bases of the pre-activation (ls-1, ls-2, ls-T, gf-k), one scale set per layer.
    Binary(BinaryScheme),
}

/// A training scheme: the weight and activation quantizers of every layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scheme {
    /// The name it was parsed from (canonical form).
    pub name: String,
    /// Weight quantizer of every weight layer.
    pub weights: WeightQuant,
    /// Quantizer of the activations between weight layers.
    pub acts: ActQuant,
}

/// The accepted scheme names, for errors and `--help`.
pub const SCHEME_FORMS: &str = "wKaM (SAWB weights, PACT activations), wKaM-uniform, wKaM-levels \
(learnable levels, channel-wise PACT), wKaM-pc (PACT alpha per channel), with K, M in 1..=8 \
(uniform: K >= 2); binary-ls1, binary-ls2, binary-lsT, binary-gfN (N in 1..=4): ls-1 weights, \
activations of that binary scheme";

impl FromStr for Scheme {
    type Err = TrainError;

    fn from_str(s: &str) -> Result<Self, TrainError> {
        let unknown = || TrainError::UnknownScheme {
            name: capped(s),
            allowed: SCHEME_FORMS,
        };
        if let Some(act) = s.strip_prefix("binary-") {
            let acts = match act {
                "ls1" => BinaryScheme::Ls1,
                "ls2" => BinaryScheme::Ls2,
                "lsT" => BinaryScheme::LsTernary,
                _ => {
                    let bases: u32 = act
                        .strip_prefix("gf")
                        .and_then(|b| b.parse().ok())
                        .filter(|b| (1..=4).contains(b))
                        .ok_or_else(unknown)?;
                    BinaryScheme::Greedy { bases }
                }
            };
            return Ok(Scheme {
                name: s.to_string(),
                weights: WeightQuant::Binary(BinaryScheme::Ls1),
                acts: ActQuant::Binary(acts),
            });
        }
        let (bits, variant) = s.split_once('-').unwrap_or((s, "sawb"));
        let (k, m) = bits
            .strip_prefix('w')
            .and_then(|r| r.split_once('a'))
            .and_then(|(k, m)| Some((k.parse::<u32>().ok()?, m.parse::<u32>().ok()?)))
            .filter(|(k, m)| (1..=8).contains(k) && (1..=8).contains(m))
            .ok_or_else(unknown)?;
        let pact = |learned, per_channel| ActQuant::Pact {
            bits: m,
            learned,
            per_channel,
        };
        let (weights, acts) = match variant {
            "sawb" => (WeightQuant::Sawb { bits: k }, pact(true, false)),
            "pc" => (WeightQuant::Sawb { bits: k }, pact(true, true)),
            "uniform" if k >= 2 => (WeightQuant::Uniform { bits: k }, pact(false, false)),
            "levels" => (WeightQuant::Levels { bits: k }, pact(true, true)),
            _ => return Err(unknown()),
        };
        Ok(Scheme {
            name: s.to_string(),
            weights,
            acts,
        })
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse() {
        let s: Scheme = "w2a2".parse().unwrap();
        assert_eq!(s.weights, WeightQuant::Sawb { bits: 2 });
        assert_eq!(
            s.acts,
            ActQuant::Pact {
                bits: 2,
                learned: true,
                per_channel: false
            }
        );
        let s: Scheme = "w2a4-levels".parse().unwrap();
        assert_eq!(s.weights, WeightQuant::Levels { bits: 2 });
        assert!(matches!(
            s.acts,
            ActQuant::Pact {
                bits: 4,
                per_channel: true,
                ..
            }
        ));
        let s: Scheme = "w4a4-uniform".parse().unwrap();
        assert!(matches!(s.acts, ActQuant::Pact { learned: false, .. }));
        let s: Scheme = "binary-gf2".parse().unwrap();
        assert_eq!(s.acts, ActQuant::Binary(BinaryScheme::Greedy { bases: 2 }));
        assert_eq!(s.weights, WeightQuant::Binary(BinaryScheme::Ls1));
        let s: Scheme = "binary-lsT".parse().unwrap();
        assert_eq!(s.acts, ActQuant::Binary(BinaryScheme::LsTernary));
    }

    #[test]
    fn unknown_names_are_one_clear_error() {
        for bad in [
            "w9a2",
            "w2",
            "w1a1-uniform",
            "binary-gf5",
            "w2a2-foo",
            "",
            "fp32",
        ] {
            let e = bad.parse::<Scheme>().unwrap_err().to_string();
            assert!(
                e.starts_with(&format!("unknown scheme {bad:?}; allowed: wKaM")),
                "{e}"
            );
        }
    }
}
