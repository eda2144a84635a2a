#!/usr/bin/env bash
# Off-policy against on-policy distillation on the demo, side by side: the demo's data, teacher,
# synthetic set and gold-only student are made once (`workbench run configs/demo.toml` with the
# expert review left for later), then the distilled student is trained again in each mode
# (`workbench distill --force` with the mode's `--set`s) and every model evaluated. Prints, per
# mode, exact match on the eval set, the distill stage's training time, and the teacher tokens it
# took: the synthetic set's completion tokens (every mode learns from it), plus, when the
# teacher is run during training (full-vocabulary KD, on-policy), the completion positions it
# graded there.
#
#   benches/on-policy.sh [SEED]
#
# Release build; about 12 minutes on 2 cores. BENCH_DIR sets where the run goes. Not a test:
# nothing here asserts a number. See benches/README.md for the last results.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
seed="${1:-17}"
case "$seed" in
  ''|*[!0-9]*) echo "benches/on-policy.sh: the seed is a whole number, not '$seed'" >&2; exit 2 ;;
esac
dir="${BENCH_DIR:-$(mktemp -d)}"
mkdir -p "$dir"
echo "building workbench (release)..." >&2
cargo build --release >&2
root="$PWD"
work="$dir/on-policy-$seed"
rm -rf "$work" && mkdir -p "$work"
cp -r configs "$work/"
wb() { (cd "$work" && "$root/target/release/workbench" "$@"); }
base=(--set "run.seed=$seed" --set annotate.simulated_expert=false)
echo "+ workbench run configs/demo.toml ${base[*]}" >&2
wb run configs/demo.toml "${base[@]}" >"$work/run.md" 2>"$work/run.log" \
  || { cat "$work/run.log" >&2; exit 1; }
modes=(
  "off-policy, top-k, forward KL (the demo)|"
  "off-policy, full vocabulary, forward KL|distill.full_vocab=true"
  "off-policy, full vocabulary, reverse KL|distill.full_vocab=true distill.divergence=reverse_kl"
  "on-policy 0.25, forward KL|distill.on_policy=0.25"
  "on-policy 0.5, forward KL|distill.on_policy=0.5"
  "on-policy 1, forward KL|distill.on_policy=1.0"
  "on-policy 1, reverse KL|distill.on_policy=1.0 distill.divergence=reverse_kl"
  "on-policy 1 after step 1000, forward KL|distill.on_policy=1.0 distill.on_policy_after=1000"
  "on-policy 1 after step 1000, reverse KL|distill.on_policy=1.0 distill.on_policy_after=1000 distill.divergence=reverse_kl"
)
: >"$work/modes.jsonl"
for m in "${modes[@]}"; do
  name="${m%%|*}"
  sets=("${base[@]}")
  for kv in ${m#*|}; do sets+=(--set "$kv"); done
  echo "+ workbench distill configs/demo.toml ${sets[*]} --force" >&2
  wb distill configs/demo.toml "${sets[@]}" --force >/dev/null 2>"$work/distill.log" \
    || { cat "$work/distill.log" >&2; exit 1; }
  wb eval configs/demo.toml "${sets[@]}" --force --json >"$work/eval.json" 2>"$work/eval.log" \
    || { cat "$work/eval.log" >&2; exit 1; }
  python3 - "$work" "$name" "${m#*|}" >>"$work/modes.jsonl" <<'PY'
import json, sys
from pathlib import Path
work, name, sets = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
rows = json.loads((work / "eval.json").read_text())["rows"]
em = {r["model"]: r["exact_match"] for r in rows}
run = work / "runs" / "demo"
synthetic = json.loads((run / "synthetic" / "STAGE.json").read_text())["summary"]
student = json.loads((run / "student" / "STAGE.json").read_text())["summary"]
graded = 0
if "full_vocab=true" in sets or "on_policy=" in sets:
    graded = round(student["tokens_per_s"] * student["seconds"])
print(json.dumps({
    "mode": name,
    "exact_match": em["distilled"],
    "gold_only": em["gold-only"],
    "teacher": em["teacher"],
    "seconds": student["seconds"],
    "generated": synthetic["usage"]["completion_tokens"],
    "graded": graded,
}))
PY
done
python3 - "$work" "$seed" <<'PY'
import json, sys
from pathlib import Path
work, seed = Path(sys.argv[1]), sys.argv[2]
modes = [json.loads(l) for l in (work / "modes.jsonl").read_text().splitlines()]
first = modes[0]
print(f"Seed {seed}: teacher {100 * first['teacher']:.1f}%, gold-only {100 * first['gold_only']:.1f}%.")
print()
print("| distilled student | exact match | training time | teacher tokens (generated + graded in training) |")
print("|---|---:|---:|---:|")
for m in modes:
    print(f"| {m['mode']} | {100 * m['exact_match']:.1f}% | {m['seconds']:.0f} s | {m['generated']:,} + {m['graded']:,} |")
best_on = max((m for m in modes if m["mode"].startswith("on-policy")), key=lambda m: m["exact_match"])
print()
print(f"FIGURE on_policy_best_minus_off_policy {100 * (best_on['exact_match'] - first['exact_match']):.1f} points ({best_on['mode']})")
PY
