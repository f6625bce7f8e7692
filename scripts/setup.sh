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

# CRICTL_VERSION is the crictl of the CRI tests (cri-tools' version).
CRICTL_VERSION=v1.37.0

# need_crictl installs crictl into /usr/local/bin, where the CRI tests look
# for it, unless the one there is CRICTL_VERSION. Built from the Go module
# proxy: there is no Debian package of that version.
need_crictl() {
	if go version -m /usr/local/bin/crictl 2>/dev/null | grep -q "sigs.k8s.io/cri-tools[[:space:]]*$CRICTL_VERSION[[:space:]]"; then
		return 0
	fi
	echo "setup: installing crictl $CRICTL_VERSION"
	GOBIN=/usr/local/bin GOFLAGS=-buildvcs=false go install "sigs.k8s.io/cri-tools/cmd/crictl@$CRICTL_VERSION"
}

case "${1:-test}" in
demo)
	need_go
	# containerd for its ctr, runc; CNI plugins and iptables for berth run's
	# bridge network.
	apt_install ca-certificates git make curl docker-registry skopeo busybox-static containerd runc containernetworking-plugins iptables
	;;
test)
	need_go
	# containerd: Debian's ctr 1.6 is the compatibility peer of the tests,
	# and its daemon the baseline of bench/.
	# docker-registry: the real registry of pull/push tests (127.0.0.1);
	# skopeo: pushes test layouts and checks what berth pushes;
	# busybox-static: the offline test and demo images are built from it;
	# containernetworking-plugins + iptables: berth run's networks and CRI
	# pods; runsc (gVisor) and crun: the runtime handlers.
	apt_install ca-certificates git make containerd runc docker-registry skopeo busybox-static containernetworking-plugins iptables runsc crun
	# crictl: the kubelet's view of berthd's CRI (integration/cri_test.go).
	need_crictl
	;;
*)
	echo "usage: $0 demo|test" >&2
	exit 2
	;;
esac
