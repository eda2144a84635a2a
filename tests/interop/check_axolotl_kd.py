"""Checks a `workbench datasets export --kind kd --format axolotl` set with Axolotl's own code.

Loads the export as Axolotl does (`datasets.load_dataset(DIR)`), tokenizes every row with
Axolotl's KD strategy (`axolotl.integrations.kd.chat_template`, the loader `type:` names) and the
teacher's tokenizer through transformers, collates a batch with `DataCollatorForKD`, and then:

- every target Axolotl keeps (mask 1) at a position whose next token is an answer token is the
  teacher's top-k for that token, from the synthetic set, renormalised as Axolotl does;
- Axolotl's own top-k KD loss is ~0 for a student whose logits at each position are the
  teacher's distribution over the next token, and clearly not for one a position late.

Usage: check_axolotl_kd.py EXPORT_DIR TOKENIZER_DIR SYNTHETIC_SET_DIR
"""

import glob
import math
import os
import sys

import datasets
import pyarrow.parquet as pq
import torch
from transformers import AutoTokenizer

from axolotl.integrations.kd.chat_template import load
from axolotl.integrations.kd.collator import DataCollatorForKD
from axolotl.integrations.kd.topk_logprob.forward_kl import loss as topk_kl_loss
from axolotl.utils.dict import DictDefault

export_dir, tokenizer_dir, synthetic_dir = sys.argv[1:4]

rows = datasets.load_dataset(export_dir, split="train")
assert {"messages", "logprobs", "target_token_ids"} <= set(rows.column_names), rows.column_names
tok = AutoTokenizer.from_pretrained(tokenizer_dir)
cfg = DictDefault(
    {
        "sequence_len": 2048,
        "train_on_inputs": False,
        "chat_template": "tokenizer_default",
        "kd_temperature": 1.0,
    }
)
ds_cfg = {
    "path": export_dir,
    "type": "axolotl.integrations.kd.chat_template",
    "field_messages": "messages",
    "logprobs_field": "logprobs",
    "temperature": 1.0,
}
strategy = load(tok, cfg, ds_cfg)

samples = {}
for f in glob.glob(os.path.join(synthetic_dir, "data", "*.parquet")):
    for s in pq.read_table(f).to_pylist():
        samples[s["id"]] = s

features = []
checked = 0
for row in rows:
    sample = samples[row["id"]]
    out = strategy.tokenize_prompt(dict(row))
    ids = list(out["input_ids"])
    prompt = tok.apply_chat_template(
        row["messages"][:-1], add_generation_prompt=True, tokenize=True, return_dict=False
    )
    p, n = len(prompt), len(sample["completion_ids"])
    assert ids[:p] == list(prompt), (row["id"], ids, prompt)
    assert ids[p : p + n] == sample["completion_ids"], (row["id"], ids[p:], sample["completion_ids"])
    assert len(out["target_logprobs"]) == len(ids)
    for t in range(p, p + n - 1):
        assert out["target_mask"][t][0] == 1, (row["id"], t)
        top = sorted(sample["teacher_topk"][t + 1 - p], key=lambda e: -e["logprob"])
        k = len(out["target_token_ids"][t])
        assert out["target_token_ids"][t] == [e["id"] for e in top[:k]], (row["id"], t)
        kept = [math.exp(max(e["logprob"], -80.0)) for e in top[:k]]
        want = [math.log(q / sum(kept)) for q in kept]
        got = out["target_logprobs"][t]
        assert all(abs(a - b) < 1e-4 for a, b in zip(got, want)), (row["id"], t, got, want)
        checked += 1
    features.append(out | {"_p": p, "_sample": sample})

assert checked > 0, "no position was checked"

# Axolotl's loss on a batch: a student whose logits at position t are the teacher's own
# distribution over token t + 1 (from the synthetic set, not the export) is what the rows teach.
batch_features = [{k: v for k, v in f.items() if not k.startswith("_")} for f in features]
batch = DataCollatorForKD(tokenizer=tok, return_tensors="pt")(batch_features)
b, length, _ = batch["target_token_ids"].shape
vocab = max(len(tok), int(batch["target_token_ids"].max()) + 1)


def student(shift):
    logits = torch.full((b, length, vocab), -1e4)
    for i, f in enumerate(features):
        ids, p, s = batch["input_ids"][i].tolist(), f["_p"], f["_sample"]
        real = len(f["input_ids"])
        for t in range(real):
            nxt = t + 1 + shift
            j = nxt - p
            if 0 <= j < len(s["completion_ids"]):
                for e in s["teacher_topk"][j]:
                    logits[i, t, e["id"]] = max(e["logprob"], -80.0)
            else:
                target = ids[nxt] if nxt < real else tok.eos_token_id
                logits[i, t, target] = 0.0
    return logits


kd = topk_kl_loss(
    student(0), batch["target_token_ids"], batch["target_logprobs"], batch["target_mask"]
).item()
late = topk_kl_loss(
    student(-1), batch["target_token_ids"], batch["target_logprobs"], batch["target_mask"]
).item()
assert kd < 1e-3, f"KD loss of the teacher itself: {kd}"
assert late > 0.1, f"KD loss of a student one position late: {late}"
print(f"axolotl kd ok: {len(features)} rows, {checked} positions, loss {kd:.2e} (one late: {late:.3f})")
