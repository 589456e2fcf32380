//! The layer's float tensors as the spec names them ([`LayerTensors`]), and the layer's shape as a
//! GEMM ([`geometry`]).

use super::{read_tensor, shape_err, AlphaSpec, ConvGeometry, Geometry, LayoutName, QuantizeError, Spec};
use std::path::Path;

/// The float tensors of one layer, resolved from the spec (tensor names read, numbers taken as given).
#[derive(Clone, Debug, PartialEq)]
pub struct LayerTensors {
    /// Weight values, C order.
    pub weight: Vec<f32>,
    /// Weight shape: `[out, in]` (fc) or `[out, in, kh, kw]` (conv).
    pub weight_shape: Vec<usize>,
    /// Float bias, one per output channel, if the layer has one.
    pub bias: Option<Vec<f32>>,
    /// PACT clip of the input activations (0 for binary input schemes, which have basis scales instead).
    pub input_alpha: f64,
    /// PACT clip(s) of the output: one value, or one per output channel.
    pub output_alpha: Vec<f64>,
}

impl LayerTensors {
    /// Read the spec's tensors from `path` (`.safetensors`, `.npy`, `.npz`).
    pub fn load(spec: &Spec, path: &Path) -> Result<LayerTensors, QuantizeError> {
        let (weight, weight_shape) = read_tensor(path, Some(&spec.weights.tensor))?;
        let bias = match &spec.weights.bias {
            Some(name) => Some(read_tensor(path, Some(name))?.0),
            None => None,
        };
        let read = |name: &str| -> Result<Vec<f64>, QuantizeError> { Ok(read_tensor(path, Some(name))?.0.into_iter().map(f64::from).collect()) };
        let input_alpha = match (&spec.input.alpha, spec.input.scale) {
            _ if spec.input.scheme.is_binary() => 0.0,
            (Some(AlphaSpec::Tensor(name)), _) => {
                let v = read(name)?;
                if v.len() != 1 {
                    return Err(shape_err(format!("spec field `input.alpha` names tensor `{name}` with {} elements; allowed: 1 element (one clip for the input tensor)", v.len())));
                }
                v[0]
            }
            _ => resolve_input_alpha(spec)?,
        };
        let output_alpha = match &spec.output.alpha {
            AlphaSpec::Tensor(name) => read(name)?,
            a => numeric_alpha(a),
        };
        Ok(LayerTensors { weight, weight_shape, bias, input_alpha, output_alpha })
    }

    /// Tensors given directly; the spec's clips must be numbers (not tensor names).
    pub fn new(spec: &Spec, weight: Vec<f32>, weight_shape: Vec<usize>, bias: Option<Vec<f32>>) -> Result<LayerTensors, QuantizeError> {
        let input_alpha = if spec.input.scheme.is_binary() { 0.0 } else { resolve_input_alpha(spec)? };
        if let AlphaSpec::Tensor(t) = &spec.output.alpha {
            return Err(QuantizeError::Spec { field: "output.alpha".into(), value: format!("{t:?}"), allowed: "a number or a list here (no weights file to read a tensor from)".into() });
        }
        Ok(LayerTensors { weight, weight_shape, bias, input_alpha, output_alpha: numeric_alpha(&spec.output.alpha) })
    }
}

fn numeric_alpha(a: &AlphaSpec) -> Vec<f64> {
    match a {
        AlphaSpec::Value(v) => vec![*v],
        AlphaSpec::PerChannel(v) => v.clone(),
        AlphaSpec::Tensor(_) => Vec::new(),
    }
}

fn resolve_input_alpha(spec: &Spec) -> Result<f64, QuantizeError> {
    let n = f64::from((1u32 << spec.input.bits) - 1);
    match (&spec.input.alpha, spec.input.scale) {
        (Some(AlphaSpec::Value(v)), _) => Ok(*v),
        (None, Some(s)) => Ok(s * n),
        (Some(a), _) => Err(QuantizeError::Spec { field: "input.alpha".into(), value: a.to_string(), allowed: "a number here (no weights file to read a tensor from)".into() }),
        (None, None) => Err(QuantizeError::Spec { field: "input".into(), value: "no alpha and no scale".into(), allowed: "input.alpha or input.scale".into() }),
    }
}

/// How K is ordered, for the docs and `quantized.json`.
pub const FC_K_ORDER: &str = "k = input feature (weights [out][in])";

/// im2col order of K.
pub const CONV_K_ORDER: &str = "k = (ci * kh + ky) * kw + kx (row-major flattening of weights [out][in][kh][kw]); GEMM row p = (n * OH + oy) * OW + ox";

pub(super) fn geometry(spec: &Spec, shape: &[usize]) -> Result<Geometry, QuantizeError> {
    let name = &spec.weights.tensor;
    let (out, k, conv, order) = match spec.weights.layout {
        LayoutName::Fc => {
            if shape.len() != 2 {
                return Err(shape_err(format!("weight tensor `{name}` has shape {}; weights.layout = \"fc\" needs 2 dimensions [out][in]", crate::limits::capped(&format!("{shape:?}")))));
            }
            (shape[0], shape[1], None, FC_K_ORDER)
        }
        LayoutName::Conv => {
            if shape.len() != 4 {
                return Err(shape_err(format!("weight tensor `{name}` has shape {}; weights.layout = \"conv\" needs 4 dimensions [out][in][kh][kw]", crate::limits::capped(&format!("{shape:?}")))));
            }
            let g = ConvGeometry::new(shape[1], [shape[2], shape[3]], &spec.conv_geometry());
            (shape[0], g.k(), Some(g), CONV_K_ORDER)
        }
    };
    if out == 0 || k == 0 {
        return Err(shape_err(format!("weight tensor `{name}` has shape {}: no elements", crate::limits::capped(&format!("{shape:?}")))));
    }
    Ok(Geometry { layout: spec.weights.layout, out_channels: out, k, weight_shape: shape.to_vec(), conv, k_order: order.into() })
}
