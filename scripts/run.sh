#!/usr/bin/env bash
# Quick start: installs what is missing, builds, and runs Tapio on this machine in the
# foreground (Ctrl-C stops it cleanly). Needs root for the agent's BPF programs.
# Everything goes under ./run/ (RUN_DIR overrides).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh
RUN_DIR=${RUN_DIR:-$PWD/run}
mkdir -p "$RUN_DIR/agent"
node=${TAPIO_NODE_NAME:-$(hostname)}

cat <<MSG
Tapio is starting on node '$node'.
  occurrences (JSON lines): $RUN_DIR/agent/occurrences.jsonl   (also printed below)
  agent log:                $RUN_DIR/agent.log
Provoke something, e.g.:  bash -c 'echo > /dev/tcp/127.0.0.1/1'   or   sh -c 'kill -9 \$\$'
Stop with Ctrl-C.
MSG
exec build/bin/tapio-agent --sink stdout --sink file --data-dir "$RUN_DIR/agent" \
	--node-name "$node" 2> >(tee "$RUN_DIR/agent.log" >&2)
