"""alcm.save / alcm.load / alcm.open with numpy arrays: what a user relies on."""

from __future__ import annotations

import os
import pathlib
import struct

import numpy as np
import pytest

import alcm

RNG = np.random.default_rng(1234)

ALL_DTYPES = [np.bool_, np.uint8, np.int8, np.uint16, np.int16, np.uint32, np.int32,
              np.uint64, np.int64, np.float16, np.float32, np.float64]


def random_array(dtype, shape):
    dt = np.dtype(dtype)
    raw = RNG.integers(0, 256, size=int(np.prod(shape)) * dt.itemsize, dtype=np.uint8)
    a = raw.view(dt).reshape(shape).copy() if dt != np.bool_ else raw.astype(bool).reshape(shape)
    return a


def same_bits(a, b):
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


@pytest.mark.parametrize("dtype", ALL_DTYPES)
def test_every_dtype_round_trips_bit_exact(tmp, dtype):
    # Random bit patterns: NaN payloads, -0, infinities and subnormals included.
    t = {"a": random_array(dtype, (37, 5)), "scalar": random_array(dtype, ()),
         "empty": np.zeros((0, 3), dtype)}
    alcm.save("x.alcm", t)
    back = alcm.load("x.alcm")
    assert list(back) == ["a", "scalar", "empty"]
    for k in t:
        assert same_bits(back[k], t[k]), k


def test_bfloat16_is_a_marked_uint16_view(tmp):
    bits = RNG.integers(0, 1 << 16, size=(8, 9), dtype=np.uint16)
    alcm.save("b.alcm", {"bf": bits.view(alcm.bfloat16), "u16": bits})
    with alcm.open("b.alcm") as a:
        assert a.info("bf").dtype == "bfloat16"
        assert a.info("u16").dtype == "uint16"
        bf, u16 = a["bf"], a["u16"]
    assert bf.dtype == np.uint16 and bf.dtype.metadata == {"alcm.dtype": "bfloat16"}
    assert u16.dtype.metadata is None
    assert bf.tobytes() == bits.tobytes() == u16.tobytes()
    # Saving what was loaded keeps bfloat16 (no silent change of dtype on a round trip).
    alcm.save("c.alcm", alcm.load("b.alcm"))
    assert alcm.open("c.alcm").info("bf").dtype == "bfloat16"


def test_bfloat16_lossy_mode_applies(tmp):
    x = RNG.normal(size=4096).astype(np.float32)
    bf = (x.view(np.uint32) >> 16).astype(np.uint16)
    alcm.save("b.alcm", {"w": bf.view(alcm.bfloat16)}, max_error=0.05)
    with alcm.open("b.alcm") as a:
        assert a.info("w").mode == "max_error"
        back = a["w"]
    f = lambda u: (u.astype(np.uint32) << 16).view(np.float32)  # noqa: E731
    assert np.abs(f(back) - f(bf)).max() <= 0.05


def test_layouts_are_read_correctly(tmp):
    base = RNG.normal(size=(6, 8)).astype(np.float64)
    t = {"fortran": np.asfortranarray(base), "transposed": base.T, "strided": base[::2, 1::3],
         "bigendian": base.astype(">f8"), "reversed": base[::-1], "list": [[1, 2], [3, 4]]}
    alcm.save("l.alcm", t)
    back = alcm.load("l.alcm")
    for k, v in t.items():
        v = np.asarray(v)
        assert back[k].flags.c_contiguous
        assert np.array_equal(back[k], v) and back[k].dtype == v.dtype.newbyteorder("=")


def test_contiguous_input_is_read_in_place_and_output_owned(tmp):
    # Zero copies: the encoder reads the caller's buffer (a read-only one works), and the
    # decoder returns a fresh array it wrote into.
    x = np.frombuffer(RNG.normal(size=1000).astype(np.float32).tobytes(), np.float32)
    assert not x.flags.writeable
    alcm.save("r.alcm", {"x": x})
    y = alcm.load("r.alcm")["x"]
    assert y.flags.owndata and y.flags.writeable and y.flags.c_contiguous
    assert same_bits(x, y)


def test_paths_may_be_pathlike(tmp):
    p = pathlib.Path(tmp) / "p.alcm"
    alcm.save(p, {"x": np.arange(3)})
    assert alcm.load(p)["x"].tolist() == [0, 1, 2]
    with alcm.open(p) as a:
        assert len(a) == 1


def test_existing_file_needs_overwrite(tmp):
    alcm.save("e.alcm", {"x": np.arange(3)})
    with pytest.raises(alcm.ExistsError) as e:
        alcm.save("e.alcm", {"x": np.arange(4)})
    assert isinstance(e.value, FileExistsError) and "e.alcm" in str(e.value)
    assert alcm.load("e.alcm")["x"].size == 3
    alcm.save("e.alcm", {"x": np.arange(4)}, overwrite=True)
    assert alcm.load("e.alcm")["x"].size == 4
    assert sorted(os.listdir(tmp)) == ["e.alcm"]  # no temporary file left behind


def test_failed_save_leaves_nothing(tmp):
    with pytest.raises(TypeError):
        alcm.save("f.alcm", {"ok": np.arange(3), "bad": np.array(["a", "b"])})
    with pytest.raises(TypeError):
        alcm.save("f.alcm", {"obj": np.array([object()])})
    assert os.listdir(tmp) == []


def test_unicode_and_odd_names(tmp):
    t = {"": np.arange(2), "é/ü.weight": np.arange(3), "a\nb": np.arange(4), "\udcff": np.ones(1)}
    alcm.save("n.alcm", t)
    back = alcm.load("n.alcm")
    assert list(back) == list(t)
    with pytest.raises(TypeError):
        alcm.save("m.alcm", {1: np.arange(2)})


def test_lossy_modes_hold_their_bounds(tmp):
    x = RNG.normal(size=(64, 256)).astype(np.float32)
    x[0, :4] = [np.nan, np.inf, -0.0, 1e-42]
    ints = np.arange(100, dtype=np.int32)
    r = alcm.save("me.alcm", {"x": x, "i": ints}, max_error=1e-2)
    assert r.downgraded == 1 and r.ratio > 2
    back = alcm.load("me.alcm")
    fin = np.isfinite(x)
    assert np.abs(back["x"][fin] - x[fin]).max() <= 1e-2
    assert back["x"][0, :4].tobytes() == x[0, :4].tobytes()  # specials exact
    assert np.array_equal(back["i"], ints)

    alcm.save("re.alcm", {"x": x}, rel_error=1e-2)
    y = alcm.load("re.alcm")["x"]
    for c in range(1, 64):
        assert np.abs(y[c] - x[c]).max() <= 1e-2 * np.abs(x[c]).max() * (1 + 1e-6)

    alcm.save("snr.alcm", {"x": x[1:]}, snr=30)
    y = alcm.load("snr.alcm")["x"]
    snr = 10 * np.log10((x[1:].astype(np.float64) ** 2).sum() / ((y - x[1:]) ** 2).sum())
    assert snr >= 30

    alcm.save("bits.alcm", {"x": x}, bits=6, prune=0.1)
    with alcm.open("bits.alcm") as a:
        i = a.info("x")
        assert (i.mode, i.bits) == ("bits", 6) and i.pruned > 0


def test_option_errors(tmp):
    x = {"x": np.ones(4, np.float32)}
    for kw in ({"max_error": 1e-3, "snr": 20}, {"max_error": 0}, {"max_error": -1},
               {"rel_error": 1.0}, {"snr": 400}, {"bits": 1}, {"bits": 17}, {"prune": 0.1},
               {"max_error": 1e-3, "prune": 0.3}, {"threads": -1}, {"size": 0},
               {"ratio": 1.0}, {"max_error": float("nan")}):
        with pytest.raises(alcm.ArgumentError):
            alcm.save("o.alcm", x, **kw)
    assert not os.path.exists("o.alcm")


def test_threads_do_not_change_the_bytes(tmp):
    x = RNG.normal(size=(3, 1 << 20)).astype(np.float32)  # 12 MiB: 3 chunks
    for n in (1, 2, 4, None):
        alcm.save(f"t{n}.alcm", {"x": x}, max_error=1e-3, threads=n)
    blobs = {open(f"t{n}.alcm", "rb").read() for n in (1, 2, 4, None)}
    assert len(blobs) == 1
    for n in (1, 3):
        assert np.abs(alcm.load("t1.alcm", threads=n)["x"] - x).max() <= 1e-3


def test_open_reads_the_directory_without_decoding(tmp):
    x = RNG.normal(size=(16, 32)).astype(np.float32)
    alcm.save("o.alcm", {"x": x, "y": np.arange(5, dtype=np.int16)}, max_error=1e-3)
    with alcm.open("o.alcm") as a:
        assert len(a) == 2 and "x" in a and "z" not in a and list(a.keys()) == ["x", "y"]
        i = a.info("x")
        assert (i.name, i.dtype, i.shape, i.mode, i.bound) == ("x", "float32", (16, 32),
                                                                "max_error", 1e-3)
        assert 0 < i.stored_bytes < i.raw_bytes == x.nbytes and i.max_abs_error <= 1e-3
        assert a.info("y").mode == "lossless"
        # 512 values at 1e-3: modelled symbols with 8 rANS states (coding 18, spec 6.5.14)
        # beat byte planes, so the archive is format 1.1.
        assert a.frames == 1 and a.report is None and a.version == (1, 1)
        a.verify()
        with pytest.raises(KeyError) as e:
            a["z"]
        assert isinstance(e.value, alcm.NotFoundError) and "'z'" in str(e.value)
        with pytest.raises(alcm.NotFoundError):
            a.info("z")
    with pytest.raises(ValueError):
        a["x"]  # closed


def test_load_names_subset(tmp):
    alcm.save("s.alcm", {"a": np.arange(3), "b": np.arange(4)})
    assert list(alcm.load("s.alcm", ["b"])) == ["b"]
    with pytest.raises(alcm.NotFoundError):
        alcm.load("s.alcm", ["nope"])


def test_metadata_round_trips_and_needs_format_1_1(tmp):
    md = {"format": "pt", "note": "ünïcode ✓", "": "empty key", "k": ""}
    alcm.save("m.alcm", {"x": np.arange(3)}, metadata=md)
    alcm.save("plain.alcm", {"x": np.arange(3)})
    with alcm.open("m.alcm") as a:
        assert a.metadata == md and a.version == (1, 1)
    with alcm.open("plain.alcm") as a:
        assert a.metadata == {} and a.version == (1, 0)
    # The header of an archive without 1.1 records stays 1.0 (byte 10, spec 4.2).
    assert open("plain.alcm", "rb").read(12)[9:12] == b"\x01\x00\x00"
    for bad in ({"k": 1}, {2: "v"}, ["k"]):
        with pytest.raises(TypeError):
            alcm.save("bad.alcm", {"x": np.arange(3)}, metadata=bad)
    with pytest.raises(alcm.ArgumentError):
        alcm.save("bad.alcm", {"x": np.arange(3)}, metadata={"a\0b": "v"})


def test_shared_arrays_are_stored_once_and_shared_again(tmp):
    w = RNG.normal(size=(256, 64)).astype(np.float32)
    alcm.save("tied.alcm", {"embed": w, "other": w + 1, "lm_head": w, "view": w[:]})
    alcm.save("copy.alcm", {"embed": w, "other": w + 1, "lm_head": w.copy()})
    assert os.path.getsize("tied.alcm") < os.path.getsize("copy.alcm") - w.nbytes // 2
    with alcm.open("tied.alcm") as a:
        assert list(a) == ["embed", "other", "lm_head", "view"]
        assert a.info("lm_head").alias_of == "embed" and a.info("embed").alias_of is None
        assert np.array_equal(a["lm_head"], w) and a.version == (1, 1)
    back = alcm.load("tied.alcm")
    assert back["lm_head"] is back["embed"] is back["view"]
    assert back["other"] is not back["embed"]
    assert list(alcm.load("tied.alcm", ["lm_head"])) == ["lm_head"]
    # Same memory seen as another dtype or shape is not the same tensor.
    alcm.save("views.alcm", {"a": w, "b": w.view(np.int32), "c": w.reshape(-1)})
    with alcm.open("views.alcm") as a:
        assert all(a.info(k).alias_of is None for k in a)


def test_report(tmp):
    x = np.zeros((1000,), np.float32)
    r = alcm.save("r.alcm", {"x": x, "y": x})
    assert r.tensors == 2 and r.raw_bytes == 4000
    assert r.stored_bytes == os.path.getsize("r.alcm") and r.ratio == 4000 / r.stored_bytes


def test_compress_decompress(tmp):
    x = RNG.normal(size=(33, 17)).astype(np.float16)
    blob = alcm.compress(x)
    assert isinstance(blob, bytes)
    for form in (blob, bytearray(blob), memoryview(blob)):
        assert same_bits(alcm.decompress(form), x)
    y = alcm.decompress(alcm.compress(x, max_error=1e-2))
    assert np.abs(y.astype(np.float32) - x.astype(np.float32)).max() <= 1e-2
    assert alcm.compress(x) == blob  # deterministic
    assert alcm.decompress(alcm.compress(np.float64(2.5))).shape == ()
    with pytest.raises(alcm.FormatError) as e:
        alcm.decompress(b"not an archive")
    assert "<bytes>" in str(e.value)
    alcm.save("two.alcm", {"a": np.arange(2), "b": np.arange(2)})
    with pytest.raises(alcm.FormatError):
        alcm.decompress(open("two.alcm", "rb").read())


def test_stream_frames_and_report(tmp):
    rng = np.random.default_rng(5)
    frames = [{"g": rng.normal(size=(32, 512)).astype(np.float32) * 1e-2,
               "step": np.int64(i)} for i in range(6)]
    with alcm.Stream("s.alcm", max_error=1e-3) as s:
        reps = [s.append(f) for f in frames]
    assert [r.frame for r in reps] == list(range(6))
    assert reps[0].decision == "start" and all(r.ratio > 1 for r in reps)
    assert all(r.max_abs_error <= 1e-3 and r.bound == 1e-3 for r in reps)
    with alcm.open("s.alcm") as a:
        assert a.frames == 6 and a.frame_number == 5
        assert a.report.frame == 5 and a.report.decision == reps[5].decision
        for i in (0, 3, 5):
            f = a.frame(i)
            # FRAM records the scheduler's nominal CAQ and the bytes before FRAM and TDIR
            # (spec 6.8); the rest is what append() returned.
            rec = f.report
            assert f.frame_number == i and rec.frame == i
            for k in ("decision", "bound", "prune", "snr_db", "max_abs_error", "raw_bytes"):
                assert getattr(rec, k) == getattr(reps[i], k), k
            assert int(f["step"]) == i
            assert np.abs(f["g"] - frames[i]["g"]).max() <= 1e-3
        with pytest.raises(alcm.NotFoundError):
            a.frame(6)


def test_stream_error_feedback(tmp):
    rng = np.random.default_rng(6)
    frames = [{"g": rng.normal(size=(16, 256)).astype(np.float32) * 1e-2} for _ in range(8)]
    bound = 2e-3
    for fb in (False, True):
        with alcm.Stream(f"s{fb}.alcm", max_error=bound, error_feedback=fb) as s:
            for f in frames:
                s.append(f)
    exact = np.cumsum([f["g"].astype(np.float64) for f in frames], axis=0)
    drift = {}
    for fb in (False, True):
        with alcm.open(f"s{fb}.alcm") as a:
            dec = np.cumsum([a.frame(i)["g"].astype(np.float64) for i in range(8)], axis=0)
        drift[fb] = np.abs(dec - exact).max(axis=(1, 2))
    # With feedback the running sum stays within one bound (float32 rounding aside); without
    # it the errors add up.
    assert drift[True].max() <= bound * 1.001
    assert drift[False][-1] > 1.5 * bound


def test_stream_resume_and_rules(tmp):
    x = {"w": np.ones(100, np.float32)}
    with alcm.Stream("r.alcm", rel_error=1e-2) as s:
        s.append(x)
        with pytest.raises(alcm.ArgumentError):
            s.append({"other": np.ones(100, np.float32)})
    with pytest.raises(alcm.ExistsError):
        alcm.Stream("r.alcm", rel_error=1e-2)
    s = alcm.Stream("r.alcm", rel_error=1e-2, resume=True)
    assert s.append(x).frame == 1
    assert alcm.open("r.alcm").frames == 2
    s = alcm.Stream("r.alcm", overwrite=True)
    assert s.append(x).frame == 0 and alcm.open("r.alcm").frames == 1
    with pytest.raises(alcm.ArgumentError):
        alcm.Stream("z.alcm", max_error=1e-3, bound_max=1e-4)
    with pytest.raises(alcm.ArgumentError):
        alcm.Stream("z.alcm", snr=20, bound_max=30)


def test_signatures(tmp):
    pk, sk = alcm.keypair()
    pk2, _ = alcm.keypair()
    alcm.save("s.alcm", {"x": np.arange(10)}, sign_key=sk)
    alcm.save("u.alcm", {"x": np.arange(10)})
    assert alcm.load("s.alcm", pubkey=pk)["x"].size == 10
    alcm.open("s.alcm").verify(pubkey=pk)
    for path, key, what in (("s.alcm", pk2, "other key"), ("u.alcm", pk, "no signature")):
        with pytest.raises(alcm.SignatureError) as e:
            alcm.load(path, pubkey=key)
        assert what in str(e.value) and path in str(e.value)
    with pytest.raises(alcm.ArgumentError):
        alcm.open("s.alcm", pubkey=pk, verify=False)
    with pytest.raises(alcm.ArgumentError):
        alcm.save("t.alcm", {"x": np.arange(3)}, sign_key=b"short")
    # Key files as alcm-keygen writes them.
    with open("k.key", "w") as f:
        f.write("alcm-ed25519-secret-key " + sk.hex() + "\n")
    with open("k.pub", "w") as f:
        f.write("alcm-ed25519-public-key " + pk.hex() + "\n")
    alcm.save("f.alcm", {"x": np.arange(3)}, sign_key="k.key")
    alcm.load("f.alcm", pubkey=pathlib.Path("k.pub"))
    with pytest.raises(alcm.FormatError):
        alcm.load("f.alcm", pubkey="k.key")  # a secret key file is not a public one


def test_size_budget(tmp):
    rng = np.random.default_rng(7)
    t = {f"l{i}.w": (rng.normal(size=(128, 256)) * (i + 1) * 0.01).astype(np.float32)
         for i in range(4)}
    t["ids"] = np.arange(1000, dtype=np.int64)
    raw = sum(v.nbytes for v in t.values())
    r = alcm.save("s.alcm", t, size=raw // 6)
    assert abs(os.path.getsize("s.alcm") - raw / 6) <= 0.03 * raw / 6
    assert r.stored_bytes == os.path.getsize("s.alcm")
    back = alcm.load("s.alcm")
    assert np.array_equal(back["ids"], t["ids"])
    with alcm.open("s.alcm") as a:
        for k in t:
            if k != "ids":
                i = a.info(k)
                assert i.mode == "max_error"
                assert np.abs(back[k] - t[k]).max() <= i.bound
    alcm.save("r.alcm", t, ratio=5)
    assert abs(os.path.getsize("r.alcm") - raw / 5) <= 0.03 * raw / 5
    with pytest.raises(alcm.BoundError) as e:
        alcm.save("tiny.alcm", t, size=100)
    assert "cannot fit" in str(e.value)
    assert not os.path.exists("tiny.alcm")
    assert sorted(os.listdir(tmp)) == ["r.alcm", "s.alcm"]


def test_limits(tmp):
    alcm.save("l.alcm", {"x": np.zeros(1000, np.float64)})
    with pytest.raises(alcm.LimitError):
        alcm.load("l.alcm", limits={"max_decoded_bytes": 4000})
    assert alcm.load("l.alcm", limits={"max_decoded_bytes": 8000})["x"].size == 1000
    with pytest.raises(ValueError):
        alcm.open("l.alcm", limits={"max_nothing": 1})


def test_header_fields_are_as_specified(tmp):
    alcm.save("h.alcm", {"x": np.arange(3)})
    b = open("h.alcm", "rb").read(16)
    assert b[:9] == b"\x89ALCM\r\n\x1a\n" and b[9] == 1
    assert struct.unpack_from("<I", b, 12)[0] == 0  # not a stream


def test_bad_paths(tmp):
    with pytest.raises(ValueError):
        alcm.save("a\0b.alcm", {"x": np.arange(3)})
    with pytest.raises(alcm.FileError) as e:
        alcm.save("no/such/dir/x.alcm", {"x": np.arange(3)})
    assert isinstance(e.value, OSError) and "no/such/dir/x.alcm" in str(e.value)
    with pytest.raises(TypeError):
        alcm.save(b"x.alcm", {"x": np.arange(3)})
    assert os.listdir(tmp) == []


def test_numpy_scalars_as_options(tmp):
    x = {"x": np.linspace(0, 1, 5000, dtype=np.float32)}
    alcm.save("a.alcm", x, max_error=np.float32(1e-3), threads=np.int64(1))
    alcm.save("b.alcm", x, bits=np.int32(8), prune=np.float64(0.1))
    alcm.save("c.alcm", x, size=np.int64(4000))
    with alcm.Stream("s.alcm", max_error=np.float32(1e-3), window=np.int8(3)) as s:
        s.append(x)
    assert alcm.open("s.alcm").frame(np.int64(0)).frame_number == 0


def test_size_budget_above_what_the_tensors_need(tmp):
    # A budget the tensors undercut at every bound tried is met, with the least error.
    x = {"x": np.linspace(0, 1, 5000, dtype=np.float32)}
    lossless = alcm.save("l.alcm", x).stored_bytes
    r = alcm.save("a.alcm", x, size=lossless + 500)
    assert r.max_abs_error == 0 and r.stored_bytes == lossless
    r = alcm.save("b.alcm", x, size=4000)
    assert r.stored_bytes <= 4000 * 1.03 and r.max_abs_error < 0.01
