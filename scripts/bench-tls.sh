#!/usr/bin/env bash
# Ingest throughput over TLS 1.3 (mutual, with a token) beside plaintext, same flags
# (docs/benchmarks.md "TLS"). Runs tapio-loadgen against a fresh tapio-controller twice
# and prints acked/s for both and the ratio (target >= 70 %).
#
#   scripts/bench-tls.sh [BUILD_DIR] [-- extra loadgen flags]
# Environment: AGENTS (8), RATE (occurrences/s offered, 1000000), DURATION (s, 8),
#              FSYNC (controller --fsync, interval:20), ROUNDS (3, interleaved; best of each)
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$here/build}
[ $# -gt 0 ] && shift
[ "${1:-}" = "--" ] && shift
bin=$build/bin
for b in tapio-controller tapio-loadgen; do
	[ -x "$bin/$b" ] || { echo "bench-tls: $bin/$b missing (build first)" >&2; exit 1; }
done
AGENTS=${AGENTS:-8}
RATE=${RATE:-1000000}
DURATION=${DURATION:-8}
FSYNC=${FSYNC:-interval:20}
ROUNDS=${ROUNDS:-3}

work=$(mktemp -d /tmp/tapio-bench-tls-XXXXXX)
ctl_pid=
cleanup() {
	[ -n "$ctl_pid" ] && kill "$ctl_pid" 2>/dev/null && wait "$ctl_pid" 2>/dev/null
	rm -rf "$work"
}
trap cleanup EXIT
"$here/scripts/gen-dev-certs.sh" "$work/certs" >/dev/null
c=$work/certs
token=bench-token-$$

port_of() { # LOG
	for _ in $(seq 1 500); do
		p=$(sed -n 's/.*ready: listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$1")
		[ -n "$p" ] && { echo "$p"; return 0; }
		sleep 0.02
	done
	echo "bench-tls: controller not ready" >&2
	cat "$1" >&2
	return 1
}

run() { # MODE -> prints acked/s
	local mode=$1 data=$work/data-$1-$2 log=$work/ctl-$1-$2.log port tls=() ltls=()
	shift 2
	if [ "$mode" = tls ]; then
		tls=(--tls-cert "$c/server.pem" --tls-key "$c/server.key" --tls-client-ca "$c/ca.pem")
		ltls=(--tls-ca "$c/ca.pem" --tls-cert "$c/client.pem" --tls-key "$c/client.key"
			--tls-server-name localhost)
	else
		tls=(--plaintext)
	fi
	"$bin/tapio-controller" --data-dir "$data" --listen 127.0.0.1:0 --http off \
		--fsync "$FSYNC" --stats-interval 1h --token "$token" "${tls[@]}" 2>"$log" &
	ctl_pid=$!
	port=$(port_of "$log")
	"$bin/tapio-loadgen" --controller "127.0.0.1:$port" --agents "$AGENTS" --rate "$RATE" \
		--duration "$DURATION" --token "$token" ${ltls[@]+"${ltls[@]}"} --json-summary "$@" \
		2>"$work/lg-$mode.err" >"$work/lg-$mode.json" || true
	kill "$ctl_pid"
	wait "$ctl_pid" || true
	ctl_pid=
	[ -s "$work/lg-$mode.json" ] || { tail -5 "$work/lg-$mode.err" >&2; echo "0 0 0 0"; return; }
	python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["acked_per_s"], d["acked"], d["submitted"], d["latency_p99_ms"])' \
		"$work/lg-$mode.json"
}

echo "bench-tls: $AGENTS agents, offered $RATE/s for ${DURATION}s, fsync $FSYNC, $(nproc) cores"
best_plain=0
best_tls=0
for r in $(seq 1 "$ROUNDS"); do
	read -r p_rate p_acked p_sub p_p99 < <(run plain "$r" "$@")
	read -r t_rate t_acked t_sub t_p99 < <(run tls "$r" "$@")
	printf 'round %d  plaintext %8d acked/s (%d/%d acked, p99 %s ms)\n' "$r" "$p_rate" \
		"$p_acked" "$p_sub" "$p_p99"
	printf 'round %d  TLS+mTLS  %8d acked/s (%d/%d acked, p99 %s ms)\n' "$r" "$t_rate" \
		"$t_acked" "$t_sub" "$t_p99"
	[ "$p_rate" -gt "$best_plain" ] && best_plain=$p_rate
	[ "$t_rate" -gt "$best_tls" ] && best_tls=$t_rate
done
ratio=$(python3 -c "print(f'{100.0*$best_tls/max($best_plain,1):.1f}')")
echo "plaintext $best_plain acked/s, TLS $best_tls acked/s: TLS is $ratio % of plaintext (target >= 70 %)"
python3 -c "import sys; sys.exit(0 if $best_tls >= 0.7*$best_plain else 1)" ||
	{ echo "bench-tls: below the 70 % target" >&2; exit 1; }
