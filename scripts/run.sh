#!/usr/bin/env bash
# Quick start: installs what is missing, builds, and runs Tapio on this machine in the
# foreground: a tapio-controller with the embedded store and a tapio-agent streaming to it
# (and printing occurrences as JSON lines). Ctrl-C stops both cleanly. Needs root (BPF).
# Everything goes under ./run/ (RUN_DIR overrides); ports with TAPIO_LISTEN / TAPIO_HTTP.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh
RUN_DIR=${RUN_DIR:-$PWD/run}
LISTEN=${TAPIO_LISTEN:-127.0.0.1:7070}
HTTP=${TAPIO_HTTP:-127.0.0.1:7080}
node=${TAPIO_NODE_NAME:-$(hostname)}
mkdir -p "$RUN_DIR/controller" "$RUN_DIR/agent"

http_args=()
if build/bin/tapio-controller --help 2>&1 | grep -q -- '--http'; then
	http_args=(--http "$HTTP")
fi
build/bin/tapio-controller --listen "$LISTEN" "${http_args[@]}" \
	--data-dir "$RUN_DIR/controller" 2>"$RUN_DIR/controller.log" &
ctl=$!
trap 'kill -TERM $ctl 2>/dev/null; wait $ctl 2>/dev/null' EXIT
for _ in $(seq 1 100); do
	grep -q "tapio-controller ready" "$RUN_DIR/controller.log" 2>/dev/null && break
	kill -0 $ctl 2>/dev/null || { cat "$RUN_DIR/controller.log" >&2; exit 1; }
	sleep 0.1
done

cat <<MSG
Tapio is running on node '$node'.
  controller:   $LISTEN  (log: $RUN_DIR/controller.log, store: $RUN_DIR/controller)
MSG
((${#http_args[@]})) && cat <<MSG
  dashboard:    http://$HTTP/        API: http://$HTTP/v1/status  metrics: http://$HTTP/metrics
  CLI:          build/bin/tapio --controller http://$HTTP recent
MSG
cat <<MSG
  stored data:  build/bin/tapio-controller --dump $RUN_DIR/controller --json
  agent files:  $RUN_DIR/agent/occurrences.jsonl   (also printed below; log: $RUN_DIR/agent.log)
Provoke something, e.g.:  bash -c 'echo > /dev/tcp/127.0.0.1/1'   or   sh -c 'kill -9 \$\$'
Stop with Ctrl-C.
MSG
build/bin/tapio-agent --sink stdout --sink file --sink controller --controller "$LISTEN" \
	--data-dir "$RUN_DIR/agent" --node-name "$node" 2> >(tee "$RUN_DIR/agent.log" >&2) || true
