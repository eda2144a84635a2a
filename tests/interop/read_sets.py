"""Reads sets written by `workbench` with every Python client users have.

Usage: read_sets.py SAMPLES_DIR SFT_DIR PREFERENCE_DIR

Checks columns, types and row counts in pyarrow, pandas, polars, DuckDB and HF `datasets`
(both `load_dataset("parquet", data_dir=...)` and `load_dataset(DIR)`, which reads the card).
"""

import glob
import os
import sys
import tempfile

os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ["HF_DATASETS_CACHE"] = tempfile.mkdtemp(prefix="wb-hf-cache-")

import duckdb
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
from datasets import Features, List, Value, load_dataset

samples_dir, sft_dir, pref_dir = sys.argv[1:4]

MESSAGES = pa.list_(pa.field("element", pa.struct([pa.field("role", pa.string(), False), pa.field("content", pa.string(), False)]), False))
TOPK = pa.list_(pa.field("element", pa.list_(pa.field("element", pa.struct([pa.field("id", pa.uint32(), False), pa.field("logprob", pa.float32(), False)]), False)), False))


def files(d):
    out = sorted(glob.glob(os.path.join(d, "data", "*.parquet")))
    assert out, f"no parquet files in {d}"
    return out


def check(cond, what):
    if not cond:
        raise SystemExit(f"FAILED: {what}")


# --- pyarrow -----------------------------------------------------------------------------------
t = ds.dataset(files(samples_dir), format="parquet").to_table()
check(t.num_rows == 40, f"pyarrow rows {t.num_rows}")
check(t.schema.field("teacher_topk").type == TOPK, f"teacher_topk type {t.schema.field('teacher_topk').type}")
check(t.schema.field("messages").type == MESSAGES, f"messages type {t.schema.field('messages').type}")
check(t.schema.field("completion_ids").type.value_type == pa.uint32(), "completion_ids uint32")
check(str(t.schema.field("created_at").type) == "timestamp[us, tz=UTC]", f"created_at {t.schema.field('created_at').type}")
meta = pq.read_metadata(files(samples_dir)[0]).metadata
check(meta[b"workbench.schema_version"] == b"3", "schema version in metadata")
check(meta[b"workbench.kind"] == b"sample", "kind in metadata")
row = t.filter(pa.compute.equal(t["prompt"], "question 3 é👩‍🔬")).to_pylist()[0]
check(row["teacher_topk"][0][1] == {"id": 3, "logprob": -1.5}, f"top-k value {row['teacher_topk']}")
check(row["completion_ids"] == [3, 7], "ids")

# --- pandas ------------------------------------------------------------------------------------
df = pd.concat([pd.read_parquet(f) for f in files(samples_dir)])
check(len(df) == 40, "pandas rows")
check(set(["prompt", "completion", "teacher_topk"]) <= set(df.columns), "pandas columns")

# --- polars ------------------------------------------------------------------------------------
pdf = pl.read_parquet(os.path.join(samples_dir, "data", "*.parquet"))
check(pdf.height == 40, "polars rows")
check(pdf.schema["completion_ids"] == pl.List(pl.UInt32), f"polars ids {pdf.schema['completion_ids']}")
check(pdf.schema["teacher_topk"] == pl.List(pl.List(pl.Struct({"id": pl.UInt32, "logprob": pl.Float32}))), f"polars topk {pdf.schema['teacher_topk']}")

# --- DuckDB ------------------------------------------------------------------------------------
con = duckdb.connect()
glob_path = os.path.join(samples_dir, "data", "*.parquet")
n, entries = con.execute(
    f"select count(*), sum(len(flatten(teacher_topk))) from read_parquet('{glob_path}')"
).fetchone()
check(n == 40 and entries == 120, f"duckdb rows {n}, top-k entries {entries}")
best = con.execute(
    f"select max(e.logprob) from (select unnest(flatten(teacher_topk)) as e from read_parquet('{glob_path}'))"
).fetchone()[0]
check(abs(best - (-0.1)) < 1e-6, f"duckdb top-k value {best}")

# --- HF datasets -------------------------------------------------------------------------------
d = load_dataset("parquet", data_dir=samples_dir)
check(set(d.keys()) == {"train", "test"}, f"splits {list(d.keys())}")
check(d["train"].num_rows + d["test"].num_rows == 40, "datasets rows")
f = d["train"].features
check(f["completion_ids"] == List(Value("uint32")), f"features ids {f['completion_ids']}")
check(f["teacher_topk"] == List(List({"id": Value("uint32"), "logprob": Value("float32")})), f"features topk {f['teacher_topk']}")
check(f["messages"] == List({"role": Value("string"), "content": Value("string")}), f"features messages {f['messages']}")
# The card's YAML (configs, features) is what `load_dataset(DIR)` reads.
d2 = load_dataset(samples_dir)
check(d2["train"].features == f, "card features match the data")

sft = load_dataset("parquet", data_dir=sft_dir)["train"]
check(sft.column_names == ["id", "messages", "prompt", "completion", "source"], f"sft columns {sft.column_names}")
check(sft.num_rows == 40, "sft rows")
first = sft[0]
check(first["messages"][-1]["role"] == "assistant" and first["messages"][-1]["content"] == first["completion"], "sft messages end with the answer")
check(load_dataset(sft_dir)["train"].num_rows == 40, "sft via card")

pref = load_dataset("parquet", data_dir=pref_dir)["train"]
check(pref.column_names == ["id", "prompt", "chosen", "rejected", "source"], f"preference columns {pref.column_names}")
check(sorted(pref["chosen"]) == ["4", "6"], "preference values")
check(load_dataset(pref_dir)["train"].num_rows == 2, "preference via card")

print("all clients read all sets")
