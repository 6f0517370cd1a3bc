"""Archives from strangers: every refusal is an alcm.Error naming the file, no crash, no
allocation the tensor does not need. Payloads are forged with correct digests (forge.py) so
that they reach the parsers and the Python layer instead of stopping at a digest check."""

from __future__ import annotations

import os
import struct

import numpy as np
import pytest

import alcm
import forge
from alcm import _core, _records


def rebuild(path, mutate):
    c = forge.parse(open(path, "rb").read())
    mutate(c)
    with open(path, "wb") as f:
        f.write(forge.build(c))


def tdir(c):
    return c.sections[c.find(b"TDIR")[-1]]


def test_forge_rebuilds_a_valid_archive(tmp):
    # The helper itself: an untouched archive rebuilt from the spec reads back the same.
    x = np.arange(100, dtype=np.float32)
    alcm.save("a.alcm", {"x": x}, metadata={"k": "v"})
    rebuild("a.alcm", lambda c: None)
    with alcm.open("a.alcm") as a:
        a.verify()
        assert np.array_equal(a["x"], x) and a.metadata == {"k": "v"}


def test_missing_truncated_and_garbage_files(tmp):
    with pytest.raises(alcm.FileError) as e:
        alcm.load("nope.alcm")
    assert isinstance(e.value, OSError) and "nope.alcm" in str(e.value)
    assert e.value.status == 2 and e.value.path == "nope.alcm"
    with open("g.alcm", "wb") as f:
        f.write(b"PK\x03\x04 definitely not an archive" * 10)
    with pytest.raises(alcm.FormatError) as e:
        alcm.open("g.alcm")
    assert "g.alcm" in str(e.value) and "offset" in e.value.detail
    alcm.save("t.alcm", {"x": np.arange(1000)})
    b = open("t.alcm", "rb").read()
    for n in (0, 100, 191, len(b) // 2, len(b) - 1):
        with open("cut.alcm", "wb") as f:
            f.write(b[:n])
        with pytest.raises(alcm.FormatError):
            alcm.load("cut.alcm")


def test_flipped_tensor_byte_is_a_digest_error_naming_the_section(tmp):
    x = np.random.default_rng(0).normal(size=20000).astype(np.float32)
    alcm.save("d.alcm", {"x": x, "y": np.arange(10)})
    c = forge.parse(open("d.alcm", "rb").read())
    i = c.find(b"LDAT")[0]
    b = bytearray(open("d.alcm", "rb").read())
    off = b.find(c.sections[i].data[:64])
    b[off + 100] ^= 0x40
    open("d.alcm", "wb").write(b)
    with alcm.open("d.alcm") as a:  # lazy: the directory is intact
        assert a.info("x").shape == (20000,)
        assert np.array_equal(a["y"], np.arange(10))  # other tensors still decode
        with pytest.raises(alcm.DigestError) as e:
            a["x"]
        assert f"section {i}" in str(e.value) and "d.alcm" in str(e.value)
        assert isinstance(e.value, alcm.FormatError) and e.value.status == 4
        with pytest.raises(alcm.StateError):
            a["y"]  # a decode error poisons the archive (alcm.h)
    with pytest.raises(alcm.DigestError):
        alcm.open("d.alcm").verify()
    # Without verification the flip goes unnoticed or breaks decoding, but never crashes.
    try:
        alcm.load("d.alcm", verify=False)
    except alcm.Error:
        pass


def test_zero_element_tensor_with_huge_dimensions(tmp):
    alcm.save("z.alcm", {"z": np.zeros((3, 0), np.float32)})

    def huge(c):
        t = tdir(c)
        e = forge.tdir_entry_offsets(t.data)[0]
        t.data = forge.patch(t.data, e["shape"], struct.pack("<Q", 1 << 62))

    rebuild("z.alcm", huge)
    with pytest.raises(alcm.Error) as e:
        alcm.load("z.alcm")
    # numpy cannot hold a shape whose dimensions multiply past 2^63 even with no element:
    # unsupported (or refused earlier by the library), never a crash or an allocation.
    assert isinstance(e.value, (alcm.UnsupportedError, alcm.FormatError, alcm.LimitError))
    assert "z.alcm" in str(e.value)

    def big_but_fine(c):
        t = tdir(c)
        e = forge.tdir_entry_offsets(t.data)[0]
        t.data = forge.patch(t.data, e["shape"], struct.pack("<Q", 1 << 40))

    alcm.save("y.alcm", {"z": np.zeros((3, 0), np.float32)})
    rebuild("y.alcm", big_but_fine)
    try:
        a = alcm.load("y.alcm")["z"]
        assert a.shape == (1 << 40, 0) and a.size == 0
    except alcm.Error:
        pass  # the library may refuse it (spec 6.3): either way no crash


def test_forged_shape_claiming_more_elements(tmp):
    alcm.save("s.alcm", {"x": np.arange(10, dtype=np.float32)})

    def grow(c):
        t = tdir(c)
        e = forge.tdir_entry_offsets(t.data)[0]
        t.data = forge.patch(t.data, e["shape"], struct.pack("<Q", 1 << 36))

    rebuild("s.alcm", grow)
    with pytest.raises((alcm.FormatError, alcm.LimitError)) as e:
        alcm.load("s.alcm")
    assert "s.alcm" in str(e.value)


def test_names_that_are_not_utf8(tmp):
    alcm.save("n.alcm", {"ab": np.arange(3)})

    def rename(c):
        t = tdir(c)
        e = forge.tdir_entry_offsets(t.data)[0]
        t.data = forge.patch(t.data, e["name"], b"\xff\xfe")

    rebuild("n.alcm", rename)
    d = alcm.load("n.alcm")
    (name,) = d
    assert name.encode("utf-8", "surrogateescape") == b"\xff\xfe"
    alcm.save("m.alcm", d)  # and the bytes come back as they were
    c = forge.parse(open("m.alcm", "rb").read())
    assert b"\xff\xfe" in tdir(c).data


def raw_archive(path, meta):
    """An archive with extra META pairs written as given (the package's own writer)."""
    pk = _core.Packer(path, True)
    try:
        pk.add(b"a", np.arange(4), 9)
        pk.add(b"b", np.arange(5), 9)
        for k, v in meta:
            pk.set_meta(k, v)
        pk.finish()
        pk.commit()
    finally:
        pk.close()


ALIAS_CASES = [
    (b"", "bytes"),
    (b"\x01\x00\x00", "bytes"),
    (struct.pack("<I", 1000), "count 1000"),
    (struct.pack("<I", 1) + struct.pack("<I", 50) + b"x" * 8, "runs past"),
    (struct.pack("<I", 1) + struct.pack("<I", 1) + b"c" + struct.pack("<I", 0xFFFFFFFF),
     "runs past"),
    (_records.encode_aliases([(b"c", b"a")]) + b"\0", "left over"),
    (_records.encode_aliases([(b"c", b"zz")]), "not a tensor"),
    (_records.encode_aliases([(b"b", b"a")]), "twice"),
    (_records.encode_aliases([(b"c", b"a"), (b"c", b"b")]), "twice"),
    (_records.encode_aliases([(b"c", b"a"), (b"d", b"c")]), "not a tensor"),  # no chains
]


@pytest.mark.parametrize("value,why", ALIAS_CASES)
def test_malformed_alias_records_are_refused(tmp, value, why):
    raw_archive("a.alcm", [("alcm.alias", value)])
    with pytest.raises(alcm.FormatError) as e:
        alcm.open("a.alcm")
    assert why in str(e.value) and "a.alcm" in str(e.value) and "alcm.alias" in str(e.value)


def test_valid_alias_record_written_by_hand(tmp):
    raw_archive("a.alcm", [("alcm.alias", _records.encode_aliases([(b"c", b"b"),
                                                                    (b"d", b"a")]))])
    d = alcm.load("a.alcm")
    assert list(d) == ["a", "b", "c", "d"] and d["c"] is d["b"] and d["d"] is d["a"]


def test_user_metadata_that_is_not_utf8(tmp):
    raw_archive("m.alcm", [("user.k", b"\xff\x00ok"), ("user.k2", b"v"), ("other", b"x"),
                           ("user.k2", b"last")])
    with alcm.open("m.alcm") as a:
        md = a.metadata
    assert md["k"].encode("utf-8", "surrogateescape") == b"\xff\x00ok"
    assert md["k2"] == "last" and "other" not in md


def test_spec_vector_of_the_alias_record():
    # spec 6.1.2: lm_head.weight -> embed.weight
    v = _records.encode_aliases([(b"lm_head.weight", b"embed.weight")])
    assert v.hex() == ("01000000" "0e000000" + b"lm_head.weight".hex() +
                       "0c000000" + b"embed.weight".hex())
    assert _records.decode_aliases(v, None) == [(b"lm_head.weight", b"embed.weight")]


def test_bad_digest_in_meta_is_caught_at_open(tmp):
    alcm.save("m.alcm", {"x": np.arange(3)}, metadata={"k": "v"})
    c = forge.parse(open("m.alcm", "rb").read())
    i = c.find(b"META")[-1]
    b = bytearray(open("m.alcm", "rb").read())
    off = b.find(c.sections[i].data)
    b[off + len(c.sections[i].data) - 1] ^= 1
    open("m.alcm", "wb").write(b)
    with pytest.raises(alcm.DigestError) as e:
        alcm.open("m.alcm")
    assert "META" in str(e.value)


def test_no_pickle_anywhere():
    import alcm as pkg
    src = os.path.dirname(pkg.__file__)
    for name in os.listdir(src):
        if name.endswith(".py"):
            text = open(os.path.join(src, name)).read()
            assert "import pickle" not in text and "allow_pickle" not in text, name
