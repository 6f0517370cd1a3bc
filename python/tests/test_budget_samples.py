"""save(ratio=): the samples of large tensors that correct the plan before the first attempt
(alcm/_budget.py, as alcm-pack's budget_sample_take and budget_sample_calibrate)."""

from __future__ import annotations

import math
import os
import random

import numpy as np

import alcm
from alcm import _budget


def test_sample_runs_spread_over_the_tensor():
    a = np.arange(65536 * 3, dtype=np.float32)
    s = _budget._sample(a)
    n, run = a.size, a.size // 16 // _budget.SAMPLE_RUNS
    assert s.size == run * _budget.SAMPLE_RUNS
    assert s[0] == 0  # the first run starts at the first value
    at = (n - run) // (_budget.SAMPLE_RUNS - 1)
    assert s[-1] == (_budget.SAMPLE_RUNS - 1) * at + run - 1
    assert s[-1] >= n - _budget.SAMPLE_RUNS  # the last run ends near the last value
    assert np.all(np.diff(s[:run]) == 1)  # runs of contiguous values


def test_ratio_with_large_tensors_fits(tmp_path):
    rng = np.random.default_rng(3)
    t = {"a": (rng.standard_normal((512, 512)) * 0.02).astype(np.float32),
         "b": (rng.laplace(size=(256, 1024)) * 0.01).astype(np.float32),
         "c": rng.standard_normal(3000).astype(np.float32)}
    raw = sum(v.nbytes for v in t.values())
    for r in (6, 12):
        p = tmp_path / f"r{r}.alcm"
        alcm.save(p, t, ratio=r)
        got = os.path.getsize(p)
        assert abs(got - raw / r) <= 0.03 * raw / r
        back = alcm.load(p)
        assert all(np.max(np.abs(back[k] - t[k])) < 0.1 for k in t)


def _quantized_weights():
    """Weights once quantized to 8 bits with a scale per output channel (the last axis), as
    faceapi's, and normal ones: tests/cli_budget_saturate.sh's input, made with numpy."""
    rng = np.random.default_rng(7)
    cols = (0.0005 * 2 ** rng.uniform(-1, 1, 256)).astype(np.float32)
    q = np.clip(np.round(rng.normal(0, 25, (3, 3, 256, 256))), -127, 127).astype(np.float32)
    return {"conv": q * cols, "fc": (rng.normal(0, 0.02, (256, 512))).astype(np.float32)}


def test_sample_rows_of_a_wide_last_axis():
    t = _quantized_weights()
    s = _budget._sample(t["conv"])
    assert s.shape == (_budget.SAMPLE_RUNS, 2, 256)  # runs of 576 values cut to 2 rows
    assert _budget._half(s).shape == (_budget.SAMPLE_RUNS, 1, 256)
    flat = t["conv"].reshape(-1)
    at = (flat.size - 512) // (_budget.SAMPLE_RUNS - 1)
    assert np.array_equal(s[5].reshape(-1), flat[5 * at - 5 * at % 256:][:512])
    assert _budget._sample(np.zeros((9, 65536 // 9 + 1, 3), np.float32)).ndim == 1  # 3 < 16
    # nor is axis 0 of 9 entries a channel axis for 2-D samples
    assert _budget._sample(np.zeros((16, 65536 // 16 + 1, 3), np.float32)).ndim == 2


def test_ratio_near_lossless_takes_one_attempt(tmp_path, monkeypatch):
    # Near lossless the quantized weights stop growing at finer bounds while the predictor
    # says 0.1 to 0.4 bit per value per octave: the samples at half the bound see it, and
    # one attempt fits (bad1c23: two at --ratio 8, the first 3.8% under).
    t = _quantized_weights()
    raw = sum(v.nbytes for v in t.values())
    calls = []
    enc = _budget._Search.encode
    monkeypatch.setattr(_budget._Search, "encode",
                        lambda self, b: calls.append(1) or enc(self, b))
    for r in (4, 8):
        calls.clear()
        p = tmp_path / f"r{r}.alcm"
        alcm.save(p, t, ratio=r)
        assert abs(os.path.getsize(p) - raw / r) <= 0.03 * raw / r
        assert len(calls) == 1, f"ratio {r}: {len(calls)} attempts"


def _gradients():
    """Gradients of a fully connected layer and a convolution with channels of very different
    scales, a third of the rows zero (dead units): tests/cli_budget_flat.sh's input, value
    for value (Python's random, seed 11)."""
    rnd = random.Random(11)

    def scales(n, dead):
        return [0.0 if rnd.random() < dead else 1e-5 * 2 ** rnd.uniform(-3, 3) for _ in range(n)]
    ro, co = scales(256, 0.35), scales(512, 0.25)
    fc = [ro[i] * co[j] * rnd.gauss(0, 1) for i in range(256) for j in range(512)]
    out, inn = scales(128, 0.2), scales(64, 0.1)
    conv = [out[o] * inn[c] * rnd.gauss(0, 1) for o in range(128) for c in range(64)
            for _k in range(9)]
    return {"conv": np.array(conv, np.float32).reshape(128, 64, 3, 3),
            "fc": np.array(fc, np.float32).reshape(256, 512)}


def test_sample_of_long_rows_is_a_quarter_within_rows():
    t = _gradients()
    s = _budget._sample(t["fc"])  # runs of 128 values would be a quarter of a row: 1-D before
    assert s.shape == (_budget.SAMPLE_RUNS, 512)  # a quarter, runs of one whole row each
    rows = t["fc"]
    assert all(any(np.array_equal(r, x) for x in rows) for r in s[:3])
    c = _budget._sample(t["conv"])
    assert c.shape == (_budget.SAMPLE_RUNS, 128 * 64 * 9 // 4 // _budget.SAMPLE_RUNS)
    ch = t["conv"].reshape(128, -1)  # its dead channels (all zeros) after the live ones
    dead = ~ch.any(axis=1)
    assert 0 < dead.sum() < 128
    flat, per = np.concatenate([ch[~dead], ch[dead]]).reshape(-1), 64 * 9
    for k, r in enumerate(c):  # each run within one output channel
        at = k * ((flat.size - c.shape[1]) // (_budget.SAMPLE_RUNS - 1))
        if at % per + c.shape[1] > per:
            at += per - at % per - c.shape[1]
        assert np.array_equal(r, flat[at:at + c.shape[1]])
        assert at // per == (at + c.shape[1] - 1) // per
    assert _budget._half(c).shape == (_budget.SAMPLE_RUNS, c.shape[1] // 2)  # every other value
    assert np.array_equal(_budget._half(c)[3], c[3, 0:2 * (c.shape[1] // 2):2])
    assert _budget._half(c, False).size == c.size // 2  # coded flat: every other run
    assert _budget._sample(np.zeros(65536 * 3, np.float32)).ndim == 1  # 1-D tensors as before


def test_ratio_on_gradients_takes_one_attempt(tmp_path, monkeypatch):
    # c75c6db: the samples of these tensors were 1-D, without the classes per channel that the
    # whole tensors get; the first attempt landed 14% to 30% under and 2 to 5 followed.
    t = _gradients()
    raw = sum(v.nbytes for v in t.values())
    calls = []
    enc = _budget._Search.encode
    monkeypatch.setattr(_budget._Search, "encode",
                        lambda self, b: calls.append(1) or enc(self, b))
    tries = 0
    for r in (4, 8, 12, 16):  # one correction at most; as cli_budget_flat.sh, 5 in all
        calls.clear()
        p = tmp_path / f"r{r}.alcm"
        alcm.save(p, t, ratio=r)
        assert abs(os.path.getsize(p) - raw / r) <= 0.03 * raw / r
        assert len(calls) <= 2, f"ratio {r}: {len(calls)} attempts"
        tries += len(calls)
    assert tries <= 5


def _small_tensors():
    """A checkpoint of many tensors under 4096 values (biases, norms, small heads: faceapi
    has 287 tensors under 64K values) next to one large one."""
    rng = np.random.default_rng(7)
    t = {}
    for i in range(48):
        n = int(rng.integers(256, 4000))
        kind = i % 3
        if kind == 0:
            a = rng.standard_normal(n) * 0.05
        elif kind == 1:
            a = rng.laplace(size=n) * 0.01
        else:
            a = np.round(rng.standard_normal(n) * 8) / 256  # values once quantized
        t[f"small{i:02d}"] = a.astype(np.float32)
    t["big"] = (rng.standard_normal((256, 512)) * 0.02).astype(np.float32)
    return t


def test_small_tensors_are_planned_at_their_coded_size(tmp_path, monkeypatch):
    # A tensor under SAMPLE_WHOLE values is coded whole at its planned bound before the first
    # attempt, so the plan knows its size there: the predictor alone was 60% over on faceapi's
    # tensors under 4096 values at --ratio 6 (PRED version 3), which with its 6% over on the
    # unsampled tensors of 4K to 64K values put the first attempt 3.4% under the budget.
    t = _small_tensors()
    seen = []
    enc = _budget._Search.encode

    def spy(self, b):
        pred = [_budget._predicted_at(p, 2 * b[i]) if p[1] and b[i] > 0 else None
                for i, p in enumerate(self.profs)]
        got = enc(self, b)
        seen.append((pred, got[2], [p[0] for p in self.profs]))
        return got
    monkeypatch.setattr(_budget._Search, "encode", spy)
    alcm.save(tmp_path / "r6.alcm", t, ratio=6)
    pred, actual, elems = seen[0]  # the first attempt
    small = [i for i, n in enumerate(elems) if n < 4096 and pred[i] is not None]
    assert len(small) == 48
    for i in small:  # the section's bytes: as coded alone, but for where its padding falls
        assert abs(pred[i] - actual[i]) <= 0.02 * actual[i] + _budget.SECTION_ALIGN, \
            f"tensor {i}: predicted {pred[i]:.0f} bytes, took {actual[i]:.0f}"


def test_small_tensors_join_the_equal_slope(tmp_path, monkeypatch):
    # A tensor under SAMPLE_WHOLE values is also coded at half its bound, so that its squared
    # error per byte is measured and budget_equalise moves its bound with the large tensors'
    # (before, only tensors of SAMPLE_MIN values or more had a slope: faceapi --ratio 6 had
    # 1.6 times the squared error at the same bytes, its 236 small tensors left at the plan's
    # bounds).
    t = _small_tensors()
    slopes = []
    enc = _budget._Search.encode

    def spy(self, b):
        slopes.append(dict(self.slope))
        return enc(self, b)
    monkeypatch.setattr(_budget._Search, "encode", spy)
    alcm.save(tmp_path / "r6.alcm", t, ratio=6)
    names = list(t)
    small = [i for i, k in enumerate(names) if k.startswith("small")]
    measured = [i for i in small if i in slopes[0]]
    assert len(measured) == len(small), f"{len(measured)} of {len(small)} small tensors"
    # squared error saved per byte (none where values once quantized took no more bytes)
    assert sum(slopes[0][i][0] > 0 for i in small) >= len(small) // 2


def _low_rate_mix():
    """Heavy-tailed convolution weights (Student's t, 2 degrees of freedom: most values small,
    a few large), normal ones, and a gradient with a third of its rows zero: at --ratio 12 the
    first two are coded at about a bit per value and the third at two."""
    rng = np.random.default_rng(2)
    g = rng.standard_normal((256, 512)) * 1e-3
    g[rng.random(256) < 0.35] = 0
    return {"heavy": (rng.standard_t(2, (3, 3, 128, 128)) * 0.002).astype(np.float32),
            "gauss": (rng.standard_normal((3, 3, 128, 128)) * 0.01).astype(np.float32),
            "grad": g.astype(np.float32)}


def _sq_error(path, t):
    back = alcm.load(path)
    return sum(float(((back[k].astype(np.float64) - t[k]) ** 2).sum()) for k in t)


def test_ratio_error_no_worse_than_one_common_bound(tmp_path):
    # The plan's bounds from the predicted rates and step^2 / 12 per value put the squared
    # error 37% over that of one common bound at the same bytes here (0.2048 against 0.1491;
    # on faceapi --ratio 16, 9 KB on a [3, 3, 256, 256] convolution left 79% of its variance
    # as error). The samples' measured squared error per byte now moves those bounds.
    t = _low_rate_mix()
    p = tmp_path / "r12.alcm"
    alcm.save(p, t, ratio=12)
    size, sse = os.path.getsize(p), _sq_error(p, t)
    lo, hi = 1e-5, 1e-1  # the finest common bound that fits in as many bytes
    q = tmp_path / "common.alcm"
    for _ in range(24):
        e = math.sqrt(lo * hi)
        alcm.save(q, t, max_error=e, overwrite=True)
        if os.path.getsize(q) > size:
            lo = e
        else:
            hi = e
    alcm.save(q, t, max_error=hi, overwrite=True)
    assert os.path.getsize(q) <= size
    assert sse <= 1.05 * _sq_error(q, t), f"{sse:.4g} at {size} bytes"


def _mid_tensors():
    """faceapi-like: convolutions of 8K to 64K values ([3, 3, 64, 64]: 36,864), values once
    quantized and not, next to small biases and one large tensor."""
    rng = np.random.default_rng(11)
    t = {}
    for i in range(6):
        w = rng.standard_normal((3, 3, 64, 64)) * 0.02
        if i % 2:
            w = np.round(w * 2048) / 2048
        t[f"conv{i}"] = w.astype(np.float32)
        t[f"bias{i}"] = (rng.standard_normal(64) * 0.1).astype(np.float32)
    # a transformer's [256, 64] and [192, 64] gradients: 16,384 and 12,288 values
    t["conv_ff"] = (rng.standard_normal((256, 64)) * 0.01).astype(np.float32)
    t["conv_qkv"] = (rng.standard_normal((192, 64)) * 0.03).astype(np.float32)
    t["big"] = (rng.standard_normal((256, 512)) * 0.02).astype(np.float32)
    return t


def test_mid_size_tensors_join_the_equal_slope(tmp_path, monkeypatch):
    # A tensor of over SLOPE_MIN, under SAMPLE_MIN values has a quarter of it coded at its bound and
    # at half of it before the first attempt: its squared error per byte is measured and
    # budget_equalise moves its bound with the others'. Before, it kept the predictor's plan:
    # just under full precision faceapi's [3, 3, 64, 64] filters were bound at ~2e-7 against
    # 1171e16's ~7e-7 (8.6 KB more for 6e-9 less squared error) while 256-value biases were
    # starved, and --size 4600000 had 3.9e-7 squared error (now 1.2e-7). Tensors of 8K to 16K
    # values too: a transformer's [256, 64] gradient kept a plan 3x coarser than 1171e16's.
    t = _mid_tensors()
    seen = []
    enc = _budget._Search.encode

    def spy(self, b):
        seen.append((dict(self.slope), dict(self.sampled), list(b)))
        return enc(self, b)
    monkeypatch.setattr(_budget._Search, "encode", spy)
    alcm.save(tmp_path / "r6.alcm", t, ratio=6)
    slope, sampled, bounds = seen[0]
    names = list(t)
    mid = [i for i, k in enumerate(names) if k.startswith("conv")]
    assert all(i in slope for i in mid), [names[i] for i in mid if i not in slope]
    # planned where measured: within SLOPE_NEAR octave of where each was last coded
    for i in mid:
        assert abs(math.log2(bounds[i] / sampled[i])) <= _budget.SLOPE_NEAR + 1e-9, names[i]
    assert len(seen) == 1  # one attempt
