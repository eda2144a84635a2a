"""Reads the SFT and preference sets exported from an annotation database with pyarrow, as a
trainer would, and prints what they hold (used by tests/cli/annotate.rs)."""
import sys

import pyarrow.parquet as pq

sft = pq.read_table(sys.argv[1] + "/data").to_pylist()
pref = pq.read_table(sys.argv[2] + "/data").to_pylist()
print(sorted((r["completion"], r["source"]) for r in sft))
print([(r["chosen"], r["rejected"]) for r in pref])
