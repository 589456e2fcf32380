//! Binary activations (least-squares binary quantization, Pouransari et al., CVPR-W 2020),
//! taken from the pre-activation.
//!
//! The basis scales of a layer's activations are fixed numbers in the array, so the op takes them
//! as given: in training they come from the batch (`arith::quant::lsq::quantize`: ls-1's mean,
//! ls-2's and ls-T's exact optimal `v1`, gf-k's greedy means, [`batch_scales`]), and a running
//! average of them is what evaluation and export use. Forward: `arith::quant::lsq::
//! quantize_with_scales` (`s_i = sign(r_i)`, `r_(i+1) = r_i - v_i s_i`, `sign(0) = +1`).
//! Backward, the straight-through estimator clipped at the largest level:
//!
//! ```text
//! dy/dx = 1 if |x| <= v_1 + ... + v_k, else 0
//! ```

use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};
use qmac_arith::quant::lsq::{self, BinaryScheme};
use qmac_arith::quant::{Granularity, QuantError};

use super::slice;

struct Binary {
    scales: Vec<f64>,
}

impl CustomOp1 for Binary {
    fn name(&self) -> &'static str {
        "binary"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = slice(s, l)?;
        let q = lsq::quantize_with_scales(x, &self.scales)
            .map_err(candle_core::Error::wrap)?
            .dequantize();
        Ok((CpuStorage::F32(q), l.shape().clone()))
    }

    fn bwd(&self, x: &Tensor, _res: &Tensor, g: &Tensor) -> Result<Option<Tensor>> {
        let top: f64 = self.scales.iter().sum();
        let inside = x.abs()?.le(top)?.to_dtype(g.dtype())?;
        Ok(Some(g.mul(&inside)?))
    }
}

/// The basis scales `scheme` gives the whole tensor `x` (one value per basis).
pub fn batch_scales(x: &[f32], scheme: BinaryScheme) -> std::result::Result<Vec<f64>, QuantError> {
    let q = lsq::quantize(x, Granularity::PerTensor, scheme)?;
    Ok(q.bases().iter().map(|b| b.scales()[0]).collect())
}

/// `x` in binary bases with the given scales; differentiable in `x` by the rule above.
pub fn binarize(x: &Tensor, scales: &[f64]) -> Result<Tensor> {
    x.contiguous()?.apply_op1(Binary {
        scales: scales.to_vec(),
    })
}
