"""alcm.h5filter(): h5py's keyword arguments for the alcm HDF5 filter."""

import os
import struct

import numpy as np
import pytest

import alcm


def test_arguments():
    assert alcm.h5filter() == {"compression": 417, "compression_opts": (2, 0, 0, 0, 8, 0)}
    opts = alcm.h5filter(max_error=1e-3, level=9)["compression_opts"]
    assert opts[:2] == (2, 1) and opts[4:] == (8, 9)
    assert struct.unpack("<d", struct.pack("<II", opts[2], opts[3]))[0] == 1e-3
    assert alcm.h5filter(bits=6)["compression_opts"][1] == 4
    assert alcm.h5filter(bits=6)["compression_opts"][4] == 6


@pytest.mark.parametrize("kwargs", [
    {"max_error": 1e-3, "snr": 30}, {"max_error": 0}, {"max_error": float("nan")},
    {"rel_error": 1.5}, {"snr": 400}, {"bits": 1}, {"bits": 17}, {"level": 20},
    {"max_error": 1e-3, "bits": 4},
])
def test_refused(kwargs):
    with pytest.raises(ValueError, match="h5filter"):
        alcm.h5filter(**kwargs)


@pytest.mark.skipif(bool(os.environ.get("ALCM_TEST_NO_TORCH")),
                    reason="sanitized run: h5py would load the sanitized plugin")
def test_h5py_round_trip(tmp_path):
    h5py = pytest.importorskip("h5py")
    w = np.random.default_rng(1).standard_normal((300, 200)).astype(np.float32)
    path = tmp_path / "f.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("a", data=w, chunks=True, **alcm.h5filter())
        f.create_dataset("b", data=w, chunks=True, **alcm.h5filter(max_error=1e-2))
    with h5py.File(path, "r") as f:
        assert f["a"][...].tobytes() == w.tobytes()
        assert np.abs(f["b"][...] - w).max() <= 1e-2
        assert f["b"].id.get_storage_size() < w.nbytes / 2
