"""Loads a GGUF file in llama.cpp (llama-cpp-python) and prints, as JSON, its greedy
continuation of each input and its tokenization of each text.

Usage: llama_cpp_greedy.py MODEL.gguf INPUTS.json

INPUTS.json: {"inputs": [[id, ...], ...], "max_new_tokens": n, "texts": ["...", ...],
"sequences": [[id, ...], ...]}.
Prints {"greedy": [[id, ...], ...], "tokens": [[id, ...], ...], "logits": [[[...], ...], ...]}:
greedy holds only the new tokens (argmax of llama.cpp's logits at every step, never stopping at
EOS); logits holds llama.cpp's logits at every position of each sequence; tokens is
llama.cpp's encoding of each text without BOS, special tokens in the text parsed as such (as
Hugging Face tokenizers do).
"""

import json
import sys

import numpy as np
import llama_cpp.llama_cpp as llama_low
from llama_cpp import Llama

# Without llama.cpp's extra CPU buffer types: on a CPU with AMX (an Intel Xeon with
# avx512_vnni and amx_int8, llama-cpp-python 0.3.36) they crash (SIGSEGV) on Q8_0 files, those
# llama.cpp's own `gguf` package writes as ours (and SmolLM2-135M's too, benches/gguf.sh). The
# plain CPU path reads the same file and computes the same products.
_default_params = llama_low.llama_model_default_params


def _plain_cpu_params():
    params = _default_params()
    if hasattr(params, "use_extra_bufts"):
        params.use_extra_bufts = False
    return params


llama_low.llama_model_default_params = _plain_cpu_params

model, inputs_path = sys.argv[1], sys.argv[2]
spec = json.load(open(inputs_path))
# logits_all: without it this binding leaves `scores` unfilled after `eval`.
# type_k, type_v = 0 (F32): llama.cpp caches keys and values in F16 unless told otherwise.
llm = Llama(
    model_path=model, n_ctx=128, n_threads=2, n_batch=128, logits_all=True, type_k=0, type_v=0, verbose=False
)
greedy = []
for ids in spec["inputs"]:
    llm.reset()
    llm.eval(ids)
    out = []
    for _ in range(spec["max_new_tokens"]):
        logits = np.asarray(llm.scores[llm.n_tokens - 1], dtype=np.float64)
        token = int(np.argmax(logits))
        out.append(token)
        llm.eval([token])
    greedy.append(out)
logits = []
for ids in spec["sequences"]:
    llm.reset()
    llm.eval(ids)
    logits.append(np.asarray(llm.scores[: len(ids)], dtype=np.float64).tolist())
tokens = [llm.tokenize(t.encode("utf-8"), add_bos=False, special=True) for t in spec["texts"]]
print(json.dumps({"greedy": greedy, "tokens": tokens, "logits": logits}))
