"""PyTorch side of the training benchmark: full training steps of a Llama student, built by
transformers from an HF config.json, on random tokens.

Usage: model_train.py --config CONFIG_JSON [--batch 16] [--seq 128] [--steps 20] [--warmup 3]
                      [--threads 2] [--attn eager|sdpa]

Prints one JSON line: {"impl": "pytorch", "phase": "train", "params": N, "tokens_per_s": ...,
"step_ms": ..., "threads": ..., ...}. A step is what a training loop does: forward with labels
to the loss, backward, clip the gradient norm to 1.0, AdamW step (lr 1e-3, weight decay 0.1),
zero the gradients. Float32, no torch.compile. Attention is transformers' "eager" (matmul, mask,
softmax, matmul: the same arithmetic as ours) unless --attn sdpa asks for PyTorch's fused kernel.
step_ms is the mean over the timed steps; the warm-up steps (allocator, AdamW state) are not timed.

`configs/student-4m.json` has 3,950,848 parameters: embeddings and the untied head 2 x 2048 x 256
= 1,048,576; per layer q/o 2 x 256 x 256, k/v 2 x 256 x 128, MLP 3 x 256 x 688 and two norms
= 725,504, times 4 layers = 2,902,016; final norm 256.
"""

import argparse
import json
import os
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
from transformers import LlamaConfig, LlamaForCausalLM


def main():
    ap = argparse.ArgumentParser(usage=__doc__.split("Usage: ")[1].split("\n\n")[0])
    ap.add_argument("--config", required=True)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--attn", choices=["eager", "sdpa"], default="eager")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    config = LlamaConfig.from_json_file(args.config)
    config._attn_implementation = args.attn
    model = LlamaForCausalLM(config).to(torch.float32).train()
    params = sum(p.numel() for p in model.parameters())
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.1)
    # Batches are made before timing; 1.. so token 0 (bos/eos/pad) never appears.
    batches = torch.randint(1, config.vocab_size, (args.warmup + args.steps, args.batch, args.seq))

    def step(ids):
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss

    print(f"{params:,} parameters; {args.warmup} warm-up steps, {args.steps} timed", file=sys.stderr)
    for ids in batches[: args.warmup]:
        step(ids)
    times = []
    for ids in batches[args.warmup :]:
        t0 = time.perf_counter()
        loss = step(ids)
        times.append(time.perf_counter() - t0)
    step_s = sum(times) / len(times)
    print(f"last loss {loss.item():.3f}; fastest step {min(times) * 1e3:.1f} ms", file=sys.stderr)
    print(
        json.dumps(
            {
                "impl": "pytorch",
                "phase": "train",
                "params": params,
                "tokens_per_s": round(args.batch * args.seq / step_s, 1),
                "step_ms": round(step_s * 1e3, 2),
                "threads": args.threads,
                "batch": args.batch,
                "seq": args.seq,
                "attn": args.attn,
                "torch": torch.__version__,
            }
        )
    )


if __name__ == "__main__":
    main()
