"""The public functions and classes of the alcm package (re-exported by ``alcm``).

The C extension ``alcm._core`` does the work with the GIL released; this module checks
arguments, maps dtypes, and keeps the META records of spec 6.1 (user metadata, aliases).
"""

from __future__ import annotations

import builtins
import dataclasses
import math
import numbers
import os
from collections.abc import Iterator, Mapping
from typing import Any, Optional, Union

import numpy as np

from . import _budget, _core, _errors, _records

PathLike = Union[str, "os.PathLike[str]"]

#: numpy has no bfloat16: alcm returns bfloat16 tensors as their 16-bit patterns, a uint16
#: array whose dtype carries ``metadata={"alcm.dtype": "bfloat16"}``. It compares equal to
#: ``numpy.uint16``; ``array.view(alcm.bfloat16)`` marks a uint16 array of bfloat16 bits so
#: that :func:`save` stores it as bfloat16 (a plain uint16 array is stored as uint16).
#: Arrays of a dtype named "bfloat16" (ml_dtypes, JAX) are stored as bfloat16 too.
bfloat16 = np.dtype("<u2", metadata={"alcm.dtype": "bfloat16"})

_core._set_support(dict(_errors.BY_STATUS), bfloat16)

__version__ = _core.LIBRARY_VERSION

# enum alcm_dtype of alcm.h, by numpy kind and item size (bfloat16 is handled apart)
_CODES = {("b", 1): 1, ("u", 1): 2, ("i", 1): 3, ("u", 2): 4, ("i", 2): 5, ("u", 4): 6,
          ("i", 4): 7, ("u", 8): 8, ("i", 8): 9, ("f", 2): 10, ("f", 4): 12, ("f", 8): 13}
_BF16 = 11
_MODES = ("lossless", "max_error", "rel_error", "snr", "bits")
_DECISIONS = ("start", "raise", "hold", "backoff_caq", "backoff_fidelity")
_CHUNK_BYTES = 4 << 20  # alcm_pack_options_default(): raw bytes per chunk
_SIG_STATES = ("none", "valid", "other key", "bad")
_PRODUCER = f"alcm-python {_core.LIBRARY_VERSION}".encode()


# ---- small helpers -----------------------------------------------------------------------

def _path(path: PathLike) -> str:
    p = os.fspath(path)
    if not isinstance(p, str):
        raise TypeError(f"path must be str or os.PathLike[str], not {type(p).__name__}")
    return p


def _arg_error(message: str) -> _errors.Error:
    return _errors.make(_errors.ArgumentError, message)


def _cpu_count() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _threads(threads: Optional[int], chunks: int) -> int:
    """Worker threads for a job whose largest tensor has `chunks` chunks (chunks are what
    runs in parallel; the archive's bytes do not depend on the count)."""
    if threads is None or threads == 0:
        if chunks <= 1:
            return 1  # and no sched_getaffinity() call, which costs microseconds
        n = _cpu_count()
    elif isinstance(threads, numbers.Integral) and not isinstance(threads, bool) \
            and 0 < threads <= 256:
        n = int(threads)
    else:
        raise _arg_error(f"threads must be None, 0 (all cores) or 1..256, not {threads!r}")
    return max(1, min(n, chunks))


def _dtype_code(dt: np.dtype, name: str) -> int:
    md = dt.metadata
    if dt.itemsize == 2 and ((md and md.get("alcm.dtype") == "bfloat16" and dt.kind in "ui")
                             or dt.name == "bfloat16"):
        return _BF16
    code = _CODES.get((dt.kind, dt.itemsize))
    if code is None:
        raise TypeError(f"tensor {name!r}: dtype {dt} cannot be stored (alcm stores bool, "
                        "int8..int64, uint8..uint64, float16, bfloat16, float32, float64)")
    return code


def _name_bytes(name: Any) -> bytes:
    if not isinstance(name, str):
        raise TypeError(f"tensor names must be str, not {type(name).__name__}")
    return name.encode("utf-8", "surrogateescape")


def _name_str(b: bytes) -> str:
    return b.decode("utf-8", "surrogateescape")


_LOSSLESS = (0, 0.0, 0, 0.0)


def _mode(max_error: Optional[float], rel_error: Optional[float], snr: Optional[float],
          bits: Optional[int], prune: Optional[float], size: Optional[int] = None,
          ratio: Optional[float] = None) -> tuple[int, float, int, float]:
    """(mode, bound, bits, prune) from the keyword options; at most one mode."""
    named = [k for k, v in (("max_error", max_error), ("rel_error", rel_error), ("snr", snr),
                            ("bits", bits), ("size", size), ("ratio", ratio)) if v is not None]
    if len(named) > 1:
        raise _arg_error(f"choose one of max_error, rel_error, snr, bits, size, ratio "
                         f"(got {', '.join(named)})")

    def positive(v: Any, what: str, hi: float = math.inf) -> float:
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not 0 < v <= hi \
                or not math.isfinite(v):
            raise _arg_error(f"{what} must be a number in (0, {hi}], not {v!r}")
        return float(v)

    mode, bound, nbits = 0, 0.0, 0
    if max_error is not None:
        mode, bound = 1, positive(max_error, "max_error")
    elif rel_error is not None:
        mode, bound = 2, positive(rel_error, "rel_error", 1.0)
        if bound >= 1:
            raise _arg_error("rel_error must be below 1")
    elif snr is not None:
        mode, bound = 3, positive(snr, "snr", 300.0)
    elif bits is not None:
        if isinstance(bits, bool) or not isinstance(bits, numbers.Integral) or not 2 <= bits <= 16:
            raise _arg_error(f"bits must be an int in 2..16, not {bits!r}")
        mode, nbits = 4, int(bits)
    p = 0.0
    if prune is not None:
        p = prune
        if isinstance(p, bool) or not isinstance(p, numbers.Real) or not 0 <= p <= 0.25:
            raise _arg_error(f"prune must be a share in [0, 0.25], not {prune!r}")
        if p > 0 and mode == 0:
            raise _arg_error("prune is lossy: name a bound (max_error, rel_error, snr) or bits")
    return mode, bound, nbits, float(p)


def _read_key(path: PathLike, secret: bool) -> bytes:
    """A key file of alcm-keygen: one line "alcm-ed25519-{secret,public}-key HEX"."""
    label = "alcm-ed25519-secret-key" if secret else "alcm-ed25519-public-key"
    size = 64 if secret else 32
    p = _path(path)
    try:
        with builtins.open(p, "rb") as f:
            text = f.read(256)
    except OSError as e:
        raise _errors.make(_errors.FileError, f"cannot read key '{p}': {e.strerror}",
                           path=p) from None
    parts = text.split(b" ")
    hexpart = parts[1][:-1] if len(parts) == 2 and parts[1].endswith(b"\n") else \
        (parts[1] if len(parts) == 2 else b"")
    if parts[0] != label.encode() or len(hexpart) != 2 * size or \
            hexpart.strip(b"0123456789abcdef"):
        kind = "secret" if secret else "public"
        raise _errors.make(_errors.FormatError,
                           f"cannot read key '{p}': not an alcm {kind} key file", path=p)
    return bytes.fromhex(hexpart.decode())


def _key(key: Any, secret: bool) -> bytes:
    """A key given as bytes, or as the path of a key file."""
    if isinstance(key, (bytes, bytearray, memoryview)):
        b = bytes(key)
        if len(b) != (64 if secret else 32):
            kind = "secret key is 64" if secret else "public key is 32"
            raise _arg_error(f"an Ed25519 {kind} bytes, not {len(b)}")
        return b
    return _read_key(key, secret)


def keypair() -> tuple[bytes, bytes]:
    """A new Ed25519 key pair ``(public_key, secret_key)`` for ``sign_key=`` and ``pubkey=``.

    Python cannot wipe the secret key's bytes after use; keep it in a file made by
    ``alcm-keygen`` and pass the file's path where that matters.

    >>> public, secret = alcm.keypair()
    >>> len(public), len(secret)
    (32, 64)
    """
    return _core.keypair()


def release_memory() -> int:
    """Frees the work arrays alcm keeps between calls; returns how many bytes that was.

    Saving and loading keep their freed work arrays (up to 16 MiB for saving, 2 MiB for
    loading) and their zstd contexts (up to 8 MiB) so that the next call finds them mapped
    and made: a training loop that saves every step pays for them once. Call this after a save when the process will not compress again for
    a while; the next save or load allocates them again. Arrays in use by an open
    :class:`Archive` or :class:`Stream` are not touched.

    >>> w = np.random.default_rng(0).normal(0, 0.02, (256, 256)).astype(np.float32)
    >>> _ = alcm.save("m.alcm", {"w": w}, max_error=1e-3)
    >>> alcm.release_memory() > 0
    True
    >>> alcm.release_memory()
    0
    """
    return _core.release_memory()


# ---- tensors in --------------------------------------------------------------------------

@dataclasses.dataclass
class _Item:
    name: bytes
    array: np.ndarray
    code: int


def _prepare(tensors: Mapping[str, Any]) -> tuple[list[_Item], list[tuple[bytes, bytes]]]:
    """Stored tensors and (alias, target) pairs: a name whose array is the very same view of
    memory as an earlier one (same address, shape, strides and dtype: tied weights) is an
    alias, stored once."""
    if not isinstance(tensors, Mapping):
        raise TypeError("tensors must be a mapping of names to arrays")
    items: list[_Item] = []
    aliases: list[tuple[bytes, bytes]] = []
    seen: dict[tuple, bytes] = {}
    for name, value in tensors.items():
        nb = _name_bytes(name)
        arr = value if isinstance(value, np.ndarray) else np.asarray(value)
        code = _dtype_code(arr.dtype, name)
        key = None
        if arr.size:
            key = (arr.__array_interface__["data"][0], arr.shape, arr.strides, code)
            target = seen.get(key)
            if target is not None:
                aliases.append((nb, target))
                continue
            seen[key] = nb
        items.append(_Item(nb, arr, code))
    return items, aliases


def _metadata_pairs(metadata: Optional[Mapping[str, str]]) -> list[tuple[str, bytes]]:
    if metadata is None:
        return []
    if not isinstance(metadata, Mapping):
        raise TypeError("metadata must be a mapping of str to str")
    out = []
    for k, v in metadata.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise TypeError(f"metadata keys and values must be str, not {type(k).__name__}: "
                            f"{type(v).__name__}")
        if "\0" in k:
            raise _arg_error(f"metadata key {k!r} holds a NUL character")
        out.append((_records.USER_PREFIX + k, v.encode("utf-8", "surrogateescape")))
    return out


@dataclasses.dataclass(frozen=True)
class SaveReport:
    """What :func:`save` did."""

    tensors: int           #: names saved (aliases included)
    raw_bytes: int         #: bytes of the tensors stored (an alias costs nothing)
    stored_bytes: int      #: bytes of the archive
    max_abs_error: float   #: largest |x - x'| over every value (0 when lossless)
    downgraded: int        #: integer or bool tensors stored losslessly under a lossy mode

    @property
    def ratio(self) -> float:
        """raw_bytes / stored_bytes."""
        return self.raw_bytes / self.stored_bytes if self.stored_bytes else 0.0


class _Job:
    """One archive being written: the options of a save() and the tensors."""

    def __init__(self, path: Optional[str], items: list[_Item],
                 aliases: list[tuple[bytes, bytes]], records: list[tuple[str, bytes]],
                 mode: tuple[int, float, int, float], threads: Optional[int],
                 overwrite: bool, source_format: Optional[str]):
        self.path, self.items, self.aliases, self.records = path, items, aliases, records
        self.mode, self.overwrite = mode, overwrite
        chunks = max([-(-it.array.nbytes // _CHUNK_BYTES) for it in items] + [1])
        self.threads = _threads(threads, chunks)
        self.source_format = source_format.encode() if source_format else None

    def packer(self) -> Any:
        mode, bound, bits, prune = self.mode
        return _core.Packer(self.path, self.overwrite, mode=mode, bound=bound, bits=bits,
                            prune=prune, threads=self.threads, producer=_PRODUCER,
                            source_format=self.source_format)

    def finish(self, pk: Any) -> None:
        """Writes the records, then META, PRED and the directory (a TDRZ in a 1.1 archive)."""
        if self.aliases:
            pk.set_meta(_records.ALIAS_KEY, _records.encode_aliases(self.aliases))
        for k, v in self.records:
            pk.set_meta(k, v)
        if self.aliases or self.records:
            pk.require_minor(_records.MINOR)
        pk.finish()

    def encode(self, bounds: Optional[list[float]] = None) -> tuple[Any, list[tuple]]:
        """A Packer holding every tensor and the records, not committed yet; with `bounds`,
        tensor i is coded with max-error bound[i] (0: lossless) and its error measured."""
        pk = self.packer()
        try:
            reps = []
            for i, it in enumerate(self.items):
                if bounds is None:
                    reps.append(pk.add(it.name, it.array, it.code))
                else:
                    b = bounds[i]
                    reps.append(pk.add(it.name, it.array, it.code, mode=1 if b > 0 else 0,
                                       bound=b if b > 0 else 0.0, measure=True))
            self.finish(pk)
            return pk, reps
        except BaseException:
            pk.close()
            raise


def _save(path: Optional[PathLike], tensors: Mapping[str, Any], *,
          max_error: Optional[float] = None, rel_error: Optional[float] = None,
          snr: Optional[float] = None, bits: Optional[int] = None,
          size: Optional[int] = None, ratio: Optional[float] = None,
          prune: Optional[float] = None, threads: Optional[int] = None,
          metadata: Optional[Mapping[str, str]] = None, sign_key: Any = None,
          overwrite: bool = False, source_format: Optional[str] = None
          ) -> tuple[SaveReport, Optional[bytes]]:
    p = None if path is None else _path(path)
    mode = _mode(max_error, rel_error, snr, bits, prune, size, ratio)
    if size is not None and (isinstance(size, bool) or not isinstance(size, numbers.Integral)
                             or size <= 0):
        raise _arg_error(f"size must be a positive int (bytes), not {size!r}")
    if ratio is not None and (isinstance(ratio, bool) or not isinstance(ratio, numbers.Real)
                              or not ratio > 1 or not math.isfinite(ratio)):
        raise _arg_error(f"ratio must be a number above 1, not {ratio!r}")
    items, aliases = _prepare(tensors)
    records = _metadata_pairs(metadata)
    sk = _key(sign_key, True) if sign_key is not None else None
    job = _Job(p, items, aliases, records, mode, threads, overwrite, source_format)
    if size is not None or ratio is not None:
        raw = sum(it.array.nbytes for it in items)
        target = float(size) if size is not None else raw / float(ratio)
        pk, reps = _budget.pack(job, target)
    else:
        pk, reps = job.encode()
    try:
        if sk is not None:
            pk.sign(sk)
        stored = pk.committed_size()
        data = pk.commit()
    finally:
        pk.close()
    rep = SaveReport(tensors=len(items) + len(aliases),
                     raw_bytes=sum(r[0] for r in reps), stored_bytes=stored,
                     max_abs_error=max([r[4] for r in reps] + [0.0]),
                     downgraded=sum(r[8] for r in reps))
    return rep, data


def save(path: PathLike, tensors: Mapping[str, Any], *, max_error: Optional[float] = None,
         rel_error: Optional[float] = None, snr: Optional[float] = None,
         bits: Optional[int] = None, size: Optional[int] = None,
         ratio: Optional[float] = None, prune: Optional[float] = None,
         threads: Optional[int] = None, metadata: Optional[Mapping[str, str]] = None,
         sign_key: Any = None, overwrite: bool = False) -> SaveReport:
    """Writes the arrays of ``tensors`` (a mapping of names to arrays) to an archive.

    Lossless (bit-exact) unless one lossy option is named; lossy modes apply to float
    tensors, and integer and bool tensors stay exact (counted in ``downgraded``). NaN,
    infinities, -0 and subnormals stay exact in every mode.

    Args:
        path: the archive to write (str or os.PathLike). It appears atomically when
            complete; an existing file is replaced only with ``overwrite=True``
            (else :class:`alcm.ExistsError`).
        tensors: names (str) to arrays: numpy arrays (any layout: C-contiguous ones are
            read in place, others copied once) or anything ``numpy.asarray`` takes.
            Arrays that are the very same view of memory (tied weights) are stored once.
        max_error: ``|x - x'| <= max_error`` for every value.
        rel_error: ``|x - x'| <= rel_error * max|x|`` of the value's channel (axis 0).
        snr: signal-to-noise ratio of every tensor at least ``snr`` dB.
        bits: fixed width, ``bits``-bit symbols (2..16) with a per-channel scale.
        size: fit the archive in ``size`` bytes (within 3%), choosing a max-error bound per
            tensor; :class:`alcm.BoundError` if it cannot.
        ratio: the same, for a size of (tensor bytes / ratio).
        prune: drop up to this share (<= 0.25) of the smallest values into masks (lossy
            modes only; pruned values still meet the bound).
        threads: worker threads (None or 0: all cores); never changes the archive's bytes.
        metadata: str to str pairs kept in the archive (``Archive.metadata``), like
            safetensors' ``__metadata__``.
        sign_key: Ed25519 secret key (64 bytes from :func:`keypair`, or the path of an
            ``alcm-keygen`` key file): the archive is signed.
        overwrite: replace an existing file.

    Returns:
        a :class:`SaveReport` (sizes, ratio, largest error).

    >>> w = np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 4)
    >>> r = alcm.save("model.alcm", {"w": w, "step": np.int64(7)}, metadata={"epoch": "3"})
    >>> alcm.load("model.alcm")["w"].tobytes() == w.tobytes()
    True
    >>> r = alcm.save("lossy.alcm", {"w": w}, max_error=1e-3)
    >>> bool(np.abs(alcm.load("lossy.alcm")["w"] - w).max() <= 1e-3)
    True
    """
    return _save(path, tensors, max_error=max_error, rel_error=rel_error, snr=snr, bits=bits,
                 size=size, ratio=ratio, prune=prune, threads=threads, metadata=metadata,
                 sign_key=sign_key, overwrite=overwrite)[0]


# ---- one tensor in memory ----------------------------------------------------------------

def _encode_one(array: np.ndarray, name: str, mode: tuple[int, float, int, float],
                threads: Optional[int]) -> bytes:
    # One place for the one-tensor coding: an in-memory archive for now; a compact
    # one-tensor encoding may replace it (the decoder below must then accept both). What
    # _Job.encode() does for one tensor without records, in one call to the library (the
    # name is "tensor"): the Python of a Packer and its four calls was as long as the
    # library's own time on a small tensor.
    code = _dtype_code(array.dtype, name)
    m, bound, bits, prune = mode
    return _core.compress_one(array, code, m, bound, bits, prune,
                              _threads(threads, -(-array.nbytes // _CHUNK_BYTES)), _PRODUCER)


def _decode_one(data: Any) -> np.ndarray:
    # Reader("<bytes>", data), Archive(reader) and decode(0), with their messages, in one call.
    got = _core.decompress_one(data)
    if isinstance(got, int):
        raise _errors.make(_errors.FormatError,
                           f"cannot decompress: the archive holds {got} tensors, not one")
    return got


def compress(array: Any, *, max_error: Optional[float] = None,
             rel_error: Optional[float] = None, snr: Optional[float] = None,
             bits: Optional[int] = None, prune: Optional[float] = None,
             threads: Optional[int] = None) -> bytes:
    """One array to bytes (lossless unless a mode is named, as in :func:`save`).

    >>> x = np.arange(1000, dtype=np.float32)
    >>> blob = alcm.compress(x)
    >>> bool((alcm.decompress(blob) == x).all())
    True
    """
    arr = array if isinstance(array, np.ndarray) else np.asarray(array)
    if max_error is None and rel_error is None and snr is None and bits is None \
            and prune is None:
        mode = _LOSSLESS  # what _mode() gives with no option, without its checks
    else:
        mode = _mode(max_error, rel_error, snr, bits, prune)
    return _encode_one(arr, "tensor", mode, threads)


def decompress(data: Any) -> np.ndarray:
    """The array of :func:`compress`'s bytes (any bytes-like object), digests checked."""
    return _decode_one(data)


# ---- reading ------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class TensorInfo:
    """A tensor's directory entry, read without decoding the tensor. A name stored as an
    alias (tied weights) shows its target's entry, with ``alias_of`` set."""

    name: str
    dtype: str                #: "float32", "bfloat16", "int64", "bool", ...
    shape: tuple[int, ...]
    mode: str                 #: "lossless", "max_error", "rel_error", "snr" or "bits"
    bound: float              #: the bound requested (E, R or dB), 0 when lossless
    bits: int                 #: symbol bits of a lossy tensor, else 0
    max_abs_error: float      #: as measured by the writer
    stored_bytes: int         #: bytes of its sections in the archive
    raw_bytes: int            #: decoded bytes
    pruned: int
    escapes: int
    chunks: int
    alias_of: Optional[str] = None  #: the tensor this name is stored as (tied weights)


@dataclasses.dataclass(frozen=True)
class FrameReport:
    """What one frame of a stream did (its FRAM record, spec 6.8)."""

    frame: int
    raw_bytes: int
    stored_bytes: int
    ratio: float
    cpu_seconds: float
    caq: float            #: ratio / (cpu_seconds + 1)
    caq_trend: float
    snr_db: float
    max_abs_error: float
    bound: float          #: the bound this frame was coded with
    prune: float
    aggressiveness: float
    decision: str         #: "start", "raise", "hold", "backoff_caq", "backoff_fidelity"
    next_bound: float
    next_prune: float

    @classmethod
    def _from(cls, d: dict) -> "FrameReport":
        d = dict(d)
        dec = d["decision"]
        d["decision"] = _DECISIONS[dec] if 0 <= dec < len(_DECISIONS) else str(dec)
        return cls(**d)


class Archive(Mapping[str, np.ndarray]):
    """A read-only mapping of an archive's tensors (see :func:`open`).

    ``archive[name]`` decodes that tensor only (its sections' digests are checked as they
    are read); ``keys()``, ``info(name)``, ``metadata`` and ``frames`` read no tensor data.
    """

    def __init__(self, reader: Any, arch: Any, path: str, threads: Optional[int],
                 aliases: bool) -> None:
        self._reader, self._arch, self._path = reader, arch, path
        self._children: list[Archive] = []
        self._threads_arg = threads
        self._entries = arch.entries()
        self._index: dict[str, int] = {}
        for i, e in enumerate(self._entries):
            self._index.setdefault(_name_str(e[0]), i)  # first wins, as alcm_archive_find()
        arch.set_threads(_threads(threads, max([e[11] for e in self._entries] + [1])))
        self._meta = arch.meta()
        self._aliases: dict[str, str] = {}
        if aliases:
            self._aliases = self._read_aliases()

    def _read_aliases(self) -> dict[str, str]:
        value = None
        for k, v in self._meta:
            if k == _records.ALIAS_KEY.encode():
                value = v  # the last pair of a key wins
        if value is None:
            return {}
        out: dict[str, str] = {}
        for i, (a, t) in enumerate(_records.decode_aliases(value, self._path)):
            an, tn = _name_str(a), _name_str(t)
            why = None
            if an in self._index or an in out:
                why = f"alias {an!r} names a tensor twice"
            elif tn not in self._index:
                why = f"target {tn!r} is not a tensor of the directory"
            if why:
                raise _errors.make(_errors.FormatError,
                                   f"cannot read '{self._path}': META key "
                                   f"{_records.ALIAS_KEY}: pair {i}: {why}",
                                   detail=f"META key {_records.ALIAS_KEY}: pair {i}: {why}",
                                   path=self._path)
            out[an] = tn
        return out

    # Mapping
    def __getitem__(self, name: str) -> np.ndarray:
        return self._arch.decode(self._find(name))

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._index) + list(self._aliases))

    def __len__(self) -> int:
        return len(self._index) + len(self._aliases)

    def __contains__(self, name: object) -> bool:
        return name in self._index or name in self._aliases

    def _find(self, name: str) -> int:
        i = self._index.get(self._aliases.get(name, name))
        if i is None:
            raise _errors.make(_errors.NotFoundError,
                               f"no tensor {name!r} in '{self._path}'", path=self._path)
        return i

    def info(self, name: str) -> TensorInfo:
        """The directory entry of ``name``, without decoding.

        >>> _ = alcm.save("info.alcm", {"w": np.zeros((2, 3), np.float32)})
        >>> with alcm.open("info.alcm") as a:
        ...     i = a.info("w")
        >>> i.dtype, i.shape, i.mode
        ('float32', (2, 3), 'lossless')
        """
        e = self._entries[self._find(name)]
        return TensorInfo(name=name, dtype=_core.dtype_name(e[1]) or str(e[1]),
                          shape=tuple(e[2]), mode=_MODES[e[3]] if 0 <= e[3] < 5 else str(e[3]),
                          bound=e[5], bits=e[4], max_abs_error=e[6], stored_bytes=e[7],
                          raw_bytes=e[8], pruned=e[9], escapes=e[10], chunks=e[11],
                          alias_of=self._aliases.get(name))

    @property
    def metadata(self) -> dict[str, str]:
        """The user's metadata (``save(metadata=)``, a safetensors ``__metadata__``)."""
        out = {}
        pre = _records.USER_PREFIX.encode()
        for k, v in self._meta:
            if k.startswith(pre):
                out[_name_str(k[len(pre):])] = v.decode("utf-8", "surrogateescape")
        return out

    @property
    def version(self) -> tuple[int, int]:
        """The format version of the archive's header, e.g. (1, 0)."""
        return tuple(self._reader.info()["version"])

    @property
    def frames(self) -> int:
        """Frames (tensor directories): 1 unless the archive is a stream."""
        return self._reader.info()["frames"]

    @property
    def frame_number(self) -> int:
        """The frame whose directory this mapping reads."""
        return self._arch.frame()

    def frame(self, n: int) -> "Archive":
        """Frame ``n`` of a stream archive, as a mapping of its own (closed with this one).

        Aliases (``alcm.alias``) belong to the archive's last directory only.
        """
        if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 0:
            raise _arg_error(f"frame must be a non-negative int, not {n!r}")
        arch = _core.Archive(self._reader, int(n))
        try:
            child = Archive(self._reader, arch, self._path, self._threads_arg,
                            aliases=arch.frame() == self._arch.frame())
        except BaseException:
            arch.close()
            raise
        self._children.append(child)
        return child

    @property
    def report(self) -> Optional[FrameReport]:
        """The FRAM record of this frame (stream archives), or None."""
        d = self._reader.frame_report(self._arch.frame())
        return None if d is None else FrameReport._from(d)

    def verify(self, pubkey: Any = None) -> None:
        """Checks every section's digest and the padding (streamed, bounded memory), and
        with ``pubkey`` (32 bytes or an ``alcm-keygen`` public key file) the signature.
        Raises :class:`alcm.DigestError`, :class:`alcm.FormatError` or
        :class:`alcm.SignatureError`."""
        self._reader.verify()
        if pubkey is not None:
            _check_signature(self._reader, _key(pubkey, False), self._path)

    def close(self) -> None:
        """Closes the archive (the file too); tensors already decoded stay valid."""
        for c in self._children:
            c._arch.close()
        self._arch.close()
        self._reader.close()

    def __enter__(self) -> "Archive":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<alcm.Archive '{self._path}': {len(self)} tensors>"


def _check_signature(reader: Any, pk: bytes, path: str) -> None:
    state = reader.check_signature(pk)
    if state != 1:
        what = _SIG_STATES[state] if 0 <= state < 4 else str(state)
        why = "no signature" if state == 0 else f"signature {what}"
        raise _errors.make(_errors.SignatureError, f"cannot verify '{path}': {why}",
                           detail=why, path=path)


def open(path: PathLike, *, verify: bool = True, pubkey: Any = None,
         threads: Optional[int] = None, limits: Optional[Mapping[str, int]] = None) -> Archive:
    """Opens an archive as a read-only mapping of names to arrays.

    Only the header, the table, the metadata and the directory are read here; each
    ``archive[name]`` reads and decodes that tensor's sections only, so reading one tensor
    of a large archive takes about that tensor's memory. Use it as a context manager.

    Args:
        verify: check each section's BLAKE2b digest as it is read (default). Turn it off
            only for trusted files.
        pubkey: Ed25519 public key (32 bytes, or an ``alcm-keygen`` public key file): the
            archive must carry a valid signature by it (:class:`alcm.SignatureError`).
            Digests prove the bytes the signature covers, so it needs ``verify=True``.
        threads: decoding threads (None or 0: all cores).
        limits: fields of the C library's ``alcm_limits`` to change, e.g.
            ``{"max_decoded_bytes": 1 << 30}`` refuses (:class:`alcm.LimitError`) any tensor
            that decodes to more than 1 GiB before memory is allocated for it. Defaults:
            ``alcm_limits_default()`` in alcm.h (64 GiB per tensor, 2^36 elements, ...).

    >>> _ = alcm.save("open.alcm", {"a": np.ones(3, np.float16), "b": np.arange(4)})
    >>> with alcm.open("open.alcm") as arch:
    ...     sorted(arch), arch["a"]
    (['a', 'b'], array([1., 1., 1.], dtype=float16))
    """
    p = _path(path)
    if pubkey is not None and not verify:
        raise _arg_error("pubkey needs verify=True: a signature proves nothing without the "
                         "digests")
    pk = _key(pubkey, False) if pubkey is not None else None
    reader = _core.Reader(p, None, verify, dict(limits) if limits is not None else None)
    try:
        if pk is not None:
            _check_signature(reader, pk, p)
        arch = _core.Archive(reader)
        try:
            return Archive(reader, arch, p, threads, aliases=True)
        except BaseException:
            arch.close()
            raise
    except BaseException:
        reader.close()
        raise


def load(path: PathLike, names: Optional[list[str]] = None, *, verify: bool = True,
         pubkey: Any = None, threads: Optional[int] = None,
         limits: Optional[Mapping[str, int]] = None) -> dict[str, np.ndarray]:
    """Reads tensors of an archive (all, or those in ``names``) into a dict of arrays.

    Each array is allocated once and decoded into, with the archive's threads working on
    several tensors at once (the result is the same for any ``threads``). bfloat16 tensors
    come back as uint16 arrays of dtype :data:`alcm.bfloat16`; names stored as aliases (tied
    weights) share one array. Options as for :func:`open`; on an error, the exception names
    the first tensor of ``names`` (or of the archive) that fails.

    >>> _ = alcm.save("load.alcm", {"emb": np.eye(2, dtype=np.float32), "n": np.uint8(3)})
    >>> d = alcm.load("load.alcm", ["emb"])
    >>> list(d), d["emb"].dtype
    (['emb'], dtype('float32'))
    """
    with open(path, verify=verify, pubkey=pubkey, threads=threads, limits=limits) as arch:
        wanted = list(arch) if names is None else list(names)
        order = list(dict.fromkeys(arch._find(name) for name in wanted))
        # Tensors are what runs in parallel here, as well as a tensor's chunks.
        chunks = max([arch._entries[i][11] for i in order] + [1])
        arch._arch.set_threads(_threads(threads, max(chunks, len(order))))
        done = dict(zip(order, arch._arch.decode_many(order)))
        return {name: done[arch._find(name)] for name in wanted}


# ---- gradient streams ---------------------------------------------------------------------

class Stream:
    """An appendable stream archive for training loops: one frame per :meth:`append`.

    Each frame stores the same tensors (by position: keep the names and shapes), every value
    within the bound named. With ``error_feedback=True`` the coding error of a float tensor
    in frame t is added to it in frame t+1 before coding, so errors do not accumulate: the
    sum of the decoded frames stays within the bound of the sum of the originals, but a
    frame alone may then be off by up to twice the bound (its own error plus the carried
    one), which is why it is not the default. With ``schedule``
    (default; max_error and rel_error streams) the CAQ scheduler prunes more aggressively
    while the compression-per-CPU trend rises and every frame's SNR stays above
    ``fidelity_floor`` dB, between the bound given and ``bound_max`` (default: the bound
    itself, so the bound you name always holds). Every append is committed crash-safely.

    >>> grads = {"w": np.linspace(-1, 1, 4096, dtype=np.float32)}
    >>> with alcm.Stream("grads.alcm", max_error=1e-2) as s:
    ...     reports = [s.append(grads) for _ in range(3)]
    >>> [r.frame for r in reports], alcm.open("grads.alcm").frames
    ([0, 1, 2], 3)
    """

    def __init__(self, path: PathLike, *, max_error: Optional[float] = None,
                 rel_error: Optional[float] = None, snr: Optional[float] = None,
                 bits: Optional[int] = None, prune: Optional[float] = None,
                 schedule: bool = True, bound_max: Optional[float] = None,
                 fidelity_floor: float = 20.0, window: int = 5, error_feedback: bool = False,
                 resume: bool = False, overwrite: bool = False,
                 threads: Optional[int] = None) -> None:
        self._path = _path(path)
        mode, bound, nbits, p = _mode(max_error, rel_error, snr, bits, prune)
        sched = bool(schedule) and mode in (1, 2)
        if bound_max is None:
            bound_max = bound
        elif not sched:
            raise _arg_error("bound_max needs a scheduled max_error or rel_error stream")
        elif not bound_max >= bound or (mode == 2 and bound_max >= 1):
            raise _arg_error(f"bound_max must be at least the bound ({bound}) "
                             f"{'and below 1 ' if mode == 2 else ''}not {bound_max!r}")
        if isinstance(window, bool) or not isinstance(window, numbers.Integral) \
                or not 2 <= window <= 64:
            raise _arg_error(f"window must be an int in 2..64, not {window!r}")
        if not isinstance(fidelity_floor, numbers.Real) or not math.isfinite(fidelity_floor):
            raise _arg_error(f"fidelity_floor must be a number, not {fidelity_floor!r}")
        n = _threads(threads, 1 << 30)
        self._core = _core.Stream(mode=mode, bound=bound, bits=nbits, prune=p, threads=n,
                                  producer=_PRODUCER, error_feedback=bool(error_feedback),
                                  schedule=sched, bound_max=float(bound_max),
                                  fidelity_floor_db=float(fidelity_floor), window=int(window))
        self._names: Optional[list[str]] = None
        self._create, self._overwrite = True, overwrite
        if resume and os.path.lexists(self._path):
            self._core.resume(self._path)
            with open(self._path) as arch:
                self._names = list(arch._index)
            self._create = False
        elif not overwrite and os.path.lexists(self._path):
            raise _errors.make(_errors.ExistsError,
                               f"cannot write '{self._path}': file exists (resume=True "
                               "appends to it, overwrite=True replaces it)", path=self._path)
        self._closed = False

    def append(self, tensors: Mapping[str, Any]) -> FrameReport:
        """Codes one frame of ``tensors`` and commits it; returns its :class:`FrameReport`
        (ratio, CAQ, bound, SNR, the scheduler's decision for the next frame)."""
        if self._closed:
            raise ValueError("append to a closed Stream")
        if not isinstance(tensors, Mapping):
            raise TypeError("tensors must be a mapping of names to arrays")
        names = list(tensors)
        if self._names is not None and names != self._names:
            raise _arg_error("every frame of a stream holds the same tensors in the same order "
                             f"(first frame: {self._names[:4]}..., this one: {names[:4]}...)")
        lst = []
        for name, value in tensors.items():
            arr = value if isinstance(value, np.ndarray) else np.asarray(value)
            lst.append((_name_bytes(name), arr, _dtype_code(arr.dtype, name)))
        d = self._core.encode(self._path, self._create, lst, overwrite=self._overwrite)
        self._create = False
        self._names = names
        return FrameReport._from(d)

    @property
    def path(self) -> str:
        return self._path

    def close(self) -> None:
        """Ends the stream (every frame is already committed)."""
        self._closed = True

    def __enter__(self) -> "Stream":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
