#!/usr/bin/env bash
# What expert feedback buys on the demo, seed by seed: `workbench run configs/demo.toml` with the
# learning curve on (`annotate.curve = true`: the simulated expert's budget spent in ranked and in
# random order, a fine-tune after each third), for seeds 17, 18 and 19 (or those given), then
# each figure's mean and spread (min–max) over the seeds.
#
#   benches/expert.sh [SEED...]
#
# Release build; about 6 minutes a seed on 2 cores. BENCH_DIR sets where the runs go. Not a
# test: nothing here asserts a number. See benches/README.md for the last results.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
seeds=("$@")
[ ${#seeds[@]} -gt 0 ] || seeds=(17 18 19)
for s in "${seeds[@]}"; do
  case "$s" in
    ''|*[!0-9]*) echo "benches/expert.sh: a seed is a whole number, not '$s'" >&2; exit 2 ;;
  esac
done
dir="${BENCH_DIR:-$(mktemp -d)}"
mkdir -p "$dir"
py="$(scripts/python-env.sh)"
echo "building workbench (release)..." >&2
cargo build --release >&2
root="$PWD"
for s in "${seeds[@]}"; do
  work="$dir/seed-$s"
  rm -rf "$work" && mkdir -p "$work"
  cp -r configs "$work/"
  echo "+ workbench run configs/demo.toml --set run.seed=$s --set annotate.curve=true" >&2
  (cd "$work" && "$root/target/release/workbench" --quiet run configs/demo.toml \
    --set "run.seed=$s" --set annotate.curve=true) >"$work/table.md" 2>"$work/log" \
    || { cat "$work/log" >&2; exit 1; }
done
"$py" - "$dir" "${seeds[@]}" <<'PY'
import json, sys, statistics
from pathlib import Path
dir, seeds = Path(sys.argv[1]), sys.argv[2:]
runs = {}
for s in seeds:
    run = dir / f"seed-{s}" / "runs" / "demo"
    rows = json.loads((run / "report" / "eval.json").read_text())["rows"]
    curve = json.loads((run / "curve" / "curve.json").read_text())
    runs[s] = (rows, curve)
def fig(values):
    return f"{statistics.mean(values):.1f} ({min(values):.1f}–{max(values):.1f})"
models = [r["model"] for r in runs[seeds[0]][0]]
slices = sorted({k for rows, _ in runs.values() for r in rows for k in r.get("exact_match_by_slice", {})})
print("| model | " + " | ".join(["all"] + slices) + " |")
print("|---|" + "---:|" * (1 + len(slices)))
for m in models:
    cells = []
    for key in [None] + slices:
        vals = []
        for rows, _ in runs.values():
            r = next(r for r in rows if r["model"] == m)
            v = r["exact_match"] if key is None else r.get("exact_match_by_slice", {}).get(key)
            if v is not None:
                vals.append(100 * v)
        cells.append(fig(vals) if vals else "–")
    print(f"| {m} | " + " | ".join(cells) + " |")
print()
print("Learning curve (exact match after a fine-tune on the first N decisions):")
print()
orders = []
for _, curve in runs.values():
    for p in curve["points"]:
        if p["order"] not in orders:
            orders.append(p["order"])
counts = sorted({p["decisions"] for _, c in runs.values() for p in c["points"]})
print("| decisions | " + " | ".join(f"{o}: {k}" for o in orders for k in ["all"] + slices) + " |")
print("|---|" + "---:|" * (len(orders) * (1 + len(slices))))
for n in counts:
    cells = []
    for o in orders:
        for key in [None] + slices:
            vals = []
            for _, c in runs.values():
                for p in c["points"]:
                    if p["order"] == o and p["decisions"] == n:
                        v = p["exact_match"] if key is None else p["exact_match_by_slice"].get(key)
                        if v is not None:
                            vals.append(100 * v)
            cells.append(fig(vals) if vals else "–")
    print(f"| {n} | " + " | ".join(cells) + " |")
print()
for s, (rows, curve) in runs.items():
    em = {r["model"]: r["exact_match"] for r in rows}
    lift = 100 * (em.get("distilled+expert", float("nan")) - em.get("distilled", float("nan")))
    print(f"FIGURE expert_lift_seed_{s} {lift:+.1f} points")
PY
