"""alcm.torch.save / alcm.torch.load: state dicts bit-exact, tied weights shared, views."""

from __future__ import annotations

import os

import numpy as np
import pytest

from conftest import torch_or_skip

torch = torch_or_skip(module_level=True)
import alcm  # noqa: E402
import alcm.torch  # noqa: E402

DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.float64, torch.int8, torch.int16,
          torch.int32, torch.int64, torch.uint8, torch.bool]


def random_bits(dtype, shape, gen):
    n = int(np.prod(shape))
    if dtype == torch.bool:
        return torch.randint(0, 2, shape, generator=gen).bool()
    size = torch.tensor([], dtype=dtype).element_size()
    raw = torch.randint(0, 256, (n * size,), dtype=torch.uint8, generator=gen)
    return raw.view(dtype).reshape(shape)


def same_bits(a, b):
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    if a.dtype == torch.bool:
        return torch.equal(a, b)
    flat = lambda t: t.contiguous().reshape(-1).view(torch.uint8)  # noqa: E731
    return torch.equal(flat(a), flat(b))


@pytest.mark.parametrize("dtype", DTYPES)
def test_every_dtype_bit_exact(tmp, dtype):
    gen = torch.Generator().manual_seed(0)
    sd = {"w": random_bits(dtype, (7, 13), gen), "s": random_bits(dtype, (), gen),
          "e": torch.zeros((0, 4), dtype=dtype)}
    alcm.torch.save("x.alcm", sd)
    back = alcm.torch.load("x.alcm")
    assert list(back) == list(sd)
    for k in sd:
        assert back[k].dtype == dtype and same_bits(back[k], sd[k]), k
    assert alcm.open("x.alcm").info("w").dtype == str(dtype).replace("torch.", "")


def test_module_state_dict_round_trip(tmp):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.BatchNorm2d(8),
                              torch.nn.Flatten(), torch.nn.Linear(8 * 6 * 6, 10))
    net(torch.randn(2, 3, 8, 8))  # BatchNorm running stats and num_batches_tracked move
    sd = net.state_dict()
    alcm.torch.save("net.alcm", sd)
    back = alcm.torch.load("net.alcm")
    fresh = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.BatchNorm2d(8),
                                torch.nn.Flatten(), torch.nn.Linear(8 * 6 * 6, 10))
    fresh.load_state_dict(back)
    for k, v in sd.items():
        assert same_bits(fresh.state_dict()[k], v), k
    with alcm.open("net.alcm") as a:
        assert a.info("1.num_batches_tracked").dtype == "int64"


def test_tied_weights_stored_once_and_shared_on_load(tmp):
    class Tied(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = torch.nn.Embedding(1000, 64)
            self.lm_head = torch.nn.Linear(64, 1000, bias=False)
            self.lm_head.weight = self.embed.weight

    m = Tied()
    sd = m.state_dict()
    assert sd["embed.weight"].data_ptr() == sd["lm_head.weight"].data_ptr()
    alcm.torch.save("tied.alcm", sd)
    untied = {k: v.clone() for k, v in sd.items()}
    alcm.torch.save("untied.alcm", untied)
    one = sd["embed.weight"].numel() * 4
    assert os.path.getsize("untied.alcm") - os.path.getsize("tied.alcm") > one // 2
    back = alcm.torch.load("tied.alcm")
    assert list(back) == ["embed.weight", "lm_head.weight"]
    assert back["embed.weight"].data_ptr() == back["lm_head.weight"].data_ptr()
    m2 = Tied()
    m2.load_state_dict(back)
    assert torch.equal(m2.lm_head.weight, m.embed.weight)
    with alcm.open("tied.alcm") as a:
        assert a.info("lm_head.weight").alias_of == "embed.weight"


def test_non_contiguous_and_views_of_larger_storages(tmp):
    base = torch.arange(10000, dtype=torch.float32).reshape(100, 100)
    sd = {"t": base.t(), "slice": base[10:12], "col": base[:, 3], "every_other": base[::2, ::5]}
    alcm.torch.save("v.alcm", sd)
    back = alcm.torch.load("v.alcm")
    for k, v in sd.items():
        assert torch.equal(back[k], v) and back[k].is_contiguous(), k
    # Only the view's elements are stored (torch.save writes the whole 40 kB storage).
    alcm.torch.save("s.alcm", {"slice": base[10:12]})
    assert alcm.open("s.alcm").info("slice").raw_bytes == 2 * 100 * 4
    # Overlapping but different views are separate tensors on load.
    assert back["t"].data_ptr() != back["col"].data_ptr()


def test_lossy_and_options(tmp):
    torch.manual_seed(1)
    sd = {"w": torch.randn(64, 64), "b": torch.randn(64).bfloat16(), "n": torch.tensor(3)}
    r = alcm.torch.save("l.alcm", sd, max_error=1e-2, metadata={"format": "pt"})
    assert r.downgraded == 1
    back = alcm.torch.load("l.alcm")
    assert (back["w"] - sd["w"]).abs().max() <= 1e-2
    assert (back["b"].float() - sd["b"].float()).abs().max() <= 1e-2
    assert back["n"].item() == 3
    with alcm.open("l.alcm") as a:
        assert a.metadata == {"format": "pt"}
        assert dict(a._meta)[b"alcm.source_format"] == b"pt"


def test_refusals(tmp):
    with pytest.raises(TypeError, match="not a tensor"):
        alcm.torch.save("r.alcm", {"w": torch.ones(2), "step": 5})
    with pytest.raises(alcm.UnsupportedError, match="complex"):
        alcm.torch.save("r.alcm", {"c": torch.ones(2, dtype=torch.complex64)})
    with pytest.raises(alcm.UnsupportedError):
        alcm.torch.save("r.alcm", {"s": torch.ones(2, 2).to_sparse()})
    assert not os.path.exists("r.alcm")
    alcm.save("u.alcm", {"u": np.arange(3, dtype=np.uint16)})
    with pytest.raises(alcm.UnsupportedError, match="uint16"):
        alcm.torch.load("u.alcm")


def test_parameters_requiring_grad_and_map_location(tmp):
    p = torch.nn.Parameter(torch.randn(3, 3))
    alcm.torch.save("p.alcm", {"p": p})
    back = alcm.torch.load("p.alcm", map_location=torch.device("cpu"))
    assert torch.equal(back["p"], p.detach()) and not back["p"].requires_grad
    back = alcm.torch.load("p.alcm", map_location=None)
    assert back["p"].device.type == "cpu"
    with pytest.raises(TypeError):
        alcm.torch.load("p.alcm", map_location=lambda s, loc: s)


def test_negative_view_bit(tmp):
    x = torch.randn(5)
    n = torch._neg_view(x) if hasattr(torch, "_neg_view") else -x
    alcm.torch.save("n.alcm", {"n": n})
    assert torch.equal(alcm.torch.load("n.alcm")["n"], -x)
