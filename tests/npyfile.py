"""A float32 .npy file in bytes, without numpy, for the shell tests' inputs."""

import random
import struct


def channel_scales(n, dead, base, octaves):
    """n channel scales from the global random state: 0 (a dead unit) with probability
    `dead`, else base * 2^u, u uniform in [-octaves, octaves]."""
    return [0.0 if random.random() < dead else base * 2 ** random.uniform(-octaves, octaves)
            for _ in range(n)]


def npy(shape, vals, f64=False):
    """The .npy bytes of a C-order float32 (float64 with f64) array of `shape` holding `vals`
    (a flat list)."""
    hdr = "{'descr': '<f%d', 'fortran_order': False, 'shape': (%s), }" % (8 if f64 else 4, "".join(
        "%d," % d for d in shape))
    hdr += " " * (63 - (10 + len(hdr)) % 64) + "\n"
    return (b"\x93NUMPY\x01\x00" + struct.pack("<H", len(hdr)) + hdr.encode() +
            struct.pack("<%d%s" % (len(vals), "d" if f64 else "f"), *vals))
