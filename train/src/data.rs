//! A labelled dataset: float samples and integer class labels, validated against a model.

use std::path::Path;

use npyz::{DType, NpyFile, Order, TypeChar};

use crate::error::TrainError;
use crate::model::ModelSpec;

/// Largest dataset accepted (elements of `x`).
const MAX_ELEMENTS: u64 = 1 << 28;

/// Samples `x` (`[N, ...]`, row-major) and labels `y` (`N` classes, `0..classes`).
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    x: Vec<f32>,
    shape: Vec<usize>,
    y: Vec<u32>,
}

fn data_err(what: impl Into<String>, message: impl Into<String>) -> TrainError {
    TrainError::Data {
        what: what.into(),
        message: message.into(),
    }
}

impl Dataset {
    /// A dataset from samples `x` of `shape` (`[N, ...]`, N >= 1) and `N` labels (>= 0).
    pub fn new(x: Vec<f32>, shape: Vec<usize>, y: Vec<i64>) -> Result<Self, TrainError> {
        if shape.is_empty()
            || shape[0] == 0
            || shape.iter().product::<usize>() != x.len()
            || x.is_empty()
        {
            return Err(data_err(
                "`x`",
                format!("shape {shape:?} with {} values is invalid: allowed [samples, ...] with at least one sample and one value each", x.len()),
            ));
        }
        if let Some((i, v)) = x.iter().enumerate().find(|(_, v)| !v.is_finite()) {
            return Err(data_err(
                "`x`",
                format!("value {i} is {v}: allowed finite values"),
            ));
        }
        if y.len() != shape[0] {
            return Err(data_err(
                "`y`",
                format!(
                    "{} labels for {} samples: allowed one label per sample",
                    y.len(),
                    shape[0]
                ),
            ));
        }
        let y = y
            .iter()
            .enumerate()
            .map(|(i, &l)| {
                u32::try_from(l)
                    .map_err(|_| data_err("`y`", format!("label {i} is {l}: allowed 0 or more")))
            })
            .collect::<Result<Vec<u32>, _>>()?;
        Ok(Dataset { x, shape, y })
    }

    /// Reads arrays `x` (any float or integer dtype) and `y` (integer) from an `.npz` file.
    pub fn from_npz(path: &Path) -> Result<Self, TrainError> {
        let what = || format!("file {}", path.display());
        let mut npz = npyz::npz::NpzArchive::open(path)
            .map_err(|e| data_err(what(), format!("cannot open as .npz: {e}")))?;
        let names: Vec<String> = npz.array_names().map(String::from).collect();
        let mut get = |name: &str| -> Result<(Vec<f64>, Vec<usize>), TrainError> {
            match npz.by_name(name) {
                Ok(Some(a)) => read_array(a, &what(), name, name == "y"),
                Ok(None) => Err(data_err(
                    what(),
                    format!("has no array `{name}` (it has: {}); allowed: arrays `x` (samples) and `y` (labels)", names.join(", ")),
                )),
                Err(e) => Err(data_err(what(), format!("cannot read array `{name}`: {e}"))),
            }
        };
        let (x, shape) = get("x")?;
        let (y, yshape) = get("y")?;
        if yshape.len() != 1 {
            return Err(data_err(
                format!("{} array `y`", what()),
                format!("shape {yshape:?}: allowed one dimension (one label per sample)"),
            ));
        }
        let x = x.into_iter().map(|v| v as f32).collect();
        let y = y.into_iter().map(|v| v as i64).collect();
        Self::new(x, shape, y).map_err(|e| match e {
            TrainError::Data { what: w, message } => {
                data_err(format!("{} array {w}", what()), message)
            }
            e => e,
        })
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.y.len()
    }

    /// Whether there are no samples (never true for a constructed dataset).
    pub fn is_empty(&self) -> bool {
        self.y.is_empty()
    }

    /// Elements of one sample.
    pub fn sample_len(&self) -> usize {
        self.x.len() / self.len()
    }

    /// The samples, row-major.
    pub fn x(&self) -> &[f32] {
        &self.x
    }

    /// The labels.
    pub fn y(&self) -> &[u32] {
        &self.y
    }

    /// Checks that the samples fit the model's input and the labels its classes.
    pub fn check_model(&self, spec: &ModelSpec) -> Result<(), TrainError> {
        let sample = &self.shape[1..];
        let want = spec.input_len();
        if self.sample_len() != want {
            return Err(data_err(
                "`x`",
                format!(
                    "samples of shape {sample:?} ({} values) do not fit the model input {:?} ({want} values)",
                    self.sample_len(),
                    spec.input
                ),
            ));
        }
        let classes = spec.classes();
        if let Some((i, &l)) = self
            .y
            .iter()
            .enumerate()
            .find(|(_, &l)| l as usize >= classes)
        {
            return Err(data_err(
                "`y`",
                format!("label {i} is {l}: allowed 0..={} (the model's last layer has {classes} outputs)", classes.saturating_sub(1)),
            ));
        }
        Ok(())
    }

    /// The largest sample value (the network input's clip).
    pub fn max_value(&self) -> f32 {
        self.x.iter().fold(0.0f32, |m, &v| m.max(v))
    }
}

/// An array's values as `f64` and its shape (C order); `integer` admits only integer dtypes.
fn read_array<R: std::io::Read>(
    a: NpyFile<R>,
    file: &str,
    name: &str,
    integer: bool,
) -> Result<(Vec<f64>, Vec<usize>), TrainError> {
    let what = || format!("{file} array `{name}`");
    let shape: Vec<usize> = a.shape().iter().map(|&d| d as usize).collect();
    let total = a
        .shape()
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d));
    if total.is_none_or(|t| t > MAX_ELEMENTS) {
        return Err(data_err(
            what(),
            format!("shape {shape:?} is too large: allowed at most {MAX_ELEMENTS} values"),
        ));
    }
    if a.order() == Order::Fortran && shape.len() > 1 {
        return Err(data_err(
            what(),
            "is in Fortran order: allowed C order (numpy's default)",
        ));
    }
    let dtype = a.dtype();
    let allowed = if integer {
        "integer dtypes (int8..int64, uint8..uint64)"
    } else {
        "float16/32/64 or integer dtypes"
    };
    let bad = |d: &DType| {
        data_err(
            what(),
            format!("dtype {} is not allowed: allowed {allowed}", d.descr()),
        )
    };
    let (tc, size) = match &dtype {
        DType::Plain(t) => (t.type_char(), t.size_field()),
        d => return Err(bad(d)),
    };
    let read = |e: std::io::Error| data_err(what(), format!("cannot read: {e}"));
    let v: Vec<f64> = match (tc, size) {
        (TypeChar::Float, 8) if !integer => a.into_vec::<f64>().map_err(read)?,
        (TypeChar::Float, 4) if !integer => a
            .into_vec::<f32>()
            .map_err(read)?
            .into_iter()
            .map(f64::from)
            .collect(),
        (TypeChar::Int, 8) => a
            .into_vec::<i64>()
            .map_err(read)?
            .into_iter()
            .map(|v| v as f64)
            .collect(),
        (TypeChar::Int, 4) => a
            .into_vec::<i32>()
            .map_err(read)?
            .into_iter()
            .map(f64::from)
            .collect(),
        (TypeChar::Int, 2) => a
            .into_vec::<i16>()
            .map_err(read)?
            .into_iter()
            .map(f64::from)
            .collect(),
        (TypeChar::Int, 1) => a
            .into_vec::<i8>()
            .map_err(read)?
            .into_iter()
            .map(f64::from)
            .collect(),
        (TypeChar::Uint, 8) => a
            .into_vec::<u64>()
            .map_err(read)?
            .into_iter()
            .map(|v| v as f64)
            .collect(),
        (TypeChar::Uint, 4) => a
            .into_vec::<u32>()
            .map_err(read)?
            .into_iter()
            .map(f64::from)
            .collect(),
        (TypeChar::Uint, 2) => a
            .into_vec::<u16>()
            .map_err(read)?
            .into_iter()
            .map(f64::from)
            .collect(),
        (TypeChar::Uint, 1) => a
            .into_vec::<u8>()
            .map_err(read)?
            .into_iter()
            .map(f64::from)
            .collect(),
        _ => return Err(bad(&dtype)),
    };
    Ok((v, shape))
}
