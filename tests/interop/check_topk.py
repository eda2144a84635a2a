"""Checks that top-k logprobs written by pyarrow survived `workbench datasets import`.

Usage: check_topk.py SET_DIR
"""

import glob
import os
import sys

import pyarrow.parquet as pq

t = pq.read_table(glob.glob(os.path.join(sys.argv[1], "data", "*.parquet"))[0])
rows = {r["prompt"]: r for r in t.to_pylist()}
assert rows["x"]["completion_ids"] == [1, 2], rows["x"]
assert rows["x"]["teacher_topk"] == [[{"id": 1, "logprob": -0.25}, {"id": 9, "logprob": -2.0}], [{"id": 2, "logprob": -0.5}]], rows["x"]
assert rows["y"]["teacher_topk"] == [[{"id": 3, "logprob": -0.125}]], rows["y"]
assert str(t.schema.field("completion_ids").type) == "list<element: uint32 not null>", t.schema
print("top-k ok")
