//! Learnable levels (`levels` weights): the codebook of float levels and the integer levels the array
//! loads (mirrors `qmac_arith::quant::levels`).

use super::{CodebookLevels, QuantizeError};
use qmac_arith::quant::levels::LevelTable;
use qmac_arith::quant::{QuantError, Rounding};

/// The integer levels of a codebook: `round(level * 2^e)` (the spec's rounding) with the largest `e`
/// (at most 62) for which every level fits `level_bits` signed bits; `e` may be negative for levels of
/// `2^(level_bits - 1)` or more. An all-zero table gets `e = 0`. Returns `(ints, e)`.
pub fn fixed_levels(table: &LevelTable, level_bits: u32, rounding: Rounding) -> Result<(Vec<i64>, i32), QuantizeError> {
    if table.levels().iter().all(|&l| l == 0.0) {
        return Ok((vec![0; table.levels().len()], 0));
    }
    let q = |e: QuantError| QuantizeError::Quant { what: "weight level table".into(), source: e };
    for e in (-1000..=62i32).rev() {
        let fixed = if e >= 0 {
            table.to_fixed_with(e as u32, level_bits, rounding)
        } else {
            // 2^e is exact, so pre-scaling the levels changes nothing but the exponent
            let scaled: Vec<f64> = table.levels().iter().map(|&l| l * 2f64.powi(e)).collect();
            LevelTable::new(table.bits(), scaled).map_err(q)?.to_fixed_with(0, level_bits, rounding)
        };
        match fixed {
            Ok(f) => return Ok((f.levels().iter().map(|&v| i64::from(v)).collect(), e)),
            Err(QuantError::LevelOverflow { .. }) => continue,
            Err(other) => return Err(q(other)),
        }
    }
    Err(QuantizeError::Spec { field: "weights.levels".into(), value: "levels beyond 2^1000".into(), allowed: "finite levels of a sane magnitude".into() })
}

/// The codebook of `levels` weights: the trained table if given, else [`LevelTable::fit`]; codes are the
/// nearest levels of the float table ([`LevelTable::quantize`], ties to the lower index).
pub fn codebook(w: &[f32], bits: u32, trained: Option<&[f64]>, level_bits: u32, rounding: Rounding) -> Result<(Vec<u64>, CodebookLevels), QuantizeError> {
    let q = |e: QuantError| QuantizeError::Quant { what: "weight level table".into(), source: e };
    let table = match trained {
        Some(l) => LevelTable::new(bits, l.to_vec()).map_err(q)?,
        None => LevelTable::fit(bits, w).map_err(q)?,
    };
    let codes = table.quantize(w).map_err(q)?.codes().iter().map(|&c| u64::from(c)).collect();
    let (ints, exponent) = fixed_levels(&table, level_bits, rounding)?;
    Ok((codes, CodebookLevels { levels: table.levels().to_vec(), fitted: trained.is_none(), ints, exponent }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::EncodingName;
    use crate::quantize::{quantize_layer, LayerTensors, Spec};
    use crate::quantize::test_specs::*;

    /// Codebook weights: codes are the nearest trained levels, integer levels `round(level * 2^e)` with
    /// the largest `e` that fits `level_bits`, one weight step `2^-e`.
    #[test]
    fn codebook_levels_follow_the_formulas() {
        let text = |levels: &str, lb: u32| {
            Spec::from_toml(
                &format!("[weights]\ntensor = \"w\"\nscheme = \"levels\"\nbits = 2\ngranularity = \"per_tensor\"\nlayout = \"fc\"\n{levels}\n[input]\nbits = 4\nalpha = 1.0\n[output]\nscheme = \"pact\"\nbits = 4\nalpha = 2.0\n[array]\nlevel_bits = {lb}\ncols = 2\nlanes = 2\n"),
                "t",
            )
            .unwrap()
        };
        let w = vec![0.9f32, -0.3, 0.05, -1.0, 0.31, 0.6];
        let s = text("levels = [-0.8, -0.2, 0.2, 0.7]", 6);
        let q = quantize_layer(&s, &LayerTensors::new(&s, w.clone(), vec![2, 3], None).unwrap(), src()).unwrap();
        let l = q.weights.levels.as_ref().unwrap();
        // 6 bits: -32..=31; 0.8 * 2^5 = 25.6 fits, 0.8 * 2^6 = 51.2 does not -> e = 5
        assert_eq!((l.exponent, l.ints.clone(), l.fitted), (5, vec![-26, -6, 6, 22], false));
        assert_eq!(q.weights.codes, vec![vec![3, 1, 2], vec![0, 2, 3]]); // nearest levels
        assert_eq!(q.weights.scales, vec![1.0 / 32.0]);
        assert_eq!(q.table(0), vec![-26, -6, 6, 22]);
        assert_eq!(q.table(0), q.table(1));
        assert_eq!((q.config.weight_encoding, q.config.level_bits), (EncodingName::Codebook, 6));
        assert_eq!(q.weights.value(1, 0), -26);
        assert!((q.channels[0].acc_scale - 1.0 / 32.0 / 15.0).abs() < 1e-15);
        // large levels get a negative exponent: 100 * 2^-2 = 25 fits 6 bits, 100 * 2^-1 = 50 does not
        let (ints, e) = fixed_levels(&LevelTable::new(1, vec![-100.0, 3.0]).unwrap(), 6, Rounding::HalfEven).unwrap();
        assert_eq!((ints, e), (vec![-25, 1], -2));
        // fitted levels when the spec has none
        let s = text("", 8);
        let q = quantize_layer(&s, &LayerTensors::new(&s, w.clone(), vec![2, 3], None).unwrap(), src()).unwrap();
        let l = q.weights.levels.as_ref().unwrap();
        assert!(l.fitted);
        assert_eq!(l.levels, LevelTable::fit(2, &w).unwrap().levels());
    }
}
