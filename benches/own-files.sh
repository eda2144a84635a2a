#!/usr/bin/env bash
# A teacher no better than the gold-only student, and what the confidence filter does about it:
# `workbench run configs/own-files.toml` (300 gold rows train both the teacher and the gold-only
# student) for seeds 17, 18 and 19 (or those given), each with the config's confidence filter
# (`generate.min_logprob_mean = -0.05`) and without it (-1000: nothing dropped). Prints exact
# match per model, seed by seed, then the mean and range of each, and whether the run warned
# that the teacher is not clearly better.
#
#   benches/own-files.sh [SEED...]
#
# Release build; about 2 minutes a run on 2 cores, 6 runs. BENCH_DIR sets where the runs go.
# Not a test: nothing here asserts a number. See benches/README.md for the last results.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
seeds=("$@")
[ ${#seeds[@]} -gt 0 ] || seeds=(17 18 19)
for s in "${seeds[@]}"; do
  case "$s" in
    ''|*[!0-9]*) echo "benches/own-files.sh: a seed is a whole number, not '$s'" >&2; exit 2 ;;
  esac
done
dir="${BENCH_DIR:-$(mktemp -d)}"
mkdir -p "$dir"
echo "building workbench (release)..." >&2
cargo build --release >&2
root="$PWD"
work="$dir/own-files"
rm -rf "$work" && mkdir -p "$work"
cp -r configs "$work/"
for s in "${seeds[@]}"; do
  for filter in on off; do
    name="seed-$s-filter-$filter"
    set=(--set "run.name=$name" --set "run.seed=$s")
    [ "$filter" = off ] && set+=(--set generate.min_logprob_mean=-1000)
    echo "+ workbench run configs/own-files.toml ${set[*]}" >&2
    (cd "$work" && "$root/target/release/workbench" run configs/own-files.toml "${set[@]}") \
      >"$work/$name.md" 2>"$work/$name.log" || { cat "$work/$name.log" >&2; exit 1; }
  done
done
python3 - "$work" "${seeds[@]}" <<'PY'
import json, sys, statistics
from pathlib import Path
work, seeds = Path(sys.argv[1]), sys.argv[2:]
def em(name):
    rows = json.loads((work / "runs" / name / "report" / "eval.json").read_text())["rows"]
    return {r["model"]: 100 * r["exact_match"] for r in rows}
def kept(name):
    summary = json.loads((work / "runs" / name / "synthetic" / "STAGE.json").read_text())["summary"]
    low = next((f["removed"] for f in summary["filters"] if f["name"] == "low confidence"), 0)
    return summary["rows"], low
def warned(name):
    return "WARNING: the teacher" in (work / f"{name}.log").read_text()
print("| seed | teacher | gold-only | distilled, no filter | distilled, filter | synthetic rows kept (dropped) | weak-teacher warning |")
print("|---|---:|---:|---:|---:|---:|---|")
cols = {k: [] for k in ["teacher", "gold-only", "off", "on"]}
for s in seeds:
    on, off = em(f"seed-{s}-filter-on"), em(f"seed-{s}-filter-off")
    rows, low = kept(f"seed-{s}-filter-on")
    for k, v in [("teacher", on["teacher"]), ("gold-only", on["gold-only"]), ("off", off["distilled"]), ("on", on["distilled"])]:
        cols[k].append(v)
    print(f"| {s} | {on['teacher']:.1f} | {on['gold-only']:.1f} | {off['distilled']:.1f} | {on['distilled']:.1f} | {rows} ({low}) | {'yes' if warned(f'seed-{s}-filter-on') else 'no'} |")
fig = lambda v: f"{statistics.mean(v):.1f} ({min(v):.1f}–{max(v):.1f})"
print(f"| mean (range) | {fig(cols['teacher'])} | {fig(cols['gold-only'])} | {fig(cols['off'])} | {fig(cols['on'])} | | |")
gap = [a - b for a, b in zip(cols["on"], cols["gold-only"])]
print()
print(f"FIGURE own_files_filter_minus_gold_only_min {min(gap):.1f}")
print(f"FIGURE own_files_filter_minus_gold_only_mean {statistics.mean(gap):.1f}")
PY
