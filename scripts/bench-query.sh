#!/usr/bin/env bash
# Dashboard query benchmarks (figures go to docs/benchmarks.md, "Queries"):
#  1. tapio-storegen writes RECORDS occurrences (default 10,000,000) from NODES nodes (1,000)
#     spread over the last 24 h into a fresh store, and the same rows into SQLite (indexes
#     on (ts), (type, node, ts), (node, ts), (severity, ts)); both sizes on disk;
#  2. three queries, N timed runs each (default 200) after 5 warm-up runs, p50/p99:
#     (a) /v1/summary?by=type&bucket=1h&since=24h, (b) /v1/occurrences?type=T&node=N&limit=100,
#     (c) the page after following DEEP (50) cursors of an unfiltered query, first in process:
#     Tapio (tests/bench/querybench: api_handle(), the function the HTTP server calls, on a
#     store + aggregate opened in that process, so the JSON is byte for byte the API's) and
#     SQLite (GROUP BY type + strftime hour; WHERE type AND node ORDER BY ts DESC LIMIT 100;
#     keyset WHERE ts < ? ORDER BY ts DESC LIMIT 100; each run builds the JSON document the
#     API would return from the stored JSON rows). "Faster than SQLite" is judged in process
#     against in process, p50 and p99 both;
#  3. the real tapio-controller starts on that store: time to "ready" (store open + the
#     aggregate rebuild from every record header); COLD=1 first evicts the store's files
#     from the page cache (posix_fadvise DONTNEED, nothing else's);
#  4. the same queries over HTTP (tests/bench/httpbench, one keep-alive connection), plus
#     GET /v1/status for the bare round trip; the in-process bodies of (b) and (c) must equal
#     the HTTP ones byte for byte;
#  5. ingest under query load: tapio-loadgen (100 agents, RATE/s, LOAD_S s) alone, then
#     while httpbench hammers (a)+(b) in a loop; acked/s of both and their ratio.
# Prints a markdown table and writes it to build/bench/query.md. REUSE=1 keeps the data of
# an earlier run with the same RECORDS and NODES (in $BUILD/bench/query-data).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD_DIR:-build}
RECORDS=${RECORDS:-10000000}
NODES=${NODES:-1000}
N=${N:-200}
DEEP=${DEEP:-50}
RATE=${RATE:-2000000} # offered: more than the controller takes, acked/s is its capacity
LOAD_S=${LOAD_S:-10}
REUSE=${REUSE:-0}
COLD=${COLD:-0}
BUDGET=${BUDGET:-30} # seconds per query: slow ones stop sampling early (n= says how many)
DATA=${DATA_DIR:-$BUILD/bench/query-data}
TYPE=kernel.network.connection_refused
NODE=node-0042

cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=${BUILD_TYPE:-RelWithDebInfo} >/dev/null
cmake --build "$BUILD" -j"$(nproc)" --target tapio-controller tapio-loadgen tapio-storegen \
	tapio-httpbench tapio-querybench >/dev/null
mkdir -p "$BUILD/bench"
work=$(mktemp -d /tmp/tapio-benchq-XXXXXX)
cpid=""
cleanup() {
	[ -n "$cpid" ] && kill -TERM "$cpid" 2>/dev/null && wait "$cpid" 2>/dev/null
	rm -rf "$work" "$DATA/run" "$DATA/run-inproc"
}
trap cleanup EXIT

CTL="$BUILD/bin/tapio-controller"
LOADGEN="$BUILD/bin/tapio-loadgen"
STOREGEN="$BUILD/bin/tapio-storegen"
HB="$BUILD/tests/tapio-httpbench"
QB="$BUILD/tests/tapio-querybench"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
now_ms() { date +%s%3N; }
field() { sed -n "s/.* $1=\([0-9.]*\).*/\1/p"; } # field NAME <<<"line" -> value

# ---- 1. data -------------------------------------------------------------------------------
if [ "$REUSE" = 1 ] && [ "$(cat "$DATA/params" 2>/dev/null)" = "$RECORDS $NODES" ]; then
	echo "== reusing $DATA ($(cat "$DATA/generated"))"
else
	rm -rf "$DATA"
	mkdir -p "$DATA"
	echo "== generating $RECORDS occurrences from $NODES nodes over 24 h (store + SQLite)"
	t0=$(now_ms)
	"$STOREGEN" --data-dir "$DATA/store" --records "$RECORDS" --nodes "$NODES" --span 24h \
		--sqlite "$DATA/occ.db" 2> >(grep -v '\[store\] sealed' >&2) | tee "$DATA/generated"
	echo "   took $(( ($(now_ms) - t0) / 1000 )) s"
	echo "$RECORDS $NODES" >"$DATA/params"
fi
gen=$(cat "$DATA/generated")
store_s=$(sed -n 's/.*store_s \([0-9.]*\).*/\1/p' <<<"$gen")
sqlite_s=$(sed -n 's/.*sqlite_s \([0-9.]*\).*/\1/p' <<<"$gen")
store_du=$(du -sb "$DATA/store" | cut -f1)
sqlite_du=$(du -sb "$DATA/occ.db" | cut -f1)
mib() { awk -v b="$1" 'BEGIN {printf "%.0f", b / 1048576}'; }

# Stores are opened on copies, so neither the ingest phase nor sealing at open ever changes
# the generated data (REUSE): hard links for files the store only ever replaces by rename (or
# reads: sealed segments are mapped read-only), a real copy of the active (appended) segment
# and of LOCK.
store_copy() { # store_copy DEST
	rm -rf "$1"
	cp -al "$DATA/store" "$1"
	local f
	for f in LOCK "$(cd "$DATA/store" && ls seg-*.tseg | sort | tail -1)"; do
		rm -f "$1/$f"
		cp "$DATA/store/$f" "$1/$f"
	done
}
qa="/v1/summary?by=type&bucket=1h&since=24h"
qb="/v1/occurrences?type=$TYPE&node=$NODE&limit=100"
qc="/v1/occurrences?limit=100"

# ---- 2. Tapio in-process and SQLite (before the controller runs: nothing else competes) -----
echo "== in-process: Tapio's query engine (api_handle) and SQLite (n=$N, deep page after $DEEP pages)"
mkdir -p "$work/inproc-ab" "$work/inproc-c" "$work/http-ab" "$work/http-c"
store_copy "$DATA/run-inproc"
"$QB" --data-dir "$DATA/run-inproc" -n "$N" --budget "$BUDGET" --save "$work/inproc-ab" \
	"$qa" "$qb" | tee "$work/inproc.txt"
"$QB" --data-dir "$DATA/run-inproc" -n "$N" --budget "$BUDGET" --save "$work/inproc-c" \
	--deep "$DEEP" "$qc" | tee -a "$work/inproc.txt"
rm -rf "$DATA/run-inproc"
"$HB" --sqlite "$DATA/occ.db" -n "$N" --budget "$BUDGET" --deep "$DEEP" --type "$TYPE" --node "$NODE" |
	tee "$work/sqlite.txt"

# ---- 3. controller start -------------------------------------------------------------------
run="$DATA/run"
store_copy "$run"
# PORT_BASE=P: the API on P and ingest on P+1 (e.g. on a machine shared with other benches)
hport=${PORT_BASE:-$(free_port)}
lport=$([ -n "${PORT_BASE:-}" ] && echo $((PORT_BASE + 1)) || free_port)
if [ "$COLD" = 1 ]; then # evict only the store's files from the page cache (not the machine's)
	sync
	python3 - "$run" <<'PY'
import os, sys
for f in os.listdir(sys.argv[1]):
    fd = os.open(os.path.join(sys.argv[1], f), os.O_RDONLY)
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    os.close(fd)
PY
fi
tls=$("$CTL" --help 2>&1 | grep -q -- --plaintext && echo --plaintext || true)
t0=$(now_ms)
"$CTL" --data-dir "$run" --http "127.0.0.1:$hport" --listen "127.0.0.1:$lport" \
	--fsync always $tls 2>"$work/controller.log" &
cpid=$!
for _ in $(seq 1 6000); do
	grep -qs "tapio-controller ready" "$work/controller.log" && break
	kill -0 "$cpid" 2>/dev/null || { cat "$work/controller.log" >&2; exit 1; }
	sleep 0.05
done
start_ms=$(($(now_ms) - t0))
cache=$([ "$COLD" = 1 ] && echo "cold page cache" || echo "warm page cache")
echo "== controller ready after $start_ms ms ($cache)"

# ---- 4. queries over HTTP ------------------------------------------------------------------
echo "== over HTTP (n=$N, deep page after $DEEP pages)"
"$HB" --port "$hport" -n "$N" --budget "$BUDGET" --save "$work/http-ab" "$qa" "$qb" /v1/status |
	tee "$work/http.txt"
"$HB" --port "$hport" -n "$N" --budget "$BUDGET" --save "$work/http-c" --deep "$DEEP" "$qc" |
	tee -a "$work/http.txt"
# the in-process bodies must be the API's, byte for byte ((a) echoes the time of the request)
same() { cmp -s "$1" "$2" && echo "✔ identical ($(wc -c <"$1") bytes)" || echo "✘ DIFFERENT"; }
same_b=$(same "$work/inproc-ab/1.body" "$work/http-ab/1.body")
same_c=$(same "$work/inproc-c/0.body" "$work/http-c/0.body")
echo "   in-process body = HTTP body: (b) $same_b, (c) $same_c"
h() { grep -F "http $1" "$work/http.txt" | head -1 | field "$2"; }
i() { grep -F "inproc $1" "$work/inproc.txt" | head -1 | field "$2"; }
s() { grep -F "sqlite $1" "$work/sqlite.txt" | head -1 | field "$2"; }
ha50=$(h "$qa" p50_ms) ha99=$(h "$qa" p99_ms)
hb50=$(h "$qb" p50_ms) hb99=$(h "$qb" p99_ms)
hc50=$(h "deep:$qc" p50_ms) hc99=$(h "deep:$qc" p99_ms)
hs50=$(h /v1/status p50_ms) hs99=$(h /v1/status p99_ms)
ia50=$(i "$qa" p50_ms) ia99=$(i "$qa" p99_ms) iacpu=$(i "$qa" cpu_p50_ms)
ib50=$(i "$qb" p50_ms) ib99=$(i "$qb" p99_ms) ibcpu=$(i "$qb" cpu_p50_ms)
ic50=$(i "deep:$qc" p50_ms) ic99=$(i "deep:$qc" p99_ms) iccpu=$(i "deep:$qc" cpu_p50_ms)
sa50=$(s summary p50_ms) sa99=$(s summary p99_ms) sacpu=$(s summary cpu_p50_ms)
sb50=$(s filtered p50_ms) sb99=$(s filtered p99_ms) sbcpu=$(s filtered cpu_p50_ms)
sc50=$(s deep p50_ms) sc99=$(s deep p99_ms) sccpu=$(s deep cpu_p50_ms)

# ---- 5. ingest under query load ------------------------------------------------------------
loadgen() {
	local out rc=0
	out=$("$LOADGEN" --controller "127.0.0.1:$lport" --agents 100 --rate "$RATE" \
		--duration "$LOAD_S" --node-prefix "$1" --json-summary 2>/dev/null) || rc=$?
	# exit 3 = not everything submitted was acked: the offered rate overran the clients'
	# memory bound and they dropped (and counted) the excess; acked/s is still the figure
	[ "$rc" = 0 ] || [ "$rc" = 3 ] || { echo "bench-query: loadgen failed ($rc)" >&2; exit 1; }
	sed -n 's/.*"acked_per_s":\([0-9.]*\).*/\1/p' <<<"$out"
}
echo "== ingest: $RATE/s offered by 100 agents for $LOAD_S s, alone"
alone=$(loadgen la)
echo "   acked/s $alone"
echo "== ingest while httpbench hammers (a)+(b)"
"$HB" --port "$hport" --duration $((LOAD_S + 3)) "$qa" "$qb" >"$work/hammer.txt" &
hpid=$!
sleep 0.5
loaded=$(loadgen lb)
wait "$hpid" || true
hammer=$(field per_s <"$work/hammer.txt")
echo "   acked/s $loaded, queries/s $hammer"
ratio=$(awk -v a="$alone" -v b="$loaded" 'BEGIN {printf "%.0f", (a > 0) ? 100 * b / a : 0}')

kill -TERM "$cpid"
wait "$cpid" || true
cpid=""

# ---- table ---------------------------------------------------------------------------------
verdict() { # verdict VALUE OP LIMIT
	awk -v v="$1" -v l="$3" -v op="$2" 'BEGIN {
		ok = (op == "<") ? (v < l) : (v >= l); print ok ? "✔" : "✘" }'
}
faster() { # faster OURS THEIRS -> "✔ 12.3× faster" / "✘ 4.5× slower"
	awk -v a="$1" -v b="$2" 'BEGIN {
		if (a < b) printf "✔ %.1f× faster", b / a; else printf "✘ %.1f× slower", a / b }'
}
vs_sqlite() { # vs_sqlite P50 P99 SQLITE_P50 SQLITE_P99: in process against in process, both
	local ok
	ok=$(awk -v a="$1" -v b="$2" -v c="$3" -v d="$4" 'BEGIN { print (a < c && b < d) ? "✔" : "✘" }')
	echo "$ok p50 $(faster "$1" "$3" | sed 's/^. //'), p99 $(faster "$2" "$4" | sed 's/^. //')"
}
{
	echo "Data: $RECORDS occurrences, $NODES nodes, 24 h. Store $(mib "$store_du") MiB on disk" \
		"(written in ${store_s} s), SQLite $(mib "$sqlite_du") MiB (${sqlite_s} s with indexes)." \
		"Controller ready after $start_ms ms ($cache)."
	echo
	echo "Rule: \"faster than SQLite\" compares Tapio in-process with SQLite in-process (both build the" \
		"response's JSON document in the calling thread, no network), p50 and p99 both; the HTTP" \
		"column is the same Tapio query through the real controller, for scale."
	echo
	echo "| query (p50 / p99 ms, n=$N, fewer past ${BUDGET} s) | Tapio over HTTP | Tapio in-process | SQLite in-process | target | verdict (in-process vs in-process) |"
	echo "|---|---|---|---|---|---|"
	echo "| (a) summary by type, 1 h buckets, 24 h | $ha50 / $ha99 | $ia50 / $ia99 | $sa50 / $sa99 |" \
		"HTTP p99 < 20 ms | $(verdict "$ha99" "<" 20) target; $(vs_sqlite "$ia50" "$ia99" "$sa50" "$sa99") |"
	echo "| (b) type + node, first page of 100 | $hb50 / $hb99 | $ib50 / $ib99 | $sb50 / $sb99 |" \
		"HTTP p99 < 10 ms | $(verdict "$hb99" "<" 10) target; $(vs_sqlite "$ib50" "$ib99" "$sb50" "$sb99") |"
	echo "| (c) unfiltered page $((DEEP + 1)) (cursor) | $hc50 / $hc99 | $ic50 / $ic99 | $sc50 / $sc99 |" \
		"faster than SQLite | $(vs_sqlite "$ic50" "$ic99" "$sc50" "$sc99") |"
	echo "| for scale: GET /v1/status (HTTP round trip floor) | $hs50 / $hs99 | – | – | – | |"
	echo "| ingest acked/s, $RATE/s offered: alone / under (a)+(b) load | $alone / $loaded ($ratio %) |" \
		"– | – | ≥ 80 % | $(verdict "$ratio" ">=" 80) (queries/s meanwhile: $hammer) |"
	echo
	echo "CPU time per run (thread CPU time, p50 ms; not inflated by waiting for a shared core):" \
		"(a) Tapio $iacpu / SQLite $sacpu, (b) Tapio $ibcpu / SQLite $sbcpu," \
		"(c) Tapio $iccpu / SQLite $sccpu. In-process body = HTTP body: (b) $same_b, (c) $same_c."
} | tee "$BUILD/bench/query.md"
