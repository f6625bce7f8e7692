# Shell functions shared by the benches' run.sh scripts: argument scan,
# root and tool checks, the work directory (refused unless empty or a bench
# work dir; removed at exit unless -keep) and building berth's binaries.
# Source it after `set -euo pipefail` with BENCH set to the bench's name.

# bench_args scans the bench's arguments for -workdir and -keep, which
# this script uses too; they are passed on to the bench unchanged.
bench_args() {
	workdir=/var/tmp/berth-bench
	keep=0
	local args=("$@") i
	for ((i = 0; i < ${#args[@]}; i++)); do
		case "${args[i]}" in
		-keep | --keep | -keep=true | --keep=true) keep=1 ;;
		-workdir | --workdir) workdir="${args[i + 1]:-}" ;;
		-workdir=* | --workdir=*) workdir="${args[i]#*=}" ;;
		esac
	done
}

# bench_require WHY HINT PATH... fails unless run as root and every PATH
# is executable; HINT says what installs them.
bench_require() {
	local why=$1 hint=$2 missing=() b
	shift 2
	if [[ $(id -u) != 0 ]]; then
		echo "bench/$BENCH: run as root ($why)" >&2
		exit 1
	fi
	for b in "$@"; do
		[[ -x $b ]] || missing+=("$b")
	done
	if ((${#missing[@]})); then
		echo "bench/$BENCH: missing ${missing[*]}: $hint" >&2
		exit 1
	fi
}

# bench_workdir prepares $workdir and $bin, removed at exit unless -keep.
# The bench deletes what it writes below the workdir: a directory that
# holds anything else is refused.
bench_workdir() {
	if [[ -d $workdir && ! -e $workdir/.berth-bench && -n $(ls -A "$workdir") ]]; then
		echo "bench/$BENCH: $workdir is not empty and not a bench workdir; pick another -workdir" >&2
		exit 1
	fi
	mkdir -p "$workdir"
	touch "$workdir/.berth-bench"
	bin="$workdir/bin"
	mkdir -p "$bin"
	trap bench_cleanup EXIT
}

bench_cleanup() {
	if ((!keep)); then
		rm -rf "$bin"
		rm -f "$workdir/.berth-bench"
		rmdir "$workdir" 2>/dev/null || true
	fi
}

# bench_build SRC PKG... builds berth's commands as `make build` does
# (no cgo, no grpc tracing, the revision of SRC) into $bin.
bench_build() {
	local src=$1 rev
	shift
	rev=$(git -C "$src" rev-parse --short HEAD 2>/dev/null || echo unknown)
	if [[ -n $(git -C "$src" status --porcelain 2>/dev/null) ]]; then rev+="-dirty"; fi
	(cd "$src" && CGO_ENABLED=0 go build -tags grpcnotrace \
		-ldflags "-X github.com/berth-dev/berth/version.Revision=$rev" -o "$bin/" "$@")
}
