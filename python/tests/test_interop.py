"""Archives of the Python package and of the command-line tools are the same format."""

from __future__ import annotations

import json
import os
import struct
import subprocess

import numpy as np
import pytest

import alcm
from conftest import torch_or_skip

BIN = os.environ.get("ALCM_BIN_DIR", os.path.join(os.path.dirname(__file__), "..", "..",
                                                  "build", "bin"))


def tool(name):
    path = os.path.join(BIN, name)
    if not os.access(path, os.X_OK):
        pytest.skip(f"{name} not built in {BIN}")
    return path


def test_tools_read_what_python_writes(tmp):
    rng = np.random.default_rng(2)
    t = {"w": rng.normal(size=(40, 30)).astype(np.float32), "i": np.arange(7, dtype=np.int16)}
    alcm.save("p.alcm", {**t, "tied": t["w"]}, metadata={"format": "pt"})
    r = subprocess.run([tool("alcm-inspect"), "--verify", "p.alcm"], capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stderr
    subprocess.run([tool("alcm-unpack"), "p.alcm", "-o", "p.npz"], check=True,
                   capture_output=True)
    with np.load("p.npz") as z:
        for k, v in t.items():
            assert z[k].tobytes() == v.tobytes()


def test_python_reads_what_the_tools_write(tmp):
    rng = np.random.default_rng(3)
    t = {"a": rng.normal(size=(64, 64)).astype(np.float64), "b": np.arange(9, dtype=np.uint8)}
    np.savez("in.npz", **t)
    subprocess.run([tool("alcm-pack"), "in.npz", "-o", "t.alcm", "-q"], check=True)
    subprocess.run([tool("alcm-pack"), "in.npz", "-o", "l.alcm", "-q", "--max-error", "1e-3"],
                   check=True)
    back = alcm.load("t.alcm")
    for k, v in t.items():
        assert back[k].tobytes() == v.tobytes()
    with alcm.open("l.alcm") as a:
        assert a.info("a").mode == "max_error"
        assert np.abs(a["a"] - t["a"]).max() <= 1e-3
    # The same tensors and options decode to the same values from Python as from the tool.
    alcm.save("py.alcm", t, max_error=1e-3)
    with alcm.open("py.alcm") as a, alcm.open("l.alcm") as b:
        for k in t:
            assert a[k].tobytes() == b[k].tobytes()


def test_ratio_plans_as_the_tool_does(tmp):
    # save(ratio=) is alcm-pack --ratio step for step (alcm/_budget.py): the same bound and the
    # same bytes for every tensor, across the tensor sizes the samples treat apart: coded whole
    # (under 4096 values), none (4096 to 8192: the 8192-value tensor below took a sixteenth
    # sample in Python only, bound 1.08e-3 against the tool's 8.38e-4), a quarter for the slope
    # (8193 to 65535) and a sixteenth (65536 and more).
    rng = np.random.default_rng(5)
    t = {"small": rng.normal(size=300) * 0.1, "none": rng.normal(size=(64, 128)) * 0.01,
         "mid": rng.normal(size=(128, 96)) * 0.02, "big": rng.normal(size=(256, 512)) * 0.02,
         "grid": np.round(rng.normal(size=(96, 100)) * 40) / 2048}
    t["big"][rng.random(256) < 0.35] = 0  # dead units' rows: sampled in their share
    t["mid"][::3] = -0.0  # -0.0 is as dead
    t = {k: v.astype(np.float32) for k, v in t.items()}
    np.savez("in.npz", **t)
    # ratio 6 keeps the first attempt; ratio 16 the second, planned again from the first
    # one's measured sizes, which include the metadata: alcm-pack's (producer, source
    # format) pads to 64 bytes more than save()'s, which moves the bounds by under 1%
    for ratio, attempts, rel in ((6, 1, 1e-12), (16, 2, 1e-2)):
        r = subprocess.run([tool("alcm-pack"), "-v", "-f", "--ratio", str(ratio), "in.npz",
                            "-o", "c.alcm"], check=True, capture_output=True, text=True)
        assert r.stderr.count("budget, attempt") == attempts, r.stderr
        alcm.save("p.alcm", t, ratio=ratio, overwrite=True)
        with alcm.open("c.alcm") as c, alcm.open("p.alcm") as p:
            for k in t:
                # the bounds to the last bits or so: C and numpy sum in different orders
                assert p.info(k).bound == pytest.approx(c.info(k).bound, rel=rel), (ratio, k)
                if attempts == 1:
                    assert p.info(k).stored_bytes == c.info(k).stored_bytes, (ratio, k)


def test_ratio_plans_near_lossless_as_the_tool_does(tmp):
    # Near lossless (tests/cli_budget_uniform.sh): bounds below the pointwise filters' profiled
    # steps, one bound for every tensor in place of the plan (budget_guard); save() plans as
    # alcm-pack does, and both come within 4 times the squared error of one bound's archive
    # of no more bytes: 3.7 times by alcm-budget-bench's comparison, 42.5 before.
    rng = np.random.default_rng(3)
    t = {}
    for k in range(6):
        cols = 0.004 * 2 ** rng.uniform(-1, 1, 128)
        mins = rng.uniform(-0.5, -0.2, 128) * cols * 128
        t[f"b{k}/pw"] = (rng.integers(0, 256, (1, 1, 64, 128)) * cols + mins).astype(np.float32)
        t[f"b{k}/dw"] = rng.normal(0, 0.1, (3, 3, 64, 1)).astype(np.float32)
        t[f"b{k}/bias"] = rng.normal(0, 3e-8, 128).astype(np.float32)
        t[f"b{k}/conv"] = rng.normal(0, 0.01, (3, 3, 32, 64)).astype(np.float32)
    np.savez("in.npz", **t)
    ratio = 1.7
    r = subprocess.run([tool("alcm-pack"), "-v", "-f", "--ratio", str(ratio), "in.npz", "-o",
                        "c.alcm"], check=True, capture_output=True, text=True)
    assert "one bound for all" in r.stderr, r.stderr
    alcm.save("p.alcm", t, ratio=ratio, overwrite=True)
    raw = sum(v.nbytes for v in t.values())

    def sse(path):
        with alcm.open(path) as a:
            return sum(float(((a[k].astype(np.float64) - v) ** 2).sum()) for k, v in t.items())

    with alcm.open("c.alcm") as c, alcm.open("p.alcm") as p:
        for k in t:
            # several attempts: the metadata's padding moves the bounds by under 1%
            assert p.info(k).bound == pytest.approx(c.info(k).bound, rel=1e-2), k
    for path in ("c.alcm", "p.alcm"):
        size = os.path.getsize(path)
        assert abs(size - raw / ratio) <= 0.03 * raw / ratio, (path, size)
        # one bound for all at no more bytes: the finest such bound, by bisection
        lo, hi = 1e-12, 1e-3
        for _ in range(30):
            mid = (lo * hi) ** 0.5
            alcm.save("u.alcm", t, max_error=mid, overwrite=True)
            lo, hi = (mid, hi) if os.path.getsize("u.alcm") > size else (lo, mid)
        alcm.save("u.alcm", t, max_error=hi, overwrite=True)
        assert sse(path) <= 4 * sse("u.alcm"), path


def test_ratio_plans_bfloat16_as_the_tool_does(tmp):
    # A small bfloat16 network whose linear1 weights are mostly far under the bounds of high
    # ratios (3% of them large): their samples' squared error falls less than 2^0.5-fold over
    # the octave below the bound (EQUAL_ALPHA_MIN), so no local slope moves their bounds.
    # save() of the torch tensors and alcm-pack of the same .safetensors plan alike.
    torch = torch_or_skip()
    import alcm.torch
    rng = np.random.default_rng(7)
    sd = {"embed.weight": rng.normal(0, 0.3, (64, 8)), "embed.bias": rng.normal(0, 0.05, 64)}
    for layer in range(2):
        p = f"enc.{layer}."
        sd[p + "attn.in_proj.weight"] = rng.normal(0, 0.1, (192, 64))
        sd[p + "attn.in_proj.bias"] = rng.normal(0, 0.01, 192)
        sd[p + "attn.out_proj.weight"] = rng.normal(0, 0.1, (64, 64))
        w = rng.normal(0, 0.01, (256, 64))
        big = rng.random((256, 64)) < 0.03
        w[big] = rng.normal(0, 0.3, big.sum())
        sd[p + "linear1.weight"] = w
        sd[p + "linear1.bias"] = rng.normal(0, 0.02, 256)
        sd[p + "linear2.weight"] = rng.normal(0, 0.05, (64, 256))
        sd[p + "norm1.weight"] = rng.normal(1, 0.1, 64)
    sd["head.weight"] = rng.normal(0, 0.2, (10, 64))
    sd = {k: torch.from_numpy(np.asarray(v, np.float32)).to(torch.bfloat16) for k, v in sd.items()}
    # the .safetensors the tool reads: bfloat16 bytes as torch holds them
    header, blobs, off = {}, [], 0
    for k, v in sd.items():
        b = v.view(torch.int16).numpy().tobytes()
        header[k] = {"dtype": "BF16", "shape": list(v.shape), "data_offsets": [off, off + len(b)]}
        off += len(b)
        blobs.append(b)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open("in.safetensors", "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))
    for ratio in (8, 12, 16):
        subprocess.run([tool("alcm-pack"), "-q", "-f", "--ratio", str(ratio), "in.safetensors",
                        "-o", "c.alcm"], check=True)
        alcm.torch.save("p.alcm", sd, ratio=ratio, overwrite=True)
        with alcm.open("c.alcm") as c, alcm.open("p.alcm") as p:
            for k in sd:
                assert p.info(k).bound == pytest.approx(c.info(k).bound, rel=1e-12), (ratio, k)
                assert p.info(k).stored_bytes == c.info(k).stored_bytes, (ratio, k)
