"""llama.cpp's decoding speed on a GGUF file, through llama-cpp-python's low-level API: `batch`
sequences of `prompt_len` random tokens are prefilled (giving the first new token), then each
further greedy step decodes one token per sequence (one `llama_decode` call per step, every
sequence in it); the time covers both, as the workbench's `generate()` does. Prints one JSON
object like `cargo bench --bench model -- generate`: new tokens per second, best of `reps`.

Usage: llama_cpp_decode.py --model FILE.gguf [--batch 1] [--prompt-len 16] [--new 64] [--reps 3]
                           [--threads 2] [--label NAME]

Keys and values are cached in F32 (llama.cpp's default is F16), as the workbench caches them.
"""

import argparse
import json
import random
import time

import llama_cpp as L
import numpy as np

ap = argparse.ArgumentParser()
ap.add_argument("--model", required=True)
ap.add_argument("--batch", type=int, default=1)
ap.add_argument("--prompt-len", type=int, default=16)
ap.add_argument("--new", type=int, default=64)
ap.add_argument("--reps", type=int, default=3)
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--label", default="")
a = ap.parse_args()

@L.llama_log_callback
def quiet(level, text, user_data):
    # llama.cpp's loader lists every key and tensor; the figures are the output here.
    pass


L.llama_log_set(quiet, None)
L.llama_backend_init()
mp = L.llama_model_default_params()
# llama.cpp's extra CPU buffer types (AMX on a CPU that has it) crash on Q8_0 files in this
# build (llama-cpp-python 0.3.36: SIGSEGV at the first decode, SmolLM2's files included): the
# plain CPU path runs, with the integer dot products the CPU has (AVX-512 VNNI here too).
if hasattr(mp, "use_extra_bufts"):
    mp.use_extra_bufts = False
model = L.llama_model_load_from_file(a.model.encode(), mp)
if not model:
    raise SystemExit(f"error: llama.cpp could not load {a.model}")
vocab = L.llama_model_get_vocab(model)
n_vocab = L.llama_vocab_n_tokens(vocab)
cp = L.llama_context_default_params()
cp.n_ctx = a.batch * (a.prompt_len + a.new + 8)
cp.n_batch = max(a.batch * a.prompt_len, a.batch)
cp.n_ubatch = cp.n_batch
cp.n_seq_max = a.batch
cp.n_threads = a.threads
cp.n_threads_batch = a.threads
cp.type_k = 0
cp.type_v = 0
ctx = L.llama_init_from_model(model, cp)
if not ctx:
    raise SystemExit("error: llama.cpp could not make a context")
batch = L.llama_batch_init(cp.n_batch, 0, a.batch)
rng = random.Random(11)
prompts = [[rng.randrange(n_vocab) for _ in range(a.prompt_len)] for _ in range(a.batch)]


def fill(items):
    """items: (token, position, sequence, wants logits)."""
    batch.n_tokens = len(items)
    for i, (tok, pos, seq, logits) in enumerate(items):
        batch.token[i] = tok
        batch.pos[i] = pos
        batch.n_seq_id[i] = 1
        batch.seq_id[i][0] = seq
        batch.logits[i] = logits


def run():
    L.llama_memory_clear(L.llama_get_memory(ctx), True)
    # Timed as the workbench's generate() is: the prefill, then a step per new token after the
    # first.
    start = time.perf_counter()
    fill(
        [
            (t, p, s, p == a.prompt_len - 1)
            for s, prompt in enumerate(prompts)
            for p, t in enumerate(prompt)
        ]
    )
    if L.llama_decode(ctx, batch) != 0:
        raise SystemExit("error: llama_decode failed on the prompts")
    out = [[] for _ in range(a.batch)]
    # Where each sequence's last token sits in the batch just decoded (logits are asked by it).
    last = [s * a.prompt_len + a.prompt_len - 1 for s in range(a.batch)]
    for step in range(a.new):
        nxt = []
        for s in range(a.batch):
            row = np.ctypeslib.as_array(L.llama_get_logits_ith(ctx, last[s]), shape=(n_vocab,))
            nxt.append(int(row.argmax()))
        last = list(range(a.batch))
        for s, t in enumerate(nxt):
            out[s].append(t)
        if step == a.new - 1:
            break
        fill([(t, a.prompt_len + step, s, True) for s, t in enumerate(nxt)])
        if L.llama_decode(ctx, batch) != 0:
            raise SystemExit("error: llama_decode failed")
    L.llama_synchronize(ctx)
    return time.perf_counter() - start, out


run()
best = min(run()[0] for _ in range(a.reps))
print(
    json.dumps(
        {
            "impl": "llama.cpp",
            "phase": "generate",
            "label": a.label,
            "batch": a.batch,
            "new_tokens_per_s": round(a.batch * a.new / best, 1),
            "seconds": round(best, 3),
            "llama_cpp_python": L.__version__,
        }
    )
)
L.llama_batch_free(batch)
L.llama_free(ctx)
L.llama_model_free(model)
