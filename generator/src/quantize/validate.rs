//! Checking a `quantized.json` read back (by `qmac sim --inputs`): as strictly as a configuration.
//!
//! The file may have been edited by hand. Every length (channels, code rows, scales, tables) is checked
//! against the geometry and the configuration the file carries, every code against its width, every
//! run-time parameter against its field ([`crate::reference::check_params`]'s ranges), every float
//! for being finite, and the spec, geometry and configuration against each other. The first problem is
//! reported with the field's path, its value (capped) and what is allowed.

use super::{QuantizeError, QuantizedLayer, FORMAT};
use crate::config::{Config, EncodingName};
use crate::limits::capped;
use crate::quantize::spec::LayoutName;
use crate::quantize::ConvGeometry;
use crate::reference::{check_params, ParamError};
use std::fmt::Display;
use std::path::Path;

/// A field of `quantized.json` with a value outside what is allowed.
fn field(path: &Path, name: &str, value: impl Display, allowed: impl Display) -> QuantizeError {
    QuantizeError::BadQuantized { path: path.to_path_buf(), message: format!("field `{name}` = {} is invalid: {allowed}", capped(&value.to_string())) }
}

/// Check a `quantized.json` read from `path`; returns its validated configuration.
pub fn validate(q: &QuantizedLayer, path: &Path) -> Result<Config, QuantizeError> {
    let bad = |name: &str, value: &dyn Display, allowed: &dyn Display| field(path, name, value, allowed);
    if q.format != FORMAT {
        return Err(bad("format", &format!("{:?}", q.format), &format!("\"{FORMAT}\"")));
    }
    let cfg = Config::new(q.config.clone()).map_err(|e| QuantizeError::BadQuantized { path: path.to_path_buf(), message: format!("field `config`: {e}") })?;
    q.spec.validate().map_err(|e| QuantizeError::BadQuantized { path: path.to_path_buf(), message: format!("field `spec`: {e}") })?;

    // the configuration is the one the spec and the quantizers give
    let binary_in = q.input.scheme.is_binary();
    let same = |name: &str, got: &dyn Display, want: &dyn Display, why: &str| -> Result<(), QuantizeError> {
        if got.to_string() == want.to_string() {
            Ok(())
        } else {
            Err(bad(name, got, &format!("{want} ({why})")))
        }
    };
    same("weights.scheme", &q.weights.scheme.name(), &q.spec.weights.scheme.name(), "spec weights.scheme")?;
    same("weights.bits", &q.weights.bits, &q.spec.weights.bits, "spec weights.bits")?;
    same("config.weight_bits", &cfg.weight_bits, &q.weights.bits, "weights.bits")?;
    same("config.weight_encoding", &ser(&cfg.weight_encoding), &ser(&q.weights.encoding), "weights.encoding")?;
    same("input.scheme", &q.input.scheme.name(), &q.spec.input.scheme.name(), "spec input.scheme")?;
    same("input.bits", &q.input.bits, &q.spec.input.bits, "spec input.bits")?;
    same("config.act_bits", &cfg.act_bits, &q.input.bits, "input.bits")?;
    let act_enc = if binary_in { EncodingName::Bases } else { EncodingName::Unsigned };
    same("config.act_encoding", &ser(&cfg.act_encoding), &ser(&act_enc), "the input scheme's")?;
    same("output.bits", &q.output.bits, &q.spec.output.bits, "spec output.bits")?;
    same("config.out_bits", &cfg.out_bits(), &q.output.bits, "output.bits")?;
    same("config.rounding", &ser(&cfg.rounding), &ser(&q.spec.rounding), "spec rounding")?;

    // geometry
    let g = &q.geometry;
    let (out, k) = (g.out_channels, g.k);
    if out == 0 {
        return Err(bad("geometry.out_channels", &out, &"at least 1"));
    }
    if k == 0 {
        return Err(bad("geometry.k", &k, &"at least 1"));
    }
    same("geometry.layout", &ser(&g.layout), &ser(&q.spec.weights.layout), "spec weights.layout")?;
    let shape_text = format!("{:?}", g.weight_shape);
    match g.layout {
        LayoutName::Fc => {
            if g.weight_shape != [out, k] {
                return Err(bad("geometry.weight_shape", &shape_text, &format!("[out_channels, k] = [{out}, {k}]")));
            }
            if g.conv.is_some() {
                return Err(bad("geometry.conv", &"(given)", &"absent for a fully connected layer"));
            }
        }
        LayoutName::Conv => {
            let [o, ci, kh, kw] = g.weight_shape[..] else {
                return Err(bad("geometry.weight_shape", &shape_text, &"4 dimensions [out][in][kh][kw]"));
            };
            let want = ConvGeometry::new(ci, [kh, kw], &q.spec.conv_geometry());
            if o != out || want.k() != k {
                return Err(bad("geometry.weight_shape", &shape_text, &format!("[{out}, in, kh, kw] with in * kh * kw = k = {k}")));
            }
            if g.conv != Some(want) {
                return Err(bad("geometry.conv", &format!("{:?}", g.conv), &format!("{want:?} (the weight shape and the spec's [conv])")));
            }
        }
    }
    let lanes = cfg.lanes as usize;
    let depth = k.div_ceil(lanes) * lanes;
    if cfg.max_depth as usize != depth {
        return Err(bad("config.max_depth", &cfg.max_depth, &format!("{depth} (geometry.k = {k} rounded up to lanes = {lanes})")));
    }

    // weights
    let w = &q.weights;
    if w.codes.len() != out {
        return Err(bad("weights.codes", &format!("{} rows", w.codes.len()), &format!("exactly geometry.out_channels = {out} rows")));
    }
    if w.float.len() != out {
        return Err(bad("weights.float", &format!("{} rows", w.float.len()), &format!("exactly geometry.out_channels = {out} rows")));
    }
    let code_max = (1u64 << w.bits) - 1;
    for o in 0..out {
        if w.codes[o].len() != k {
            return Err(bad(&format!("weights.codes[{o}]"), &format!("{} codes", w.codes[o].len()), &format!("exactly geometry.k = {k} codes")));
        }
        if let Some((i, c)) = w.codes[o].iter().enumerate().find(|(_, &c)| c > code_max) {
            return Err(bad(&format!("weights.codes[{o}][{i}]"), c, &format!("0..={code_max} (weights.bits = {})", w.bits)));
        }
        if w.float[o].len() != k {
            return Err(bad(&format!("weights.float[{o}]"), &format!("{} values", w.float[o].len()), &format!("exactly geometry.k = {k} values")));
        }
        if let Some((i, v)) = w.float[o].iter().enumerate().find(|(_, v)| !v.is_finite()) {
            return Err(bad(&format!("weights.float[{o}][{i}]"), v, &"a finite number"));
        }
    }
    let per = |name: &str, n: usize| -> Result<(), QuantizeError> {
        if n == 1 || n == out {
            Ok(())
        } else {
            Err(bad(name, &format!("{n} entries"), &format!("1 (per tensor) or geometry.out_channels = {out} (per channel)")))
        }
    };
    per("weights.scales", w.scales.len())?;
    finite_list(path, "weights.scales", &w.scales, false)?;
    if w.encoding == EncodingName::Bases {
        per("weights.basis_scales", w.basis_scales.len())?;
        for (o, row) in w.basis_scales.iter().enumerate() {
            if row.len() != w.bits as usize {
                return Err(bad(&format!("weights.basis_scales[{o}]"), &format!("{} scales", row.len()), &format!("exactly weights.bits = {} (one per basis)", w.bits)));
            }
            finite_list(path, &format!("weights.basis_scales[{o}]"), row, true)?;
        }
    } else if !w.basis_scales.is_empty() {
        return Err(bad("weights.basis_scales", &"(given)", &"absent unless weights.encoding = \"bases\""));
    }
    match (&w.levels, w.encoding == EncodingName::Codebook) {
        (Some(l), true) => {
            let n = 1usize << w.bits;
            if l.levels.len() != n {
                return Err(bad("weights.levels.levels", &format!("{} levels", l.levels.len()), &format!("exactly 2^weights.bits = {n}")));
            }
            finite_list(path, "weights.levels.levels", &l.levels, true)?;
            if l.ints.len() != n {
                return Err(bad("weights.levels.ints", &format!("{} levels", l.ints.len()), &format!("exactly 2^weights.bits = {n}")));
            }
            let (lo, hi) = (-(1i64 << (cfg.level_bits - 1)), (1i64 << (cfg.level_bits - 1)) - 1);
            if let Some((i, v)) = l.ints.iter().enumerate().find(|(_, v)| !(lo..=hi).contains(*v)) {
                return Err(bad(&format!("weights.levels.ints[{i}]"), v, &format!("{lo}..={hi} (config.level_bits = {})", cfg.level_bits)));
            }
            if !(-1000..=62).contains(&l.exponent) {
                return Err(bad("weights.levels.exponent", &l.exponent, &"-1000..=62"));
            }
        }
        (None, false) => {}
        (Some(_), false) => return Err(bad("weights.levels", &"(given)", &"absent unless weights.encoding = \"codebook\"")),
        (None, true) => return Err(bad("weights.levels", &"(absent)", &"the level table of codebook weights")),
    }

    // bias, input and output quantizers
    if q.bias.len() != out {
        return Err(bad("bias", &format!("{} values", q.bias.len()), &format!("exactly geometry.out_channels = {out}")));
    }
    if let Some((i, v)) = q.bias.iter().enumerate().find(|(_, v)| !v.is_finite()) {
        return Err(bad(&format!("bias[{i}]"), v, &"a finite number"));
    }
    if binary_in {
        if q.input.basis_scales.len() != q.input.bits as usize {
            return Err(bad("input.basis_scales", &format!("{} scales", q.input.basis_scales.len()), &format!("exactly input.bits = {} (one per basis)", q.input.bits)));
        }
        finite_list(path, "input.basis_scales", &q.input.basis_scales, true)?;
    } else {
        for (name, v) in [("input.alpha", q.input.alpha), ("input.scale", q.input.scale)] {
            if !(v.is_finite() && v > 0.0) {
                return Err(bad(name, &v, &"a finite number > 0"));
            }
        }
    }
    for (name, list) in [("output.alphas", &q.output.alphas), ("output.scales", &q.output.scales)] {
        if list.len() != out {
            return Err(bad(name, &format!("{} values", list.len()), &format!("exactly geometry.out_channels = {out}")));
        }
        if let Some((i, v)) = list.iter().enumerate().find(|(_, v)| !(v.is_finite() && **v > 0.0)) {
            return Err(bad(&format!("{name}[{i}]"), v, &"a finite number > 0"));
        }
    }

    // channels: run-time parameters within their fields, pair scales, offsets
    if q.channels.len() != out {
        return Err(bad("channels", &format!("{} channels", q.channels.len()), &format!("exactly geometry.out_channels = {out}")));
    }
    let np = q.basis_pairs();
    let (lo, hi) = (-(1i64 << (cfg.level_bits - 1)), (1i64 << (cfg.level_bits - 1)) - 1);
    for (o, ch) in q.channels.iter().enumerate() {
        match check_params(&cfg, &vec![ch.params(); cfg.cols as usize]) {
            Ok(()) => {}
            Err(ParamError::Range { field: f, value, allowed, .. }) => return Err(bad(&format!("channels[{o}].{f}"), &value, &allowed)),
            Err(e) => return Err(bad(&format!("channels[{o}]"), &"", &e)),
        }
        if q.is_bases() {
            if ch.pair_scales.len() != np {
                return Err(bad(&format!("channels[{o}].pair_scales"), &format!("{} scales", ch.pair_scales.len()), &format!("exactly weights.bits * input.bits = {np}")));
            }
            if let Some((i, v)) = ch.pair_scales.iter().enumerate().find(|(_, v)| !(lo..=hi).contains(*v)) {
                return Err(bad(&format!("channels[{o}].pair_scales[{i}]"), v, &format!("{lo}..={hi} (config.level_bits = {})", cfg.level_bits)));
            }
            let want = (depth - k) as i128 * ch.pair_scales.iter().map(|&v| i128::from(v)).sum::<i128>();
            if i128::from(ch.acc_offset) != want {
                return Err(bad(&format!("channels[{o}].acc_offset"), &ch.acc_offset, &format!("{want} (the {} padded elements times the sum of the pair scales)", depth - k)));
            }
        } else {
            if !ch.pair_scales.is_empty() {
                return Err(bad(&format!("channels[{o}].pair_scales"), &"(given)", &"absent unless the inputs are binary bases"));
            }
            if ch.acc_offset != 0 {
                return Err(bad(&format!("channels[{o}].acc_offset"), &ch.acc_offset, &"0 unless the inputs are binary bases"));
            }
        }
    }
    Ok(cfg)
}

fn finite_list(path: &Path, name: &str, v: &[f64], negative_ok: bool) -> Result<(), QuantizeError> {
    match v.iter().enumerate().find(|(_, x)| !x.is_finite() || (!negative_ok && **x < 0.0)) {
        Some((i, x)) => Err(field(path, &format!("{name}[{i}]"), x, if negative_ok { "a finite number" } else { "a finite number >= 0" })),
        None => Ok(()),
    }
}

/// A value as `quantized.json` spells it.
fn ser<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_default()
}
