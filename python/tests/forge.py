"""Reads and rewrites .alcm containers from the spec alone (chapter 4), digests included:
the tests forge hostile payloads that pass every digest, so that they reach the decoders."""

from __future__ import annotations

import dataclasses
import hashlib
import struct

SIGNATURE = b"\x89ALCM\r\n\x1a\n"


def digest(b: bytes) -> bytes:
    return hashlib.blake2b(b, digest_size=32).digest()


@dataclasses.dataclass
class Section:
    type: bytes
    flags: int
    tag: int
    data: bytes


@dataclasses.dataclass
class Container:
    major: int
    minor: int
    flags: int
    sections: list[Section]

    def find(self, type_: bytes) -> list[int]:
        return [i for i, s in enumerate(self.sections) if s.type == type_]


def parse(b: bytes) -> Container:
    """A committed archive written by the library (slot A or B, whichever is newer)."""
    assert b[:9] == SIGNATURE
    major = b[9]
    (minor,) = struct.unpack_from("<H", b, 10)
    (flags,) = struct.unpack_from("<I", b, 12)
    slots = []
    for off in (64, 128):
        gen, toff, tsize = struct.unpack_from("<QQQ", b, off)
        if gen and digest(b[:64] + b[off:off + 32]) == b[off + 32:off + 64]:
            slots.append((gen, toff, tsize))
    gen, toff, tsize = max(slots)
    assert b[toff:toff + 4] == b"ATBL"
    (count,) = struct.unpack_from("<I", b, toff + 4)
    secs = []
    for i in range(count):
        e = toff + 16 + 64 * i
        typ = b[e:e + 4]
        fl, tag = struct.unpack_from("<II", b, e + 4)
        so, sl = struct.unpack_from("<QQ", b, e + 16)
        secs.append(Section(typ, fl, tag, b[so:so + sl]))
    return Container(major, minor, flags, secs)


def build(c: Container) -> bytes:
    """A new archive (generation 1, slot A) of the sections, every digest correct."""
    out = bytearray(192)
    entries = []
    for s in c.sections:
        off = len(out)
        out += s.data
        out += b"\0" * (-len(out) % 64)
        entries.append(s.type + struct.pack("<III", s.flags, s.tag, 0) +
                       struct.pack("<QQ", off, len(s.data)) + digest(s.data))
    toff = len(out)
    table = b"ATBL" + struct.pack("<IQ", len(entries), 0) + b"".join(entries)
    table += digest(table)
    out += table
    head = SIGNATURE + bytes([c.major]) + struct.pack("<HII", c.minor, c.flags, 192) + \
        bytes([6]) + b"\0" * 11
    head += digest(head)
    slot = struct.pack("<QQQQ", 1, toff, len(table), 0)
    slot += digest(head + slot)
    out[0:64] = head
    out[64:128] = slot
    return bytes(out)


def tdir_entry_offsets(tdir: bytes) -> list[dict]:
    """Offsets of the fields of each TDIR entry (spec 6.3)."""
    (count,) = struct.unpack_from("<I", tdir, 0)
    pos, out = 4, []
    for _ in range(count):
        e = {"start": pos}
        (nl,) = struct.unpack_from("<I", tdir, pos)
        e["name"] = pos + 4
        e["name_len"] = nl
        pos += 4 + nl
        e["dtype"], e["mode"], e["ndim"] = pos, pos + 1, pos + 2
        ndim = tdir[pos + 2]
        pos += 4
        e["shape"] = pos
        pos += 8 * ndim
        e["data_section"] = pos
        pos += 12
        e["chunk_elems"] = pos
        (ce, cc) = struct.unpack_from("<QQ", tdir, pos)
        e["chunk_count"] = pos + 8
        pos += 16 + 8 + 8 + 8 + 8
        pos += 16 * cc
        out.append(e)
    assert pos == len(tdir)
    return out


def patch(data: bytes, offset: int, new: bytes) -> bytes:
    return data[:offset] + new + data[offset + len(new):]
