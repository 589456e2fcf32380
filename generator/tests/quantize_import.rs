//! `qmac quantize` import: tensors written here with the formats' own crates (safetensors'
//! serialize API, npyz's writers) are read back by `read_tensor` with the right values, shapes and
//! errors.

use npyz::WriterBuilder;
use qmac::quantize::{read_tensor, tensor_names, QuantizeError};
use safetensors::tensor::TensorView;
use safetensors::Dtype;
use std::path::Path;

fn le_bytes_f32(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn write_safetensors(path: &Path, tensors: &[(&str, Dtype, Vec<usize>, Vec<u8>)]) {
    let views: Vec<(&str, TensorView<'_>)> = tensors.iter().map(|(n, d, s, b)| (*n, TensorView::new(*d, s.clone(), b).unwrap())).collect();
    let bytes = safetensors::serialize(views, None).unwrap();
    std::fs::write(path, bytes).unwrap();
}

fn write_npy<T: npyz::AutoSerialize + Copy>(path: &Path, shape: &[u64], values: &[T], order: npyz::Order) {
    let mut f = std::fs::File::create(path).unwrap();
    let mut w = npyz::WriteOptions::<T>::new().default_dtype().shape(shape).order(order).writer(&mut f).begin_nd().unwrap();
    w.extend(values.iter().copied()).unwrap();
    w.finish().unwrap();
}

#[test]
fn safetensors_float_dtypes_convert_to_f32() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("layer.safetensors");
    let vals = [1.5f32, -0.25, 3.0, 0.0, -7.5, 0.125];
    let f16: Vec<u8> = vals.iter().flat_map(|&v| half::f16::from_f32(v).to_le_bytes()).collect();
    let bf16: Vec<u8> = vals.iter().flat_map(|&v| half::bf16::from_f32(v).to_le_bytes()).collect();
    let f64b: Vec<u8> = vals.iter().flat_map(|&v| f64::from(v).to_le_bytes()).collect();
    let i32b: Vec<u8> = [1i32, 2].iter().flat_map(|v| v.to_le_bytes()).collect();
    write_safetensors(
        &path,
        &[
            ("fc.weight", Dtype::F32, vec![2, 3], le_bytes_f32(&vals)),
            ("half", Dtype::F16, vec![3, 2], f16),
            ("brain", Dtype::BF16, vec![6], bf16),
            ("double", Dtype::F64, vec![1, 6], f64b),
            ("steps", Dtype::I32, vec![2], i32b),
        ],
    );
    for (name, shape) in [("fc.weight", vec![2, 3]), ("half", vec![3, 2]), ("brain", vec![6]), ("double", vec![1, 6])] {
        let (v, s) = read_tensor(&path, Some(name)).unwrap();
        assert_eq!(v, vals, "{name}");
        assert_eq!(s, shape, "{name}");
    }
    let e = read_tensor(&path, Some("steps")).unwrap_err();
    assert!(matches!(e, QuantizeError::Dtype { .. }), "{e:?}");
    let e = e.to_string();
    assert!(e.contains("`steps`") && e.contains("I32") && e.contains("F32, F16, BF16, F64"), "{e}");
    assert_eq!(tensor_names(&path).unwrap(), vec!["brain", "double", "fc.weight", "half", "steps"]);
}

#[test]
fn missing_or_ambiguous_tensor_lists_the_tensors_in_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("m.safetensors");
    write_safetensors(&path, &[("conv1.weight", Dtype::F32, vec![1], le_bytes_f32(&[1.0])), ("conv1.bias", Dtype::F32, vec![1], le_bytes_f32(&[2.0]))]);
    let e = read_tensor(&path, Some("conv2.weight")).unwrap_err().to_string();
    assert!(e.contains("tensor `conv2.weight` not found") && e.contains("`conv1.bias`, `conv1.weight`"), "{e}");
    let e = read_tensor(&path, None).unwrap_err().to_string();
    assert!(e.contains("several tensors") && e.contains("`conv1.bias`, `conv1.weight`"), "{e}");
    // a single-tensor file needs no name
    let one = tmp.path().join("one.safetensors");
    write_safetensors(&one, &[("only", Dtype::F32, vec![2], le_bytes_f32(&[4.0, 5.0]))]);
    assert_eq!(read_tensor(&one, None).unwrap(), (vec![4.0, 5.0], vec![2]));
}

#[test]
fn npy_reads_f32_f64_f16_and_fortran_order() {
    let tmp = tempfile::tempdir().unwrap();
    let vals: Vec<f32> = (0..12).map(|i| i as f32 * 0.5 - 2.0).collect();
    let p = tmp.path().join("a.npy");
    write_npy(&p, &[3, 4], &vals, npyz::Order::C);
    assert_eq!(read_tensor(&p, None).unwrap(), (vals.clone(), vec![3, 4]));
    // the name is ignored for .npy
    assert_eq!(read_tensor(&p, Some("whatever")).unwrap().0, vals);
    let p64 = tmp.path().join("b.npy");
    let v64: Vec<f64> = vals.iter().map(|&v| f64::from(v)).collect();
    write_npy(&p64, &[2, 6], &v64, npyz::Order::C);
    assert_eq!(read_tensor(&p64, None).unwrap(), (vals.clone(), vec![2, 6]));
    let p16 = tmp.path().join("c.npy");
    let v16: Vec<half::f16> = vals.iter().map(|&v| half::f16::from_f32(v)).collect();
    write_npy(&p16, &[12], &v16, npyz::Order::C);
    assert_eq!(read_tensor(&p16, None).unwrap(), (vals.clone(), vec![12]));
    // Fortran order: the file holds the column-major sequence; we must get C order back
    let pf = tmp.path().join("f.npy");
    let (r, c) = (3usize, 4usize);
    let col_major: Vec<f32> = (0..c).flat_map(|j| (0..r).map(move |i| (i, j))).map(|(i, j)| vals[i * c + j]).collect();
    write_npy(&pf, &[3, 4], &col_major, npyz::Order::Fortran);
    assert_eq!(read_tensor(&pf, None).unwrap(), (vals.clone(), vec![3, 4]));
    // integer arrays are rejected with their dtype
    let pi = tmp.path().join("i.npy");
    write_npy(&pi, &[2], &[1i64, 2], npyz::Order::C);
    let e = read_tensor(&pi, None).unwrap_err().to_string();
    assert!(e.contains("<i8") && e.contains("float32"), "{e}");
}

#[test]
fn npz_reads_by_name_and_lists_names() {
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join("acts.npz");
    {
        let mut npz = npyz::npz::NpzWriter::create(&p).unwrap();
        let mut w = npz.array::<f32>("x", Default::default()).unwrap().default_dtype().shape(&[2, 2]).begin_nd().unwrap();
        w.extend([1.0f32, 2.0, 3.0, 4.0]).unwrap();
        w.finish().unwrap();
        let mut w = npz.array::<f64>("y", Default::default()).unwrap().default_dtype().shape(&[3]).begin_nd().unwrap();
        w.extend([0.5f64, 1.5, 2.5]).unwrap();
        w.finish().unwrap();
    }
    assert_eq!(read_tensor(&p, Some("x")).unwrap(), (vec![1.0, 2.0, 3.0, 4.0], vec![2, 2]));
    assert_eq!(read_tensor(&p, Some("y")).unwrap(), (vec![0.5, 1.5, 2.5], vec![3]));
    let e = read_tensor(&p, Some("z")).unwrap_err().to_string();
    assert!(e.contains("`z` not found") && e.contains("`x`, `y`"), "{e}");
    let e = read_tensor(&p, None).unwrap_err().to_string();
    assert!(e.contains("several") && e.contains("`x`, `y`"), "{e}");
}

#[test]
fn bad_files_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let e = read_tensor(&tmp.path().join("w.pt"), None).unwrap_err().to_string();
    assert!(e.contains("w.pt") && e.contains(".safetensors, .npy, .npz"), "{e}");
    let e = read_tensor(&tmp.path().join("absent.npy"), None).unwrap_err().to_string();
    assert!(e.contains("absent.npy"), "{e}");
    let junk = tmp.path().join("junk.safetensors");
    std::fs::write(&junk, b"not a tensor file").unwrap();
    let e = read_tensor(&junk, Some("w")).unwrap_err().to_string();
    assert!(e.contains("junk.safetensors") && e.contains("not a valid safetensors file"), "{e}");
    let junk = tmp.path().join("junk.npy");
    std::fs::write(&junk, b"\x93NUMPY garbage").unwrap();
    let e = read_tensor(&junk, None).unwrap_err().to_string();
    assert!(e.contains("junk.npy"), "{e}");
}
