//! `qmac net`: networks the tests build themselves, through the integer reference and the RTL, checked
//! against an independent integer computation; and bad network files, each with one clear error.

use qmac::net::calibrate::ActQuant;
use qmac::net::chain::{QStage, QuantizedNet};
use qmac::net::flow::{quantize_to_dir, simulate_dir, DataNames, NetSimOptions};
use qmac::net::lower::{lower, max_pool, HostStage};
use qmac::net::rtl::RtlOptions;
use qmac::net::{float, Network, Shape};
use qmac::rng::Rng;
use qmac_arith::pipeline::{biased, output_code_frac};
use qmac_arith::quant::{round_f64, Rounding};
use safetensors::tensor::TensorView;
use safetensors::Dtype;
use std::io::Write;
use std::path::Path;

fn normal(rng: &mut Rng, n: usize, sd: f64) -> Vec<f32> {
    let u = |rng: &mut Rng| (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
    (0..n).map(|_| (((0..4).map(|_| u(rng)).sum::<f64>() - 2.0) * sd * 3f64.sqrt()) as f32).collect()
}

fn write_safetensors(path: &Path, tensors: &[(&str, Vec<usize>, Vec<f32>)]) {
    let bytes: Vec<Vec<u8>> = tensors.iter().map(|(_, _, v)| v.iter().flat_map(|x| x.to_le_bytes()).collect()).collect();
    let views: Vec<(&str, TensorView<'_>)> = tensors.iter().zip(&bytes).map(|((n, s, _), b)| (*n, TensorView::new(Dtype::F32, s.clone(), b).unwrap())).collect();
    std::fs::write(path, safetensors::serialize(views, None).unwrap()).unwrap();
}

/// An .npz with float samples `x` and int64 labels `y` (stored entries).
fn write_data(path: &Path, shape: &[u64], x: &[f32], y: &[i64]) {
    use npyz::WriterBuilder;
    let mut zip = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    let opts = zip::write::FileOptions::default().compression_method(zip::CompressionMethod::Stored);
    let mut buf = Vec::new();
    {
        let mut w = npyz::WriteOptions::<f32>::new().default_dtype().shape(shape).writer(&mut buf).begin_nd().unwrap();
        w.extend(x.iter().copied()).unwrap();
        w.finish().unwrap();
    }
    zip.start_file("x.npy", opts).unwrap();
    zip.write_all(&buf).unwrap();
    buf.clear();
    {
        let mut w = npyz::WriteOptions::<i64>::new().default_dtype().shape(&[y.len() as u64]).writer(&mut buf).begin_nd().unwrap();
        w.extend(y.iter().copied()).unwrap();
        w.finish().unwrap();
    }
    zip.start_file("y.npy", opts).unwrap();
    zip.write_all(&buf).unwrap();
    zip.finish().unwrap();
}

fn read_u8_npy(path: &Path) -> Vec<u64> {
    let f = std::fs::File::open(path).unwrap();
    npyz::NpyFile::new(std::io::BufReader::new(f)).unwrap().into_vec::<u8>().unwrap().into_iter().map(u64::from).collect()
}

/// conv2d (+ batch norm) + relu + max-pool, conv2d + relu (a bias of 3 fractional bits, given, on the
/// same array as the first conv's derived one), flatten, dense with binary (ls-1) weights + relu, dense
/// logits (the array's logits mode).
const NET: &str = r#"
name = "t"
[input]
shape = [2, 6, 6]
[quant]
weights = "sawb"
weight_bits = 4
act_bits = 4
[calibration]
rule = "max"
[array]
rows = 4
cols = 4
lanes = 4
[[layer]]
type = "conv2d"
name = "c1"
weight = "c1.w"
bias = "c1.b"
channels = 5
kernel = [3, 3]
padding = [1, 1]
[[layer]]
type = "batch_norm"
gamma = "bn.g"
beta = "bn.b"
mean = "bn.m"
var = "bn.v"
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
channels = 6
kernel = [2, 2]
stride = [1, 1]
quant = { granularity = "per_tensor", act_granularity = "per_tensor", bias_frac_bits = 3 }
[[layer]]
type = "activation"
function = "relu"
[[layer]]
type = "flatten"
[[layer]]
type = "dense"
name = "f1"
weight = "f1.w"
bias = "f1.b"
units = 9
quant = { weights = "ls1", weight_bits = 1 }
[[layer]]
type = "activation"
function = "relu"
[[layer]]
type = "dense"
name = "f2"
weight = "f2.w"
bias = "f2.b"
units = 3
"#;

fn tensors(rng: &mut Rng) -> Vec<(&'static str, Vec<usize>, Vec<f32>)> {
    let pos = |rng: &mut Rng, n| normal(rng, n, 0.2).into_iter().map(|v| 1.0 + v.abs()).collect::<Vec<f32>>();
    vec![
        ("c1.w", vec![5, 2, 3, 3], normal(rng, 90, 0.5)),
        ("c1.b", vec![5], normal(rng, 5, 0.2)),
        ("bn.g", vec![5], pos(rng, 5)),
        ("bn.b", vec![5], normal(rng, 5, 0.3)),
        ("bn.m", vec![5], normal(rng, 5, 0.3)),
        ("bn.v", vec![5], pos(rng, 5)),
        ("c2.w", vec![6, 5, 2, 2], normal(rng, 120, 0.4)),
        ("f1.w", vec![9, 24], normal(rng, 216, 0.4)),
        ("f1.b", vec![9], normal(rng, 9, 0.2)),
        ("f2.w", vec![3, 9], normal(rng, 27, 0.5)),
        ("f2.b", vec![3], normal(rng, 3, 0.2)),
    ]
}

/// The value of a basis code with scales `v` (bit `j` the sign of basis `j`).
fn basis_value(code: u64, v: &[f64]) -> f64 {
    v.iter().enumerate().map(|(j, &s)| if code >> j & 1 == 1 { s } else { -s }).sum()
}

/// The network's integer outputs computed directly, independently of the tiles, im2col, the shared
/// arrays and the sign decision tree: input PACT codes `clamp(round(min(x, alpha) / s), 0, n)`, then
/// per compute stage a direct convolution (or dot product) of the weight code values with the input
/// codes (with binary inputs the basis-pair sums `sum_ij m[c][ij] sign_i(w) sign_j(a)` over the K
/// elements, plus what the layer's padded elements add, `acc_offset`; zero padding with the code of 0:
/// the first basis +1, the others -1), and the output stage with the channel's own parameters and
/// `bias_frac_bits`: `output_code_frac`, the logit `acc * 2^F + bias`, or the greedy residual signs of
/// `z = (acc * 2^F + bias) * mult / 2^shift` taken as a rational; max-pool on PACT codes, or on basis
/// codes by value; flatten as is. Logits are returned as their two's complement `u64`.
fn direct(q: &QuantizedNet, x: &[f32], n: usize) -> Vec<Vec<u64>> {
    let r = Rounding::HalfEven;
    let inq = &q.input;
    let nmax = f64::from((1u32 << inq.bits) - 1);
    let mut cur: Vec<u64> = x.iter().map(|&v| round_f64(f64::from(v).clamp(0.0, inq.alpha) / inq.scale, r).clamp(0.0, nmax) as u64).collect();
    let mut bases: Option<Vec<f64>> = None;
    let mut outs = Vec::new();
    for s in &q.stages {
        cur = match s {
            QStage::Compute(c) => {
                let l = &c.layer;
                let out_ch = l.geometry.out_channels;
                let f = l.config.bias_frac_bits;
                let pad = if bases.is_some() { 1u64 } else { 0 };
                let ab = l.input.bits;
                // one element's contribution to channel o's accumulator
                let term = |o: usize, k: usize, a: u64| -> i64 {
                    if l.is_bases() {
                        let ch = &l.channels[o];
                        let wb = l.weights.bits;
                        let sign = |code: u64, i: u32| if code >> i & 1 == 1 { 1i64 } else { -1 };
                        (0..wb).flat_map(|i| (0..ab).map(move |j| (i, j))).map(|(i, j)| ch.pair_scales[(i * ab + j) as usize] * sign(l.weights.codes[o][k], i) * sign(a, j)).sum()
                    } else {
                        l.weights.value(o, k) * a as i64
                    }
                };
                let output = |o: usize, acc: i64| -> u64 {
                    let p = l.channels[o].params();
                    let acc = acc + l.channels[o].acc_offset;
                    match &c.act {
                        ActQuant::Pact(_) => output_code_frac(acc, &p, r, l.output.bits, f),
                        ActQuant::Logits => biased(acc, p.bias, f) as i64 as u64 & (u64::MAX >> (64 - l.output.bits)),
                        ActQuant::Bases { scales, .. } => {
                            // z >= c  <=>  t * mult >= c * 2^shift, residual signs with v_1 = 1
                            let tm = biased(acc, p.bias, f) * i128::from(p.mult);
                            let unit = 1i128 << p.shift;
                            let mut resid = 0i128; // the sum of the signs so far, in units of 2^shift
                            let mut code = 0u64;
                            for j in 0..scales.len() {
                                let plus = tm - resid >= 0;
                                code |= u64::from(plus) << j;
                                resid += if plus { unit } else { -unit };
                            }
                            code
                        }
                    }
                };
                let mut y = Vec::new();
                for i in 0..n {
                    match (c.conv, c.input, c.output) {
                        (Some(p), Shape::Image([ci, h, w]), Shape::Image([_, oh, ow])) => {
                            let xs = &cur[i * ci * h * w..(i + 1) * ci * h * w];
                            for o in 0..out_ch {
                                for oy in 0..oh {
                                    for ox in 0..ow {
                                        let mut acc = 0i64;
                                        for c0 in 0..ci {
                                            for ky in 0..p.kernel[0] {
                                                for kx in 0..p.kernel[1] {
                                                    let iy = (oy * p.stride[0] + ky) as isize - p.padding[0] as isize;
                                                    let ix = (ox * p.stride[1] + kx) as isize - p.padding[1] as isize;
                                                    let k = (c0 * p.kernel[0] + ky) * p.kernel[1] + kx;
                                                    let a = if iy < 0 || ix < 0 || iy as usize >= h || ix as usize >= w { pad } else { xs[(c0 * h + iy as usize) * w + ix as usize] };
                                                    acc += term(o, k, a);
                                                }
                                            }
                                        }
                                        y.push(output(o, acc));
                                    }
                                }
                            }
                        }
                        _ => {
                            let len = c.input.len();
                            let xs = &cur[i * len..(i + 1) * len];
                            for o in 0..out_ch {
                                let acc: i64 = (0..len).map(|k| term(o, k, xs[k])).sum();
                                y.push(output(o, acc));
                            }
                        }
                    }
                }
                bases = match &c.act {
                    ActQuant::Bases { scales, .. } => Some(scales.clone()),
                    _ => None,
                };
                outs.push(y.clone());
                y
            }
            QStage::Host(HostStage::MaxPool { size, stride, input, output, .. }) => {
                let len = input.len();
                let pool = |xs: &[u64]| match &bases {
                    None => max_pool(xs, *input, *size, *stride, *output),
                    Some(v) => {
                        // by value, the larger code on equal values
                        let key: Vec<(f64, u64)> = xs.iter().map(|&c| (basis_value(c, v), c)).collect();
                        max_pool(&key, *input, *size, *stride, *output).into_iter().map(|(_, c)| c).collect()
                    }
                };
                (0..n).flat_map(|i| pool(&cur[i * len..(i + 1) * len])).collect()
            }
            QStage::Host(HostStage::Flatten { .. }) => cur,
        };
    }
    outs
}

/// Every layer's `bias_frac_bits`, derived independently: the fewest `F` with `2^-(F+1)` under 1/8 of
/// the smallest output step in accumulator units of any channel (PACT: `clip / (2^bits - 1) / s_acc`;
/// basis codes: `v_1 / s_acc`; logits: 1), unless the network file gives it.
fn check_bias_frac_bits(q: &QuantizedNet, given: &[(&str, u32)]) {
    for c in q.computes() {
        let f = c.layer.config.bias_frac_bits;
        if let Some((_, g)) = given.iter().find(|(name, _)| *name == c.name) {
            assert_eq!(f, *g, "layer {}: given", c.name);
            continue;
        }
        let step = c.layer.channels.iter().enumerate().filter(|(_, ch)| ch.acc_scale > 0.0).map(|(o, ch)| match &c.act {
            ActQuant::Pact(a) => a[o] / f64::from((1u32 << c.layer.output.bits) - 1) / ch.acc_scale,
            ActQuant::Bases { scales, .. } => scales[0] / ch.acc_scale,
            ActQuant::Logits => 1.0,
        }).fold(f64::INFINITY, f64::min);
        let err = |f: u32| 0.5 / f64::from(1u32 << f);
        assert!(err(f) < step / 8.0, "layer {}: F = {f}: error {} against step {step}", c.name, err(f));
        assert!(f == 0 || err(f - 1) >= step / 8.0, "layer {}: F = {f} is not the fewest (step {step})", c.name);
    }
}

fn read_i64_npy(path: &Path) -> Vec<i64> {
    let f = std::fs::File::open(path).unwrap();
    npyz::NpyFile::new(std::io::BufReader::new(f)).unwrap().into_vec::<i64>().unwrap()
}

/// A network the test built, quantized and run through the RTL (with stalls), checked layer by layer:
/// the reference's codes and the RTL's (read back from `sim/layers/`) equal the direct integer
/// computation's, every layer's outputs are varied, and the logits files hold the last layer's
/// integers and their real values `s_acc[o] * t / 2^F`.
struct Ran {
    tmp: tempfile::TempDir,
    out: std::path::PathBuf,
    data: std::path::PathBuf,
    q: QuantizedNet,
    rep: qmac::net::report::NetReport,
    xt: Vec<f32>,
    expect: Vec<Vec<u64>>,
}

fn run_network(text: &str, tensors: &[(&str, Vec<usize>, Vec<f32>)], input: &[u64], rng: &mut Rng) -> Ran {
    let tmp = tempfile::tempdir().unwrap();
    let (model, weights, calib, data) = (tmp.path().join("net.toml"), tmp.path().join("w.safetensors"), tmp.path().join("calib.npz"), tmp.path().join("test.npz"));
    std::fs::write(&model, text).unwrap();
    write_safetensors(&weights, tensors);
    let per: u64 = input.iter().product();
    let xc: Vec<f32> = normal(rng, 16 * per as usize, 1.0).into_iter().map(f32::abs).collect();
    let mut shape = vec![16];
    shape.extend_from_slice(input);
    write_data(&calib, &shape, &xc, &[0; 16]);
    let n = 6;
    let xt: Vec<f32> = normal(rng, n * per as usize, 1.0).into_iter().map(f32::abs).collect();
    let q0 = Network::from_toml(text, "t").unwrap();
    let classes = q0.layers.iter().rev().find(|l| l.kind.is_compute()).unwrap().output.len() as i64;
    let labels: Vec<i64> = (0..n as i64).map(|i| i % classes).collect();
    write_data(&data, &[n as u64, per], &xt, &labels);
    let out = tmp.path().join("build");
    quantize_to_dir(&model, &weights, &calib, &DataNames::default(), &out).unwrap();
    let rep = simulate_dir(&out, &data, &DataNames::default(), &sim_opts(&tmp, &out, 25)).unwrap();
    assert_eq!(rep.bit_exact, Some(true), "{rep:#?}");
    assert_eq!(rep.rtl_accuracy, Some(rep.reference_accuracy));
    assert!(rep.layers.iter().all(|l| l.cycles.unwrap() > 0));
    let q = QuantizedNet::load(&out).unwrap();
    let expect = direct(&q, &xt, n);
    let reference = q.run(&xt, n, |_, _, _| Ok(())).unwrap();
    for (i, c) in q.computes().iter().enumerate() {
        assert_eq!(reference.stages[i].codes, expect[i], "reference of layer {}", c.name);
        let file = out.join(format!("sim/layers/{:02}-{}.npy", c.index, c.name));
        let rtl = if matches!(c.act, ActQuant::Logits) { read_i64_npy(&file).into_iter().map(|v| v as u64).collect() } else { read_u8_npy(&file) };
        let mask = |v: u64| if matches!(c.act, ActQuant::Logits) { v & (u64::MAX >> (64 - c.layer.output.bits)) } else { v };
        assert_eq!(rtl.into_iter().map(mask).collect::<Vec<_>>(), expect[i], "RTL of layer {}", c.name);
        assert!(expect[i].iter().collect::<std::collections::BTreeSet<_>>().len() > 2, "layer {} has varied outputs", c.name);
    }
    // the logits: the last layer's integers (sign-extended) and their real values
    let last = q.computes().into_iter().last().unwrap();
    assert!(matches!(last.act, ActQuant::Logits));
    let ints = read_i64_npy(&out.join("sim/logits-int.npy"));
    let f = last.layer.config.bias_frac_bits;
    let sh = 64 - last.layer.output.bits;
    let want: Vec<i64> = expect.last().unwrap().iter().map(|&v| ((v << sh) as i64) >> sh).collect();
    assert_eq!(ints, want);
    let real: Vec<f32> = {
        let file = std::fs::File::open(out.join("sim/logits.npy")).unwrap();
        npyz::NpyFile::new(std::io::BufReader::new(file)).unwrap().into_vec::<f32>().unwrap()
    };
    let per = last.output.per_channel();
    for (i, (&t, &r)) in ints.iter().zip(&real).enumerate() {
        let o = (i % last.output.len()) / per;
        let unit = last.layer.channels[o].acc_scale / f64::from(1u32 << f);
        assert!((f64::from(r) - t as f64 * unit).abs() <= 1e-6 * (t as f64 * unit).abs().max(1e-30), "logit {i}: {r} vs {t} * {unit}");
    }
    Ran { tmp, out, data, q, rep, xt, expect }
}

fn sim_opts(tmp: &tempfile::TempDir, out: &Path, stall: u32) -> NetSimOptions {
    NetSimOptions { rtl: Some(RtlOptions { cache: tmp.path().join("cache"), work: out.join("work"), seed: 3, stall_pct: stall, build: Default::default(), progress: false }), clock_mhz: 50.0 }
}

/// A network built here (conv + batch norm + pool, conv, flatten, binary-weight dense, logits) is
/// quantized and run on data: every layer's RTL codes equal the reference's and a direct integer
/// computation's, with the last layer in the array's logits mode and each layer's bias in the
/// fractional bits the rule gives (the first conv runs on the array of the second conv's finer
/// bias, given, with its parameters scaled to it); layers with the same hardware share one build (three builds for four
/// layers); a second run takes every model from the cache; the directory can be quantized again.
#[test]
fn small_network_runs_bit_exact_through_the_rtl() {
    let mut rng = Rng::new(13);
    let t = tensors(&mut rng);
    let r = run_network(NET, &t, &[2, 6, 6], &mut rng);
    let (q, rep) = (&r.q, &r.rep);
    assert_eq!(rep.layers.len(), 4);
    assert_eq!(rep.builds.len(), 3, "{:#?}", rep.builds);
    assert_eq!(rep.builds[0].layers, ["c1", "c2"]);
    check_bias_frac_bits(q, &[("c2", 3)]);
    let hw = q.hardware().unwrap();
    assert_eq!(hw[0].config.bias_frac_bits, 3);
    assert!(q.computes()[0].layer.config.bias_frac_bits < 3, "the first conv runs with more fractional bias bits than its own");
    assert_eq!(q.computes()[3].layer.config.out_mode, qmac::config::OutModeName::Logits);
    // the chaining keeps the float network's values: each PACT layer's codes times their scales
    // against the float network's activations clipped to the calibrated clips (the two 4-bit layers;
    // the binary-weight layer's error is far larger by nature)
    let n = 6;
    let fl = float::forward(&q.float, &r.xt, n);
    for (i, (c, codes)) in q.computes().into_iter().zip(&r.expect).take(2).enumerate() {
        let ActQuant::Pact(clips) = &c.act else { panic!("PACT layer") };
        let per = c.output.per_channel();
        let out_ch = c.layer.geometry.out_channels;
        let mut err = 0.0;
        for (j, (&f, &code)) in fl.pre[i].iter().zip(codes).enumerate() {
            let ch = (j / per) % out_ch;
            err += (f.clamp(0.0, clips[ch]) - c.out_scales()[ch] * code as f64).abs() / clips[ch];
        }
        err /= codes.len() as f64;
        eprintln!("layer {}: mean abs error {err:.4} of the clip", c.name);
        assert!(err < 0.08, "layer {}: mean abs error {err} of the clip", c.name);
    }
    // a second run builds nothing
    let again = simulate_dir(&r.out, &r.data, &DataNames::default(), &sim_opts(&r.tmp, &r.out, 0)).unwrap();
    assert!(again.builds.iter().all(|b| b.cached) && again.seconds.build == 0.0);
    assert_eq!(again.bit_exact, Some(true));
    // the directory, with the sim/ and work/ that net sim wrote into it, can be quantized again
    let p = |f: &str| r.tmp.path().join(f);
    quantize_to_dir(&p("net.toml"), &p("w.safetensors"), &p("calib.npz"), &DataNames::default(), &r.out).unwrap();
}

/// Binary activations between layers: conv with PACT inputs whose output stage gives ls-2 codes of its
/// pre-activation (no relu), max-pool on those codes, conv with 2-basis (ls-2) weights, zero padding
/// and gf-2 outputs, flatten, dense with ternary (ls-T) weights giving logits. Every layer bit-exact in
/// the RTL and equal to the direct computation (the residual signs of the rational `z`, pooling by
/// value, padding with the code of 0); the first layer's basis scales are ls-2's least-squares fit to
/// its float pre-activations.
#[test]
fn binary_activation_network_runs_bit_exact_through_the_rtl() {
    const BIN: &str = r#"
[input]
shape = [1, 6, 6]
bits = 4
[calibration]
rule = "max"
[array]
rows = 4
cols = 4
lanes = 4
output_units = "per_column"
[[layer]]
type = "conv2d"
name = "c1"
weight = "c1.w"
bias = "c1.b"
channels = 4
kernel = [3, 3]
padding = [1, 1]
quant = { weights = "sawb", weight_bits = 4, act = "ls2" }
[[layer]]
type = "max_pool"
size = [2, 2]
[[layer]]
type = "conv2d"
name = "c2"
weight = "c2.w"
bias = "c2.b"
channels = 5
kernel = [2, 2]
padding = [1, 1]
quant = { weights = "ls2", weight_bits = 2, act = "gf", act_bits = 2 }
[[layer]]
type = "flatten"
[[layer]]
type = "dense"
name = "f"
weight = "f.w"
bias = "f.b"
units = 3
quant = { weights = "lsT", weight_bits = 2 }
"#;
    let mut rng = Rng::new(21);
    let t = vec![
        ("c1.w", vec![4, 1, 3, 3], normal(&mut rng, 36, 0.5)),
        ("c1.b", vec![4], normal(&mut rng, 4, 0.3)),
        ("c2.w", vec![5, 4, 2, 2], normal(&mut rng, 80, 0.5)),
        ("c2.b", vec![5], normal(&mut rng, 5, 0.3)),
        ("f.w", vec![3, 80], normal(&mut rng, 240, 0.3)),
        ("f.b", vec![3], normal(&mut rng, 3, 0.2)),
    ];
    let r = run_network(BIN, &t, &[1, 6, 6], &mut rng);
    let q = &r.q;
    let modes: Vec<_> = q.computes().iter().map(|c| c.layer.config.out_mode).collect();
    use qmac::config::OutModeName as M;
    assert_eq!(modes, [M::Bases, M::Bases, M::Logits]);
    assert_eq!(q.computes()[1].layer.config.weight_encoding, qmac::config::EncodingName::Bases);
    assert_eq!(q.computes()[1].layer.input.basis_scales, q.computes()[0].basis_scales());
    assert!(q.computes().iter().all(|c| c.layer.config.output_units == qmac::config::OutputUnitsName::PerColumn));
    check_bias_frac_bits(q, &[]);
    // the first layer's scales: ls-2 fitted to its float pre-activations on the calibration set
    let tmp = &r.tmp;
    let calib = qmac::quantize::read_tensor(&tmp.path().join("calib.npz"), Some("x")).unwrap().0;
    let pre: Vec<f32> = float::forward(&q.float, &calib, 16).pre[0].iter().map(|&v| v as f32).collect();
    let fit = qmac_arith::quant::lsq::quantize(&pre, qmac_arith::quant::Granularity::PerTensor, qmac_arith::quant::lsq::BinaryScheme::Ls2).unwrap();
    for (got, b) in q.computes()[0].basis_scales().iter().zip(fit.bases()) {
        assert!((got - b.scales()[0]).abs() <= 1e-8 * b.scales()[0], "{got} vs {}", b.scales()[0]);
    }
    // the trainer's integer network (its own basis-pair sums, residual signs, pooling by value) gives
    // the same outputs (its logits in 64-bit two's complement)
    let ours = qmac::train::int_net(q).codes(&r.xt, 6).unwrap();
    for (i, (o, e)) in ours.iter().zip(&r.expect).enumerate() {
        let bits = q.computes()[i].layer.output.bits;
        assert_eq!(o.iter().map(|&v| if i == 2 { v & (u64::MAX >> (64 - bits)) } else { v }).collect::<Vec<_>>(), *e, "trainer's integer network, layer {i}");
    }
    // given basis scales (quant.clips, as training gives them) are taken as they are, and are the next
    // layer's input scales
    let given = BIN.replace("act = \"ls2\" }", "act = \"ls2\", clips = [0.75, 0.25] }");
    std::fs::write(tmp.path().join("given.toml"), &given).unwrap();
    let p = |f: &str| tmp.path().join(f);
    let g = quantize_to_dir(&p("given.toml"), &p("w.safetensors"), &p("calib.npz"), &DataNames::default(), &p("given")).unwrap().net;
    assert_eq!(g.computes()[0].basis_scales(), [0.75, 0.25]);
    assert_eq!(g.computes()[1].layer.input.basis_scales, [0.75, 0.25]);
    // both bases of every binary layer are used (the first is not +1 for every input, as after a relu)
    for (c, codes) in q.computes().iter().zip(&r.expect).take(2) {
        for bit in 0..2 {
            assert!(codes.iter().any(|&v| v >> bit & 1 == 0) && codes.iter().any(|&v| v >> bit & 1 == 1), "layer {} basis {bit}", c.name);
        }
    }
}

/// Batch norm after a layer is the same as the layer with `W' = s W`, `b' = s (b - mean) + beta`:
/// the float network with the batch norm equals the batch norm applied to the plain layer's output.
#[test]
fn batch_norm_folds_into_the_layer() {
    let tmp = tempfile::tempdir().unwrap();
    let mut rng = Rng::new(5);
    let w = tmp.path().join("w.safetensors");
    let t = tensors(&mut rng);
    write_safetensors(&w, &t);
    let get = |name: &str| t.iter().find(|x| x.0 == name).unwrap().2.clone();
    let with_bn = "[input]\nshape = [2, 6, 6]\n[[layer]]\ntype = \"conv2d\"\nweight = \"c1.w\"\nbias = \"c1.b\"\nchannels = 5\nkernel = [3, 3]\npadding = [1, 1]\n[[layer]]\ntype = \"batch_norm\"\ngamma = \"bn.g\"\nbeta = \"bn.b\"\nmean = \"bn.m\"\nvar = \"bn.v\"\neps = 0.01\n";
    let plain = with_bn.split("[[layer]]\ntype = \"batch_norm\"").next().unwrap();
    let x: Vec<f32> = normal(&mut rng, 3 * 72, 1.0);
    let run = |text: &str| float::forward(&lower(&Network::from_toml(text, "t").unwrap(), &w).unwrap(), &x, 3).output;
    let (folded, y) = (run(with_bn), run(plain));
    let (g, b, m, v) = (get("bn.g"), get("bn.b"), get("bn.m"), get("bn.v"));
    for (i, (&f, &y)) in folded.iter().zip(&y).enumerate() {
        let c = (i / 36) % 5;
        let want = f64::from(g[c]) * (y - f64::from(m[c])) / (f64::from(v[c]) + 0.01).sqrt() + f64::from(b[c]);
        assert!((f - want).abs() < 1e-4 * (1.0 + want.abs()), "element {i}: folded {f}, batch norm {want}");
    }
}

/// Max-pool on codes is max-pool on values: PACT is monotone, so `max(pact(x)) = pact(max(x))` for every
/// window (the host pools codes; no float is needed).
#[test]
fn max_pool_on_codes_equals_codes_of_max_pool() {
    let mut rng = Rng::new(9);
    let (input, output) = (Shape::Image([3, 6, 6]), Shape::Image([3, 2, 2]));
    let x: Vec<f32> = normal(&mut rng, 108, 2.0);
    let code = |v: f32| round_f64(f64::from(v).clamp(0.0, 1.5) / 0.1, Rounding::HalfEven) as u64;
    let codes: Vec<u64> = x.iter().map(|&v| code(v)).collect();
    let pooled_codes = max_pool(&codes, input, [3, 3], [3, 3], output);
    let codes_of_pooled: Vec<u64> = max_pool(&x, input, [3, 3], [3, 3], output).into_iter().map(code).collect();
    assert_eq!(pooled_codes, codes_of_pooled);
    assert_eq!(max_pool(&[1u64, 5, 2, 3, 9, 4, 0, 8, 7], Shape::Image([1, 3, 3]), [2, 2], [1, 1], Shape::Image([1, 2, 2])), [9, 9, 9, 9]);
}

fn err(text: &str) -> String {
    Network::from_toml(text, "net.toml").unwrap_err().to_string()
}

const HEAD: &str = "[input]\nshape = [1, 4, 4]\n";
const CONV: &str = "[[layer]]\ntype = \"conv2d\"\nname = \"c\"\nweight = \"c.w\"\nchannels = 2\nkernel = [3, 3]\n";
const RELU: &str = "[[layer]]\ntype = \"activation\"\nfunction = \"relu\"\n";

/// Bad network files: one error that names the layer, the field and the value.
#[test]
fn bad_networks_get_one_clear_error() {
    let cases: Vec<(String, Vec<&str>)> = vec![
        (format!("{HEAD}{CONV}{RELU}[[layer]]\ntype = \"lstm\"\nname = \"r\"\n"), vec!["layer 2 `r`", "`type`", "\"lstm\"", "dense, conv2d"]),
        (format!("{HEAD}{CONV}{RELU}[[layer]]\ntype = \"dense\"\nname = \"d\"\nweight = \"d.w\"\nunits = 3\n"), vec!["layer 2 `d`", "field `type` = dense", "[2, 2, 2]", "flatten"]),
        (format!("{HEAD}{CONV}[[layer]]\ntype = \"flatten\"\n[[layer]]\ntype = \"dense\"\nname = \"d\"\nweight = \"d.w\"\nunits = 3\n"), vec!["layer 0 `c`", "quant.output", "pact", "relu"]),
        (format!("{HEAD}[quant]\nweights = \"ls2\"\nweight_bits = 2\n{CONV}"), vec!["layer 0 `c`", "quant.weights", "ls2 with weight_bits = 2", "binary activations"]),
        (format!("{HEAD}{CONV}quant = {{ output = \"bases\" }}\n{RELU}"), vec!["layer 0 `c`", "quant.output", "bases", "the last layer gives the logits"]),
        (format!("{HEAD}{CONV}[[layer]]\ntype = \"max_pool\"\nname = \"p\"\nsize = [2, 2]\n"), vec!["layer 1 `p`", "`type` = max_pool", "only batch_norm or activation after the last"]),
        (format!("{HEAD}{CONV}kernels = 3\n"), vec!["layer 0 `c`", "unknown field `kernels`"]),
        (format!("{HEAD}[quant]\nweight_bits = 9\n{CONV}"), vec!["layer 0 `c`", "quant.weight_bits", "9", "1..=8"]),
    ];
    // the activations between layers, the finer bias and the array
    let with = |q1: &str, relu: bool, q2: &str| format!("{HEAD}{CONV}{q1}\n{}[[layer]]\ntype = \"flatten\"\n[[layer]]\ntype = \"dense\"\nname = \"d\"\nweight = \"d.w\"\nunits = 3\n{q2}\n", if relu { RELU } else { "" });
    let new_cases: Vec<(String, Vec<&str>)> = vec![
        (with("quant = { act = \"ls3\" }", false, ""), vec!["layer 0 `c`", "ls3", "ls2"]),
        (with("quant = { act = \"ls2\", act_bits = 3 }", false, ""), vec!["layer 0 `c`", "quant.act_bits", "3", "2..=2", "ls2"]),
        (with("quant = { act = \"gf\", act_bits = 3 }", false, "quant = { weights = \"ls1\", weight_bits = 1 }"), vec!["layer 0 `c`", "quant.act_bits", "3", "1..=2"]),
        (with("quant = { output = \"bases\" }", false, ""), vec!["layer 0 `c`", "quant.act", "pact", "ls1, ls2, lsT or gf"]),
        (with("quant = { act = \"ls2\", output = \"pact\" }", true, ""), vec!["layer 0 `c`", "quant.output", "pact", "bases"]),
        (with("quant = { act = \"ls2\" }", true, "quant = { weights = \"ls2\", weight_bits = 2 }"), vec!["layer 0 `c`", "quant.output", "bases", "no relu"]),
        (with("quant = { act = \"ls2\" }", false, ""), vec!["layer 2 `d`", "quant.weights", "sawb with weight_bits = 4", "binary activations", "layer 0 `c`"]),
        (with("", true, "quant = { act = \"ls2\" }"), vec!["layer 3 `d`", "quant.act", "ls2", "last"]),
        (with("quant = { bias_frac_bits = 20 }", true, ""), vec!["layer 0 `c`", "quant.bias_frac_bits", "20", "0..=16"]),
        (format!("{HEAD}[quant]\nbias_frac_bits = 17\n{CONV}"), vec!["quant.bias_frac_bits", "17", "0..=16"]),
        (format!("{HEAD}[quant]\nlogits_bits = 8\n{CONV}"), vec!["unknown field `logits_bits`"]),
        (with("", true, "quant = { clips = [1.0, 2.0] }"), vec!["layer 3 `d`", "quant.clips", "[1.0, 2.0]", "none with a logits output"]),
        (with("quant = { act = \"ls2\", clips = [1.0] }", false, "quant = { weights = \"ls1\", weight_bits = 1 }"), vec!["layer 0 `c`", "quant.clips", "[1.0]", "the 2 basis scales [v1, v2]"]),
        (with("quant = { act = \"lsT\", clips = [1.0, 0.5] }", false, "quant = { weights = \"ls1\", weight_bits = 1 }"), vec!["layer 0 `c`", "quant.clips", "equal (ternary)"]),
        (format!("{HEAD}[array]\noutput_units = \"both\"\n{CONV}"), vec!["output_units", "both", "per_column"]),
        (format!("{HEAD}[array]\nrows = 100\n{CONV}"), vec!["array.rows", "100", "1..=64"]),
        (format!("{HEAD}[array]\nbias_frac_bits = 2\n{CONV}"), vec!["array.bias_frac_bits", "2", "quant.bias_frac_bits"]),
    ];
    for (text, want) in cases.into_iter().chain(new_cases) {
        let e = err(&text);
        for w in want {
            assert!(e.contains(w), "error {e:?} lacks {w:?}");
        }
    }
}

/// Tensors that do not fit: a missing name (the file's tensors listed) and a shape that disagrees
/// with the layer before.
#[test]
fn tensors_that_do_not_fit_name_the_layer() {
    let tmp = tempfile::tempdir().unwrap();
    let w = tmp.path().join("w.safetensors");
    write_safetensors(&w, &[("c.w", vec![2, 1, 3, 3], vec![0.5; 18]), ("d.w", vec![3, 7], vec![0.5; 21])]);
    let dense = "[[layer]]\ntype = \"flatten\"\n[[layer]]\ntype = \"dense\"\nname = \"d\"\nweight = \"d.w\"\nunits = 3\n";
    let net = Network::from_toml(&format!("{HEAD}{CONV}{RELU}{dense}"), "t").unwrap();
    let e = lower(&net, &w).unwrap_err().to_string();
    for want in ["layer 3 `d`", "`d.w`", "[3, 7]", "[3, 8]"] {
        assert!(e.contains(want), "error {e:?} lacks {want:?}");
    }
    let net = Network::from_toml(&format!("{HEAD}{}{RELU}{dense}", CONV.replace("c.w", "conv.weight")), "t").unwrap();
    let e = lower(&net, &w).unwrap_err().to_string();
    for want in ["layer 0 `c`", "`conv.weight` not found", "`c.w`, `d.w`"] {
        assert!(e.contains(want), "error {e:?} lacks {want:?}");
    }
    assert!(matches!(lower(&net, &w), Err(qmac::net::NetError::Tensor { .. })));
}

/// A `network.json` whose stages do not fit together, or that is too large, is refused with a message,
/// never a panic; so is a network description over its size cap.
#[test]
fn a_malformed_network_json_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let mut rng = Rng::new(2);
    let (model, weights, calib) = (tmp.path().join("net.toml"), tmp.path().join("w.safetensors"), tmp.path().join("calib.npz"));
    std::fs::write(&model, NET).unwrap();
    write_safetensors(&weights, &tensors(&mut rng));
    write_data(&calib, &[4, 72], &normal(&mut rng, 4 * 72, 1.0), &[0; 4]);
    let out = tmp.path().join("b");
    quantize_to_dir(&model, &weights, &calib, &DataNames::default(), &out).unwrap();
    let path = out.join("network.json");
    let good = std::fs::read_to_string(&path).unwrap();
    QuantizedNet::load(&out).unwrap();
    // one output channel's parameters dropped from the second conv, then a shape that does not chain
    let mut v: serde_json::Value = serde_json::from_str(&good).unwrap();
    v["stages"][2]["compute"]["layer"]["channels"].as_array_mut().unwrap().pop();
    std::fs::write(&path, v.to_string()).unwrap();
    let e = QuantizedNet::load(&out).unwrap_err().to_string();
    assert!(e.contains("stage 2") && e.contains("sizes"), "{e}");
    let mut v: serde_json::Value = serde_json::from_str(&good).unwrap();
    v["stages"][1]["host"]["max_pool"]["output"] = serde_json::json!({"image": [5, 2, 2]});
    std::fs::write(&path, v.to_string()).unwrap();
    let e = QuantizedNet::load(&out).unwrap_err().to_string();
    assert!(e.contains("stage 1") && e.contains("chain"), "{e}");
    // a calibration sample that is not a number: an error naming the file and the value
    let mut xc = normal(&mut rng, 4 * 72, 1.0);
    xc[5] = f32::NAN;
    write_data(&calib, &[4, 72], &xc, &[0; 4]);
    let e = quantize_to_dir(&model, &weights, &calib, &DataNames::default(), &tmp.path().join("c")).unwrap_err().to_string();
    assert!(e.contains("calib.npz") && e.contains("value 5 is NaN"), "{e}");
    std::fs::write(&path, "{").unwrap();
    assert!(QuantizedNet::load(&out).unwrap_err().to_string().contains("not a qmac net quantize directory"));
    // files past their size caps are refused before they are read: a network.json of 1 GiB + 1 byte (a
    // sparse file) and a network description of 1 MiB + 1 byte
    std::fs::File::create(&path).unwrap().set_len((1 << 30) + 1).unwrap();
    let e = QuantizedNet::load(&out).unwrap_err().to_string();
    assert!(e.contains("network.json") && e.contains("allowed at most 1073741824 bytes"), "{e}");
    let big = tmp.path().join("big.toml");
    std::fs::write(&big, format!("{NET}{}", "#".repeat((1 << 20) + 1 - NET.len()))).unwrap();
    let e = Network::from_file(&big).unwrap_err().to_string();
    assert!(e.contains("big.toml") && e.contains("allowed at most 1048576 bytes"), "{e}");
    std::fs::write(&big, NET).unwrap();
    Network::from_file(&big).unwrap();
}
