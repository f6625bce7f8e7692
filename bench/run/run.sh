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
BENCH=run
repo=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=../lib.sh
. "$repo/bench/lib.sh"
src=${BERTH_SRC:-$repo}

bench_args "$@"
bench_require "daemons, containers, overlayfs" "apt-get install -y containerd runc busybox-static" \
	/usr/bin/containerd /usr/bin/ctr /usr/bin/containerd-shim-runc-v2 /usr/sbin/runc /bin/busybox
bench_workdir

echo "bench/run: building berthd and berth-shim-runc-v2 from $src, the bench, into $bin" >&2
bench_build "$src" ./cmd/berthd ./cmd/berth-shim-runc-v2
(cd "$repo" && go build -o "$bin/runbench" ./bench/run)

"$bin/runbench" -workdir "$workdir" -berthd "$bin/berthd" "$@"
