//! Gradient checks of every quantizer's backward rule: against the paper's formula where the
//! rule is a straight-through estimator (a quantizer is piecewise constant, so finite differences
//! of it are 0 or infinite), and against central finite differences of the function the
//! estimator differentiates (the un-rounded clip, the level table at fixed codes).

use candle_core::{Device, Tensor, Var};
use qmac_arith::quant::lsq::{self, BinaryScheme};
use qmac_arith::quant::{pact as arith_pact, sawb, Granularity, Rounding};
use qmac_train::ops;
use qmac_train::WeightQuant;

/// Deterministic values in [lo, hi).
fn values(n: usize, seed: u64, lo: f32, hi: f32) -> Vec<f32> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            lo + (hi - lo) * ((s >> 40) as f32 / (1u64 << 24) as f32)
        })
        .collect()
}

fn t(v: &[f32], shape: &[usize]) -> Tensor {
    Tensor::from_slice(v, shape, &Device::Cpu).unwrap()
}

fn host(x: &Tensor) -> Vec<f32> {
    x.flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

/// `sum(c * y)` and its gradients with respect to `vars`.
fn grads(y: &Tensor, c: &Tensor, vars: &[&Var]) -> Vec<Vec<f32>> {
    let loss = (y * c).unwrap().sum_all().unwrap();
    let g = loss.backward().unwrap();
    vars.iter()
        .map(|v| host(g.get(v).expect("gradient")))
        .collect()
}

/// PACT, one clip per layer: dy/dx = 1 on (0, alpha), dy/dalpha = 1 where x >= alpha, and the
/// forward values are arith's PACT quantizer's.
#[test]
fn pact_per_layer_gradients_are_the_papers() {
    let (n, c) = (6, 5);
    let xv = values(n * c, 1, -1.0, 3.0);
    let cv = values(n * c, 2, -1.0, 1.0);
    let alpha = 1.7f32;
    let x = Var::from_tensor(&t(&xv, &[n, c])).unwrap();
    let a = Var::from_tensor(&t(&[alpha], &[1])).unwrap();
    let y = ops::pact::pact(x.as_tensor(), a.as_tensor(), 3, Rounding::HalfEven).unwrap();
    let expect = arith_pact::quantize(
        &xv,
        Granularity::PerTensor,
        &[f64::from(alpha)],
        3,
        Rounding::HalfEven,
    )
    .unwrap()
    .dequantize();
    assert_eq!(host(&y), expect);
    let g = grads(&y, &t(&cv, &[n, c]), &[&x, &a]);
    let mut da = 0.0f32;
    for i in 0..n * c {
        let inside = xv[i] > 0.0 && xv[i] < alpha;
        assert_eq!(
            g[0][i],
            if inside { cv[i] } else { 0.0 },
            "dy/dx at {i} (x = {})",
            xv[i]
        );
        if xv[i] >= alpha {
            da += cv[i];
        }
    }
    assert!((g[1][0] - da).abs() < 1e-5, "dalpha {} vs {da}", g[1][0]);
    // the same value as the derivative of the un-rounded clip, by central differences
    let clip_loss = |a: f64| -> f64 {
        xv.iter()
            .zip(&cv)
            .map(|(&x, &c)| f64::from(c) * arith_pact::clip(f64::from(x), a))
            .sum()
    };
    let h = 1e-4;
    let fd = (clip_loss(f64::from(alpha) + h) - clip_loss(f64::from(alpha) - h)) / (2.0 * h);
    assert!(
        (fd - f64::from(g[1][0])).abs() < 1e-4,
        "finite difference {fd} vs {}",
        g[1][0]
    );
}

/// PACT with one clip per channel of a `[N, C, H, W]` tensor: each alpha collects the gradient of
/// its own channel only.
#[test]
fn pact_per_channel_alpha_gradient() {
    let (n, c, hw) = (3, 4, 2);
    let len = n * c * hw * hw;
    let xv = values(len, 3, -0.5, 2.5);
    let cv = values(len, 4, -1.0, 1.0);
    let alphas = [0.5f32, 1.0, 1.5, 2.0];
    let x = Var::from_tensor(&t(&xv, &[n, c, hw, hw])).unwrap();
    let a = Var::from_tensor(&t(&alphas, &[c])).unwrap();
    let y = ops::pact::pact(x.as_tensor(), a.as_tensor(), 2, Rounding::HalfEven).unwrap();
    let g = grads(&y, &t(&cv, &[n, c, hw, hw]), &[&x, &a]);
    let mut da = [0.0f32; 4];
    let yv = host(&y);
    for i in 0..len {
        let ch = (i / (hw * hw)) % c;
        if xv[i] >= alphas[ch] {
            da[ch] += cv[i];
        }
        // forward: arith's PACT of this one value with its channel's clip
        let q = arith_pact::quantize(
            &xv[i..=i],
            Granularity::PerTensor,
            &[f64::from(alphas[ch])],
            2,
            Rounding::HalfEven,
        )
        .unwrap()
        .dequantize()[0];
        assert_eq!(yv[i], q, "forward at {i}");
    }
    for ch in 0..c {
        assert!(
            (g[1][ch] - da[ch]).abs() < 1e-5,
            "channel {ch}: {} vs {}",
            g[1][ch],
            da[ch]
        );
    }
    assert!(
        da.iter().all(|&d| d != 0.0),
        "every channel has clipped values"
    );
}

/// SAWB, uniform and least-squares weights: forward is arith's quantizer per output channel,
/// backward the identity (straight-through).
#[test]
fn weight_quantizers_are_straight_through() {
    let (o, k) = (4, 9);
    let wv = values(o * k, 5, -1.0, 1.0);
    let cv = values(o * k, 6, -1.0, 1.0);
    for q in [
        WeightQuant::Sawb { bits: 2 },
        WeightQuant::Sawb { bits: 4 },
        WeightQuant::Uniform { bits: 3 },
        WeightQuant::Binary(BinaryScheme::Ls1),
        WeightQuant::Binary(BinaryScheme::Ls2),
        WeightQuant::Binary(BinaryScheme::LsTernary),
        WeightQuant::Binary(BinaryScheme::Greedy { bases: 3 }),
    ] {
        let w = Var::from_tensor(&t(&wv, &[o, k])).unwrap();
        let y = ops::weights::quantize(w.as_tensor(), q, Rounding::HalfEven).unwrap();
        let expect = ops::weights::quantized_values(&wv, o, q, Rounding::HalfEven).unwrap();
        assert_eq!(host(&y), expect, "{q:?} forward");
        assert_ne!(host(&y), wv, "{q:?} quantizes");
        let g = grads(&y, &t(&cv, &[o, k]), &[&w]);
        assert_eq!(g[0], cv, "{q:?} gradient");
    }
    // the SAWB forward is arith's SAWB with its clip from the statistics of each row
    let g = Granularity::PerChannel { axis0_len: o };
    let by_arith = sawb::quantize(&wv, g, 2).unwrap().dequantize();
    assert_eq!(
        ops::weights::quantized_values(&wv, o, WeightQuant::Sawb { bits: 2 }, Rounding::HalfEven)
            .unwrap(),
        by_arith
    );
    let ls2 = lsq::quantize(&wv, g, BinaryScheme::Ls2)
        .unwrap()
        .dequantize();
    assert_eq!(
        ops::weights::quantized_values(
            &wv,
            o,
            WeightQuant::Binary(BinaryScheme::Ls2),
            Rounding::HalfEven
        )
        .unwrap(),
        ls2
    );
}

/// Learnable levels: dy/dw = 1; a level's gradient is the sum over the weights coded to it, which
/// equals the central finite difference of the loss in that level (codes unchanged by a small step).
#[test]
fn level_gradients_match_finite_differences() {
    let wv = values(40, 7, -1.0, 1.0);
    let cv = values(40, 8, -1.0, 1.0);
    let table = [-0.7f32, -0.2, 0.15, 0.6];
    let w = Var::from_tensor(&t(&wv, &[5, 8])).unwrap();
    let l = Var::from_tensor(&t(&table, &[4])).unwrap();
    let y = ops::levels::quantize(w.as_tensor(), l.as_tensor(), 2).unwrap();
    let g = grads(&y, &t(&cv, &[5, 8]), &[&w, &l]);
    assert_eq!(g[0], cv, "straight-through towards the weights");
    let loss = |tab: &[f32]| -> f64 {
        let y = ops::levels::quantize(&t(&wv, &[5, 8]), &t(tab, &[4]), 2).unwrap();
        host(&y)
            .iter()
            .zip(&cv)
            .map(|(&a, &b)| f64::from(a) * f64::from(b))
            .sum()
    };
    for j in 0..4 {
        let h = 1e-3f32;
        let (mut up, mut down) = (table, table);
        up[j] += h;
        down[j] -= h;
        let fd = (loss(&up) - loss(&down)) / (2.0 * f64::from(h));
        assert!(
            (fd - f64::from(g[1][j])).abs() < 1e-3,
            "level {j}: fd {fd} vs {}",
            g[1][j]
        );
        assert!(g[1][j] != 0.0, "level {j} is used");
    }
}

/// Binary activations: forward is arith's bases with the given scales; dy/dx = 1 where
/// |x| <= v1 + v2, else 0.
#[test]
fn binary_activation_gradient() {
    let xv = values(48, 9, -3.0, 3.0);
    let cv = values(48, 10, -1.0, 1.0);
    let scales = ops::binary::batch_scales(&xv, BinaryScheme::Ls2).unwrap();
    assert_eq!(scales.len(), 2);
    assert_eq!(scales[0], lsq::ls2_v1(&xv).unwrap());
    let x = Var::from_tensor(&t(&xv, &[6, 8])).unwrap();
    let y = ops::binary::binarize(x.as_tensor(), &scales).unwrap();
    assert_eq!(
        host(&y),
        lsq::quantize_with_scales(&xv, &scales)
            .unwrap()
            .dequantize()
    );
    let g = grads(&y, &t(&cv, &[6, 8]), &[&x]);
    let top = (scales[0] + scales[1]) as f32;
    let mut outside = 0;
    for i in 0..48 {
        let inside = xv[i].abs() <= top;
        outside += usize::from(!inside);
        assert_eq!(
            g[0][i],
            if inside { cv[i] } else { 0.0 },
            "at {i} (x = {})",
            xv[i]
        );
    }
    assert!(
        outside > 0 && outside < 48,
        "both sides of the window are exercised"
    );
}
