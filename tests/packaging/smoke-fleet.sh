#!/bin/bash
# smoke-fleet.sh ROOT LOG_DIR VERSION WITH_AGENT CONTROLLER_ARGS...: the installed packages
# working together inside the chroot ROOT. Called by test-debs.sh under
# `unshare --net --pid --fork --kill-child`: the ports are those of a private network
# namespace, never the host's, and nothing it starts outlives it (pid namespace).
#   1. tapio-controller as the postinst-created user tapio with CONTROLLER_ARGS (the default
#      arguments of the controller image); the packaged CLI's `tapio status` must answer.
#   2. WITH_AGENT=1: tapio-agent with the packaged /etc/tapio/agent.yaml streaming to it;
#      a connect to a closed port must come back from the controller through
#      `tapio recent` as kernel.network.connection_refused of this node.
#   3. SIGTERM stops both cleanly (exit 0, "stopped cleanly").
# Exit 0 on success; otherwise a message on stderr and a non-zero exit.
set -u

root=$1 logs=$2 version=$3 with_agent=$4
shift 4
node=tapio-pkg-smoke
api=http://127.0.0.1:7080
ctl_pid="" agent_pid=""

die() {
	printf 'smoke: %s\n' "$*" >&2
	exit 1
}
in_root() { chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LC_ALL=C.UTF-8 "$@"; }
cleanup() {
	local p
	for p in $agent_pid $ctl_pid; do
		kill -KILL "$p" 2>/dev/null && wait "$p" 2>/dev/null
	done
}
trap cleanup EXIT
# stop PID NAME LOG: SIGTERM, exit 0, "stopped cleanly" in its log.
stop() {
	local rc=0
	kill -TERM "$1" || die "$2 already gone (log: $3)"
	wait "$1" || rc=$?
	[ "$rc" -eq 0 ] || die "$2 exited $rc after SIGTERM (log: $3)"
	grep -q 'stopped cleanly' "$3" || die "$2 did not log 'stopped cleanly' (log: $3)"
	printf 'smoke: ok: %s stopped cleanly on SIGTERM\n' "$2"
}

ip link set lo up || die "ip link set lo up failed"

# Background jobs are plain commands, not in_root: $! must be the daemon's own pid (chroot, env
# and setpriv exec into it), not a subshell's.
chroot "$root" /usr/bin/env -i PATH=/usr/bin:/bin LC_ALL=C.UTF-8 \
	setpriv --reuid=tapio --regid=tapio --clear-groups /usr/bin/tapio-controller "$@" \
	>"$logs/controller.log" 2>&1 &
ctl_pid=$!
for i in $(seq 50); do
	in_root tapio --controller "$api" status >"$logs/status.out" 2>&1 && break
	kill -0 "$ctl_pid" 2>/dev/null || die "controller exited (log: $logs/controller.log)"
	[ "$i" -lt 50 ] || die "tapio status got no answer in 10 s: $(tail -n 1 "$logs/status.out")"
	sleep 0.2
done
grep -qE "^version +$version" "$logs/status.out" || die "tapio status lacks version $version"
printf 'smoke: ok: controller runs as tapio (%s); tapio status answers\n' "$*"

if [ "$with_agent" = 1 ]; then
	chroot "$root" /usr/bin/env -i PATH=/usr/bin:/bin LC_ALL=C.UTF-8 TAPIO_NODE_NAME=$node \
		/usr/bin/tapio-agent --config /etc/tapio/agent.yaml \
		--sink controller --controller 127.0.0.1:7070 >"$logs/agent.out" 2>"$logs/agent.log" &
	agent_pid=$!
	for i in $(seq 75); do
		grep -q 'tapio-agent ready' "$logs/agent.log" && break
		kill -0 "$agent_pid" 2>/dev/null || die "agent exited: $(tail -n 3 "$logs/agent.log")"
		[ "$i" -lt 75 ] || die "agent not ready in 15 s (log: $logs/agent.log)"
		sleep 0.2
	done
	in_root bash -c 'echo >/dev/tcp/127.0.0.1/1' 2>/dev/null &&
		die "connect to 127.0.0.1:1 succeeded, want refused"
	for i in $(seq 50); do
		in_root tapio --controller "$api" --json recent --type connection_refused \
			--node "$node" >"$logs/recent.out" 2>&1 &&
			grep -q '"dst_port":1[,}]' "$logs/recent.out" && break
		[ "$i" -lt 50 ] || die "refused connect not in tapio recent after 10 s (agent log: $logs/agent.log)"
		sleep 0.2
	done
	printf 'smoke: ok: agent -> controller -> tapio recent: %s\n' \
		"$(grep -o '"type":"kernel.network.connection_refused"' "$logs/recent.out" | head -n 1)"
	stop "$agent_pid" tapio-agent "$logs/agent.log"
	agent_pid=""
fi

stop "$ctl_pid" tapio-controller "$logs/controller.log"
ctl_pid=""
