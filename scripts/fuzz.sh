#!/usr/bin/env bash
# Builds the wire-decoder fuzz harness (tests/fuzz/fuzz_codec.c) with clang + libFuzzer +
# ASan/UBSan into a scratch directory, seeds it with valid frames and fuzzes for a bounded time.
# The default build uses gcc, so this script compiles the harness itself.
#
# usage: scripts/fuzz.sh [SECONDS]     (default 60; FUZZ_DIR keeps the work dir, e.g. corpus)
# exit:  0 no crash, 1 crash/leak/build failure (reproducer under $FUZZ_DIR/crash-*),
#        77 skipped (no clang with libFuzzer / no protoc-c), with the reason on stderr.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
SECONDS_BUDGET=${1:-60}
CC_FUZZ=${CC_FUZZ:-}
for c in clang clang-14; do
	if [[ -z "$CC_FUZZ" ]] && command -v "$c" >/dev/null; then
		CC_FUZZ=$c
	fi
done
if [[ -z "$CC_FUZZ" ]]; then
	echo "fuzz.sh: SKIP: clang not installed (apt-get install clang libclang-rt-14-dev)" >&2
	exit 77
fi
if ! command -v protoc-c >/dev/null; then
	echo "fuzz.sh: SKIP: protoc-c not installed (apt-get install protobuf-c-compiler)" >&2
	exit 77
fi

if [[ -n "${FUZZ_DIR:-}" ]]; then
	WORK=$FUZZ_DIR
	mkdir -p "$WORK"
else
	WORK=$(mktemp -d /tmp/tapio-fuzz.XXXXXX)
	trap 'rm -rf "$WORK"' EXIT
fi
mkdir -p "$WORK/gen" "$WORK/seeds" "$WORK/corpus"

protoc-c --proto_path="$ROOT/proto" --c_out="$WORK/gen" "$ROOT/proto/tapio.proto"

SRCS=("$ROOT/common/codec.c" "$ROOT/common/occ_proto.c" "$ROOT/common/occurrence.c"
	"$ROOT/common/ulid.c" "$WORK/gen/tapio.pb-c.c")
CFLAGS=(-std=gnu11 -D_GNU_SOURCE -g -O1 -fno-omit-frame-pointer -I"$ROOT" -I"$WORK/gen")
LIBS=(-lprotobuf-c -lpthread -lm)

if ! echo 'int LLVMFuzzerTestOneInput(const char *d, long n){return 0;}' |
	"$CC_FUZZ" -fsanitize=fuzzer -x c - -o "$WORK/probe" 2>/dev/null; then
	echo "fuzz.sh: SKIP: $CC_FUZZ cannot link -fsanitize=fuzzer (install libclang-rt-14-dev)" >&2
	exit 77
fi

"$CC_FUZZ" "${CFLAGS[@]}" -DFUZZ_CODEC_SEEDS "$ROOT/tests/fuzz/fuzz_codec.c" "${SRCS[@]}" \
	"${LIBS[@]}" -o "$WORK/seedgen"
"$WORK/seedgen" "$WORK/seeds"

"$CC_FUZZ" "${CFLAGS[@]}" -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
	"$ROOT/tests/fuzz/fuzz_codec.c" "${SRCS[@]}" "${LIBS[@]}" -o "$WORK/fuzz_codec"

echo "fuzz.sh: fuzzing the wire decoder for ${SECONDS_BUDGET}s ($(ls "$WORK/seeds" | wc -l) seeds)"
# -timeout: one input may not take a second; -rss_limit_mb bounds memory; crashes → exit != 0
# libFuzzer's own error exit code is 77, our "skipped": make failures 1.
set +e
"$WORK/fuzz_codec" -max_total_time="$SECONDS_BUDGET" -timeout=5 -rss_limit_mb=1024 \
	-error_exitcode=1 -timeout_exitcode=1 -max_len=20000 -print_final_stats=1 \
	-artifact_prefix="$WORK/" "$WORK/corpus" "$WORK/seeds" >"$WORK/fuzz.log" 2>&1
rc=$?
set -e
grep -E '^(Done|stat::)' "$WORK/fuzz.log" || true
if [[ $rc -ne 0 ]]; then
	grep -v -E '^(#|")' "$WORK/fuzz.log" | tail -n 60 >&2
	echo "fuzz.sh: FAIL: the fuzzer exited $rc; reproducers:" "$WORK"/crash-* "$WORK"/leak-* \
		"$WORK"/timeout-* 2>/dev/null >&2
	trap - EXIT
	exit 1
fi
echo "fuzz.sh: OK: no crash in ${SECONDS_BUDGET}s"
