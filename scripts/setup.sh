#!/usr/bin/env bash
# Installs every Debian package the build, the tests and the benchmarks need.
# Idempotent; prints nothing when everything is already there.
set -euo pipefail

PACKAGES=(
	# build
	build-essential cmake pkg-config git
	clang llvm bpftool libbpf-dev libelf-dev zlib1g-dev libdeflate-dev
	libuv1-dev libprotobuf-c-dev protobuf-c-compiler
	libjansson-dev libyaml-dev libssl-dev libh2o-dev libcurl4-openssl-dev
	# tests and checks
	libcriterion-dev clang-format iproute2 nftables util-linux procps
	chromium systemd debootstrap file dpkg-dev sqlite3 libsqlite3-dev
	# benchmarks
	libbpf-tools time
)

missing=()
for p in "${PACKAGES[@]}"; do
	if ! dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null | grep -qx installed; then
		missing+=("$p")
	fi
done

if ((${#missing[@]})); then
	if [ "$(id -u)" -ne 0 ]; then
		echo "setup: missing packages: ${missing[*]} (run as root to install them)" >&2
		exit 1
	fi
	echo "setup: installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq >/dev/null
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Node.js + npm for the browser and manifest checks (tests/browser, tests/deploy). A machine
# that already has node (e.g. from NodeSource, which bundles npm) keeps it.
if ! command -v npm >/dev/null 2>&1; then
	if [ "$(id -u)" -ne 0 ]; then
		echo "setup: npm is missing (run as root to install nodejs and npm)" >&2
		exit 1
	fi
	echo "setup: installing nodejs npm"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
fi

# Classic tracepoints need tracefs; tp_btf does not, but bpftool and tests may.
if [ "$(id -u)" -eq 0 ] && [ -d /sys/kernel/tracing ] && ! mountpoint -q /sys/kernel/tracing; then
	mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null || true
fi
