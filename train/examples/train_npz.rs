//! Trains a model on an `.npz` dataset and reports float, post-training and QAT accuracy on a test
//! set, with the training time (the engine alone, without export).
//!
//! `cargo run --release -p qmac-train --example train_npz -- MODEL TRAIN.npz TEST.npz [SCHEME] [key=value ...]`
//! with MODEL `mlp` (64-64-32-10), `mlp-bn` (the same with batch norm), `cnn` (two conv layers) or
//! `bin` (64-128-10 with batch norm); settings `float_epochs`, `qat_epochs`, `lr`, `qat_lr`,
//! `batch`, `seed`, `weight_decay`, `alpha_decay`, `input_bits`, `first_weight_bits`.

use std::path::Path;
use std::time::Instant;

use qmac_train::{train, Dataset, Layer, ModelSpec, Scheme, TrainConfig};

fn model(name: &str) -> ModelSpec {
    use Layer::*;
    let (input, layers) = match name {
        "mlp" => (
            vec![64],
            vec![
                Dense { out: 64 },
                Relu,
                Dense { out: 32 },
                Relu,
                Dense { out: 10 },
            ],
        ),
        "mlp-bn" => (
            vec![64],
            vec![
                Dense { out: 64 },
                BatchNorm,
                Relu,
                Dense { out: 32 },
                BatchNorm,
                Relu,
                Dense { out: 10 },
            ],
        ),
        "bin" => (
            vec![64],
            vec![Dense { out: 128 }, BatchNorm, Relu, Dense { out: 10 }],
        ),
        "cnn" => (
            vec![1, 8, 8],
            vec![
                Conv2d {
                    out: 8,
                    kernel: 3,
                    stride: 1,
                    padding: 1,
                },
                BatchNorm,
                Relu,
                MaxPool { size: 2, stride: 2 },
                Conv2d {
                    out: 16,
                    kernel: 3,
                    stride: 1,
                    padding: 1,
                },
                BatchNorm,
                Relu,
                MaxPool { size: 2, stride: 2 },
                Flatten,
                Dense { out: 10 },
            ],
        ),
        other => panic!("unknown model {other}"),
    };
    ModelSpec { input, layers }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let spec = model(&args[0]);
    let tr = Dataset::from_npz(Path::new(&args[1])).unwrap();
    let te = Dataset::from_npz(Path::new(&args[2])).unwrap();
    let scheme: Option<Scheme> = args
        .get(3)
        .filter(|s| !s.contains('=') && *s != "float")
        .map(|s| s.parse().unwrap());
    let mut cfg = TrainConfig::default();
    for kv in args.iter().skip(3).filter(|s| s.contains('=')) {
        let (k, v) = kv.split_once('=').unwrap();
        match k {
            "float_epochs" => cfg.float_epochs = v.parse().unwrap(),
            "qat_epochs" => cfg.qat_epochs = v.parse().unwrap(),
            "lr" => cfg.lr = v.parse().unwrap(),
            "qat_lr" => cfg.qat_lr = v.parse().unwrap(),
            "batch" => cfg.batch = v.parse().unwrap(),
            "seed" => cfg.seed = v.parse().unwrap(),
            "input_bits" => cfg.input_bits = v.parse().unwrap(),
            "first_weight_bits" => cfg.first_weight_bits = Some(v.parse().unwrap()),
            "weight_decay" => cfg.weight_decay = v.parse().unwrap(),
            "alpha_decay" => cfg.alpha_decay = v.parse().unwrap(),
            _ => panic!("unknown setting {k}"),
        }
    }
    let t0 = Instant::now();
    let verbose = std::env::var_os("VERBOSE").is_some();
    let trained = train(&spec, &tr, Some(&te), scheme.as_ref(), &cfg, &mut |e| {
        if verbose {
            eprintln!(
                "{:?} {:3} loss {:.4} train {:.4} test {:.4}",
                e.phase,
                e.epoch,
                e.loss,
                e.train_accuracy,
                e.val_accuracy.unwrap_or(0.0)
            );
        }
    })
    .unwrap();
    let secs = t0.elapsed().as_secs_f64();
    let pct = |a: Option<f64>| a.map_or("-".to_string(), |a| format!("{:.2}", 100.0 * a));
    println!(
        "{} {}: float {} post-training {} qat {} ({secs:.1} s)",
        args[0],
        scheme.as_ref().map_or("float", |s| s.name.as_str()),
        pct(trained.log.float_accuracy),
        pct(trained.log.post_training_accuracy),
        pct(trained.log.qat_accuracy)
    );
}
