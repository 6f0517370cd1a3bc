#!/usr/bin/python3
"""Real checkpoint series for alcm-series-bench: small networks trained on scikit-learn's digits.

Trains a small CNN (two 3x3 convolutions, then a dense layer of --width units; 1.08M
parameters, 4.3 MB in float32) or an MLP on the 1,797 8x8 digit images that Debian's python3-sklearn
ships (sklearn.datasets.load_digits reads them from the package: no download) with PyTorch
(Debian's python3-torch), and saves the model's parameters every --every optimizer steps as
OUT/ckpt_NNNNNN.safetensors (NNNNNN = the step), in float32 or bfloat16. Deterministic for a
seed (one thread, torch.use_deterministic_algorithms).

With --finetune BASE.safetensors it loads that checkpoint, fine-tunes it on a subset of the
data (the digits 0 to 4, --subset) at a lower rate, and saves only the last state as
OUT/finetune.safetensors (and the base, copied, as OUT/base.safetensors).

    /usr/bin/python3 tools/bench/series_train.py OUT [--model cnn|mlp] [--opt adam|sgd]
        [--lr 1e-3] [--steps 2000] [--every 100] [--dtype float32|bfloat16] [--seed 0]
        [--width 1024]
        [--finetune BASE.safetensors --ft-steps 300 --ft-lr 1e-4]

Needs python3-torch, python3-numpy and python3-sklearn (apt-get install python3-torch
python3-sklearn). The safetensors files are written here (header JSON, then the tensors in
order): Debian 12 has no safetensors package.
"""
import argparse
import json
import os
import struct
import sys

import numpy as np

try:
    import torch
    from torch import nn
    from sklearn.datasets import load_digits
except ImportError as e:
    sys.exit("series_train.py: %s: apt-get install python3-torch python3-sklearn" % e)

DTYPES = {"float32": (torch.float32, "F32"), "bfloat16": (torch.bfloat16, "BF16")}


def save_safetensors(path, tensors):
    """tensors: list of (name, torch tensor), written in that order."""
    header, blobs, off = {}, [], 0
    for name, t in tensors:
        t = t.detach().contiguous().cpu()
        if t.dtype == torch.bfloat16:
            raw, code = t.view(torch.int16).numpy().tobytes(), "BF16"
        else:
            raw, code = t.to(torch.float32).numpy().tobytes(), "F32"
        header[name] = {"dtype": code, "shape": list(t.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)


def load_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, d in header.items():
        if name == "__metadata__":
            continue
        a, b = d["data_offsets"]
        if d["dtype"] == "BF16":
            t = torch.from_numpy(np.frombuffer(data[a:b], dtype=np.int16).copy()).view(torch.bfloat16)
        else:
            t = torch.from_numpy(np.frombuffer(data[a:b], dtype=np.float32).copy())
        out[name] = t.reshape(d["shape"]).to(torch.float32)
    return out


def make_model(kind, width):
    if kind == "cnn":
        return nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(64 * 4 * 4, width), nn.ReLU(), nn.Linear(width, 10))
    return nn.Sequential(nn.Flatten(), nn.Linear(64, width), nn.ReLU(), nn.Linear(width, width),
                         nn.ReLU(), nn.Linear(width, 10))


def batches(x, y, bs, gen):
    while True:
        perm = torch.randperm(len(x), generator=gen)
        for i in range(0, len(x) - bs + 1, bs):
            j = perm[i:i + bs]
            yield x[j], y[j]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out")
    ap.add_argument("--model", choices=("cnn", "mlp"), default="cnn")
    ap.add_argument("--width", type=int, default=1024,
                    help="units of the hidden dense layer(s) (default 1024: 1.08M parameters)")
    ap.add_argument("--opt", choices=("adam", "sgd"), default="adam")
    ap.add_argument("--lr", type=float, default=None, help="default 1e-3 (adam), 0.05 (sgd)")
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--every", type=int, default=100)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--dtype", choices=tuple(DTYPES), default="float32")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--bf16-out", metavar="DIR",
                    help="also save each checkpoint in bfloat16 into DIR (the same run)")
    ap.add_argument("--finetune", metavar="BASE")
    ap.add_argument("--ft-steps", type=int, default=300)
    ap.add_argument("--ft-lr", type=float, default=1e-4)
    ap.add_argument("--subset", type=int, default=5, help="fine-tune on the digits < this")
    a = ap.parse_args()
    if a.steps < 1 or a.every < 1 or a.batch < 1:
        sys.exit("series_train.py: --steps, --every and --batch must be positive")
    os.makedirs(a.out, exist_ok=True)
    torch.manual_seed(a.seed)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    gen = torch.Generator().manual_seed(a.seed)

    d = load_digits()
    x = torch.tensor(d.data / 16.0, dtype=torch.float32).reshape(-1, 1, 8, 8)
    y = torch.tensor(d.target, dtype=torch.long)
    model = make_model(a.model, a.width)
    dt = DTYPES[a.dtype][0]

    if a.bf16_out:
        os.makedirs(a.bf16_out, exist_ok=True)

    def snapshot(path):
        save_safetensors(path, [(k, v.to(dt)) for k, v in model.state_dict().items()])
        if a.bf16_out:
            save_safetensors(os.path.join(a.bf16_out, os.path.basename(path)),
                             [(k, v.to(torch.bfloat16)) for k, v in model.state_dict().items()])

    if a.finetune:
        base = load_safetensors(a.finetune)
        model.load_state_dict(base)
        snapshot(os.path.join(a.out, "base.safetensors"))
        keep = y < a.subset
        x, y = x[keep], y[keep]
        steps, lr = a.ft_steps, a.ft_lr
    else:
        steps = a.steps
        lr = a.lr if a.lr is not None else (1e-3 if a.opt == "adam" else 0.05)
    opt = (torch.optim.Adam(model.parameters(), lr=lr) if a.opt == "adam"
           else torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9))
    loss_fn = nn.CrossEntropyLoss()
    it = batches(x, y, a.batch, gen)
    if not a.finetune:
        snapshot(os.path.join(a.out, "ckpt_%06d.safetensors" % 0))
    for step in range(1, steps + 1):
        xb, yb = next(it)
        opt.zero_grad()
        loss = loss_fn(model(xb), yb)
        loss.backward()
        opt.step()
        if not a.finetune and step % a.every == 0:
            snapshot(os.path.join(a.out, "ckpt_%06d.safetensors" % step))
            with torch.no_grad():
                acc = (model(x).argmax(1) == y).float().mean().item()
            print("step %5d  loss %.4f  accuracy %.3f" % (step, loss.item(), acc))
    if a.finetune:
        snapshot(os.path.join(a.out, "finetune.safetensors"))
        with torch.no_grad():
            acc = (model(x).argmax(1) == y).float().mean().item()
        print("fine-tune: %d steps, accuracy on the subset %.3f" % (steps, acc))


if __name__ == "__main__":
    main()
