#!/usr/bin/env bash
# Installs what berth needs on a Debian machine, as root. Idempotent and
# quick when everything is there already.
#   scripts/setup.sh demo   what `make demo` needs
#   scripts/setup.sh test   what `make test` needs (real peers for the tests)
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
export PATH=/usr/local/go/bin:$PATH

need_go() {
	if ! command -v go >/dev/null; then
		echo "setup: Go 1.26 or newer is required (expected at /usr/local/go/bin/go)" >&2
		exit 1
	fi
	local v
	v=$(go env GOVERSION | sed 's/^go//')
	if [ "$(printf '%s\n1.26\n' "$v" | sort -V | head -1)" != "1.26" ]; then
		echo "setup: Go $v is too old, berth needs 1.26 or newer" >&2
		exit 1
	fi
}

# apt_install PKG... installs the Debian packages that are missing.
apt_install() {
	local missing=()
	for p in "$@"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	echo "setup: installing ${missing[*]}"
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

case "${1:-test}" in
demo)
	need_go
	# containerd for its ctr (the demo runs a container with it), runc.
	apt_install ca-certificates git make curl docker-registry skopeo busybox-static containerd runc
	;;
test)
	need_go
	# containerd: Debian's ctr 1.6 is the compatibility peer of the tests,
	# and its daemon the baseline of bench/.
	# docker-registry: the real registry of pull/push tests (127.0.0.1);
	# skopeo: pushes test layouts and checks what berth pushes;
	# busybox-static: the offline test and demo images are built from it.
	apt_install ca-certificates git make containerd runc docker-registry skopeo busybox-static
	;;
*)
	echo "usage: $0 demo|test" >&2
	exit 2
	;;
esac
