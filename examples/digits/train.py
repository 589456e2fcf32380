"""Train the two float networks of the digits example and write what `qmac net` reads.

Data: scikit-learn's digits (1797 images of 8x8 pixels, values 0..16, shipped inside the
scikit-learn package), scaled to [0, 1]. Split deterministically: a permutation by
numpy's default_rng(0), the first 540 samples are the test set, the other 1257 the training set
(which is also the calibration set).

Networks (numpy only, deterministic):
  mlp: dense 64-64, relu, dense 64-32, relu, dense 32-10
  cnn: conv 1->8 3x3 pad 1, batch norm, relu, maxpool 2; conv 8->16 3x3 pad 1, relu, maxpool 2;
       flatten; dense 64-10

Writes into the output directory (default: this directory's build/):
  train.npz, test.npz   x (float32, [N, 64]: the 8x8 pixels, row-major), y (int64)
  mlp.npz, cnn.npz      the float weights by name (weights [out][in] / [out][in][kh][kw])
  float.json            the float test accuracy of both networks
"""
import argparse
import json
import os

import numpy as np
from sklearn.datasets import load_digits

TEST = 540


def split():
    d = load_digits()
    x = (d.data / 16.0).astype(np.float32)
    y = d.target.astype(np.int64)
    perm = np.random.default_rng(0).permutation(len(y))
    te, tr = perm[:TEST], perm[TEST:]
    return x[tr], y[tr], x[te], y[te]


class Adam:
    def __init__(self, params, lr):
        self.p, self.lr, self.t = params, lr, 0
        self.m = {k: np.zeros_like(v) for k, v in params.items()}
        self.v = {k: np.zeros_like(v) for k, v in params.items()}

    def step(self, grads):
        self.t += 1
        for k, g in grads.items():
            self.m[k] = 0.9 * self.m[k] + 0.1 * g
            self.v[k] = 0.999 * self.v[k] + 0.001 * g * g
            mh = self.m[k] / (1 - 0.9 ** self.t)
            vh = self.v[k] / (1 - 0.999 ** self.t)
            self.p[k] -= self.lr * mh / (np.sqrt(vh) + 1e-8)


def softmax_xent(logits, y):
    z = logits - logits.max(axis=1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=1, keepdims=True)
    g = p.copy()
    g[np.arange(len(y)), y] -= 1
    return g / len(y)


def init(rng, shape, fan_in):
    return (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float64)


# ---- MLP ----
def mlp_forward(p, x):
    h1 = np.maximum(x @ p["fc1.weight"].T + p["fc1.bias"], 0)
    h2 = np.maximum(h1 @ p["fc2.weight"].T + p["fc2.bias"], 0)
    return h1, h2, h2 @ p["fc3.weight"].T + p["fc3.bias"]


def train_mlp(x, y, epochs=60):
    rng = np.random.default_rng(1)
    p = {}
    for name, (o, i) in {"fc1": (64, 64), "fc2": (32, 64), "fc3": (10, 32)}.items():
        p[name + ".weight"] = init(rng, (o, i), i)
        p[name + ".bias"] = np.zeros(o)
    opt = Adam(p, 0.003)
    for _ in range(epochs):
        for b in np.array_split(rng.permutation(len(y)), len(y) // 32):
            xb = x[b].astype(np.float64)
            h1, h2, out = mlp_forward(p, xb)
            g3 = softmax_xent(out, y[b])
            g2 = (g3 @ p["fc3.weight"]) * (h2 > 0)
            g1 = (g2 @ p["fc2.weight"]) * (h1 > 0)
            opt.step({
                "fc3.weight": g3.T @ h2, "fc3.bias": g3.sum(0),
                "fc2.weight": g2.T @ h1, "fc2.bias": g2.sum(0),
                "fc1.weight": g1.T @ xb, "fc1.bias": g1.sum(0),
            })
    return p


# ---- CNN ----
def im2col(x, k=3, pad=1):
    n, c, h, w = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    cols = np.empty((n, c, k, k, h, w))
    for ky in range(k):
        for kx in range(k):
            cols[:, :, ky, kx] = xp[:, :, ky:ky + h, kx:kx + w]
    # rows (n, y, x), columns (c, ky, kx): the weight tensor's row-major order
    return cols.transpose(0, 4, 5, 1, 2, 3).reshape(n * h * w, c * k * k)


def col2im(g, shape, k=3, pad=1):
    n, c, h, w = shape
    g = g.reshape(n, h, w, c, k, k).transpose(0, 3, 4, 5, 1, 2)
    xp = np.zeros((n, c, h + 2 * pad, w + 2 * pad))
    for ky in range(k):
        for kx in range(k):
            xp[:, :, ky:ky + h, kx:kx + w] += g[:, :, ky, kx]
    return xp[:, :, pad:pad + h, pad:pad + w]


def conv(x, wgt, b):
    n, _, h, w = x.shape
    cols = im2col(x)
    out = cols @ wgt.reshape(len(wgt), -1).T + b
    return cols, out.reshape(n, h, w, -1).transpose(0, 3, 1, 2)


def pool(x):
    n, c, h, w = x.shape
    r = x.reshape(n, c, h // 2, 2, w // 2, 2)
    m = r.max(axis=(3, 5))
    mask = r == m[:, :, :, None, :, None]
    # one winner per window (the first), so the gradient is not counted twice on ties
    flat = mask.transpose(0, 1, 2, 4, 3, 5).reshape(n, c, h // 2, w // 2, 4)
    first = np.zeros_like(flat)
    first[np.arange(flat.shape[0])[:, None, None, None], np.arange(c)[None, :, None, None],
          np.arange(h // 2)[None, None, :, None], np.arange(w // 2)[None, None, None, :],
          flat.argmax(-1)] = True
    return m, first.reshape(n, c, h // 2, w // 2, 2, 2).transpose(0, 1, 2, 4, 3, 5)


def unpool(g, mask):
    return (mask * g[:, :, :, None, :, None]).reshape(mask.shape[0], mask.shape[1], mask.shape[2] * 2, mask.shape[4] * 2)


BN_EPS = 1e-5


def cnn_forward(p, x, train=False):
    c1cols, z1 = conv(x, p["conv1.weight"], p["conv1.bias"])
    if train:
        mu, var = z1.mean(axis=(0, 2, 3)), z1.var(axis=(0, 2, 3))
    else:
        mu, var = p["bn1.running_mean"], p["bn1.running_var"]
    zh = (z1 - mu[:, None, None]) / np.sqrt(var + BN_EPS)[:, None, None]
    b1 = zh * p["bn1.weight"][:, None, None] + p["bn1.bias"][:, None, None]
    a1 = np.maximum(b1, 0)
    p1, m1 = pool(a1)
    c2cols, z2 = conv(p1, p["conv2.weight"], p["conv2.bias"])
    a2 = np.maximum(z2, 0)
    p2, m2 = pool(a2)
    f = p2.reshape(len(x), -1)
    out = f @ p["fc.weight"].T + p["fc.bias"]
    return dict(c1cols=c1cols, z1=z1, mu=mu, var=var, zh=zh, b1=b1, p1=p1, m1=m1, c2cols=c2cols, z2=z2, m2=m2, f=f, out=out)


def train_cnn(x, y, epochs=40):
    rng = np.random.default_rng(2)
    p = {
        "conv1.weight": init(rng, (8, 1, 3, 3), 9), "conv1.bias": np.zeros(8),
        "bn1.weight": np.ones(8), "bn1.bias": np.zeros(8),
        "conv2.weight": init(rng, (16, 8, 3, 3), 72), "conv2.bias": np.zeros(16),
        "fc.weight": init(rng, (10, 64), 64), "fc.bias": np.zeros(10),
    }
    run_mean, run_var = np.zeros(8), np.ones(8)
    opt = Adam(p, 0.003)
    for _ in range(epochs):
        for b in np.array_split(rng.permutation(len(y)), len(y) // 32):
            xb = x[b].astype(np.float64)
            s = cnn_forward(p, xb, train=True)
            run_mean = 0.9 * run_mean + 0.1 * s["mu"]
            run_var = 0.9 * run_var + 0.1 * s["var"]
            g = softmax_xent(s["out"], y[b])
            gfc_w, gfc_b = g.T @ s["f"], g.sum(0)
            gp2 = (g @ p["fc.weight"]).reshape(len(b), 16, 2, 2)
            gz2 = unpool(gp2, s["m2"]) * (s["z2"] > 0)
            gz2r = gz2.transpose(0, 2, 3, 1).reshape(-1, 16)
            gc2_w = (gz2r.T @ s["c2cols"]).reshape(16, 8, 3, 3)
            gc2_b = gz2r.sum(0)
            gp1 = col2im(gz2r @ p["conv2.weight"].reshape(16, -1), s["p1"].shape)
            gb1 = unpool(gp1, s["m1"]) * (s["b1"] > 0)
            gbn_w = (gb1 * s["zh"]).sum(axis=(0, 2, 3))
            gbn_b = gb1.sum(axis=(0, 2, 3))
            gzh = gb1 * p["bn1.weight"][:, None, None]
            m = gzh.shape[0] * gzh.shape[2] * gzh.shape[3]
            inv = 1 / np.sqrt(s["var"] + BN_EPS)[:, None, None]
            gz1 = inv / m * (m * gzh - gzh.sum(axis=(0, 2, 3), keepdims=True) - s["zh"] * (gzh * s["zh"]).sum(axis=(0, 2, 3), keepdims=True))
            gz1r = gz1.transpose(0, 2, 3, 1).reshape(-1, 8)
            opt.step({
                "fc.weight": gfc_w, "fc.bias": gfc_b,
                "conv2.weight": gc2_w, "conv2.bias": gc2_b,
                "bn1.weight": gbn_w, "bn1.bias": gbn_b,
                "conv1.weight": (gz1r.T @ s["c1cols"]).reshape(8, 1, 3, 3), "conv1.bias": gz1r.sum(0),
            })
    p["bn1.running_mean"], p["bn1.running_var"] = run_mean, run_var
    return p


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-o", "--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "build"))
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    xtr, ytr, xte, yte = split()
    for name, x, y in (("train", xtr, ytr), ("test", xte, yte)):
        np.savez(os.path.join(args.out, name + ".npz"), x=x, y=y)
    mlp = train_mlp(xtr, ytr)
    cnn = train_cnn(xtr.reshape(-1, 1, 8, 8), ytr)
    acc = {
        "mlp": float((mlp_forward(mlp, xte)[2].argmax(1) == yte).mean()),
        "cnn": float((cnn_forward(cnn, xte.reshape(-1, 1, 8, 8))["out"].argmax(1) == yte).mean()),
    }
    for name, p in (("mlp", mlp), ("cnn", cnn)):
        np.savez(os.path.join(args.out, name + ".npz"), **{k: v.astype(np.float32) for k, v in p.items()})
    with open(os.path.join(args.out, "float.json"), "w") as f:
        json.dump(acc, f, indent=2)
    print(f"float test accuracy over {len(yte)} samples: mlp {100 * acc['mlp']:.2f} %, cnn {100 * acc['cnn']:.2f} %")


if __name__ == "__main__":
    main()
