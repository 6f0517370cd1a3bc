"""alcm: compressed tensor archives (``.alcm``), bit-exact or within a bound you name.

A thin layer over the C library libalcm: arrays are read in place and decoded straight into
the arrays returned, with the GIL released; archives from strangers get the library's
checks (every size and offset bounded, every section's digest verified), and nothing is
ever unpickled.

>>> import numpy as np, alcm
>>> w = np.random.default_rng(0).normal(size=(64, 64)).astype(np.float32)
>>> report = alcm.save("ckpt.alcm", {"layer.weight": w}, metadata={"format": "pt"})
>>> alcm.load("ckpt.alcm")["layer.weight"].tobytes() == w.tobytes()
True
>>> with alcm.open("ckpt.alcm") as arch:
...     arch.metadata, arch.info("layer.weight").shape
({'format': 'pt'}, (64, 64))

Names people type: :func:`save`, :func:`load`, :func:`open` (an :class:`Archive`),
:class:`Stream` (gradient frames), :func:`compress` / :func:`decompress` (one array),
:data:`bfloat16`, :func:`keypair`, :func:`h5filter` (h5py's filter arguments), and the exceptions (:class:`Error` and its subclasses).
PyTorch state dicts: ``alcm.torch.save`` / ``alcm.torch.load``.
"""

from ._errors import (ArgumentError, BoundError, DigestError, Error, ExistsError, FileError,
                      FormatError, LimitError, NotFoundError, OutOfMemoryError, SignatureError,
                      StateError, UnsupportedError)
from ._h5 import H5FILTER_ID, h5filter
from ._api import (Archive, FrameReport, SaveReport, Stream, TensorInfo, __version__, bfloat16,
                   compress, decompress, keypair, load, open, release_memory, save)

__all__ = [
    "save", "load", "open", "Archive", "TensorInfo", "SaveReport", "Stream", "FrameReport",
    "compress", "decompress", "bfloat16", "keypair", "release_memory", "h5filter", "H5FILTER_ID",
    "__version__",
    "Error", "ArgumentError", "FileError", "FormatError", "DigestError", "LimitError",
    "UnsupportedError", "OutOfMemoryError", "StateError", "ExistsError", "NotFoundError",
    "BoundError", "SignatureError",
]
