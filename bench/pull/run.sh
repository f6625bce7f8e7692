#!/usr/bin/env bash
# Cold pull + unpack benchmark: berthd beside Debian's containerd 1.6.
# Builds berthd, berth and the bench into WORKDIR/bin from this checkout,
# then runs the bench (bench/pull/main.go) with the arguments given, e.g.
#
#   bench/pull/run.sh                       # 3 runs of every image and mode
#   bench/pull/run.sh -runs 5 -json out.json
#   bench/pull/run.sh -big-mib 256 -images big -phases
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
	-h | -help | --help) ;;
	esac
done

if [[ $(id -u) != 0 ]]; then
	echo "bench/pull: run as root (daemons, overlayfs, drop_caches)" >&2
	exit 1
fi
missing=()
for b in /usr/bin/containerd /usr/bin/ctr /usr/bin/docker-registry /usr/bin/skopeo /bin/busybox /usr/bin/tar; do
	[[ -x $b ]] || missing+=("$b")
done
if ((${#missing[@]})); then
	echo "bench/pull: missing ${missing[*]}: apt-get install -y containerd docker-registry skopeo busybox-static tar" >&2
	exit 1
fi

repo=$(cd "$(dirname "$0")/../.." && pwd)
# The bench deletes what it writes below the workdir: refuse a directory
# that holds anything else.
if [[ -d $workdir && ! -e $workdir/.berth-bench && -n $(ls -A "$workdir") ]]; then
	echo "bench/pull: $workdir is not empty and not a bench workdir; pick another -workdir" >&2
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

echo "bench/pull: building berthd, berth and the bench into $bin" >&2
rev=$(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown)
if [[ -n $(git -C "$repo" status --porcelain 2>/dev/null) ]]; then rev+="-dirty"; fi
(cd "$repo" && CGO_ENABLED=0 go build -tags grpcnotrace -ldflags "-X github.com/berth-dev/berth/version.Revision=$rev" \
	-o "$bin/" ./cmd/berthd ./cmd/berth &&
	go build -o "$bin/pullbench" ./bench/pull)

"$bin/pullbench" -workdir "$workdir" -berthd "$bin/berthd" -berth "$bin/berth" "$@"
