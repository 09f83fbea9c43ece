#!/usr/bin/env bash
# The lean gate: clang-format check, a -Werror build, every test, and size budgets.
# Set SANITIZE=1 to also run the whole suite under ASan+UBSan (build-asan/).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh

echo "== clang-format"
mapfile -t files < <(git ls-files '*.c' '*.h')
clang-format --dry-run --Werror "${files[@]}"
echo "ok: ${#files[@]} files"

echo "== -Werror build + tests"
scripts/test.sh

echo "== size budgets"
fail=0
budget() { # budget NAME FILE MAX_BYTES
	local tmp size
	[ -f "$2" ] || { echo "skip $1: $2 not built"; return; }
	tmp=$(mktemp)
	strip -o "$tmp" "$2"
	size=$(stat -c %s "$tmp")
	rm -f "$tmp"
	if ((size > $3)); then
		echo "FAIL $1: stripped $size bytes > budget $3"; fail=1
	else
		echo "ok   $1: stripped $size bytes <= budget $3"
	fi
}
budget tapio-agent build/bin/tapio-agent $((600 * 1024))
budget tapio-controller build/bin/tapio-controller $((2 * 1024 * 1024))
budget tapio build/bin/tapio $((1024 * 1024))

if [ "${SANITIZE:-0}" = 1 ]; then
	echo "== ASan + UBSan"
	cmake --preset asan >/dev/null
	cmake --build --preset asan -j"$(nproc)"
	ctest --preset asan -j1
fi
exit $fail
