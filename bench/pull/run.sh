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
BENCH=pull
repo=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=../lib.sh
. "$repo/bench/lib.sh"

bench_args "$@"
bench_require "daemons, overlayfs, drop_caches" "apt-get install -y containerd docker-registry skopeo busybox-static tar" \
	/usr/bin/containerd /usr/bin/ctr /usr/bin/docker-registry /usr/bin/skopeo /bin/busybox /usr/bin/tar
bench_workdir

echo "bench/pull: building berthd, berth and the bench into $bin" >&2
bench_build "$repo" ./cmd/berthd ./cmd/berth
(cd "$repo" && go build -o "$bin/pullbench" ./bench/pull)

"$bin/pullbench" -workdir "$workdir" -berthd "$bin/berthd" -berth "$bin/berth" "$@"
