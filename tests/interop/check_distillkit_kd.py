"""Checks a `workbench datasets export --kind kd --format distillkit` set as DistillKit reads it.

DistillKit's offline training (`prepacked: true`, `teacher: {kind: dataset}`) loads a dataset
`repo_id` with `datasets.load_dataset(PATH, split=...)`, stacks every column of a batch into a
tensor (`collate_packed_batch`), gets the teacher's signal from the batch
(`OfflineSignalSource` -> `LogprobCompressor.decompress_to_sparse`, which takes `token_ids` /
`top_values` as they are) and compares the signal at position t with the student's logits at t
where `labels[t] >= 0` (its `kl` loss). This script:

- packs the synthetic set again, independently (the teacher's chat template through
  transformers, conversations in order, a new row when one does not fit), and checks every row's
  tokens, attention mask and labels (the assistant turn: the answer and what the template closes
  it with) against it;
- checks that every labelled position whose next token the teacher wrote holds the teacher's
  top-k for that token;
- computes the loss for a student that says what the teacher said at every position (~0) and for
  one a position late (clearly not): with DistillKit's own code when it is importable (it is not
  on PyPI: point `WORKBENCH_DISTILLKIT` at a checkout), else with the same sparse KL written out
  here (`missing_probability_handling: zero`).

Usage: check_distillkit_kd.py EXPORT_DIR TOKENIZER_DIR SYNTHETIC_SET_DIR SEQUENCE_LEN
"""

import glob
import os
import sys

import datasets
import pyarrow.parquet as pq
import torch
from transformers import AutoTokenizer

export_dir, tokenizer_dir, synthetic_dir, seq_len = sys.argv[1:5]
seq_len = int(seq_len)
FLOOR = -80.0

distillkit = os.environ.get("WORKBENCH_DISTILLKIT")
if distillkit:
    sys.path.insert(0, distillkit)

try:
    from distillkit.configuration import HfRepoDataset
    from distillkit.main import _load_dataset

    # DistillKit's own loading of a `repo_id` with `prepacked: true`.
    rows = _load_dataset(HfRepoDataset(repo_id=export_dir, split="train"), None, None, None, prepacked=True)
except ImportError:
    rows = datasets.load_dataset(export_dir, split="train")
assert set(rows.column_names) == {"input_ids", "attention_mask", "labels", "token_ids", "top_values"}, rows.column_names
batch = {key: torch.tensor(rows[key]) for key in rows.column_names}  # collate_packed_batch
b, length = batch["input_ids"].shape
k = batch["token_ids"].shape[-1]
assert length == seq_len, (length, seq_len)
assert batch["top_values"].shape == (b, length, k)

tok = AutoTokenizer.from_pretrained(tokenizer_dir)
eos = tok.eos_token_id
samples = []
for f in sorted(glob.glob(os.path.join(synthetic_dir, "data", "*.parquet"))):
    samples.extend(pq.read_table(f).to_pylist())

# Pack again: (row, start, chat, answer start, sample) for every conversation.
placed, r, pos = [], 0, 0
for s in samples:
    messages = s["messages"] or [{"role": "user", "content": s["prompt"]}]
    if s["completion"] is None or not s["completion_ids"]:
        continue
    prompt = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=False)
    chat = tok.apply_chat_template(
        messages + [{"role": "assistant", "content": s["completion"]}], tokenize=True, return_dict=False
    )
    p, n = len(prompt), len(s["completion_ids"])
    if chat[:p] != prompt or chat[p : p + n] != s["completion_ids"] or len(chat) > seq_len:
        continue
    if pos + len(chat) > seq_len:
        r, pos = r + 1, 0
    placed.append((r, pos, chat, p, s))
    pos += len(chat)
assert placed and placed[-1][0] == b - 1, (len(placed), b)

want_ids = torch.full((b, length), eos)
want_mask = torch.zeros((b, length), dtype=torch.long)
want_labels = torch.full((b, length), -100)
teacher_next = {}  # (row, t) -> the teacher's top-k for the token after t
for r, start, chat, p, s in placed:
    n = len(s["completion_ids"])
    for j, token in enumerate(chat):
        want_ids[r, start + j] = token
        want_mask[r, start + j] = 1
        if j >= p:
            want_labels[r, start + j] = token
        if p <= j + 1 < p + n:
            teacher_next[(r, start + j)] = sorted(s["teacher_topk"][j + 1 - p], key=lambda e: -e["logprob"])
assert torch.equal(batch["input_ids"], want_ids)
assert torch.equal(batch["attention_mask"], want_mask)
assert torch.equal(batch["labels"], want_labels)

checked = 0
for (r, t), top in teacher_next.items():
    if batch["labels"][r, t] < 0:
        continue
    assert batch["token_ids"][r, t].tolist() == [e["id"] for e in top[:k]], (r, t)
    want = torch.tensor([max(e["logprob"], FLOOR) for e in top[:k]])
    assert torch.allclose(batch["top_values"][r, t], want), (r, t)
    checked += 1
assert checked > 0


def student(shift):
    """Logits at t: the teacher's distribution over the token after t + shift, else certain."""
    vocab = max(len(tok), int(batch["token_ids"].max()) + 1)
    logits = torch.full((b, length, vocab), -1e4)
    for r in range(b):
        for t in range(length):
            u = t + shift
            top = teacher_next.get((r, u))
            if top is not None:
                for e in top:
                    logits[r, t, e["id"]] = max(e["logprob"], FLOOR)
            else:
                nxt = int(want_ids[r, u + 1]) if 0 <= u + 1 < length and want_mask[r, u + 1] else eos
                logits[r, t, nxt] = 0.0
    return logits


mask = (batch["labels"] >= 0).unsqueeze(-1)
try:
    from distillkit.compression import LogprobCompressor
    from distillkit.compression.config import DistributionQuantizationConfig
    from distillkit.lossfuncs.kl import KLDLoss
    from distillkit.missing_probability import MissingProbabilityHandling
    from distillkit.signals import OfflineSignalSource
    from transformers.modeling_outputs import CausalLMOutput

    vocab = max(len(tok.get_vocab()), max(tok.get_vocab().values()) + 1)
    compressor = LogprobCompressor(config=DistributionQuantizationConfig(d=vocab, k=1, exact_k=1, residual_bins=[]))
    signal = OfflineSignalSource(compressor, vocab_size=vocab).get_signal(batch)
    kl = KLDLoss(temperature=1.0, missing_probability_handling=MissingProbabilityHandling.ZERO)

    def loss(logits):
        return kl(CausalLMOutput(logits=logits), signal, mask=mask).item()

    by = "DistillKit's own signal source and kl loss"
except ImportError:

    def loss(logits):
        """DistillKit's sparse KL with `missing: zero`: the top-k renormalised."""
        ids, values = batch["token_ids"], batch["top_values"]
        teacher = values - torch.logsumexp(values, dim=-1, keepdim=True)
        gathered = logits.gather(-1, ids) - torch.logsumexp(logits, dim=-1, keepdim=True)
        per = (teacher.exp() * (teacher - gathered)).sum(-1) * mask.squeeze(-1)
        return (per.sum() / mask.sum()).item()

    by = "the same sparse KL written out (DistillKit is not installed: set WORKBENCH_DISTILLKIT to a checkout)"

right, late = loss(student(0)), loss(student(-1))
assert right < 1e-3, f"KD loss of the teacher itself: {right}"
assert late > 0.1, f"KD loss of a student one position late: {late}"
print(
    f"distillkit kd ok: {b} rows of {length}, {len(placed)} conversations, {checked} positions, "
    f"loss {right:.2e} (one late: {late:.3f}) by {by}"
)
