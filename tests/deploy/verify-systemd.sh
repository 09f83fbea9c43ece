#!/usr/bin/env bash
# Offline checks of deploy/systemd/*.service (ctest test_deploy_systemd); no running systemd
# needed, only systemd-analyze (Debian package systemd).
#
#   TAPIO_BIN_DIR=build/bin tests/deploy/verify-systemd.sh            check the real units
#   TAPIO_BIN_DIR=build/bin tests/deploy/verify-systemd.sh --self-test also prove that broken
#                                                                      units are refused
#
# For each unit:
# 1. `systemd-analyze verify` on a copy whose ExecStart points at this build's binary
#    (/usr/bin/tapio-X → $TAPIO_BIN_DIR/tapio-X; verify insists that the command exists and is
#    executable). verify exits 0 on unknown keys and unparsable values (it only warns), so ANY
#    line it prints is a failure here.
# 2. `systemd-analyze security --offline=true --threshold=N`: the exposure score must stay at or
#    below the unit's ceiling (agent 3.0: it keeps CAP_BPF/CAP_PERFMON/CAP_NET_ADMIN as root;
#    controller 2.0), so a removed hardening line fails the test.
# Ends with "N passed, N failed".
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
: "${TAPIO_BIN_DIR:=$root/build/bin}"
units_dir=${TAPIO_UNITS_DIR:-$root/deploy/systemd}

die() { echo "tests/deploy/verify-systemd.sh: $*" >&2; exit 1; }
command -v systemd-analyze >/dev/null 2>&1 ||
	die "systemd-analyze not found (Debian: apt-get install systemd)"
for b in tapio-agent tapio-controller; do
	[ -x "$TAPIO_BIN_DIR/$b" ] || die "missing $TAPIO_BIN_DIR/$b (build first; set TAPIO_BIN_DIR)"
done

# exposure ceilings, in systemd-analyze's 0..100 scale (3.0 shown = 30)
declare -A CEILING=([tapio-agent]=30 [tapio-controller]=20)

scratch=$(mktemp -d /tmp/tapio-systemd-verify.XXXXXX)
trap 'rm -rf "$scratch"' EXIT
passed=0
failed=0

# check_unit FILE NAME: prints problems, returns non-zero on any.
check_unit() {
	local src=$1 name=$2 d out rc=0
	d=$(mktemp -d "$scratch/u.XXXXXX")
	sed "s|/usr/bin/$name\\b|$TAPIO_BIN_DIR/$name|g" "$src" >"$d/$name.service"
	if ! grep -q "^ExecStart=$TAPIO_BIN_DIR/$name" "$d/$name.service"; then
		echo "  $name.service: ExecStart does not start /usr/bin/$name"
		rc=1
	fi
	# run from the scratch dir: verify also loads units named by relative paths
	out=$(cd "$d" && systemd-analyze verify --man=no --generators=no "$d/$name.service" 2>&1)
	local vrc=$?
	if [ $vrc -ne 0 ] || [ -n "$out" ]; then
		echo "  $name.service: systemd-analyze verify (exit $vrc):"
		printf '%s\n' "$out" | sed "s|$d/||g; s|^|    |"
		rc=1
	fi
	local ceiling=${CEILING[$name]:-20}
	out=$(cd "$d" && systemd-analyze security --offline=true --threshold="$ceiling" "$d/$name.service" 2>&1)
	local src_rc=$?
	local level
	level=$(printf '%s\n' "$out" | sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p')
	if [ $src_rc -ne 0 ]; then
		echo "  $name.service: exposure ${level:-?} is above the ceiling $((ceiling / 10)).$((ceiling % 10)) (systemd-analyze security exit $src_rc)"
		printf '%s\n' "$out" | grep '✗' | head -20 | sed 's/  */ /g; s/^/    /'
		rc=1
	else
		echo "  $name.service: exposure $level (ceiling $((ceiling / 10)).$((ceiling % 10)))"
	fi
	return $rc
}

record() { # record NAME STATUS(0 pass) [details]
	if [ "$2" -eq 0 ]; then
		passed=$((passed + 1))
		echo "PASS $1"
	else
		failed=$((failed + 1))
		echo "FAIL $1"
	fi
}

real_units() {
	local n=0
	for name in tapio-agent tapio-controller; do
		local f="$units_dir/$name.service"
		if [ ! -f "$f" ]; then
			echo "  missing $f"
			record "$name.service" 1
			continue
		fi
		n=$((n + 1))
		check_unit "$f" "$name"
		record "$name.service" $?
	done
}

# A broken copy of a real unit must be refused; prints what refused it.
expect_refused() { # expect_refused WHAT NAME SED-SCRIPT
	local what=$1 name=$2 script=$3 f="$scratch/broken-$RANDOM"
	mkdir -p "$f"
	sed "$script" "$units_dir/$name.service" >"$f/$name.service"
	if cmp -s "$f/$name.service" "$units_dir/$name.service"; then
		echo "  self-test '$what': the edit '$script' changed nothing (update the case)"
		record "self-test: $what" 1
		return
	fi
	local out
	if out=$(check_unit "$f/$name.service" "$name"); then
		echo "  self-test '$what': a broken unit PASSED"
		printf '%s\n' "$out"
		record "self-test: $what" 1
	else
		echo "  ok: '$what' refused: $(printf '%s\n' "$out" | grep -v '(ceiling [0-9.]*)$' | sed -n '1,2p' | tr -s ' ' | tr '\n' ' ')"
		record "self-test: $what" 0
	fi
}

if [ "${1:-}" = --self-test ]; then
	expect_refused "unknown key" tapio-agent 's/^ProtectHome=yes/ProtectHomme=yes/'
	expect_refused "bad value" tapio-controller 's/^Restart=on-failure/Restart=sometimes/'
	expect_refused "missing binary" tapio-agent 's|^ExecStart=/usr/bin/tapio-agent|ExecStart=/usr/bin/tapio-agnet|'
	expect_refused "unknown section" tapio-controller 's/^\[Install\]/[Instal]/'
	expect_refused "hardening removed (agent)" tapio-agent '/^Protect\|^Private\|^Restrict\|^SystemCall/d'
	expect_refused "capabilities widened (controller)" tapio-controller 's/^CapabilityBoundingSet=$/CapabilityBoundingSet=CAP_SYS_ADMIN CAP_NET_RAW CAP_SYS_PTRACE/; s/^User=tapio/User=root/'
else
	real_units
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
