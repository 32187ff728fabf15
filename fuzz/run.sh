#!/usr/bin/env bash
# Builds the fuzz targets and runs each one in turn (one job, one core), then prints a
# summary. Not run by CI.
#
#   fuzz/run.sh                        # every target, 300 s each
#   SECONDS_PER_TARGET=30 fuzz/run.sh routing config
#
# Environment:
#   SECONDS_PER_TARGET  seconds per target (default 300), libFuzzer's -max_total_time
#   SANITIZER           cargo fuzz --sanitizer (default: address; `none` is faster)
#   NICE                niceness of the fuzzing process (default 10)
#   FUZZ_KNOWN          comma-separated ids of already reported findings to step over, so
#                       a run can go on past them (unset: every invariant is checked):
#                         config-recursion-limit  seeds/config/crash-recursion-limit-no-line.toml
#                         token-string-body       seeds/token_response/crash-string-body-*
#
# Needs cargo-fuzz (`cargo install cargo-fuzz`). On a stable toolchain, RUSTC_BOOTSTRAP=1
# (set below) lets rustc accept the -Z flags cargo-fuzz passes.
#
# The hand-written seeds in seeds/<target>/ are copied into corpus/<target>/ (git-ignored)
# before each run, so the working corpus keeps growing across runs while only the seeds are
# committed. Crashes land in artifacts/<target>/, logs in logs/<target>.log.
#
# Seeds named crash-* reproduce findings; until the code is fixed, a run of their target
# stops on them at once unless FUZZ_KNOWN names them. Reproduce one with
#   RUSTC_BOOTSTRAP=1 cargo fuzz run -O <target> seeds/<target>/crash-...

set -uo pipefail

cd "$(dirname "$0")"

SECONDS_PER_TARGET="${SECONDS_PER_TARGET:-300}"
SANITIZER="${SANITIZER:-address}"
NICE="${NICE:-10}"
ALL_TARGETS=(routing permission_sets token_response token_error config formula)
if [ "$#" -gt 0 ]; then
    TARGETS=("$@")
else
    TARGETS=("${ALL_TARGETS[@]}")
fi

export RUSTC_BOOTSTRAP=1

echo "building fuzz targets (sanitizer: $SANITIZER)..."
if ! nice -n "$NICE" cargo fuzz build -O --sanitizer "$SANITIZER"; then
    echo "build failed" >&2
    exit 2
fi

mkdir -p logs
rows=()
any_crash=0

# Reads one `key: value` field from a libFuzzer status line.
field() { grep -oE "$1: [0-9]+" <<<"$2" | head -1 | grep -oE '[0-9]+$'; }

for target in "${TARGETS[@]}"; do
    corpus="corpus/$target"
    artifacts="artifacts/$target"
    log="logs/$target.log"
    mkdir -p "$corpus" "$artifacts"
    if [ -d "seeds/$target" ]; then
        cp -n "seeds/$target"/* "$corpus"/ 2>/dev/null || true
    fi
    crashes_before=$(find "$artifacts" -type f \( -name 'crash-*' -o -name 'oom-*' -o -name 'timeout-*' \) | wc -l)

    args=(
        "-max_total_time=$SECONDS_PER_TARGET"
        -timeout=10
        -rss_limit_mb=2048
        -print_final_stats=1
        "-artifact_prefix=$artifacts/"
    )
    [ -f "dicts/$target.dict" ] && args+=("-dict=dicts/$target.dict")
    [ "$target" = config ] && args+=(-max_len=8192)

    echo "fuzzing $target for ${SECONDS_PER_TARGET}s..."
    nice -n "$NICE" cargo fuzz run -O --sanitizer "$SANITIZER" "$target" "$corpus" -- "${args[@]}" \
        >"$log" 2>&1
    status=$?

    inited=$(grep -E '#[0-9]+[[:space:]]+INITED' "$log" | tail -1)
    last=$(grep -E '#[0-9]+[[:space:]]+(DONE|NEW|REDUCE|pulse|INITED)' "$log" | tail -1)
    execs=$(grep -oE 'stat::number_of_executed_units:[[:space:]]+[0-9]+' "$log" | grep -oE '[0-9]+$')
    rate=$(grep -oE 'stat::average_exec_per_sec:[[:space:]]+[0-9]+' "$log" | grep -oE '[0-9]+$')
    corpus_files=$(find "$corpus" -type f | wc -l)
    crashes_after=$(find "$artifacts" -type f \( -name 'crash-*' -o -name 'oom-*' -o -name 'timeout-*' \) | wc -l)
    new_crashes=$((crashes_after - crashes_before))
    if [ "$status" -ne 0 ] || [ "$new_crashes" -gt 0 ]; then
        any_crash=1
        verdict="CRASH ($new_crashes new, exit $status; see $log)"
    else
        verdict="none"
    fi
    rows+=("$(printf '%-16s %12s %8s %6s → %-6s %7s → %-7s %7s  %s' \
        "$target" "${execs:-?}" "${rate:-?}" \
        "$(field cov "$inited")" "$(field cov "$last")" \
        "$(field ft "$inited")" "$(field ft "$last")" \
        "$corpus_files" "$verdict")")
done

echo
echo "summary (${SECONDS_PER_TARGET}s per target, sanitizer $SANITIZER)"
printf '%-16s %12s %8s %15s %17s %7s  %s\n' target executions exec/s "cov start→end" "ft start→end" corpus crashes
for row in "${rows[@]}"; do
    echo "$row"
done
exit "$any_crash"
