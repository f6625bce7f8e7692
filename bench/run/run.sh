#!/usr/bin/env bash
# Container start-to-exit benchmark: berthd beside Debian's containerd 1.6.
# Builds berthd, berth-shim-runc-v2 (beside berthd, where berthd looks for
# its shim first) and the bench into WORKDIR/bin from this checkout, then
# runs the bench (bench/run/main.go) with the arguments given, e.g.
#
#   bench/run/run.sh                    # 20 runs each, then shim memory
#   bench/run/run.sh -runs 50 -json out.json
#   bench/run/run.sh -debug -keep       # debug logs kept for a breakdown
#
# BERTH_SRC names another checkout to build berthd and its shim from (the
# bench itself always comes from this one), e.g. a clean worktree of HEAD.
#
# Everything goes under -workdir (default /var/tmp/berth-bench) and is
# removed at the end unless -keep is given. Run as root.
set -euo pipefail

workdir=/var/tmp/berth-bench
keep=0
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
	case "${args[i]}" in
	-keep | --keep | -keep=true | --keep=true) keep=1 ;;
	-workdir | --workdir) workdir="${args[i + 1]:-}" ;;
	-workdir=* | --workdir=*) workdir="${args[i]#*=}" ;;
	esac
done

if [[ $(id -u) != 0 ]]; then
	echo "bench/run: run as root (daemons, containers, overlayfs)" >&2
	exit 1
fi
missing=()
for b in /usr/bin/containerd /usr/bin/ctr /usr/bin/containerd-shim-runc-v2 /usr/sbin/runc /bin/busybox; do
	[[ -x $b ]] || missing+=("$b")
done
if ((${#missing[@]})); then
	echo "bench/run: missing ${missing[*]}: apt-get install -y containerd runc busybox-static" >&2
	exit 1
fi

repo=$(cd "$(dirname "$0")/../.." && pwd)
src=${BERTH_SRC:-$repo}
# The bench deletes what it writes below the workdir: refuse a directory
# that holds anything else.
if [[ -d $workdir && ! -e $workdir/.berth-bench && -n $(ls -A "$workdir") ]]; then
	echo "bench/run: $workdir is not empty and not a bench workdir; pick another -workdir" >&2
	exit 1
fi
mkdir -p "$workdir"
touch "$workdir/.berth-bench"
bin="$workdir/bin"
mkdir -p "$bin"
cleanup() {
	if ((!keep)); then
		rm -rf "$bin"
		rm -f "$workdir/.berth-bench"
		rmdir "$workdir" 2>/dev/null || true
	fi
}
trap cleanup EXIT

echo "bench/run: building berthd and berth-shim-runc-v2 from $src, the bench, into $bin" >&2
rev=$(git -C "$src" rev-parse --short HEAD 2>/dev/null || echo unknown)
if [[ -n $(git -C "$src" status --porcelain 2>/dev/null) ]]; then rev+="-dirty"; fi
(cd "$src" && CGO_ENABLED=0 go build -tags grpcnotrace -ldflags "-X github.com/berth-dev/berth/version.Revision=$rev" \
	-o "$bin/" ./cmd/berthd ./cmd/berth-shim-runc-v2)
(cd "$repo" && go build -o "$bin/runbench" ./bench/run)

"$bin/runbench" -workdir "$workdir" -berthd "$bin/berthd" "$@"
