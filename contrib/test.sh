#!/usr/bin/env bash
# Sets everything up on a fresh Debian machine and runs every test:
#   1. installs the build and test dependencies (as root, apt-get) and the
#      npm modules pinned in contrib/node (npm ci)
#   2. builds promfork and runs all unit, fuzz-seed and end-to-end tests
#   3. runs the unit tests again built with AddressSanitizer + UBSan
#   4. runs the unit tests under valgrind (no leaks, no errors)
#   5. drives every libFuzzer target for a bounded time (FUZZ_SECONDS)
#   6. checks the formatting of the C sources
# and ends with one line: "N passed, N failed".
set -u
cd "$(dirname "$0")/.."
top=$(pwd)

FUZZ_SECONDS=${FUZZ_SECONDS:-10}
PACKAGES="meson ninja-build pkg-config gcc clang clang-format libevent-dev
  libssl-dev libyaml-dev libcrypt-dev openssl libjansson-dev zlib1g-dev
  libcriterion-dev valgrind curl wrk prometheus gunicorn
  python3-prometheus-client python3-django python3-django-prometheus uwsgi
  uwsgi-plugin-python3 chromium systemd procps iproute2
  ruby puma unicorn ruby-prometheus-client-mmap python3-celery python3-redis
  redis-server python3-yaml"
# kubectl for the Kubernetes manifests' offline test: Debian's
# kubernetes-client, installed only when the kubectl command is missing (a
# kubectl of another origin conflicts with the package).
KUBECTL_PACKAGES="kubernetes-client"
# Node.js for contrib/node and its tests: installed only when the node or
# npm command is missing (a nodejs of another origin often bundles npm, and
# Debian's npm package would not install beside it).
NODE_PACKAGES="nodejs npm"

passed=0
failed=0
failures=()

note() { printf '\n=== %s\n' "$*"; }
pass() { passed=$((passed + 1)); printf 'ok - %s\n' "$1"; }
fail() { failed=$((failed + 1)); failures+=("$1"); printf 'FAIL - %s\n' "$1"; }

install_deps() {
	local missing=()
	for p in $PACKAGES; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null |
			grep -q 'install ok installed' || missing+=("$p")
	done
	if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
		missing+=($NODE_PACKAGES)
	fi
	command -v kubectl >/dev/null || missing+=($KUBECTL_PACKAGES)
	[ ${#missing[@]} -eq 0 ] && return 0
	note "installing ${missing[*]}"
	if [ "$(id -u)" -ne 0 ]; then
		echo "promfork tests: missing packages: ${missing[*]}; run as root" >&2
		return 1
	fi
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -q && apt-get install -y -q --no-install-recommends "${missing[@]}"
}

# Adds a meson test log's results to the totals.
count_meson() {
	local log=$1 label=$2
	[ -f "$log" ] || { fail "$label: no test log"; return; }
	while IFS=$'\t' read -r result name; do
		case $result in
		OK|EXPECTEDFAIL|SKIP) pass "$label $name" ;;
		*) fail "$label $name ($result)" ;;
		esac
	done < <(/usr/bin/python3 -c '
import json, sys
for line in open(sys.argv[1]):
    t = json.loads(line)
    print("%s\t%s" % (t["result"], t["name"]))' "$log")
}

install_deps || { fail "install dependencies"; echo "$passed passed, $failed failed"; exit 1; }

# The npm modules pinned by contrib/node/package-lock.json (prom-client,
# pm2) for the Node.js tests; without them those tests fail and say so.
note "npm ci in contrib/node"
if (cd contrib/node && npm ci --no-audit --no-fund); then
	pass "npm ci"
else
	fail "npm ci in contrib/node"
fi

note "build and test"
rm -rf build-test
if meson setup build-test >/dev/null && ninja -C build-test; then
	pass "build"
	meson test -C build-test --print-errorlogs --num-processes 2
	count_meson build-test/meson-logs/testlog.json test
else
	fail "build"
fi

note "sanitizers: address, undefined"
rm -rf build-asan
if meson setup build-asan -Db_sanitize=address,undefined -Db_lundef=false \
	>/dev/null && ninja -C build-asan; then
	# unit and fuzz suites, and the daemon itself under real traffic in
	# the end-to-end tests that do not need gunicorn or uWSGI's minutes
	export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
	export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
	meson test -C build-asan --print-errorlogs --num-processes 2 \
		--suite unit --suite fuzz
	count_meson build-asan/meson-logs/testlog.json asan
	meson test -C build-asan --print-errorlogs e2e-core e2e-supervise \
		e2e-spawn e2e-standalone e2e-faults e2e-http e2e-proxy \
		e2e-fanout e2e-http-limits e2e-listen e2e-tls
	count_meson build-asan/meson-logs/testlog.json asan
	unset ASAN_OPTIONS UBSAN_OPTIONS
else
	fail "sanitizer build"
fi

note "valgrind"
if [ -d build-test ]; then
	# meson names the log of a wrapped run after the wrapper
	rm -f build-test/meson-logs/testlog-valgrind.json
	meson test -C build-test --suite unit --suite fuzz --print-errorlogs \
		--num-processes 2 --timeout-multiplier 10 \
		--wrap='valgrind --quiet --leak-check=full --errors-for-leak-kinds=definite --error-exitcode=99 --trace-children=yes --trace-children-skip=*/sh,*/bash,*/python3*,*/promtool,*/sleep'
	count_meson build-test/meson-logs/testlog-valgrind.json valgrind
fi

note "fuzzing, ${FUZZ_SECONDS}s per target"
if command -v clang >/dev/null; then
	rm -rf build-fuzz
	if CC=clang meson setup build-fuzz -Dfuzz=true -De2e=false \
		-Db_lundef=false >/dev/null && ninja -C build-fuzz >/dev/null; then
		bins=() works=()
		for f in build-fuzz/tests/fuzz/fuzz_*; do
			[ -f "$f" ] && [ -x "$f" ] || continue
			work=$(mktemp -d)
			cp tests/fuzz/corpus/"${f##*/fuzz_}"/* "$work"/ 2>/dev/null
			bins+=("$f") works+=("$work")
		done
		# two targets at a time, one a core; each its own corpus copy
		for ((i = 0; i < ${#bins[@]}; i++)); do
			("${bins[i]}" -max_total_time="$FUZZ_SECONDS" \
				-rss_limit_mb=1024 -artifact_prefix="${works[i]}/" \
				"${works[i]}" >"${works[i]}.log" 2>&1
			echo $? >"${works[i]}.rc") &
			if ((i % 2 == 1)); then wait; fi
		done
		wait
		for ((i = 0; i < ${#bins[@]}; i++)); do
			name=${bins[i]##*/fuzz_} work=${works[i]}
			if [ "$(cat "$work.rc")" = 0 ]; then
				pass "fuzz $name ($(grep -o 'Done [0-9]* runs' "$work.log"))"
				rm -rf "$work" "$work.log" "$work.rc"
			else
				tail -n 30 "$work.log"
				fail "fuzz $name (crash input left in $work)"
			fi
		done
	else
		fail "fuzz build"
	fi
else
	fail "fuzz: clang is missing"
fi

note "formatting"
unformatted=$(clang-format --dry-run src/*.c src/*.h tests/*/*.c 2>&1 |
	grep -c 'warning:')
if [ "$unformatted" -eq 0 ]; then
	pass "clang-format"
else
	fail "clang-format: $unformatted differences (clang-format -i src/*.[ch] tests/*/*.c)"
fi

printf '\n'
for f in "${failures[@]+"${failures[@]}"}"; do printf 'failed: %s\n' "$f"; done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
