"""Keyword arguments for h5py's ``create_dataset`` that select alcm's HDF5 filter."""

from __future__ import annotations

import math
import struct
from typing import Any, Dict, Optional

#: The filter's id, from HDF5's testing range (spec 6.6.13).
H5FILTER_ID = 417

_MODES = {"max_error": 1, "rel_error": 2, "snr": 3}


def h5filter(*, max_error: Optional[float] = None, rel_error: Optional[float] = None,
             snr: Optional[float] = None, bits: Optional[int] = None,
             level: Optional[int] = None) -> Dict[str, Any]:
    """Return ``compression=`` and ``compression_opts=`` for h5py's ``create_dataset``.

    Lossless when no bound is named; otherwise at most one of ``max_error`` (every value
    within it), ``rel_error`` (within it times the largest magnitude of its row, per chunk),
    ``snr`` (dB, per chunk) or ``bits`` (2..16 bits per value, per-row scale). ``level`` is
    zstd's (1..19). Integers are always stored losslessly, and NaN, infinities, -0 and
    subnormals exactly. Each chunk is stored as a compact tensor frame (spec 6.11); reading
    needs only the plugin ``libH5Zalcm.so`` on ``HDF5_PLUGIN_PATH`` (or installed in
    HDF5's plugin directory), not this package.

    >>> import numpy as np, h5py, alcm
    >>> w = np.linspace(-1, 1, 4096, dtype=np.float32).reshape(64, 64)
    >>> with h5py.File("w.h5", "w") as f:
    ...     _ = f.create_dataset("w", data=w, chunks=True, **alcm.h5filter(max_error=1e-3))
    >>> with h5py.File("w.h5") as f:
    ...     bool(abs(f["w"][...] - w).max() <= 1e-3)
    True
    """
    named = {k: v for k, v in (("max_error", max_error), ("rel_error", rel_error),
                               ("snr", snr)) if v is not None}
    if len(named) + (bits is not None) > 1:
        raise ValueError("h5filter: name at most one of max_error, rel_error, snr, bits")
    mode, bound = 0, 0.0
    if named:
        (name, value), = named.items()
        bound = float(value)
        if not math.isfinite(bound) or bound <= 0:
            raise ValueError(f"h5filter: {name} must be positive and finite, not {value!r}")
        if name == "rel_error" and bound >= 1:
            raise ValueError(f"h5filter: rel_error must be under 1, not {value!r}")
        if name == "snr" and bound > 300:
            raise ValueError(f"h5filter: snr must be at most 300 dB, not {value!r}")
        mode = _MODES[name]
    nbits = 8
    if bits is not None:
        if int(bits) != bits or not 2 <= bits <= 16:
            raise ValueError(f"h5filter: bits must be 2..16, not {bits!r}")
        mode, nbits = 4, int(bits)
    zlevel = 0
    if level is not None:
        if int(level) != level or not 1 <= level <= 19:
            raise ValueError(f"h5filter: level must be 1..19, not {level!r}")
        zlevel = int(level)
    lo, hi = struct.unpack("<II", struct.pack("<d", bound))
    return {"compression": H5FILTER_ID,
            "compression_opts": (2, mode, lo, hi, nbits, zlevel)}
