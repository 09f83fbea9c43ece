#!/usr/bin/env bash
# Config distribution benchmark (figures go to docs/benchmarks.md, "Configuration"):
# AGENTS simulated agents (tapio-loadgen, default 1000; each answers ConfigPush with
# ConfigApplied after checking the hash) on one real tapio-controller started with --profile.
# Once every agent runs generation 1, the profile is changed ROUNDS times (default 3) by
#   a) rewriting the file (temp file + rename, no signal: the directory watch + 200 ms
#      debounce), and, as the baseline in the same run,
#   b) writing it and sending SIGHUP (no watch, no debounce).
# For each change: time from the change to every agent's ConfigApplied at the controller
# (config.applied_at of GET /v1/agents, controller clock) → p50 / p99 / max, and the time to
# the reload that took effect (profile.loaded_at of GET /v1/config). Prints a markdown table and writes
# it to build/bench/config.md. No root needed.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD_DIR:-build}
AGENTS=${AGENTS:-1000}
ROUNDS=${ROUNDS:-3}
CTL="$BUILD/bin/tapio-controller"
LOADGEN="$BUILD/bin/tapio-loadgen"
[ -x "$CTL" ] && [ -x "$LOADGEN" ] || scripts/build.sh >/dev/null
mkdir -p "$BUILD/bench"
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
work=$(mktemp -d /tmp/tapio-bench-config-XXXXXX)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PORT=$(free_port)
HTTP=$(free_port)
API="http://127.0.0.1:$HTTP"

profile() { # profile WARNING_MS -> profile text with a per-node override
	cat <<EOF
version: 1
name: bench
defaults:
  storage: {warning_ms: $1}
overrides:
  - match: {node: "bench-00*"}
    network: {enabled: false}
EOF
}

profile 50 >"$work/profile.yaml"
"$CTL" --data-dir "$work/data" --listen "127.0.0.1:$PORT" --http "127.0.0.1:$HTTP" \
	--profile "$work/profile.yaml" --stats-interval 1h 2>"$work/controller.log" &
pids+=($!)
for _ in $(seq 1 100); do grep -q "ready: listening" "$work/controller.log" && break; sleep 0.1; done
grep -q "ready: listening" "$work/controller.log" || { cat "$work/controller.log" >&2; exit 1; }

"$LOADGEN" --controller "127.0.0.1:$PORT" --agents "$AGENTS" --rate 200 --duration 3600 \
	--node-prefix bench >"$work/loadgen.out" 2>"$work/loadgen.log" &
pids+=($!)

# wait_converged GENERATION TIMEOUT_S: every agent connected and applied GENERATION
wait_converged() {
	python3 - "$API" "$AGENTS" "$1" "$2" <<'EOF'
import json, sys, time, urllib.request
api, n, gen, timeout = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
end = time.time() + timeout
while time.time() < end:
    try:
        c = json.load(urllib.request.urlopen(api + "/v1/config", timeout=5))
        conv = c["convergence"]
        if c["generation"] == gen and conv["connected"] == n and conv["converged"] == n:
            sys.exit(0)
    except Exception:
        pass
    time.sleep(0.05)
print(f"bench-config: not converged on generation {gen} within {timeout}s", file=sys.stderr)
sys.exit(1)
EOF
}

# measure T0_NS LABEL: per-agent applied_at - T0 and reload time, one JSON line
measure() {
	python3 - "$API" "$1" "$2" <<'EOF'
import json, sys, urllib.request
from datetime import datetime
api, t0, label = sys.argv[1], int(sys.argv[2]), sys.argv[3]
def ns(s):
    # RFC 3339 with nanoseconds: seconds via datetime, the fraction exactly
    base, frac = s.rstrip("Z").split(".")
    sec = int(datetime.fromisoformat(base + "+00:00").timestamp())
    return sec * 10**9 + int(frac.ljust(9, "0")[:9])
agents = json.load(urllib.request.urlopen(api + "/v1/agents", timeout=10))["agents"]
cfg = json.load(urllib.request.urlopen(api + "/v1/config", timeout=10))
lat = sorted((ns(a["config"]["applied_at"]) - t0) / 1e6 for a in agents)
# the running profile's loaded_at: a later "unchanged" re-read (the file event after a
# SIGHUP) moves last_reload.at but not this
reload_ms = (ns(cfg["profile"]["loaded_at"]) - t0) / 1e6
pick = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))]
print(json.dumps({"label": label, "agents": len(lat), "reload_ms": reload_ms,
                  "p50_ms": pick(0.50), "p99_ms": pick(0.99), "max_ms": lat[-1]}))
EOF
}

wait_converged 1 120
echo "bench-config: $AGENTS agents converged on generation 1" >&2
gen=1
: >"$work/results.jsonl"
for r in $(seq 1 "$ROUNDS"); do
	# a) file change seen by the watch (editor-style: temp file + rename)
	gen=$((gen + 1))
	profile $((50 + gen)) >"$work/profile.yaml.new"
	t0=$(date +%s%N)
	mv "$work/profile.yaml.new" "$work/profile.yaml"
	wait_converged "$gen" 60
	measure "$t0" "file change" >>"$work/results.jsonl"
	# b) baseline: SIGHUP right after the write (no watch, no debounce)
	gen=$((gen + 1))
	profile $((50 + gen)) >"$work/profile.yaml.new"
	t0=$(date +%s%N)
	mv "$work/profile.yaml.new" "$work/profile.yaml"
	kill -HUP "${pids[0]}"
	wait_converged "$gen" 60
	measure "$t0" "SIGHUP" >>"$work/results.jsonl"
	sleep 0.5
done

python3 - "$work/results.jsonl" "$AGENTS" "$ROUNDS" >"$BUILD/bench/config.md" <<'EOF'
import json, sys, statistics
rows = [json.loads(l) for l in open(sys.argv[1])]
n, rounds = sys.argv[2], sys.argv[3]
print(f"| trigger ({n} agents, median of {rounds}) | change → reload (ms) | change → applied p50 (ms) | p99 (ms) | max (ms) |")
print("|---|---|---|---|---|")
for label in ("file change", "SIGHUP"):
    rs = [r for r in rows if r["label"] == label]
    med = lambda k: statistics.median(r[k] for r in rs)
    print(f"| {label} | {med('reload_ms'):.1f} | {med('p50_ms'):.1f} | {med('p99_ms'):.1f} | {med('max_ms'):.1f} |")
print()
print("rounds:")
for r in rows:
    print(f"- {r['label']}: reload {r['reload_ms']:.1f} ms, p50 {r['p50_ms']:.1f}, p99 {r['p99_ms']:.1f}, max {r['max_ms']:.1f} ({r['agents']} agents)")
EOF
cat "$BUILD/bench/config.md"
