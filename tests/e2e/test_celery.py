"""Celery's prefork pool under promfork, watched by a real Prometheus.

contrib/celery/tasks.py with contrib/celery/promfork_celery.py: 3 pool
processes, each registering in worker_process_init with its pool index as
the preferred slot and retiring in worker_process_shutdown; a real broker
(redis-server on a free loopback port with its own directory, started and
stopped here); Prometheus scrapes every pool process through promfork's
file_sd directory (job "app") and promfork's fan-out (job "fanout").

- one up target per pool process, worker="0".."2", none down; a few
  tasks (no process reaches max_tasks_per_child): the per-worker targets
  and the fan-out both count exactly the tasks run;
- kill -9 of pool process 1: billiard replaces it with index 1, which
  takes slot 1 again;
- max_tasks_per_child 4 and 60 more tasks: the pool processes are replaced
  many times, each replacement in its predecessor's slot; then SIGHUP
  (Celery's own reload: a warm shutdown, then the worker execs itself);
- the tasks run are those the tasks record themselves ($TASKS_RUN_LOG,
  one line per run, so a broker's redelivery cannot fool the count); at
  every step each live pool process serves exactly the tasks it ran, and
  the tasks counted in Prometheus through the fan-out equal the tasks
  run, exactly (issue 14: a slot's totals carry across its processes).

PROMFORK_E2E_CELERY_BROKER=filesystem runs the same test with kombu's
filesystem transport, for machines without python3-redis (a development
aid: the test command installs python3-redis and uses Redis; the
filesystem transport is slow, may deliver a task twice, which the run log
counts, and now and then stops delivering after the kill -9).
"""

import collections
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time

from harness import (PYTHON, Prometheus, Promfork, TestFailure,
                     check, free_port, log, run_logged, run_test, tmpdir,
                     wait_until)
from apptest import CONTRIB, check_targets, kill_replaced, leases, wait_leases

CELERY_DIR = os.path.join(CONTRIB, "celery")
HERE = os.path.dirname(os.path.abspath(__file__))
REDIS = "/usr/bin/redis-server"
N = 3
MAX_TASKS = 4
JOB, FANOUT = "app", "fanout"


def start_redis():
    """redis-server on a free loopback port, no persistence; its URL."""
    d = tmpdir()
    port = free_port()
    from harness import start
    start([REDIS, "--port", str(port), "--bind", "127.0.0.1", "--dir", d,
           "--save", "", "--appendonly", "no", "--protected-mode", "yes"],
          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def pong():
        with socket.create_connection(("127.0.0.1", port), timeout=2) as c:
            c.sendall(b"PING\r\n")
            return c.recv(64).startswith(b"+PONG")
    wait_until(pong, timeout=15, what="redis-server to answer PING")
    return "redis://127.0.0.1:%d/0" % port, "redis://127.0.0.1:%d/1" % port


def broker():
    """(broker URL, result backend URL, extra env)."""
    if importlib.util.find_spec("celery") is None:
        raise TestFailure("Celery is missing: install Debian's python3-celery "
                          "(contrib/test.sh does)")
    if os.environ.get("PROMFORK_E2E_CELERY_BROKER") == "filesystem":
        d = tmpdir()
        for sub in ("in", "processed", "results"):
            os.mkdir(os.path.join(d, sub))
        return ("filesystem://", "file://" + os.path.join(d, "results"),
                {"CELERY_FS_DIR": d})
    if not os.path.exists(REDIS):
        raise TestFailure("redis-server is missing: install Debian's "
                          "redis-server (contrib/test.sh does)")
    if importlib.util.find_spec("redis") is None:
        raise TestFailure("the Python redis client is missing: install "
                          "Debian's python3-redis (contrib/test.sh does)")
    b, r = start_redis()
    return b, r, {}


def client(env):
    """The tasks module as a client in this process."""
    os.environ.update(env)
    sys.path.insert(0, CELERY_DIR)
    import tasks
    return tasks


def run_tasks(tasks, n, timeout=30.0):
    """n tasks, waited for (bounded); how many came back.  The count of
    what ran is the run log's: a task a broker lost or ran twice shows
    there, not here."""
    results = [tasks.pid.delay() for _ in range(n)]
    deadline = time.monotonic() + timeout
    back = 0
    for r in results:
        try:
            r.get(timeout=max(deadline - time.monotonic(), 0.1))
            back += 1
        except Exception as e:  # celery's TimeoutError, a failed task
            log("# task %s did not come back: %r" % (r.id, e))
    if back < n:
        log("# %d of %d tasks came back" % (back, n))
    return back


def prom_sum(prom, job):
    v = prom.scalar('sum(celery_tasks_total{job="%s"})' % job)
    return int(v) if v is not None else 0


def own_counts(pf):
    """{slot: celery_tasks_total} read from each pool process' port."""
    from harness import http_get
    out = {}
    for w, port in pf.workers().items():
        status, _, body = http_get("http://127.0.0.1:%d/metrics" % port)
        if status != 200:
            raise ValueError("worker %s answered %d" % (w, status))
        out[w] = sum(float(l.split()[-1]) for l in body.decode().splitlines()
                     if l.startswith("celery_tasks_total{"))
    return out


def runs(path):
    """{pid: tasks it ran} from the tasks' own run log (TASKS_RUN_LOG)."""
    try:
        with open(path) as f:
            return collections.Counter(int(l.split()[1]) for l in f
                                       if l.endswith("\n"))
    except FileNotFoundError:
        return collections.Counter()


def wait_counts(pf, prom, run_log, what):
    """Waits until every live pool process serves exactly the tasks it ran
    (its own port, the per-worker targets: raw per-process values) and the
    fan-out in Prometheus sums to every task run (with continuity) or to
    the live processes' runs (without)."""
    last = []

    def ok():
        ran = runs(run_log)
        live = leases(pf)
        own = own_counts(pf)
        mine = {str(s): ran[p] for s, p in live.items()}
        live_sum = sum(mine.values())
        want = [live_sum, sum(ran.values())]
        last[:] = [own, mine, [prom_sum(prom, JOB), prom_sum(prom, FANOUT)],
                   want]
        return own == mine and last[2] == want
    try:
        wait_until(ok, timeout=20, interval=0.25, what=what)
    except TestFailure as e:
        raise TestFailure("%s; last (own counts, runs per slot, sums over "
                          "targets and fan-out, wanted): %s" % (e, last))
    check(True, "%s: every live pool process counts exactly the tasks it "
          "ran; sum(celery_tasks_total) is %d over the per-worker targets "
          "and %d through /workers/metrics (%d tasks run in all)"
          % (what, last[3][0], last[3][1], sum(runs(run_log).values())))


def test_body(logf):
    url, backend, extra = broker()
    run_log = os.path.join(tmpdir(), "runs")
    env = dict(extra, CELERY_BROKER_URL=url, CELERY_RESULT_BACKEND=backend,
               PROMFORK_METRICS_ADDR="127.0.0.1", TASKS_RUN_LOG=run_log,
               PYTHONPATH=CELERY_DIR + os.pathsep + HERE,
               PYTHONDONTWRITEBYTECODE="1")
    if extra:
        env["CELERY_CONFIG_MODULE"] = "celeryconfig_fs"
    listen = "127.0.0.1:%d" % free_port()
    argv = [PYTHON, os.path.join(CELERY_DIR, "celery_cli.py"), "-A", "tasks",
            "worker", "--pool",
            "prefork", "-c", str(N), "--max-tasks-per-child", str(MAX_TASKS),
            "--prefetch-multiplier", "1", "--without-heartbeat",
            "--without-gossip", "--without-mingle", "--loglevel", "warning",
            "-n", "promfork-e2e@%h"]
    pf = Promfork(2 * N + 2, argv, extra=["--listen", listen], env=env,
                  stdout=logf, stderr=logf)
    prom = Prometheus([Prometheus.file_sd(JOB, pf.sd_dir),
                       Prometheus.fan_out(FANOUT, listen)])
    tasks = client(env)

    pf.wait_workers(N, timeout=60)
    check_targets(pf, prom, N, "start", labels=range(N))

    # A few tasks: no pool process reaches max_tasks_per_child, so the
    # fan-out's sum is every task run, continuity or not.
    run_tasks(tasks, N)
    wait_counts(pf, prom, run_log, "%d tasks" % N)
    check(sum(runs(run_log).values()) >= N and
          prom_sum(prom, FANOUT) == sum(runs(run_log).values()),
          "before any process was replaced, the fan-out counts every task "
          "run")

    # kill -9 of pool process 1: replaced with index 1, in slot 1
    log("# pool process 1 ran %d tasks" % own_counts(pf)["1"])
    kill_replaced(pf, 1, "pool process")  # billiard gives it index 1 again
    check_targets(pf, prom, N, "after kill -9", labels=range(N))

    # Recycling: max_tasks_per_child replaces processes again and again.
    run_tasks(tasks, 60)
    ran = runs(run_log)
    check(len(ran) >= 60 // MAX_TASKS and max(ran.values()) <= MAX_TASKS,
          "60 more tasks: %d tasks ran in %d pool processes, none more "
          "than %d" % (sum(ran.values()), len(ran), MAX_TASKS))
    now = wait_leases(pf, lambda l: len(l) == N and all(
        runs(run_log)[p] < MAX_TASKS for p in l.values()),
        "%d live pool processes, each below max_tasks_per_child" % N)
    check(sorted(now) == list(range(N)),
          "recycled processes' replacements took their pool index as slot: "
          "%s" % sorted(now))
    check_targets(pf, prom, N, "after recycling", labels=range(N))
    wait_counts(pf, prom, run_log, "after recycling")

    # Celery's own reload of the pool
    old = set(leases(pf).values())
    log("# kill -HUP promfork (forwarded to Celery: warm shutdown, then "
        "the worker execs itself again, same pid)")
    os.kill(pf.proc.pid, signal.SIGHUP)
    wait_leases(pf, lambda l: len(l) == N and not old & set(l.values()),
                "HUP: %d new pool processes" % N, timeout=60)
    check(pf.proc.poll() is None, "HUP: promfork still runs")
    check_targets(pf, prom, N, "after HUP", labels=range(N))
    run_tasks(tasks, 2)
    wait_counts(pf, prom, run_log, "after HUP and 2 tasks")

    rc = pf.stop(signal.SIGTERM, timeout=40)
    check(rc == 0, "promfork exits 0 after SIGTERM (got %s)" % rc)
    check(pf.groups() == [], "the sd file ends as []")


run_test(lambda: run_logged(test_body, "promfork/celery"))
