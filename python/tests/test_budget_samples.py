"""save(ratio=): the samples of large tensors that correct the plan before the first attempt
(alcm/_budget.py, as alcm-pack's budget_sample_take and budget_sample_calibrate)."""

from __future__ import annotations

import os

import numpy as np

import alcm
from alcm import _budget


def test_sample_runs_spread_over_the_tensor():
    a = np.arange(65536 * 3, dtype=np.float32).reshape(3, 65536)
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
