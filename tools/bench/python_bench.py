#!/usr/bin/env python3
"""Figures of the Python package (issue 13), printed as Markdown tables.

    PYTHONPATH=build/python /usr/bin/python3 tools/bench/python_bench.py [options]

1. Save and load MB/s of a real checkpoint (tools/bench/fetch_checkpoint.sh writes
   build/data/faceapi.safetensors) with alcm.save / alcm.load (one thread and all threads)
   against numpy.savez / numpy.load, numpy.savez_compressed, torch.save / torch.load and the
   safetensors format (the safetensors package if installed, else the small writer and
   reader below, which follow its format: 8-byte header length, JSON header, raw data).
   Every row runs once per round, one after the other, and the table gives medians, so a
   busy moment of the shared machine slows one round of every row. Files go to a tmpfs
   (/dev/shm) unless --tmp says otherwise: the figures are the cost of the formats, not of
   the disk (alcm fsyncs its output; the others do not).
2. The Python layer's overhead per call on a tiny tensor: alcm.compress + alcm.decompress
   against the same library calls made in C (alcm._core._bench_roundtrip).
3. Peak RSS of loading one tensor of a large archive, in a fresh process: it should be about
   the tensor's size, not the archive's.

MB = 10^6 bytes of raw tensor data. Targets print holds or misses; none is a unit test.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import struct
import subprocess
import sys
import tempfile
import time

import numpy as np

import alcm
from alcm import _core

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))

# ---- the safetensors format, for when the package is missing -------------------------------

_ST_DTYPES = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "I64": np.int64,
              "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_}
_ST_NAMES = {np.dtype(v): k for k, v in _ST_DTYPES.items()}


def st_read(path: str) -> dict[str, np.ndarray]:
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack_from("<Q", data, 0)
    header = json.loads(data[8:8 + n])
    base = 8 + n
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        lo, hi = e["data_offsets"]
        out[name] = np.frombuffer(data, _ST_DTYPES[e["dtype"]], (hi - lo) //
                                  np.dtype(_ST_DTYPES[e["dtype"]]).itemsize,
                                  base + lo).reshape(e["shape"])
    return out


def st_write(path: str, tensors: dict[str, np.ndarray]) -> None:
    header, off = {}, 0
    for name, a in tensors.items():
        header[name] = {"dtype": _ST_NAMES[a.dtype], "shape": list(a.shape),
                        "data_offsets": [off, off + a.nbytes]}
        off += a.nbytes
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h)
        for a in tensors.values():
            f.write(np.ascontiguousarray(a).data)


try:  # the real package, when present
    from safetensors.numpy import load_file as _st_load, save_file as _st_save  # type: ignore
    ST_IMPL = "safetensors package"

    def st_save(path, t):
        _st_save(t, path)

    def st_load(path):
        return _st_load(path)
except ImportError:
    ST_IMPL = "own writer/reader (package not installed)"
    st_save, st_load = st_write, st_read

try:
    import torch
except ImportError:  # pragma: no cover
    torch = None


# ---- 1. save and load MB/s ------------------------------------------------------------------

def rows(tmp: str, ncpu: int):
    p = lambda name: os.path.join(tmp, name)  # noqa: E731

    def alcm_save(threads, **kw):
        return lambda t: alcm.save(p("a.alcm"), t, threads=threads, overwrite=True, **kw)

    def alcm_load(threads):
        return lambda: alcm.load(p("a.alcm"), threads=threads)

    def npz_load(path):
        def f():
            with np.load(path) as z:
                return {k: z[k] for k in z.files}
        return f

    out = [
        ("alcm lossless, 1 thread", alcm_save(1), alcm_load(1), p("a.alcm")),
        (f"alcm lossless, {ncpu} threads", alcm_save(None), alcm_load(None), p("a.alcm")),
        ("alcm max-error 1e-3, 1 thread", alcm_save(1, max_error=1e-3), alcm_load(1),
         p("a.alcm")),
        (f"alcm max-error 1e-3, {ncpu} threads", alcm_save(None, max_error=1e-3),
         alcm_load(None), p("a.alcm")),
        ("numpy.savez / numpy.load", lambda t: np.savez(p("n.npz"), **t), npz_load(p("n.npz")),
         p("n.npz")),
        ("numpy.savez_compressed", lambda t: np.savez_compressed(p("c.npz"), **t),
         npz_load(p("c.npz")), p("c.npz")),
        (f"safetensors ({ST_IMPL})", lambda t: st_save(p("s.safetensors"), t),
         lambda: st_load(p("s.safetensors")), p("s.safetensors")),
    ]
    if torch is not None:
        out.append(("torch.save / torch.load",
                    lambda t: torch.save({k: torch.from_numpy(v) for k, v in t.items()},
                                         p("t.pt")),
                    lambda: torch.load(p("t.pt")), p("t.pt")))
    return out


def bench_checkpoint(path: str, runs: int, tmp: str) -> None:
    ckpt = st_read(path)
    ckpt = {k: np.array(v) for k, v in ckpt.items()}  # own, writable copies
    raw = sum(v.nbytes for v in ckpt.values())
    ncpu = len(os.sched_getaffinity(0))
    table = rows(tmp, ncpu)
    times = {r[0]: ([], []) for r in table}
    size = {}
    for _ in range(runs):
        for name, save, load, out in table:
            t0 = time.perf_counter()
            save(ckpt)
            t1 = time.perf_counter()
            back = load()
            t2 = time.perf_counter()
            times[name][0].append(t1 - t0)
            times[name][1].append(t2 - t1)
            size[name] = os.path.getsize(out)
            del back
    print(f"### Save and load: {os.path.basename(path)}, {len(ckpt)} tensors, "
          f"{raw / 1e6:.1f} MB (float32), {runs} rounds, medians, files in {tmp}\n")
    print("| row | file MB | ratio | save MB/s | load MB/s |")
    print("| --- | ---: | ---: | ---: | ---: |")
    med = {}
    for name, *_ in table:
        s, l = statistics.median(times[name][0]), statistics.median(times[name][1])
        med[name] = (raw / s / 1e6, raw / l / 1e6)
        print(f"| {name} | {size[name] / 1e6:.2f} | {raw / size[name]:.3f} | "
              f"{med[name][0]:.0f} | {med[name][1]:.0f} |")
    print()
    return med


# ---- 2. overhead per call -------------------------------------------------------------------

def bench_overhead(n: int) -> float:
    x = np.arange(16, dtype=np.float32)
    for _ in range(200):  # warm up
        alcm.decompress(alcm.compress(x, threads=1))
    py, c = [], []
    for _ in range(9):  # interleaved, so that the machine's load hits both alike
        t0 = time.perf_counter()
        for _ in range(n):
            alcm.decompress(alcm.compress(x, threads=1))
        py.append((time.perf_counter() - t0) / n)
        c.append(_core._bench_roundtrip(x, 12, n) / n)
    p_us, c_us = statistics.median(py) * 1e6, statistics.median(c) * 1e6
    print(f"### Python overhead per call: a 16-value float32 tensor, compress + decompress, "
          f"{n} calls x 9 rounds (Python and C interleaved), medians\n")
    print("| path | us per round trip |")
    print("| --- | ---: |")
    print(f"| alcm.compress + alcm.decompress (Python) | {p_us:.1f} |")
    print(f"| the same library calls from C | {c_us:.1f} |")
    print(f"| Python layer overhead | {p_us - c_us:.1f} ({(p_us - c_us) / 2:.1f} per call) |\n")
    return (p_us - c_us) / 2, c_us / 2


# ---- 3. peak RSS of loading one tensor ------------------------------------------------------

_RSS_CHILD = r"""
import sys, numpy as np
import alcm

def hwm():  # peak RSS of this process image (VmHWM starts afresh at exec, ru_maxrss does not)
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024

path, name, how = sys.argv[1], sys.argv[2], sys.argv[3]
before = hwm()
if how == "open":
    with alcm.open(path) as a:
        x = a[name]
else:
    x = alcm.load(path, [name])[name]
print(before, hwm(), x.nbytes)
"""


def bench_rss(tmp: str, count: int, mib: int) -> tuple[int, int, int]:
    path = os.path.join(tmp, "large.alcm")
    rng = np.random.default_rng(0)
    n = mib << 18  # float32 values
    tensors = {f"layer{i}.weight": rng.standard_normal(n, dtype=np.float32)
               for i in range(count)}
    alcm.save(path, tensors, overwrite=True)
    del tensors
    size = os.path.getsize(path)
    print(f"### Peak RSS of loading one tensor: {count} float32 tensors of {mib} MiB, archive "
          f"{size / 2**20:.0f} MiB, fresh process each (VmHWM)\n")
    print("| what | MiB |")
    print("| --- | ---: |")
    print(f"| archive | {size / 2**20:.1f} |")
    grown = 0
    for how, what in (("open", "alcm.open(path)[name]"), ("load", "alcm.load(path, [name])")):
        res = subprocess.run([sys.executable, "-c", _RSS_CHILD, path,
                              f"layer{count // 2}.weight", how],
                             capture_output=True, text=True, check=True)
        before, after, nbytes = map(int, res.stdout.split())
        grown = max(grown, after - before)
        if how == "open":
            print(f"| the tensor loaded | {nbytes / 2**20:.1f} |")
            print(f"| peak RSS after importing numpy and alcm | {before / 2**20:.1f} |")
        print(f"| peak RSS growth: {what} | {(after - before) / 2**20:.1f} |")
    print()
    os.remove(path)
    return grown, nbytes, size


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", default=os.path.join(ROOT, "build", "data",
                                                         "faceapi.safetensors"))
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--tmp", default="/dev/shm" if os.path.isdir("/dev/shm") else None)
    ap.add_argument("--calls", type=int, default=2000, help="calls per overhead sample")
    ap.add_argument("--large", default="16x32", help="COUNTxMIB of the RSS archive")
    a = ap.parse_args()
    print(f"alcm {alcm.__version__}, Python {sys.version.split()[0]}, numpy {np.__version__}, "
          f"torch {getattr(torch, '__version__', 'missing')}, "
          f"{len(os.sched_getaffinity(0))} CPUs\n")
    results = []
    with tempfile.TemporaryDirectory(dir=a.tmp) as tmp:
        if os.path.exists(a.checkpoint):
            med = bench_checkpoint(a.checkpoint, a.runs, tmp)
            best = max(v[0] for k, v in med.items() if k.startswith("alcm lossless"))
            best_l = max(v[1] for k, v in med.items() if k.startswith("alcm lossless"))
            npz = med["numpy.savez / numpy.load"]
            results.append(("alcm lossless load at least as fast as numpy.load (npz)",
                            best_l >= npz[1]))
            results.append(("alcm lossless save faster than numpy.savez_compressed",
                            best > med["numpy.savez_compressed"][0]))
        else:
            print(f"(no checkpoint at {a.checkpoint}: run tools/bench/fetch_checkpoint.sh)\n")
        over, lib = bench_overhead(a.calls)
        results.append(("the Python layer adds less per call than the library's own time "
                        f"({over:.1f} vs {lib:.1f} us)", over < lib))
        count, mib = map(int, a.large.split("x"))
        grown, nbytes, size = bench_rss(tmp, count, mib)
        results.append(("peak RSS of loading one tensor <= its size + 32 MiB "
                        "(not the archive's)", grown <= nbytes + (32 << 20) and grown < size))
    print("### Targets\n")
    for what, ok in results:
        print(f"- {what}: {'holds' if ok else 'misses'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
