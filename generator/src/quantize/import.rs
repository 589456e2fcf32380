//! Reading float tensors (`.safetensors`, `.npy`, `.npz`) and lowering convolutions to GEMMs (im2col).
//!
//! The file format is chosen by the extension. Element types are converted to `f32`:
//!
//! | format | accepted dtypes |
//! |---|---|
//! | `.safetensors` | `F32`, `F16`, `BF16`, `F64` (little endian, C order, as the format defines) |
//! | `.npy`, `.npz` | `<f4`/`>f4`, `<f8`/`>f8`, `<f2`/`>f2`, C or Fortran order (Fortran is transposed to C order) |
//!
//! Any other dtype is an error that names it. `F64` values are rounded to the nearest `f32`; a finite
//! value beyond the `f32` range is an error. Declared sizes (header length, shape, data bytes, an
//! `.npz` entry's uncompressed size) are checked against the bytes present before anything is
//! allocated for them, and the data must fill the declared shape exactly.

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

/// Largest `.safetensors` or `.npy` file read (the whole file is read, never more than its length;
/// every declared size inside is checked against it): 4 GiB.
pub const MAX_TENSOR_FILE: u64 = 4 << 30;

fn read_safetensors_file(path: &Path) -> Result<Vec<u8>, QuantizeError> {
    crate::limits::read_bytes(path, MAX_TENSOR_FILE).map_err(io_err(path))
}

fn open_npz(path: &Path) -> Result<npyz::npz::NpzArchive<std::io::BufReader<std::fs::File>>, QuantizeError> {
    let meta = std::fs::metadata(path).map_err(io_err(path))?;
    if !meta.is_file() {
        return Err(format_err(path, "not a regular file"));
    }
    let file = std::fs::File::open(path).map_err(io_err(path))?;
    npyz::npz::NpzArchive::new(std::io::BufReader::new(file)).map_err(|e| format_err(path, format!("not a valid .npz file: {e}")))
}

/// The names of the tensors in a `.safetensors` or `.npz` file (sorted), or `[""]` for a `.npy` file.
pub fn tensor_names(path: &Path) -> Result<Vec<String>, QuantizeError> {
    match kind_of(path)? {
        Kind::Safetensors => {
            let bytes = read_safetensors_file(path)?;
            let st = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| format_err(path, format!("not a valid safetensors file: {e}")))?;
            let mut names: Vec<String> = st.names().into_iter().map(String::from).collect();
            names.sort();
            Ok(names)
        }
        Kind::Npz => {
            let npz = open_npz(path)?;
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
///
/// Every declared size is checked before anything is allocated for it: the header's length against
/// the file, the shape's element count (no overflow) times the dtype's size against the data bytes
/// really there (exactly: short and over-long data are both errors), and the data against
/// [`crate::limits::MAX_TENSOR_BYTES`]. A finite `F64`/`<f8` value beyond the `f32` range is an
/// error, not an infinity.
pub fn read_tensor(path: &Path, name: Option<&str>) -> Result<(Vec<f32>, Vec<usize>), QuantizeError> {
    match kind_of(path)? {
        Kind::Safetensors => {
            let bytes = read_safetensors_file(path)?;
            let st = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| format_err(path, format!("not a valid safetensors file: {e}")))?;
            let mut names: Vec<String> = st.names().into_iter().map(String::from).collect();
            names.sort();
            let name = pick_name(path, name, &names)?;
            let view = st.tensor(&name).map_err(|e| format_err(path, e))?;
            let shape = view.shape().to_vec();
            let size = match view.dtype() {
                safetensors::Dtype::F32 => 4,
                safetensors::Dtype::F64 => 8,
                safetensors::Dtype::F16 | safetensors::Dtype::BF16 => 2,
                other => return Err(QuantizeError::Dtype { path: path.to_path_buf(), name, dtype: format!("{other:?}"), allowed: "F32, F16, BF16, F64" }),
            };
            let shape64: Vec<u64> = shape.iter().map(|&d| d as u64).collect();
            check_data_size(path, &name, &shape64, &format!("{:?}", view.dtype()), size, view.data().len())?;
            let values = safetensors_f32(path, &name, view.dtype(), view.data())?;
            Ok((values, shape))
        }
        Kind::Npy | Kind::Npz => {
            let (name, bytes) = npy_bytes(path, name)?;
            npy_from_bytes(path, &name, &bytes)
        }
    }
}

/// The raw `.npy` bytes of one array: the whole file of an `.npy` (its name is then ""), or the entry
/// `name` of an `.npz` (optional when it holds one array), its declared size checked against
/// [`crate::limits::MAX_TENSOR_BYTES`] before it is read. An `.safetensors` file is an error here.
pub fn npy_bytes(path: &Path, name: Option<&str>) -> Result<(String, Vec<u8>), QuantizeError> {
    match kind_of(path)? {
        Kind::Npy => Ok((String::new(), crate::limits::read_bytes(path, MAX_TENSOR_FILE).map_err(io_err(path))?)),
        Kind::Npz => {
            let mut npz = open_npz(path)?;
            let mut names: Vec<String> = npz.array_names().map(String::from).collect();
            names.sort();
            let name = pick_name(path, name, &names)?;
            let entry = npyz::npz::file_name_from_array_name(&name);
            let mut zf = match npz.zip_archive().by_name(&entry) {
                Ok(f) => f,
                Err(npyz::zip::result::ZipError::FileNotFound) => return Err(missing(path, &name, &names)),
                Err(e) => return Err(format_err(path, format!("entry `{entry}`: {e}"))),
            };
            let size = zf.size();
            let limit = crate::limits::MAX_TENSOR_BYTES + (1 << 20);
            if size > limit {
                return Err(format_err(path, format!("entry `{entry}` declares {size} bytes uncompressed; allowed at most {limit} bytes")));
            }
            let mut bytes = Vec::new();
            (&mut zf).take(size + 1).read_to_end(&mut bytes).map_err(|e| format_err(path, format!("cannot read entry `{entry}`: {e}")))?;
            if bytes.len() as u64 != size {
                return Err(format_err(path, format!("entry `{entry}` declares {size} bytes uncompressed but holds {}", bytes.len())));
            }
            Ok((name, bytes))
        }
        Kind::Safetensors => Err(format_err(path, "expected an .npy or .npz file here, not .safetensors")),
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

fn tensor_label(name: &str) -> String {
    if name.is_empty() {
        "the array".into()
    } else {
        format!("tensor `{}`", crate::limits::capped(name))
    }
}

/// The declared shape's element count times `size` bytes must be exactly the `data` bytes present, and
/// the values (as `f32`) at most [`crate::limits::MAX_TENSOR_BYTES`].
fn check_data_size(path: &Path, name: &str, shape: &[u64], dtype: &str, size: u64, data: usize) -> Result<u64, QuantizeError> {
    let what = tensor_label(name);
    let shape_text = crate::limits::capped(&format!("{shape:?}")).into_owned();
    let n = shape.iter().try_fold(1u64, |a, &d| a.checked_mul(d));
    let Some(n) = n else {
        return Err(format_err(path, format!("{what}: `shape` = {shape_text} declares more than 2^64 elements; allowed: a shape whose {data} data bytes hold exactly its elements")));
    };
    let need = n.checked_mul(size).filter(|&b| b <= crate::limits::MAX_TENSOR_BYTES && n.saturating_mul(4) <= crate::limits::MAX_TENSOR_BYTES);
    let Some(need) = need else {
        return Err(format_err(path, format!("{what}: `shape` = {shape_text} declares {n} {dtype} values; allowed at most {} bytes of values", crate::limits::MAX_TENSOR_BYTES)));
    };
    if need != data as u64 {
        let how = if (data as u64) < need { "short" } else { "too long" };
        return Err(format_err(path, format!("{what}: data {how}: `shape` = {shape_text} of {dtype} declares {n} values = {need} bytes, but the file holds {data} data bytes; allowed: exactly {need}")));
    }
    Ok(n)
}

/// An `f64` value as `f32`: a finite value beyond the `f32` range is an error naming it.
fn narrow(path: &Path, name: &str, i: usize, v: f64) -> Result<f32, QuantizeError> {
    let f = v as f32;
    if f.is_infinite() && v.is_finite() {
        return Err(format_err(path, format!("{}: value {i} is {v:e}, outside the float32 range; allowed |x| <= {:e}", tensor_label(name), f32::MAX)));
    }
    Ok(f)
}

fn safetensors_f32(path: &Path, name: &str, dtype: safetensors::Dtype, data: &[u8]) -> Result<Vec<f32>, QuantizeError> {
    use safetensors::Dtype;
    let chunks = |n: usize| data.chunks_exact(n);
    Ok(match dtype {
        Dtype::F32 => chunks(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect(),
        Dtype::F64 => chunks(8).enumerate().map(|(i, b)| narrow(path, name, i, f64::from_le_bytes(b.try_into().expect("8 bytes")))).collect::<Result<_, _>>()?,
        Dtype::F16 => chunks(2).map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
        Dtype::BF16 => chunks(2).map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
        other => {
            return Err(QuantizeError::Dtype { path: path.to_path_buf(), name: name.to_string(), dtype: format!("{other:?}"), allowed: "F32, F16, BF16, F64" });
        }
    })
}

/// A whole `.npy` file held in `bytes`, checked: the preamble and header length against the bytes
/// before the header is parsed, the dtype by `size_of` (its element size in bytes, or `None` when the
/// dtype is not one of `allowed`), and the data size against the shape before any value is read.
pub fn npy_checked<'a>(
    path: &Path,
    name: &str,
    bytes: &'a [u8],
    size_of: impl Fn(&DType) -> Option<u64>,
    allowed: &'static str,
) -> Result<(NpyFile<&'a [u8]>, Vec<usize>), QuantizeError> {
    let what = tensor_label(name);
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(format_err(path, format!("{what}: not a .npy array (no \\x93NUMPY magic in its first 6 of {} bytes)", bytes.len())));
    }
    let (header_len, start) = match bytes[6] {
        1 => (u64::from(u16::from_le_bytes([bytes[8], bytes[9]])), 10u64),
        2 | 3 if bytes.len() >= 12 => (u64::from(u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]])), 12),
        v => return Err(format_err(path, format!("{what}: .npy format version {v}.{} is not supported; allowed: 1.0, 2.0, 3.0", bytes[7]))),
    };
    let end = start + header_len;
    if end > bytes.len() as u64 {
        return Err(format_err(path, format!("{what}: the .npy header declares {header_len} bytes, but only {} bytes follow the preamble", bytes.len() as u64 - start)));
    }
    let header = npyz::NpyHeader::from_reader(&bytes[..end as usize]).map_err(|e| format_err(path, format!("{what}: not a valid .npy header: {e}")))?;
    let data = &bytes[end as usize..];
    let dtype = header.dtype();
    let Some(size) = size_of(&dtype) else {
        return Err(QuantizeError::Dtype { path: path.to_path_buf(), name: name.to_string(), dtype: dtype.descr(), allowed });
    };
    let shape64 = header.shape().to_vec();
    check_data_size(path, name, &shape64, &dtype.descr(), size, data.len())?;
    let shape: Vec<usize> = shape64.iter().map(|&d| d as usize).collect();
    Ok((NpyFile::with_header(header, data), shape))
}

/// The element size of a plain dtype whose type character is `kind` and whose size is in `sizes`.
pub fn plain_size(d: &DType, kind: TypeChar, sizes: &[u64]) -> Option<u64> {
    match d {
        DType::Plain(t) if t.type_char() == kind && sizes.contains(&t.size_field()) => Some(t.size_field()),
        _ => None,
    }
}

/// Parse a whole float `.npy` file held in `bytes` ([`npy_checked`]).
fn npy_from_bytes(path: &Path, name: &str, bytes: &[u8]) -> Result<(Vec<f32>, Vec<usize>), QuantizeError> {
    let what = tensor_label(name);
    let (npy, shape) = npy_checked(path, name, bytes, |d| plain_size(d, TypeChar::Float, &[2, 4, 8]), "float32 (<f4), float64 (<f8), float16 (<f2)")?;
    let order = npy.header().order();
    let size = plain_size(&npy.header().dtype(), TypeChar::Float, &[2, 4, 8]).expect("checked by npy_checked");
    let read = |e: std::io::Error| format_err(path, format!("{what}: cannot read the values: {e}"));
    let values: Vec<f32> = match size {
        4 => npy.into_vec::<f32>().map_err(read)?,
        8 => npy.into_vec::<f64>().map_err(read)?.into_iter().enumerate().map(|(i, v)| narrow(path, name, i, v)).collect::<Result<_, _>>()?,
        _ => npy.into_vec::<half::f16>().map_err(read)?.into_iter().map(|v| v.to_f32()).collect(),
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
        self.in_channels.saturating_mul(self.kernel[0]).saturating_mul(self.kernel[1])
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
