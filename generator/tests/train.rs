//! `qmac train`: a small network trained for a few epochs and exported; the trainer's integer network
//! predicts exactly what qmac's reference and the RTL compute, sample for sample; bad input gets one
//! clear error.

use qmac::net::chain::QuantizedNet;
use qmac::net::flow::{simulate_dir, DataNames, NetSimOptions};
use qmac::net::rtl::RtlOptions;
use qmac::train::{train_to_dir, TrainJob, TrainRun};
use qmac_train::TrainConfig;
use std::path::Path;

/// An .npz of float samples `x` (`shape`) and int64 labels `y`.
fn write_npz(path: &Path, shape: &[u64], x: &[f32], y: &[i64]) {
    use npyz::WriterBuilder;
    let mut npz = npyz::npz::NpzWriter::create(path).unwrap();
    let opts = zip::write::FileOptions::default();
    let mut w = npz.array::<f32>("x", opts).unwrap().default_dtype().shape(shape).begin_nd().unwrap();
    w.extend(x.iter().copied()).unwrap();
    w.finish().unwrap();
    let mut w = npz.array::<i64>("y", opts).unwrap().default_dtype().shape(&[y.len() as u64]).begin_nd().unwrap();
    w.extend(y.iter().copied()).unwrap();
    w.finish().unwrap();
}

/// `n` 6x6 images in 4 classes: class `c` is bright in quadrant `c`, with noise.
fn quadrants(n: usize, seed: u64) -> (Vec<f32>, Vec<i64>) {
    let mut s = seed;
    let mut next = || {
        s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (s >> 40) as f32 / (1u64 << 24) as f32
    };
    let (mut x, mut y) = (Vec::new(), Vec::new());
    for i in 0..n {
        let c = i % 4;
        for r in 0..6 {
            for col in 0..6 {
                let q = (r / 3) * 2 + col / 3;
                x.push(if q == c { 0.4 + 0.6 * next() } else { 0.55 * next() });
            }
        }
        y.push(c as i64);
    }
    (x, y)
}

/// conv 5 3x3 + batch norm + relu + max-pool 2, conv 6 + relu, flatten, dense 4, on a 4x4 array.
const MODEL: &str = r#"
name = "tiny"
[input]
shape = [1, 6, 6]
bits = 6
[array]
rows = 4
cols = 4
lanes = 4
[[layer]]
type = "conv2d"
name = "c1"
weight = "c1.w"
channels = 5
kernel = [3, 3]
padding = [1, 1]
[[layer]]
type = "batch_norm"
gamma = "g"
beta = "b"
mean = "m"
var = "v"
[[layer]]
type = "activation"
function = "relu"
[[layer]]
type = "max_pool"
size = [2, 2]
[[layer]]
type = "conv2d"
name = "c2"
weight = "c2.w"
bias = "c2.b"
channels = 6
kernel = [3, 3]
[[layer]]
type = "activation"
function = "relu"
[[layer]]
type = "flatten"
[[layer]]
type = "dense"
name = "fc"
weight = "fc.w"
bias = "fc.b"
units = 4
"#;

struct Files {
    _tmp: tempfile::TempDir,
    dir: std::path::PathBuf,
}

fn files(model: &str, train_shape: &[u64], labels_offset: i64) -> Files {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    std::fs::write(dir.join("model.toml"), model).unwrap();
    let (x, y) = quadrants(96, 5);
    let y: Vec<i64> = y.iter().map(|v| v + labels_offset).collect();
    write_npz(&dir.join("train.npz"), train_shape, &x, &y);
    let (x, y) = quadrants(40, 9);
    write_npz(&dir.join("test.npz"), &[40, 1, 6, 6], &x, &y);
    Files { _tmp: tmp, dir }
}

fn job(f: &Files, scheme: &str, out: &str) -> TrainJob {
    TrainJob {
        model: f.dir.join("model.toml"),
        data: f.dir.join("train.npz"),
        val: Some(f.dir.join("test.npz")),
        scheme: scheme.into(),
        config: TrainConfig { float_epochs: 6, qat_epochs: 4, batch: 16, lr: 0.01, qat_lr: 0.003, ..TrainConfig::default() },
        out: f.dir.join(out),
    }
}

fn run(f: &Files, scheme: &str, out: &str) -> TrainRun {
    train_to_dir(&job(f, scheme, out), &mut |_| {}).unwrap()
}

fn read_test(f: &Files) -> (Vec<f32>, usize) {
    let mut npz = npyz::npz::NpzArchive::open(f.dir.join("test.npz")).unwrap();
    let x: Vec<f32> = npz.by_name("x").unwrap().unwrap().into_vec().unwrap();
    let n = x.len() / 36;
    (x, n)
}

fn read_u8_npy(path: &Path) -> Vec<u64> {
    let f = std::fs::File::open(path).unwrap();
    npyz::NpyFile::new(std::io::BufReader::new(f)).unwrap().into_vec::<u8>().unwrap().into_iter().map(u64::from).collect()
}

fn read_i64_npy(path: &Path) -> Vec<i64> {
    let f = std::fs::File::open(path).unwrap();
    npyz::NpyFile::new(std::io::BufReader::new(f)).unwrap().into_vec::<i64>().unwrap()
}

/// Trained with per-channel PACT clips (folded into the next layer's weights before SAWB) and batch
/// norm, exported, run through the RTL: every layer's codes of the trainer's integer network equal the
/// reference's and the RTL's, so every prediction does; the reported accuracy is the RTL's.
#[test]
fn trained_network_predicts_exactly_what_the_rtl_computes() {
    let f = files(MODEL, &[96, 1, 6, 6], 0);
    let r = run(&f, "w2a2-pc", "net");
    let out = f.dir.join("net");
    let (x, n) = read_test(&f);
    let ours = r.int_net.codes(&x, n).unwrap();
    let q = QuantizedNet::load(&out).unwrap();
    // network.json as read back (floats round-trip through JSON text; the integers are what count)
    assert_eq!(qmac::train::int_net(&q), r.int_net, "network.json holds the exported integer network");
    let reference = q.run(&x, n, |_, _, _| Ok(())).unwrap();
    let opts = NetSimOptions { rtl: Some(RtlOptions { cache: f.dir.join("cache"), work: out.join("work"), seed: 2, stall_pct: 20, build: Default::default(), progress: false }), clock_mhz: 50.0 };
    let rep = simulate_dir(&out, &f.dir.join("test.npz"), &DataNames::default(), &opts).unwrap();
    assert_eq!(rep.bit_exact, Some(true), "{rep:#?}");
    for (i, c) in q.computes().iter().enumerate() {
        let file = out.join(format!("sim/layers/{:02}-{}.npy", c.index, c.name));
        // logits: the file holds them sign-extended, the reference's codes are their low out_bits
        // (the array's width), the trainer's their 64-bit two's complement
        let logits = c.mode == qmac::net::OutputMode::Logits;
        let low = |v: u64| if logits { v & (u64::MAX >> (64 - c.layer.output.bits)) } else { v };
        let rtl: Vec<u64> = if logits { read_i64_npy(&file).into_iter().map(|v| low(v as u64)).collect() } else { read_u8_npy(&file) };
        let ours_low: Vec<u64> = ours[i].iter().map(|&v| low(v)).collect();
        assert_eq!(ours_low, reference.stages[i].codes, "layer {}: trainer against reference", c.name);
        assert_eq!(ours_low, rtl, "layer {}: trainer against RTL", c.name);
        assert!(ours[i].iter().collect::<std::collections::BTreeSet<_>>().len() > 2, "layer {} has varied codes", c.name);
    }
    let predicted = r.int_net.predict(&x, n).unwrap();
    let rtl_pred = q.predict_ints(&read_i64_npy(&out.join("sim/logits-int.npy"))).unwrap();
    assert_eq!(predicted.iter().map(|&p| p as usize).collect::<Vec<_>>(), rtl_pred);
    assert_eq!(r.report.integer.val, rep.rtl_accuracy);
    assert!(rep.rtl_accuracy.unwrap() > 0.5, "it learned something: {rep:#?}");
    // the exported net.toml and weights.safetensors give the same network through qmac net quantize
    let again = qmac::net::flow::quantize_to_dir(&out.join("net.toml"), &out.join("weights.safetensors"), &f.dir.join("train.npz"), &DataNames::default(), &f.dir.join("again")).unwrap();
    assert_eq!(qmac::train::int_net(&again.net), r.int_net);
}

/// The other weight quantizers (learnable levels with a codebook, plain uniform, and an 8-bit uniform
/// first layer) in the integer reference: the trainer's integer network computes the same codes.
#[test]
fn levels_and_uniform_match_the_reference() {
    let f = files(MODEL, &[96, 1, 6, 6], 0);
    let (x, n) = read_test(&f);
    for (scheme, first) in [("w2a3-levels", None), ("w3a2-uniform", Some(8)), ("binary-ls2", None), ("binary-gf1", Some(8))] {
        let mut j = job(&f, scheme, scheme);
        j.config.first_weight_bits = first;
        let r = train_to_dir(&j, &mut |_| {}).unwrap();
        let reference = r.net.run(&x, n, |_, _, _| Ok(())).unwrap();
        let ours = r.int_net.codes(&x, n).unwrap();
        let last = reference.stages.len() - 1;
        let bits = r.net.computes()[last].layer.output.bits;
        for (i, st) in reference.stages.iter().enumerate() {
            let low = |v: u64| if i == last { v & (u64::MAX >> (64 - bits)) } else { v };
            assert_eq!(ours[i].iter().map(|&v| low(v)).collect::<Vec<_>>(), st.codes, "{scheme}: layer {i}");
        }
        let layers = r.net.computes();
        if scheme.ends_with("levels") {
            assert!(layers.iter().all(|c| c.layer.weights.levels.as_ref().is_some_and(|l| !l.fitted)), "trained level tables");
        } else if scheme.starts_with("binary") {
            // binary activations between the layers: basis codes out of the first two, into the last two
            assert!(layers[0].mode == qmac::net::OutputMode::Bases && layers[1].mode == qmac::net::OutputMode::Bases, "{scheme}");
            assert!(layers[1].layer.is_bases() && layers[2].layer.is_bases(), "{scheme}");
        } else {
            assert_eq!((layers[0].layer.weights.bits, layers[1].layer.weights.bits), (8, 3));
        }
    }
}

fn err(f: &Files, scheme: &str) -> String {
    match train_to_dir(&job(f, scheme, "out"), &mut |_| {}) {
        Ok(_) => panic!("{scheme}: trained"),
        Err(e) => e.to_string(),
    }
}

/// Unknown scheme, data that does not fit the model, labels out of range, models and schemes the
/// trainer cannot train or export: one error each, naming what is wrong; nothing written.
#[test]
fn bad_input_gets_one_clear_error() {
    let f = files(MODEL, &[96, 1, 6, 6], 0);
    let e = err(&f, "w2a9");
    assert!(e.starts_with("unknown scheme \"w2a9\"; allowed: wKaM"), "{e}");
    let e = err(&f, "binary-gf3");
    assert!(e.starts_with("scheme binary-gf3: 3 activation bases: the array's output stage computes at most 2"), "{e}");
    let bad_shape = files(MODEL, &[96, 1, 6, 6], 0);
    let (x, y) = quadrants(96, 5);
    write_npz(&bad_shape.dir.join("train.npz"), &[48, 72], &x, &y[..48]);
    let e = err(&bad_shape, "w2a2");
    assert!(e.contains("train.npz: dataset `x`: samples of shape [72] (72 values) do not fit the model input [1, 6, 6] (36 values)"), "{e}");
    let labels = files(MODEL, &[96, 1, 6, 6], 2);
    let e = err(&labels, "w2a2");
    assert!(e.contains("train.npz: dataset `y`: label 2 is 4: allowed 0..=3 (the model's last layer has 4 outputs)"), "{e}");
    let rect = files(&MODEL.replacen("kernel = [3, 3]", "kernel = [3, 1]", 1), &[96, 1, 6, 6], 0);
    let e = err(&rect, "w2a2");
    assert!(e.ends_with("model.toml: layer 0 `c1`: kernel [3, 1]: the trainer takes equal values in both directions"), "{e}");
    // a convolution gives the logits (the network format allows it; the trainer does not)
    let head = MODEL.split("[[layer]]\ntype = \"activation\"\nfunction = \"relu\"\n[[layer]]\ntype = \"flatten\"").next().unwrap();
    let conv_last = files(head, &[96, 1, 6, 6], 0);
    let e = err(&conv_last, "w2a2");
    assert!(e.ends_with("model.toml: layer 4 `c2`: the last dense or conv2d layer gives the class logits: it must be dense (add a flatten and a dense layer)"), "{e}");
    for f in [&f, &bad_shape, &labels, &rect, &conv_last] {
        assert!(!f.dir.join("out").exists());
    }
}
