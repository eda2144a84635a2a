"""transformers side of the generation benchmark: greedy decoding with the KV cache from a saved
checkpoint, on random prompts.

Usage: generate.py --model DIR [--batch 1] [--prompt-len 16] [--new 64] [--threads 2] [--reps 3]
                   [--attn eager|sdpa]

Prints one JSON line: {"impl": "transformers", "phase": "generate", "batch": B,
"new_tokens_per_s": ..., "threads": ..., ...}. The checkpoint is loaded in float32; generate()
runs with use_cache=True, do_sample=False and min_new_tokens = max_new_tokens = --new, so every
sequence yields exactly --new tokens whatever the model predicts. The time covers the prefill and
all decode steps; one warm-up call is not timed and the best of --reps is kept. Attention is
"eager" (the same arithmetic as ours) unless --attn sdpa.
"""

import argparse
import json
import os
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
import transformers
from transformers import AutoModelForCausalLM


def main():
    ap = argparse.ArgumentParser(usage=__doc__.split("Usage: ")[1].split("\n\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--prompt-len", type=int, default=16)
    ap.add_argument("--new", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--attn", choices=["eager", "sdpa"], default="eager")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    transformers.utils.logging.disable_progress_bar()
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32, attn_implementation=args.attn)
    model.eval()
    vocab = model.config.vocab_size
    pad = model.config.pad_token_id if model.config.pad_token_id is not None else 0
    gen = torch.Generator().manual_seed(0)
    prompt = torch.randint(1, vocab, (args.batch, args.prompt_len), generator=gen)
    mask = torch.ones_like(prompt)

    def run():
        with torch.no_grad():
            out = model.generate(
                prompt, attention_mask=mask, use_cache=True, do_sample=False,
                max_new_tokens=args.new, min_new_tokens=args.new, pad_token_id=pad,
            )
        assert out.shape == (args.batch, args.prompt_len + args.new), out.shape
        return out

    run()
    times = []
    for _ in range(args.reps):
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    best = min(times)
    print(f"runs: {', '.join(f'{t * 1e3:.1f} ms' for t in times)}", file=sys.stderr)
    print(
        json.dumps(
            {
                "impl": "transformers",
                "phase": "generate",
                "batch": args.batch,
                "new_tokens_per_s": round(args.batch * args.new / best, 1),
                "threads": args.threads,
                "prompt_len": args.prompt_len,
                "new": args.new,
                "ms": round(best * 1e3, 2),
                "attn": args.attn,
                "params": sum(p.numel() for p in model.parameters()),
                "transformers": transformers.__version__,
            }
        )
    )


if __name__ == "__main__":
    main()
