"""The examples in the docstrings run (in a temporary directory) and give what they show."""

from __future__ import annotations

import doctest
import os

import numpy as np
import pytest

import alcm
import alcm._api
import alcm._h5
from conftest import torch_or_skip


def run(module, tmp):
    res = doctest.testmod(module, extraglobs={"alcm": alcm, "np": np},
                          optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert res.attempted > 0 and res.failed == 0


@pytest.mark.parametrize("name", ["alcm", "alcm._api"])
def test_numpy_examples(tmp, name):
    run(__import__(name, fromlist=["_"]), tmp)


@pytest.mark.skipif(bool(os.environ.get("ALCM_TEST_NO_TORCH")),
                    reason="sanitized run: h5py would load the sanitized plugin")
def test_h5filter_examples(tmp):
    pytest.importorskip("h5py")
    run(alcm._h5, tmp)


def test_torch_examples(tmp):
    torch_or_skip()
    import alcm.torch
    run(alcm.torch, tmp)


def test_readme_python_examples(tmp):
    # The README's Python section, run as a script.
    readme = os.path.join(os.environ.get("ALCM_SOURCE_DIR", os.path.join(
        os.path.dirname(__file__), "..", "..")), "README.md")
    text = open(readme).read()
    blocks = text.split("```python\n")[1:]
    assert blocks, "README.md has no python example"
    for b in blocks:
        code = b.split("```")[0]
        # Sanitized runs leave out torch, and h5py (it would load the sanitized plugin).
        if ("import torch" in code or "import h5py" in code) and \
                os.environ.get("ALCM_TEST_NO_TORCH"):
            continue
        exec(compile(code, "README.md", "exec"), {})
