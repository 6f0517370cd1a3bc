#!/usr/bin/python3
"""One shared checkpoint written by every MPI rank with h5py + mpi4py and the alcm filter.

    mpirun -np 4 python3 h5py_mpi_checkpoint.py write ckpt.h5 [--max-error 1e-3]
    mpirun -np 2 python3 h5py_mpi_checkpoint.py read ckpt.h5 [--max-error 1e-3]
    python3 h5py_mpi_checkpoint.py read ckpt.h5            (one process, serial h5py)

Each rank writes its own rows of every tensor (a data- or model-parallel trainer's shard);
HDF5 codes the chunks with the alcm filter, lossless unless --max-error is given. `read`
checks every value: bit-exact, or within the bound (NaN and infinities exact), and works
with any number of ranks. The tensors depend only on their position, so any rank count
writes the same checkpoint.

Needs Debian's python3-h5py-mpi and python3-mpi4py (under mpirun, Debian's h5py loads its
MPI build), and the alcm filter plugin built against the same HDF5 flavour: installed in
that flavour's plugin directory, or HDF5_PLUGIN_PATH=build/lib/plugin-mpi under mpirun
(build/lib/plugin for the serial read).
"""
import argparse
import struct
import sys

import numpy as np
from mpi4py import MPI
import h5py

ALCM_FILTER_ID = 417  # HDF5's testing range until a registered id replaces it (spec 6.6.13)


def alcm_filter(max_error=None):
    """The create_dataset keyword arguments of the alcm filter (cd_values, spec 6.6.13):
    [version 2 (compact frames), mode, bound low word, bound high word, bits, zstd level]."""
    if max_error is None:
        return dict(compression=ALCM_FILTER_ID, compression_opts=(2, 0, 0, 0, 8, 0))
    lo, hi = struct.unpack("<II", struct.pack("<d", max_error))
    return dict(compression=ALCM_FILTER_ID, compression_opts=(2, 1, lo, hi, 8, 0))


def tensors(layers, rows, cols):
    """Name and shape of each tensor of the checkpoint."""
    for layer in range(layers):
        yield f"layer{layer:02d}/kernel", (rows, cols)
        yield f"layer{layer:02d}/bias", (cols,)


def values(k, first, count):
    """Elements [first, first + count) of tensor k: a weight-like spread, 12 significant
    bits, from a hash of the position (the same for any number of ranks)."""
    i = np.arange(first, first + count, dtype=np.uint64) ^ np.uint64(k << 40)
    with np.errstate(over="ignore"):
        for mul in (0xBF58476D1CE4E5B9, 0x94D049BB133111EB):
            i = (i ^ (i >> np.uint64(30))) * np.uint64(mul)
    u = ((i >> np.uint64(11)).astype(np.float64) + 0.5) * 2.0**-53
    g = np.sqrt(-2 * np.log(u)) * np.cos(2 * np.pi * u * 7.0) * 0.02 * (1 + k % 3)
    g = (g.astype(np.float32).view(np.uint32) & np.uint32(0xFFFFF800)).view(np.float32)
    if k == 0 and first <= 7 < first + count:
        g[7 - first] = np.nan
    return g


def my_rows(rows, comm):
    return rows * comm.rank // comm.size, rows * (comm.rank + 1) // comm.size


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("cmd", choices=["write", "read"])
    ap.add_argument("path")
    ap.add_argument("--max-error", type=float)
    ap.add_argument("--layers", type=int, default=3)
    ap.add_argument("--rows", type=int, default=300)
    ap.add_argument("--cols", type=int, default=257)
    a = ap.parse_args()
    comm = MPI.COMM_WORLD
    parallel = h5py.get_config().mpi and comm.size > 1
    kw = dict(driver="mpio", comm=comm) if parallel else {}
    bad = 0
    with h5py.File(a.path, "w" if a.cmd == "write" else "r", **kw) as f:
        for k, (name, shape) in enumerate(tensors(a.layers, a.rows, a.cols)):
            r0, r1 = my_rows(shape[0], comm) if parallel else (0, shape[0])
            row = int(np.prod(shape[1:]))
            want = values(k, r0 * row, (r1 - r0) * row).reshape((r1 - r0,) + shape[1:])
            if a.cmd == "write":
                # Every rank creates every dataset (collective), then writes its rows.
                chunks = (min(shape[0], max(1, 65536 // (4 * row))),) + shape[1:]
                d = f.create_dataset(name, shape, np.float32, chunks=chunks,
                                     **alcm_filter(a.max_error))
                with d.collective:  # filtered datasets are written in parallel collectively
                    d[r0:r1] = want
                continue
            d = f[name]
            if parallel:
                with d.collective:
                    got = d[r0:r1]
            else:
                got = d[r0:r1]
            exact = ~np.isfinite(want) | (want == 0)
            if a.max_error is None:
                ok = want.tobytes() == got.tobytes()
            else:
                ok = (np.array_equal(want[exact].view(np.uint32), got[exact].view(np.uint32)) and
                      bool(np.all(np.abs(want[~exact] - got[~exact]) <= a.max_error)))
            bad |= not ok
    bad = comm.allreduce(bad, op=MPI.MAX)
    if comm.rank == 0:
        what = "written" if a.cmd == "write" else ("VALUES DIFFER" if bad else "checked")
        print(f"{a.path}: {what} by {comm.size if parallel else 1} process(es)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
