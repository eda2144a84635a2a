"""Writes a GGUF file with llama.cpp's own `gguf` package, for the workbench's reader to read.

Usage: write_gguf.py OUT.gguf EXPECTED.json

Tensors of every type the reader dequantizes: F32, F16, BF16, Q8_0, Q4_0 and Q4_1 quantized by
`gguf.quants.quantize` from seeded random values; Q4_K, Q5_K and Q6_K (which the package only
dequantizes) as seeded random blocks with small positive f16 scales; and some metadata. EXPECTED.json holds, per
tensor, its GGUF dimensions and the values `gguf.quants.dequantize` gives back, and the
metadata. Prints "gguf written".
"""

import json
import sys

import numpy as np
import gguf
from gguf import GGMLQuantizationType as Q

out, expected_path = sys.argv[1], sys.argv[2]
rng = np.random.default_rng(7)
w = gguf.GGUFWriter(out, "llama")
w.add_block_count(2)
w.add_context_length(128)
w.add_token_list(["<s>", "</s>", "a", "b"])
w.add_string("general.name", "interop fixture")
expected = {"tensors": {}, "metadata": {"llama.block_count": 2, "llama.context_length": 128}}
for name, qtype, shape in [
    ("f32", Q.F32, (3, 64)),
    ("f16", Q.F16, (2, 32)),
    ("bf16", Q.BF16, (2, 32)),
    ("q8_0", Q.Q8_0, (4, 64)),
    ("q4_0", Q.Q4_0, (2, 96)),
    ("q4_1", Q.Q4_1, (2, 64)),
]:
    x = rng.standard_normal(shape).astype(np.float32)
    if qtype == Q.F32:
        data = x
    elif qtype == Q.F16:
        data = x.astype(np.float16)
    else:
        data = gguf.quants.quantize(x, qtype)
    w.add_tensor(name, data, raw_dtype=qtype if qtype not in (Q.F32, Q.F16) else None)
    values = gguf.quants.dequantize(data, qtype) if qtype not in (Q.F32, Q.F16) else data
    expected["tensors"][name] = {
        # GGUF lists the fastest-varying dimension first.
        "dims": list(reversed(shape)),
        "values": np.asarray(values, dtype=np.float32).reshape(-1).tolist(),
    }
# Random K-quant blocks: every bit pattern of the quants and sub-scales is valid; the f16 super-block
# scales are set to small positive numbers so no value is infinite.
for name, qtype, block_bytes, scale_at in [
    ("q4_k", Q.Q4_K, 144, [0, 2]),
    ("q5_k", Q.Q5_K, 176, [0, 2]),
    ("q6_k", Q.Q6_K, 210, [208]),
]:
    rows, blocks = 2, 2
    data = rng.integers(0, 256, size=(rows, blocks * block_bytes), dtype=np.uint8)
    for r in range(rows):
        for b in range(blocks):
            for at in scale_at:
                scale = np.float16(rng.uniform(0.001, 0.05)).tobytes()
                data[r, b * block_bytes + at : b * block_bytes + at + 2] = np.frombuffer(scale, dtype=np.uint8)
    w.add_tensor(name, data, raw_dtype=qtype)
    shape = (rows, blocks * 256)
    values = gguf.quants.dequantize(data, qtype)
    expected["tensors"][name] = {
        # GGUF lists the fastest-varying dimension first.
        "dims": list(reversed(shape)),
        "values": np.asarray(values, dtype=np.float32).reshape(-1).tolist(),
    }
w.write_header_to_file()
w.write_kv_data_to_file()
w.write_tensors_to_file()
w.close()
with open(expected_path, "w") as f:
    json.dump(expected, f)
print("gguf written")
