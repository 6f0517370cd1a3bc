"""``save(size=)`` and ``save(ratio=)``: a max-error bound per tensor that fits a byte budget.

The search of ``alcm-pack --size`` (tools/alcm-pack.c: budget_plan, pack_budget): two plans,
equal slope from the predictor's rates (alcm_budget_solve) and one bound for every tensor,
each calibrated against the sizes measured (at most 4 attempts), then the best bounds scaled
by 1% either way; the archive kept is the candidate that fits (within 3%) with the least
squared error corrected to the target size. Unlike alcm-pack, every attempt is a candidate
(not only each plan's last), at no extra cost; and when every attempt comes out under the
target, the archive kept is the lossless one if it fits, else the attempt under the target
with the least squared error (alcm-pack refuses such a budget). As in alcm-pack, a fitting
lossy archive larger than a third of the raw size is compared with the lossless one, which
is kept if it fits.
"""

from __future__ import annotations

import math
from typing import Any

from . import _core, _errors

FIT = 0.03  # an archive within 3% of the target fits
LOSSLESS_PROBE = 3  # a fitting lossy archive over raw / 3: try lossless too (as alcm-pack)
STEPS = 41  # ALCM_BUDGET_STEPS


def _overhead(n: int) -> float:
    """Bytes besides the tensors' sections (metadata, predictor, directory, table): an
    estimate; the measured size decides."""
    return 2300.0 + 330.0 * n


def _predicted_at(p: list, step: float, scale: float) -> float:
    """Predicted bytes of profile p at quantization step `step` (rates interpolated linearly
    in log step), times its calibration scale."""
    elements, lossy, _var, steps, bits, fixed = p
    if not lossy:
        return fixed
    x = 2 * math.log2(step / steps[0])
    if not x > 0:
        b = bits[0]
    elif x >= STEPS - 1:
        b = bits[STEPS - 1]
    else:
        k = int(x)
        b = bits[k] + (x - k) * (bits[k + 1] - bits[k])
    return elements * b * scale / 8


def _solve_uniform(profs: list[list], scale: list[float], budget: float) -> list[float]:
    """One bound for every float tensor such that the predicted size meets `budget`."""
    lo, hi = math.inf, 0.0
    for p in profs:
        if p[1]:
            lo, hi = min(lo, p[3][0]), max(hi, p[3][STEPS - 1])
    for _ in range(100):
        if not hi / lo > 1 + 1e-9:
            break
        mid = math.sqrt(lo * hi)
        total = sum(_predicted_at(p, mid, s) for p, s in zip(profs, scale))
        if total > budget:
            lo = mid
        else:
            hi = mid
    return [hi / 2 if p[1] else 0.0 for p in profs]


class _Search:
    def __init__(self, job: Any, target: float) -> None:
        self.job, self.target = job, target
        self.profs = [list(_core.budget_profile(it.array, it.code, float(it.array.nbytes)))
                      for it in job.items]
        self.lossy = any(p[1] for p in self.profs)
        self.nq = max(1.0, float(sum(p[0] for p in self.profs if p[1])))
        self.raw = float(sum(it.array.nbytes for it in job.items))
        self.packer: Any = None  # the last attempt, not committed
        self.reps: list = []
        self.best: dict | None = None
        self.cands: list[tuple[list[float], float, float]] = []  # (bounds, size, sq. error)
        self.last_is_best = True

    def encode(self, bounds: list[float]) -> tuple[float, float, list[float]]:
        """One attempt: (committed size, squared error, stored bytes per tensor)."""
        if self.packer is not None:
            self.packer.close()  # removes the earlier attempt's temporary file
            self.packer = None
        self.packer, self.reps = self.job.encode(bounds)
        got = float(self.packer.committed_size())
        return got, sum(r[9] for r in self.reps), [float(r[1]) for r in self.reps]

    def fits(self, got: float) -> bool:
        return abs(got - self.target) <= FIT * self.target

    def plan(self, uniform: bool) -> None:
        n = len(self.profs)
        over = _overhead(n)
        scale = [1.0] * n
        for _ in range(4):
            budget = max(1.0, self.target - over)
            if uniform:
                bounds = _solve_uniform(self.profs, scale, budget)
            else:
                # Predicted not to fit even at the coarsest steps: the bounds are those
                # steps, and the measured size decides.
                _fits, bounds, _pred = _core.budget_solve([tuple(p) for p in self.profs],
                                                          budget, scale)
            got, sse, actual = self.encode(bounds)
            self.offer(bounds, got, sse)
            if self.fits(got):
                break
            over = got - sum(actual)
            for i, p in enumerate(self.profs):
                if bounds[i] > 0 and actual[i] > 0:
                    pred = _predicted_at(p, 2 * bounds[i], scale[i])
                    if pred > 0:
                        scale[i] *= actual[i] / pred
                elif not p[1]:
                    p[5] = actual[i]

    def offer(self, bounds: list[float], got: float, sse: float) -> None:
        # At high rate each byte more over N quantized values divides the squared error by
        # 2^(16 / N): errors of archives a little off target compare as if both were on it.
        self.cands.append((list(bounds), got, sse))
        fits = self.fits(got)
        adj = sse * 2.0 ** (16 * (got - self.target) / self.nq)
        b = self.best
        better = b is None or (fits and not b["fits"]) or (
            fits == b["fits"] and (adj < b["adj"] if fits
                                   else abs(got - self.target) < abs(b["got"] - self.target)))
        self.last_is_best = better
        if better:
            self.best = {"bounds": list(bounds), "got": got, "adj": adj, "fits": fits}


def pack(job: Any, target: float) -> tuple[Any, list]:
    """Encodes `job` to fit `target` bytes; returns the uncommitted Packer and the tensor
    reports, or raises :class:`alcm.BoundError` naming the closest size reached."""
    s = _Search(job, target)
    try:
        for uniform in range(2 if s.lossy else 1):
            s.plan(bool(uniform))
        if s.lossy and s.best["fits"]:
            base = s.best["bounds"]
            for k in (1.01, 0.99):
                b = [x * k for x in base]
                got, sse, _ = s.encode(b)
                s.offer(b, got, sse)
        if s.lossy and s.best["fits"] and s.best["got"] * LOSSLESS_PROBE >= s.raw:
            # A budget near the raw size: the lossless archive may fit too, and then it is
            # kept (no error); regular data can code smaller lossless than lossy.
            got, _, _ = s.encode([0.0] * len(s.profs))
            if got <= s.target * (1 + FIT):
                pk, s.packer = s.packer, None
                return pk, s.reps
            s.last_is_best = False
        if not s.best["fits"] and s.best["got"] <= s.target:
            # Every attempt came out under the target: the tensors code smaller than the
            # budget asks (small or very regular tensors, where the fixed sections dominate).
            # Keep the least error under the target: lossless if it fits, else the attempt
            # with the smallest squared error.
            got, _, _ = s.encode([0.0] * len(s.profs))
            if got <= s.target * (1 + FIT):
                pk, s.packer = s.packer, None
                return pk, s.reps
            under = [c for c in s.cands if c[1] <= s.target]
            s.best = {"bounds": min(under, key=lambda c: c[2])[0], "fits": True}
            s.last_is_best = False
        if not s.best["fits"]:
            path = job.path or "<memory>"
            raise _errors.make(_errors.BoundError,
                               f"cannot fit '{path}' in {target:.0f} bytes: the closest "
                               f"attempt took {s.best['got']:.0f}", path=job.path)
        if not s.last_is_best:
            s.encode(s.best["bounds"])
        pk, s.packer = s.packer, None
        return pk, s.reps
    finally:
        if s.packer is not None:
            s.packer.close()
