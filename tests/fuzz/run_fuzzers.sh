#!/usr/bin/env bash
# Runs every libFuzzer target of a fuzz build (see tests/fuzz/CMakeLists.txt) for SECONDS each, JOBS at a
# time, and records what each did: executions, coverage (libFuzzer's "cov", edges, and "ft", features),
# corpus size, and the input of any failure.
#   tests/fuzz/run_fuzzers.sh BUILD_DIR SECONDS [JOBS]
# Each target keeps its growing corpus in BUILD_DIR/fuzz-runs/TARGET/corpus (so a later run goes on from
# there) and starts from the committed seeds (tests/fuzz/corpus/TARGET) and regressions
# (tests/fuzz/regressions/TARGET). A failing input lands in BUILD_DIR/fuzz-runs/TARGET/ as
# crash-*, leak-*, timeout-* or oom-*; the log beside it tells what happened. The summary table goes to
# stdout and to BUILD_DIR/fuzz-runs/summary.md. Exit status 1 when any target failed.
set -euo pipefail

build=${1:?usage: run_fuzzers.sh BUILD_DIR SECONDS [JOBS]}
seconds=${2:?usage: run_fuzzers.sh BUILD_DIR SECONDS [JOBS]}
jobs=${3:-2}
here=$(cd "$(dirname "$0")" && pwd)
runs=$build/fuzz-runs
mkdir -p "$runs"

# Seconds a target spends before its first input (loading vocabularies under ASan), added to its time.
startup_seconds() {
  case $1 in
    tokenizer) echo 45 ;;
    *) echo 0 ;;
  esac
}

# Seconds one input may take before libFuzzer calls it a hang. A template that runs into the interpreter's
# step limit legitimately takes 10-40 s in this instrumented build (about 1 s in a release build).
timeout_seconds() {
  case $1 in
    chat_template) echo 120 ;;
    *) echo 30 ;;
  esac
}

run_one() {
  local target=$1 bin=$build/tests/fuzz/fuzz_$1 work=$runs/$1
  mkdir -p "$work/corpus"
  rm -f "$work"/crash-* "$work"/leak-* "$work"/timeout-* "$work"/oom-* "$work"/slow-unit-*
  local args=(-max_total_time=$((seconds + $(startup_seconds "$target"))) -timeout="$(timeout_seconds "$target")"
              -rss_limit_mb=3072 -malloc_limit_mb=3072 -print_final_stats=1 -artifact_prefix="$work/")
  [[ -f $here/dict/$target.dict ]] && args+=(-dict="$here/dict/$target.dict")
  local dirs=("$work/corpus" "$here/corpus/$target")
  [[ -d $here/regressions/$target ]] && dirs+=("$here/regressions/$target")
  local status=0
  ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
    "$bin" "${args[@]}" "${dirs[@]}" >"$work/log.txt" 2>&1 || status=$?
  echo "$status" >"$work/status"
}
export -f run_one startup_seconds timeout_seconds
export build seconds runs here

targets=()
for bin in "$build"/tests/fuzz/fuzz_*; do
  [[ -x $bin && $bin != *_replay ]] && targets+=("${bin##*/fuzz_}")
done
if [[ ${#targets[@]} -eq 0 ]]; then
  echo "no fuzz targets in $build/tests/fuzz (build the fuzz_targets target first)" >&2
  exit 1
fi

start=$(date +%s)
printf '%s\n' "${targets[@]}" | xargs -P "$jobs" -I{} bash -c 'run_one {}'
wall=$(($(date +%s) - start))

failed=0
{
  echo "Fuzzing run of $(date -u +%Y-%m-%dT%H:%MZ), ${seconds} s per target, $jobs at a time, ${wall} s in all"
  echo
  echo "| target | seconds | executions | exec/s | cov (edges) | ft (features) | corpus | result |"
  echo "|---|---:|---:|---:|---:|---:|---:|---|"
  for t in "${targets[@]}"; do
    log=$runs/$t/log.txt
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || true)
    rate=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | grep -o '[0-9]*$' || true)
    last=$(grep -E '^#[0-9]+\s+(DONE|pulse|NEW|REDUCE|INITED)' "$log" | tail -1 || true)
    cov=$(grep -oE 'cov: [0-9]+' <<<"$last" | grep -oE '[0-9]+' || true)
    ft=$(grep -oE 'ft: [0-9]+' <<<"$last" | grep -oE '[0-9]+' || true)
    corp=$(grep -oE 'corp: [0-9]+/[0-9]+[a-zA-Z]*' <<<"$last" | cut -d' ' -f2 || true)
    if [[ $(cat "$runs/$t/status") == 0 ]]; then
      result=ok
    else
      failed=1
      artifact=$(ls "$runs/$t"/{crash,leak,timeout,oom}-* 2>/dev/null | head -1 || true)
      result="FAILED: ${artifact:-see $log}"
    fi
    echo "| $t | $seconds | ${execs:-?} | ${rate:-?} | ${cov:-?} | ${ft:-?} | ${corp:-?} | $result |"
  done
} | tee -a "$runs/summary.md"
if [[ $failed != 0 ]]; then
  echo "fuzzing found a failure: the logs are in $runs/TARGET/log.txt" >&2
  for t in "${targets[@]}"; do
    [[ $(cat "$runs/$t/status") == 0 ]] || grep -m1 -A15 -E 'ERROR|FUZZ CHECK FAILED|==[0-9]+==' "$runs/$t/log.txt" >&2 || true
  done
fi
exit $failed
