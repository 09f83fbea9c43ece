#!/usr/bin/env bash
# Agent benchmarks (figures go to docs/benchmarks.md):
#  1. classify + JSON encode, ns per record (microbenchmark, per observer);
#  2. a connection-refused storm (STORM connects, default 100000) against the real agent and,
#     in the same run, against BCC's tcpstates (libbpf-tools) with output to /dev/null:
#     CPU seconds (user+sys, all threads, from /proc/PID/task/*/schedstat) per 1,000 connects;
#     ROUNDS alternating rounds (default 3), the median is reported;
#  3. agent RSS (VmRSS / VmHWM after the storm) and stripped binary size.
# Needs root. Prints a markdown table and writes it to build/bench/agent.md.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD_DIR:-build}
STORM=${STORM:-100000}
ROUNDS=${ROUNDS:-3}
[ "$(id -u)" -eq 0 ] || { echo "bench-agent: needs root (BPF)" >&2; exit 1; }
scripts/setup.sh
scripts/build.sh >/dev/null
mkdir -p "$BUILD/bench"
work=$(mktemp -d /tmp/tapio-bench-XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

AGENT="$BUILD/bin/tapio-agent"
STORMER="$BUILD/tests/tapio-connstorm"
TCPSTATES=$(command -v tcpstates || echo /usr/sbin/tcpstates)

cpu_ns() { # total on-CPU ns of every thread of $1
	local sum=0 a
	for f in /proc/"$1"/task/*/schedstat; do
		read -r a _ <"$f" || true
		sum=$((sum + a))
	done
	echo "$sum"
}

median() { sort -g | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }

# storm_cpu PID -> CPU ms per 1000 connects for one storm
storm_cpu() {
	local pid=$1 c0 c1
	sleep 1
	c0=$(cpu_ns "$pid")
	"$STORMER" "$STORM" >"$work/storm.out"
	sleep 2 # let windows close and rings drain
	c1=$(cpu_ns "$pid")
	awk -v d=$((c1 - c0)) -v n="$STORM" 'BEGIN {printf "%.3f\n", d / 1e6 / (n / 1000)}'
}

wait_ready() { # wait_ready LOGFILE PATTERN
	for _ in $(seq 1 300); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
	echo "bench-agent: timed out waiting for '$2' in $1" >&2; cat "$1" >&2; return 1
}

echo "== classify + JSON encode"
"$BUILD/bin/bench_classify" | tee "$work/classify.txt"

agent_runs=() tcps_runs=() rss="" hwm=""
for r in $(seq 1 "$ROUNDS"); do
	"$AGENT" --sink stdout --node-name bench --data-dir "$work" >/dev/null 2>"$work/agent.log" &
	apid=$!
	wait_ready "$work/agent.log" "tapio-agent ready"
	agent_runs+=("$(storm_cpu $apid)")
	rss=$(awk '/^VmRSS/ {print $2}' /proc/$apid/status)
	hwm=$(awk '/^VmHWM/ {print $2}' /proc/$apid/status)
	kill -TERM $apid; wait $apid || { echo "bench-agent: agent exited non-zero" >&2; exit 1; }

	if [ -x "$TCPSTATES" ]; then
		"$TCPSTATES" >/dev/null 2>"$work/tcpstates.log" &
		tpid=$!
		sleep 3 # tcpstates prints nothing when ready: give it time to load
		tcps_runs+=("$(storm_cpu $tpid)")
		kill -INT $tpid; wait $tpid || true
	fi
	echo "round $r: agent ${agent_runs[-1]} ms/1k, tcpstates ${tcps_runs[-1]:-n/a} ms/1k"
done

agent_med=$(printf '%s\n' "${agent_runs[@]}" | median)
tcps_med=$( ((${#tcps_runs[@]})) && printf '%s\n' "${tcps_runs[@]}" | median || echo "n/a")
strip -o "$work/tapio-agent.stripped" "$AGENT"
size=$(stat -c %s "$work/tapio-agent.stripped")

{
	echo "| metric | tapio-agent | baseline | target |"
	echo "|---|---|---|---|"
	while read -r line; do
		obs=$(awk '{print $1}' <<<"$line")
		ns=$(sed -n 's/.*ns_per_record=\([0-9.]*\).*/\1/p' <<<"$line")
		[ -n "$ns" ] && echo "| classify + JSON, ${obs:-all} (ns/record) | $ns | – | – |"
	done <"$work/classify.txt"
	echo "| CPU per 1,000 refused connects, storm of $STORM (ms, median of $ROUNDS) | $agent_med | tcpstates: $tcps_med | ≤ 50 % of tcpstates |"
	echo "| RSS after the storm (VmRSS / VmHWM, KiB) | $rss / $hwm | – | < 10 MB |"
	echo "| stripped binary (bytes) | $size | – | < 600 KB |"
} | tee "$BUILD/bench/agent.md"
