//! The weights by the spec's scheme: SAWB (`odd` codes), uniform (`int` codes), learnable levels
//! (`codebook`, [`super::levels`]) and the binary schemes (`odd` or `bases` codes, [`super::lsq`]).

use super::levels::codebook;
use super::{quant_err, CodebookLevels, GranularityName, QuantizeError, Spec, WeightScheme};
use crate::config::EncodingName;
use qmac_arith::quant::{lsq, sawb, uniform, Granularity};

/// What [`quantize_weights`] produces.
pub(super) struct WeightsOut {
    pub(super) codes: Vec<u64>,
    pub(super) scales: Vec<f64>,
    pub(super) encoding: EncodingName,
    pub(super) basis_scales: Vec<Vec<f64>>,
    pub(super) levels: Option<CodebookLevels>,
}

/// Quantize the weights by the spec: codes `[out][K]` (flattened), scales, encoding, and the basis scales
/// or level table. Binary schemes load as `bases` codes when the activations are binary too, else (ls-1,
/// gf-1) as 1-bit `odd` codes.
pub(super) fn quantize_weights(spec: &Spec, w: &[f32], out: usize) -> Result<WeightsOut, QuantizeError> {
    let bits = spec.weights.bits;
    let g = match spec.weights.granularity {
        GranularityName::PerTensor => Granularity::PerTensor,
        GranularityName::PerChannel => Granularity::PerChannel { axis0_len: out },
    };
    let what = format!("weight tensor `{}`", spec.weights.tensor);
    let plain = |codes: Vec<u64>, scales: Vec<f64>, encoding| WeightsOut { codes, scales, encoding, basis_scales: Vec::new(), levels: None };
    if let Some(scheme) = spec.weights.scheme.binary(bits) {
        let q = lsq::quantize(w, g, scheme).map_err(quant_err(what))?;
        let mut codes = vec![0u64; w.len()];
        for (i, b) in q.bases().iter().enumerate() {
            for (c, &s) in codes.iter_mut().zip(b.signs()) {
                *c |= u64::from(s) << i;
            }
        }
        let scales = q.bases()[0].scales().to_vec();
        if !spec.input.scheme.is_binary() {
            // one basis (validated): the sign bit is the 1-bit odd code, +-scale
            return Ok(plain(codes, scales, EncodingName::Odd));
        }
        let basis_scales = (0..g.channels()).map(|c| q.bases().iter().map(|b| b.scales()[c]).collect()).collect();
        return Ok(WeightsOut { codes, scales, encoding: EncodingName::Bases, basis_scales, levels: None });
    }
    match spec.weights.scheme {
        WeightScheme::Sawb => {
            let q = sawb::quantize(w, g, bits).map_err(quant_err(what))?;
            let scales = q.map().scales().expect("linear map").to_vec();
            Ok(plain(q.codes().iter().map(|&c| u64::from(c)).collect(), scales, EncodingName::Odd))
        }
        WeightScheme::Uniform => {
            let q = uniform::signed(w, g, bits, spec.rounding.into()).map_err(quant_err(what))?;
            let scales = q.map().scales().expect("linear map").to_vec();
            Ok(plain(q.codes().iter().map(|&c| u64::from(c)).collect(), scales, EncodingName::Int))
        }
        WeightScheme::Levels => {
            let (codes, levels) = codebook(w, bits, spec.weights.levels.as_deref(), spec.array.level_bits, spec.rounding.into())?;
            let scales = vec![2f64.powi(-levels.exponent)];
            Ok(WeightsOut { codes, scales, encoding: EncodingName::Codebook, basis_scales: Vec::new(), levels: Some(levels) })
        }
        WeightScheme::Ls1 | WeightScheme::Ls2 | WeightScheme::LsT | WeightScheme::Gf => unreachable!("binary schemes are handled above"),
    }
}
