//! PACT (Choi et al., arXiv 1805.06085) with a learnable clip, per layer or per channel.
//!
//! Forward: `arith::quant::pact::quantize` (clip to `[0, alpha]`, `n = 2^bits - 1` steps, the
//! configured rounding), dequantized to `code * alpha / n`. Backward, as the paper defines it with
//! the straight-through estimator for the rounding:
//!
//! ```text
//! dy/dx     = 1 if 0 < x < alpha, else 0
//! dy/dalpha = 1 if x >= alpha,    else 0      (summed over the layer, or over each channel)
//! ```
//!
//! `x` is `[N, C, ...]`; `alpha` has one element (per layer) or `C` (per channel).

use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape, Tensor};
use qmac_arith::quant::{pact as arith_pact, Granularity, Rounding};

use super::{channel_view, slice};

struct Pact {
    bits: u32,
    rounding: Rounding,
}

impl CustomOp2 for Pact {
    fn name(&self) -> &'static str {
        "pact"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = slice(s1, l1)?;
        let alpha: Vec<f64> = slice(s2, l2)?.iter().map(|&a| f64::from(a)).collect();
        let dims = l1.dims();
        let c = alpha.len();
        if c > 1 && dims.get(1) != Some(&c) {
            candle_core::bail!("pact: {c} clip values for a tensor of shape {dims:?}");
        }
        // channel-major order for the per-channel quantizer: [C][N * inner]
        let inner: usize = dims.iter().skip(2).product();
        let order = if c == 1 {
            (0..x.len()).collect()
        } else {
            channel_major(dims[0], c, inner)
        };
        let xs: Vec<f32> = order.iter().map(|&i| x[i]).collect();
        let granularity = if c == 1 {
            Granularity::PerTensor
        } else {
            Granularity::PerChannel { axis0_len: c }
        };
        let q = arith_pact::quantize(&xs, granularity, &alpha, self.bits, self.rounding)
            .map_err(candle_core::Error::wrap)?
            .dequantize();
        let mut out = vec![0f32; x.len()];
        for (&i, v) in order.iter().zip(q) {
            out[i] = v;
        }
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        alpha: &Tensor,
        _res: &Tensor,
        g: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let a = channel_view(alpha, x.rank())?.broadcast_as(x.shape())?;
        let above = x.ge(&a)?.to_dtype(g.dtype())?;
        let inside = x.gt(0.0)?.to_dtype(g.dtype())?.mul(&(1.0 - &above)?)?;
        let dx = g.mul(&inside)?;
        let ga = g.mul(&above)?;
        let dalpha = if alpha.elem_count() == 1 {
            ga.sum_all()?.reshape(alpha.shape())?
        } else {
            let dims: Vec<usize> = (0..x.rank()).filter(|&d| d != 1).collect();
            ga.sum(dims)?.reshape(alpha.shape())?
        };
        Ok((Some(dx), Some(dalpha)))
    }
}

/// Indices of a `[n][c][inner]` tensor in `[c][n][inner]` order.
fn channel_major(n: usize, c: usize, inner: usize) -> Vec<usize> {
    let mut order = Vec::with_capacity(n * c * inner);
    for ch in 0..c {
        for s in 0..n {
            let base = (s * c + ch) * inner;
            order.extend(base..base + inner);
        }
    }
    order
}

/// PACT-quantized activations of `x` (`[N, C, ...]`) with clip `alpha` (1 or `C` elements, all
/// `> 0`) at `bits` bits; differentiable in `x` and `alpha` by the rules above.
pub fn pact(x: &Tensor, alpha: &Tensor, bits: u32, rounding: Rounding) -> Result<Tensor> {
    x.contiguous()?
        .apply_op2(&alpha.contiguous()?, Pact { bits, rounding })
}
