#!/usr/bin/python3
"""Small networks trained here, for the entropy predictor's corpus (tools/bench/train_predictor.sh).

Trains three networks on scikit-learn's 1,797 8x8 digits (Debian's python3-sklearn, no
download), on one CPU thread with deterministic algorithms, with Adam and weight decay:

    mlp          64 -> 512 -> 256 -> 10, GELU
    cnn          conv(1->16) conv(16->48) conv(48->96) fc(96*4->128) fc(128->10), BatchNorm
    transformer  8 row tokens of 8 pixels -> width 64, 2 pre-norm encoder layers (4 heads,
                 feed-forward 256), mean pool, fc(64->10)

and writes, per network, its parameters and the full-batch gradient at the end, each in one
dtype (the mlp float32, the cnn float16, the transformer bfloat16: the dtypes checkpoints
ship in), as OUT/NAME_weights.safetensors and OUT/NAME_grads.safetensors.

With --extra, three other networks instead, which train_predictor.sh adds to the training
sets of both folds (none is a copy or a re-seed of a held-out network):

    deepmlp      scikit-learn's breast cancer data (569 x 30, standardised):
                 30 -> 256 -> 256 -> 128 -> 2, SiLU, float32
    gru          the digits as 8 rows of 8: GRU(8 -> 96), fc(96 -> 10), bfloat16
    convae       a convolutional autoencoder of the digits: conv(1->32, stride 2)
                 conv(32->64, stride 2) convT(64->32) convT(32->1), ReLU, MSE, float32

    /usr/bin/python3 tools/bench/torch_nets.py OUT [--epochs 30] [--seed 0] [--extra]

Same bytes for the same seed and torch version (torch 1.13 of Debian 12).
"""
import argparse
import json
import os
import struct
import sys

try:
    import numpy as np
    import torch
    from torch import nn
    from sklearn.datasets import load_digits
except ImportError as e:
    sys.exit("torch_nets.py: %s: apt-get install python3-torch python3-sklearn" % e)

DT = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16"}


def save(path, tensors, dtype):
    """Writes a .safetensors file (names sorted, no metadata) of tensors cast to dtype."""
    header, blobs, off = {}, [], 0
    for name in sorted(tensors):
        t = tensors[name].detach().to(dtype).contiguous()
        raw = t.view(torch.int16).numpy().tobytes() if dtype == torch.bfloat16 else \
            t.numpy().tobytes()
        header[name] = {"dtype": DT[dtype], "shape": list(t.shape),
                        "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))
    os.replace(tmp, path)


class Transformer(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Linear(8, 64)
        self.pos = nn.Parameter(torch.randn(8, 64) * 0.02)
        layer = nn.TransformerEncoderLayer(64, 4, 256, dropout=0.0, batch_first=True,
                                           norm_first=True)
        self.enc = nn.TransformerEncoder(layer, 2)
        self.head = nn.Linear(64, 10)

    def forward(self, x):
        h = self.embed(x.view(-1, 8, 8)) + self.pos
        return self.head(self.enc(h).mean(1))


class Gru(nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = nn.GRU(8, 96, batch_first=True)
        self.head = nn.Linear(96, 10)

    def forward(self, x):
        out, _ = self.rnn(x.view(-1, 8, 8))
        return self.head(out[:, -1])


def extra_nets():
    deep = nn.Sequential(nn.Linear(30, 256), nn.SiLU(), nn.Linear(256, 256), nn.SiLU(),
                         nn.Linear(256, 128), nn.SiLU(), nn.Linear(128, 2))
    ae = nn.Sequential(
        nn.Conv2d(1, 32, 3, stride=2, padding=1), nn.ReLU(),
        nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.ReLU(),
        nn.ConvTranspose2d(64, 32, 4, stride=2, padding=1), nn.ReLU(),
        nn.ConvTranspose2d(32, 1, 4, stride=2, padding=1))
    return [("deepmlp", deep, torch.float32), ("gru", Gru(), torch.bfloat16),
            ("convae", ae, torch.float32)]


def nets():
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(64, 512), nn.GELU(), nn.Linear(512, 256),
                        nn.GELU(), nn.Linear(256, 10))
    cnn = nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        nn.Conv2d(16, 48, 3, padding=1), nn.BatchNorm2d(48), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(48, 96, 3, padding=1), nn.BatchNorm2d(96), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(96 * 4, 128), nn.ReLU(), nn.Linear(128, 10))
    return [("mlp", mlp, torch.float32), ("cnn", cnn, torch.float16),
            ("transformer", Transformer(), torch.bfloat16)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--extra", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    d = load_digits()
    x = torch.tensor(d.data / 16.0, dtype=torch.float32).view(-1, 1, 8, 8)
    y = torch.tensor(d.target, dtype=torch.int64)
    os.makedirs(a.out, exist_ok=True)
    if a.extra:
        from sklearn.datasets import load_breast_cancer
        bc = load_breast_cancer()
        bx = (bc.data - bc.data.mean(0)) / bc.data.std(0)
        data = {"deepmlp": (torch.tensor(bx, dtype=torch.float32),
                            torch.tensor(bc.target, dtype=torch.int64)),
                "gru": (x, y), "convae": (x, x)}
    for name, net, dtype in (extra_nets() if a.extra else nets()):
        xs, ys = data[name] if a.extra else (x, y)
        loss = nn.functional.mse_loss if name == "convae" else nn.functional.cross_entropy
        torch.manual_seed(a.seed)
        for m in net.modules():  # fresh, seeded initialisation per network
            if hasattr(m, "reset_parameters"):
                m.reset_parameters()
        opt = torch.optim.AdamW(net.parameters(), lr=2e-3, weight_decay=1e-2)
        g = torch.Generator().manual_seed(a.seed)
        net.train()
        for _ in range(a.epochs):
            perm = torch.randperm(len(ys), generator=g)
            for i in range(0, len(ys), 64):
                idx = perm[i:i + 64]
                opt.zero_grad()
                loss(net(xs[idx]), ys[idx]).backward()
                opt.step()
        net.eval()
        with torch.no_grad():
            fit = loss(net(xs), ys).item()
        opt.zero_grad()
        loss(net(xs), ys).backward()
        params = dict(net.named_parameters())
        save(os.path.join(a.out, f"{name}_weights.safetensors"), params, dtype)
        save(os.path.join(a.out, f"{name}_grads.safetensors"),
             {k: p.grad for k, p in params.items()}, dtype)
        n = sum(p.numel() for p in params.values())
        print(f"{name}: {n} parameters, {str(dtype)[6:]}, training loss {fit:.4f}")


if __name__ == "__main__":
    main()
