"""Checks that a checkpoint the workbench saved loads in transformers and gives our logits.

Usage: check_saved_model.py MODEL_DIR EXPECTED_JSON [--atol 1e-4]

EXPECTED_JSON is {"ids": [[id, ...], ...], "logits": [[[f, ...], ...], ...]}: one [seq, vocab]
logits matrix per ids list, as our CLI prints them. The model is loaded from the files alone
(AutoModelForCausalLM and AutoTokenizer, no hub) with the weights upcast to float32, so a
checkpoint saved in bf16 is compared at the precision its weights have. Exits 1 with the largest
difference and where it is if any logit is further than atol from ours; prints
"saved checkpoint ok" otherwise.
"""

import argparse
import json
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
import transformers
from transformers import AutoModelForCausalLM, AutoTokenizer


def main():
    ap = argparse.ArgumentParser(usage="check_saved_model.py MODEL_DIR EXPECTED_JSON [--atol 1e-4]")
    ap.add_argument("model_dir")
    ap.add_argument("expected_json")
    ap.add_argument("--atol", type=float, default=1e-4)
    args = ap.parse_args()

    transformers.utils.logging.disable_progress_bar()
    # transformers reads a missing directory as a hub repo id and says so confusingly.
    if not os.path.isdir(args.model_dir):
        sys.exit(f"error: `{args.model_dir}` is not a directory")
    with open(args.expected_json) as f:
        expected = json.load(f)
    if len(expected["ids"]) != len(expected["logits"]):
        sys.exit(f"error: `{args.expected_json}` has {len(expected['ids'])} ids lists but {len(expected['logits'])} logits matrices")

    try:
        model = AutoModelForCausalLM.from_pretrained(args.model_dir, dtype=torch.float32).eval()
    except Exception as e:
        sys.exit(f"error: transformers cannot load the model in `{args.model_dir}`: {type(e).__name__}: {e}")
    try:
        # Only that it loads: a checkpoint nobody can tokenize for is not a usable checkpoint.
        AutoTokenizer.from_pretrained(args.model_dir)
    except Exception as e:
        sys.exit(f"error: transformers cannot load the tokenizer in `{args.model_dir}`: {type(e).__name__}: {e}")

    worst = (0.0, None)
    for i, (ids, ours) in enumerate(zip(expected["ids"], expected["logits"])):
        ours = torch.tensor(ours, dtype=torch.float32)
        with torch.no_grad():
            theirs = model(torch.tensor([ids], dtype=torch.long)).logits[0].float()
        if ours.shape != theirs.shape:
            sys.exit(f"error: sequence {i}: our logits are {list(ours.shape)}, transformers' are {list(theirs.shape)}")
        if not torch.isfinite(ours).all():
            sys.exit(f"error: sequence {i}: our logits hold NaN or infinity")
        diff = (ours - theirs).abs()
        d = float(diff.max())
        if d > worst[0]:
            pos, tok = divmod(int(diff.argmax()), diff.shape[1])
            worst = (d, (i, pos, tok, float(ours[pos, tok]), float(theirs[pos, tok])))

    d, where = worst
    if d > args.atol:
        i, pos, tok, a, b = where
        sys.exit(
            f"error: logits differ by up to {d:.3g} (atol {args.atol:g}) at sequence {i}, position {pos}, "
            f"token {tok}: ours {a:.6g}, transformers {b:.6g}"
        )
    print(f"max abs diff {d:.3g} over {len(expected['ids'])} sequences", file=sys.stderr)
    print("saved checkpoint ok")


if __name__ == "__main__":
    main()
