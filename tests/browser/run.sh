#!/bin/sh
# Real-browser test of the controller dashboard (GET /): sets up chromium + playwright-core and
# runs dashboard.test.mjs against a real tapio-controller fed by tapio-loadgen.
#
#   TAPIO_BIN_DIR=build/bin tests/browser/run.sh          # what ctest test_dashboard_browser runs
#   TAPIO_SCREENSHOT=1 TAPIO_BIN_DIR=build/bin tests/browser/run.sh   # also writes docs/dashboard.png
#
# Missing binaries, a controller without --http or without the page at / are failures, never
# skips: this test is how we know the dashboard works.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
: "${TAPIO_BIN_DIR:=$root/build/bin}"
export TAPIO_BIN_DIR
chromium=${TAPIO_CHROMIUM:-/usr/bin/chromium}
export TAPIO_CHROMIUM="$chromium"

die() { echo "tests/browser/run.sh: $*" >&2; exit 1; }

for b in tapio-controller tapio-loadgen; do
	[ -x "$TAPIO_BIN_DIR/$b" ] || die "missing $TAPIO_BIN_DIR/$b (build it first; set TAPIO_BIN_DIR)"
done
"$TAPIO_BIN_DIR/tapio-controller" --help 2>&1 | grep -q -- '--http' ||
	die "$TAPIO_BIN_DIR/tapio-controller has no --http option: the query API / dashboard is not built in"

command -v node >/dev/null 2>&1 || die "node is not installed (Debian: apt-get install nodejs npm)"
command -v npm >/dev/null 2>&1 || die "npm is not installed"

if [ ! -x "$chromium" ]; then
	[ "$(id -u)" = 0 ] || die "$chromium missing; install it: sudo apt-get install chromium"
	echo "tests/browser/run.sh: installing chromium (apt-get)" >&2
	DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium >&2 ||
		{ apt-get update >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium >&2; } ||
		die "could not install chromium"
fi

# playwright-core only: it never downloads browsers (we drive Debian's chromium).
cd "$here"
if [ ! -f node_modules/playwright-core/package.json ] ||
   [ package-lock.json -nt node_modules/.package-lock.json ]; then
	if [ -f package-lock.json ]; then
		npm ci --no-audit --no-fund >&2 || die "npm ci failed"
	else
		npm install --no-audit --no-fund >&2 || die "npm install failed"
	fi
fi

exec node "$here/dashboard.test.mjs"
