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
