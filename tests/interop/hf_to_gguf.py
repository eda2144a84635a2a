"""Writes a Hub checkpoint as a GGUF file with llama.cpp's own `gguf` package, laid out as
llama.cpp's `convert_hf_to_gguf.py` lays it out, and a Hub directory holding the same weights.

Usage: hf_to_gguf.py SRC_DIR OUT.gguf TYPE REF_DIR [spm] [mistral]

SRC_DIR is a Hub checkpoint (config.json, model.safetensors, tokenizer.json, optionally
tokenizer_config.json and chat_template.jinja) of a Llama, Mistral or Qwen2 model with a
byte-level BPE tokenizer. TYPE is f32, f16, bf16, q8_0, q4_0, q4_1, q4_k, q5_k or q6_k: matrices
are stored in it (1-D tensors stay F32, as llama.cpp keeps them).

The K-quants hold blocks of 256 values along a row, wider than these checkpoints' rows: for them
the model is widened (hidden size 256, heads of 64, MLP 512; the rest of the config kept) and its
matrices are random K-quant blocks drawn from a fixed seed, scaled to weights under about 0.1,
since `gguf` quantizes to none of them. The 1-D tensors are random too. As the converter does, Llama and Mistral models are
written as the `llama` architecture with the query and key rows of each head interleaved (llama.cpp
rotates adjacent pairs), Qwen2 as `qwen2` unchanged; the tokenizer goes in as `tokenizer.ggml.*`
(`gpt2` model, `gpt-2` pre-tokenizer, merges, token types, special token ids).

With `spm`, the tokenizer goes in as a SentencePiece BPE vocabulary instead (`llama` model, as
Llama 2, Mistral and TinyLlama files carry it): `<unk>`, `<s>`, `</s>`, the 256 byte tokens, then
pieces learned by BPE on a small built-in text (scores falling in merge order) and its characters,
`▁` for spaces, two user-defined tokens, padded with unused tokens to the model's vocabulary size.

With `mistral`, a Mistral checkpoint is written as the `mistral` architecture (as some converters
name it), laid out as `llama`.

REF_DIR gets config.json and an f32 model.safetensors of the weights the GGUF file holds after
rounding and quantization, under the Hub's names and in the Hub's order: the checkpoint a reader
of the GGUF file must reproduce. Prints "gguf written".
"""

import json
import os
import struct
import sys

import numpy as np
import gguf
from gguf import GGMLQuantizationType as Q

src, out, kind, ref = sys.argv[1:5]
spm = "spm" in sys.argv[5:]
mistral_arch = "mistral" in sys.argv[5:]
TYPES = {
    "f32": Q.F32,
    "f16": Q.F16,
    "bf16": Q.BF16,
    "q8_0": Q.Q8_0,
    "q4_0": Q.Q4_0,
    "q4_1": Q.Q4_1,
    "q4_k": Q.Q4_K,
    "q5_k": Q.Q5_K,
    "q6_k": Q.Q6_K,
}
FILE_TYPES = {"f32": 0, "f16": 1, "q4_0": 2, "q4_1": 3, "q8_0": 7, "q4_k": 15, "q5_k": 17, "q6_k": 18, "bf16": 32}
qtype = TYPES[kind]
k_quant = qtype in (Q.Q4_K, Q.Q5_K, Q.Q6_K)


def read_safetensors(path):
    raw = open(path, "rb").read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    data = raw[8 + n :]
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]
        buf = data[start:end]
        if info["dtype"] == "F32":
            a = np.frombuffer(buf, "<f4")
        elif info["dtype"] == "F16":
            a = np.frombuffer(buf, "<f2").astype(np.float32)
        elif info["dtype"] == "BF16":
            a = (np.frombuffer(buf, "<u2").astype(np.uint32) << 16).view(np.float32)
        else:
            sys.exit(f"error: {path}: tensor {name} is {info['dtype']}")
        tensors[name] = a.reshape(info["shape"]).astype(np.float32)
    return tensors


def write_safetensors(path, tensors):
    header, chunks, at = {}, [], 0
    for name, a in tensors.items():
        b = np.ascontiguousarray(a, dtype="<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [at, at + len(b)]}
        chunks.append(b)
        at += len(b)
    text = json.dumps(header).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(chunks))


def interleave(w, heads):
    # convert_hf_to_gguf.py's LlamaModel.permute: each head's two halves become adjacent pairs.
    return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


config = json.load(open(os.path.join(src, "config.json")))
if k_quant:
    config = dict(config, hidden_size=256, intermediate_size=512)
    if "head_dim" in config:
        config["head_dim"] = 256 // config["num_attention_heads"]
model_type = config["model_type"]
arch = {"llama": "llama", "mistral": "llama", "qwen2": "qwen2"}[model_type]
if mistral_arch and model_type == "mistral":
    arch = "mistral"
heads = config["num_attention_heads"]
kv_heads = config.get("num_key_value_heads", heads)
hidden = config["hidden_size"]
head_dim = config.get("head_dim") or hidden // heads

w = gguf.GGUFWriter(out, arch)
w.add_name(os.path.basename(os.path.normpath(src)))
w.add_context_length(config["max_position_embeddings"])
w.add_embedding_length(hidden)
w.add_block_count(config["num_hidden_layers"])
w.add_feed_forward_length(config["intermediate_size"])
w.add_head_count(heads)
w.add_head_count_kv(kv_heads)
w.add_layer_norm_rms_eps(config["rms_norm_eps"])
w.add_rope_freq_base(config.get("rope_theta", 10000.0))
w.add_rope_dimension_count(head_dim)
if head_dim != hidden // heads:
    w.add_key_length(head_dim)
    w.add_value_length(head_dim)
w.add_vocab_size(config["vocab_size"])
w.add_file_type(FILE_TYPES[kind])



def spm_vocab(size):
    """A SentencePiece BPE vocabulary of `size` pieces: tokens, scores, types."""
    from collections import Counter

    text = (
        "The quick brown fox jumps over the lazy dog. Hello world! The answer is 42, isn't it? "
        "Distillation turns a large teacher into a small student, and experts review the answers "
        "the student gives. Normalise the date: 3rd of March 2021 is 2021-03-03. "
        "Über naïve café déjà vu, 日本語のテキスト, and the teacher's answer again."
    )
    words = ["\u2581" + w for w in text.split(" ") if w]
    seqs = [list(w) for w in words]
    chars = sorted({c for w in words for c in w})
    merged = []
    while len(merged) < size - 3 - 256 - len(chars):
        counts = Counter((a, b) for q in seqs for a, b in zip(q, q[1:]))
        if not counts:
            break
        (a, b), _ = max(counts.items(), key=lambda kv: (kv[1], kv[0]))
        if a + b not in merged:
            merged.append(a + b)
        for q in seqs:
            i = 0
            while i < len(q) - 1:
                if q[i] == a and q[i + 1] == b:
                    q[i : i + 2] = [a + b]
                i += 1
    T = gguf.TokenType
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{i:02X}>" for i in range(256)] + merged + chars
    scores = [0.0] * 259 + [-float(i) for i in range(len(merged))]
    scores += [-float(len(merged) + i) for i in range(len(chars))]
    types = [T.UNKNOWN, T.CONTROL, T.CONTROL] + [T.BYTE] * 256 + [T.NORMAL] * (len(merged) + len(chars))
    # User-defined tokens, which llama.cpp matches in the raw text, wherever they are.
    for user in ["<|user|>", "qqq"]:
        tokens.append(user)
        scores.append(0.0)
        types.append(T.USER_DEFINED)
    while len(tokens) < size:
        tokens.append(f"<unused{len(tokens)}>")
        scores.append(-1e9)
        types.append(T.UNUSED)
    assert len(tokens) == size, (len(tokens), size)
    return tokens, scores, types


if spm:
    tokens, scores, types = spm_vocab(config["vocab_size"])
    w.add_tokenizer_model("llama")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_unk_token_id(0)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_add_bos_token(True)
    w.add_add_space_prefix(True)
else:
    tok = json.load(open(os.path.join(src, "tokenizer.json")))
    vocab = tok["model"]["vocab"]
    tokens = [None] * len(vocab)
    for t, i in vocab.items():
        tokens[i] = t
    types = [gguf.TokenType.NORMAL] * len(tokens)
    for a in tok.get("added_tokens", []):
        types[a["id"]] = gguf.TokenType.CONTROL if a["special"] else gguf.TokenType.USER_DEFINED
    merges = [m if isinstance(m, str) else " ".join(m) for m in tok["model"]["merges"]]
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("gpt-2")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    tok_config_path = os.path.join(src, "tokenizer_config.json")
    tok_config = json.load(open(tok_config_path)) if os.path.exists(tok_config_path) else {}
    for role, add in [("bos", w.add_bos_token_id), ("eos", w.add_eos_token_id), ("pad", w.add_pad_token_id)]:
        name = tok_config.get(f"{role}_token")
        if isinstance(name, dict):
            name = name.get("content")
        if name in vocab:
            add(vocab[name])
    w.add_add_bos_token(bool(tok_config.get("add_bos_token", False)))
    template_path = os.path.join(src, "chat_template.jinja")
    if os.path.exists(template_path):
        w.add_chat_template(open(template_path).read())

names = {
    "model.embed_tokens.weight": "token_embd.weight",
    "model.norm.weight": "output_norm.weight",
    "lm_head.weight": "output.weight",
}
layer_names = {
    "input_layernorm": "attn_norm",
    "post_attention_layernorm": "ffn_norm",
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
}
def f16_bytes(v):
    return np.frombuffer(np.float16(v).tobytes(), np.uint8)


def random_k_blocks(rows, cols, t, rng):
    """Random K-quant blocks for a [rows, cols] matrix, as bytes; their super-block scales set so
    that every weight is under about 0.1."""
    block, size = gguf.GGML_QUANT_SIZES[t]
    raw = rng.integers(0, 256, size=(rows, cols // block, size), dtype=np.uint8)
    if t == Q.Q6_K:
        # ql, qh, 16 signed scales, then d: |d · scale · (q − 32)| ≤ 2e-5 · 128 · 32.
        raw[..., size - 2 :] = f16_bytes(2e-5)
    else:
        # d, dmin, then 6-bit scales and mins: d · scale · q − dmin · min, q up to 15 (Q4_K) or
        # 31 (Q5_K). dmin is d times q's mean, so weights come out of either sign.
        d, q_mean = (1e-4, 7.5) if t == Q.Q4_K else (5e-5, 15.5)
        raw[..., 0:2] = f16_bytes(d)
        raw[..., 2:4] = f16_bytes(d * q_mean)
    return raw.reshape(rows, cols // block * size)


def widened(tensors):
    """The checkpoint's tensors at the widened config's shapes, random (see the module docs)."""
    rng = np.random.default_rng(7)
    hd = config.get("head_dim") or hidden // heads
    inter = config["intermediate_size"]
    shapes = {
        "self_attn.q_proj.weight": (heads * hd, hidden),
        "self_attn.k_proj.weight": (kv_heads * hd, hidden),
        "self_attn.v_proj.weight": (kv_heads * hd, hidden),
        "self_attn.o_proj.weight": (hidden, heads * hd),
        "self_attn.q_proj.bias": (heads * hd,),
        "self_attn.k_proj.bias": (kv_heads * hd,),
        "self_attn.v_proj.bias": (kv_heads * hd,),
        "mlp.gate_proj.weight": (inter, hidden),
        "mlp.up_proj.weight": (inter, hidden),
        "mlp.down_proj.weight": (hidden, inter),
        "input_layernorm.weight": (hidden,),
        "post_attention_layernorm.weight": (hidden,),
    }
    out = {}
    for name in tensors:
        if name in ("model.embed_tokens.weight", "lm_head.weight"):
            shape = (config["vocab_size"], hidden)
        elif name == "model.norm.weight":
            shape = (hidden,)
        else:
            shape = shapes[name.split(".", 3)[3]]
        if len(shape) == 2:
            out[name] = random_k_blocks(*shape, qtype, rng)
        elif name.endswith("norm.weight"):
            out[name] = (1.0 + 0.1 * rng.standard_normal(shape)).astype(np.float32)
        else:
            out[name] = (0.02 * rng.standard_normal(shape)).astype(np.float32)
    return out


reference = {}
source = read_safetensors(os.path.join(src, "model.safetensors"))
if k_quant:
    source = widened(source)
for name, x in source.items():
    if name in names:
        target = names[name]
    else:
        _, _, layer, rest = name.split(".", 3)
        module, suffix = rest.rsplit(".", 1)
        target = f"blk.{layer}.{layer_names[module]}.{suffix}"
    t = qtype if x.ndim == 2 else Q.F32
    if t == Q.F32:
        stored = x
    elif t == Q.F16:
        stored = x.astype(np.float16)
    elif k_quant:
        stored = x
    else:
        stored = gguf.quants.quantize(x, t)
    # Blocks run along rows, so quantizing and then interleaving rows equals the converter's
    # interleaving and then quantizing.
    if t == Q.F32:
        reference[name] = x
    elif t == Q.F16:
        reference[name] = stored.astype(np.float32)
    else:
        values = np.asarray(gguf.quants.dequantize(stored, t), dtype=np.float32)
        reference[name] = values.reshape(stored.shape[0], -1)
    if arch in ("llama", "mistral") and (".q_proj." in name or ".k_proj." in name):
        n = heads if ".q_proj." in name else kv_heads
        stored = interleave(stored, n)
    w.add_tensor(target, stored, raw_dtype=t if t not in (Q.F32, Q.F16) else None)

w.write_header_to_file()
w.write_kv_data_to_file()
w.write_tensors_to_file()
w.close()

os.makedirs(ref, exist_ok=True)
write_safetensors(os.path.join(ref, "model.safetensors"), reference)
ref_config = dict(config, dtype="float32")
json.dump(ref_config, open(os.path.join(ref, "config.json"), "w"), indent=2)
print("gguf written")
