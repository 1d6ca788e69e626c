"""Standalone mode end to end: one promfork with no COMMAND that separate
apps register with, keeping its leases in a state file.

Three apps (started by the test, not by promfork) lease ports with
`promfork lease` and serve metrics there; Prometheus scrapes them.  Then
promfork is killed with SIGKILL and started again with the same state
file: the sd file is byte for byte the same before and after, Prometheus
keeps all three targets up, and registrations go on.  An app that dies
while promfork is down is dropped at the restart, the others keep slot and
port.  A user who is not allowed is refused.
"""

import os
import signal
import subprocess

from harness import (PROMFORK, PYTHON, SOURCE, Prometheus, Promfork, check,
                     http_get, run_test, start, stop, tmpdir, unix_request,
                     wait_until)

WORKER = os.path.join(SOURCE, "tests", "e2e", "spawn_worker.py")


def app(pf, name):
    """An app process that leases a port for itself, then serves on it."""
    script = ('port=$("$PROMFORK" lease --label app=%s) || exit 1; '
              'exec "$PY" "$WORKER" "$port" %s' % (name, name))
    return start(["/bin/sh", "-c", script],
                 env={"PROMFORK_SOCKET": pf.socket, "PROMFORK": PROMFORK,
                      "PY": PYTHON, "WORKER": WORKER})


def serving(port):
    status, _, body = http_get("http://127.0.0.1:%d/metrics" % port,
                               timeout=2)
    return status == 200 and b"spawn_worker_info" in body


def restart(pf, log):
    """Starts promfork again with the same arguments; waits until it
    answers on its socket (the old socket file is still there)."""
    pf.proc = start(pf.argv, stderr=log)

    def answers():
        if pf.proc.poll() is not None:
            raise AssertionError("promfork exited with %d"
                                 % pf.proc.returncode)
        return unix_request(pf.socket, "GET", "/v1/workers")[0] == 200
    wait_until(answers, timeout=10, what="the restarted promfork")


def sd_bytes(pf):
    with open(pf.sd_file, "rb") as f:
        return f.read()


def test():
    d = tmpdir()
    log = open(os.path.join(d, "promfork.log"), "w")
    pf = Promfork(6, None, extra=["--state-file",
                                  os.path.join(d, "state.json")], stderr=log)

    apps = {name: app(pf, name) for name in ("a", "b", "c")}
    workers = pf.wait_workers(3)
    check(sorted(workers.values()) == [pf.low, pf.low + 1, pf.low + 2],
          "three apps leased the three lowest ports")
    for w, port in workers.items():
        wait_until(lambda: serving(port), timeout=10,
                   what="worker %s serving" % w)
    by_app = {g["labels"]["app"]: g["labels"]["worker"] for g in pf.groups()}
    leases = {l["pid"]: l["worker"] for l in pf.leases()}
    check(sorted(leases) == sorted(p.pid for p in apps.values()),
          "each app's own pid holds a lease")

    prom = Prometheus([Prometheus.file_sd("apps", pf.sd_dir)])
    check(prom.wait_up(3, job="apps") == ["0", "1", "2"],
          "Prometheus scrapes the three apps")

    # kill -9 of promfork and a restart: nothing moves
    before = sd_bytes(pf)
    pf.proc.send_signal(signal.SIGKILL)
    pf.proc.wait()
    check(sd_bytes(pf) == before, "the sd file outlives promfork's death")
    restart(pf, log)
    check(sd_bytes(pf) == before,
          "after the restart the sd file is byte for byte the same")
    check({l["pid"]: l["worker"] for l in pf.leases()} == leases,
          "every app is taken up with its own slot")
    check(prom.wait_up(3, job="apps") == ["0", "1", "2"],
          "Prometheus still has the three targets up")

    # registrations go on, and leases still end when their process does
    apps["d"] = app(pf, "d")
    workers = pf.wait_workers(4)
    check(workers["3"] == pf.low + 3, "a new app after the restart gets "
          "the next slot, worker 3")
    apps["b"].send_signal(signal.SIGKILL)
    apps["b"].wait()
    workers = pf.wait_workers(3)
    check(by_app["b"] not in workers,
          "a taken-up app that exits loses its lease (worker %s)"
          % by_app["b"])

    # an app that dies while promfork is down is dropped at the restart
    pf.proc.send_signal(signal.SIGKILL)
    pf.proc.wait()
    apps["c"].send_signal(signal.SIGKILL)
    apps["c"].wait()
    restart(pf, log)
    workers = pf.wait_workers(2)
    check(sorted(workers) == sorted([by_app["a"], "3"]),
          "the dead app is dropped, the live ones keep slot and port: %r"
          % workers)
    check(workers[by_app["a"]] == pf.low + int(by_app["a"]),
          "app a kept its port")

    # a user not allowed is refused (only when the test can be another):
    # without --allow-uid/--allow-gid the socket is 0600, and past a mode
    # that lets everyone in the accept turns the user away
    if os.geteuid() == 0:
        os.chmod(pf.dir, 0o755)  # the socket's directory, not the socket
        check(os.stat(pf.socket).st_mode & 0o777 == 0o600,
              "the socket is 0600: root and promfork's user only")

        def lease_as_nobody():
            return subprocess.run([PROMFORK, "lease", "--socket", pf.socket],
                                  user=65534, group=65534,
                                  capture_output=True, timeout=10)
        r = lease_as_nobody()
        check(r.returncode == 1 and b"Permission denied" in r.stderr,
              "uid 65534 cannot connect: %r" % r.stderr)
        os.chmod(pf.socket, 0o666)
        r = lease_as_nobody()
        check(r.returncode == 1 and b"--allow-uid 65534" in r.stderr,
              "uid 65534 may not register: %r" % r.stderr)

    # TERM: promfork goes, the apps and their targets stay for the next one
    kept = sd_bytes(pf)
    check(stop(pf.proc) == 0, "promfork exits 0 on TERM")
    check(sd_bytes(pf) == kept, "standalone leaves the sd file as it was")
    restart(pf, log)
    check(sd_bytes(pf) == kept, "and the next promfork takes them up")
    check(stop(pf.proc) == 0, "promfork exits 0 on TERM")
    log.close()


if __name__ == "__main__":
    run_test(test)
