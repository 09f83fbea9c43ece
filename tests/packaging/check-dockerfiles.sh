#!/bin/bash
# check-dockerfiles.sh DEB_DIR [SOURCE_DIR]: static check of deploy/docker/Dockerfile.* against
# the packages cpack wrote to DEB_DIR (the docker build context), for machines without a
# container engine. For each Dockerfile:
#   - it starts FROM debian:bookworm-slim (the Debian release the packages are built for);
#   - every COPY source matches exactly one file in DEB_DIR;
#   - ENTRYPOINT is exec form and its binary is in a copied package (dpkg-deb -c);
#   - every --flag in ENTRYPOINT/CMD appears in that binary's --help (run from the package).
# Exit 0 when all hold, 1 with one line per problem otherwise.
set -euo pipefail

DEB_DIR=$(cd "${1:?usage: check-dockerfiles.sh DEB_DIR [SOURCE_DIR]}" && pwd)
SRC_DIR=$(cd "${2:-$(dirname "$0")/../..}" && pwd)
TMP=$(mktemp -d "${TMPDIR:-/tmp}/tapio-dockerfiles.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
errors=0

problem() {
	printf 'check-dockerfiles: %s: %s\n' "$1" "$2" >&2
	errors=$((errors + 1))
}

# Exec-form JSON array (["a", "b"]) → one element per line. Values here never hold quotes.
json_words() { sed -E 's/^[^[]*\[//; s/\][[:space:]]*$//' <<<"$1" | tr ',' '\n' |
	sed -E 's/^[[:space:]]*"//; s/"[[:space:]]*$//'; }

# Dockerfile lines with continuations joined.
logical_lines() { sed -e ':a' -e '/\\$/N; s/\\\n//; ta' "$1"; }

shopt -s nullglob
dockerfiles=("$SRC_DIR"/deploy/docker/Dockerfile.*)
[ "${#dockerfiles[@]}" -gt 0 ] || { problem deploy/docker "no Dockerfile.*"; exit 1; }

for df in "${dockerfiles[@]}"; do
	name=${df#"$SRC_DIR"/}
	errors_before=$errors
	lines=$(logical_lines "$df" | grep -vE '^[[:space:]]*(#|$)')
	grep -qE '^FROM[[:space:]]+debian:bookworm-slim([[:space:]]|$)' <<<"$lines" ||
		problem "$name" "does not start FROM debian:bookworm-slim"

	debs=()
	while read -r -a words; do
		args=()
		for w in "${words[@]:1}"; do
			[[ $w == --* ]] || args+=("$w")
		done
		[ "${#args[@]}" -ge 2 ] || { problem "$name" "COPY without source and destination"; continue; }
		for src in "${args[@]:0:${#args[@]}-1}"; do
			# shellcheck disable=SC2206 # the glob is the point
			matches=($DEB_DIR/$src)
			if [ "${#matches[@]}" -ne 1 ]; then
				problem "$name" "COPY $src matches ${#matches[@]} files in $DEB_DIR, want 1"
				continue
			fi
			[[ ${matches[0]} == *.deb ]] && debs+=("${matches[0]}")
		done
	done < <(grep -E '^(COPY|ADD)[[:space:]]' <<<"$lines")
	[ "${#debs[@]}" -gt 0 ] || { problem "$name" "copies no .deb from $DEB_DIR"; continue; }

	entry=$(grep -E '^ENTRYPOINT[[:space:]]' <<<"$lines" | tail -n 1 || true)
	[[ $entry =~ ^ENTRYPOINT[[:space:]]+\[ ]] ||
		{ problem "$name" "ENTRYPOINT missing or not exec form"; continue; }
	mapfile -t entry_words < <(json_words "$entry")
	bin=${entry_words[0]}
	owner=""
	for d in "${debs[@]}"; do
		if dpkg-deb -c "$d" | awk '{print $NF}' | grep -qxF ".$bin"; then
			owner=$d
		fi
	done
	[ -n "$owner" ] || { problem "$name" "ENTRYPOINT $bin is in none of: ${debs[*]##*/}"; continue; }

	# Flags of ENTRYPOINT + CMD must be ones the packaged binary knows.
	cmd=$(grep -E '^CMD[[:space:]]+\[' <<<"$lines" | tail -n 1 || true)
	flags=$( { printf '%s\n' "${entry_words[@]:1}"; [ -z "$cmd" ] || json_words "$cmd"; } |
		grep -E '^--[a-z]' | sed 's/=.*//' || true)
	root=$TMP/${owner##*/}
	mkdir -p "$root"
	dpkg-deb -x "$owner" "$root"
	help=$("$root$bin" --help 2>&1 || true)
	for f in $flags; do
		grep -qE -- "(^|[^a-z-])$f([^a-z-]|$)" <<<"$help" ||
			problem "$name" "$f is not in $(basename "$bin") --help"
	done
	[ "$errors" -eq "$errors_before" ] || continue
	printf 'check-dockerfiles: ok: %s (COPY %s, ENTRYPOINT %s%s)\n' "$name" \
		"${debs[*]##*/}" "$bin" "${flags:+, flags $(tr '\n' ' ' <<<"$flags" | sed 's/ $//')}"
done

[ "$errors" -eq 0 ] || exit 1
