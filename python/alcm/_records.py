"""The META records of spec section 6.1 that the Python package reads and writes.

- ``user.K``: the user's string metadata (``alcm.save(metadata=)``, a safetensors file's
  ``__metadata__``): key K and its value, both UTF-8 text.
- ``alcm.alias``: tensors stored once for several names (tied weights)::

      u32 count
      count x { u32 alias_len; u8 alias[alias_len]; u32 target_len; u8 target[target_len] }

  The tensor named ``alias`` is the tensor named ``target`` of the same directory.
"""

from __future__ import annotations

import struct

from . import _errors

USER_PREFIX = "user."
ALIAS_KEY = "alcm.alias"
#: the format minor version whose records these are (spec chapter 8)
MINOR = 1

_U32 = struct.Struct("<I")


def encode_aliases(pairs: list[tuple[bytes, bytes]]) -> bytes:
    """The ``alcm.alias`` value of (alias, target) name pairs, in order."""
    out = [_U32.pack(len(pairs))]
    for alias, target in pairs:
        out += [_U32.pack(len(alias)), alias, _U32.pack(len(target)), target]
    return b"".join(out)


def decode_aliases(value: bytes, path: str | None) -> list[tuple[bytes, bytes]]:
    """Parses an ``alcm.alias`` value; a malformed one raises :class:`alcm.FormatError`."""

    def bad(why: str) -> _errors.Error:
        return _errors.make(_errors.FormatError,
                            f"cannot read '{path}': META key {ALIAS_KEY}: {why}",
                            detail=f"META key {ALIAS_KEY}: {why}", path=path)

    n = len(value)
    if n < 4:
        raise bad(f"{n} bytes, expected at least 4")
    (count,) = _U32.unpack_from(value, 0)
    if count > (n - 4) // 8:
        raise bad(f"count {count} cannot fit in {n} bytes")
    pos, pairs = 4, []
    for i in range(count):
        names = []
        for _ in range(2):
            if pos + 4 > n:
                raise bad(f"pair {i} runs past the value at offset {pos}")
            (ln,) = _U32.unpack_from(value, pos)
            pos += 4
            if ln > n - pos:
                raise bad(f"pair {i}: a name of {ln} bytes runs past the value at offset {pos}")
            names.append(bytes(value[pos:pos + ln]))
            pos += ln
        pairs.append((names[0], names[1]))
    if pos != n:
        raise bad(f"{n - pos} bytes left over at offset {pos}")
    return pairs
