"""pyarrow side of the Parquet benchmark: the same sample table, written and read the way a
careful pyarrow user would (streaming ParquetWriter, zstd level 1, 10,000-row row groups).

Usage: parquet_io.py write FILE [--rows N] | read FILE | read-table FILE

Prints one JSON object per phase, like `benches/parquet_io.rs`. Data generation is not timed.
"""

import json
import resource
import sys
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

TOKENS = 64
TOPK = 20
ROW_GROUP = 10_000
WORDS = np.array("the date of invoice was March third twenty one please rewrite as ISO format thanks received".split())

MSG = pa.struct([pa.field("role", pa.string(), False), pa.field("content", pa.string(), False)])
TOPK_T = pa.struct([pa.field("id", pa.uint32(), False), pa.field("logprob", pa.float32(), False)])


def lst(t):
    return pa.list_(pa.field("element", t, False))


SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), False),
        pa.field("prompt", pa.string(), False),
        pa.field("messages", lst(MSG), False),
        pa.field("completion", pa.string()),
        pa.field("completion_ids", lst(pa.uint32()), False),
        pa.field("teacher_topk", lst(lst(TOPK_T)), False),
        pa.field("teacher", pa.string()),
        pa.field("logprob_mean", pa.float32()),
        pa.field("entropy_mean", pa.float32()),
        pa.field("disagreement", pa.float32()),
        pa.field("reference", pa.string()),
        pa.field("template", pa.string()),
        pa.field("slice", pa.string()),
        pa.field("seed", pa.uint64()),
        pa.field("created_at", pa.timestamp("us", tz="UTC"), False),
    ]
)


def peak_rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def texts(rng, n, words):
    idx = rng.integers(0, len(WORDS), size=(n, words))
    return [" ".join(row) for row in WORDS[idx]]


def batch(rng, start, n):
    prompts = [f"{t} #{start + i}" for i, t in enumerate(texts(rng, n, 18))]
    # Same distributions as the Rust side: ids skewed (u^3 over 50k), logprobs continuous and
    # decreasing down the top-k.
    ids = (rng.random(n * TOKENS) ** 3 * 50_000).astype(np.uint32)
    topk_ids = (rng.random(n * TOKENS * TOPK) ** 3 * 50_000).astype(np.uint32)
    steps = (rng.random((n * TOKENS, TOPK)) * 1.5).astype(np.float32)
    logprobs = -np.cumsum(steps, axis=1, dtype=np.float32).reshape(-1)
    tok_off = np.arange(0, n * TOKENS + 1, TOKENS, dtype=np.int32)
    k_off = np.arange(0, n * TOKENS * TOPK + 1, TOPK, dtype=np.int32)
    structs = pa.StructArray.from_arrays([pa.array(topk_ids), pa.array(logprobs)], fields=list(TOPK_T))
    inner = pa.ListArray.from_arrays(pa.array(k_off), structs, type=lst(TOPK_T))
    topk = pa.ListArray.from_arrays(pa.array(tok_off), inner, type=lst(lst(TOPK_T)))
    completion_ids = pa.ListArray.from_arrays(pa.array(tok_off), pa.array(ids), type=lst(pa.uint32()))
    msg_off = np.arange(0, n + 1, dtype=np.int32)
    msgs = pa.StructArray.from_arrays([pa.array(["user"] * n), pa.array(prompts)], fields=list(MSG))
    messages = pa.ListArray.from_arrays(pa.array(msg_off), msgs, type=lst(MSG))
    columns = [
        pa.array([f"{x:032x}" for x in rng.integers(0, 2**62, size=n)]),
        pa.array(prompts),
        messages,
        pa.array(texts(rng, n, 48)),
        completion_ids,
        topk,
        pa.array(["teacher-local"] * n),
        pa.array(np.full(n, -0.5, dtype=np.float32)),
        pa.array(np.full(n, 1.25, dtype=np.float32)),
        pa.array(np.full(n, np.nan, dtype=np.float32), mask=np.ones(n, dtype=bool)),
        pa.array(["2021-03-03"] * n),
        pa.array(["dates-v1"] * n),
        pa.array([None] * n, type=pa.string()),
        pa.array(np.arange(start, start + n, dtype=np.uint64)),
        pa.array(1_700_000_000_000_000 + np.arange(start, start + n), type=pa.timestamp("us", tz="UTC")),
    ]
    return pa.Table.from_arrays(columns, schema=SCHEMA)


def write(path, rows):
    rng = np.random.default_rng(42)
    timed = 0.0
    writer = pq.ParquetWriter(path, SCHEMA, compression="zstd", compression_level=1)
    done = 0
    while done < rows:
        n = min(ROW_GROUP, rows - done)
        table = batch(rng, done, n)
        t = time.perf_counter()
        writer.write_table(table, row_group_size=ROW_GROUP)
        timed += time.perf_counter() - t
        done += n
        del table
    t = time.perf_counter()
    writer.close()
    timed += time.perf_counter() - t
    md = pq.read_metadata(path)
    import os

    print(json.dumps({"impl": "pyarrow", "phase": "write", "rows": rows, "seconds": round(timed, 3), "rows_per_s": round(rows / timed), "bytes": os.path.getsize(path), "row_groups": md.num_row_groups, "peak_rss_mib": round(peak_rss_mib(), 1)}))


def read(path):
    t = time.perf_counter()
    rows = 0
    f = pq.ParquetFile(path)
    for b in f.iter_batches(batch_size=8192):
        rows += b.num_rows
    secs = time.perf_counter() - t
    print(json.dumps({"impl": "pyarrow", "phase": "read", "rows": rows, "seconds": round(secs, 3), "rows_per_s": round(rows / secs), "peak_rss_mib": round(peak_rss_mib(), 1)}))


def read_table(path):
    t = time.perf_counter()
    table = pq.read_table(path)
    secs = time.perf_counter() - t
    print(json.dumps({"impl": "pyarrow", "phase": "read_table", "rows": table.num_rows, "seconds": round(secs, 3), "rows_per_s": round(table.num_rows / secs), "peak_rss_mib": round(peak_rss_mib(), 1)}))


if __name__ == "__main__":
    phase, path = sys.argv[1], sys.argv[2]
    rows = int(sys.argv[sys.argv.index("--rows") + 1]) if "--rows" in sys.argv else 200_000
    {"write": lambda: write(path, rows), "read": lambda: read(path), "read-table": lambda: read_table(path)}[phase]()
