"""Builds the extension alcm._core for pip (``pip install ./python --no-build-isolation``).

The CMake build (``cmake --build build``, then ``PYTHONPATH=build/python``) links the
extension with the library it builds; here the extension compiles libalcm's own sources
(format/, lib/, lib/io/ of this checkout) with the flags CMake uses, so nothing else needs
to be installed first but the C dependencies (libzstd-dev, libsodium-dev, zlib1g-dev,
libdeflate-dev) and
numpy. Offline: nothing is downloaded.
"""

import concurrent.futures
import glob
import os
import shutil
import subprocess

import numpy
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = os.path.dirname(os.path.abspath(__file__))
# The repository: the parent of this directory, or ALCM_SOURCE_DIR (a copy of python/ built
# elsewhere, as tests/pip_wheel.sh does to keep the checkout clean).
ROOT = os.environ.get("ALCM_SOURCE_DIR") or os.path.dirname(HERE)
DEPS = ["libzstd", "libsodium", "zlib", "libdeflate"]


def library_sources():
    src = []
    for d in ("format", "lib", os.path.join("lib", "io")):
        src += sorted(glob.glob(os.path.join(ROOT, d, "*.c")))
    if not src:
        raise SystemExit(f"setup.py: libalcm's sources not found under {ROOT}: build from a "
                         "checkout of the repository (pip install ./python)")
    return src


def pkg_config(flag):
    if not shutil.which("pkg-config"):
        return {"--libs": ["-lzstd", "-lsodium", "-lz", "-ldeflate"], "--cflags": []}[flag]
    return subprocess.check_output(["pkg-config", flag] + DEPS, text=True).split()


class BuildExt(build_ext):
    """Compiles libalcm's sources (outside this directory, so not listed as the extension's
    own sources, which setuptools wants inside it) in parallel, then links them in."""

    def build_extension(self, ext):
        out = os.path.join(os.path.abspath(self.build_temp), "libalcm")

        def one(src):
            return self.compiler.compile([src], output_dir=out, macros=ext.define_macros,
                                         include_dirs=ext.include_dirs,
                                         extra_postargs=ext.extra_compile_args)

        with concurrent.futures.ThreadPoolExecutor(os.cpu_count() or 1) as pool:
            ext.extra_objects = [o for objs in pool.map(one, library_sources()) for o in objs]
        super().build_extension(ext)


ext = Extension(
    "alcm._core",
    sources=[os.path.join("alcm", "_core.c")],
    include_dirs=[os.path.join(ROOT, d) for d in ("include", "format", "lib", "lib/io")]
    + [numpy.get_include()],
    define_macros=[("_GNU_SOURCE", None), ("ALCM_STATIC_DEFINE", None)],
    # As CMakeLists.txt: C11, no FMA contraction (archives must not depend on the compiler's
    # choice), hidden symbols.
    extra_compile_args=["-std=c11", "-O3", "-ffp-contract=off", "-fno-math-errno",
                        "-fvisibility=hidden"] + pkg_config("--cflags"),
    extra_link_args=pkg_config("--libs") + ["-lm", "-pthread"],
)

setup(ext_modules=[ext], cmdclass={"build_ext": BuildExt})
