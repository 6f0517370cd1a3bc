#!/usr/bin/python3
"""Fixtures of tests/cli_torch.sh (and fuzz seeds): real torch.save files, hostile ones,
sharded safetensors checkpoints; and the checks that compare what comes back.

    torch_fixtures.py good DIR         state dicts saved by torch (needs torch)
    torch_fixtures.py hostile DIR      crafted .pt files, one per attack (no torch needed)
    torch_fixtures.py shards DIR       a sharded checkpoint in the safetensors library's layout
    torch_fixtures.py compare A B      B (torch.load weights_only=True) equals A, bit for bit
    torch_fixtures.py aliases F A B    in the .pt F, tensors A and B share one storage

Run with /usr/bin/python3 (Debian's python3-torch and python3-numpy).
"""

import collections
import io
import json
import os
import struct
import sys
import zipfile


def save_zip(path, records, root="archive", compress=zipfile.ZIP_STORED):
    with zipfile.ZipFile(path, "w", compress) as z:
        for name, data in records:
            z.writestr(f"{root}/{name}", data)


# ---- pickles by hand ----

def s(text):  # BINUNICODE
    b = text.encode()
    return b"X" + struct.pack("<I", len(b)) + b


def i(v):
    if 0 <= v < 256:
        return b"K" + bytes([v])
    if -2**31 <= v < 2**31:
        return b"J" + struct.pack("<i", v)
    n = (v.bit_length() >> 3) + 1
    return b"\x8a" + bytes([n]) + v.to_bytes(n, "little", signed=True)


def tup(*items):
    return b"(" + b"".join(items) + b"t"


GLOBAL_OD = b"ccollections\nOrderedDict\n"
REBUILD = b"ctorch._utils\n_rebuild_tensor_v2\n"


def storage(key, cls="FloatStorage", numel=4):
    return tup(s("storage"), b"ctorch\n" + cls.encode() + b"\n", s(key), s("cpu"), i(numel)) + b"Q"


def tensor(key, offset, size, stride, cls="FloatStorage", numel=4):
    args = tup(storage(key, cls, numel), i(offset), tup(*map(i, size)), tup(*map(i, stride)),
               b"\x89", GLOBAL_OD + b")R")
    return REBUILD + args + b"R"


def state_dict(*pairs, proto=b"\x80\x02"):
    body = b"".join(s(k) + v for k, v in pairs)
    return proto + GLOBAL_OD + b")R(" + body + b"u."


def pt(path, pkl, storages=(("0", b"\0" * 16),), extra=()):
    recs = [("data.pkl", pkl)] + [(f"data/{k}", v) for k, v in storages]
    recs += list(extra) + [("version", b"3\n")]
    save_zip(path, recs)


def dag(k):
    """{'a': d, 'b': d} nested k deep, each level shared: 2^k paths, k + 1 dicts."""
    if k == 0:
        return b"}q\x00"
    return b"}(" + s("a") + dag(k - 1) + s("b") + b"h" + bytes([k - 1]) + b"uq" + bytes([k])


def hostile(d):
    """Each file names the attack; cli_torch.sh expects an exit code and a message."""
    f32 = struct.pack("<4f", 1, 2, 3, 4)
    ok = tensor("0", 0, [4], [1])
    cases = {
        # globals that run code
        "os-system": b"\x80\x02cos\nsystem\n" + s("echo pwned") + b"\x85R.",
        "builtins-eval": b"\x80\x02cbuiltins\neval\n" + s("1+1") + b"\x85R.",
        "posix-system-in-dict": state_dict(("w", b"cposix\nsystem\n" + s("id") + b"\x85R")),
        "stack-global-exec": b"\x80\x04" + b"\x8c\x08builtins\x8c\x04exec\x93" + s("x=1") +
                             b"\x85R.",
        "torch-load-global": state_dict(("w", b"ctorch\nload\n" + s("x") + b"\x85R")),
        # REDUCE of something that is not an allowed callable
        "reduce-tuple": state_dict(("w", b")" + b")R")),
        "reduce-storage-class": state_dict(("w", b"ctorch\nFloatStorage\n)R")),
        "reduce-ordereddict-args": b"\x80\x02" + GLOBAL_OD + b"(]t" + b"R.",
        # BUILD / setstate tricks
        "build-on-tensor": state_dict(("w", ok + b"}" + s("x") + s("y") + b"sb")),
        "build-other-attr": b"\x80\x02" + GLOBAL_OD + b")R}" + s("__class__") + s("x") +
                            b"sb.",
        "newobj": b"\x80\x02" + GLOBAL_OD + b")\x81.",
        # resource bombs
        "mark-bomb": b"\x80\x02" + b"(" * 100000 + b".",
        "list-bomb": b"\x80\x02" + b"]" * 50 + b"a" * 49 + b".",
        "memo-get-missing": state_dict(("w", b"h\x05")),
        "memo-put-far": b"\x80\x02" + GLOBAL_OD + b")Rr\xff\xff\xff\x7f.",
        "long4": b"\x80\x02\x8b\xff\xff\xff\x7f.",
        "long1-9-bytes": state_dict(("w", REBUILD + tup(storage("0"), b"\x8a\x09" + b"\1" * 9,
                                                        tup(i(4)), tup(i(1)), b"\x89",
                                                        GLOBAL_OD + b")R") + b"R")),
        "stack-underflow": b"\x80\x02R.",
        "no-stop": b"\x80\x02" + GLOBAL_OD + b")R",
        "after-stop": state_dict(("w", ok)) + b"junk",
        # storages and views that break their bounds
        "storage-past-record": state_dict(("w", tensor("0", 0, [8], [1], numel=8))),
        "storage-missing": state_dict(("w", tensor("7", 0, [4], [1]))),
        "view-past-storage": state_dict(("w", tensor("0", 2, [4], [1]))),
        "stride-past-storage": state_dict(("w", tensor("0", 0, [2, 2], [3, 1]))),
        "offset-past-storage": state_dict(("w", tensor("0", 5, [0], [1]))),
        "stride-far": state_dict(("w", tensor("0", 0, [2, 2], [2**62, 1]))),
        "stride-overflow": state_dict(("w", tensor("0", 0, [3, 3], [2**63 - 1, 2**63 - 1]))),
        "metadata-deep": b"\x80\x02" + GLOBAL_OD + b")R}" + s("_metadata") + b"}" +
                         (s("a") + b"}") * 100 + b"s" * 100 + b"sb.",
        "metadata-dag": b"\x80\x02" + GLOBAL_OD + b")R}" + s("_metadata") + dag(15) + b"sb.",
        "metadata-cycle": b"\x80\x02" + GLOBAL_OD + b")R}" + s("_metadata") + b"}q\x00" +
                          s("x") + b"h\x00s" + b"sb.",
        "negative-size": state_dict(("w", tensor("0", 0, [-1], [1]))),
        "huge-shape": state_dict(("w", tensor("0", 0, [2**31, 2**31, 2**31], [0, 0, 0]))),
        "huge-expand": state_dict(("w", tensor("0", 0, [2**40], [0]))),
        "rank-33": state_dict(("w", tensor("0", 0, [1] * 33, [1] * 33))),
        "storage-redeclared": state_dict(("a", ok),
                                         ("b", tensor("0", 0, [2], [1], cls="HalfStorage",
                                                      numel=8))),
        "complex-storage": state_dict(("w", tensor("0", 0, [2], [1], cls="ComplexFloatStorage",
                                                   numel=2))),
        "duplicate-name": state_dict(("w", ok), ("w", ok)),
        # not a state dict
        "checkpoint-nested": b"\x80\x02}(" + s("model") + b"}" + s("epoch") + i(3) + b"u.",
        "value-int": state_dict(("epoch", i(3))),
        "top-list": b"\x80\x02].",
    }
    for name, pkl in cases.items():
        pt(os.path.join(d, f"{name}.pt"), pkl, storages=(("0", f32),))
    # zero-element tensors with huge dimensions are valid: nothing to read
    pt(os.path.join(d, "zero-huge-dims.pt"),
       state_dict(("z", tensor("0", 0, [0, 2**62], [2**62, 1])), ("w", ok)),
       storages=(("0", f32),))
    # layouts
    save_zip(os.path.join(d, "no-version.pt"), [("data.pkl", state_dict(("w", ok))),
                                                ("data/0", f32)])
    save_zip(os.path.join(d, "version-99.pt"), [("data.pkl", state_dict(("w", ok))),
                                                ("data/0", f32), ("version", b"99\n")])
    with open(os.path.join(d, "legacy.pt"), "wb") as f:
        f.write(b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19.")
    # a crc error inside a storage record
    p = os.path.join(d, "bad-crc.pt")
    pt(p, state_dict(("w", ok)), storages=(("0", f32),))
    b = bytearray(open(p, "rb").read())
    at = b.find(f32)
    b[at] ^= 1
    open(p, "wb").write(bytes(b))


# ---- real torch files ----

def good(d):
    import torch
    torch.manual_seed(1)
    g = torch.Generator().manual_seed(2)

    def rnd(*shape, dtype=torch.float32):
        return torch.randn(*shape, generator=g).to(dtype)

    sd = collections.OrderedDict()
    sd["f32"] = rnd(3, 5)
    sd["f16"] = rnd(4, 3, dtype=torch.float16)
    sd["bf16"] = rnd(7, dtype=torch.bfloat16)
    sd["f64"] = rnd(2, 2, dtype=torch.float64)
    sd["i8"] = torch.randint(-128, 127, (9,), generator=g, dtype=torch.int8)
    sd["i16"] = torch.randint(-3000, 3000, (2, 3), generator=g, dtype=torch.int16)
    sd["i32"] = torch.randint(-2**31, 2**31 - 1, (5,), generator=g, dtype=torch.int32)
    sd["i64"] = torch.tensor([-2**63, 2**63 - 1, 0, 7], dtype=torch.int64)
    sd["u8"] = torch.randint(0, 255, (3, 3), generator=g, dtype=torch.uint8)
    sd["bool"] = torch.tensor([True, False, True])
    sd["scalar"] = torch.tensor(3.5)
    sd["empty"] = torch.zeros(0, 4)
    sd["specials"] = torch.tensor([float("nan"), float("inf"), -0.0, 1e-40])
    torch.save(sd, os.path.join(d, "dtypes.pt"))

    # tied weights, views of a larger storage, non-contiguous tensors
    base = rnd(6, 4)
    v = collections.OrderedDict()
    v["emb"] = base
    v["head"] = base                      # the same tensor object
    v["head_view"] = base.view(6, 4)      # another tensor object, same view
    v["transposed"] = base.t()            # non-contiguous
    v["row2"] = base[2]                   # offset view
    v["cols"] = base[:, 1:3]              # strided slice
    v["every_other"] = base[::2, ::3]     # steps
    v["expand"] = rnd(1, 3).expand(4, 3)  # stride 0
    v["alone"] = rnd(2)
    torch.save(v, os.path.join(d, "views.pt"))

    # a module's state dict: _metadata, parameters kept by torch.save of parameters
    m = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.LayerNorm(4),
                            torch.nn.Linear(4, 3, bias=False))
    torch.save(m.state_dict(), os.path.join(d, "module.pt"))
    params = collections.OrderedDict(m.named_parameters())
    params["frozen"] = torch.nn.Parameter(rnd(2), requires_grad=False)
    torch.save(params, os.path.join(d, "params.pth"))
    # tied module weights: state_dict() gives two tensor objects on one storage
    t = torch.nn.Module()
    t.emb = torch.nn.Embedding(5, 3)
    t.head = torch.nn.Linear(3, 5, bias=False)
    t.head.weight = t.emb.weight
    torch.save(t.state_dict(), os.path.join(d, "tied.bin"))
    # a plain dict, pickle protocol 4, a big file
    torch.save({"a": rnd(3), "b": torch.arange(10)}, os.path.join(d, "plain.pt"),
               pickle_protocol=4)
    torch.save({"big": rnd(512, 1024), "bigT": rnd(1024, 300).t()}, os.path.join(d, "big.pt"))

    # big-endian records (byteorder "big", as torch 2 writes on s390x) and their twin
    vals = {"f32": ("FloatStorage", "f", [1.5, -2.25, 3e38]), "f16": ("HalfStorage", "e",
            [1.5, -2.0, 65504.0]), "f64": ("DoubleStorage", "d", [1e300, -0.5, 7.0]),
            "i64": ("LongStorage", "q", [-2**63, 5, 2**40]), "i16": ("ShortStorage", "h",
            [-32768, 1, 300])}
    pkl = state_dict(*[(n, tensor(str(k), 0, [3], [1], cls=c, numel=3))
                       for k, (n, (c, _, _)) in enumerate(vals.items())])
    for order, name, extra in (("<", "littleendian.pt", []), (">", "bigendian.pt",
                                                              [("byteorder", b"big")])):
        recs = [(str(k), struct.pack(order + f"3{f}", *v))
                for k, (_, f, v) in enumerate(vals.values())]
        pt(os.path.join(d, name), pkl, storages=recs, extra=extra)
    # the same file rezipped with deflate, records in another order
    with zipfile.ZipFile(os.path.join(d, "views.pt")) as z:
        recs = [(n, z.read(n)) for n in reversed(z.namelist())]
    with zipfile.ZipFile(os.path.join(d, "deflated.pt"), "w", zipfile.ZIP_DEFLATED) as z:
        for n, data in recs:
            z.writestr(n, data)


def compare(a, b):
    import torch
    x = torch.load(a)
    y = torch.load(b, weights_only=True)
    if type(x) is not type(y) or list(x.keys()) != list(y.keys()):
        sys.exit(f"{b}: keys or dict type differ: {type(x).__name__} {list(x.keys())} vs "
                 f"{type(y).__name__} {list(y.keys())}")
    if getattr(x, "_metadata", None) != getattr(y, "_metadata", None):
        sys.exit(f"{b}: _metadata differs")
    for k in x:
        u, v = x[k], y[k]
        if u.dtype != v.dtype or u.shape != v.shape or type(u) is not type(v) or \
                u.requires_grad != v.requires_grad:
            sys.exit(f"{b}: '{k}': {type(u).__name__} {u.dtype} {tuple(u.shape)} "
                     f"{u.requires_grad} vs {type(v).__name__} {v.dtype} {tuple(v.shape)} "
                     f"{v.requires_grad}")
        bu = u.detach().contiguous().reshape(-1).view(torch.uint8) if u.numel() else b""
        bv = v.detach().contiguous().reshape(-1).view(torch.uint8) if v.numel() else b""
        if u.numel() and not torch.equal(bu, bv):
            sys.exit(f"{b}: '{k}': values differ")
    print(f"{b}: {len(x)} tensors equal to {a}")


def aliases(f, a, b):
    import torch
    y = torch.load(f, weights_only=True)
    if y[a].data_ptr() != y[b].data_ptr() or y[a].storage().data_ptr() != \
            y[b].storage().data_ptr():
        sys.exit(f"{f}: '{a}' and '{b}' do not share their storage")


# ---- sharded safetensors, in the layout of the safetensors library ----

def st_bytes(tensors, metadata=None):
    """tensors: name -> (dtype code, shape, raw bytes). Layout as safetensors' Rust writer:
    __metadata__ first, tensors by descending dtype then name, header padded with spaces."""
    rank = {"BOOL": 0, "U8": 1, "I8": 2, "I16": 5, "U16": 6, "F16": 7, "BF16": 8, "I32": 9,
            "U32": 10, "F32": 11, "F64": 12, "I64": 13, "U64": 14}
    order = sorted(tensors, key=lambda n: (-rank[tensors[n][0]], n.encode()))
    head, off, data = {}, 0, b""
    if metadata is not None:
        head["__metadata__"] = metadata
    for n in order:
        dt, shape, raw = tensors[n]
        head[n] = {"dtype": dt, "shape": shape, "data_offsets": [off, off + len(raw)]}
        off += len(raw)
        data += raw
    h = json.dumps(head, separators=(",", ":"), ensure_ascii=False).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + data


def shards(d):
    import random
    r = random.Random(5)

    def f32(n):
        return struct.pack(f"<{n}f", *[r.gauss(0, 1) for _ in range(n)])
    parts = [
        {"model.embed.weight": ("F32", [8, 4], f32(32)), "model.layer0.w": ("F16", [4, 4],
                                                                            f32(8)),
         "model.layer0.b": ("BF16", [4], f32(2))},
        {"model.layer1.w": ("F32", [4, 4], f32(16)), "model.layer1.steps": ("I64", [], b"\7" +
                                                                            b"\0" * 7)},
        {"lm_head.weight": ("F32", [8, 4], f32(32))},
    ]
    n = len(parts)
    weight_map, total = {}, 0
    for k, p in enumerate(parts):
        name = f"model-{k + 1:05d}-of-{n:05d}.safetensors"
        meta = {"format": "pt"} if k != 1 else {"format": "pt", "note": "naïve \"q\"\n"}
        with open(os.path.join(d, name), "wb") as f:
            f.write(st_bytes(p, meta))
        for t, (_, _, raw) in p.items():
            weight_map[t] = name
            total += len(raw)
    index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
    with open(os.path.join(d, "model.safetensors.index.json"), "w") as f:
        f.write(json.dumps(index, indent=2, sort_keys=True) + "\n")
    # one file with metadata of several keys
    with open(os.path.join(d, "..", "meta.safetensors"), "wb") as f:
        f.write(st_bytes(parts[0], {"format": "pt", "b": "2", "a": "tab\there"}))


def main():
    cmd = sys.argv[1]
    if cmd == "good":
        good(sys.argv[2])
    elif cmd == "hostile":
        hostile(sys.argv[2])
    elif cmd == "shards":
        shards(sys.argv[2])
    elif cmd == "compare":
        compare(sys.argv[2], sys.argv[3])
    elif cmd == "aliases":
        aliases(sys.argv[2], sys.argv[3], sys.argv[4])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
