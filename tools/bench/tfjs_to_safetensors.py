#!/usr/bin/env python3
"""Converts TensorFlow.js weights (*-weights_manifest.json + .bin shards) to one .safetensors
file of float32 tensors, for alcm-codec-bench. Standard library only.

TF.js manifests may store a float32 weight quantized ("quantization": {"dtype": "uint8" or
"uint16", "scale": s, "min": m}, value = q * s + m, as tfjs computes it; or {"dtype":
"float16"}): such weights are dequantized to float32, as a TF.js runtime would see them, and
counted. Weights of other dtypes (int32, bool, string) are skipped and counted.

usage: tfjs_to_safetensors.py [--prefix-models] [--meta KEY=VALUE]... OUT MANIFEST...
"""
import json
import os
import struct
import sys

QBYTES = {"uint8": 1, "uint16": 2, "float16": 2}
DBYTES = {"float32": 4, "int32": 4, "bool": 1}


def half_table():
    """float32 bytes of every float16 bit pattern."""
    return [struct.pack("<f", struct.unpack("<e", struct.pack("<H", h))[0]) for h in range(65536)]


def read_group(model_dir, group):
    data = bytearray()
    for p in group["paths"]:
        with open(os.path.join(model_dir, p), "rb") as f:
            data += f.read()
    return bytes(data)


def convert(manifests, prefix_models):
    """Returns [(name, shape, float32 little-endian bytes)] and counts by kind."""
    stats = {"float32": 0, "dequantized": 0, "skipped": 0}
    htab = None
    tensors = []
    for man in manifests:
        model_dir = os.path.dirname(os.path.abspath(man))
        model = os.path.basename(man).replace("-weights_manifest.json", "").replace(".json", "")
        with open(man, "r", encoding="utf-8") as f:
            doc = json.load(f)
        groups = doc["weightsManifest"] if isinstance(doc, dict) else doc
        for group in groups:
            blob = read_group(model_dir, group)
            pos = 0
            for w in group["weights"]:
                n = 1
                for d in w["shape"]:
                    n *= int(d)
                q = w.get("quantization")
                size = n * (QBYTES[q["dtype"]] if q else DBYTES.get(w["dtype"], 0))
                if not q and w["dtype"] not in DBYTES:
                    raise SystemExit("%s: weight %s has unsupported dtype %s" %
                                     (man, w["name"], w["dtype"]))
                raw = blob[pos:pos + size]
                if len(raw) != size:
                    raise SystemExit("%s: shards too short for weight %s" % (man, w["name"]))
                pos += size
                name = (model + "/" if prefix_models else "") + w["name"]
                if w["dtype"] != "float32":
                    stats["skipped"] += 1
                    continue
                if not q:
                    out = raw
                    stats["float32"] += 1
                elif q["dtype"] == "float16":
                    htab = htab or half_table()
                    hs = struct.unpack("<%dH" % n, raw)
                    out = b"".join(map(htab.__getitem__, hs))
                    stats["dequantized"] += 1
                else:
                    scale, mn = float(q["scale"]), float(q["min"])
                    levels = 256 if q["dtype"] == "uint8" else 65536
                    tab = [struct.pack("<f", v * scale + mn) for v in range(levels)]
                    qs = raw if levels == 256 else struct.unpack("<%dH" % n, raw)
                    out = b"".join(map(tab.__getitem__, qs))
                    stats["dequantized"] += 1
                tensors.append((name, [int(d) for d in w["shape"]], out))
            if pos != len(blob):
                raise SystemExit("%s: %d bytes left over in the shards" % (man, len(blob) - pos))
    return tensors, stats


def write_safetensors(path, tensors, meta):
    header = {"__metadata__": meta}
    off = 0
    seen = set()
    for name, shape, data in tensors:
        if name in seen:
            raise SystemExit("duplicate tensor name %s (use --prefix-models)" % name)
        seen.add(name)
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [off, off + len(data)]}
        off += len(data)
    h = json.dumps(header, separators=(",", ":")).encode("utf-8")
    h += b" " * (-len(h) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for _, _, data in tensors:
            f.write(data)
    os.replace(tmp, path)
    return off


def main(argv):
    prefix = False
    meta = {}
    args = []
    i = 1
    while i < len(argv):
        a = argv[i]
        if a == "--prefix-models":
            prefix = True
        elif a == "--meta" and i + 1 < len(argv):
            k, _, v = argv[i + 1].partition("=")
            meta[k] = v
            i += 1
        else:
            args.append(a)
        i += 1
    if len(args) < 2:
        sys.stderr.write(__doc__)
        return 2
    out, manifests = args[0], args[1:]
    tensors, stats = convert(manifests, prefix)
    meta["converted_by"] = "tools/bench/tfjs_to_safetensors.py"
    meta["dequantized_tensors"] = str(stats["dequantized"])
    nbytes = write_safetensors(out, tensors, meta)
    print("tensors: %d float32 (%d stored as float32, %d dequantized from uint8/uint16/float16), "
          "%d non-float skipped; %.1f MB of float32" %
          (len(tensors), stats["float32"], stats["dequantized"], stats["skipped"], nbytes / 1e6))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
