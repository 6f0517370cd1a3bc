"""The GIL is released around every codec call, so Python threads overlap with packing and
unpacking. No timing assertion: the tests check that the calls ran without the GIL, and
that another thread could run Python code during them."""

from __future__ import annotations

import sys
import threading
import time

import numpy as np
import pytest

import alcm
import forge
from alcm import _core

BIG = np.random.default_rng(3).normal(size=(8, 1 << 20)).astype(np.float32)  # 32 MiB


def test_codec_calls_run_without_the_gil(tmp):
    # _nogil_calls() counts library calls during which PyGILState_Check() said the GIL was
    # not held: with the GIL held around a call, it would not move.
    x = np.arange(1000, dtype=np.float32)
    n0 = _core._nogil_calls()
    alcm.save("a.alcm", {"x": x, "y": x + 1})  # open, encoder, 2 adds, finish, commit
    n1 = _core._nogil_calls()
    assert n1 - n0 >= 6
    alcm.load("a.alcm")  # open reader, open archive, one decode of both tensors
    n2 = _core._nogil_calls()
    assert n2 - n1 >= 3
    alcm.decompress(alcm.compress(x))  # compress: one call; decompress: opening, decoding
    assert _core._nogil_calls() - n2 >= 3
    with alcm.Stream("s.alcm", max_error=1e-3) as s:
        n3 = _core._nogil_calls()
        s.append({"x": x})
    assert _core._nogil_calls() - n3 >= 1


def _runs_during(call) -> bool:
    """True when a Python thread ran while `call()` was inside the extension.

    With a switch interval of an hour the interpreter never takes the GIL from the main
    thread: the other thread can only run while the main thread releases the GIL itself,
    and the main thread runs no Python between reading the counter and the call."""
    count = [0]
    stop = threading.Event()

    def spin():
        while not stop.is_set():
            count[0] += 1
            time.sleep(0.0002)  # releases the GIL, so the main thread gets it back

    old = sys.getswitchinterval()
    t = threading.Thread(target=spin)
    t.start()
    try:
        sys.setswitchinterval(3600)
        for _ in range(20):  # a busy machine may not schedule the thread in one call
            c0 = count[0]
            call()
            if count[0] != c0:
                return True
        return False
    finally:
        sys.setswitchinterval(old)
        stop.set()
        t.join()


def test_threads_overlap_with_encode_and_decode(tmp):
    pk = _core.Packer(None, False, threads=1)
    try:
        assert _runs_during(lambda: pk.add(b"x", BIG, 12))
    finally:
        pk.close()
    alcm.save("big.alcm", {"x": BIG}, threads=1)
    with alcm.open("big.alcm", threads=1) as a:
        assert _runs_during(lambda: a._arch.decode(0))


def test_concurrent_use_of_one_archive_is_safe(tmp):
    # Library objects are not thread-safe; the extension serialises calls on one archive.
    arrays = {f"t{i}": np.full((64, 1024), i, np.float32) for i in range(8)}
    alcm.save("m.alcm", arrays)
    errors = []
    with alcm.open("m.alcm") as a:
        def work(k):
            try:
                for _ in range(5):
                    for name in arrays:
                        assert np.array_equal(a[name], arrays[name])
            except BaseException as e:  # pragma: no cover - reported below
                errors.append(e)
        ts = [threading.Thread(target=work, args=(k,)) for k in range(4)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
    assert not errors


def test_threads_saving_at_once_write_the_same_bytes(tmp):
    x = np.random.default_rng(1).normal(size=(4, 300000)).astype(np.float32)
    ts = [threading.Thread(target=alcm.save, args=(f"p{i}.alcm", {"x": x}),
                           kwargs={"max_error": 1e-3}) for i in range(3)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert len({open(f"p{i}.alcm", "rb").read() for i in range(3)}) == 1


def test_load_decodes_tensors_at_once_with_the_same_result(tmp):
    # alcm.load() decodes the tensors through alcm_archive_decode_list: with two threads,
    # several lossless tensors at once. Same arrays as one thread; a damaged tensor: the same
    # error, naming that tensor, whatever the thread count.
    rng = np.random.default_rng(7)
    ts = {f"t{i}": rng.normal(0, 0.02, (40, 1000)).astype(np.float32) for i in range(6)}
    alcm.save("m.alcm", ts)
    one, two = alcm.load("m.alcm", threads=1), alcm.load("m.alcm", threads=2)
    assert list(one) == list(two) == list(ts)
    for k, v in ts.items():
        assert np.array_equal(one[k], v) and np.array_equal(two[k], v)
    sub = alcm.load("m.alcm", ["t4", "t1", "t4"], threads=2)
    assert list(sub) == ["t4", "t1"] and np.array_equal(sub["t4"], ts["t4"])
    c = forge.parse(open("m.alcm", "rb").read())
    i = c.find(b"LDAT")[3]  # t3's section
    b = bytearray(open("m.alcm", "rb").read())
    b[b.find(c.sections[i].data[:64]) + 5000] ^= 0x20
    open("m.alcm", "wb").write(b)
    msgs = []
    for th in (1, 2):
        with pytest.raises(alcm.DigestError) as e:
            alcm.load("m.alcm", threads=th)
        msgs.append(str(e.value))
    assert msgs[0] == msgs[1]
    assert "tensor 't3'" in msgs[0] and f"section {i}" in msgs[0] and "m.alcm" in msgs[0]
