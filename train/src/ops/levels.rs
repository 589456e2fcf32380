//! Learnable levels (direct quantization, Hoang et al., IJCAI 2020): a per-layer table of
//! `2^bits` levels trained by gradient together with the weights.
//!
//! Forward: every weight becomes the nearest level of the table (`arith::quant::levels::
//! LevelTable::nearest`, ties to the lower index). Backward:
//!
//! ```text
//! dy_i/dw_i     = 1                       (straight-through)
//! dy_i/dlevel_j = 1 if code(w_i) = j, else 0
//! ```
//!
//! so a level's gradient is the sum of the gradients of the weights that use it.

use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape, Tensor};
use qmac_arith::quant::levels::LevelTable;

use super::{host, slice};

struct Levels {
    bits: u32,
}

impl Levels {
    fn table(&self, levels: &[f32]) -> Result<LevelTable> {
        LevelTable::new(self.bits, levels.iter().map(|&l| f64::from(l)).collect())
            .map_err(candle_core::Error::wrap)
    }
}

impl CustomOp2 for Levels {
    fn name(&self) -> &'static str {
        "levels"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let w = slice(s1, l1)?;
        let levels = slice(s2, l2)?;
        let table = self.table(levels)?;
        let out = w
            .iter()
            .map(|&v| levels[table.nearest(f64::from(v)) as usize])
            .collect();
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    fn bwd(
        &self,
        w: &Tensor,
        levels: &Tensor,
        _res: &Tensor,
        g: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let lv = host(levels)?;
        let table = self.table(&lv)?;
        let mut dl = vec![0f32; lv.len()];
        for (&wv, gv) in host(w)?.iter().zip(host(g)?) {
            dl[table.nearest(f64::from(wv)) as usize] += gv;
        }
        let dl = Tensor::from_vec(dl, levels.shape(), levels.device())?;
        Ok((Some(g.clone()), Some(dl)))
    }
}

/// Weights `w` replaced by their nearest levels of `levels` (`2^bits` elements);
/// differentiable in both by the rules above.
pub fn quantize(w: &Tensor, levels: &Tensor, bits: u32) -> Result<Tensor> {
    w.contiguous()?
        .apply_op2(&levels.contiguous()?, Levels { bits })
}
