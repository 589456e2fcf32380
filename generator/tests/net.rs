//! `qmac net`: networks the tests build themselves, through the integer reference and the RTL, checked
//! against an independent integer computation; and bad network files, each with one clear error.

use qmac::net::chain::QuantizedNet;
use qmac::net::flow::{quantize_to_dir, simulate_dir, DataNames, NetSimOptions};
use qmac::net::lower::{lower, max_pool, Stage};
use qmac::net::rtl::RtlOptions;
use qmac::net::{float, Network, Shape};
use qmac::rng::Rng;
use qmac_arith::pipeline::output_code_frac;
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

/// conv2d (+ batch norm) + relu + max-pool, conv2d + relu, flatten, dense with binary (ls-1) weights +
/// relu, dense logits. Logits at 4 bits, so every layer but the binary one runs on one array.
const NET: &str = r#"
name = "t"
[input]
shape = [2, 6, 6]
[quant]
weights = "sawb"
weight_bits = 4
act_bits = 4
logits_bits = 4
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
quant = { granularity = "per_tensor", act_granularity = "per_tensor" }
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

/// The network's integer outputs computed directly, independently of the tiles, im2col and the shared
/// arrays: input PACT codes `clamp(round(min(x, alpha) / s), 0, n)`, then per compute stage a direct
/// convolution (or dot product) of the weight code values with the input codes, and the output stage
/// `output_code_frac` (the layer's `bias_frac_bits`) with the channel's loaded parameters; max-pool on codes; flatten as is.
fn direct(q: &QuantizedNet, x: &[f32], n: usize) -> Vec<Vec<u64>> {
    let r = Rounding::HalfEven;
    let inq = &q.input;
    let nmax = f64::from((1u32 << inq.bits) - 1);
    let mut cur: Vec<u64> = x.iter().map(|&v| round_f64(f64::from(v).clamp(0.0, inq.alpha) / inq.scale, r).clamp(0.0, nmax) as u64).collect();
    let mut outs = Vec::new();
    for s in &q.stages {
        cur = match s {
            qmac::net::chain::QStage::Compute(c) => {
                let l = &c.layer;
                let out_ch = l.geometry.out_channels;
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
                                                    if iy < 0 || ix < 0 || iy as usize >= h || ix as usize >= w {
                                                        continue;
                                                    }
                                                    let k = (c0 * p.kernel[0] + ky) * p.kernel[1] + kx;
                                                    acc += l.weights.value(o, k) * xs[(c0 * h + iy as usize) * w + ix as usize] as i64;
                                                }
                                            }
                                        }
                                        y.push(output_code_frac(acc, &l.channels[o].params(), r, l.output.bits, l.config.bias_frac_bits));
                                    }
                                }
                            }
                        }
                        _ => {
                            let len = c.input.len();
                            let xs = &cur[i * len..(i + 1) * len];
                            for o in 0..out_ch {
                                let acc: i64 = (0..len).map(|k| l.weights.value(o, k) * xs[k] as i64).sum();
                                y.push(output_code_frac(acc, &l.channels[o].params(), r, l.output.bits, l.config.bias_frac_bits));
                            }
                        }
                    }
                }
                outs.push(y.clone());
                y
            }
            qmac::net::chain::QStage::MaxPool { size, stride, input, output, .. } => {
                let len = input.len();
                (0..n).flat_map(|i| max_pool(&cur[i * len..(i + 1) * len], *input, *size, *stride, *output)).collect()
            }
            qmac::net::chain::QStage::Flatten { .. } => cur,
        };
    }
    outs
}

/// A network built here (conv + batch norm + pool, conv, flatten, binary-weight dense, logits) is
/// quantized and run on data: every layer's RTL codes equal the reference's and a direct integer
/// computation's; layers with the same hardware share one build (two builds for four layers of
/// different depths); a second run takes both models from the cache.
#[test]
fn small_network_runs_bit_exact_through_the_rtl() {
    let tmp = tempfile::tempdir().unwrap();
    let mut rng = Rng::new(13);
    let (model, weights, calib, data) = (tmp.path().join("net.toml"), tmp.path().join("w.safetensors"), tmp.path().join("calib.npz"), tmp.path().join("test.npz"));
    std::fs::write(&model, NET).unwrap();
    write_safetensors(&weights, &tensors(&mut rng));
    let xc: Vec<f32> = normal(&mut rng, 16 * 72, 1.0).into_iter().map(f32::abs).collect();
    write_data(&calib, &[16, 2, 6, 6], &xc, &[0; 16]);
    let n = 6;
    let xt: Vec<f32> = normal(&mut rng, n * 72, 1.0).into_iter().map(f32::abs).collect();
    let labels: Vec<i64> = (0..n as i64).map(|i| i % 3).collect();
    write_data(&data, &[n as u64, 72], &xt, &labels);
    let out = tmp.path().join("build");
    quantize_to_dir(&model, &weights, &calib, &DataNames::default(), &out).unwrap();
    let cache = tmp.path().join("cache");
    let opts = |stall| NetSimOptions { rtl: Some(RtlOptions { cache: cache.clone(), work: out.join("work"), seed: 3, stall_pct: stall, build: Default::default(), progress: false }), clock_mhz: 50.0 };
    let rep = simulate_dir(&out, &data, &DataNames::default(), &opts(25)).unwrap();
    assert_eq!(rep.bit_exact, Some(true), "{rep:#?}");
    assert_eq!(rep.layers.len(), 4);
    assert_eq!(rep.builds.len(), 2, "{:#?}", rep.builds);
    assert_eq!(rep.builds[0].layers, ["c1", "c2", "f2"]);
    assert_eq!(rep.rtl_accuracy, Some(rep.reference_accuracy));
    assert!(rep.layers.iter().all(|l| l.cycles.unwrap() > 0));

    let q = QuantizedNet::load(&out).unwrap();
    let expect = direct(&q, &xt, n);
    let reference = q.run(&xt, n, |_, _, _| Ok(())).unwrap();
    for (i, c) in q.computes().iter().enumerate() {
        assert_eq!(reference.stages[i].codes, expect[i], "reference of layer {}", c.name);
        let rtl = read_u8_npy(&out.join(format!("sim/layers/{:02}-{}.npy", c.index, c.name)));
        assert_eq!(rtl, expect[i], "RTL of layer {}", c.name);
        assert!(expect[i].iter().any(|&v| v > 0) && expect[i].iter().collect::<std::collections::BTreeSet<_>>().len() > 2, "layer {} has varied outputs", c.name);
    }
    // the chaining keeps the float network's values: each PACT layer's codes times their scales
    // against the float network's activations clipped to the calibrated clips (the two 4-bit layers;
    // the binary-weight layer's error is far larger by nature)
    let fl = float::forward(&q.float, &xt, n);
    for (i, (c, codes)) in q.computes().into_iter().zip(&expect).take(2).enumerate() {
        let per = c.output.per_channel();
        let out_ch = c.layer.geometry.out_channels;
        let mut err = 0.0;
        for (j, (&f, &code)) in fl.pre[i].iter().zip(codes).enumerate() {
            let ch = (j / per) % out_ch;
            err += (f.clamp(0.0, c.clips[ch]) - c.out_scales()[ch] * code as f64).abs() / c.clips[ch];
        }
        err /= codes.len() as f64;
        eprintln!("layer {}: mean abs error {err:.4} of the clip", c.name);
        assert!(err < 0.08, "layer {}: mean abs error {err} of the clip", c.name);
    }
    assert_eq!(read_u8_npy(&out.join("sim/logits-codes.npy")), *expect.last().unwrap());
    // a second run builds nothing
    let again = simulate_dir(&out, &data, &DataNames::default(), &opts(0)).unwrap();
    assert!(again.builds.iter().all(|b| b.cached) && again.seconds.build == 0.0);
    assert_eq!(again.bit_exact, Some(true));
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
        (format!("{HEAD}{CONV}quant = {{ output = \"bases\" }}\n{RELU}"), vec!["layer 0 `c`", "quant.output", "bases", "not supported"]),
        (format!("{HEAD}{CONV}[[layer]]\ntype = \"max_pool\"\nname = \"p\"\nsize = [2, 2]\n"), vec!["layer 1 `p`", "`type` = max_pool", "only batch_norm or activation after the last"]),
        (format!("{HEAD}{CONV}kernels = 3\n"), vec!["layer 0 `c`", "unknown field `kernels`"]),
        (format!("{HEAD}[quant]\nweight_bits = 9\n{CONV}"), vec!["layer 0 `c`", "quant.weight_bits", "9", "1..=8"]),
    ];
    for (text, want) in cases {
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
    let _ = Stage::Flatten { name: String::new(), input: Shape::Flat(1), output: Shape::Flat(1) };
}

/// A `network.json` whose stages do not fit together is refused with a message, never a panic.
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
    v["stages"][1]["max_pool"]["output"] = serde_json::json!({"image": [5, 2, 2]});
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
}
