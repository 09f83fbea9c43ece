#!/usr/bin/env bash
# Runs one libFuzzer harness of tests/fuzz/fuzz.cmake for a bounded time: configures a clang
# build of this tree with TAPIO_FUZZ=ON in a scratch directory (the default build uses gcc),
# builds NAME (libFuzzer + ASan/UBSan) and NAME_seeds, writes the seeds and fuzzes.
#
# usage: tests/fuzz/run_fuzzer.sh NAME [SECONDS]  (default 30; FUZZ_DIR keeps the work dir)
# exit:  0 nothing found, 1 a crash, a failed check, a leak or a build failure (reproducer
#        under the work dir: run build/tests/NAME on it), 77 skipped (no clang with libFuzzer).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
NAME=${1:?usage: run_fuzzer.sh NAME [SECONDS]}
BUDGET=${2:-30}
CC_FUZZ=${CC_FUZZ:-$(command -v clang || command -v clang-14 || true)}
WORK=${FUZZ_DIR:-$(mktemp -d "/tmp/tapio-$NAME.XXXXXX")}
[[ -n "${FUZZ_DIR:-}" ]] || trap 'rm -rf "$WORK"' EXIT

skip() {
	echo "run_fuzzer.sh: SKIP: $*" >&2
	exit 77
}
fail() {
	echo "run_fuzzer.sh: FAIL: $NAME: $* (work dir kept: $WORK)" >&2
	trap - EXIT
	exit 1
}

[[ -n "$CC_FUZZ" ]] || skip "clang not installed"
mkdir -p "$WORK/seeds" "$WORK/corpus"
echo 'int LLVMFuzzerTestOneInput(const char *d, long n){return 0;}' |
	"$CC_FUZZ" -fsanitize=fuzzer -x c - -o "$WORK/probe" 2>/dev/null ||
	skip "$CC_FUZZ cannot link -fsanitize=fuzzer"

# TAPIO_WERROR off: the gcc build is the -Werror gate; clang only builds the harness here.
{ cmake -S "$ROOT" -B "$WORK/build" -DCMAKE_C_COMPILER="$CC_FUZZ" -DTAPIO_FUZZ=ON \
	-DTAPIO_WERROR=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo &&
	cmake --build "$WORK/build" -j2 --target "$NAME" "${NAME}_seeds"; } >"$WORK/build.log" 2>&1 ||
	{ tail -n 40 "$WORK/build.log" >&2; fail "building the harness"; }
"$WORK/build/tests/${NAME}_seeds" "$WORK/seeds" || fail "writing the seeds"

echo "run_fuzzer.sh: $NAME for ${BUDGET}s from $(ls "$WORK/seeds" | wc -l) seeds"
# Bounded per input (-timeout) and in memory; libFuzzer's own failure code is 77 (our skip).
if ! "$WORK/build/tests/$NAME" -max_total_time="$BUDGET" -timeout=5 -rss_limit_mb=1024 \
	-error_exitcode=1 -timeout_exitcode=1 -max_len=20000 -print_final_stats=1 \
	-artifact_prefix="$WORK/" "$WORK/corpus" "$WORK/seeds" >"$WORK/fuzz.log" 2>&1; then
	grep -v -E '^(#|")' "$WORK/fuzz.log" | tail -n 60 >&2
	fail "reproducers: $(ls "$WORK" | grep -E '^(crash|leak|timeout)-' | tr '\n' ' ')"
fi
grep -E '^(Done|stat::(number_of_executed_units|new_units_added|peak_rss_mb))' "$WORK/fuzz.log"
echo "run_fuzzer.sh: OK: $NAME found nothing in ${BUDGET}s"
