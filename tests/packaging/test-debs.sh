#!/bin/bash
# test-debs.sh BUILD_DIR [SOURCE_DIR]: build the Debian packages with cpack, install them
# with apt-get into a fresh minimal Debian 12 root (debootstrap --variant=minbase) and check
# what landed: binaries run, conffiles in /etc/tapio, units, the controller's user and store,
# conffile preservation on reinstall, remove vs. purge. Then the static Dockerfile check.
#
# Needs root (chroot, mounts) and the Debian mirror; not root = skip (exit 77); root without
# a mirror = failure. The debootstrapped root is cached as a tarball in
# $TAPIO_DEBOOTSTRAP_CACHE (default /var/cache/tapio-debootstrap) together with the .debs apt
# downloaded, so only the first run on a machine pays for debootstrap (about 40 s).
#
# Environment: TAPIO_DEBIAN_MIRROR (default: this machine's apt mirror, else
# http://deb.debian.org/debian), TAPIO_DEBOOTSTRAP_CACHE, TAPIO_KEEP_ROOT=1 keeps the root.
set -euo pipefail

BUILD_DIR=$(cd "${1:?usage: test-debs.sh BUILD_DIR [SOURCE_DIR]}" && pwd)
SRC_DIR=$(cd "${2:-$(dirname "$0")/../..}" && pwd)
SUITE=bookworm
CACHE_DIR=${TAPIO_DEBOOTSTRAP_CACHE:-/var/cache/tapio-debootstrap}
CACHE_TAR=$CACHE_DIR/$SUITE-minbase.tar
APT_CACHE=$CACHE_DIR/apt-archives

say() { printf 'test-debs: %s\n' "$*"; }
fail() {
	printf 'test-debs: FAIL: %s\n' "$*" >&2
	exit 1
}

if [ "$(id -u)" -ne 0 ]; then
	say "SKIP: needs root (debootstrap, chroot, mount); run as root to test the packages"
	exit 77
fi
for tool in cpack dpkg-deb dpkg-shlibdeps debootstrap chroot mount flock tar unshare ip; do
	command -v "$tool" >/dev/null ||
		fail "$tool not found (apt-get install cmake dpkg-dev debootstrap iproute2; see scripts/setup.sh)"
done

# The mirror this machine's apt uses (deb822 or one-line sources), for debootstrap and apt.
host_mirror() {
	local uri
	uri=$(grep -hsE '^(URIs:|deb )' /etc/apt/sources.list.d/debian.sources \
		/etc/apt/sources.list 2>/dev/null |
		grep -v -- '-security' | grep -oE 'https?://[^ ]+/debian/?' | head -n 1 || true)
	printf '%s\n' "${uri:-http://deb.debian.org/debian}"
}
MIRROR=${TAPIO_DEBIAN_MIRROR:-$(host_mirror)}
MIRROR=${MIRROR%/}
SECURITY_MIRROR=${MIRROR%/debian}/debian-security

WORK=$(mktemp -d "${TMPDIR:-/tmp}/tapio-debs.XXXXXX")
ROOT=$WORK/root
START=$(date +%s)

cleanup() {
	local m
	for m in "$ROOT/sys" "$ROOT/var/cache/apt/archives" "$ROOT/proc"; do
		if mountpoint -q "$m" 2>/dev/null; then
			umount -R "$m" 2>/dev/null || umount -R -l "$m" || true
		fi
	done
	if [ "${TAPIO_KEEP_ROOT:-0}" = 1 ]; then
		say "root kept in $ROOT"
		return
	fi
	# Never rm -rf through a mount that failed to go away (it would empty the apt cache).
	if mountpoint -q "$ROOT/var/cache/apt/archives" 2>/dev/null ||
		mountpoint -q "$ROOT/proc" 2>/dev/null || mountpoint -q "$ROOT/sys" 2>/dev/null; then
		say "WARNING: mounts still present under $ROOT, not removing it"
		return
	fi
	rm -rf "$WORK"
}
trap cleanup EXIT

# 1. Packages: cpack into a private directory (a concurrent cpack in BUILD_DIR is unaffected).
say "cpack -G DEB in $BUILD_DIR"
(cd "$BUILD_DIR" && cpack -G DEB -B "$WORK/debs") >"$WORK/cpack.log" 2>&1 ||
	{ cat "$WORK/cpack.log" >&2
	  find "$WORK/debs" -name PreinstallOutput.log -exec tail -n 30 {} + >&2 2>/dev/null
	  fail "cpack -G DEB failed (its preinstall step builds the whole tree)"; }
mapfile -t DEBS < <(find "$WORK/debs" -maxdepth 1 -name 'tapio-*.deb' | sort)
[ "${#DEBS[@]}" -gt 0 ] || fail "cpack produced no tapio-*.deb"
for pkg in tapio-controller tapio-cli; do
	ls "$WORK/debs/${pkg}"_*.deb >/dev/null 2>&1 || fail "no $pkg package"
done
HAVE_AGENT=0
if ls "$WORK/debs"/tapio-agent_*.deb >/dev/null 2>&1; then
	HAVE_AGENT=1
else
	say "NOTE: no tapio-agent package (the agent was not built here: no BPF toolchain)"
fi
for d in "${DEBS[@]}"; do
	say "built $(basename "$d"): Depends: $(dpkg-deb -f "$d" Depends)"
	[ -n "$(dpkg-deb -f "$d" Depends)" ] || fail "$(basename "$d") has no Depends (dpkg-shlibdeps?)"
done

# 2. Static check of the container files against these packages.
"$SRC_DIR/tests/packaging/check-dockerfiles.sh" "$WORK/debs" "$SRC_DIR" ||
	fail "Dockerfile check"

# 3. A fresh minimal Debian root: cached tarball, or debootstrap (first run on a machine).
mkdir -p "$CACHE_DIR" "$APT_CACHE/partial"
(
	flock 9
	if [ ! -s "$CACHE_TAR" ]; then
		say "debootstrap --variant=minbase $SUITE from $MIRROR (first run, cached afterwards)"
		t0=$(date +%s)
		fresh=$CACHE_DIR/root.tmp.$$
		rm -rf "$fresh"
		debootstrap --variant=minbase "$SUITE" "$fresh" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 ||
			{ tail -n 20 "$WORK/debootstrap.log" >&2; rm -rf "$fresh"
			  fail "debootstrap from $MIRROR failed (mirror unreachable?)"; }
		rm -f "$fresh"/var/cache/apt/archives/*.deb
		tar -C "$fresh" -cf "$CACHE_TAR.tmp" . && mv "$CACHE_TAR.tmp" "$CACHE_TAR"
		rm -rf "$fresh"
		say "debootstrap took $(($(date +%s) - t0)) s; cached as $CACHE_TAR"
	fi
) 9>"$CACHE_DIR/lock"
mkdir -p "$ROOT"
tar -C "$ROOT" -xf "$CACHE_TAR"

cat >"$ROOT/etc/apt/sources.list" <<EOF
deb $MIRROR $SUITE main
deb $MIRROR $SUITE-updates main
deb $SECURITY_MIRROR $SUITE-security main
EOF
cp -L /etc/resolv.conf "$ROOT/etc/resolv.conf" 2>/dev/null || true
# No service may start inside the chroot (invoke-rc.d / deb-systemd-invoke honour this).
printf '#!/bin/sh\nexit 101\n' >"$ROOT/usr/sbin/policy-rc.d"
chmod 755 "$ROOT/usr/sbin/policy-rc.d"
mount -t proc proc "$ROOT/proc"
mount --bind "$APT_CACHE" "$ROOT/var/cache/apt/archives"
mkdir -p "$ROOT/tmp/debs"
cp "${DEBS[@]}" "$ROOT/tmp/debs/"

in_root() { chroot "$ROOT" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
	DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8 "$@"; }

# 4. Install with apt: dependencies come from the mirror.
say "apt-get update (mirror $MIRROR)"
in_root apt-get update --error-on=any -q >"$WORK/apt-update.log" 2>&1 ||
	{ tail -n 20 "$WORK/apt-update.log" >&2; fail "apt-get update in the chroot failed (mirror unreachable?)"; }
say "apt-get install ./tapio-*.deb"
# shellcheck disable=SC2016
in_root sh -c 'cd /tmp/debs && apt-get install -y -q --no-install-recommends ./tapio-*.deb' \
	>"$WORK/apt-install.log" 2>&1 ||
	{ tail -n 30 "$WORK/apt-install.log" >&2; fail "apt-get install ./tapio-*.deb failed"; }
grep -E '^(Setting up|Unpacking) tapio' "$WORK/apt-install.log" | sed 's/^/  /'

VERSION=$(dpkg-deb -f "$(ls "$WORK/debs"/tapio-cli_*.deb)" Version)
VERSION=${VERSION%%-*}

# run NAME EXPECTED_REGEX CMD...: exit code 0 and the output matches.
run() {
	local name=$1 want=$2 out rc=0
	shift 2
	out=$(in_root "$@" 2>&1) || rc=$?
	[ "$rc" -eq 0 ] || { printf '%s\n' "$out" >&2; fail "$name: exit $rc"; }
	grep -qE -- "$want" <<<"$out" || { printf '%s\n' "$out" >&2; fail "$name: output lacks /$want/"; }
	say "ok: $name -> $(head -n 1 <<<"$out")"
}
run "tapio-controller --version" "$VERSION" tapio-controller --version
if [ "$HAVE_AGENT" = 1 ]; then
	run "tapio-agent --version" "$VERSION" tapio-agent --version
	run "tapio-agent --help" "--sink" tapio-agent --help
fi
run "tapio --help" "[Uu]sage" tapio --help
run "tapio --version" "$VERSION" tapio --version

# 5. Files, conffiles, units, user, store.
check() { # check DESCRIPTION TEST...
	local what=$1
	shift
	in_root "$@" >/dev/null 2>&1 || fail "$what"
	say "ok: $what"
}
# shellcheck disable=SC2016 # dpkg-query expands ${Conffiles}, not the shell
conffiles_of() { in_root dpkg-query -W -f='${Conffiles}\n' "$1"; }
check "/etc/tapio/profile.yaml installed" test -s /etc/tapio/profile.yaml
conffiles_of tapio-controller | grep -q '/etc/tapio/profile.yaml' ||
	fail "/etc/tapio/profile.yaml is not a conffile of tapio-controller"
say "ok: /etc/tapio/profile.yaml is a conffile"
if [ "$HAVE_AGENT" = 1 ]; then
	check "/etc/tapio/agent.yaml installed" test -s /etc/tapio/agent.yaml
	conffiles_of tapio-agent | grep -q '/etc/tapio/agent.yaml' ||
		fail "/etc/tapio/agent.yaml is not a conffile of tapio-agent"
	say "ok: /etc/tapio/agent.yaml is a conffile"
	check "/var/lib/tapio created" test -d /var/lib/tapio
fi
for unit in tapio-agent tapio-controller; do
	[ "$unit" = tapio-agent ] && [ "$HAVE_AGENT" = 0 ] && continue
	if [ -f "$SRC_DIR/deploy/systemd/$unit.service" ]; then
		check "/lib/systemd/system/$unit.service installed" \
			test -s "/lib/systemd/system/$unit.service"
	else
		say "NOTE: deploy/systemd/$unit.service not in the tree, no unit to check"
	fi
done
check "system user tapio exists" getent passwd tapio
check "user tapio has no login shell" sh -c 'getent passwd tapio | grep -q ":/usr/sbin/nologin$"'
owner=$(in_root stat -c '%U:%G %a' /var/lib/tapio-controller) ||
	fail "/var/lib/tapio-controller missing"
[ "$owner" = "tapio:tapio 750" ] || fail "/var/lib/tapio-controller is $owner, want tapio:tapio 750"
say "ok: /var/lib/tapio-controller is $owner"

# 6. Smoke: the installed packages working together (tests/packaging/smoke-fleet.sh): the
# controller as tapio with the controller image's default arguments (CMD of
# deploy/docker/Dockerfile.controller), the agent with the packaged config streaming to it,
# the CLI reading back. In private network and pid namespaces: no port on the host is
# touched and no process outlives the smoke.
mapfile -t CTL_ARGS < <(sed -nE 's/^CMD[[:space:]]+\[(.*)\][[:space:]]*$/\1/p' \
	"$SRC_DIR/deploy/docker/Dockerfile.controller" | tr ',' '\n' |
	sed -E 's/^[[:space:]]*"//; s/"[[:space:]]*$//')
[ "${#CTL_ARGS[@]}" -gt 0 ] || fail "no CMD in deploy/docker/Dockerfile.controller"
SMOKE_AGENT=0
if [ "$HAVE_AGENT" = 1 ] && [ -r /sys/kernel/btf/vmlinux ]; then
	SMOKE_AGENT=1
	mount --rbind /sys "$ROOT/sys" # BTF, cgroups and perf for the agent
	mount --make-rslave "$ROOT/sys"
elif [ "$HAVE_AGENT" = 1 ]; then
	say "NOTE: no /sys/kernel/btf/vmlinux, the agent is left out of the smoke"
fi
mkdir -p "$WORK/smoke"
rc=0
unshare --net --pid --fork --kill-child "$SRC_DIR/tests/packaging/smoke-fleet.sh" "$ROOT" "$WORK/smoke" "$VERSION" \
	"$SMOKE_AGENT" "${CTL_ARGS[@]}" >"$WORK/smoke.out" 2>&1 || rc=$?
sed 's/^/  /' "$WORK/smoke.out"
[ "$rc" -eq 0 ] || {
	tail -n 20 "$WORK"/smoke/*.log >&2
	fail "packaged fleet smoke"
}
if mountpoint -q "$ROOT/sys"; then
	umount -R "$ROOT/sys" || umount -R -l "$ROOT/sys"
fi
# shellcheck disable=SC2016 # expanded inside the chroot
check "smoke: the controller's store is owned by tapio" \
	sh -c 'test -n "$(find /var/lib/tapio-controller -name "seg-*" -user tapio)"'

# 7. Reinstall (postinst runs again as an upgrade): idempotent, local conffile edits kept.
echo '# local edit' >>"$ROOT/etc/tapio/profile.yaml"
in_root sh -c 'dpkg -i /tmp/debs/tapio-controller_*.deb' >"$WORK/reinstall.log" 2>&1 ||
	{ cat "$WORK/reinstall.log" >&2; fail "reinstalling tapio-controller failed"; }
grep -q '^# local edit$' "$ROOT/etc/tapio/profile.yaml" || fail "reinstall overwrote a local conffile edit"
say "ok: reinstall is idempotent and keeps the edited /etc/tapio/profile.yaml"
echo 'data' >"$ROOT/var/lib/tapio-controller/marker"

# 8. remove keeps configuration and data; purge deletes them.
in_root apt-get remove -y -q tapio-controller >"$WORK/remove.log" 2>&1 ||
	{ cat "$WORK/remove.log" >&2; fail "apt-get remove tapio-controller failed"; }
check "remove: binary gone" sh -c '! test -e /usr/bin/tapio-controller'
check "remove: /etc/tapio/profile.yaml kept" test -f /etc/tapio/profile.yaml
check "remove: store kept" test -f /var/lib/tapio-controller/marker
in_root apt-get purge -y -q tapio-controller >"$WORK/purge.log" 2>&1 ||
	{ cat "$WORK/purge.log" >&2; fail "apt-get purge tapio-controller failed"; }
check "purge: /etc/tapio/profile.yaml gone" sh -c '! test -e /etc/tapio/profile.yaml'
check "purge: store gone" sh -c '! test -e /var/lib/tapio-controller'
check "purge: user tapio kept (uid not recycled)" getent passwd tapio
in_root sh -c 'apt-get install -y -q /tmp/debs/tapio-controller_*.deb' >"$WORK/again.log" 2>&1 ||
	{ cat "$WORK/again.log" >&2; fail "installing tapio-controller after purge failed"; }
check "install after purge: store recreated" test -d /var/lib/tapio-controller
if [ "$HAVE_AGENT" = 1 ]; then
	in_root apt-get purge -y -q tapio-agent >"$WORK/purge-agent.log" 2>&1 ||
		{ cat "$WORK/purge-agent.log" >&2; fail "apt-get purge tapio-agent failed"; }
	check "purge agent: /etc/tapio/agent.yaml gone" sh -c '! test -e /etc/tapio/agent.yaml'
	check "purge agent: /var/lib/tapio gone" sh -c '! test -e /var/lib/tapio'
fi

say "PASS: ${#DEBS[@]} packages installed, checked, removed and purged in a fresh Debian $SUITE root ($(($(date +%s) - START)) s)"
