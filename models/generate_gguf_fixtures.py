#!/usr/bin/env python3
"""Fixtures for Lens's GGUF reader (crates/lens-models/src/gguf), made with the `gguf` PyPI package.

Writes, under models/fixtures/gguf/ (seeded, deterministic, a few tens of KB):

- blocks.safetensors + blocks.json: for F32, F16, BF16, Q8_0, Q4_K, Q5_K and Q6_K, raw blocks
  (`<type>.raw`, u8 [n_blocks, type_size]) with zero blocks, all bits set, negative and extreme scales,
  subnormal / inf / NaN scales, then random bytes; and what `gguf.quants.dequantize` makes of them
  (`<type>.expected`, f32 [n_full, block_size]): every block for F32, F16, BF16 and Q8_0, the first
  N_FULL_K blocks for the K-quants, whose values would take ~200 KB. For those, every block's SHA-256
  over its f32 values (`<type>.sha256`, u8 [n_blocks, 32]; NaN written as 0x7fc00000 first, since IEEE
  754 leaves an arithmetic NaN's payload open) keeps the check exact for all blocks.
- tiny.gguf + tiny.json: a file written by `gguf.GGUFWriter` with metadata of every value type (arrays
  of every element type, arrays of strings, nested arrays, NaN/inf/-0 floats, unicode), alignment 64
  (not the default 32), and tensors of every supported type plus one Q4_0 (unsupported by Lens).
  tiny.expected.safetensors: each supported tensor dequantized by gguf (read back with GGUFReader), in
  the PyTorch shape (GGUF dims reversed).
- tiny-be.gguf: a small big-endian file (Lens refuses those).

Run from the repository root: .venv-ref/bin/python models/generate_gguf_fixtures.py
"""

import hashlib
import json
import math
import struct
from pathlib import Path

import gguf
import numpy as np
from gguf import GGMLQuantizationType as T
from gguf import GGUFValueType as V
from gguf.quants import dequantize, quantize
from safetensors.numpy import save_file

OUT = Path(__file__).resolve().parent / "fixtures" / "gguf"
SEED = 1212
N_FULL_K = 4  # K-quant blocks whose values are stored, not only digested

# The types whose dequantization only moves bits (NaN payloads are exact there).
BIT_EXACT_NAN = {T.F32, T.F16, T.BF16}


def f16_bits(x: float) -> int:
    return int(np.array([x], dtype=np.float16).view(np.uint16)[0])


def put_f16(block: np.ndarray, at: int, bits: int) -> None:
    block[at : at + 2] = np.array([bits], dtype="<u2").view(np.uint8)


# f16 scales that exercise every path: zero, ±subnormal, ±normal, ±max, ±inf, quiet and signalling NaN.
SPECIAL_F16 = [0x0000, 0x8000, 0x0001, 0x83FF, 0x3C00, 0xBC00, 0x7BFF, 0xFBFF, 0x7C00, 0xFC00, 0x7E00, 0x7C01]


def k_blocks(rng: np.random.Generator, qtype: T, n: int) -> np.ndarray:
    """Q4_K / Q5_K / Q6_K / Q8_0 blocks: special cases first, then random bytes with random scales."""
    _, size = gguf.GGML_QUANT_SIZES[qtype]
    # Where the f16 scales sit: d (and dmin) first, except Q6_K whose d is last.
    scales = {T.Q8_0: [0], T.Q4_K: [0, 2], T.Q5_K: [0, 2], T.Q6_K: [size - 2]}[qtype]
    blocks = rng.integers(0, 256, size=(n, size), dtype=np.uint8)
    blocks[0] = 0  # zero block
    blocks[1] = 0xFF  # all bits set (scales too: NaN)
    blocks[2] = 0xFF  # all bits set, finite scales
    for at in scales:
        put_f16(blocks[2], at, f16_bits(1.5))
    blocks[3] = 0xFF  # all bits set, largest negative scales
    for at in scales:
        put_f16(blocks[3], at, 0xFBFF)
    for i in range(4, n):
        for j, at in enumerate(scales):
            kind = (i + j) % 5
            if i < 4 + len(SPECIAL_F16):
                bits = SPECIAL_F16[(i - 4 + 3 * j) % len(SPECIAL_F16)]
            elif kind == 0:
                bits = f16_bits(-abs(rng.normal()) * 0.05)  # negative scale
            else:
                bits = f16_bits(rng.normal() * 10.0 ** rng.integers(-4, 2))
            put_f16(blocks[i], at, bits)
    return blocks


def float_blocks(rng: np.random.Generator, qtype: T) -> np.ndarray:
    """F32 / F16 / BF16 values (one value per block): special bit patterns, then random bits."""
    if qtype == T.F32:
        special = [0, 0x80000000, 1, 0x807FFFFF, 0x00800000, 0x7F7FFFFF, 0xFF7FFFFF, 0x7F800000, 0xFF800000,
                   0x7FC00000, 0xFFC00000, 0x7F800001, 0x7FBFFFFF, 0xFFFFFFFF, 0x3F800000, 0x3EAAAAAB]
        rand = rng.integers(0, 2**32, size=240, dtype=np.uint64).astype(np.uint32)
        normal = rng.normal(size=64).astype(np.float32).view(np.uint32)
        bits = np.concatenate([np.array(special, dtype=np.uint32), rand, normal])
        return bits.astype("<u4").view(np.uint8).reshape(-1, 4)
    special = [0x0000, 0x8000, 0x0001, 0x03FF, 0x0400, 0x8001, 0x7BFF, 0x7C00, 0xFC00, 0x7C01, 0x7E00, 0xFFFF,
               0x7F80, 0xFF80, 0x7F81, 0x7FC0, 0x3C00, 0x3F80]
    rand = rng.integers(0, 2**16, size=238, dtype=np.uint32).astype(np.uint16)
    bits = np.concatenate([np.array(special, dtype=np.uint16), rand])
    return bits.astype("<u2").view(np.uint8).reshape(-1, 2)


def digest(values: np.ndarray, exact_nan: bool) -> bytes:
    bits = values.astype(np.float32).view(np.uint32).copy()
    if not exact_nan:
        bits[np.isnan(values)] = 0x7FC00000
    return hashlib.sha256(bits.astype("<u4").tobytes()).digest()


def write_blocks(rng: np.random.Generator) -> None:
    tensors, index = {}, {}
    plan = [(T.F32, None), (T.F16, None), (T.BF16, None), (T.Q8_0, 64), (T.Q4_K, 64), (T.Q5_K, 64), (T.Q6_K, 64)]
    for qtype, n in plan:
        raw = float_blocks(rng, qtype) if n is None else k_blocks(rng, qtype, n)
        block_size, type_size = gguf.GGML_QUANT_SIZES[qtype]
        with np.errstate(invalid="ignore"):  # 0 * inf in the special blocks
            values = np.asarray(dequantize(raw, qtype), dtype=np.float32).reshape(len(raw), block_size)
        exact = qtype in BIT_EXACT_NAN
        n_full = len(raw) if qtype in BIT_EXACT_NAN or qtype == T.Q8_0 else N_FULL_K
        name = qtype.name.lower()
        tensors[f"{name}.raw"] = np.ascontiguousarray(raw)
        tensors[f"{name}.expected"] = np.ascontiguousarray(values[:n_full])
        if n_full < len(raw):
            digests = b"".join(digest(v, exact) for v in values)
            tensors[f"{name}.sha256"] = np.frombuffer(digests, np.uint8).reshape(-1, 32)
        index[name] = {
            "ggml_type": qtype.name,
            "ggml_type_id": int(qtype),
            "block_size": block_size,
            "type_size": type_size,
            "n_blocks": len(raw),
            "n_full": n_full,
            "nan_bits_exact": exact,
            "nan_blocks": int(np.isnan(values).any(axis=1).sum()),
        }
    save_file(tensors, OUT / "blocks.safetensors")
    (OUT / "blocks.json").write_text(json.dumps({"gguf_version": gguf_version(), "seed": SEED, "types": index},
                                                indent=1) + "\n")


def gguf_version() -> str:
    from importlib.metadata import version

    return version("gguf")


# ------------------------------------------------------------------------------------------------
# tiny.gguf
# ------------------------------------------------------------------------------------------------

TYPE_NAMES = {V.UINT8: "u8", V.INT8: "i8", V.UINT16: "u16", V.INT16: "i16", V.UINT32: "u32", V.INT32: "i32",
              V.FLOAT32: "f32", V.BOOL: "bool", V.STRING: "str", V.ARRAY: "arr", V.UINT64: "u64", V.INT64: "i64",
              V.FLOAT64: "f64"}


def py_type(value) -> V:
    """The element type GGUFWriter infers for a nested array's element."""
    return V.get_type(value)


def json_scalar(vtype: V, value):
    if vtype == V.FLOAT32:
        return {"bits": struct.unpack("<I", struct.pack("<f", value))[0]}
    if vtype == V.FLOAT64:
        return {"bits": struct.unpack("<Q", struct.pack("<d", value))[0]}
    return value


def json_array(elem: V, values) -> dict:
    if elem == V.ARRAY:
        return {"type": "arr", "values": [json_array(py_type(v[0]), v) for v in values]}
    return {"type": TYPE_NAMES[elem], "values": [json_scalar(elem, v) for v in values]}


METADATA = [
    ("test.u8", V.UINT8, 255, None),
    ("test.i8", V.INT8, -128, None),
    ("test.u16", V.UINT16, 65535, None),
    ("test.i16", V.INT16, -32768, None),
    ("test.u32", V.UINT32, 4294967295, None),
    ("test.i32", V.INT32, -2147483648, None),
    ("test.u64", V.UINT64, 2**64 - 1, None),
    ("test.i64", V.INT64, -(2**63), None),
    ("test.f32", V.FLOAT32, 0.1, None),
    ("test.f32_neg_zero", V.FLOAT32, -0.0, None),
    ("test.f32_inf", V.FLOAT32, -math.inf, None),
    ("test.f32_nan", V.FLOAT32, math.nan, None),
    ("test.f64", V.FLOAT64, 1e300, None),
    ("test.f64_tiny", V.FLOAT64, 5e-324, None),
    ("test.bool_true", V.BOOL, True, None),
    ("test.bool_false", V.BOOL, False, None),
    ("test.str", V.STRING, "héllo wörld ✓ 🦙", None),
    ("test.str_empty", V.STRING, "", None),
    ("test.arr_u8", V.ARRAY, [0, 1, 254, 255], V.UINT8),
    ("test.arr_i8", V.ARRAY, [-128, -1, 0, 127], V.INT8),
    ("test.arr_u16", V.ARRAY, [0, 65535], V.UINT16),
    ("test.arr_i16", V.ARRAY, [-32768, 32767], V.INT16),
    ("test.arr_u32", V.ARRAY, [0, 7, 4294967295], V.UINT32),
    ("test.arr_i32", V.ARRAY, [-2147483648, 0, 2147483647], V.INT32),
    ("test.arr_u64", V.ARRAY, [0, 2**64 - 1], V.UINT64),
    ("test.arr_i64", V.ARRAY, [-(2**63), 2**63 - 1], V.INT64),
    ("test.arr_f32", V.ARRAY, [0.5, -1.25, math.inf, 1e-45], V.FLOAT32),
    ("test.arr_f64", V.ARRAY, [0.1, -2.5e-310, -math.inf], V.FLOAT64),
    ("test.arr_bool", V.ARRAY, [True, False, True], V.BOOL),
    ("tokenizer.ggml.tokens", V.ARRAY, ["<s>", "</s>", "▁the", "", "é", "🦙", "<0x0A>"], V.STRING),
    ("test.arr_nested", V.ARRAY, [[1, 2, 3], ["a", "bc"], [0.5], [True]], V.ARRAY),
    ("test.arr_nested_deep", V.ARRAY, [[[1, 2], [3]], [[4]]], V.ARRAY),
]


def q_raw(rng: np.random.Generator, qtype: T, rows: int, cols: int) -> np.ndarray:
    """Random but sane K-quant bytes (gguf has no K-quant quantizer): small positive and negative scales."""
    block_size, type_size = gguf.GGML_QUANT_SIZES[qtype]
    blocks = rng.integers(0, 256, size=(rows * cols // block_size, type_size), dtype=np.uint8)
    at = [type_size - 2] if qtype == T.Q6_K else [0, 2]
    for b in blocks:
        for a in at:
            put_f16(b, a, f16_bits(rng.normal() * 0.01))
    return blocks.reshape(rows, cols // block_size * type_size)


def write_tiny(rng: np.random.Generator) -> None:
    path = OUT / "tiny.gguf"
    w = gguf.GGUFWriter(path, arch="lens-test")
    w.add_custom_alignment(64)
    for key, vtype, value, sub in METADATA:
        w.add_key_value(key, value, vtype, sub_type=sub)

    f32 = rng.normal(size=(3, 5)).astype(np.float32)
    f32[0, :3] = [np.nan, -np.inf, -0.0]
    tensors = [
        ("token_embd.weight", f32, None),
        ("blk.0.f32_4d", rng.normal(size=(2, 1, 3, 2)).astype(np.float32), None),
        ("blk.0.attn_norm.weight", rng.normal(size=(2, 3, 4)).astype(np.float16), None),
        ("blk.0.bf16", quantize(rng.normal(size=(7,)).astype(np.float32), T.BF16), T.BF16),
        ("blk.0.attn_q.weight", quantize(rng.normal(size=(3, 64)).astype(np.float32), T.Q8_0), T.Q8_0),
        ("blk.0.ffn_up.weight", q_raw(rng, T.Q4_K, 2, 256), T.Q4_K),
        ("blk.0.ffn_down.weight", q_raw(rng, T.Q5_K, 1, 512), T.Q5_K),
        ("output.weight", q_raw(rng, T.Q6_K, 2, 256), T.Q6_K),
        ("unsupported.q4_0", quantize(rng.normal(size=(1, 32)).astype(np.float32), T.Q4_0), T.Q4_0),
    ]
    for name, data, raw in tensors:
        w.add_tensor(name, data, raw_dtype=raw)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()

    # What gguf's own reader makes of the file: tensor placement and values.
    r = gguf.GGUFReader(path)
    assert r.alignment == 64
    expected, infos = {}, []
    for t in r.tensors:
        dims = [int(d) for d in t.shape]  # GGUF order: fastest-varying first
        infos.append({
            "name": t.name,
            "ggml_type": t.tensor_type.name,
            "ggml_type_id": int(t.tensor_type),
            "dims": dims,
            "shape": dims[::-1],
            "offset": int(t.data_offset - r.data_offset),
            "n_elements": int(t.n_elements),
            "n_bytes": int(t.n_bytes),
        })
        if t.tensor_type != T.Q4_0:
            values = np.asarray(dequantize(t.data, t.tensor_type), dtype=np.float32).reshape(dims[::-1])
            expected[t.name] = np.ascontiguousarray(values)
    save_file(expected, OUT / "tiny.expected.safetensors")

    metadata = [{"key": "general.architecture", "type": "str", "value": "lens-test"},
                {"key": "general.alignment", "type": "u32", "value": 64}]
    for key, vtype, value, sub in METADATA:
        if vtype == V.ARRAY:
            metadata.append({"key": key, "type": "arr", "value": json_array(sub, value)})
        else:
            metadata.append({"key": key, "type": TYPE_NAMES[vtype], "value": json_scalar(vtype, value)})
    spec = {
        "gguf_version": gguf_version(),
        "seed": SEED,
        "version": 3,
        "alignment": 64,
        "data_offset": int(r.data_offset),
        "file_len": path.stat().st_size,
        "metadata": metadata,
        "tensors": infos,
    }
    (OUT / "tiny.json").write_text(json.dumps(spec, indent=1, ensure_ascii=False) + "\n")


def write_big_endian() -> None:
    w = gguf.GGUFWriter(OUT / "tiny-be.gguf", arch="lens-test", endianess=gguf.GGUFEndian.BIG)
    w.add_uint32("test.u32", 7)
    w.add_tensor("t", np.arange(4, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(SEED)
    write_blocks(rng)
    write_tiny(rng)
    write_big_endian()
    for f in sorted(OUT.iterdir()):
        print(f"{f.stat().st_size:8d}  {f.relative_to(OUT.parent.parent.parent)}")


if __name__ == "__main__":
    main()
