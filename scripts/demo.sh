#!/usr/bin/env bash
# Starts berthd with a default config under a fresh root and shows it
# working with the berth CLI: namespaces, content and events, then an image
# built offline from busybox-static, served by a local registry, pulled and
# unpacked through berthd.
#   scripts/demo.sh        start the demo daemon (left running) and show it
#   scripts/demo.sh stop   stop the demo daemon and remove its root
set -euo pipefail
cd "$(dirname "$0")/.."
DEMO=${BERTH_DEMO_DIR:-/tmp/berth-demo}
SOCK=$DEMO/run/berth.sock
PIDFILE=$DEMO/berthd.pid
REGPIDFILE=$DEMO/registry.pid
REGISTRY=${BERTH_DEMO_REGISTRY:-127.0.0.1:5480}
export BERTH_ADDRESS=$SOCK

stop() {
	if [ -f "$REGPIDFILE" ] && kill -0 "$(cat "$REGPIDFILE")" 2>/dev/null; then
		kill -TERM "$(cat "$REGPIDFILE")"
	fi
	if [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
		# Containers first: their shims would outlive berthd.
		ids=$(bin/berth --data-root "$DEMO/cli" ps -a -q 2>/dev/null || true)
		[ -z "$ids" ] || bin/berth --data-root "$DEMO/cli" rm -f $ids >/dev/null || true
		kill -TERM "$(cat "$PIDFILE")"
		for _ in $(seq 50); do kill -0 "$(cat "$PIDFILE")" 2>/dev/null || break; sleep 0.1; done
		echo "berthd (pid $(cat "$PIDFILE")) stopped"
	fi
	rm -rf "$DEMO"
}

step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }

if [ "${1:-}" = stop ]; then stop; exit 0; fi

stop # a fresh root every time
mkdir -p "$DEMO"
cat >"$DEMO/config.toml" <<TOML
version = 2
root = "$DEMO/root"
state = "$DEMO/run"
[grpc]
  address = "$SOCK"
[debug]
  level = "info"
[plugins."io.containerd.transfer.v1.local"]
  config_path = "$DEMO/certs.d"
TOML
bin/berthd --config "$DEMO/config.toml" >"$DEMO/berthd.log" 2>&1 &
echo $! >"$PIDFILE"
for _ in $(seq 100); do [ -S "$SOCK" ] && break; sleep 0.05; done
[ -S "$SOCK" ] || { echo "berthd did not start:"; cat "$DEMO/berthd.log"; exit 1; }
echo "berthd is up (pid $(cat "$PIDFILE")), socket $SOCK, log $DEMO/berthd.log"

bin/berth events >"$DEMO/events.out" 2>&1 &
EVENTS=$!
sleep 0.3
step bin/berth version
step bin/berth plugins ls
step bin/berth namespace create demo --label owner=berth
step bin/berth namespace ls
echo "hello from berth" >"$DEMO/hello.txt"
step bin/berth -n demo content ingest hello < "$DEMO/hello.txt"
step bin/berth -n demo content ls
step bin/berth -n default content ls
DGST=sha256:$(sha256sum "$DEMO/hello.txt" | cut -d' ' -f1)
step bin/berth -n demo content get "$DGST"
step bin/berth -n default content get "$DGST" || true

# An image built offline, served by a local registry, pulled by berthd.
go run ./demo/mkimage -busybox /bin/busybox -out "$DEMO/image" -tag latest
mkdir -p "$DEMO/registry" "$DEMO/certs.d/$REGISTRY"
cat >"$DEMO/registry/config.yml" <<YML
version: 0.1
storage:
  filesystem:
    rootdirectory: $DEMO/registry/data
http:
  addr: $REGISTRY
YML
docker-registry serve "$DEMO/registry/config.yml" >"$DEMO/registry/log" 2>&1 &
echo $! >"$REGPIDFILE"
for _ in $(seq 100); do curl -sf "http://$REGISTRY/v2/" >/dev/null 2>&1 && break; sleep 0.05; done
skopeo copy --quiet --dest-tls-verify=false "oci:$DEMO/image:latest" "docker://$REGISTRY/berth-demo:latest"
printf 'server = "http://%s"\n' "$REGISTRY" >"$DEMO/certs.d/$REGISTRY/hosts.toml"
step bin/berth pull "$REGISTRY/berth-demo:latest"
step bin/berth images ls
step bin/berth images inspect "$REGISTRY/berth-demo:latest"
step bin/berth snapshots tree
# Containers from it, run by berthd through berth-shim-runc-v2 and runc:
# one in the foreground, then a web server on the default bridge network
# with a published port, its logs kept by the shim.
B=(bin/berth --data-root "$DEMO/cli")
step "${B[@]}" run --rm --name demo1 "$REGISTRY/berth-demo:latest" /bin/sh -c 'echo "hello from a berth container on $(uname -sr)"; id; ip -4 -o addr show eth0'
mkdir -p "$DEMO/www" && echo "hello over HTTP from a berth container" >"$DEMO/www/index.html"
step "${B[@]}" run -d --name web -p 127.0.0.1:8089:80 -v "$DEMO/www:/www:ro" "$REGISTRY/berth-demo:latest" httpd -f -v -p 80 -h /www
step "${B[@]}" ps
for _ in $(seq 50); do curl -sf http://127.0.0.1:8089/ >/dev/null 2>&1 && break; sleep 0.1; done
step curl -sf http://127.0.0.1:8089/
step "${B[@]}" logs web
step "${B[@]}" rm -f web
sleep 0.3
kill "$EVENTS" 2>/dev/null || true
wait "$EVENTS" 2>/dev/null || true
printf '\n\033[1mevents seen meanwhile (berth events):\033[0m\n'
cat "$DEMO/events.out"
cat <<MSG

berthd keeps running for you to try (also with Debian's ctr: ctr -a $SOCK ...):
  export BERTH_ADDRESS=$SOCK; bin/berth info
  bin/berth --data-root $DEMO/cli run --rm -it $REGISTRY/berth-demo:latest
Stop it with: make demo-stop
MSG
