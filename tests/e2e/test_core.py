"""promfork's core, end to end: a pre-fork program with 4 workers.

Distinct ports and worker labels 0..3; kill -9 of a worker removes its
target and the replacement takes the same slot; every forwarded signal
reaches the command; SIGTERM leaves [] and promfork exits with the
command's status; promtool accepts a config reading the file; outsiders
cannot register.
"""

import json
import os
import signal
import subprocess
import time

from harness import (PYTHON, SOURCE, Promfork, check, run_test, tmpdir,
                     unix_request, wait_until, http_get)

PREFORK = os.path.join(SOURCE, "tests", "e2e", "prefork.py")
FORWARDED = ["SIGTERM", "SIGINT", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2",
             "SIGTTIN", "SIGTTOU", "SIGWINCH"]


def test():
    d = tmpdir()
    siglog = os.path.join(d, "signals")
    pf = Promfork(8, [PYTHON, PREFORK, "4"],
                  env={"PREFORK_TERM_STATUS": "3",
                       "PREFORK_SIGNAL_LOG": siglog})
    workers = pf.wait_workers(4)
    check(sorted(workers) == ["0", "1", "2", "3"],
          "worker labels are 0..3: %s" % sorted(workers))
    check(sorted(workers.values()) == list(range(pf.low, pf.low + 4)),
          "4 distinct ports, the lowest of the range")
    groups = pf.groups()
    check(all(g["labels"].get("role") == "web" for g in groups),
          "the workers' own labels are published")
    check([g["labels"]["worker"] for g in groups] == ["0", "1", "2", "3"],
          "groups are sorted by worker")
    for w, port in workers.items():
        status, _, body = wait_until(
            lambda: http_get("http://127.0.0.1:%d/metrics" % port),
            timeout=10, what="worker %s to listen" % w)
        check(status == 200 and b"prefork_requests_total" in body,
              "worker %s serves metrics on its own port %d" % (w, port))

    # kill -9 one worker: its target goes, the replacement takes the slot
    leases = {str(l["worker"]): l for l in pf.leases()}
    victim = leases["2"]["pid"]
    os.kill(victim, signal.SIGKILL)
    wait_until(lambda: all(l["pid"] != victim for l in pf.leases()),
               timeout=5, what="the killed worker's lease to end")
    wait_until(lambda: (lambda l: l.get("2") and l["2"]["pid"] != victim)(
        {str(x["worker"]): x for x in pf.leases()}), timeout=10,
        what="a replacement in slot 2")
    workers2 = pf.wait_workers(4)
    check(workers2 == workers,
          "after kill -9 the replacement has the same slot and port")

    # promtool accepts a Prometheus config that reads the generated file
    cfg = os.path.join(d, "prometheus.yml")
    with open(cfg, "w") as f:
        json.dump({"scrape_configs": [{
            "job_name": "app",
            "file_sd_configs": [{"files": [os.path.join(pf.sd_dir, "*.json")]}],
        }]}, f)
    r = subprocess.run(["/usr/bin/promtool", "check", "config", cfg],
                       capture_output=True, text=True, timeout=60)
    check(r.returncode == 0, "promtool check config accepts the sd file: %s"
          % (r.stdout + r.stderr).strip().replace("\n", " | "))

    # outsiders: the test process is not in promfork's tree
    status, body = unix_request(pf.socket, "POST", "/v1/workers", {})
    check(status == 403, "registration from outside the tree is refused "
          "(%d %s)" % (status, body))
    status, body = unix_request(pf.socket, "DELETE", "/v1/workers/0")
    check(status == 403, "release from outside the tree is refused")

    # every forwarded signal reaches the command (TERM last)
    for name in FORWARDED[1:]:
        os.kill(pf.proc.pid, getattr(signal, name))
        wait_until(lambda: os.path.exists(siglog) and
                   open(siglog).read().split().count(name) >= 1,
                   timeout=5, what="%s to reach the command" % name)
    check(True, "%s reach the command" % " ".join(FORWARDED[1:]))
    rc = pf.stop(signal.SIGTERM)
    check(open(siglog).read().split()[-1] == "SIGTERM",
          "SIGTERM reaches the command")
    check(rc == 3, "promfork exits with the command's status (3), got %s"
          % rc)
    check(pf.groups() == [], "the sd file ends as []")
    check(not os.path.exists(pf.socket), "the socket is removed at exit")


run_test(test)
