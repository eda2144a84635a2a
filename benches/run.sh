#!/usr/bin/env bash
# Runs every benchmark beside its Python peer, in one run on one machine, and ends with one line
# per figure:  RATIO <name> <ours/theirs>  (higher is better for us)  or  FIGURE <name> <value> <unit>.
#
#   benches/run.sh [--rows N] [--reps R] [--pairs P]
#     default 200000 rows, 2 repetitions (best of each kept), 7 training pairs (the median pair's
#     ratio is the training figure); BENCH_DIR sets where the scratch files go
#   benches/run.sh --only parquet|model|annotate|demo|scale
#
# `all` runs parquet, model, annotate and demo; `scale` (how costs grow with model size, sequence
# length and rows) runs only when asked, as it takes several minutes more.
#
# Not a test: nothing here asserts a time. See benches/README.md for the last results.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
rows=200000
reps=2
pairs=7
only=all
while [ $# -gt 0 ]; do
  case "$1" in
    --rows) rows="${2-}"; shift $(( $# > 1 ? 2 : 1 )) ;;
    --reps) reps="${2-}"; shift $(( $# > 1 ? 2 : 1 )) ;;
    --pairs) pairs="${2-}"; shift $(( $# > 1 ? 2 : 1 )) ;;
    --only) only="$2"; shift 2 ;;
    *) echo "usage: benches/run.sh [--rows N] [--reps R] [--pairs P] [--only parquet|model|annotate|demo|scale]" >&2; exit 2 ;;
  esac
done
for v in "$rows" "$reps" "$pairs"; do
  case "$v" in
    ''|*[!0-9]*) echo "benches/run.sh: --rows, --reps and --pairs take a whole number, not '$v'" >&2; exit 2 ;;
  esac
done
dir="${BENCH_DIR:-$(mktemp -d)}"
mkdir -p "$dir"
py="$(scripts/python-env.sh)"
tpy="$(scripts/python-env.sh scripts/requirements-torch.txt)"
echo "building the benchmarks (release)..." >&2
cargo bench --no-run >&2
exe() {
  cargo bench --bench "$1" --no-run --message-format=json 2>/dev/null \
    | "$py" -c "import json,sys; print([m['executable'] for m in map(json.loads, sys.stdin) if m.get('executable') and '$1' in m['executable']][-1])"
}
bin="$(exe parquet_io)"
model="$(exe model)"

results="$dir/results.jsonl"
: > "$results"
run() { echo "+ $*" >&2; "$@" | tee -a "$results" >&2; }
if [ "$only" = all ] || [ "$only" = parquet ]; then
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
fi

if [ "$only" = all ] || [ "$only" = model ]; then
# The model: a training step of a 4M-parameter student (batch 16 x 128) beside PyTorch eager
# (2 threads), and KV-cache generation at batch 1 and 16 beside transformers generate() on the
# same checkpoint.
run "$model" init --config benches/configs/student-4m.json --out "$dir/student-4m" >/dev/null
# The machine's fp32 matmul peak, the denominator of MFU (machines differ: AVX-512 or AVX2): the
# better of our product and PyTorch's on 1000^3. Then the training step's own product shapes
# (2,048 tokens; o, the packed q/k/v, gate and up, down, the head, and the weight gradients, whose
# depth is the 2,048 rows and whose left operand is read transposed) on both sides: whether a gap
# in the step is the products themselves or the work around them. Each side alternated with the
# other and kept at its best, as this machine drifts.
shapes="2048,256,256 2048,256,512 2048,256,688 2048,688,256 2048,256,2048"
wshapes="256,2048,512 256,2048,688 688,2048,256 256,2048,2048"
for _ in $(seq "$reps"); do
  run "$model" peak
  run "$tpy" benches/matmul.py --shape 1000,1000,1000 --threads 2
  for s in $shapes; do
    run "$model" peak --shape "$s"
    run "$tpy" benches/matmul.py --shape "$s" --threads 2
  done
  for s in $wshapes; do
    run "$model" peak --shape "$s" --lhs-t
    run "$tpy" benches/matmul.py --shape "$s" --threads 2 --lhs-t
  done
done
# The training step: `--pairs` pairs of runs, ours and PyTorch's back to back, the order swapped
# every pair so that drift in either direction hits both sides alike. Each pair gives a ratio; the
# figure is the median pair's (this machine's noise moves a single pair by 20% or more).
ours=(run "$model" train --config benches/configs/student-4m.json --steps 10 --warmup 2)
theirs=(run "$tpy" benches/model_train.py --config benches/configs/student-4m.json --steps 10 --warmup 2 --threads 2 --attn sdpa)
for i in $(seq "$pairs"); do
  if [ $((i % 2)) = 1 ]; then "${ours[@]}"; "${theirs[@]}"; else "${theirs[@]}"; "${ours[@]}"; fi
done
# The same step with burn's composed operations instead of the fused kernels, for their share.
for _ in $(seq "$reps"); do
  WORKBENCH_FUSED=0 run "$model" train --config benches/configs/student-4m.json --steps 10 --warmup 2 --label composed
  run "$model" train --config benches/configs/student-4m.json --steps 10 --warmup 2 --label fused
done
for b in 1 16; do
  run "$model" generate --model "$dir/student-4m" --batch "$b" --new 64 --reps 3
  run "$tpy" benches/generate.py --model "$dir/student-4m" --batch "$b" --new 64 --reps 3 --threads 2 --attn sdpa
done
fi

if [ "$only" = all ] || [ "$only" = annotate ]; then
# The annotation store and the terminal app: decision → durable latency (fsync per decision, on
# the real disk) and the first frame on a million items. No Python peer runs here: Label Studio,
# Argilla and Prodigy are servers with a browser front end; the goals are absolute (p99 < 10 ms,
# first frame < 300 ms).
# The same on PostgreSQL over loopback (goals: 4 annotators at once, p99 < 20 ms; first frame
# < 300 ms): a throwaway server unless WORKBENCH_PG_URL names one.
started_pg=""
if [ -z "${WORKBENCH_PG_URL:-}" ]; then
  pg_env="$(scripts/postgres.sh start)"
  eval "$pg_env"
  started_pg=1
  trap 'scripts/postgres.sh stop' EXIT
fi
echo "+ cargo bench -p workbench-annotate --bench store" >&2
cargo bench -p workbench-annotate --bench store 2>/dev/null | tee "$dir/annotate.txt" >&2
if [ -n "$started_pg" ]; then scripts/postgres.sh stop; trap - EXIT; fi
fi

if [ "$only" = all ] || [ "$only" = demo ]; then
# The embedded default end to end, as the README's first command runs it: wall time and peak RSS
# of `workbench run configs/demo.toml` (release build), in a scratch directory.
echo "+ workbench run configs/demo.toml" >&2
cargo build --release >&2
demo="$dir/demo"
rm -rf "$demo" && mkdir -p "$demo"
cp -r configs "$demo/"
(cd "$demo" && /usr/bin/time -f "DEMO %e %M" "$OLDPWD/target/release/workbench" --quiet run configs/demo.toml) \
  >"$dir/demo.out" 2>"$dir/demo.err" || { cat "$dir/demo.err" >&2; exit 1; }
cat "$dir/demo.out" >&2
awk '/^DEMO / { printf "FIGURE demo_wall_time %.0f s\nFIGURE demo_peak_rss %.0f MiB\n", $2, $3 / 1024 }' "$dir/demo.err" > "$dir/demo.txt"
rm -rf "$demo"
fi

if [ "$only" = scale ]; then
# How the costs grow: the training step by model size (1.3M, 4M, 20M at 16 x 128) and by
# sequence length (4M, 2,048 tokens a step split as 32 x 64 ... 4 x 512); generation (batch 1,
# 64 new tokens) by model size; Parquet writes by rows (time and peak RSS). MFU's denominator is
# the better 1000^3 peak of the two sides, as in the model section.
run "$model" peak
run "$tpy" benches/matmul.py --shape 1000,1000,1000 --threads 2
for m in 1m 4m 20m; do
  run "$model" train --config "benches/configs/student-$m.json" --steps 6 --warmup 2 --label "scale-$m-16x128"
  run "$model" init --config "benches/configs/student-$m.json" --out "$dir/student-$m" >/dev/null
  "$model" generate --model "$dir/student-$m" --batch 1 --new 64 --reps 2 \
    | sed "s/\"generate\"/\"generate-scale-$m\"/" | tee -a "$results" >&2
done
for bs in 32x64 16x128 8x256 4x512; do
  run "$model" train --config benches/configs/student-4m.json --batch "${bs%x*}" --seq "${bs#*x}" --steps 6 --warmup 2 --label "scale-4m-$bs"
done
for n in 25000 50000 100000; do
  "$bin" write "$dir/scale.parquet" --rows "$n" | sed "s/\"write\"/\"write-scale-$n\"/" | tee -a "$results" >&2
done
rm -f "$dir/scale.parquet"
fi

"$py" - "$results" <<'PY'
import json, sys
r = {}
# The unlabelled training runs of each side, in the order they ran (pairs: ours[i], theirs[i]).
train_runs = {"workbench": [], "pytorch": []}
for line in open(sys.argv[1]):
    line = line.strip()
    if line.startswith("{"):
        d = json.loads(line)
        if d["phase"] == "train":
            key, speed = (d["impl"], "train" + ("-" + d["label"] if d.get("label") else "")), d["tokens_per_s"]
        elif d["phase"] == "generate":
            key, speed = (d["impl"], f"generate-{d['batch']}"), d["new_tokens_per_s"]
        elif d["phase"] == "peak":
            key, speed = (d["impl"], "peak" if d.get("size") else "peak-" + d["shape"]), d["gflops"]
        elif d["phase"].startswith("generate-"):
            key, speed = (d["impl"], d["phase"]), d["new_tokens_per_s"]
        else:
            key, speed = (d["impl"], d["phase"] + ("-1t" if d.get("threads") == 1 else "")), d["rows_per_s"]
        d["speed"] = speed
        if d["phase"] == "train" and not d.get("label"):
            train_runs[d["impl"]].append(speed)
        if key not in r or speed > r[key]["speed"]:
            r[key] = d
# MFU's denominator: the fp32 matmul peak measured in this run, the better of ours (`model peak`)
# and PyTorch's (`matmul.py`), else 400 GFLOP/s (two AVX-512 cores at best).
peaks = [r[(i, "peak")]["gflops"] for i in ("workbench", "pytorch") if (i, "peak") in r]
peak = max(peaks) if peaks else 400.0
for (impl, name), d in sorted(r.items()):
    if impl == "workbench" and name.startswith("peak-") and ("pytorch", name) in r:
        print(f"RATIO matmul_{d['shape']}_gflops {d['speed'] / r[('pytorch', name)]['speed']:.2f}")
if ("workbench", "write") in r:
    w, p = r[("workbench", "write")], r[("pyarrow", "write")]
    best_read = max(r[("pyarrow", "read")]["rows_per_s"], r[("pyarrow", "read_table")]["rows_per_s"])
    print(f"RATIO parquet_write_rows_per_s {w['rows_per_s'] / p['rows_per_s']:.2f}")
    print(f"RATIO parquet_write_peak_rss {p['peak_rss_mib'] / w['peak_rss_mib']:.2f}")
    print(f"RATIO parquet_read_rows_per_s {r[('workbench', 'read')]['rows_per_s'] / best_read:.2f}")
    print(f"RATIO parquet_read_1thread_rows_per_s {r[('workbench', 'read-1t')]['rows_per_s'] / r[('pyarrow', 'read')]['rows_per_s']:.2f}")
    print(f"RATIO parquet_read_peak_rss {r[('pyarrow', 'read')]['peak_rss_mib'] / r[('workbench', 'read')]['peak_rss_mib']:.2f}")
    print(f"FIGURE parquet_write_rows_per_s {w['rows_per_s']} rows/s")
    print(f"FIGURE parquet_read_rows_per_s {r[('workbench', 'read')]['rows_per_s']} rows/s")
    print(f"FIGURE parquet_read_records_rows_per_s {r[('workbench', 'read_records')]['rows_per_s']} rows/s")
    print(f"FIGURE parquet_write_peak_rss {w['peak_rss_mib']} MiB")
    print(f"FIGURE parquet_read_peak_rss {r[('workbench', 'read')]['peak_rss_mib']} MiB")
    print(f"FIGURE parquet_file_bytes_ratio {w['bytes'] / p['bytes']:.3f} ours/theirs")
    print(f"FIGURE parquet_write_peak_rss_quarter_rows {r[('workbench', 'write_quarter')]['peak_rss_mib']} MiB")
if ("workbench", "train") in r:
    t, pt = r[("workbench", "train")], r[("pytorch", "train")]
    pair_ratios = sorted(a / b for a, b in zip(train_runs["workbench"], train_runs["pytorch"]))
    n = len(pair_ratios)
    median = (pair_ratios[(n - 1) // 2] + pair_ratios[n // 2]) / 2
    print(f"RATIO train_tokens_per_s {median:.2f}")
    print(f"FIGURE train_pairs {n} pairs, ratios {' '.join(f'{x:.2f}' for x in pair_ratios)}; "
          f"{sum(x >= 1 for x in pair_ratios)} of {n} at or above 1.0")
    print(f"FIGURE train_best_over_best {t['speed'] / pt['speed']:.2f} x")
    for b in (1, 16):
        g, hf = r[("workbench", f"generate-{b}")], r[("transformers", f"generate-{b}")]
        print(f"RATIO generate_batch{b}_tokens_per_s {g['speed'] / hf['speed']:.2f}")
    print(f"FIGURE train_tokens_per_s {t['speed']} tokens/s")
    if ("workbench", "train-composed") in r:
        c, f = r[("workbench", "train-composed")], r.get(("workbench", "train-fused"), t)
        print(f"FIGURE train_fused_over_composed {f['speed'] / c['speed']:.2f} x")
    print(f"FIGURE train_step_split {t['forward_ms']} / {t['backward_ms']} / {t['optimizer_ms']} ms forward / backward / optimizer")
    # MFU: the step's FLOPs per token as PaLM counts them (6 per multiplying weight, plus
    # attention; `flops_per_token` from the benchmark) against the fp32 matmul peak measured here.
    mfu = t["flops_per_token"] * t["speed"] / (peak * 1e9)
    print(f"FIGURE train_mfu {100 * mfu:.1f} % of {peak:.0f} GFLOP/s")
    print(f"FIGURE matmul_peak {peak:.0f} GFLOP/s")
    if ("workbench", "peak") in r and ("pytorch", "peak") in r:
        print(f"RATIO matmul_1000_gflops {r[('workbench', 'peak')]['speed'] / r[('pytorch', 'peak')]['speed']:.2f}")
    for b in (1, 16):
        print(f"FIGURE generate_batch{b}_tokens_per_s {r[('workbench', f'generate-{b}')]['speed']} tokens/s")
for m in ("1m", "4m", "20m"):
    t = r.get(("workbench", f"train-scale-{m}-16x128"))
    if t:
        mfu = t["flops_per_token"] * t["speed"] / (peak * 1e9)
        print(f"FIGURE scale_train_{m} {t['speed']} tokens/s at {t['params']} params, {100 * mfu:.1f} % MFU, {t['step_ms']} ms/step")
    g = r.get(("workbench", f"generate-scale-{m}"))
    if g:
        print(f"FIGURE scale_generate_batch1_{m} {g['speed']} tokens/s")
for bs in ("32x64", "16x128", "8x256", "4x512"):
    t = r.get(("workbench", f"train-scale-4m-{bs}"))
    if t:
        print(f"FIGURE scale_train_4m_{bs} {t['speed']} tokens/s, {t['step_ms']} ms/step")
for n in (25000, 50000, 100000):
    w = r.get(("workbench", f"write-scale-{n}"))
    if w:
        print(f"FIGURE scale_parquet_write_{n} {w['rows_per_s']} rows/s, {w['peak_rss_mib']} MiB peak RSS")
PY
[ -f "$dir/annotate.txt" ] && grep "^FIGURE" "$dir/annotate.txt" || true
[ -f "$dir/demo.txt" ] && cat "$dir/demo.txt" || true
