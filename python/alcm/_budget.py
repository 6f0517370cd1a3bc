"""``save(size=)`` and ``save(ratio=)``: a max-error bound per tensor that fits a byte budget.

The search of ``alcm-pack --size`` (tools/alcm-pack.c: budget_predict_plan, budget_calibrate,
budget_next_u, pack_budget), step for step. Bounds from the predictor's rates (the equal
slope of alcm_budget_solve, a quarter of the way in log to one common bound, then moved
together so that the predicted size is the budget), one attempt. If it misses the budget by more than 3%, each
tensor's predicted curve is shifted by what it really took and the plan made again. If that
misses too, the plan's bounds are moved together, bracketing the budget between measured
attempts (interpolated in log bound / log size), at most 8 attempts in all, stopping when the
bounds would repeat an attempt's within 0.1%; the lossless archive is tried early when the
correction still falls short of a budget over a third of the raw size. The archive kept is
the attempt with the least squared error among those no more than 3% over the budget, or the
lossless archive if it is that small and the lossy one is over a third of the raw size or not
within 3% of the budget. As in alcm-pack, the attempt kept is encoded again when it was not
the last (an attempt's Packer is dropped when the next starts). Before the first attempt, a
sixteenth of each tensor of at least 65536 values (64 runs spread over it), and half of that, is
coded at its planned bound, and the estimate of its size replaces the predicted rate
(budget_sample_calibrate), the plan then made again; where that moved a tensor's bound by
half an octave or more its sample is coded again, up to 3 rounds in all. Each sample is also
coded at half the bound: a tensor that grew by under a quarter of the predicted rate over
that octave has reached what its values hold, and its curve below is flattened as measured
(budget_saturate). The squared error of the sample is measured at the bound and at half of
it: after each plan, the sampled tensors' bounds move (at most an octave from where their
samples were coded) to where the squared error saved per byte is the same for all of them,
their bytes kept at the measured rise per octave (budget_equalise; samples that fall more than
2^4-fold over the octave, values once quantized on a grid the half bound meets, or (but a
whole small tensor) less than 2^0.5-fold, a bound over most of the values, are left alone; a
sample of a tensor of 65536 values or more, coded again after its bound moved half an octave
or more, moves back at most halfway to where it was coded before). Samples of a tensor
whose last axis has 16 values or more are whole rows of it, coded as (runs, rows, last
axis) so that per-channel classes apply as in the tensor; other tensors of 2 dimensions or
more with 16 entries or more in axis 0 keep a quarter, each run within one entry of axis 0
(a matrix's at the same place in each), coded both flat and as (runs, values), the smaller
kept. A lossy tensor of fewer than 4096
values is its own sample, coded whole in its shape at its bound (no half) and at half of it
(its squared error per byte: it takes part in budget_equalise); one of 4096 to 8192 values has
no sample (its predicted curve and the plan's bound stay); of a lossy tensor of 8193 to
65535 values a quarter (the same runs) is coded at its bound and half of it, for its squared
error per byte only (its predicted curve stays), and after the sample rounds up to 3 more
code only these and the whole small tensors whose bound moved by half an octave, the last
plan moving them under half an octave (SLOPE_NEAR) from where they were coded (the 8193 to
65535 ones only before a measured attempt: after it, their sample's slope moved the second
attempt of torch's transformer weights --ratio 16 8% over and 8 attempts followed). Equalise
only when the
budget is within reach (the predicted size at the finest steps over it).
A sample's bytes are its section's and half the alignment (not the padding before it, which
depends on the sample before), in a writer raised to format 1.1 before the first (a tensor's
steps at the end of its QDAT whichever sample came first: alcm-pack codes the samples on
several threads, each with its own writer).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from . import _core, _errors

FIT = 0.03  # an archive within 3% of the target fits
LOSSLESS_PROBE = 3  # a fitting lossy archive over raw / 3: try lossless too (as alcm-pack)
STEPS = 41  # ALCM_BUDGET_STEPS
TRIES = 8  # BUDGET_TRIES
SAMPLE_MIN = 65536  # alcm-pack.c's SAMPLE_MIN, SAMPLE_WHOLE, SAMPLE_MAX, SAMPLE_RUNS
SAMPLE_WHOLE = 4096
SAMPLE_MAX = 1 << 18
SAMPLE_RUNS = 64
SAMPLE_ROUNDS = 3  # SAMPLE_ROUNDS, SAMPLE_COLS, SAMPLE_FLAT_SHARE, SECTION_ALIGN
SAMPLE_COLS = 16
SAMPLE_FLAT_SHARE = 4
SAMPLE_SLOPE_SHARE = 4  # SAMPLE_SLOPE_SHARE, SLOPE_ROUNDS, SLOPE_NEAR
SLOPE_ROUNDS = 3
SLOPE_NEAR = 0.49
SLOPE_MIN = 8192  # alcm-pack.c's SLOPE_MIN: tensors of more values only
SECTION_ALIGN = 64
EQUAL_ALPHA_MIN = 0.5  # alcm-pack.c's EQUAL_ALPHA_MIN, EQUAL_ALPHA_MAX, EQUAL_MOVE_MAX
EQUAL_ALPHA_MAX = 4.0
EQUAL_MOVE_MAX = 1.0
BUDGET_BELOW = 8.0  # alcm-pack.c's BUDGET_BELOW, UNIFORM_SUSPECT
UNIFORM_SUSPECT = 4.0


def _sample(a: Any, share: int = 16) -> Any:
    """As budget_sample_take: SAMPLE_RUNS runs spread over the values, a sixteenth of them;
    whole rows of the last axis, shaped (runs, rows, last axis), when it has SAMPLE_COLS
    values or more and a run holds two rows. Otherwise, for a tensor of 2 dimensions or more
    with SAMPLE_COLS entries or more in axis 0, a quarter (SAMPLE_FLAT_SHARE), each run
    within one entry of axis 0 (a matrix's shorter than its rows at the same place in each,
    the rows spread evenly), shaped (runs, values): coded both as it is and flat
    (budget_sample_calibrate keeps the smaller). A tensor under SAMPLE_MIN values keeps
    a quarter (`share` SAMPLE_SLOPE_SHARE) instead of a sixteenth. As sample_order: where
    some entries of axis 0 (SAMPLE_COLS or more) are all zeros and some not, the runs are
    spread over the live entries then the dead ones (all +0.0 or -0.0), each kind in its
    share."""
    flat = a.reshape(-1)
    if a.ndim >= 2 and a.shape[0] >= SAMPLE_COLS:
        rows = np.ascontiguousarray(a).reshape(a.shape[0], -1)
        u = rows.view(np.dtype(f"<u{a.itemsize}"))  # the bits, less the sign
        dead = ~(u & ~np.array(1 << (8 * a.itemsize - 1), u.dtype)).astype(bool).any(axis=1)
        if 0 < dead.sum() < a.shape[0]:
            flat = np.concatenate([rows[~dead], rows[dead]]).reshape(-1)
    n = flat.size
    run = min(n // share, SAMPLE_MAX) // SAMPLE_RUNS
    cols = a.shape[-1] if a.ndim >= 2 else 1
    sl = 0
    if cols >= SAMPLE_COLS and run >= 2 * cols:
        run -= run % cols
    else:
        cols = 1
        r4 = min(n // SAMPLE_FLAT_SHARE, SAMPLE_MAX) // SAMPLE_RUNS
        if a.ndim >= 2 and a.shape[0] >= SAMPLE_COLS and r4 >= 2 and n // a.shape[0] >= r4:
            run, sl = r4, n // a.shape[0]
    at = [k * ((n - run) // (SAMPLE_RUNS - 1)) for k in range(SAMPLE_RUNS)]
    at = [x - x % cols for x in at]
    if sl and a.ndim == 2 and run < sl:  # a matrix's columns in place, the rows spread
        rows = n // sl
        nb = (SAMPLE_RUNS + rows - 1) // rows
        at = []
        for k in range(SAMPLE_RUNS):
            blk = k % nb
            cnt = (SAMPLE_RUNS - blk + nb - 1) // nb
            at.append((k // nb * (rows - 1) // (cnt - 1) if cnt > 1 else 0) * sl + blk * run)
    elif sl:
        at = [x + sl - x % sl - run if x % sl + run > sl else x for x in at]
    s = np.ascontiguousarray(np.concatenate([flat[x:x + run] for x in at]))
    if sl:
        return s.reshape(SAMPLE_RUNS, run)
    return s.reshape(SAMPLE_RUNS, run // cols, cols) if cols > 1 else s


def _half(s: Any, two: bool = True) -> Any:
    """As budget_sample_code's half: the first half of each run (in whole rows) of a 3-D
    sample, every other value of each run of a 2-D one coded as (runs, values) (`two`), every
    other run of a 1-D one (or of a 2-D one coded flat)."""
    if s.ndim == 3:
        return np.ascontiguousarray(s[:, :s.shape[1] // 2, :])
    if s.ndim == 2 and two:
        return np.ascontiguousarray(s[:, 0:2 * (s.shape[1] // 2):2])
    s = s.reshape(-1)
    run = s.size // SAMPLE_RUNS
    return np.ascontiguousarray(np.concatenate(
        [s[k * run:(k + 1) * run] for k in range(0, SAMPLE_RUNS, 2)]))


def _saturate(p: list, x0: float, got: float, want: float) -> None:
    """As budget_saturate: a tensor that grew by `got` bits per value over the octave of
    steps below x0, under a quarter of the `want` predicted, rises by `got` per octave below
    x0 (no more than predicted); the curve stays monotone."""
    if not (got < 0.25 * want and want >= 0.1):
        return
    steps, bits = p[3], list(p[4])
    d = got - want
    rise = [bits[k] - bits[k + 1] for k in range(STEPS - 1)]
    for k in range(STEPS):
        t = min(max(math.log2(x0 / steps[k]), -1.0), 1.0)
        bits[k] = max(0.0, bits[k] + d * t)
    for k in range(STEPS - 2, -1, -1):
        if steps[k] < x0 / 2 * 0.999:
            bits[k] = bits[k + 1] + min(rise[k], max(got, 0.0) / 2)
    for k in range(1, STEPS):
        if bits[k] > bits[k - 1]:
            bits[k] = bits[k - 1]
    p[4] = tuple(bits)


# C's exp2 (Python 3.11+), to the last bit: 2.0 ** x can differ by one unit in the last place.
_exp2 = getattr(math, "exp2", lambda x: 2.0 ** x)


def _overhead(n: int, names: int) -> float:
    """Bytes besides the tensors' sections (metadata, directory with the names, table): an
    estimate for the first attempt (alcm-pack.c: overhead_bytes); the measured size replaces
    it."""
    return 650.0 + 84.0 * n + 0.2 * names


def _predicted_at(p: list, step: float) -> float:
    """Predicted bytes of profile p at quantization step `step` (rates interpolated linearly
    in log step)."""
    elements, lossy, _var, steps, bits, fixed = p
    if not lossy:
        return fixed
    x = 2 * math.log2(step / steps[0])
    if x < 0:  # below the profiled steps (alcm-pack.c: BUDGET_BELOW)
        b = min(bits[0] - x * max(bits[0] - bits[1], 0.0), max(8 * fixed / elements, bits[0]))
    elif not x > 0:
        b = bits[0]
    elif x >= STEPS - 1:
        b = bits[STEPS - 1]
    else:
        k = int(x)
        b = bits[k] + (x - k) * (bits[k + 1] - bits[k])
    return elements * b / 8


def _floor(p: list) -> float:
    """The least bound of profile p (alcm-pack.c: bound_floor)."""
    return p[3][0] / 2 * _exp2(-BUDGET_BELOW)


def _model_sse(profs: list, bounds: list[float]) -> float:
    """Squared error of `bounds` by the plan's distortion model (alcm-pack.c:
    budget_model_sse): step^2 / 12 a value, at most the tensor's variance."""
    d = 0.0
    for p, x in zip(profs, bounds):
        if x > 0:
            d += p[0] * min(x * x / 3, p[2])
    return d


class _Search:
    def __init__(self, job: Any, target: float) -> None:
        self.job, self.target = job, target
        self.profs = [list(_core.budget_profile(it.array, it.code, float(it.array.nbytes)))
                      for it in job.items]
        self.lossy = any(p[1] for p in self.profs)
        self.nq = float(sum(p[0] for p in self.profs if p[1]))
        self.raw = float(sum(it.array.nbytes for it in job.items))
        self.shape = [0.0] * len(self.profs)
        self.packer: Any = None  # the last attempt, not committed
        self.reps: list = []
        self.sampled: dict[int, float] = {}  # tensor: the bound its sample was last coded at
        self.prev: dict[int, float] = {}  # tensor: the bound its sample was coded at before
        # tensor: (squared error saved per byte over the octave below that bound, log2 of the
        # squared error there over that at half of it, bits per value more at the half)
        self.slope: dict[int, tuple[float, float, float]] = {}
        self.mid: set[int] = set()  # tensors of over SLOPE_MIN, under SAMPLE_MIN values, sampled
        self.near = 0.0  # octaves the tensors under SAMPLE_MIN values may move, or 0
        self.calibrated = False  # the plan is made from a measured attempt

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

    def moved(self, i: int, u: float) -> float:
        """Bound i of the plan moved by 2^u, within the profiled steps."""
        if not self.shape[i] > 0:
            return 0.0
        steps = self.profs[i][3]
        return min(max(self.shape[i] * _exp2(u), _floor(self.profs[i])), steps[STEPS - 1] / 2)

    def predicted_moved(self, u: float) -> float:
        return sum(_predicted_at(p, 2 * self.moved(i, u)) if self.shape[i] > 0 else p[5]
                   for i, p in enumerate(self.profs))

    def predict_plan(self, budget: float) -> float:
        """As budget_predict_plan: each bound a quarter of the way from equal slope to one common
        bound, all moved so the predicted size is the budget; returns the predicted bytes."""
        _fits, shape, _pred = _core.budget_solve([tuple(p) for p in self.profs],
                                                 max(budget, 1.0), [1.0] * len(self.profs))
        # A quarter of the way (in log) from equal slope to one common bound (alcm-pack.c:
        # budget_predict_plan says why).
        w = sum(p[0] for p, x in zip(self.profs, shape) if x > 0)
        m = sum(p[0] * math.log2(x) for p, x in zip(self.profs, shape) if x > 0) / w if w else 0
        self.shape = [_exp2(0.75 * math.log2(x) + 0.25 * m) if x > 0 else 0.0 for x in shape]
        # within each tensor's bounds before the common move (as budget_predict_plan)
        self.shape = [self.moved(i, 0.0) for i in range(len(self.profs))]
        lo, hi = -20.0, 20.0
        for _ in range(80):
            mid = (lo + hi) / 2
            if self.predicted_moved(mid) > budget:
                lo = mid
            else:
                hi = mid
        self.shape = [self.moved(i, hi) for i in range(len(self.profs))]
        if self.predicted_moved(-20.0) > budget:  # else every bound is at its finest
            self.equalise()
        return self.guard(budget, self.predicted_moved(0))

    def guard(self, budget: float, predicted: float) -> float:
        """As budget_guard: one bound for every quantized tensor in place of the plan when the
        plan's squared error by the distortion model is UNIFORM_SUSPECT times that bound's at
        the same predicted bytes."""
        live = [i for i, x in enumerate(self.shape) if x > 0]
        if not live:
            return predicted
        lo = min(_floor(self.profs[i]) for i in live)
        hi = max(self.profs[i][3][STEPS - 1] / 2 for i in live)
        if not hi > 0:
            return predicted

        def at(i: int, e: float) -> float:  # as uniform_at: within tensor i's bounds
            return min(max(e, _floor(self.profs[i])), self.profs[i][3][STEPS - 1] / 2) \
                if self.shape[i] > 0 else 0.0

        def size(e: float) -> float:
            return sum(_predicted_at(p, 2 * at(i, e)) if self.shape[i] > 0 else p[5]
                       for i, p in enumerate(self.profs))

        if size(lo) <= budget or size(hi) >= budget:
            return predicted  # beyond reach at every bound
        lg, hg = math.log(lo), math.log(hi)
        for _ in range(60):
            mid = (lg + hg) / 2
            if size(math.exp(mid)) > budget:
                lg = mid
            else:
                hg = mid
        e = math.exp(hg)
        one = [at(i, e) for i in range(len(self.profs))]
        if _model_sse(self.profs, self.shape) > UNIFORM_SUSPECT * _model_sse(self.profs, one):
            self.shape = one
            predicted = self.predicted_moved(0)
        return predicted

    def equalise(self) -> None:
        """As budget_equalise: the sampled tensors' bounds where their measured squared error
        per byte is the same, each at most EQUAL_MOVE_MAX octaves from where its sample was
        coded, their bytes (at the measured rise per octave) as planned."""
        ins = [i for i, (lam, alpha, rise) in self.slope.items()
               if self.shape[i] > 0 and lam > 0 and alpha <= EQUAL_ALPHA_MAX and rise > 0
               and (alpha >= EQUAL_ALPHA_MIN or self.profs[i][0] < SAMPLE_WHOLE)
               and (i not in self.mid or (not self.calibrated and abs(
                   math.log2(self.shape[i] / self.sampled[i])) <= EQUAL_MOVE_MAX))]
        if not ins:
            return

        def bound(i: int, c: float) -> float:
            lam, alpha, _rise = self.slope[i]
            d = (c - math.log2(lam)) / max(alpha, 0.25)
            m = self.near if self.near > 0 and self.profs[i][0] < SAMPLE_MIN else EQUAL_MOVE_MAX
            lo, hi = -m, m
            if self.profs[i][0] >= SAMPLE_MIN and self.prev.get(i, 0.0) > 0:
                # not back beyond halfway to where it was coded before (budget_equal_bound)
                back = math.log2(self.prev[i] / self.sampled[i])
                if back <= -0.5:
                    lo = max(lo, back / 2)
                elif back >= 0.5:
                    hi = min(hi, back / 2)
            return self.sampled[i] * _exp2(min(max(d, lo), hi))

        lo = min(math.log2(self.slope[i][0]) for i in ins) - 64
        hi = max(math.log2(self.slope[i][0]) for i in ins) + 64
        for _ in range(80):
            mid = (lo + hi) / 2
            got = 0.0
            for i in ins:
                got -= self.profs[i][0] * self.slope[i][2] * math.log2(bound(i, mid) /
                                                                       self.shape[i])
            if got > 0:
                lo = mid
            else:
                hi = mid
        for i in ins:
            self.shape[i] = bound(i, hi)

    def sample_calibrate(self, bounds: list[float], slope_only: bool = False) -> int:
        """As budget_sample_calibrate: each large tensor's sample, and half of it, coded at
        its bound (unless it was coded within half an octave of it); the size estimated from
        the two shifts its predicted curve; the sample at half the bound finds saturation.
        A tensor of over SLOPE_MIN and under SAMPLE_MIN values has a quarter sample coded at
        its bound and half of it, for its squared error per byte only (its predicted curve
        stays). With `slope_only`, only those and the whole small tensors are coded.
        Returns how many samples were coded."""
        pk = _core.Packer(None, False, mode=0, threads=self.job.threads)
        # As budget_sample_worker: the writer at format 1.1 from the start, so that a small
        # tensor's steps are in its QDAT (no SCAL section) whichever sample came first.
        pk.require_minor(1)
        coded = 0
        pos = [pk.committed_size() - 48]  # the header's bytes (a multiple of 64)

        sq = [0.0]

        def code(name: str, x: Any, dtype: int, bound: float, measure: bool = False) -> float:
            """As budget_sample_code: the section's bytes and half the alignment (and with
            `measure`, its squared error into sq[0])."""
            pad = -pos[0] % SECTION_ALIGN
            r = pk.add(name.encode(), x, dtype, mode=1, bound=bound, measure=measure)
            stored = int(r[1])
            if measure:
                sq[0] = float(r[9])
            pos[0] += stored
            return float(stored - pad + SECTION_ALIGN // 2)

        try:
            for i, (it, p) in enumerate(zip(self.job.items, self.profs)):
                whole = 0 < p[0] < SAMPLE_WHOLE
                mid = SLOPE_MIN < p[0] < SAMPLE_MIN
                if not p[1] or not p[0] > 0 or not bounds[i] > 0 \
                        or (slope_only and not whole and not mid) \
                        or SAMPLE_WHOLE <= p[0] <= SLOPE_MIN:  # as budget_sample_take: none
                    continue
                at = self.sampled.get(i, 0.0)
                if at > 0 and abs(math.log2(bounds[i] / at)) < 0.5:
                    continue
                self.prev[i] = at
                self.sampled[i] = bounds[i]
                if whole:  # the whole tensor in its own shape: its size, not an estimate
                    got0 = code(f"sample{i}/0/0/{bounds[i]!r}", it.array, it.code, bounds[i],
                                True)
                    sse = sq[0]
                    off = 8 * (got0 - _predicted_at(p, 2 * bounds[i])) / p[0]
                    p[4] = tuple(max(0.0, b + off) for b in p[4])
                    # and at half the bound, for its squared error per byte (equalise)
                    fine1 = code(f"sample{i}/0/0/{bounds[i] / 2!r}", it.array, it.code,
                                 bounds[i] / 2, True)
                    fine = sq[0]
                    lam = (sse - fine) / (fine1 - got0) \
                        if fine1 > got0 and sse > fine and fine > 0 else 0.0
                    self.slope[i] = (lam, math.log2(sse / fine) if lam > 0 else 0.0,
                                     8 * (fine1 - got0) / p[0])
                    coded += 1
                    continue
                smp = _sample(it.array, SAMPLE_SLOPE_SHARE if mid else 16)
                two = smp.ndim == 2
                flat = smp.reshape(-1) if two else smp
                all1 = code(f"sample{i}/0/0/{bounds[i]!r}", flat, it.code, bounds[i], True)
                sse = sq[0]
                if two:
                    all2 = code(f"sample{i}/0/1/{bounds[i]!r}", smp, it.code, bounds[i], True)
                    two = all2 < all1
                    if two:
                        sse = sq[0]
                if not two:
                    smp = flat
                if mid:  # squared error per byte only: its predicted curve stays
                    all0 = all2 if two else all1
                    fine1 = code(f"sample{i}/0/{int(two)}/{bounds[i] / 2!r}", smp, it.code,
                                 bounds[i] / 2, True)
                    fine = sq[0]
                    lam = (sse - fine) / (fine1 - all0) \
                        if fine1 > all0 and sse > fine and fine > 0 else 0.0
                    self.slope[i] = (lam, math.log2(sse / fine) if lam > 0 else 0.0,
                                     8 * (fine1 - all0) / smp.size)
                    self.mid.add(i)
                    coded += 1
                    continue
                half = _half(smp if two else flat, two)
                got = [all2 if two else all1,
                       code(f"sample{i}/1/{int(two)}/{bounds[i]!r}", half, it.code, bounds[i]),
                       code(f"sample{i}/0/{int(two)}/{bounds[i] / 2!r}", smp, it.code,
                            bounds[i] / 2, True)]
                fine = sq[0]
                lam = (sse - fine) / (got[2] - got[0]) \
                    if got[2] > got[0] and sse > fine and fine > 0 else 0.0
                self.slope[i] = (lam, math.log2(sse / fine) if lam > 0 else 0.0,
                                 8 * (got[2] - got[0]) / smp.size)
                rate = max(0.0, 8 * (got[0] - got[1]) / (smp.size - half.size))
                est = (8 * got[0] + rate * (p[0] - smp.size)) / p[0]
                off = est - 8 * _predicted_at(p, 2 * bounds[i]) / p[0]
                p[4] = tuple(max(0.0, b + off) for b in p[4])
                _saturate(p, 2 * bounds[i], 8 * (got[2] - got[0]) / smp.size,
                          8 * (_predicted_at(p, bounds[i]) - _predicted_at(p, 2 * bounds[i]))
                          / p[0])
                coded += 1
        finally:
            pk.close()
        return coded

    def calibrate(self, bounds: list[float], actual: list[float]) -> None:
        self.calibrated = True
        for i, p in enumerate(self.profs):
            if not p[1] or not bounds[i] > 0:
                p[5] = actual[i]
                continue
            off = 8 * (actual[i] - _predicted_at(p, 2 * bounds[i])) / p[0]
            p[4] = tuple(max(0.0, b + off) for b in p[4])

    def u_of(self, bounds: list[float]) -> float:
        s = w = 0.0
        for i, p in enumerate(self.profs):
            if self.shape[i] > 0 and bounds[i] > 0:
                s += p[0] * math.log2(bounds[i] / self.shape[i])
                w += p[0]
        return s / w if w > 0 else 0.0

    def next_u(self, tries: list[dict], want: float) -> float | None:
        """As budget_next_u: the next attempt along the plan, or None."""
        if not want > 0:
            return None
        yt = math.log(want)
        over = [t for t in tries if t["tensors"] > want]
        under = [t for t in tries if t["tensors"] <= want]
        lo = max(over, key=lambda t: t["u"]) if over else None
        hi = min(under, key=lambda t: t["u"]) if under else None
        if lo is not None and hi is not None and lo["u"] < hi["u"]:
            ylo, yhi = math.log(max(lo["tensors"], 1)), math.log(max(hi["tensors"], 1))
            f = (ylo - yt) / (ylo - yhi) if ylo > yhi else 0.5
            f = min(max(f, 0.05), 0.95)
            if len(tries) >= 2 and (tries[-1]["tensors"] > want) == (tries[-2]["tensors"] > want):
                f = (f + 0.5) / 2
            u = lo["u"] + f * (hi["u"] - lo["u"])
        else:
            p = tries[-1] if lo is not None and hi is not None else lo if lo is not None else hi
            side = p["tensors"] > want
            same = [t for t in tries if t is not p and (t["tensors"] > want) == side
                    and abs(t["u"] - p["u"]) > 1e-3]
            yp = math.log(max(p["tensors"], 1))
            if same:
                q = min(same, key=lambda t: abs(t["u"] - p["u"]))
                s = (yp - math.log(max(q["tensors"], 1))) / (p["u"] - q["u"])
                # flatter than a quarter of the curves' own slope there: not a size that
                # stopped moving (alcm-pack.c: budget_next_u)
                sm = (math.log(max(self.predicted_moved(p["u"] + 0.25), 1))
                      - math.log(max(self.predicted_moved(p["u"] - 0.25), 1))) / 0.5
                if sm < 0 and not s < 0.25 * sm:
                    s = sm
                du = (yt - yp) / min(s, -0.02)  # flat or rising: a long step
            else:
                du = (p["tensors"] - want) * 8 / max(self.nq, 1.0)
            u = p["u"] + min(max(du, -8.0), 8.0)
        umin, umax = math.inf, -math.inf
        for i, pr in enumerate(self.profs):
            if self.shape[i] > 0:
                umin = min(umin, math.log2(_floor(pr) / self.shape[i]))
                umax = max(umax, math.log2(pr[3][STEPS - 1] / 2 / self.shape[i]))
        u = min(max(u, umin), umax)
        if any(abs(u - t["u"]) < 1e-3 for t in tries):
            return None
        return u


def _seen(tries: list[dict], x: list[float]) -> bool:
    """As budget_seen: bounds within 0.1% of an earlier attempt's."""
    return any(all(a == b or abs(math.log2(a / b)) < 1.5e-3 for a, b in zip(x, t["bounds"]))
               for t in tries)


def pack(job: Any, target: float) -> tuple[Any, list]:
    """Encodes `job` to fit `target` bytes; returns the uncommitted Packer and the tensor
    reports, or raises :class:`alcm.BoundError` naming the closest size reached."""
    s = _Search(job, target)
    n = len(s.profs)
    over = _overhead(n, sum(len(it.name) for it in job.items))
    tries: list[dict] = []
    lossless = None
    last_is_lossless = False
    try:
        while len(tries) < TRIES:
            if len(tries) < 2:
                if len(tries) == 1:
                    s.calibrate(tries[0]["bounds"], tries[0]["actual"])
                    over = tries[0]["got"] - tries[0]["tensors"]
                s.predict_plan(target - over)
                bounds = list(s.shape)
                for _ in range(SAMPLE_ROUNDS if not tries and s.lossy else 0):
                    if not s.sample_calibrate(bounds):
                        break
                    s.predict_plan(target - over)
                    bounds = list(s.shape)
                # then the tensors under SAMPLE_MIN values only, while their bounds move
                for r in range(SLOPE_ROUNDS if not tries and s.lossy else 0):
                    if not s.sample_calibrate(bounds, True):
                        break
                    # the last: their sizes as measured, within half an octave
                    s.near = SLOPE_NEAR if r + 1 == SLOPE_ROUNDS else 0.0
                    s.predict_plan(target - over)
                    s.near = 0.0
                    bounds = list(s.shape)
            if len(tries) >= 2 and lossless is None and tries[-1]["got"] < target \
                    and tries[-1]["got"] * LOSSLESS_PROBE >= s.raw:
                lossless, _, _ = s.encode([0.0] * n)
                last_is_lossless = True
                if lossless <= target * (1 + FIT):
                    break
            if len(tries) >= 2 or _seen(tries, bounds):
                for t in tries:
                    t["u"] = s.u_of(t["bounds"])
                u = s.next_u(tries, target - over)
                if u is None:
                    break
                bounds = [s.moved(i, u) for i in range(n)]
                if _seen(tries, bounds):
                    break
            got, sse, actual = s.encode(bounds)
            last_is_lossless = False
            tries.append({"bounds": bounds, "got": got, "sse": sse, "actual": actual,
                          "tensors": sum(actual), "u": 0.0, "reps": s.reps})
            if s.fits(got) or not s.lossy:
                break
            over = got - sum(actual)
        ok = [t for t in tries if t["got"] <= target * (1 + FIT)]
        keep = min(ok, key=lambda t: t["sse"]) if ok else None
        if s.lossy and lossless is None and (keep is None or keep["got"] * LOSSLESS_PROBE >= s.raw
                                             or not s.fits(keep["got"])):
            # The lossless archive may be as small (regular data can code smaller lossless
            # than lossy), and then it is kept: no error.
            lossless, _, _ = s.encode([0.0] * n)
            last_is_lossless = True
        if lossless is not None and lossless <= target * (1 + FIT):
            if not last_is_lossless:
                s.encode([0.0] * n)
            pk, s.packer = s.packer, None
            return pk, s.reps
        if keep is None:
            closest = min([t["got"] for t in tries] + ([lossless] if lossless else []))
            path = job.path or "<memory>"
            raise _errors.make(_errors.BoundError,
                               f"cannot fit '{path}' in {target:.0f} bytes: the closest "
                               f"attempt took {closest:.0f}", path=job.path)
        if last_is_lossless or s.reps is not keep["reps"]:
            s.encode(keep["bounds"])
        pk, s.packer = s.packer, None
        return pk, s.reps
    finally:
        if s.packer is not None:
            s.packer.close()
