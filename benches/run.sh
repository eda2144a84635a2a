#!/usr/bin/env bash
# Runs every benchmark beside its Python peer, in one run on one machine, and ends with one line
# per figure:  RATIO <name> <ours/theirs>  (higher is better for us)  or  FIGURE <name> <value> <unit>.
#
#   benches/run.sh [--rows N] [--reps R]   (default 200000 rows, 2 repetitions, best of each kept;
#                                           BENCH_DIR sets where the scratch files go)
#
# Not a test: nothing here asserts a time. See benches/README.md for the last results.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
rows=200000
reps=2
while [ $# -gt 0 ]; do
  case "$1" in
    --rows) rows="$2"; shift 2 ;;
    --reps) reps="$2"; shift 2 ;;
    *) echo "usage: benches/run.sh [--rows N] [--reps R]" >&2; exit 2 ;;
  esac
done
dir="${BENCH_DIR:-$(mktemp -d)}"
mkdir -p "$dir"
py="$(scripts/python-env.sh)"
echo "building the benchmarks (release)..." >&2
cargo bench --bench parquet_io --no-run >&2 2>/dev/null || cargo bench --bench parquet_io --no-run >&2
bin="$(cargo bench --bench parquet_io --no-run --message-format=json 2>/dev/null \
  | "$py" -c 'import json,sys; print([m["executable"] for m in map(json.loads, sys.stdin) if m.get("executable") and "parquet_io" in m["executable"]][-1])')"

results="$dir/results.jsonl"
: > "$results"
run() { echo "+ $*" >&2; "$@" | tee -a "$results" >&2; }
# Alternate the two sides so drift on a shared machine hits both; keep each side's best.
for _ in $(seq "$reps"); do
  run "$bin" write "$dir/wb.parquet" --rows "$rows"
  run "$py" benches/parquet_io.py write "$dir/pa.parquet" --rows "$rows"
done
for _ in $(seq "$reps"); do
  run "$bin" read "$dir/wb.parquet"
  run "$py" benches/parquet_io.py read "$dir/pa.parquet"
  run "$py" benches/parquet_io.py read-table "$dir/pa.parquet"
done
run "$bin" read-1thread "$dir/wb.parquet"
run "$bin" read-records "$dir/wb.parquet"
# Memory must not grow with rows: the same write with a quarter of the rows.
"$bin" write "$dir/small.parquet" --rows $((rows / 4)) | sed 's/"write"/"write_quarter"/' | tee -a "$results" >&2
rm -f "$dir/small.parquet"
# We read pyarrow's file too (shown, not counted): the formats are the same.
echo "+ $bin read $dir/pa.parquet" >&2
"$bin" read "$dir/pa.parquet" >&2

"$py" - "$results" <<'PY'
import json, sys
r = {}
for line in open(sys.argv[1]):
    line = line.strip()
    if line.startswith("{"):
        d = json.loads(line)
        key = (d["impl"], d["phase"] + ("-1t" if d.get("threads") == 1 else ""))
        if key not in r or d["rows_per_s"] > r[key]["rows_per_s"]:
            r[key] = d
w, p = r[("workbench", "write")], r[("pyarrow", "write")]
print(f"RATIO parquet_write_rows_per_s {w['rows_per_s'] / p['rows_per_s']:.2f}")
print(f"RATIO parquet_write_peak_rss {p['peak_rss_mib'] / w['peak_rss_mib']:.2f}")
best_read = max(r[("pyarrow", "read")]["rows_per_s"], r[("pyarrow", "read_table")]["rows_per_s"])
print(f"RATIO parquet_read_rows_per_s {r[('workbench', 'read')]['rows_per_s'] / best_read:.2f}")
print(f"RATIO parquet_read_1thread_rows_per_s {r[('workbench', 'read-1t')]['rows_per_s'] / r[('pyarrow', 'read')]['rows_per_s']:.2f}")
print(f"RATIO parquet_read_peak_rss {r[('pyarrow', 'read')]['peak_rss_mib'] / r[('workbench', 'read')]['peak_rss_mib']:.2f}")
print(f"FIGURE parquet_write_rows_per_s {w['rows_per_s']} rows/s")
print(f"FIGURE parquet_read_rows_per_s {r[('workbench', 'read')]['rows_per_s']} rows/s")
print(f"FIGURE parquet_read_records_rows_per_s {r[('workbench', 'read_records')]['rows_per_s']} rows/s")
print(f"FIGURE parquet_write_peak_rss {w['peak_rss_mib']} MiB")
print(f"FIGURE parquet_read_peak_rss {r[('workbench', 'read')]['peak_rss_mib']} MiB")
print(f"FIGURE parquet_file_bytes_ratio {w['bytes'] / p['bytes']:.3f} ours/theirs")
q = r[("workbench", "write_quarter")]
print(f"FIGURE parquet_write_peak_rss_quarter_rows {q['peak_rss_mib']} MiB")
PY
