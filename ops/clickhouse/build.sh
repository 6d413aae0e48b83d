#!/usr/bin/env bash
# Builds winch-clickhouse:latest (compose.yaml's audit store) from local
# files and the Debian mirror this machine's apt uses; no registry:
#   1. winch-debian:<suite>: a minimal Debian (mmdebstrap --variant=minbase)
#      made into a tarball and `docker import`ed;
#   2. winch-clickhouse:latest: ops/clickhouse/Dockerfile on that base, which
#      apt-installs Debian's clickhouse-server (18.16 on bookworm).
# Each step is skipped when its image exists and was built from the same
# inputs (a label holds their hash), so a second run takes a second.
set -euo pipefail
cd "$(dirname "$0")"

image=${WINCH_CLICKHOUSE_IMAGE:-winch-clickhouse:latest}
sudo=""
[ "$(id -u)" = 0 ] || sudo=sudo

# The suite and mirror of this machine's own apt sources (deb822 or
# one-line), so the build reaches the mirror apt-get does here.
suite=$(. /etc/os-release 2>/dev/null && echo "${VERSION_CODENAME:-}")
suite=${suite:-bookworm}
mirror=$(awk '/^URIs:/ && $2 !~ /security/ {print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
[ -n "$mirror" ] || mirror=$(awk '$1 == "deb" && $0 !~ /security/ {for (i = 2; i <= NF; i++) if ($i ~ /:\/\//) {print $i; exit}}' /etc/apt/sources.list 2>/dev/null || true)
mirror=${mirror:-http://deb.debian.org/debian}

base=winch-debian:$suite
# Only what apt needs to install packages: no docs, man pages or locales.
mmdebstrap_args=(--variant=minbase --include=debian-archive-keyring
	--dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*'
	--dpkgopt='path-exclude=/usr/share/locale/*')

label() { docker image inspect -f '{{index .Config.Labels "winch.build"}}' "$1" 2>/dev/null || true; }

base_hash=$(printf '%s\n' "$suite" "$mirror" "${mmdebstrap_args[@]}" | sha256sum | cut -c1-16)
if [ "$(label "$base")" != "$base_hash" ]; then
	if ! command -v mmdebstrap >/dev/null; then
		echo "installing mmdebstrap" >&2
		$sudo apt-get update -qq
		DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq mmdebstrap >/dev/null
	fi
	tmp=$(mktemp -d)
	trap 'rm -rf "$tmp"' EXIT
	echo "making $base with mmdebstrap from $mirror (a minute or two, once)" >&2
	# The mirror is given explicitly: without one mmdebstrap reads sources
	# from standard input when it is not a terminal (as in CI).
	$sudo mmdebstrap -q "${mmdebstrap_args[@]}" "$suite" "$tmp/rootfs.tar" "$mirror" </dev/null
	docker import -c "LABEL winch.build=$base_hash" -c 'CMD ["/bin/bash"]' "$tmp/rootfs.tar" "$base" >/dev/null
	rm -rf "$tmp"
fi

hash=$(cat Dockerfile config.d/* | sha256sum | cut -c1-16)-$base_hash
if [ "$(label "$image")" = "$hash" ]; then
	echo "$image is up to date" >&2
	exit 0
fi
echo "building $image (clickhouse-server from $mirror)" >&2
docker build -q --build-arg BASE="$base" --label winch.build="$hash" -t "$image" . >/dev/null
echo "built $image" >&2
