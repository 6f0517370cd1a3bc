"""PyTorch state dicts in alcm archives, without pickle.

:func:`save` stores every tensor of a state dict (float32, float16, bfloat16, float64,
int8, int16, int32, int64, uint8, bool: bit-exact unless a lossy option is named), and
:func:`load` gives them back as torch tensors. Tensors that share one view of memory (tied
weights, e.g. an embedding and the output layer) are stored once and come back as one
tensor under both names. A non-contiguous tensor is stored in C order (one copy), and a
view of a larger storage stores only its own elements (``torch.save`` writes the whole
storage). Nothing is pickled: a state dict holding anything but tensors is refused, and so
is a sparse, quantized or complex tensor.

>>> import torch, alcm.torch
>>> model = torch.nn.Linear(4, 2)
>>> _ = alcm.torch.save("linear.alcm", model.state_dict())
>>> state = alcm.torch.load("linear.alcm")
>>> model.load_state_dict(state)
<All keys matched successfully>
>>> bool(torch.equal(state["weight"], model.weight))
True
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Optional, Union

import numpy as np
import torch

from . import _api, _errors

__all__ = ["save", "load"]

_DIRECT = {torch.float32, torch.float16, torch.float64, torch.int8, torch.int16, torch.int32,
           torch.int64, torch.uint8, torch.bool}
_FROM_NUMPY_OK = {np.dtype(t) for t in (np.float32, np.float16, np.float64, np.int8, np.int16,
                                        np.int32, np.int64, np.uint8, np.bool_)}


def _unsupported(name: str, why: str) -> _errors.Error:
    return _errors.make(_errors.UnsupportedError, f"tensor {name!r}: {why}")


def _check(name: str, t: Any) -> None:
    if t.layout != torch.strided:
        raise _unsupported(name, f"{t.layout} tensors are not stored (only dense ones)")
    if t.is_quantized:
        raise _unsupported(name, "quantized tensors are not stored")
    if t.dtype not in _DIRECT and t.dtype != torch.bfloat16:
        raise _unsupported(name, f"dtype {t.dtype} is not stored by alcm")


def _to_numpy(name: str, t: Any) -> np.ndarray:
    """A numpy view of a CPU tensor's elements (no copy; strides kept)."""
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().view(_api.bfloat16)
    return t.numpy()


def _arrays(state_dict: Mapping[str, Any]) -> dict[str, np.ndarray]:
    if not isinstance(state_dict, Mapping):
        raise TypeError("state_dict must be a mapping of names to tensors")
    out: dict[str, np.ndarray] = {}
    shared: dict[tuple, np.ndarray] = {}
    for name, t in state_dict.items():
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"state_dict[{name!r}] is a {type(t).__name__}, not a tensor: "
                            "alcm stores tensors only (nothing is pickled)")
        _check(name, t)
        t = t.detach()
        # Tied weights: the same view of the same memory gives the same numpy array, which
        # alcm.save stores once (also when a copy to the CPU would have separated them).
        key = (t.device, t.data_ptr(), t.dtype, tuple(t.shape), t.stride()) \
            if t.numel() else None
        if key is not None and key in shared:
            out[name] = shared[key]
            continue
        if t.device.type != "cpu":
            t = t.cpu()
        if t.is_neg():
            t = t.resolve_neg()
        a = _to_numpy(name, t)
        if key is not None:
            shared[key] = a
        out[name] = a
    return out


def save(path: _api.PathLike, state_dict: Mapping[str, Any], **options: Any) -> _api.SaveReport:
    """Writes a state dict (names to tensors) to an archive.

    ``options`` are those of :func:`alcm.save` (``max_error=``, ``size=``, ``metadata=``,
    ``sign_key=``, ``overwrite=``, ...); lossless by default. Tensors on another device are
    copied to the CPU first. The archive records ``alcm.source_format`` ``pt``.
    """
    return _api._save(path, _arrays(state_dict), source_format="pt", **options)[0]


def _to_torch(name: str, a: np.ndarray) -> Any:
    md = a.dtype.metadata
    if md and md.get("alcm.dtype") == "bfloat16":
        return torch.from_numpy(a.view(np.int16)).view(torch.bfloat16)
    if a.dtype not in _FROM_NUMPY_OK:
        raise _unsupported(name, f"torch has no {a.dtype} tensors")
    return torch.from_numpy(a)


def load(path: _api.PathLike, map_location: Union[str, "torch.device", None] = "cpu", *,
         names: Optional[list[str]] = None, verify: bool = True, pubkey: Any = None,
         threads: Optional[int] = None,
         limits: Optional[Mapping[str, int]] = None) -> dict[str, Any]:
    """Reads an archive into a state dict of torch tensors (all, or those in ``names``).

    ``map_location`` moves the tensors to a device (``"cpu"``: they share the memory
    decoded into, no copy). Names stored as aliases (tied weights) give one tensor. A tensor
    torch has no dtype for (uint16, uint32, uint64) raises :class:`alcm.UnsupportedError`.
    Other options as for :func:`alcm.open`.
    """
    if map_location is not None and not isinstance(map_location, (str, torch.device)):
        raise TypeError("map_location must be a str, a torch.device or None")
    dev = torch.device(map_location) if map_location is not None else None
    arrays = _api.load(path, names, verify=verify, pubkey=pubkey, threads=threads,
                       limits=limits)
    out: dict[str, Any] = {}
    done: dict[int, Any] = {}
    for name, a in arrays.items():
        t = done.get(id(a))
        if t is None:
            t = _to_torch(name, a)
            if dev is not None and dev.type != "cpu":
                t = t.to(dev)
            done[id(a)] = t
        out[name] = t
    return out
