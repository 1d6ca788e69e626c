"""Helpers shared by the gunicorn and uWSGI end-to-end tests.

Both run contrib/examples/app.py (counter app_requests_total{path="/"})
under promfork with a real Prometheus reading promfork's file_sd
directory, and check what Prometheus sees.
"""

import os
import re
import signal

from harness import (SOURCE, Prometheus, TestFailure, check, http_get, log,
                     wait_until)

CONTRIB = os.path.join(SOURCE, "contrib")
EXAMPLES = os.path.join(CONTRIB, "examples")
COUNTER = 'app_requests_total{path="/"}'
JOB = "app"
# The workers' metrics servers listen on loopback only.
ENV = {"PROMFORK_METRICS_ADDR": "127.0.0.1", "PYTHONDONTWRITEBYTECODE": "1"}

_SAMPLE = re.compile(r'^app_requests_total\{path="/"\} ([0-9.eE+-]+)$', re.M)


def prometheus_for(pf):
    return Prometheus([Prometheus.file_sd(JOB, pf.sd_dir)])


def send(app_port, n):
    """n requests to the app; returns the pids that answered."""
    pids = set()
    for _ in range(n):
        status, _, body = http_get("http://127.0.0.1:%d/" % app_port,
                                   timeout=10)
        if status != 200:
            raise TestFailure("app answered %d: %r" % (status, body))
        pids.add(int(body.split()[-1]))
    return pids


def worker_count(port):
    """app_requests_total{path="/"} read straight from a worker's port."""
    status, _, body = http_get("http://127.0.0.1:%d/metrics" % port,
                               timeout=5)
    if status != 200:
        raise ValueError("worker port %d answered %d" % (port, status))
    m = _SAMPLE.search(body.decode())
    return int(float(m.group(1))) if m else 0


def direct_sum(pf):
    return sum(worker_count(p) for p in pf.workers().values())


def prom_sum(prom, job=JOB):
    v = prom.scalar('sum(app_requests_total{job="%s",path="/"})' % job)
    return int(v) if v is not None else 0


def wait_prom_sum(prom, expected, what, timeout=20.0, job=JOB):
    """Waits until Prometheus' sum over all workers (of job) equals
    expected."""
    last = []

    def ok():
        last[:] = [prom_sum(prom, job)]
        return last[0] == expected
    try:
        wait_until(ok, timeout=timeout, interval=0.25,
                   what="%s: Prometheus sum == %d" % (what, expected))
    except TestFailure as e:
        raise TestFailure("%s; last sum: %s" % (e, last))
    check(True, "%s: sum(app_requests_total{job=\"%s\",path=\"/\"}) in "
          "Prometheus == %d" % (what, job, expected))


def _safe(fn):
    try:
        return fn()
    except Exception as e:  # only for a message
        return e


def leases(pf):
    """{worker slot: pid} from promfork's registration API."""
    return {int(l["worker"]): int(l["pid"]) for l in pf.leases()}


def wait_leases(pf, pred, what, timeout=30.0):
    return wait_until(lambda: (lambda l: l if pred(l) else None)(leases(pf)),
                      timeout=timeout, interval=0.1, what=what)


def kill_replaced(pf, slot, what="worker"):
    """kill -9 of the `what` in slot; waits until the server replaced it
    and checks that the replacement took that slot and every other kept
    its own.  Returns the leases after."""
    before = leases(pf)
    victim = before[slot]
    log("# kill -9 %s %d (pid %d)" % (what, slot, victim))
    os.kill(victim, signal.SIGKILL)
    after = wait_leases(pf, lambda l: len(l) == len(before) and victim not in
                        l.values(), "a replacement for the killed %s" % what)
    check(sorted(after) == sorted(before) and after[slot] != victim
          and all(after[s] == before[s] for s in before if s != slot),
          "the replacement (pid %d) took the freed slot %d, the others kept "
          "theirs" % (after[slot], slot))
    return after


def check_targets(pf, prom, n, what, labels=None, timeout=30.0):
    """Waits until Prometheus has exactly n targets, all up (none down),
    matching the sd file; checks their worker labels are `labels` when
    given, else n distinct ones, and port == LOW + worker.  Returns the
    sorted labels."""
    seen = []

    def ok():
        ts = prom.targets(JOB)
        seen[:] = [(l.get("worker"), h) for l, h in ts]
        if len(ts) != n or any(h != "up" for _, h in ts):
            return None
        got = sorted((l.get("worker", "") for l, _ in ts), key=int)
        return got if got == sorted(pf.workers(), key=int) else None
    try:
        got = wait_until(ok, timeout=timeout, interval=0.25,
                         what="%s: %d up targets, none down, as in the sd "
                         "file" % (what, n))
    except TestFailure as e:
        raise TestFailure("%s; Prometheus targets (worker, health): %s; "
                          "sd file: %s" % (e, seen, _safe(pf.workers)))
    if labels is not None:
        check(got == [str(x) for x in sorted(labels)],
              "%s: %d targets up, none down, worker labels %s"
              % (what, n, ",".join(got)))
    else:
        check(len(set(got)) == n,
              "%s: %d targets up, none down, distinct worker labels %s"
              % (what, n, ",".join(got)))
    bad = [l["instance"] for l, _ in prom.targets(JOB)
           if int(l["instance"].rsplit(":", 1)[1]) != pf.low + int(l["worker"])]
    check(not bad, "%s: every target's port is LOW + its worker label%s"
          % (what, " (not: %s)" % bad if bad else ""))
    return got


def signal_command(pf, sig):
    """Sends sig to promfork, which forwards it to the command."""
    log("# kill -%s promfork (forwarded to the command)"
        % signal.Signals(sig).name)
    os.kill(pf.proc.pid, sig)


def end(pf, prom):
    """SIGTERM to promfork: the command stops, the file ends as [] and
    Prometheus drops every target."""
    rc = pf.stop(signal.SIGTERM, timeout=40)
    check(rc == 0, "promfork exits 0 after SIGTERM (got %s)" % rc)
    check(pf.groups() == [], "the sd file ends as []")
    wait_until(lambda: prom.targets(JOB) == [], timeout=15, interval=0.25,
               what="Prometheus to drop every target")
    check(True, "Prometheus has no target left")
