//! Training on tiny synthetic data: determinism for a seed, every scheme trains and exports its
//! quantizer parameters, and bad input gets one clear error.

use qmac_train::{train, Dataset, Layer, LayerParams, ModelSpec, Scheme, TrainConfig, TrainError};

/// 240 samples of 16 features in 4 classes: class `c` lights up features `4c..4c+4` (plus noise),
/// so a small network separates them after a few epochs.
fn blobs(n: usize, seed: u64) -> Dataset {
    let mut s = seed;
    let mut next = || {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (s >> 40) as f32 / (1u64 << 24) as f32
    };
    let (mut x, mut y) = (Vec::new(), Vec::new());
    for i in 0..n {
        let c = i % 4;
        for f in 0..16 {
            x.push(if f / 4 == c {
                0.6 + 0.4 * next()
            } else {
                0.5 * next()
            });
        }
        y.push(c as i64);
    }
    Dataset::new(x, vec![n, 16], y).unwrap()
}

fn mlp() -> ModelSpec {
    use Layer::*;
    ModelSpec {
        input: vec![16],
        layers: vec![
            Dense { out: 12 },
            BatchNorm,
            Relu,
            Dense { out: 8 },
            Relu,
            Dense { out: 4 },
        ],
    }
}

fn cnn() -> ModelSpec {
    use Layer::*;
    ModelSpec {
        input: vec![1, 4, 4],
        layers: vec![
            Conv2d {
                out: 4,
                kernel: 3,
                stride: 1,
                padding: 1,
            },
            BatchNorm,
            Relu,
            MaxPool { size: 2, stride: 2 },
            Flatten,
            Dense { out: 4 },
        ],
    }
}

fn config(seed: u64) -> TrainConfig {
    TrainConfig {
        seed,
        float_epochs: 8,
        qat_epochs: 2,
        batch: 16,
        lr: 0.01,
        qat_lr: 0.002,
        ..TrainConfig::default()
    }
}

fn weights(layers: &[LayerParams]) -> Vec<Vec<f32>> {
    layers
        .iter()
        .filter_map(|l| match l {
            LayerParams::Weights { weight, bias, .. } => {
                Some(weight.iter().chain(bias).copied().collect())
            }
            _ => None,
        })
        .collect()
}

/// Two runs with one seed give identical weights, clips and logs; another seed does not.
#[test]
fn deterministic_for_a_seed() {
    let data = blobs(240, 1);
    let scheme: Scheme = "w2a2".parse().unwrap();
    let run = |seed| {
        let mut epochs = 0;
        let t = train(
            &mlp(),
            &data,
            Some(&data),
            Some(&scheme),
            &config(seed),
            &mut |_| epochs += 1,
        )
        .unwrap();
        assert_eq!(epochs, 10, "one progress report per epoch");
        (t.layers().unwrap(), serde_json::to_string(&t.log).unwrap())
    };
    let (a, log_a) = run(7);
    let (b, log_b) = run(7);
    assert_eq!(a, b);
    assert_eq!(log_a, log_b);
    let (c, _) = run(8);
    assert_ne!(weights(&a), weights(&c), "the seed matters");
}

/// Every scheme trains (the float network learns the blobs, QAT keeps them apart) and exports the
/// parameters its quantizers need; the JSON log has every epoch.
#[test]
fn every_scheme_trains_and_exports() {
    let data = blobs(240, 2);
    let cases = [
        ("w4a4", &mlp()),
        ("w2a2-levels", &mlp()),
        ("w3a3-uniform", &mlp()),
        ("w2a2-pc", &cnn()),
        ("binary-ls2", &mlp()),
        ("binary-gf2", &cnn()),
    ];
    for (name, spec) in cases {
        let scheme: Scheme = name.parse().unwrap();
        let mut t = train(
            spec,
            &data,
            Some(&data),
            Some(&scheme),
            &config(3),
            &mut |_| {},
        )
        .unwrap();
        let float = t.log.float_accuracy.unwrap();
        let qat = t.log.qat_accuracy.unwrap();
        assert!(float > 0.9, "{name}: float accuracy {float}");
        assert!(qat > 0.5, "{name}: QAT accuracy {qat}");
        let pred = t.predict(&data).unwrap();
        let acc =
            pred.iter().zip(data.y()).filter(|(a, b)| a == b).count() as f64 / data.len() as f64;
        assert_eq!(acc, qat, "{name}: predict() is the QAT evaluation");
        let layers = t.layers().unwrap();
        let acts: Vec<&LayerParams> = layers
            .iter()
            .filter(|l| !matches!(l, LayerParams::Weights { .. } | LayerParams::None))
            .collect();
        let relus = spec.layers.iter().filter(|l| **l == Layer::Relu).count();
        assert_eq!(acts.len(), relus, "{name}: one quantizer per ReLU");
        for a in acts {
            match a {
                LayerParams::Pact { alpha, .. } => {
                    assert!(alpha.iter().all(|&a| a > 0.0), "{name}")
                }
                LayerParams::Bases { scales } => assert_eq!(scales.len(), 2, "{name}"),
                other => panic!("{name}: {other:?}"),
            }
        }
        let levels = layers
            .iter()
            .filter(|l| matches!(l, LayerParams::Weights { levels: Some(t), .. } if t.len() == 4))
            .count();
        assert_eq!(levels > 0, name.ends_with("levels"), "{name}: level tables");
        let log = serde_json::to_value(&t.log).unwrap();
        assert_eq!(log["epochs"].as_array().unwrap().len(), 10);
        assert_eq!(log["scheme"], name);
    }
}

/// `first_weight_bits` quantizes the first weight layer at its own bits (plain uniform there), the
/// others at the scheme's: each layer's forward weights are arith's quantizer of its float weights.
#[test]
fn first_layer_bits_override() {
    use qmac_arith::quant::{sawb, uniform, Granularity, Rounding};
    let data = blobs(120, 4);
    let scheme: Scheme = "binary-ls1".parse().unwrap();
    let cfg = TrainConfig {
        first_weight_bits: Some(8),
        ..config(5)
    };
    let t = train(&mlp(), &data, None, Some(&scheme), &cfg, &mut |_| {}).unwrap();
    let layers = t.layers().unwrap();
    let LayerParams::Weights { weight, shape, .. } = &layers[0] else {
        panic!("layer 0 has weights")
    };
    let g = Granularity::PerChannel {
        axis0_len: shape[0],
    };
    // the first layer's input scale (the network input's PACT step) is folded in before the
    // quantizer and taken out after it: Q(W s) / s
    let q0 = t.quantized_weights(0).unwrap().unwrap();
    let (alpha, bits) = t.input_quantizer();
    let s = (alpha / f64::from((1u32 << bits) - 1)) as f32;
    let folded: Vec<f32> = weight.iter().map(|&w| w * s).collect();
    let want: Vec<f32> = uniform::signed(&folded, g, 8, Rounding::HalfEven)
        .unwrap()
        .dequantize()
        .into_iter()
        .map(|v| v / s)
        .collect();
    assert_eq!(q0, want);
    let LayerParams::Weights { weight, shape, .. } = &layers[3] else {
        panic!("layer 3 has weights")
    };
    let q3 = t.quantized_weights(3).unwrap().unwrap();
    let g = Granularity::PerChannel {
        axis0_len: shape[0],
    };
    assert_eq!(
        q3,
        sawb::quantize(weight, g, 1).unwrap().dequantize(),
        "ls-1 is 1-bit SAWB (mean |w|)"
    );
    assert_eq!(
        t.quantized_weights(1).unwrap(),
        None,
        "batch norm has no weights"
    );
    let e = train(
        &mlp(),
        &data,
        None,
        Some(&scheme),
        &TrainConfig {
            first_weight_bits: Some(1),
            ..config(5)
        },
        &mut |_| {},
    )
    .unwrap_err()
    .to_string();
    assert_eq!(
        e,
        "training setting `first_weight_bits` = 1 is invalid: 2..=8"
    );
}

/// Bad input: one error naming what is wrong.
#[test]
fn bad_input_is_one_clear_error() {
    let e = "w2a9".parse::<Scheme>().unwrap_err().to_string();
    assert!(e.starts_with("unknown scheme \"w2a9\"; allowed: "), "{e}");

    let data = blobs(40, 3);
    let mut spec = mlp();
    spec.input = vec![15];
    let e = train(&spec, &data, None, None, &config(1), &mut |_| {})
        .unwrap_err()
        .to_string();
    assert_eq!(e, "dataset `x`: samples of shape [16] (16 values) do not fit the model input [15] (15 values)");

    let mut spec = mlp();
    spec.layers[5] = Layer::Dense { out: 3 };
    let e = train(&spec, &data, None, None, &config(1), &mut |_| {})
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "dataset `y`: label 3 is 3: allowed 0..=2 (the model's last layer has 3 outputs)"
    );

    let e = Dataset::new(vec![0.0; 4], vec![2, 2], vec![0, -1])
        .unwrap_err()
        .to_string();
    assert_eq!(e, "dataset `y`: label 1 is -1: allowed 0 or more");
    let e = Dataset::new(vec![0.0; 4], vec![2, 2], vec![0])
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "dataset `y`: 1 labels for 2 samples: allowed one label per sample"
    );

    let mut spec = mlp();
    spec.layers.insert(0, Layer::Relu);
    let e = train(&spec, &data, None, None, &config(1), &mut |_| {}).unwrap_err();
    assert!(
        matches!(
            e,
            TrainError::Model {
                layer: 0,
                kind: "relu",
                ..
            }
        ),
        "{e}"
    );
    let mut spec = cnn();
    spec.layers.remove(4);
    let e = train(&spec, &data, None, None, &config(1), &mut |_| {})
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("model layer 4 (dense): input shape [4, 2, 2] is not flat"),
        "{e}"
    );
}

/// Datasets from .npz: `x` and `y` by name, dtypes checked.
#[test]
fn npz_datasets() {
    use npyz::WriterBuilder;
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, arrays: &[(&str, Vec<u64>, Vec<i64>)]| {
        let path = dir.path().join(name);
        let mut npz = npyz::npz::NpzWriter::create(&path).unwrap();
        for (n, shape, v) in arrays {
            let mut w = npz
                .array(n, Default::default())
                .unwrap()
                .default_dtype()
                .shape(shape)
                .begin_nd()
                .unwrap();
            w.extend(v.iter().copied()).unwrap();
            w.finish().unwrap();
        }
        path
    };
    let ok = write(
        "ok.npz",
        &[
            ("x", vec![2, 3], vec![1, 2, 3, 4, 5, 6]),
            ("y", vec![2], vec![0, 1]),
        ],
    );
    let d = Dataset::from_npz(&ok).unwrap();
    assert_eq!(d.x(), &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    assert_eq!(d.y(), &[0, 1]);
    let no_y = write("noy.npz", &[("x", vec![2, 3], vec![1, 2, 3, 4, 5, 6])]);
    let e = Dataset::from_npz(&no_y).unwrap_err().to_string();
    assert!(e.contains("has no array `y` (it has: x)"), "{e}");
    let bad_y = write(
        "bady.npz",
        &[
            ("x", vec![2, 3], vec![1, 2, 3, 4, 5, 6]),
            ("y", vec![2, 1], vec![0, 1]),
        ],
    );
    let e = Dataset::from_npz(&bad_y).unwrap_err().to_string();
    assert!(
        e.contains("array `y`: shape [2, 1]: allowed one dimension"),
        "{e}"
    );
    let e = Dataset::from_npz(&dir.path().join("missing.npz"))
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("dataset file ") && e.contains("cannot open as .npz"),
        "{e}"
    );
}

/// With per-channel PACT clips, a layer's weights are quantized with the scale of each input
/// channel's codes folded in, as the integer network computes them: `Q(W s) / s`, `s[c] = alpha[c] /
/// (2^bits - 1)` of the clips before it (repeated over each channel's pixels by flatten), not `Q(W)`.
#[test]
fn per_channel_clips_fold_into_the_next_weights() {
    use qmac_arith::quant::{sawb, Granularity};
    let data = blobs(120, 6);
    let scheme: Scheme = "w2a2-pc".parse().unwrap();
    let t = train(&cnn(), &data, None, Some(&scheme), &config(7), &mut |_| {}).unwrap();
    let layers = t.layers().unwrap();
    let LayerParams::Pact { alpha, bits } = &layers[2] else {
        panic!("layer 2 is the PACT quantizer")
    };
    assert!(alpha.iter().any(|&a| a != alpha[0]), "per-channel clips differ: {alpha:?}");
    let LayerParams::Weights { weight, shape, .. } = &layers[5] else {
        panic!("layer 5 is the dense layer")
    };
    let n = ((1u32 << bits) - 1) as f32;
    // 4 channels of 2x2 pixels after the pool, flattened channel-major
    let s: Vec<f32> = (0..shape[1]).map(|k| alpha[k / 4] as f32 / n).collect();
    let folded: Vec<f32> = weight.iter().enumerate().map(|(i, &w)| w * s[i % shape[1]]).collect();
    let g = Granularity::PerChannel { axis0_len: shape[0] };
    let want: Vec<f32> = sawb::quantize(&folded, g, 2).unwrap().dequantize().into_iter().enumerate().map(|(i, v)| v / s[i % shape[1]]).collect();
    assert_eq!(t.quantized_weights(5).unwrap().unwrap(), want);
    let plain = sawb::quantize(weight, g, 2).unwrap().dequantize();
    assert_ne!(want, plain, "folding changes the quantized weights");
}
