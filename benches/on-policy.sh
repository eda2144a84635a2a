#!/usr/bin/env bash
# Off-policy against on-policy distillation on the demo, side by side. Per seed: the demo's data,
# teacher, synthetic set, gold-only and off-policy students are made once (`workbench run
# configs/demo.toml`, the expert review left for later). Then:
#
# - from random weights (the first seed only): the distilled student trained again on-policy
#   (`workbench distill --force` with the mode's `--set`s);
# - cut from the teacher (the first seed only, `student.from_teacher = { layers = 2 }`, a run of
#   its own with the demo's teacher as `teacher.path`): off-policy and on-policy;
# - from the demo's off-policy student (`student.path`): 600 more steps at a lower learning rate,
#   off-policy, and on-policy with reverse KL, at batch 32 and at batch 8 (the batch at which the
#   teacher grades about as many tokens as the synthetic set holds).
#
# Every model is evaluated on the eval set. Prints per mode: exact match, the stage's training
# time, and the teacher tokens it took: the synthetic set's completion tokens (every mode here
# learns from it, or from a student that did) plus the positions the teacher graded in training.
#
# From the same student, also speculative on-policy (`distill.replace_below = 0.1`, λ = 0.5,
# greedy samples): the teacher replaces each sampled token it gives under 10% by its own, and the
# student writes on from there (SKD).
#
#   benches/on-policy.sh [SEED...]      (default: 17 18 19)
#
# TASK=sums runs the same on a task with long answers and many right ones instead of the demo:
# running sums written out step by step in any order, graded on the sum (benches/sums.py makes
# the data from the seed, benches/configs/sums.toml is the config). SUMS_CORRECTIONS=P makes a
# share P of the gold answers' steps a slip caught at once ("6 + 2 = 10, no, 8"), so the
# teacher learns to grade a wrong partial sum. On the sums, a control beside them: off-policy
# continued on a larger synthetic set (a run of its own with the same teacher), with as many
# prompts as give it the teacher tokens speculative on-policy took (generated and graded).
#
# EXTRA_SETS="KEY=VALUE ..." adds `--set`s to every command (e.g. a narrower student:
# "student.architecture.hidden_size=32"); CONTINUED_ONLY=1 trains only the off-policy,
# on-policy and speculative students continued from the off-policy one (batch 32, and the sums'
# control), on every seed.
#
# Release build; about 9 minutes per seed on 2 cores, 10 more for the first. BENCH_DIR sets where
# the runs go. Not a test: nothing here asserts a number. See benches/README.md for the last
# results.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
seeds=("$@")
[ ${#seeds[@]} -gt 0 ] || seeds=(17 18 19)
for seed in "${seeds[@]}"; do
  case "$seed" in
    ''|*[!0-9]*) echo "benches/on-policy.sh: a seed is a whole number, not '$seed'" >&2; exit 2 ;;
  esac
done
dir="${BENCH_DIR:-$(mktemp -d)}"
mkdir -p "$dir"
echo "building workbench (release)..." >&2
cargo build --release >&2
root="$PWD"
case "${TASK:-demo}" in
  demo) name=demo ;;
  sums) name=sums ;;
  *) echo "benches/on-policy.sh: TASK is demo or sums, not '$TASK'" >&2; exit 2 ;;
esac
config="configs/$name.toml"
continued="distill.baseline=false distill.train.steps=600 distill.train.lr=1e-3 distill.train.warmup=10 distill.train.eval_every=100 distill.train.checkpoint_every=100"
: >"$dir/modes.jsonl"
first=1
for seed in "${seeds[@]}"; do
  work="$dir/on-policy-$seed"
  rm -rf "$work" && mkdir -p "$work"
  cp -r configs "$work/"
  if [ "$name" = sums ]; then
    cp benches/configs/sums.toml "$work/configs/"
    sums() { # DIR PROMPTS: the task's data
      python3 benches/sums.py --out "$work/configs/$1" --seed "$seed" --order any \
        --digits 1 --corrections "${SUMS_CORRECTIONS:-0}" --prompts "$2"
    }
    sums sums-data 5000
  fi
  wb() { (cd "$work" && "$root/target/release/workbench" "$@"); }
  base=(--set "run.seed=$seed" --set annotate.simulated_expert=false)
  for kv in ${EXTRA_SETS:-}; do base+=(--set "$kv"); done
  echo "+ workbench run $config ${base[*]}" >&2
  wb run "$config" "${base[@]}" >"$work/run.md" 2>"$work/run.log" \
    || { cat "$work/run.log" >&2; exit 1; }
  record() { # NAME START SETS: the eval of the student the last command trained
    wb eval "$config" "${base[@]}" "${@:4}" --force --json >"$work/eval.json" 2>"$work/eval.log" \
      || { cat "$work/eval.log" >&2; exit 1; }
    python3 - "$work" "$seed" "$1" "$2" "$3" >>"$dir/modes.jsonl" <<'PY'
import json, sys
from pathlib import Path
work, seed, name, start, sets = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
rows = json.loads((work / "eval.json").read_text())["rows"]
em = {r["model"]: r["exact_match"] for r in rows}
run = work / Path(next(r for r in rows if r["model"] == "distilled")["path"]).parents[1]
synthetic = json.loads((run / "synthetic" / "STAGE.json").read_text())["summary"]
student = json.loads((run / "student" / "STAGE.json").read_text())["summary"]
print(json.dumps({
    "seed": seed, "mode": name, "start": start, "sets": sets,
    "exact_match": em["distilled"], "gold_only": em.get("gold-only"), "teacher": em["teacher"],
    "seconds": student["seconds"], "steps": student["steps"],
    "generated": synthetic["usage"]["completion_tokens"], "graded": student["teacher_tokens"],
}))
PY
  }
  mode() { # NAME START SETS
    local sets=() kv
    for kv in $3; do sets+=(--set "$kv"); done
    echo "+ workbench distill $config ${base[*]} ${sets[*]} --force" >&2
    wb distill "$config" "${base[@]}" "${sets[@]}" --force >/dev/null 2>"$work/distill.log" \
      || { cat "$work/distill.log" >&2; exit 1; }
    record "$1" "$2" "$3" "${sets[@]}"
  }
  own_run() { # FILE NAME START SETS: a `workbench run` of its own (logs FILE.md, FILE.log)
    local sets=() kv
    for kv in $4; do sets+=(--set "$kv"); done
    echo "+ workbench run $config ${base[*]} ${sets[*]}" >&2
    wb run "$config" "${base[@]}" "${sets[@]}" >"$work/$1.md" 2>"$work/$1.log" \
      || { cat "$work/$1.log" >&2; exit 1; }
    record "$2" "$3" "$4" "${sets[@]}"
  }
  recipe="the demo"
  [ "$name" = sums ] && recipe="the task's recipe"
  record "off-policy, forward KL ($recipe)" "random" ""
  cp -r "$work/runs/$name/student/final" "$work/off-policy-student"
  from="student.path=$work/off-policy-student $continued"
  mode "off-policy, forward KL" "the off-policy student" "$from"
  mode "on-policy 1, reverse KL" "the off-policy student" "$from distill.on_policy=1.0 distill.divergence=reverse_kl"
  mode "speculative on-policy 0.5, greedy" "the off-policy student" "$from distill.on_policy=0.5 distill.sample_temperature=0 distill.replace_below=0.1"
  if [ "$name" = sums ]; then
    # As many prompts as give the teacher tokens speculative on-policy took, at the synthetic
    # set's tokens per prompt.
    prompts=$(python3 - "$dir/modes.jsonl" "$seed" <<'PY'
import json, math, sys
modes = [json.loads(l) for l in open(sys.argv[1]).read().splitlines()]
spec = [m for m in modes if m["seed"] == int(sys.argv[2]) and m["mode"].startswith("speculative")][-1]
print(math.ceil(5000 * (spec["generated"] + spec["graded"]) / spec["generated"]))
PY
)
    sums sums-data-more "$prompts"
    more="run.name=more data.prompts.path=sums-data-more/prompts.jsonl data.max_removed_share=1 teacher.path=$work/runs/$name/teacher $from"
    own_run more "off-policy, forward KL, as many teacher tokens" "the off-policy student" "$more"
  fi
  [ "${CONTINUED_ONLY:-0}" = 1 ] && continue
  mode "on-policy 1, reverse KL, batch 8" "the off-policy student" "$from distill.on_policy=1.0 distill.divergence=reverse_kl distill.train.batch_size=8"
  if [ "$first" = 1 ]; then
    mode "on-policy 0.5, forward KL" "random" "distill.on_policy=0.5"
    mode "on-policy 1, reverse KL" "random" "distill.on_policy=1.0 distill.divergence=reverse_kl"
    mode "on-policy 1 after step 1000, forward KL" "random" "distill.on_policy=1.0 distill.on_policy_after=1000"
    cut="run.name=cut teacher.path=$work/runs/$name/teacher student.from_teacher.layers=2"
    own_run cut "off-policy, forward KL" "2 of the teacher's 4 layers" "$cut"
    mode "on-policy 1, reverse KL" "2 of the teacher's 4 layers" "$cut distill.baseline=false distill.on_policy=1.0 distill.divergence=reverse_kl"
  fi
  first=0
done
python3 - "$dir/modes.jsonl" <<'PY'
import json, sys
from collections import defaultdict
modes = [json.loads(l) for l in open(sys.argv[1]).read().splitlines()]
for seed in sorted({m["seed"] for m in modes}):
    rows = [m for m in modes if m["seed"] == seed]
    print(f"Seed {seed}: teacher {100 * rows[0]['teacher']:.1f}%, gold-only {100 * rows[0]['gold_only']:.1f}%.")
    print()
    print("| distilled student | starts from | steps | exact match | training time | teacher tokens (generated + graded) |")
    print("|---|---|---:|---:|---:|---:|")
    for m in rows:
        print(f"| {m['mode']} | {m['start']} | {m['steps']} | {100 * m['exact_match']:.1f}% | {m['seconds']:.0f} s | {m['generated']:,} + {m['graded']:,} |")
    print()
by = defaultdict(dict)
for m in modes:
    by[m["seed"]][(m["mode"], m["start"])] = m
for seed, r in sorted(by.items()):
    off = r[("off-policy, forward KL", "the off-policy student")]["exact_match"]
    for name in ["on-policy 1, reverse KL", "on-policy 1, reverse KL, batch 8", "speculative on-policy 0.5, greedy"]:
        if (name, "the off-policy student") not in r:
            continue
        on = r[(name, "the off-policy student")]
        print(f"FIGURE seed {seed} continued: {name} minus off-policy {100 * (on['exact_match'] - off):+.1f} points ({on['graded']:,} tokens graded)")
    more = r.get(("off-policy, forward KL, as many teacher tokens", "the off-policy student"))
    spec = r.get(("speculative on-policy 0.5, greedy", "the off-policy student"))
    if more and spec:
        print(f"FIGURE seed {seed} continued: speculative on-policy 0.5, greedy minus off-policy with as many teacher tokens {100 * (spec['exact_match'] - more['exact_match']):+.1f} points ({spec['generated'] + spec['graded']:,} teacher tokens against {more['generated']:,})")
    cut = "2 of the teacher's 4 layers"
    if ("on-policy 1, reverse KL", cut) in r:
        on, off = r[("on-policy 1, reverse KL", cut)], r[("off-policy, forward KL", cut)]
        print(f"FIGURE seed {seed} cut from the teacher: on-policy 1, reverse KL minus off-policy {100 * (on['exact_match'] - off['exact_match']):+.1f} points ({on['graded']:,} tokens graded)")
PY
