"""Helpers shared by the Node.js end-to-end tests (cluster module, PM2).

Both run contrib/node/app.js (prom-client counter app_requests_total{path="/"}
in every worker) under promfork with --listen, and a real Prometheus with two
jobs: "app", every worker's own port from the sd file (raw per-process
values), and "fanout", promfork's /workers/metrics (where issue 14's
continuity carries the totals of recycled workers).
"""

import json
import os
import signal

from harness import (SOURCE, Prometheus, Promfork, TestFailure,
                     check, expo_samples, fanout_config, free_port, http_get,
                     log, tmpdir, wait_until)
from apptest import (JOB, check_targets, direct_sum, prom_sum, send,
                     worker_count)

NODE = "/usr/bin/node"
NODE_DIR = os.path.join(SOURCE, "contrib", "node")
APP = os.path.join(NODE_DIR, "app.js")
MODULES = os.path.join(NODE_DIR, "node_modules")
FANOUT = "fanout"
COUNTER = 'app_requests_total{path="/"}'


def require_modules():
    """Fails with what to do when the pinned npm modules are missing."""
    with open(os.path.join(NODE_DIR, "package.json")) as f:
        pins = json.load(f)["dependencies"]
    for name, version in sorted(pins.items()):
        try:
            with open(os.path.join(MODULES, name, "package.json")) as f:
                got = json.load(f)["version"]
        except OSError:
            raise TestFailure("npm module %s is missing: run `npm ci` in "
                              "contrib/node (contrib/test.sh does)" % name)
        if got != version:
            raise TestFailure("npm module %s is %s, package.json pins %s: run "
                              "`npm ci` in contrib/node" % (name, got, version))
    check(os.access(NODE, os.X_OK), "node and the pinned modules %s are there"
          % ", ".join("%s@%s" % kv for kv in sorted(pins.items())))


def start(n_ports, argv, env, logf):
    """promfork (with --listen) wrapping argv, and Prometheus scraping both
    the sd file (job "app") and /workers/metrics (job "fanout")."""
    listen = "127.0.0.1:%d" % free_port()
    env = dict(env, PROMFORK_METRICS_ADDR="127.0.0.1", PORT=str(free_port()))
    pf = Promfork(n_ports, argv, extra=["--listen", listen], env=env,
                  stdout=logf, stderr=logf)
    pf.listen = listen
    pf.app_port = int(env["PORT"])
    prom = Prometheus([Prometheus.file_sd(JOB, pf.sd_dir),
                       fanout_config(FANOUT, listen)])
    return pf, prom


def fanout_text(pf, timeout_header=None):
    headers = {}
    if timeout_header:
        headers["X-Prometheus-Scrape-Timeout-Seconds"] = timeout_header
    status, _, body = http_get("http://%s/workers/metrics" % pf.listen,
                               timeout=10, headers=headers)
    if status != 200:
        raise TestFailure("GET /workers/metrics answered %d" % status)
    return body.decode()


def fanout_sum(pf):
    """The counter summed over the slots of one GET /workers/metrics."""
    return int(sum(v for _, v in expo_samples(fanout_text(pf),
                                              "app_requests_total", path="/")))


def prom_fanout_sum(prom):
    v = prom.scalar('sum(app_requests_total{job="%s",path="/"})' % FANOUT)
    return int(v) if v is not None else None


def _wait_equal(fn, expected, what, timeout=20.0):
    last = []

    def ok():
        last[:] = [fn()]
        return last[0] == expected
    try:
        wait_until(ok, timeout=timeout, interval=0.25,
                   what="%s == %d" % (what, expected))
    except TestFailure as e:
        raise TestFailure("%s; last: %s" % (e, last))


def check_sums(pf, prom, raw, total, what):
    """raw: what the live workers counted (their own ports, job "app").
    total: every request served since the start.  Before any worker was
    recycled both are equal and every view must show it; after, the
    fan-out shows total only with continuity (issue 14)."""
    _wait_equal(lambda: prom_sum(prom), raw,
                "%s: Prometheus sum over the workers' own targets" % what)
    check(direct_sum(pf) == raw,
          "%s: sum(%s) == %d in Prometheus (job %s) and on the workers' "
          "own ports" % (what, COUNTER, raw, JOB))
    # A recycled worker's counts stay in its slot's totals (issue 14).
    _wait_equal(lambda: prom_fanout_sum(prom), total,
                "%s: Prometheus sum through /workers/metrics" % what)
    got = fanout_sum(pf)
    check(got == total, "%s: sum(%s) == %d through /workers/metrics, in "
          "Prometheus (job %s) and in one GET (got %d)"
          % (what, COUNTER, total, FANOUT, got))


def kill_one(pf, prom, n, total, replaced):
    """kill -9 of the worker in the second slot; once the server replaced
    it (`replaced` says how), 20 more requests.  Returns what the live
    workers counted then; total + 20 were served."""
    slot, victim = sorted(leases(pf).items())[1]
    lost = worker_count(pf.low + slot)
    note("kill -9 worker %d (pid %d, %d requests)" % (slot, victim, lost))
    os.kill(victim, signal.SIGKILL)
    wait_until(lambda: (lambda l: len(l) == n and victim not in l.values())(
        leases(pf)), timeout=30, what=replaced)
    check_targets(pf, prom, n, "after kill -9")
    send(pf.app_port, 20)
    check_sums(pf, prom, total + 20 - lost, total + 20,
               "after kill -9 and 20 more requests")
    return total + 20 - lost


def by_worker(text, name, **labels):
    """{worker label: value} of one series per worker of a fan-out answer."""
    return {l["worker"]: v for l, v in expo_samples(text, name, **labels)}


def leases(pf):
    """{worker slot: pid} from promfork's registration API."""
    return {int(l["worker"]): int(l["pid"]) for l in pf.leases()}


def note(msg):
    log("# " + msg)


def with_log(run, name):
    """Checks the npm modules, then runs run(logf) with the log of promfork
    and the app in a file, whose tail is shown when the test fails."""
    require_modules()
    logname = os.path.join(tmpdir(), "log")
    with open(logname, "w") as logf:
        try:
            run(logf)
        except BaseException:
            logf.flush()
            with open(logname) as f:
                note("%s (tail)\n%s" % (name, f.read()[-6000:]))
            raise
