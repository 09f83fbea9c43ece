#!/bin/sh
# Offline validation of deploy/kubernetes (ctest test_deploy_k8s): installs the pinned npm
# tools (kubernetes-models, yaml; package-lock.json) when missing, validates every manifest,
# then runs the negative self-test (broken copies must be refused). No cluster, no network
# beyond the npm registry for the first install.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
die() { echo "tests/deploy/run-k8s.sh: $*" >&2; exit 1; }
command -v node >/dev/null 2>&1 || die "node is not installed (Debian: apt-get install nodejs npm)"
command -v npm >/dev/null 2>&1 || die "npm is not installed"
cd "$here"
if [ ! -f node_modules/kubernetes-models/package.json ] || [ ! -f node_modules/yaml/package.json ] ||
   [ package-lock.json -nt node_modules/.package-lock.json ]; then
	npm ci --no-audit --no-fund >&2 || die "npm ci failed"
fi
status=0
node "$here/validate-k8s.mjs" || status=1
node "$here/validate-k8s.mjs" --self-test || status=1
exit $status
