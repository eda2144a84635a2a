#!/usr/bin/env bash
# Runs the fuzz targets in `fuzz/` (see fuzz/README.md), one after another, and says what each found.
#
#   scripts/fuzz.sh                      -> every target, FUZZ_SECONDS (default 60) each
#   scripts/fuzz.sh csv_import config    -> only these
#   FUZZ_SECONDS=300 scripts/fuzz.sh parquet_import
#   FUZZ_TIMEOUT=60 ...                  -> seconds one input may take before it counts as a hang
#                                           (default 25; the sanitizer build is ~50x slower)
#
# cargo-fuzz needs nightly-only flags (`-Zsanitizer=address`); with only a stable toolchain,
# RUSTC_BOOTSTRAP=1 lets stable take them. Targets run one at a time on one core, so the script
# can run beside a build; set CARGO_BUILD_JOBS=1 to keep the build itself to one core too.
#
# Each target starts from the committed seeds (`fuzz/seeds/<target>/`, read only) and grows
# `fuzz/corpus/<target>/` (ignored by git). A crash is saved under `fuzz/artifacts/<target>/`;
# minimise it with `cargo fuzz tmin <target> <file>`, fix it, and keep the minimised input
# under `fuzz/regressions/<target>/` with a unit test beside the code it broke.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
seconds="${FUZZ_SECONDS:-60}"
timeout="${FUZZ_TIMEOUT:-25}"
all=(config jsonl_import csv_import parquet_import)

for setting in "FUZZ_SECONDS=$seconds" "FUZZ_TIMEOUT=$timeout"; do
  if [[ ! "${setting#*=}" =~ ^[1-9][0-9]*$ ]]; then
    echo "error: $setting is not a whole number of seconds; e.g. ${setting%%=*}=300" >&2
    exit 2
  fi
done
targets=("$@")
if [[ ${#targets[@]} -eq 0 ]]; then
  targets=("${all[@]}")
fi
for t in "${targets[@]}"; do
  if [[ ! -f "$root/fuzz/fuzz_targets/$t.rs" ]]; then
    echo "error: \`$t\` is not a fuzz target; the targets are: ${all[*]}" >&2
    exit 2
  fi
done

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "cargo-fuzz is not installed; installing it (\`cargo install cargo-fuzz --locked\`)" >&2
  cargo install cargo-fuzz --locked
fi

export RUSTC_BOOTSTRAP=1
cd "$root/fuzz"

summary=()
failed=0
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t" "artifacts/$t"
  # Beside the target's artifact directory, not in it: cargo-fuzz reports the newest file there
  # as the failing input.
  log="artifacts/$t.log"
  before="$(find "artifacts/$t" -type f | sort)"
  echo "== $t: ${seconds}s (log: fuzz/$log)" >&2
  # libFuzzer exits non-zero on a crash; carry on to the next target and report at the end.
  status=0
  cargo fuzz run "$t" "corpus/$t" "seeds/$t" -- \
    -max_total_time="$seconds" -timeout="$timeout" -print_final_stats=1 2>&1 | tee "$log" >&2 ||
    status=$?
  execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)"
  new="$(comm -13 <(echo "$before") <(find "artifacts/$t" -type f | sort))"
  if [[ $status -ne 0 || -n "$new" ]]; then
    failed=1
    summary+=("$t: FAILED after ${execs:-?} executions (exit $status); see fuzz/$log")
    while IFS= read -r f; do
      if [[ -n "$f" ]]; then
        summary+=("    new input: fuzz/$f")
      fi
    done <<<"$new"
  else
    summary+=("$t: ${seconds}s, ${execs:-?} executions, no crash")
  fi
done

echo >&2
echo "Fuzzing summary:" >&2
printf '  %s\n' "${summary[@]}" >&2
if [[ $failed -ne 0 ]]; then
  echo >&2
  echo "hint: reproduce with \`RUSTC_BOOTSTRAP=1 cargo fuzz run <target> <artifact>\` in fuzz/, minimise with \`cargo fuzz tmin <target> <artifact>\`" >&2
  exit 1
fi
