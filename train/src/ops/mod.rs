//! The quantizers as differentiable tensor operations.
//!
//! Every forward pass calls the integer quantizer of `qmac-arith` (`arith/src/quant`), so the
//! values a network is trained with are exactly the ones qmac's reference computes with. The
//! backward rules are the papers' (shared/reference/quantization.md):
//!
//! | op | forward | backward |
//! |---|---|---|
//! | [`pact`] | `clamp(round(clip(x, 0, alpha) n / alpha), 0, n) alpha / n` | `dy/dx = 1` for `0 < x < alpha`, else 0; `dy/dalpha = 1` where `x >= alpha`, else 0 (PACT, straight-through rounding) |
//! | [`weights`] | SAWB / uniform / least-squares bases of the weights, per output channel | straight-through: `dy/dw = 1` |
//! | [`levels`] | the nearest level of a learnable table | `dy/dw = 1` (straight-through); `dy/dlevel_j = 1` for the weights whose code is `j`, else 0 |
//! | [`binary`] | binary bases of the pre-activation with given basis scales | `dy/dx = 1` where `|x| <= sum of the scales` (the largest level), else 0 |
//!
//! Gradient checks of each rule are in `train/tests/gradients.rs`.

pub mod binary;
pub mod levels;
pub mod pact;
pub mod weights;

use candle_core::{CpuStorage, Layout, Result, Tensor};

/// The `f32` elements of a CPU tensor in row-major order.
pub(crate) fn host(t: &Tensor) -> Result<Vec<f32>> {
    t.flatten_all()?.to_vec1::<f32>()
}

/// The elements of a custom op's argument, as a contiguous row-major slice.
pub(crate) fn slice<'a>(s: &'a CpuStorage, l: &Layout) -> Result<&'a [f32]> {
    let data = s.as_slice::<f32>()?;
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&data[a..b]),
        None => candle_core::bail!("quantizer op needs a contiguous tensor"),
    }
}

/// `q` in the forward pass, the identity gradient towards `x` in the backward pass
/// (the straight-through estimator): `(x - detach(x)) + q`, which is exactly `q` in value.
pub fn straight_through(x: &Tensor, q: &Tensor) -> Result<Tensor> {
    (x - x.detach())? + q
}

/// A `[1, C, 1, ...]` view of per-channel parameters for broadcasting over a `[N, C, ...]` tensor
/// (or the scalar view of a one-element tensor).
pub(crate) fn channel_view(p: &Tensor, rank: usize) -> Result<Tensor> {
    let c = p.elem_count();
    let mut shape = vec![1usize; rank];
    if c > 1 {
        shape[1] = c;
    }
    p.reshape(shape)
}
