//! Data files of `qmac net`: samples and labels from `.npz` (or `.safetensors` for the samples), and
//! the `.npy` files the commands write.
//!
//! Samples `x`: float32/float64/float16, shape `[N, ...]` whose trailing dimensions hold exactly the
//! network input's elements (`[N, 64]` and `[N, 1, 8, 8]` both fit an input `[1, 8, 8]`), channel-major
//! per sample. Labels `y`: integers (int8..int64, uint8..uint64) or integral floats, shape `[N]`, each in
//! `0..classes`.

use super::format::Shape;
use super::NetError;
use crate::quantize::{read_tensor, tensor_names};
use npyz::{DType, TypeChar};
use std::path::Path;

/// Samples and labels.
#[derive(Clone, Debug, PartialEq)]
pub struct Data {
    /// `[n][input elements]`.
    pub x: Vec<f32>,
    /// `[n]`.
    pub y: Vec<i64>,
    /// Samples.
    pub n: usize,
}

fn data_err(path: &Path, message: String) -> NetError {
    NetError::Data {
        path: path.to_path_buf(),
        message,
    }
}

/// Read samples `x_name` and labels `y_name` of `path` for a network with input `input` and `classes`
/// classes.
pub fn read(
    path: &Path,
    x_name: &str,
    y_name: &str,
    input: Shape,
    classes: usize,
) -> Result<Data, NetError> {
    let (x, shape) = read_tensor(path, Some(x_name))?;
    let per: usize = shape.iter().skip(1).product();
    let n = shape.first().copied().unwrap_or(0);
    if shape.len() < 2 || per != input.len() || n == 0 {
        return Err(data_err(path, format!("samples `{x_name}` have shape {shape:?}; the network input {input} needs [N, {}] or [N, ...] with {} elements per sample, N >= 1", input.len(), input.len())));
    }
    if let Some(i) = x.iter().position(|v| !v.is_finite()) {
        return Err(data_err(
            path,
            format!("samples `{x_name}` value {i} is {}, not finite", x[i]),
        ));
    }
    let y = read_labels(path, y_name)?;
    if y.len() != n {
        return Err(data_err(
            path,
            format!("labels `{y_name}` have {} values for {n} samples", y.len()),
        ));
    }
    if let Some(i) = y.iter().position(|&v| v < 0 || v as usize >= classes) {
        return Err(data_err(
            path,
            format!(
                "label {i} is {}; the network has {classes} classes (allowed 0..={})",
                y[i],
                classes.saturating_sub(1)
            ),
        ));
    }
    Ok(Data { x, y, n })
}

/// Integer labels from an `.npz` (by name) or `.npy` file.
pub fn read_labels(path: &Path, name: &str) -> Result<Vec<i64>, NetError> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    let io = |e: std::io::Error| data_err(path, format!("cannot read labels `{name}`: {e}"));
    let npy = match ext.as_str() {
        "npz" => {
            let mut npz = npyz::npz::NpzArchive::open(path)
                .map_err(|e| data_err(path, format!("not a valid .npz file: {e}")))?;
            let found = npz.by_name(name).map_err(io)?;
            let v = match found {
                Some(a) => read_ints(path, name, a)?,
                None => {
                    let names = tensor_names(path)?;
                    return Err(data_err(
                        path,
                        format!(
                            "no labels `{name}`; the file has: {}",
                            names
                                .iter()
                                .map(|n| format!("`{n}`"))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    ));
                }
            };
            v
        }
        "npy" => {
            let f = std::fs::File::open(path).map_err(|source| NetError::Io {
                path: path.to_path_buf(),
                source,
            })?;
            read_ints(
                path,
                name,
                npyz::NpyFile::new(std::io::BufReader::new(f)).map_err(io)?,
            )?
        }
        _ => {
            return Err(data_err(
                path,
                "labels must be in an .npz or .npy file".into(),
            ))
        }
    };
    Ok(npy)
}

fn read_ints<R: std::io::Read>(
    path: &Path,
    name: &str,
    a: npyz::NpyFile<R>,
) -> Result<Vec<i64>, NetError> {
    let shape = a.shape().to_vec();
    if shape.len() != 1 {
        return Err(data_err(
            path,
            format!("labels `{name}` have shape {shape:?}; allowed [N]"),
        ));
    }
    let dtype = a.dtype();
    let bad = || {
        data_err(path, format!("labels `{name}` have dtype {}; allowed integers (int8..int64, uint8..uint64) or integral floats", dtype.descr()))
    };
    let io = |e: std::io::Error| data_err(path, format!("cannot read labels `{name}`: {e}"));
    let DType::Plain(t) = &dtype else {
        return Err(bad());
    };
    let v: Vec<i64> = match (t.type_char(), t.size_field()) {
        (TypeChar::Int, 1) => a
            .into_vec::<i8>()
            .map_err(io)?
            .into_iter()
            .map(i64::from)
            .collect(),
        (TypeChar::Int, 2) => a
            .into_vec::<i16>()
            .map_err(io)?
            .into_iter()
            .map(i64::from)
            .collect(),
        (TypeChar::Int, 4) => a
            .into_vec::<i32>()
            .map_err(io)?
            .into_iter()
            .map(i64::from)
            .collect(),
        (TypeChar::Int, 8) => a.into_vec::<i64>().map_err(io)?,
        (TypeChar::Uint, 1) => a
            .into_vec::<u8>()
            .map_err(io)?
            .into_iter()
            .map(i64::from)
            .collect(),
        (TypeChar::Uint, 2) => a
            .into_vec::<u16>()
            .map_err(io)?
            .into_iter()
            .map(i64::from)
            .collect(),
        (TypeChar::Uint, 4) => a
            .into_vec::<u32>()
            .map_err(io)?
            .into_iter()
            .map(i64::from)
            .collect(),
        (TypeChar::Uint, 8) => a
            .into_vec::<u64>()
            .map_err(io)?
            .into_iter()
            .map(|v| i64::try_from(v).unwrap_or(-1))
            .collect(),
        (TypeChar::Float, _) => {
            let (f, _) = read_tensor(path, Some(name))?;
            if let Some(i) = f.iter().position(|v| v.fract() != 0.0 || !v.is_finite()) {
                return Err(data_err(
                    path,
                    format!("label {i} is {}, not an integer", f[i]),
                ));
            }
            f.into_iter().map(|v| v as i64).collect()
        }
        _ => return Err(bad()),
    };
    Ok(v)
}

/// An `.npy` file of `values` with `shape`, in the element type `T`.
fn npy<T: npyz::AutoSerialize>(shape: &[usize], values: impl Iterator<Item = T>) -> Vec<u8> {
    use npyz::WriterBuilder;
    let mut buf = Vec::new();
    {
        let shape: Vec<u64> = shape.iter().map(|&d| d as u64).collect();
        let mut w = npyz::WriteOptions::<T>::new().default_dtype().shape(&shape).writer(&mut buf).begin_nd().expect("writing to memory");
        w.extend(values).expect("writing to memory");
        w.finish().expect("writing to memory");
    }
    buf
}

/// An `.npy` file of unsigned 8-bit codes with `shape`.
pub fn npy_u8(shape: &[usize], codes: &[u64]) -> Vec<u8> {
    npy(shape, codes.iter().map(|&c| c as u8))
}

/// An `.npy` file of `f32` values with `shape`.
pub fn npy_f32(shape: &[usize], v: &[f64]) -> Vec<u8> {
    npy(shape, v.iter().map(|&c| c as f32))
}
