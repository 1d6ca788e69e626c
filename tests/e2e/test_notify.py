"""systemd readiness (Type=notify) without systemd: promfork sends READY=1
on $NOTIFY_SOCKET only once its socket and sd file exist, STOPPING=1 when
it stops, and the wrapped command does not inherit NOTIFY_SOCKET.  Logs
with --log-format=json are one JSON object per line.
"""

import json
import os
import signal
import socket

from harness import (PROMFORK, check, free_port_range, run_test, start,
                     stop, tmpdir, wait_until)


def test():
    d = tmpdir()
    manager = os.path.join(d, "notify")
    sd = os.path.join(d, "app.json")
    sock = os.path.join(d, "promfork.sock")
    seen = os.path.join(d, "seen")
    errlog = os.path.join(d, "stderr")
    m = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    m.bind(manager)
    m.settimeout(15)

    low = free_port_range(2)
    with open(errlog, "w") as err:
        p = start([PROMFORK, "--port-range", "%d-%d" % (low, low + 1),
                   "--sd-file", sd, "--socket", sock, "--log-format=json",
                   "--", "sh", "-c",
                   'echo "${NOTIFY_SOCKET-unset}" > "$0"; exec sleep 60',
                   seen], env={"NOTIFY_SOCKET": manager}, stderr=err)
    msg = m.recv(256).decode()
    check(msg == "READY=1", "READY=1 arrives (got %r)" % msg)
    check(os.path.exists(sock) and os.path.exists(sd),
          "the socket and the sd file exist when READY=1 arrives")

    wait_until(lambda: os.path.exists(seen) and os.path.getsize(seen) > 0,
               what="the command to start")
    stop(p, signal.SIGTERM)
    msg = m.recv(256).decode()
    check(msg == "STOPPING=1", "STOPPING=1 arrives on SIGTERM (got %r)" % msg)
    with open(seen) as f:
        check(f.read().strip() == "unset",
              "the command does not see NOTIFY_SOCKET")

    with open(errlog) as f:
        lines = [l for l in f.read().splitlines() if l.strip()]
    check(lines, "promfork logged something")
    for line in lines:
        obj = json.loads(line)
        check(set(obj) >= {"ts", "level", "msg"},
              "a JSON log line: %s" % line)


run_test(test)
