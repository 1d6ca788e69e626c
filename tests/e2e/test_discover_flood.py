"""Discovery under a listener flood (issue 15, point 12).

A local user outside the command's tree opens and closes listeners on
ports of promfork's range in a tight loop for a few seconds.  Every close
is a socket-destroy event and every new listener a socket promfork has not
seen; promfork must rate-limit its scans and /proc walks, so the CPU it
spends stays bounded (in passes and /proc walks a second, and a
generous bound on CPU: a tenth of one core), the flood's
ports are never published, and a real listener of the tree that appears
during the flood is still published.
"""

import os
import subprocess
import time

from harness import (PROMFORK, PYTHON, check, ensure_user, free_port,
                     free_port_range, http_get, log, run_test, start, stop,
                     tmpdir, wait_until)

FLOOD_S = 5.0
USER = "pftest-app2"

FLOOD = """
import socket, sys, time
low, high, end = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
n = 0
while time.monotonic() < end:
    held = []
    for port in range(low, high + 1):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            s.listen(1)
            n += 1
        except OSError:
            pass
        held.append(s)
    for s in held:
        s.close()
print(n)
"""

# The command: after a while one of its processes listens on the last port.
LATE = """
import socket, sys, time
time.sleep(float(sys.argv[2]))
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen(1)
time.sleep(60)
"""


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def counters(web):
    """promfork's discovery passes and /proc walks so far."""
    _, _, body = http_get("http://127.0.0.1:%d/metrics" % web)
    out = {}
    for line in body.decode().splitlines():
        for name in ("passes", "walks"):
            if line.startswith("promfork_discover_%s_total " % name):
                out[name] = int(float(line.split()[1]))
    return out


def test():
    ensure_user(USER)
    d = tmpdir()
    low = free_port_range(16)
    high = low + 15
    sd = os.path.join(d, "sd.json")
    web = free_port()
    pf = start([PROMFORK, "--discover", "--port-range", "%d-%d" % (low, high),
                "--listen", "127.0.0.1:%d" % web,
                "--socket", os.path.join(d, "s"), "--sd-file", sd,
                "--target-host", "127.0.0.1", "--log-level", "warn", "--",
                PYTHON, "-c", LATE, str(high), "%.1f" % (FLOOD_S / 2 + 1)])
    wait_until(lambda: os.path.exists(sd), what="the sd file")
    time.sleep(1)  # let promfork settle: what is measured is the flood
    c0 = counters(web)
    cpu0, t0 = cpu_seconds(pf.pid), time.monotonic()
    fl = subprocess.run(["setpriv", "--reuid", USER, "--regid", USER,
                         "--clear-groups", PYTHON, "-c", FLOOD, str(low),
                         str(high - 1), str(time.monotonic() + FLOOD_S)],
                        capture_output=True, text=True, timeout=FLOOD_S + 30)
    cpu = cpu_seconds(pf.pid) - cpu0
    elapsed = time.monotonic() - t0
    c1 = counters(web)
    passes, walks = c1["passes"] - c0["passes"], c1["walks"] - c0["walks"]
    listeners = int(fl.stdout.strip() or 0)
    log("%d listeners opened and closed in %.1f s by %s; promfork spent "
        "%.2f CPU seconds (%.0f%% of a core) in %d passes and %d /proc walks"
        % (listeners, elapsed, USER, cpu, 100 * cpu / elapsed, passes,
           walks))
    check(listeners > 1000, "the flood ran (%d listeners)" % listeners)
    # 50 passes a second after destroy events and 5 by the clock; 5 walks
    check(passes <= 60 * elapsed and walks <= 6 * elapsed,
          "scans and walks are rate-limited: %d passes, %d walks in %.1f s"
          % (passes, walks, elapsed))
    check(cpu <= 0.1 * elapsed, "promfork's CPU stays bounded: %.2f s in "
          "%.1f s" % (cpu, elapsed))
    groups = wait_until(lambda: (lambda g: g if len(g) == 1 else None)(
        __import__("json").load(open(sd))), timeout=10,
        what="the command's late listener is published")
    check(groups[0]["targets"] == ["127.0.0.1:%d" % high],
          "only the command's listener is published, none of the flood's")
    stop(pf)


run_test(test)
