#!/usr/bin/python3
"""A network trained here, for alcm-entropy-bench: a small CNN on scikit-learn's digits.

Trains conv(1->32) conv(32->64) pool conv(64->128) pool fc(512->256) fc(256->10), ReLU, with
SGD (momentum 0.9, weight decay 5e-4, batch 64) on the 1,797 8x8 digit images that Debian's
python3-sklearn ships (no download), on one CPU thread with deterministic algorithms, and
writes two float32 .safetensors files in PyTorch layouts (output channels on axis 0):

    OUT/digits_cnn_weights.safetensors   the trained parameters
    OUT/digits_cnn_grads.safetensors     the full-batch gradient of the loss at the end

Same bytes for the same seed and torch version (checked with torch 1.13 of Debian 12).

    /usr/bin/python3 tools/bench/digits_cnn.py OUT [--epochs 40] [--seed 0]

Needs python3-torch and python3-sklearn (apt-get install python3-torch python3-sklearn).
"""
import argparse
import json
import os
import struct
import sys

try:
    import numpy as np
    import torch
    from sklearn.datasets import load_digits
except ImportError as e:
    sys.exit("digits_cnn.py: %s: apt-get install python3-torch python3-sklearn" % e)


def write_safetensors(path, tensors):
    """tensors: [(name, float32 numpy array)]; writes atomically."""
    header, blobs, off = {}, [], 0
    for name, a in tensors:
        b = np.ascontiguousarray(a, dtype="<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    header["__metadata__"] = {"producer": "tools/bench/digits_cnn.py"}
    h = json.dumps(header, separators=(",", ":"), sort_keys=True).encode()
    h += b" " * (-len(h) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))
    os.replace(tmp, path)


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(1, 32, 3, padding=1)
        self.conv2 = torch.nn.Conv2d(32, 64, 3, padding=1)
        self.conv3 = torch.nn.Conv2d(64, 128, 3, padding=1)
        self.fc1 = torch.nn.Linear(512, 256)
        self.fc2 = torch.nn.Linear(256, 10)

    def forward(self, x):
        r, pool = torch.relu, torch.nn.functional.max_pool2d
        x = r(self.conv1(x))
        x = pool(r(self.conv2(x)), 2)
        x = pool(r(self.conv3(x)), 2)
        return self.fc2(r(self.fc1(x.flatten(1))))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out")
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    if a.epochs < 1:
        sys.exit("digits_cnn.py: --epochs must be positive")
    os.makedirs(a.out, exist_ok=True)
    torch.manual_seed(a.seed)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)

    d = load_digits()
    x = torch.tensor(d.data / 16.0, dtype=torch.float32).reshape(-1, 1, 8, 8)
    y = torch.tensor(d.target, dtype=torch.int64)
    net = Net()
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    loss_fn = torch.nn.CrossEntropyLoss()
    g = torch.Generator().manual_seed(a.seed)
    for epoch in range(a.epochs):
        perm = torch.randperm(len(x), generator=g)
        for i in range(0, len(x), 64):
            idx = perm[i:i + 64]
            opt.zero_grad()
            loss_fn(net(x[idx]), y[idx]).backward()
            opt.step()
        with torch.no_grad():
            out = net(x)
            acc = (out.argmax(1) == y).float().mean().item()
            print("epoch %2d  loss %.4f  train accuracy %.3f" % (epoch, loss_fn(out, y).item(), acc))
    opt.zero_grad()
    loss_fn(net(x), y).backward()
    params = list(net.named_parameters())
    write_safetensors(os.path.join(a.out, "digits_cnn_weights.safetensors"),
                      [(n, p.detach().numpy()) for n, p in params])
    write_safetensors(os.path.join(a.out, "digits_cnn_grads.safetensors"),
                      [(n, p.grad.numpy()) for n, p in params])


if __name__ == "__main__":
    main()
