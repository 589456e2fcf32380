//! Every file qmac reads, made bad in every way a careful tester would: each subcommand that reads it
//! must exit with status 1 and one clear, short message naming the file or field, never panic (101) or
//! abort (134), and stay within a virtual-memory limit (so nothing allocates what a header merely
//! declares).

use qmac::quantize::read_tensor;
use safetensors::tensor::TensorView;
use safetensors::Dtype;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A version 1.0 `.npy` file with a hand-written header and raw data bytes.
fn npy(descr: &str, shape: &str, data: &[u8]) -> Vec<u8> {
    let mut h = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    while (10 + h.len() + 1) % 64 != 0 {
        h.push(' ');
    }
    h.push('\n');
    let mut v = b"\x93NUMPY\x01\x00".to_vec();
    v.extend((h.len() as u16).to_le_bytes());
    v.extend(h.as_bytes());
    v.extend(data);
    v
}

fn f32s(n: usize) -> Vec<u8> {
    (0..n).flat_map(|i| (i as f32 * 0.01).to_le_bytes()).collect()
}

fn safetensors_file(tensors: &[(&str, Dtype, Vec<usize>, Vec<u8>)]) -> Vec<u8> {
    let views: Vec<(&str, TensorView<'_>)> = tensors.iter().map(|(n, d, s, b)| (*n, TensorView::new(*d, s.clone(), b).unwrap())).collect();
    safetensors::serialize(views, None).unwrap()
}

fn write(dir: &Path, name: &str, bytes: impl AsRef<[u8]>) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

/// The bad tensor files, each with a phrase its error must contain.
fn bad_tensors(dir: &Path) -> Vec<(PathBuf, &'static str)> {
    let big = 1u64 << 40;
    let mut v = vec![
        (write(dir, "overflow.npy", npy("<f4", &format!("({big}, {big}, {big})"), &[])), "more than 2^64 elements"),
        // 128 bytes declaring 2^32 float32 values (16 GiB)
        (write(dir, "huge.npy", npy("<f4", "(4294967296,)", &[])), "declares 4294967296"),
        (write(dir, "wrap.npy", npy("<f4", "(4294967296, 4294967296, 1, 6)", &[])), "more than 2^64 elements"),
        (write(dir, "long.npy", npy("<f4", "(4, 16)", &f32s(100))), "too long"),
        (write(dir, "short.npy", npy("<f4", "(4, 16)", &f32s(10))), "data short"),
        (write(dir, "mislabelled.npy", npy("<f8", "(4, 16)", &f32s(64))), "data short"),
        (write(dir, "overrange.npy", npy("<f8", "(1, 6)", &[1e300f64, 0.0, 0.0, 0.0, 0.0, 0.0].iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>())), "1e300"),
        (write(dir, "int.npy", npy("<i4", "(1, 6)", &[0u8; 24])), "<i4"),
        (write(dir, "garbage.npy", b"\x93NUMPY\x01\x00\x40\x00{'descr': nonsense"), "garbage.npy"),
        (write(dir, "empty.npy", b""), "empty.npy"),
        (write(dir, "bigheader.npy", [b"\x93NUMPY\x02\x00".as_slice(), &u32::MAX.to_le_bytes(), b"{}"].concat()), "header declares 4294967295 bytes"),
        (write(dir, "junk.safetensors", [(1u64 << 60).to_le_bytes().as_slice(), b"{}"].concat()), "not a valid safetensors file"),
        (write(dir, "overrange.safetensors", safetensors_file(&[("w", Dtype::F64, vec![1, 6], [1e300f64, 0.0, 0.0, 0.0, 0.0, 0.0].iter().flat_map(|v| v.to_le_bytes()).collect())])), "1e300"),
        (write(dir, "truncated.npz", b"PK\x03\x04 cut short"), "not a valid .npz file"),
    ];
    // an .npz whose array has more data than its shape
    let npz = dir.join("long.npz");
    {
        let f = std::fs::File::create(&npz).unwrap();
        let mut z = npyz::zip::ZipWriter::new(f);
        z.start_file("w.npy", npyz::zip::write::FileOptions::default()).unwrap();
        std::io::Write::write_all(&mut z, &npy("<f4", "(4, 16)", &f32s(100))).unwrap();
        z.finish().unwrap();
    }
    v.push((npz, "too long"));
    v
}

#[test]
fn bad_tensor_files_give_one_clear_error_each() {
    let tmp = tempfile::tempdir().unwrap();
    for (path, phrase) in bad_tensors(tmp.path()) {
        let e = read_tensor(&path, None).unwrap_err().to_string();
        let name = path.file_name().unwrap().to_str().unwrap();
        assert!(e.contains(name) && e.contains(phrase), "{name}: {e}");
        assert!(e.len() < 400, "{name}: {} bytes: {e}", e.len());
    }
    // the exact wording of the size checks: file, field, value, what is allowed
    let e = read_tensor(&tmp.path().join("long.npy"), None).unwrap_err().to_string();
    assert!(e.ends_with("long.npy: the array: data too long: `shape` = [4, 16] of '<f4' declares 64 values = 256 bytes, but the file holds 400 data bytes; allowed: exactly 256"), "{e}");
    // and good files still read
    let ok = write(tmp.path(), "ok.npy", npy("<f4", "(4, 16)", &f32s(64)));
    assert_eq!(read_tensor(&ok, None).unwrap().1, vec![4, 16]);
}

fn qmac() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_qmac"));
    c.env("RUST_BACKTRACE", "0");
    c
}

/// Run qmac with `args` under a 2 GiB virtual-memory limit; return (exit code, stderr).
fn run_limited(args: &[&std::ffi::OsStr]) -> (Option<i32>, String) {
    let mut c = Command::new("sh");
    c.arg("-c").arg("ulimit -v 2097152 && exec \"$0\" \"$@\"").arg(env!("CARGO_BIN_EXE_qmac")).args(args).env("RUST_BACKTRACE", "0");
    let o = c.output().unwrap();
    (o.status.code(), String::from_utf8_lossy(&o.stderr).into_owned())
}

fn assert_clean_failure(what: &str, args: &[&std::ffi::OsStr], phrase: &str) {
    let (code, stderr) = run_limited(args);
    assert_eq!(code, Some(1), "{what}: exit {code:?} (101 is a panic, 134 an abort, None a signal): {stderr}");
    assert!(!stderr.contains("panicked") && !stderr.contains("RUST_BACKTRACE"), "{what}: {stderr}");
    assert!(stderr.contains(phrase), "{what}: expected {phrase:?} in: {stderr}");
    assert!(stderr.len() < 2000, "{what}: a {}-byte message: {}", stderr.len(), &stderr[..2000]);
}

const SPEC: &str = "[weights]\ntensor = \"w\"\nscheme = \"sawb\"\nbits = 2\ngranularity = \"per_channel\"\nlayout = \"fc\"\n[input]\nbits = 4\nalpha = 2.0\n[output]\nscheme = \"pact\"\nbits = 4\nalpha = 3.0\n[array]\nrows = 2\ncols = 2\nlanes = 2\n";

/// A valid layer: weights [3, 6], spec, inputs [2, 6], and its `qmac quantize` directory.
fn good_layer(dir: &Path) -> (PathBuf, PathBuf, PathBuf, PathBuf) {
    let w: Vec<u8> = (0..18).flat_map(|i| ((i as f32 - 9.0) * 0.1).to_le_bytes()).collect();
    let weights = write(dir, "w.safetensors", safetensors_file(&[("w", Dtype::F32, vec![3, 6], w)]));
    let spec = write(dir, "spec.toml", SPEC);
    let inputs = write(dir, "x.npy", npy("<f4", "(2, 6)", &f32s(12)));
    let q = dir.join("q");
    let o = qmac().args(["quantize", "--weights"]).arg(&weights).arg("--spec").arg(&spec).arg("-o").arg(&q).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    (weights, spec, inputs, q)
}

/// The corpus: every subcommand that reads a file, over every bad file of its kind.
#[test]
fn every_subcommand_fails_cleanly_on_every_bad_file() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let (weights, spec, inputs, qdir) = good_layer(d);
    let out = d.join("out");
    let os = |s: &str| std::ffi::OsString::from(s);

    // tensors: as weights, as quantize inputs, as sim inputs
    for (bad, phrase) in bad_tensors(d) {
        let name = bad.file_name().unwrap().to_str().unwrap().to_string();
        let quantize_w = [os("quantize"), os("--weights"), bad.clone().into(), os("--spec"), spec.clone().into(), os("-o"), out.clone().into()];
        let quantize_x = [os("quantize"), os("--weights"), weights.clone().into(), os("--spec"), spec.clone().into(), os("--inputs"), bad.clone().into(), os("-o"), out.clone().into()];
        let sim_x = [os("sim"), qdir.clone().into(), os("--inputs"), bad.clone().into()];
        for (what, args) in [("quantize --weights", &quantize_w[..]), ("quantize --inputs", &quantize_x[..]), ("sim --inputs", &sim_x[..])] {
            let args: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_os_str()).collect();
            assert_clean_failure(&format!("{what} {name}"), &args, phrase);
        }
    }

    // configurations and specs: as --config, as a build directory's config.toml, as --spec
    let huge = "q".repeat(10 << 20);
    let tomls: Vec<(&str, Vec<u8>, &str)> = vec![
        ("prefix.toml", format!("module_prefix = \"{}\"\n", "q".repeat(500_000)).into_bytes(), "(500002 bytes)"),
        ("line.toml", huge.clone().into_bytes(), "allowed at most 1048576 bytes"),
        ("long-line.toml", format!("rows = 4\nx{}\n", "y".repeat(500_000)).into_bytes(), "cannot parse"),
        ("binary.toml", vec![0xff, 0xfe, 0x00, 0x12], "not UTF-8"),
        ("rows.toml", b"rows = 100000000000000000000\n".to_vec(), "rows"),
        ("float.toml", b"max_depth = 1e300\n".to_vec(), "max_depth"),
    ];
    for (name, text, phrase) in &tomls {
        let p = write(d, name, text);
        for cmd in [&["generate", "-o", out.to_str().unwrap()][..], &["config"], &["run", "--no-synth", "-o", out.to_str().unwrap()]] {
            let mut args: Vec<std::ffi::OsString> = cmd.iter().map(|s| os(s)).collect();
            args.extend([os("--config"), p.clone().into()]);
            let args: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_os_str()).collect();
            assert_clean_failure(&format!("{} --config {name}", cmd[0]), &args, phrase);
        }
        let args = [os("quantize"), os("--weights"), weights.clone().into(), os("--spec"), p.clone().into(), os("-o"), out.clone().into()];
        let args: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_os_str()).collect();
        let phrase = if name.starts_with("prefix") || name.starts_with("rows") || name.starts_with("float") { "cannot parse spec" } else { phrase };
        assert_clean_failure(&format!("quantize --spec {name}"), &args, phrase);
        // a build directory whose config.toml is this file
        let b = d.join(format!("build-{name}"));
        assert!(qmac().args(["generate", "--rows", "1", "--cols", "1", "--lanes", "1", "-o"]).arg(&b).status().unwrap().success());
        std::fs::write(b.join("config.toml"), text).unwrap();
        let args = [os("sim"), b.clone().into()];
        let args: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_os_str()).collect();
        assert_clean_failure(&format!("sim on a build whose config.toml is {name}"), &args, "config");
    }

    // hand-edited quantized.json, read back by sim --inputs
    let original: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(qdir.join("quantized.json")).unwrap()).unwrap();
    type Edit = fn(&mut serde_json::Value);
    let edits: Vec<(&str, Edit, &str)> = vec![
        ("short code row", |j| { j["weights"]["codes"][1].as_array_mut().unwrap().pop(); }, "field `weights.codes[1]` = 5 codes is invalid: exactly geometry.k = 6 codes"),
        ("shift 99999", |j| j["channels"][0]["shift"] = 99999.into(), "field `channels[0].shift` = 99999 is invalid: 0..="),
        ("too few channels", |j| { j["channels"].as_array_mut().unwrap().pop(); }, "field `channels` = 2 channels is invalid: exactly geometry.out_channels = 3"),
        ("2-bit code 999", |j| j["weights"]["codes"][2][3] = 999.into(), "field `weights.codes[2][3]` = 999 is invalid: 0..=3 (weights.bits = 2)"),
        ("negative clip", |j| j["channels"][1]["alpha"] = (-1).into(), "quantized.json"),
        ("mult too wide", |j| j["channels"][2]["mult"] = (1u64 << 40).into(), "field `channels[2].mult` = 1099511627776 is invalid: 0..=65535"),
        ("bias out of range", |j| j["channels"][0]["bias"] = i64::MAX.into(), "field `channels[0].bias`"),
        ("few output clips", |j| { j["output"]["alphas"].as_array_mut().unwrap().pop(); }, "field `output.alphas` = 2 values"),
        ("zero input clip", |j| j["input"]["alpha"] = 0.0.into(), "field `input.alpha` = 0"),
        ("geometry k", |j| j["geometry"]["k"] = 7.into(), "geometry"),
        ("max_depth", |j| j["config"]["max_depth"] = 2.into(), "field `config.max_depth` = 2"),
        ("weight encoding", |j| j["config"]["weight_encoding"] = "int".into(), "field `config.weight_encoding` = \"int\" is invalid: \"odd\" (weights.encoding)"),
        ("huge string", |j| j["format"] = "f".repeat(10 << 20).into(), "... (10485762 bytes) is invalid"),
        ("wrong type", |j| j["channels"][0]["shift"] = "x".repeat(1 << 20).into(), "quantized.json"),
    ];
    for (what, edit, phrase) in edits {
        let mut j = original.clone();
        edit(&mut j);
        std::fs::write(qdir.join("quantized.json"), serde_json::to_string(&j).unwrap()).unwrap();
        let args = [os("sim"), qdir.clone().into(), os("--inputs"), inputs.clone().into()];
        let args: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_os_str()).collect();
        assert_clean_failure(&format!("quantized.json with {what}"), &args, phrase);
    }
    std::fs::write(qdir.join("quantized.json"), "{\"format\": ").unwrap();
    let args = [os("sim"), qdir.clone().into(), os("--inputs"), inputs.clone().into()];
    let args: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_os_str()).collect();
    assert_clean_failure("truncated quantized.json", &args, "quantized.json");
}
