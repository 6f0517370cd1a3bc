#!/usr/bin/python3
"""Real gradients for alcm-stream-bench: a small MLP trained on scikit-learn's digits.

Trains a 64-64-10 multilayer perceptron (tanh, softmax cross-entropy, full-batch gradient
descent with momentum) on the 1,797 8x8 digit images that Debian's python3-sklearn ships
(sklearn.datasets.load_digits reads them from the package; no download), and writes, for each
epoch, the gradients of the four parameter tensors as OUT/epoch_NNN.npz (uncompressed
numpy.savez; members W1, b1, W2, b2, float32). Deterministic for a seed.

It also writes OUT/savez_compressed.txt: for each epoch, the size numpy.savez_compressed gives
the same four arrays, so that alcm-stream-bench can check its in-process savez baseline against
numpy's own.

    /usr/bin/python3 tools/bench/digits_gradients.py OUT [--epochs 10] [--seed 0]

Needs python3-numpy and python3-sklearn (apt-get install python3-sklearn).
"""
import argparse
import io
import os
import sys

import numpy as np

try:
    from sklearn.datasets import load_digits
except ImportError:
    sys.exit("digits_gradients.py: scikit-learn is missing: apt-get install python3-sklearn")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--hidden", type=int, default=64)
    a = ap.parse_args()
    if a.epochs < 1 or a.hidden < 1:
        sys.exit("digits_gradients.py: --epochs and --hidden must be positive")
    os.makedirs(a.out, exist_ok=True)

    d = load_digits()
    x = (d.data / 16.0).astype(np.float64)          # 1797 x 64, pixels in [0, 1]
    y = np.eye(10)[d.target]                        # one-hot
    rng = np.random.default_rng(a.seed)
    w1 = rng.normal(0, 1 / np.sqrt(64), (64, a.hidden))
    b1 = np.zeros(a.hidden)
    w2 = rng.normal(0, 1 / np.sqrt(a.hidden), (a.hidden, 10))
    b2 = np.zeros(10)
    params = [w1, b1, w2, b2]
    vel = [np.zeros_like(p) for p in params]
    lr, mom = 0.5, 0.9
    sizes = []
    for epoch in range(a.epochs):
        h = np.tanh(x @ w1 + b1)
        z = h @ w2 + b2
        z -= z.max(axis=1, keepdims=True)
        p = np.exp(z)
        p /= p.sum(axis=1, keepdims=True)
        loss = -np.mean(np.sum(y * np.log(p + 1e-12), axis=1))
        acc = np.mean(p.argmax(axis=1) == d.target)
        dz = (p - y) / len(x)
        g = {"W2": h.T @ dz, "b2": dz.sum(axis=0)}
        dh = (dz @ w2.T) * (1 - h * h)
        g["W1"] = x.T @ dh
        g["b1"] = dh.sum(axis=0)
        grads = {k: g[k].astype(np.float32) for k in ("W1", "b1", "W2", "b2")}
        np.savez(os.path.join(a.out, "epoch_%03d.npz" % epoch), **grads)
        buf = io.BytesIO()
        np.savez_compressed(buf, **grads)
        sizes.append(len(buf.getvalue()))
        for i, k in enumerate(("W1", "b1", "W2", "b2")):
            vel[i] = mom * vel[i] - lr * g[k]
            params[i] += vel[i]
        print("epoch %2d  loss %.4f  train accuracy %.3f" % (epoch, loss, acc))
    with open(os.path.join(a.out, "savez_compressed.txt"), "w") as f:
        for e, s in enumerate(sizes):
            f.write("%d %d\n" % (e, s))


if __name__ == "__main__":
    main()
