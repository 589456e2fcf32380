//! Data files of `qmac net`: samples and labels from `.npz` (or `.safetensors` for the samples), and
//! the `.npy` files the commands write.
//!
//! Samples `x`: float32/float64/float16, shape `[N, ...]` whose trailing dimensions hold exactly the
//! network input's elements (`[N, 64]` and `[N, 1, 8, 8]` both fit an input `[1, 8, 8]`), channel-major
//! per sample. Labels `y`: integers (int8..int64, uint8..uint64) or integral floats, shape `[N]`, each in
//! `0..classes`.

use super::format::Shape;
use super::NetError;
use crate::quantize::import::{npy_bytes, npy_checked, plain_size};
use crate::quantize::read_tensor;
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

/// Integer labels from an `.npz` (by name) or `.npy` file, read through the checked `.npy` reader
/// (declared sizes against the bytes present before anything is allocated).
pub fn read_labels(path: &Path, name: &str) -> Result<Vec<i64>, NetError> {
    let (_, bytes) = npy_bytes(path, Some(name))?;
    let (a, shape) = npy_checked(path, name, &bytes, label_size, LABEL_DTYPES)?;
    if shape.len() != 1 {
        return Err(data_err(
            path,
            format!("labels `{name}` have shape {shape:?}; allowed [N]"),
        ));
    }
    read_ints(path, name, a)
}

const LABEL_DTYPES: &str =
    "integers (int8..int64, uint8..uint64) or integral floats (float16, float32, float64)";

fn label_size(d: &DType) -> Option<u64> {
    plain_size(d, TypeChar::Int, &[1, 2, 4, 8])
        .or_else(|| plain_size(d, TypeChar::Uint, &[1, 2, 4, 8]))
        .or_else(|| plain_size(d, TypeChar::Float, &[2, 4, 8]))
}

fn read_ints(path: &Path, name: &str, a: npyz::NpyFile<&[u8]>) -> Result<Vec<i64>, NetError> {
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

/// An `.npy` file of `i64` values with `shape`.
pub fn npy_i64(shape: &[usize], v: &[i64]) -> Vec<u8> {
    npy(shape, v.iter().copied())
}

/// An `.npy` file of `f32` values with `shape`.
pub fn npy_f32(shape: &[usize], v: &[f64]) -> Vec<u8> {
    npy(shape, v.iter().map(|&c| c as f32))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `.npy` file whose header declares `shape` of `descr` and whose data is `data`.
    fn raw_npy(descr: &str, shape: &str, data: &[u8]) -> Vec<u8> {
        let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
        while (10 + header.len() + 1) % 64 != 0 {
            header.push(' ');
        }
        header.push('\n');
        let mut b = b"\x93NUMPY\x01\x00".to_vec();
        b.extend_from_slice(&(header.len() as u16).to_le_bytes());
        b.extend_from_slice(header.as_bytes());
        b.extend_from_slice(data);
        b
    }

    fn labels(bytes: &[u8]) -> Result<Vec<i64>, NetError> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("y.npy");
        std::fs::write(&p, bytes).unwrap();
        read_labels(&p, "y")
    }

    /// Labels are read through the checked reader: a declared shape is compared with the bytes present
    /// before anything is allocated, so a 16-byte file declaring 2e9 labels is one error, not a 16 GB
    /// allocation; short data, a wrong rank and a non-integer dtype are errors naming what is allowed.
    #[test]
    fn label_files_are_checked_before_allocating() {
        let data: Vec<u8> = [3i64, 7].iter().flat_map(|v| v.to_le_bytes()).collect();
        assert_eq!(labels(&raw_npy("<i8", "(2,)", &data)).unwrap(), vec![3, 7]);
        let huge = labels(&raw_npy("<i8", "(2000000000,)", &data)).unwrap_err().to_string();
        assert!(huge.contains("2000000000"), "{huge}");
        let short = labels(&raw_npy("<i8", "(3,)", &data)).unwrap_err().to_string();
        assert!(short.contains("short"), "{short}");
        let rank = labels(&raw_npy("<i8", "(1, 2)", &data)).unwrap_err().to_string();
        assert!(rank.contains("allowed [N]"), "{rank}");
        let dtype = labels(&raw_npy("|b1", "(16,)", &data)).unwrap_err().to_string();
        assert!(dtype.contains("integers"), "{dtype}");
    }
}
