//! Reading float tensors (`.safetensors`, `.npy`, `.npz`) and lowering convolutions to GEMMs (im2col).
//!
//! The file format is chosen by the extension. Element types are converted to `f32`:
//!
//! | format | accepted dtypes |
//! |---|---|
//! | `.safetensors` | `F32`, `F16`, `BF16`, `F64` (little endian, C order, as the format defines) |
//! | `.npy`, `.npz` | `<f4`/`>f4`, `<f8`/`>f8`, `<f2`/`>f2`, C or Fortran order (Fortran is transposed to C order) |
//!
//! Any other dtype is an error that names it. `F64` values are rounded to the nearest `f32`.

use super::QuantizeError;
use crate::quantize::spec::ConvSpec;
use npyz::{DType, NpyFile, Order, TypeChar};
use std::io::Read;
use std::path::Path;

/// Which container a path is, by its extension.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Safetensors,
    Npy,
    Npz,
}

fn kind_of(path: &Path) -> Result<Kind, QuantizeError> {
    match path.extension().and_then(|e| e.to_str()).map(|e| e.to_ascii_lowercase()).as_deref() {
        Some("safetensors") => Ok(Kind::Safetensors),
        Some("npy") => Ok(Kind::Npy),
        Some("npz") => Ok(Kind::Npz),
        other => Err(QuantizeError::Format {
            path: path.to_path_buf(),
            message: format!("unknown tensor file extension {:?}; allowed: .safetensors, .npy, .npz", other.unwrap_or("")),
        }),
    }
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> QuantizeError + '_ {
    move |source| QuantizeError::Io { path: path.to_path_buf(), source }
}

fn format_err(path: &Path, message: impl std::fmt::Display) -> QuantizeError {
    QuantizeError::Format { path: path.to_path_buf(), message: message.to_string() }
}

/// The names of the tensors in a `.safetensors` or `.npz` file (sorted), or `[""]` for a `.npy` file.
pub fn tensor_names(path: &Path) -> Result<Vec<String>, QuantizeError> {
    match kind_of(path)? {
        Kind::Safetensors => {
            let bytes = std::fs::read(path).map_err(io_err(path))?;
            let st = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| format_err(path, e))?;
            let mut names: Vec<String> = st.names().into_iter().map(String::from).collect();
            names.sort();
            Ok(names)
        }
        Kind::Npz => {
            let npz = npyz::npz::NpzArchive::open(path).map_err(io_err(path))?;
            let mut names: Vec<String> = npz.array_names().map(String::from).collect();
            names.sort();
            Ok(names)
        }
        Kind::Npy => Ok(vec![String::new()]),
    }
}

/// Read one tensor as `f32` values in C (row-major) order, with its shape.
///
/// * `.safetensors` and `.npz`: `name` selects the tensor; it may be `None` only if the file holds
///   exactly one. A missing name is an error that lists the tensors in the file.
/// * `.npy`: one array per file; `name` is ignored.
pub fn read_tensor(path: &Path, name: Option<&str>) -> Result<(Vec<f32>, Vec<usize>), QuantizeError> {
    match kind_of(path)? {
        Kind::Safetensors => {
            let bytes = std::fs::read(path).map_err(io_err(path))?;
            let st = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| format_err(path, format!("not a valid safetensors file: {e}")))?;
            let mut names: Vec<String> = st.names().into_iter().map(String::from).collect();
            names.sort();
            let name = pick_name(path, name, &names)?;
            let view = st.tensor(&name).map_err(|e| format_err(path, e))?;
            let values = safetensors_f32(path, &name, view.dtype(), view.data())?;
            Ok((values, view.shape().to_vec()))
        }
        Kind::Npy => {
            let file = std::fs::File::open(path).map_err(io_err(path))?;
            let npy = NpyFile::new(std::io::BufReader::new(file)).map_err(|e| format_err(path, format!("not a valid .npy file: {e}")))?;
            npy_f32(path, "", npy)
        }
        Kind::Npz => {
            let mut npz = npyz::npz::NpzArchive::open(path).map_err(|e| format_err(path, format!("not a valid .npz file: {e}")))?;
            let mut names: Vec<String> = npz.array_names().map(String::from).collect();
            names.sort();
            let name = pick_name(path, name, &names)?;
            let npy = npz.by_name(&name).map_err(|e| format_err(path, e))?.ok_or_else(|| missing(path, &name, &names))?;
            npy_f32(path, &name, npy)
        }
    }
}

fn missing(path: &Path, name: &str, names: &[String]) -> QuantizeError {
    QuantizeError::MissingTensor { path: path.to_path_buf(), name: name.to_string(), available: list(names) }
}

fn list(names: &[String]) -> String {
    if names.is_empty() {
        "(no tensors)".into()
    } else {
        names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")
    }
}

fn pick_name(path: &Path, name: Option<&str>, names: &[String]) -> Result<String, QuantizeError> {
    match name {
        Some(n) if names.iter().any(|m| m == n) => Ok(n.to_string()),
        Some(n) => Err(missing(path, n, names)),
        None if names.len() == 1 => Ok(names[0].clone()),
        None => Err(QuantizeError::AmbiguousTensor { path: path.to_path_buf(), available: list(names) }),
    }
}

fn safetensors_f32(path: &Path, name: &str, dtype: safetensors::Dtype, data: &[u8]) -> Result<Vec<f32>, QuantizeError> {
    use safetensors::Dtype;
    let chunks = |n: usize| data.chunks_exact(n);
    Ok(match dtype {
        Dtype::F32 => chunks(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect(),
        Dtype::F64 => chunks(8).map(|b| f64::from_le_bytes(b.try_into().expect("8 bytes")) as f32).collect(),
        Dtype::F16 => chunks(2).map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
        Dtype::BF16 => chunks(2).map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
        other => {
            return Err(QuantizeError::Dtype { path: path.to_path_buf(), name: name.to_string(), dtype: format!("{other:?}"), allowed: "F32, F16, BF16, F64" });
        }
    })
}

fn npy_f32<R: Read>(path: &Path, name: &str, npy: NpyFile<R>) -> Result<(Vec<f32>, Vec<usize>), QuantizeError> {
    let shape: Vec<usize> = npy.shape().iter().map(|&d| d as usize).collect();
    let order = npy.order();
    let dtype = npy.dtype();
    let bad = |d: &DType| QuantizeError::Dtype { path: path.to_path_buf(), name: name.to_string(), dtype: d.descr(), allowed: "float32 (<f4), float64 (<f8), float16 (<f2)" };
    let size = match &dtype {
        DType::Plain(t) if t.type_char() == TypeChar::Float => t.size_field(),
        d => return Err(bad(d)),
    };
    let read = |e: std::io::Error| format_err(path, format!("cannot read array {name:?}: {e}"));
    let values: Vec<f32> = match size {
        4 => npy.into_vec::<f32>().map_err(read)?,
        8 => npy.into_vec::<f64>().map_err(read)?.into_iter().map(|v| v as f32).collect(),
        2 => npy.into_vec::<half::f16>().map_err(read)?.into_iter().map(|v| v.to_f32()).collect(),
        _ => return Err(bad(&dtype)),
    };
    let values = if order == Order::Fortran && shape.len() > 1 { fortran_to_c(&values, &shape) } else { values };
    Ok((values, shape))
}

/// Reorder column-major (Fortran) data of `shape` to row-major (C) order.
fn fortran_to_c(values: &[f32], shape: &[usize]) -> Vec<f32> {
    let n = values.len();
    let mut out = vec![0.0; n];
    let mut idx = vec![0usize; shape.len()];
    for (c_pos, o) in out.iter_mut().enumerate() {
        // C-order multi-index of c_pos
        let mut rem = c_pos;
        for d in (0..shape.len()).rev() {
            idx[d] = rem % shape[d];
            rem /= shape[d];
        }
        // Fortran offset: first axis fastest
        let mut f_pos = 0;
        for d in (0..shape.len()).rev() {
            f_pos = f_pos * shape[d] + idx[d];
        }
        *o = values[f_pos];
    }
    out
}

/// Geometry of a 2-D convolution lowered to a GEMM.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ConvGeometry {
    /// Input channels.
    pub in_channels: usize,
    /// Kernel height and width.
    pub kernel: [usize; 2],
    /// Stride `[sy, sx]`.
    pub stride: [usize; 2],
    /// Zero padding `[py, px]` on each side.
    pub padding: [usize; 2],
    /// Dilation `[dy, dx]`.
    pub dilation: [usize; 2],
}

impl ConvGeometry {
    /// From the kernel shape and the spec's `[conv]` section.
    pub fn new(in_channels: usize, kernel: [usize; 2], c: &ConvSpec) -> ConvGeometry {
        let u = |a: [u32; 2]| [a[0] as usize, a[1] as usize];
        ConvGeometry { in_channels, kernel, stride: u(c.stride), padding: u(c.padding), dilation: u(c.dilation) }
    }

    /// GEMM depth: `in_channels * kh * kw`.
    pub fn k(&self) -> usize {
        self.in_channels * self.kernel[0] * self.kernel[1]
    }

    /// Output height and width for an `h x w` input, or `None` if the kernel does not fit.
    pub fn output_size(&self, h: usize, w: usize) -> Option<[usize; 2]> {
        let out = |i: usize, n: usize| {
            let span = self.dilation[i] * (self.kernel[i] - 1) + 1;
            let padded = n + 2 * self.padding[i];
            (padded >= span).then(|| (padded - span) / self.stride[i] + 1)
        };
        Some([out(0, h)?, out(1, w)?])
    }
}

/// im2col: lower `n` images `[n][C][H][W]` (C order) to GEMM rows, one per output pixel.
///
/// Row `p = (img * OH + oy) * OW + ox`, column `k = (ci * KH + ky) * KW + kx`, which is the row-major
/// flattening of a weight `[out][in][kh][kw]`, so `W[o][k]` needs no reordering. The element is
/// `x[img][ci][oy * sy - py + ky * dy][ox * sx - px + kx * dx]`, or `pad` outside the image (zero
/// padding: `pad` is 0.0 for floats or code 0 for PACT codes, whose value is 0).
///
/// Returns the rows (`[P][K]`) and `[OH, OW]`.
pub fn im2col<T: Copy>(x: &[T], n: usize, h: usize, w: usize, g: &ConvGeometry, pad: T) -> Option<(Vec<T>, [usize; 2])> {
    let c = g.in_channels;
    if x.len() != n * c * h * w {
        return None;
    }
    let [oh, ow] = g.output_size(h, w)?;
    let [kh, kw] = g.kernel;
    let k = g.k();
    let mut out = Vec::with_capacity(n * oh * ow * k);
    for img in 0..n {
        for oy in 0..oh {
            for ox in 0..ow {
                for ci in 0..c {
                    for ky in 0..kh {
                        for kx in 0..kw {
                            let iy = (oy * g.stride[0] + ky * g.dilation[0]) as isize - g.padding[0] as isize;
                            let ix = (ox * g.stride[1] + kx * g.dilation[1]) as isize - g.padding[1] as isize;
                            let v = if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < w {
                                x[((img * c + ci) * h + iy as usize) * w + ix as usize]
                            } else {
                                pad
                            };
                            out.push(v);
                        }
                    }
                }
            }
        }
    }
    Some((out, [oh, ow]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fortran_order_is_transposed() {
        // 2x3 matrix [[1,2,3],[4,5,6]] stored column-major: 1,4,2,5,3,6
        assert_eq!(fortran_to_c(&[1.0, 4.0, 2.0, 5.0, 3.0, 6.0], &[2, 3]), vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        // 2x2x2: C index (a,b,c) -> F offset a + 2b + 4c
        let f: Vec<f32> = (0..8).map(|i| i as f32).collect();
        let c = fortran_to_c(&f, &[2, 2, 2]);
        for a in 0..2 {
            for b in 0..2 {
                for cc in 0..2 {
                    assert_eq!(c[a * 4 + b * 2 + cc], (a + 2 * b + 4 * cc) as f32);
                }
            }
        }
    }

    #[test]
    fn im2col_by_hand() {
        // one 1-channel 3x3 image, 2x2 kernel, stride 1, no padding: 4 patches
        let x: Vec<i32> = (1..=9).collect();
        let g = ConvGeometry { in_channels: 1, kernel: [2, 2], stride: [1, 1], padding: [0, 0], dilation: [1, 1] };
        let (rows, hw) = im2col(&x, 1, 3, 3, &g, 0).unwrap();
        assert_eq!(hw, [2, 2]);
        assert_eq!(rows, vec![1, 2, 4, 5, 2, 3, 5, 6, 4, 5, 7, 8, 5, 6, 8, 9]);
        // padding 1, stride 2: output 2x2, first patch is the top-left corner with 3 padded zeros
        let g = ConvGeometry { padding: [1, 1], stride: [2, 2], ..g };
        let (rows, hw) = im2col(&x, 1, 3, 3, &g, 0).unwrap();
        assert_eq!(hw, [2, 2]);
        assert_eq!(&rows[..4], &[0, 0, 0, 1]);
        assert_eq!(&rows[12..], &[5, 6, 8, 9]);
        // kernel larger than the padded input
        let g = ConvGeometry { in_channels: 1, kernel: [5, 5], stride: [1, 1], padding: [0, 0], dilation: [1, 1] };
        assert!(im2col(&x, 1, 3, 3, &g, 0).is_none());
    }
}
