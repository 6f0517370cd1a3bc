"""Archives of the Python package and of the command-line tools are the same format."""

from __future__ import annotations

import os
import subprocess

import numpy as np
import pytest

import alcm

BIN = os.environ.get("ALCM_BIN_DIR", os.path.join(os.path.dirname(__file__), "..", "..",
                                                  "build", "bin"))


def tool(name):
    path = os.path.join(BIN, name)
    if not os.access(path, os.X_OK):
        pytest.skip(f"{name} not built in {BIN}")
    return path


def test_tools_read_what_python_writes(tmp):
    rng = np.random.default_rng(2)
    t = {"w": rng.normal(size=(40, 30)).astype(np.float32), "i": np.arange(7, dtype=np.int16)}
    alcm.save("p.alcm", {**t, "tied": t["w"]}, metadata={"format": "pt"})
    r = subprocess.run([tool("alcm-inspect"), "--verify", "p.alcm"], capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stderr
    subprocess.run([tool("alcm-unpack"), "p.alcm", "-o", "p.npz"], check=True,
                   capture_output=True)
    with np.load("p.npz") as z:
        for k, v in t.items():
            assert z[k].tobytes() == v.tobytes()


def test_python_reads_what_the_tools_write(tmp):
    rng = np.random.default_rng(3)
    t = {"a": rng.normal(size=(64, 64)).astype(np.float64), "b": np.arange(9, dtype=np.uint8)}
    np.savez("in.npz", **t)
    subprocess.run([tool("alcm-pack"), "in.npz", "-o", "t.alcm", "-q"], check=True)
    subprocess.run([tool("alcm-pack"), "in.npz", "-o", "l.alcm", "-q", "--max-error", "1e-3"],
                   check=True)
    back = alcm.load("t.alcm")
    for k, v in t.items():
        assert back[k].tobytes() == v.tobytes()
    with alcm.open("l.alcm") as a:
        assert a.info("a").mode == "max_error"
        assert np.abs(a["a"] - t["a"]).max() <= 1e-3
    # The same tensors and options decode to the same values from Python as from the tool.
    alcm.save("py.alcm", t, max_error=1e-3)
    with alcm.open("py.alcm") as a, alcm.open("l.alcm") as b:
        for k in t:
            assert a[k].tobytes() == b[k].tobytes()
