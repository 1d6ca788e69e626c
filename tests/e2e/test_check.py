"""promfork --check, end to end: exit 0 for a usable setup, with a port of
the range that another process listens on reported as a warning naming that
process's pid; exit 2 when no port of the range is free, when the sd
directory is missing, when the socket belongs to a running promfork or for a
bad option.  --check needs no COMMAND, never runs one, and leaves no socket
or file behind.
"""

import os
import socket
import subprocess

from harness import (PROMFORK, PYTHON, Promfork, check, free_port_range, log,
                     run_test, start, tmpdir, wait_until)

HOLD = """
import socket, sys, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1])))
s.listen()
open(sys.argv[2], "w").close()
time.sleep(120)
"""


def run_check(args):
    r = subprocess.run([PROMFORK, "--check"] + args, capture_output=True,
                       text=True, timeout=60)
    log("$ promfork --check %s -> %d\n%s%s" % (" ".join(args), r.returncode,
                                               r.stdout, r.stderr))
    return r


def test():
    d = tmpdir()
    sd_dir = os.path.join(d, "sd")
    os.mkdir(sd_dir)
    sd = os.path.join(sd_dir, "app.json")
    sock = os.path.join(d, "promfork.sock")
    low = free_port_range(4)
    rng = "%d-%d" % (low, low + 3)
    ran = os.path.join(d, "ran")

    r = run_check(["--port-range", rng, "--sd-file", sd, "--socket", sock,
                   "--", "touch", ran])
    check(r.returncode == 0 and "usable, 0 warnings" in r.stdout,
          "a free range, a writable sd directory: exit 0")
    check(not os.path.exists(ran), "the COMMAND is not run")
    check(sorted(os.listdir(d)) == ["sd"] and os.listdir(sd_dir) == [],
          "no socket, sd file or probe file is left behind")

    r = run_check(["--port-range", rng])
    check(r.returncode == 0, "no COMMAND is needed")

    ready = os.path.join(d, "holding")
    holder = start([PYTHON, "-c", HOLD, str(low + 2), ready])
    wait_until(lambda: os.path.exists(ready), what="the port holder")
    r = run_check(["--port-range", rng, "--sd-file", sd])
    check(r.returncode == 0, "a held port is only a warning: exit 0")
    check("port %d is held by pid %d" % (low + 2, holder.pid) in r.stdout,
          "the held port is reported with its holder's pid")
    check("3 of 4 free" in r.stdout, "the report counts the free ports")

    r = run_check(["--port-range", "%d-%d" % (low + 2, low + 2)])
    check(r.returncode == 2 and "none of the 1 ports" in r.stdout,
          "a range with no free port: exit 2")

    r = run_check(["--port-range", rng, "--sd-file",
                   os.path.join(d, "missing", "app.json")])
    check(r.returncode == 2 and "does not exist" in r.stdout,
          "a missing sd directory: exit 2")
    check(not os.path.exists(os.path.join(d, "missing")),
          "the missing directory is not created")

    pf = Promfork(2, ["sleep", "60"])
    r = run_check(["--port-range", rng, "--socket", pf.socket])
    check(r.returncode == 2 and "in use" in r.stdout,
          "the socket of a running promfork: exit 2")
    check(os.path.exists(pf.socket) and pf.proc.poll() is None,
          "the running promfork keeps its socket")

    with socket.socket(socket.AF_UNIX) as s:
        s.bind(sock)
    r = run_check(["--port-range", rng, "--socket", sock])
    check(r.returncode == 0, "a stale socket file is fine: a start replaces "
          "it")

    r = run_check(["--port-range", "9463-9400"])
    check(r.returncode == 2 and "reversed" in r.stderr,
          "a bad option: exit 2 with the reason")


run_test(test)
