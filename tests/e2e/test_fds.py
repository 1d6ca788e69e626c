"""Running out of file descriptors (issue 15, point 7).

Standalone promfork with --listen and eight live workers runs under an
open files limit of 64 (soft and hard, so it cannot raise it).  Twenty
clients fetch /workers/metrics at once in a loop, twenty idle connections
hold the listener, and new processes register meanwhile.  promfork must
not spin: its log stays bounded (each pause of accepting is logged once),
a registration is answered with success or with 503 "out of file
descriptors", never with 404 "no process"; once the load goes, the
fan-out and registration work again.  On a promfork that keeps accepting
the log grows by hundreds of thousands of lines in seconds.
"""

import json
import os
import re
import socket
import subprocess
import threading
import time

from harness import (PROMFORK, PYTHON, SOURCE, check, free_port,
                     free_port_range, http_get, log, run_test, start, stop,
                     tmpdir, wait_until)

WORKER = os.path.join(SOURCE, "tests", "e2e", "spawn_worker.py")
LIMIT = 64
FLOOD_S = 4.0
WORKERS = 8
IDLE = 20  # connections that only hold descriptors

# One process that registers itself and prints status and body.  As
# promfork's own client does, it reads the answer even when sending the
# request failed (a refusal at accept is written and the socket closed,
# so the send may meet a closed socket), and a reset after the answer
# ends it (a request that came just after promfork read what was there).
REGISTER = """
import json, socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(15)
s.connect(sys.argv[1])
try:
    s.sendall(b"POST /v1/workers HTTP/1.1\\r\\nHost: promfork\\r\\n"
              b"Content-Length: 0\\r\\nConnection: close\\r\\n\\r\\n")
except (BrokenPipeError, ConnectionResetError):
    pass
raw = b""
while True:
    try:
        chunk = s.recv(65536)
    except ConnectionResetError:
        if not raw:
            raise
        chunk = b""  # the answer, then a reset: the end, as for client.c
    if not chunk:
        break
    raw += chunk
head, _, body = raw.partition(b"\\r\\n\\r\\n")
status = int(head.split(b" ", 2)[1])
print(json.dumps([status, json.loads(body) if body.strip() else None]))
"""


def register_once(sock):
    try:
        r = subprocess.run([PYTHON, "-c", REGISTER, sock],
                           capture_output=True, text=True, timeout=20)
    except subprocess.TimeoutExpired:
        return None  # not accepted in time: no wrong answer either
    if r.returncode != 0 and "timed out" in r.stderr:
        return None
    if r.returncode != 0:
        return ("error", r.stderr.strip().splitlines()[-1:])
    return tuple(json.loads(r.stdout))


def test():
    d = tmpdir()
    low = free_port_range(16)
    web = free_port()
    sock = os.path.join(d, "pf.sock")
    sd = os.path.join(d, "sd.json")
    errlog = os.path.join(d, "promfork.log")
    err = open(errlog, "w")
    pf = start(["prlimit", "--nofile=%d:%d" % (LIMIT, LIMIT), "--",
                PROMFORK, "--port-range", "%d-%d" % (low, low + 15),
                "--socket", sock, "--sd-file", sd, "--target-host",
                "127.0.0.1", "--listen", "127.0.0.1:%d" % web],
               stderr=err)
    wait_until(lambda: os.path.exists(sock) or pf.poll() is not None,
               what="promfork's socket")
    check(pf.poll() is None, "promfork runs with %d descriptors" % LIMIT)
    for i in range(WORKERS):
        start(["/bin/sh", "-c", 'port=$("$PROMFORK" lease) || exit 1; '
               'exec "$PY" "$WORKER" "$port" %d' % i],
              env={"PROMFORK_SOCKET": sock, "PROMFORK": PROMFORK,
                   "PY": PYTHON, "WORKER": WORKER})
    url = "http://127.0.0.1:%d/workers/metrics" % web

    def four_up():
        s, _, body = http_get(url, timeout=5)
        up = [ln for ln in body.splitlines()
              if ln.startswith(b"promfork_worker_up{")]
        return s == 200 and len(up) == WORKERS and \
            all(ln.endswith(b" 1") for ln in up)
    wait_until(four_up, timeout=20, what="every worker answers the fan-out")
    before = sum(1 for _ in open(errlog))

    stop_at = time.monotonic() + FLOOD_S
    answers = []

    def fanout():
        while time.monotonic() < stop_at:
            try:
                http_get(url, timeout=2)
            except OSError:
                pass

    def registrations():
        while time.monotonic() < stop_at:
            answers.append(register_once(sock))

    idle = []
    for _ in range(IDLE):
        try:
            idle.append(socket.create_connection(("127.0.0.1", web), 2))
        except OSError:
            break
    threads = [threading.Thread(target=fanout) for _ in range(20)]
    threads += [threading.Thread(target=registrations) for _ in range(2)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    elapsed = time.monotonic() - t0
    for s in idle:
        s.close()

    lines = open(errlog).read().splitlines()[before:]
    accept = [ln for ln in lines if "accept" in ln]
    log("%d log lines in %.1f s, %d about accept; e.g. %s"
        % (len(lines), elapsed, len(accept), accept[:2]))
    kinds = {}
    for ln in lines:
        k = re.sub(r"[0-9]+", "N", ln)[:100]
        kinds[k] = kinds.get(k, 0) + 1
    log("kinds of lines: %s" % sorted(kinds.items(), key=lambda kv: -kv[1]))
    check(pf.poll() is None, "promfork survived")
    check(any("Too many open files" in ln for ln in accept),
          "promfork ran out of descriptors and said so")
    check(len(accept) <= 20 * elapsed,
          "accepting pauses: %d accept lines in %.1f s" % (len(accept),
                                                          elapsed))
    check(len(lines) <= 2000,
          "the whole log stays bounded: %d lines" % len(lines))
    got = [a for a in answers if a is not None]
    log("registration answers: %s" % sorted(set(
        (str(a[0]), json.dumps(a[1])[:80]) for a in got)))
    check(got, "some registrations were answered during the flood")
    wrong = [a for a in got if not (a[0] in (200, 201) or (
        a[0] == 503 and "out of file descriptors" in a[1]["error"]))]
    check(not wrong, "all %d registration answers are a lease or 503 out of "
          "file descriptors (%d were 503); wrong: %s"
          % (len(got), sum(1 for a in got if a[0] == 503), wrong[:3]))

    wait_until(four_up, timeout=20, what="the fan-out works again")
    a = wait_until(lambda: (lambda r: r if r and r[0] == 201 else None)(
        register_once(sock)), timeout=20, what="a registration after")
    check(a[0] == 201, "registrations work again")
    stop(pf)


run_test(test)
