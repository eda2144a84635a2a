"""Writes the `parquet_import` seed that comes from pyarrow (`seeds/parquet_import/pyarrow.parquet`).

pyarrow writes what our writer does not (dictionary pages, snappy, statistics,
two row groups, large strings), so the fuzzer starts from both. Messages and
references are left to our writer's seeds, to keep this one under 4 KiB. Run with the interop venv's Python:

    "$(scripts/python-env.sh)" fuzz/seeds/pyarrow_seed.py fuzz/seeds/parquet_import
"""

import sys

import pyarrow as pa
import pyarrow.parquet as pq

out = sys.argv[1] if len(sys.argv) > 1 else "seeds/parquet_import"
table = pa.table(
    {
        "prompt": pa.array(["3rd of March 2021", "May 4 1999", "3rd of March 2021"], pa.large_string()),
        "completion": ["2021-03-03", None, None],
        "completion_ids": pa.array([[1, 2], [], None], pa.list_(pa.int64())),
        "teacher_topk": pa.array(
            [[[{"id": 1, "logprob": -0.1}, {"id": 3, "logprob": -2.5}], [{"id": 2, "logprob": -0.2}]], [], None],
            pa.list_(pa.list_(pa.struct([("id", pa.uint32()), ("logprob", pa.float32())]))),
        ),
        "seed": pa.array([1, None, 3], pa.int32()),
    }
)
pq.write_table(
    table,
    f"{out}/pyarrow.parquet",
    compression="snappy",
    use_dictionary=True,
    row_group_size=2,
)
