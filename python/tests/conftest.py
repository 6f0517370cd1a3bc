"""Shared fixtures. ctest runs these tests with PYTHONPATH=build/python; run by hand, they
find the package in build/python of the source tree (or ALCM_PYTHONPATH)."""

from __future__ import annotations

import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.environ.get("ALCM_SOURCE_DIR", os.path.dirname(os.path.dirname(HERE)))

try:
    import alcm  # noqa: F401
except ImportError:
    sys.path.insert(0, os.environ.get("ALCM_PYTHONPATH", os.path.join(SOURCE_DIR, "build",
                                                                      "python")))
    import alcm  # noqa: F401

sys.path.insert(0, HERE)  # forge.py


@pytest.fixture
def tmp(tmp_path, monkeypatch):
    """A temporary directory that is also the current one."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def torch_or_skip(module_level: bool = False):
    """torch, or a skip: the ASan build leaves torch out (see python/CMakeLists.txt)."""
    if os.environ.get("ALCM_TEST_NO_TORCH"):
        pytest.skip("torch tests are off in this build (ALCM_TEST_NO_TORCH)",
                    allow_module_level=module_level)
    return pytest.importorskip("torch")
