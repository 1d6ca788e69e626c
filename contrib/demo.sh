#!/usr/bin/env bash
# promfork demo, for a fresh Debian machine (as root, or with sudo):
#   1. installs what is missing (apt-get): build deps, gunicorn,
#      prometheus_client, Prometheus, curl
#   2. builds promfork (meson, ninja) in build-demo/ of the source tree
#   3. runs promfork wrapping gunicorn with 4 workers of
#      contrib/examples/app.py (contrib/gunicorn/gunicorn.conf.py), and a
#      real Prometheus (1 s scrape) reading promfork's file_sd directory;
#      everything listens on 127.0.0.1 only
#   4. sends some requests, prints where to look, and waits.
# Ctrl-C (or SIGTERM) stops everything and leaves nothing running.
#
#   bash contrib/demo.sh
#
# Environment (all optional):
#   DEMO_WORKERS=4             gunicorn workers
#   DEMO_PORT_RANGE=19400-19463  ports promfork hands out to the workers
#   DEMO_APP_PORT=18000        gunicorn's port            } a busy port is
#   DEMO_PROMETHEUS_PORT=19090 Prometheus' web port       } replaced by a
#   DEMO_LISTEN_PORT=19399     promfork --listen port     } free one
#   DEMO_REQUESTS=20           requests sent to the app at start
#   DEMO_BUILD_DIR=build-demo  meson build directory (relative: to the source)
#   DEMO_PROMFORK=PATH         use this promfork binary instead of building
#   DEMO_SKIP_INSTALL=1        do not run apt-get
#   DEMO_KEEP=1                keep the run directory (sd file, logs, TSDB)

# (functions run from traps and from wait_for are not unreachable)
# shellcheck disable=SC2317
set -euo pipefail

cd "$(dirname "$0")/.."
SRC=$(pwd)

WORKERS=${DEMO_WORKERS:-4}
RANGE=${DEMO_PORT_RANGE:-19400-19463}
REQUESTS=${DEMO_REQUESTS:-20}
BUILD=${DEMO_BUILD_DIR:-build-demo}
PACKAGES="meson ninja-build pkg-config gcc libevent-dev libjansson-dev
  zlib1g-dev libssl-dev libyaml-dev libcrypt-dev
  gunicorn python3-prometheus-client prometheus curl"

say() { printf '%s\n' "$*"; }
row() { printf '%-31s %s\n' "$1" "$2"; }
die() { printf 'demo: %s\n' "$*" >&2; exit 1; }

if [ ! -f "$SRC/meson.build" ] || [ ! -f "$SRC/contrib/examples/app.py" ]; then
	die "run me from promfork's source tree (contrib/demo.sh)"
fi
[[ $RANGE =~ ^([0-9]+)-([0-9]+)$ ]] || die "DEMO_PORT_RANGE must be LOW-HIGH"
LOW=${BASH_REMATCH[1]}
HIGH=${BASH_REMATCH[2]}
[ "$((HIGH - LOW + 1))" -ge "$WORKERS" ] ||
	die "DEMO_PORT_RANGE $RANGE is smaller than DEMO_WORKERS=$WORKERS"

# 1. dependencies ----------------------------------------------------------
install_deps() {
	local missing=() p sudo=()
	for p in $PACKAGES; do
		case $(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true) in
		*"install ok installed"*) ;;
		*) missing+=("$p") ;;
		esac
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	if [ "$(id -u)" -ne 0 ]; then
		command -v sudo >/dev/null || die "installing ${missing[*]} needs root or sudo"
		sudo=(sudo)
	fi
	say "== installing: ${missing[*]}"
	"${sudo[@]}" apt-get update
	"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
		apt-get install -y --no-install-recommends "${missing[@]}"
}
if [ -z "${DEMO_SKIP_INSTALL:-}" ]; then
	command -v dpkg-query >/dev/null || die "not a Debian system (no dpkg-query); set DEMO_SKIP_INSTALL=1"
	install_deps
fi

# 2. build -------------------------------------------------------------------
if [ -n "${DEMO_PROMFORK:-}" ]; then
	PROMFORK=$DEMO_PROMFORK
else
	say "== building promfork in $BUILD"
	if [ ! -f "$BUILD/build.ninja" ]; then
		meson setup "$BUILD" -De2e=false >/dev/null ||
			die "meson setup $BUILD failed"
	fi
	ninja -C "$BUILD" >/dev/null || die "ninja -C $BUILD failed"
	PROMFORK=$BUILD/promfork
fi
case $PROMFORK in /*) ;; *) PROMFORK=$SRC/$PROMFORK ;; esac
[ -x "$PROMFORK" ] || die "no promfork binary at $PROMFORK"
for prog in gunicorn prometheus curl python3; do
	command -v "$prog" >/dev/null || die "$prog is not installed"
done

# 3. run -------------------------------------------------------------------
# A port that is free on 127.0.0.1: the wanted one, else any free one.
# A port free on 127.0.0.1 (TIME_WAIT leftovers do not count, as for the
# servers, which set SO_REUSEADDR): the wanted one, else any free one.
pick_port() {
	python3 - "$1" "$2" <<'EOF'
import socket, sys
want, name = int(sys.argv[1]), sys.argv[2]
for port in (want, 0):
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            continue
        got = s.getsockname()[1]
        if got != want:
            print("== port %d is busy: %s uses %d" % (want, name, got),
                  file=sys.stderr)
        print(got)
        break
EOF
}
APP_PORT=$(pick_port "${DEMO_APP_PORT:-18000}" gunicorn)
PROM_PORT=$(pick_port "${DEMO_PROMETHEUS_PORT:-19090}" Prometheus)
LISTEN_PORT=$(pick_port "${DEMO_LISTEN_PORT:-19399}" "promfork --listen")

RUN=$(mktemp -d "${TMPDIR:-/tmp}/promfork-demo.XXXXXX")
SD_DIR=$RUN/sd
SD_FILE=$SD_DIR/app.json
mkdir "$SD_DIR"
PF_PID=
PROM_PID=
SLEEP_PID=

# True while $1 is running (a zombie does not count).
alive() {
	local s
	[ -n "$1" ] && read -r s 2>/dev/null <"/proc/$1/stat" || return 1
	s=${s##*) }
	[ "${s%% *}" != Z ]
}

# True while any process of process group $1 runs (zombies do not count).
group_alive() {
	local f s rest state pgrp
	for f in /proc/[0-9]*/stat; do
		read -r s 2>/dev/null <"$f" || continue
		rest=${s##*) }
		read -r state _ pgrp _ <<<"$rest"
		[ "$pgrp" = "$1" ] && [ "$state" != Z ] && return 0
	done
	return 1
}

# Stops process group $1 (led by $1): SIGTERM to the leader, SIGKILL to the
# whole group after $2 seconds.
stop_group() {
	local pg=$1 i=0
	[ -n "$pg" ] || return 0
	kill -TERM "$pg" 2>/dev/null || true
	while group_alive "$pg" && [ "$i" -lt $(($2 * 10)) ]; do
		sleep 0.1
		i=$((i + 1))
	done
	if group_alive "$pg"; then
		say "demo: process group $pg still running after $2 s: SIGKILL"
		kill -KILL -- "-$pg" 2>/dev/null || true
	fi
	wait "$pg" 2>/dev/null || true
}

STOPPING=
cleanup() {
	local rc=$?
	[ -n "$STOPPING" ] && return
	STOPPING=1
	trap '' INT TERM HUP
	say ""
	say "== stopping promfork (and gunicorn with it) and Prometheus"
	[ -n "$SLEEP_PID" ] && kill "$SLEEP_PID" 2>/dev/null
	stop_group "$PF_PID" 35  # gunicorn's graceful_timeout is 30 s
	stop_group "$PROM_PID" 20
	wait 2>/dev/null || true
	if [ -n "${DEMO_KEEP:-}" ]; then
		say "== kept $RUN"
	else
		rm -rf "$RUN"
	fi
	say "== stopped; nothing left running"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

LISTEN=()
if "$PROMFORK" --help 2>&1 | grep -q -- '--listen'; then
	# Targets through promfork's proxy: exact totals across recycling.
	LISTEN=(--listen "127.0.0.1:$LISTEN_PORT" --proxy-targets)
fi

cat >"$RUN/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  scrape_timeout: 900ms
  evaluation_interval: 1s
rule_files:
  - $SRC/contrib/prometheus/rules.yml
scrape_configs:
  - job_name: app
    file_sd_configs:
      # the directory (a glob), not the file: promfork renames a new file in
      - files: ['$SD_DIR/*.json']
        refresh_interval: 1s
EOF
if [ ${#LISTEN[@]} -gt 0 ]; then
	cat >>"$RUN/prometheus.yml" <<EOF
  - job_name: promfork
    static_configs:
      - targets: ['127.0.0.1:$LISTEN_PORT']
EOF
fi

say "== starting promfork + gunicorn ($WORKERS workers) and Prometheus"
# Each in its own session and process group, so that stopping them is one
# kill of a group; logs go to files in $RUN.
PROMFORK_METRICS_ADDR=127.0.0.1 setsid "$PROMFORK" \
	--port-range "$LOW-$HIGH" --sd-file "$SD_FILE" \
	--socket "$RUN/promfork.sock" --target-host 127.0.0.1 "${LISTEN[@]}" \
	-- gunicorn -c "$SRC/contrib/gunicorn/gunicorn.conf.py" \
	-b "127.0.0.1:$APP_PORT" -w "$WORKERS" \
	--chdir "$SRC/contrib/examples" app:application \
	</dev/null >"$RUN/promfork.log" 2>&1 &
PF_PID=$!
setsid prometheus --config.file="$RUN/prometheus.yml" \
	--storage.tsdb.path="$RUN/prometheus-data" \
	--web.listen-address="127.0.0.1:$PROM_PORT" \
	</dev/null >"$RUN/prometheus.log" 2>&1 &
PROM_PID=$!

# wait_for WHAT SECONDS COMMAND...: runs COMMAND until it succeeds.
wait_for() {
	local what=$1 t=$(($2 * 5))
	shift 2
	while ! "$@" >/dev/null 2>&1; do
		alive "$PF_PID" || die "promfork exited; the end of $RUN/promfork.log:
$(tail -n 20 "$RUN/promfork.log")"
		alive "$PROM_PID" || die "Prometheus exited; the end of $RUN/prometheus.log:
$(tail -n 20 "$RUN/prometheus.log")"
		t=$((t - 1))
		[ $t -gt 0 ] || die "timed out waiting for $what"
		sleep 0.2
	done
}
sd_has_all() {
	python3 -c 'import json, sys; sys.exit(len(json.load(open(sys.argv[1]))) != int(sys.argv[2]))' \
		"$SD_FILE" "$WORKERS"
}
# prom_value QUERY: the first value of an instant query, 0 when empty.
prom_value() {
	curl -sf "http://127.0.0.1:$PROM_PORT/api/v1/query" --data-urlencode "query=$1" |
		python3 -c 'import json, sys; r = json.load(sys.stdin)["data"]["result"]; print(int(float(r[0]["value"][1])) if r else 0)'
}
up_count() { prom_value 'count(up{job="app"} == 1)'; }
total() { prom_value 'sum(app_requests_total{job="app",path="/"})'; }
scraped_all() {
	[ "$(up_count)" = "$WORKERS" ] && [ "$(total)" = "$REQUESTS" ]
}

wait_for "Prometheus to be ready" 60 curl -sf "http://127.0.0.1:$PROM_PORT/-/ready"
wait_for "$WORKERS workers in $SD_FILE" 60 sd_has_all
# (any answer will do; /ready is counted under path="other", not "/")
wait_for "gunicorn on port $APP_PORT" 30 curl -so /dev/null "http://127.0.0.1:$APP_PORT/ready"

say "== sending $REQUESTS requests to the app"
for _ in $(seq "$REQUESTS"); do
	curl -sf "http://127.0.0.1:$APP_PORT/" >/dev/null || die "request to the app failed"
done
# Prometheus scrapes every second: wait (up to 20 s) until it has them all.
wait_for "Prometheus to scrape every worker" 20 scraped_all

P="http://127.0.0.1:$PROM_PORT"
Q='sum without (worker, instance) (app_requests_total)'
QURL="$P/graph?g0.expr=$(python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$Q")&g0.tab=1"
say ""
say "=================== promfork demo is running ==================="
row "App (gunicorn, $WORKERS workers):" "http://127.0.0.1:$APP_PORT/"
row "Prometheus targets:" "$P/targets"
row "Requests over all workers:" "$QURL"
say "  now: $(up_count) of $WORKERS workers up in Prometheus," \
	"sum(app_requests_total{path=\"/\"}) = $(total) after $REQUESTS requests"
if [ ${#LISTEN[@]} -gt 0 ]; then
	row "promfork status page:" "http://127.0.0.1:$LISTEN_PORT/"
	say "  and /targets (http_sd), /metrics, /workers/metrics (all workers in one)"
fi
row "sd file (file_sd):" "$SD_FILE"
python3 - "$SD_FILE" <<'EOF'
import json, sys
groups = json.load(open(sys.argv[1]))
print("  [" + ",\n   ".join(json.dumps(g, separators=(", ", ": ")) for g in groups) + "]")
EOF
say "Each worker's own metrics:"
curl -sf --unix-socket "$RUN/promfork.sock" http://promfork/v1/workers |
	python3 -c '
import json, sys
for l in json.load(sys.stdin):
    print("  worker %s (pid %s): http://%s/metrics" % (l["worker"], l["pid"], l["target"]))
'
say "Try:  kill -TTIN $PF_PID  (one worker more; -TTOU: one less)"
say "      kill -HUP $PF_PID   (gunicorn reload: new workers, then old ones stop)"
say "      kill -9 <worker pid>  (gunicorn replaces it; it gets the same slot)"
say "Logs: $RUN/promfork.log"
say "      $RUN/prometheus.log"
say "Press Ctrl-C to stop everything."
say "================================================================"

# 4. wait ------------------------------------------------------------------
while alive "$PF_PID" && alive "$PROM_PID"; do
	sleep 1 &
	SLEEP_PID=$!
	wait "$SLEEP_PID" || true
	SLEEP_PID=
done
alive "$PF_PID" || say "demo: promfork exited; see $RUN/promfork.log" >&2
alive "$PROM_PID" || say "demo: Prometheus exited; see $RUN/prometheus.log" >&2
exit 1
