"""Writes Parquet files the way pyarrow and HF `datasets` users do, for the import checks.

Usage: write_hf_shapes.py OUT_DIR
"""

import os
import sys
import tempfile

os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ["HF_DATASETS_CACHE"] = tempfile.mkdtemp(prefix="wb-hf-cache-")

import pyarrow as pa
import pyarrow.parquet as pq
from datasets import Dataset

out = sys.argv[1]

# TRL conversational SFT: messages as list<struct<role, content>>, every field nullable,
# large strings (as polars and some pipelines write them).
msg = pa.struct([("role", pa.large_string()), ("content", pa.large_string())])
pq.write_table(
    pa.table(
        {
            "messages": pa.array(
                [
                    [{"role": "user", "content": "What is 2+2?"}, {"role": "assistant", "content": "4"}],
                    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Capital of France?"}, {"role": "assistant", "content": "Paris"}],
                    [{"role": "user", "content": "Say hi"}, {"role": "assistant", "content": "hi"}],
                ],
                type=pa.list_(msg),
            ),
            "source": pa.array(["a", None, "c"], type=pa.string()),
        }
    ),
    os.path.join(out, "messages.parquet"),
)

# TRL prompt-completion, with snappy (pyarrow's default codec).
pq.write_table(
    pa.table({"prompt": ["p1", "p2", "p3"], "completion": ["c1", None, "c3"], "extra": [1, 2, 3]}),
    os.path.join(out, "prompt_completion.parquet"),
    compression="snappy",
)

# TRL preference, conversational chosen/rejected.
pq.write_table(
    pa.table(
        {
            "prompt": [[{"role": "user", "content": "2+2?"}], [{"role": "user", "content": "3+3?"}]],
            "chosen": [[{"role": "assistant", "content": "4"}], [{"role": "assistant", "content": "6"}]],
            "rejected": [[{"role": "assistant", "content": "5"}], [{"role": "assistant", "content": "7"}]],
        }
    ),
    os.path.join(out, "preference.parquet"),
)

# A directory written by HF `datasets` itself (its own schema metadata, int64 everywhere).
d = Dataset.from_dict({"prompt": ["a", "b", "c", "d"], "reference": ["1", "2", "3", "4"], "seed": [1, 2, 3, 4]})
os.makedirs(os.path.join(out, "hf_datasets_dir"), exist_ok=True)
d.to_parquet(os.path.join(out, "hf_datasets_dir", "train-00000-of-00001.parquet"))

# Our sample schema as a pyarrow user would write it by hand: int64 ids, float64 logprobs,
# list children named `item`.
pq.write_table(
    pa.table(
        {
            "prompt": ["x", "y"],
            "completion": ["ab", "c"],
            "completion_ids": pa.array([[1, 2], [3]], type=pa.list_(pa.int64())),
            "teacher_topk": pa.array(
                [[[{"id": 1, "logprob": -0.25}, {"id": 9, "logprob": -2.0}], [{"id": 2, "logprob": -0.5}]], [[{"id": 3, "logprob": -0.125}]]],
                type=pa.list_(pa.list_(pa.struct([("id", pa.int64()), ("logprob", pa.float64())]))),
            ),
        }
    ),
    os.path.join(out, "topk.parquet"),
)
print("written")
