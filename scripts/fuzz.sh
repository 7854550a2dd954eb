#!/usr/bin/env bash
# Longer fuzz runs (atheris / libFuzzer) of the decoders of hostile input; see tests/fuzz/targets.py.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET ...]      default: 600 s each, every target
#
# Takes the CPU lock ($CPU_LOCK, default /work/notes/cpu.lock, when its directory exists).  The working corpus grows in .fuzz/<target>/
# (seeded from tests/fuzz/seeds/<target>/); a crash is written to .fuzz/crash-<target>-<sha1> and
# the run of that target stops.  Fix the bug, then keep the input in tests/fuzz_corpus/<target>/,
# where the test suite replays it.  Each target's executions and coverage are appended to
# .fuzz/stats.log.
set -uo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-600}"
shift || true
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(yaml expression rpc data)
mkdir -p .fuzz
lock="${CPU_LOCK:-/work/notes/cpu.lock}"
locked=()
[ -d "$(dirname "$lock")" ] && locked=(flock "$lock")
python -c 'import atheris' 2>/dev/null || { echo "error: atheris is not installed; pip install -e '.[dev]'" >&2; exit 2; }
status=0
for t in "${targets[@]}"; do
  mkdir -p ".fuzz/$t"
  echo "== fuzzing $t for ${seconds}s"
  log=".fuzz/$t.log"
  "${locked[@]}" python tests/fuzz/run.py "$t" -max_total_time="$seconds" -timeout=2 \
    -rss_limit_mb=1024 -artifact_prefix=".fuzz/crash-$t-" -print_final_stats=1 \
    ".fuzz/$t" "tests/fuzz/seeds/$t" "tests/fuzz_corpus/$t" >"$log" 2>&1
  rc=$?
  runs=$(grep -o 'stat::number_of_executed_units: [0-9]*' "$log" | awk '{print $2}')
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | awk '{print $2}')
  echo "$(date -u +%FT%TZ) $t seconds=$seconds runs=${runs:-?} cov=${cov:-?} rc=$rc" | tee -a .fuzz/stats.log
  if [ "$rc" -ne 0 ]; then
    echo "   crash or failure (rc $rc); see $log and .fuzz/crash-$t-*" >&2
    status=1
  fi
done
exit "$status"
