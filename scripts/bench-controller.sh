#!/usr/bin/env bash
# Controller benchmarks (figures go to docs/benchmarks.md), each beside a baseline of the same run:
#  1. durable ingest: tapio-controller (--fsync always, fresh data dir) fed by tapio-loadgen
#     (AGENTS simulated agents for DURATION s; RATE `max` (default) is closed-loop: each agent
#     keeps WINDOW bytes of batches unacknowledged and sends the next as soon as an Ack frees
#     room, so the controller runs at its capacity and nothing is dropped; a number offers
#     that many occurrences/s instead): occurrences/s stored
#     and acknowledged (acked / time to the last Ack), cross-checked with `--dump`, and the
#     controller's CPU seconds per million occurrences (/proc/PID/schedstat, all threads).
#     Baselines: tapio-rawbaseline moving the same bytes over AGENTS loopback connections into
#     one file at the controller's fsync cadence (elapsed / fsyncs), as occurrences/s-equivalent
#     (bytes/s divided by the wire bytes per occurrence of the controller run): the practical
#     limit (a receiver thread and a writer thread that overlap reading with the write +
#     fdatasync of the previous group), run twice, with page-cache writes and the store's
#     practices for them and with direct writes as the store's default, the faster of the two
#     counting; and `serial` (one thread that waits for each fdatasync itself, the baseline of
#     sessions 1-2);
#     ROUNDS (5) alternating rounds, median reported. Every deletion is followed by `sync`
#     before the next measurement: the root file system is mounted with online discard, and
#     the discards of the previous run's gigabytes otherwise slow the next run's writes by
#     half;
#  2. end-to-end latency (occurrence timestamp to the durable Ack back at the sender) at
#     LAT_RATE occurrences/s from AGENTS agents for LAT_DURATION s, with the client batch time
#     at BATCH_MS and at the client default (200 ms): p50/p99/max from loadgen's histogram;
#  3. controller RSS with IDLE_AGENTS connected idle agents (loadgen --rate 0), per agent,
#     beside a trivial accept-only listener holding as many bare TCP connections;
#  4. the loop thread's EventBatch check per occurrence (tapio-wirebench: a realistic batch as
#     the agent packs it, and with the Context last), beside protobuf-c unpack + occ_from_proto
#     of the same batch (the generic path).
# Root not required; SKIP_BUILD=1 skips scripts/build.sh; INGEST_ONLY=1 runs section 1 only;
# CTL_FLAGS adds controller flags to the ingest runs (e.g. "--page-cache-keep all").
# Prints a markdown table and writes it to build/bench/controller.md.
# `--tls`: the TLS figure instead (the same loadgen load against a plaintext and a TLS 1.3 +
# mTLS + token controller, interleaved rounds): runs scripts/bench-tls.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = "--tls" ]; then
	shift
	exec scripts/bench-tls.sh "$@"
fi
BUILD=${BUILD_DIR:-build}
AGENTS=${AGENTS:-100}
RATE=${RATE:-max}
WINDOW=${WINDOW:-1048576}
DURATION=${DURATION:-10}
LAT_RATE=${LAT_RATE:-10000}
LAT_DURATION=${LAT_DURATION:-20}
BATCH_MS=${BATCH_MS:-10}
IDLE_AGENTS=${IDLE_AGENTS:-10000}
IDLE_SECS=${IDLE_SECS:-20}
PORT=${PORT:-17371}
[ -n "${SKIP_BUILD:-}" ] || BUILD_DIR=$BUILD scripts/build.sh >/dev/null # SKIP_BUILD=1: use $BUILD as is
mkdir -p "$BUILD/bench"
work=$(mktemp -d /tmp/tapio-bench-ctl-XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
# one socket per agent in each process (the controller raises its own soft limit too)
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

CTL="$BUILD/bin/tapio-controller"
LOADGEN="$BUILD/bin/tapio-loadgen"
RAW="$BUILD/tests/tapio-rawbaseline"

cpu_ns() { # total on-CPU ns of every thread of $1
	local sum=0 a
	for f in /proc/"$1"/task/*/schedstat; do
		read -r a _ <"$f" || true
		sum=$((sum + a))
	done
	echo "$sum"
}

json() { # json FILE KEY -> the number after "KEY": in a one-line JSON object
	sed -n "s/.*\"$2\":\([0-9.]*\).*/\1/p" "$1"
}

stat_field() { # stat_field LOG KEY -> KEY=N from the controller's last stats line
	grep 'stats: ' "$1" | tail -1 | sed -n "s/.* $2=\([0-9]*\).*/\1/p"
}

loop_cpu_ns() { # on-CPU ns of the main (event loop) thread of $1
	local a
	read -r a _ <"/proc/$1/task/$1/schedstat"
	echo "$a"
}

rss_kib() { awk '/^VmRSS/ {print $2}' /proc/"$1"/status; }

wait_ready() { # wait_ready LOGFILE PATTERN
	for _ in $(seq 1 300); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
	echo "bench-controller: timed out waiting for '$2' in $1" >&2; cat "$1" >&2; return 1
}

settle() { # the discards of deleted files (online discard) finish before the next measurement
	sync
}

start_ctl() { # start_ctl NAME [extra flags]: fresh data dir, sets $cpid
	local name=$1
	shift
	rm -rf "$work/$name"
	settle
	"$CTL" --data-dir "$work/$name" --listen "127.0.0.1:$PORT" --http off --plaintext --fsync always \
		"$@" 2>"$work/$name.log" &
	cpid=$!
	wait_ready "$work/$name.log" "ready: listening"
}

stop_ctl() { # stop_ctl NAME
	kill -TERM "$cpid"
	wait "$cpid" || { echo "bench-controller: controller exited non-zero" >&2; cat "$work/$1.log" >&2; exit 1; }
}

# ---- 1. durable ingest throughput -----------------------------------------------------------
# ROUNDS rounds, each the controller run then the raw baseline with the same bytes, so disk and
# neighbour noise hits both alike; the round with the median acked/s is reported in full and
# the ratio is the median of the per-round ratios.
ingest_round() { # ingest_round N: one controller run + its raw baseline; appends to $work/rounds
	local r=$1 lrc=0 c0 c1 l0 l1
	echo "== durable ingest, round $r/$ROUNDS: $AGENTS agents, rate $RATE (window $WINDOW B) for $DURATION s (fsync always)"
	# shellcheck disable=SC2086 # CTL_FLAGS: words on purpose
	start_ctl ingest --stats-interval 1h ${CTL_FLAGS:-}
	c0=$(cpu_ns "$cpid") l0=$(loop_cpu_ns "$cpid")
	"$LOADGEN" --controller "127.0.0.1:$PORT" --agents "$AGENTS" --rate "$RATE" --window "$WINDOW" \
		--duration "$DURATION" --json-summary >"$work/ingest.json" 2>"$work/loadgen.log" || lrc=$?
	# exit 3 = not everything submitted was acked: the offered rate overran the clients'
	# memory bound and they dropped (and counted) the excess; acked is still what we measure
	[ "$lrc" = 0 ] || [ "$lrc" = 3 ] || { echo "bench-controller: loadgen failed ($lrc)" >&2; cat "$work/loadgen.log" >&2; exit 1; }
	c1=$(cpu_ns "$cpid") l1=$(loop_cpu_ns "$cpid")
	stop_ctl ingest
	cat "$work/ingest.json"
	acked=$(json "$work/ingest.json" acked)
	submitted=$(json "$work/ingest.json" submitted)
	dropped=$(json "$work/ingest.json" dropped)
	elapsed=$(json "$work/ingest.json" elapsed_s)
	acked_s=$(json "$work/ingest.json" acked_per_s)
	submit_s=$(awk -v n="$submitted" -v d="$(json "$work/ingest.json" duration_s)" 'BEGIN {printf "%.0f", n / d}')
	bytes_in=$(stat_field "$work/ingest.log" bytes_in)
	fsyncs=$(stat_field "$work/ingest.log" fsyncs)
	occ=$(stat_field "$work/ingest.log" occurrences)
	stored=$("$CTL" --dump "$work/ingest" --limit 1 2>/dev/null | sed -n 's/^ *records *\([0-9]*\).*/\1/p')
	rm -rf "$work/ingest"
	settle
	ctl_cpu_per_m=$(awk -v d=$((c1 - c0)) -v n="$acked" 'BEGIN {printf "%.2f", d / 1e9 / (n / 1e6)}')
	loop_cpu_per_m=$(awk -v d=$((l1 - l0)) -v n="$acked" 'BEGIN {printf "%.2f", d / 1e9 / (n / 1e6)}')
	wire_per_occ=$(awk -v b="$bytes_in" -v n="$occ" 'BEGIN {printf "%.1f", b / n}')
	fsync_ms=$(awk -v e="$elapsed" -v f="$fsyncs" 'BEGIN {v = e * 1000 / f; printf "%d", v < 1 ? 1 : v}')
	echo "controller: bytes_in=$bytes_in occurrences=$occ fsyncs=$fsyncs stored=$stored" \
		"cpu=${ctl_cpu_per_m}s/M (loop thread ${loop_cpu_per_m}s/M) wire=${wire_per_occ}B/occ fsync every ${fsync_ms}ms"
	[ "$stored" = "$acked" ] || echo "bench-controller: WARNING stored $stored != acked $acked" >&2
	echo "== raw baseline, round $r: $bytes_in bytes over $AGENTS connections, fdatasync every $fsync_ms ms"
	"$RAW" "$work/raw.bin" "$bytes_in" "$AGENTS" "$fsync_ms" | tee "$work/raw.txt"
	settle
	echo "== the same with direct writes"
	"$RAW" "$work/raw.bin" "$bytes_in" "$AGENTS" "$fsync_ms" direct | tee "$work/rawd.txt"
	settle
	echo "== serial raw baseline, round $r: the same, one thread waiting for each fdatasync"
	"$RAW" "$work/raw.bin" "$bytes_in" "$AGENTS" "$fsync_ms" serial | tee "$work/raws.txt"
	settle
	rawb_bps=$(sed -n 's/.*bytes_per_s=\([0-9]*\).*/\1/p' "$work/raw.txt")
	rawd_bps=$(sed -n 's/.*bytes_per_s=\([0-9]*\).*/\1/p' "$work/rawd.txt")
	raw_bps=$((rawb_bps > rawd_bps ? rawb_bps : rawd_bps)) # the faster writer is the limit
	raw_occ_s=$(awk -v r="$raw_bps" -v w="$wire_per_occ" 'BEGIN {printf "%.0f", r / w}')
	ratio=$(awk -v a="$acked_s" -v r="$raw_occ_s" 'BEGIN {printf "%.0f", 100 * a / r}')
	raws_bps=$(sed -n 's/.*bytes_per_s=\([0-9]*\).*/\1/p' "$work/raws.txt")
	raws_occ_s=$(awk -v r="$raws_bps" -v w="$wire_per_occ" 'BEGIN {printf "%.0f", r / w}')
	ratios=$(awk -v a="$acked_s" -v r="$raws_occ_s" 'BEGIN {printf "%.0f", 100 * a / r}')
	# one line per round: acked/s first (the sort key), then everything the table needs
	echo "$acked_s $ratio $raw_occ_s $raw_bps $wire_per_occ $acked $submitted $dropped $stored $submit_s $ctl_cpu_per_m $loop_cpu_per_m $fsyncs $fsync_ms $ratios $raws_occ_s $raws_bps $rawb_bps $rawd_bps" >>"$work/rounds"
}
ROUNDS=${ROUNDS:-5}
: >"$work/rounds"
for r in $(seq 1 "$ROUNDS"); do ingest_round "$r"; done
read -r acked_s ratio raw_occ_s raw_bps wire_per_occ acked submitted dropped stored submit_s \
	ctl_cpu_per_m loop_cpu_per_m fsyncs fsync_ms ratios raws_occ_s raws_bps rawb_bps rawd_bps \
	< <(sort -n "$work/rounds" | sed -n "$(((ROUNDS + 1) / 2))p")
ratio=$(awk '{print $2}' "$work/rounds" | sort -n | sed -n "$(((ROUNDS + 1) / 2))p")
ratios=$(awk '{print $15}' "$work/rounds" | sort -n | sed -n "$(((ROUNDS + 1) / 2))p")
all_acked=$(awk '{printf "%s%s", sep, $1; sep=" / "}' "$work/rounds")
all_ratio=$(awk '{printf "%s%s %%", sep, $2; sep=" / "}' "$work/rounds")
all_raw=$(awk '{printf "%s%s", sep, $3; sep=" / "}' "$work/rounds")
all_ratios=$(awk '{printf "%s%s %%", sep, $15; sep=" / "}' "$work/rounds")
all_raws=$(awk '{printf "%s%s", sep, $16; sep=" / "}' "$work/rounds")
all_rawbd=$(awk '{printf "%s%.0f/%.0f", sep, $18 / 1e6, $19 / 1e6; sep=" · "}' "$work/rounds")
loop_max=$(awk -v s="$loop_cpu_per_m" 'BEGIN {printf "%.0f", 1e6 / s}')

if [ -n "${INGEST_ONLY:-}" ]; then # INGEST_ONLY=1: section 1 only, no table written
	echo "median: $acked_s acked/s; ÷ practical limit $ratio % ($all_ratio); ÷ serial $ratios % ($all_ratios)"
	echo "practical limit, page-cache/direct MB/s per round: $all_rawbd"
	exit 0
fi

# ---- 2. end-to-end latency ------------------------------------------------------------------
lat_run() { # lat_run NAME [--batch-ms N]
	local name=$1
	shift
	start_ctl "$name" --stats-interval 1h
	"$LOADGEN" --controller "127.0.0.1:$PORT" --agents "$AGENTS" --rate "$LAT_RATE" \
		--duration "$LAT_DURATION" --json-summary "$@" >"$work/$name.json" 2>/dev/null
	stop_ctl "$name"
	cat "$work/$name.json"
}
echo "== latency: $AGENTS agents, $LAT_RATE/s for $LAT_DURATION s, batch time $BATCH_MS ms"
lat_run lat --batch-ms "$BATCH_MS"
echo "== latency: same, client default batch time"
lat_run latdef

# ---- 3. idle agents' memory -----------------------------------------------------------------
echo "== idle: $IDLE_AGENTS agents connected for $IDLE_SECS s"
start_ctl idle --stats-interval 1s
sleep 1
rss0=$(rss_kib "$cpid")
"$LOADGEN" --controller "127.0.0.1:$PORT" --agents "$IDLE_AGENTS" --rate 0 \
	--duration "$IDLE_SECS" --json-summary >"$work/idle.json" 2>"$work/idle-loadgen.log" &
lpid=$!
connected=0
for _ in $(seq 1 $((IDLE_SECS * 10))); do
	connected=$(stat_field "$work/idle.log" connections)
	[ "${connected:-0}" -ge "$IDLE_AGENTS" ] && break
	sleep 0.1
done
sleep 2 # settle: every Hello answered
rss1=$(rss_kib "$cpid")
connected=$(stat_field "$work/idle.log" connections)
wait "$lpid" || true
stop_ctl idle
per_agent=$(awk -v a="$rss0" -v b="$rss1" -v n="$connected" 'BEGIN {printf "%.2f", (b - a) / n}')
echo "controller VmRSS ${rss0} -> ${rss1} KiB with $connected agents: $per_agent KiB/agent"

# baseline: an accept-only listener holding as many bare connections
cat >"$work/listener.py" <<'EOF'
import os, socket, sys, time
n, port = int(sys.argv[1]), int(sys.argv[2])
ls = socket.socket()
ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(("127.0.0.1", port)); ls.listen(4096)
def rss():
    return int([l.split()[1] for l in open("/proc/self/status") if l.startswith("VmRSS")][0])
held = [None] * n  # preallocated: the list does not grow while connections arrive
print("ready", rss(), flush=True)
for i in range(n):
    held[i] = ls.accept()[0]
print("held", rss(), flush=True)
time.sleep(3600)
EOF
cat >"$work/dialer.py" <<'EOF'
import socket, sys, time
n, port = int(sys.argv[1]), int(sys.argv[2])
socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(n)]
time.sleep(float(sys.argv[3]))
EOF
python3 "$work/listener.py" "$IDLE_AGENTS" "$PORT" >"$work/listener.out" &
bpid=$!
wait_ready "$work/listener.out" "^ready"
python3 "$work/dialer.py" "$IDLE_AGENTS" "$PORT" 30 &
dpid=$!
wait_ready "$work/listener.out" "^held"
kill "$dpid" "$bpid" 2>/dev/null || true
wait "$dpid" "$bpid" 2>/dev/null || true
brss0=$(awk '/^ready/ {print $2}' "$work/listener.out")
brss1=$(awk '/^held/ {print $2}' "$work/listener.out")
bper=$(awk -v a="$brss0" -v b="$brss1" -v n="$IDLE_AGENTS" 'BEGIN {printf "%.2f", (b - a) / n}')
echo "accept-only listener VmRSS ${brss0} -> ${brss1} KiB: $bper KiB/connection"

# ---- 4. the wire check ----------------------------------------------------------------------
echo "== wire check"
"$BUILD/tests/tapio-wirebench" | tee "$work/wire.txt"
wire() { # wire VARIANT: "best / median"
	awk -v v="$1" '$1 == v {print $3 " / " $5}' "$work/wire.txt"
}

{
	echo "| metric | tapio-controller | baseline | target |"
	echo "|---|---|---|---|"
	echo "| durable ingest, $AGENTS agents, fsync always (occurrences/s acked; median of $ROUNDS rounds) | $acked_s ($acked of $submitted acked, $dropped dropped by the clients' queue bound, $stored stored; loadgen at rate $RATE, window $WINDOW B, submitted $submit_s/s for $DURATION s); rounds: $all_acked | raw TCP → file, practical limit: $raw_occ_s ($raw_bps B/s ÷ $wire_per_occ B/occ); rounds: $all_raw | ≥ 500k/s and ≥ 50 % of raw |"
	echo "| controller ÷ raw baseline, practical limit (median of the per-round ratios) | $ratio % (rounds: $all_ratio) | page-cache / direct writes, MB/s per round: $all_rawbd | ≥ 50 % |"
	echo "| controller ÷ serial raw baseline (one thread waits for each fdatasync) | $ratios % (rounds: $all_ratios) | serial raw: $raws_occ_s ($raws_bps B/s); rounds: $all_raws | – |"
	echo "| controller CPU per million occurrences (s, all threads) | $ctl_cpu_per_m | – | – |"
	echo "| event-loop thread CPU per million (s) → rate one dedicated core allows | $loop_cpu_per_m → $loop_max/s | – | – |"
	echo "| fsyncs during the run (cadence) | $fsyncs (every $fsync_ms ms) | same cadence | – |"
	echo "| latency creation → durable Ack, $LAT_RATE/s, batch time $BATCH_MS ms (p50 / p99 / max ms) | $(json "$work/lat.json" latency_p50_ms) / $(json "$work/lat.json" latency_p99_ms) / $(json "$work/lat.json" latency_max_ms) | – | p99 < 50 ms |"
	echo "| same, client default batch time 200 ms (p50 / p99 / max ms) | $(json "$work/latdef.json" latency_p50_ms) / $(json "$work/latdef.json" latency_p99_ms) / $(json "$work/latdef.json" latency_max_ms) | – | – |"
	echo "| RSS with $connected idle agents (VmRSS KiB before → after) | $rss0 → $rss1 | accept-only listener: $brss0 → $brss1 | – |"
	echo "| RSS per idle agent (KiB) | $per_agent | $bper per bare connection | < 16 KB |"
	echo "| EventBatch check per occurrence, 512-occurrence batch (ns, best / median of 21 rounds; Context last: $(wire check-ctx9)) | $(wire check) | protobuf-c unpack + occ_from_proto: $(wire generic) | – |"
} | tee "$BUILD/bench/controller.md"
