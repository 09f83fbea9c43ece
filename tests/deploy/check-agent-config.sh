#!/usr/bin/env bash
# deploy/config/agent.yaml (the packaged /etc/tapio/agent.yaml) must be accepted by this
# build's tapio-agent, as shipped and with its commented examples switched on (ctest
# test_deploy_agent_config). A config error exits 2 before anything is loaded; as root with
# BTF the agent starts, is stopped with SIGINT after 3 s and must exit 0; without the rights
# to load BPF it exits 1 after the config was accepted, which also passes (said loudly).
# The controller address is pointed at 127.0.0.1:1 (refused on loopback): nothing leaves
# this machine. A deliberately broken copy must exit 2 (negative self-test).
# Ends with "N passed, N failed".
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
: "${TAPIO_BIN_DIR:=$root/build/bin}"
agent=$TAPIO_BIN_DIR/tapio-agent
conf=$root/deploy/config/agent.yaml
[ -x "$agent" ] || { echo "missing $agent (build first; set TAPIO_BIN_DIR)" >&2; exit 1; }
scratch=$(mktemp -d /tmp/tapio-agent-config.XXXXXX)
trap 'rm -rf "$scratch"' EXIT
passed=0
failed=0

run() { # run NAME FILE EXPECT(ok|refused)
	local name=$1 file=$2 expect=$3 rc
	mkdir -p "$scratch/data-$name"
	timeout --preserve-status -k 5 -s INT 3 "$agent" --config "$file" \
		--data-dir "$scratch/data-$name" --stats-interval 0 >/dev/null 2>"$scratch/$name.err"
	rc=$?
	local verdict=fail
	case "$expect:$rc" in
	ok:0) verdict=pass ;;
	ok:1) verdict=pass
		echo "  note: $name: agent exited 1 after accepting the config (no BPF rights here?): $(grep -m1 -i 'cannot\|error' "$scratch/$name.err")" ;;
	refused:2) verdict=pass
		echo "  ok: $name refused: $(head -1 "$scratch/$name.err")" ;;
	esac
	if [ $verdict = pass ]; then
		passed=$((passed + 1)); echo "PASS $name (exit $rc)"
	else
		failed=$((failed + 1)); echo "FAIL $name (exit $rc, expected $expect)"
		sed 's/^/    /' "$scratch/$name.err" | tail -5
	fi
}

run "as shipped" "$conf" ok
# every commented example on: '# key: v' / '#   key: v' lines after the first key line
sed -E 's/^# (controller:|storage:|container:)$/\1/; s/^#   ([a-z_]+:)/  \1/; s/^sinks: \[file\]/sinks: [file, controller]/; s/tapio-controller\.example:7070/127.0.0.1:1/' \
	"$conf" >"$scratch/examples.yaml"
grep -q '^controller:' "$scratch/examples.yaml" && grep -q '^  address: 127.0.0.1:1' "$scratch/examples.yaml" ||
	{ echo "FAIL examples: could not switch the commented examples on (update this script)"; failed=$((failed + 1)); }
run "examples switched on" "$scratch/examples.yaml" ok
sed 's/^log_level: info/log_level: loud/' "$conf" >"$scratch/broken.yaml"
run "self-test: broken copy" "$scratch/broken.yaml" refused
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
