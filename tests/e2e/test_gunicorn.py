"""gunicorn under promfork, watched by a real Prometheus (file_sd, 1 s).

contrib/examples/app.py with contrib/gunicorn/gunicorn.conf.py, 3 workers:
- Prometheus shows exactly one up target per worker, worker="0".."2",
  none down; after 30 requests sum(app_requests_total) == 30;
- kill -9 of a worker: gunicorn replaces it, the new worker takes the
  freed slot, 3 up targets again and the sum follows (fresh counts);
- HUP (new workers start before the old ones stop, so the range holds
  2N+2 ports): 3 up targets, none down, all new processes, the sum starts
  over; a second HUP: labels stay within 0..2N-1;
- TTIN twice, TTOU three times sent to promfork: 4, 5, then 2 targets;
- SIGTERM: promfork exits 0, the file ends as [], Prometheus drops all.
Then --preload with --max-requests 5: 3 ports (not 1), recycled workers
take the freed slots back, and Prometheus' sum equals the live workers'.
"""

import collections
import os
import signal
import socket

from harness import (Promfork, check, free_port, log, run_logged,
                     run_test, wait_until)
from apptest import (CONTRIB, ENV, EXAMPLES, check_targets, direct_sum, end,
                     kill_replaced, leases, prom_sum, prometheus_for, send, signal_command,
                     wait_leases, wait_prom_sum, worker_count)

GUNICORN = "/usr/bin/gunicorn"
CONF = os.path.join(CONTRIB, "gunicorn", "gunicorn.conf.py")
N = 3


def gunicorn(app_port, *extra):
    return [GUNICORN, "-c", CONF, "-b", "127.0.0.1:%d" % app_port,
            "-w", str(N), "--chdir", EXAMPLES, "--graceful-timeout", "5",
            "--log-level", "warning"] + list(extra) + ["app:application"]


def wait_listening(port):
    def ok():
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    wait_until(ok, timeout=20, what="gunicorn to listen on %d" % port)


def start(n_ports, argv, logf):
    pf = Promfork(n_ports, argv, env=ENV, stdout=logf, stderr=logf)
    prom = prometheus_for(pf)
    return pf, prom


def children(pid):
    with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
        return [int(x) for x in f.read().split()]


def ppid(pid):
    with open("/proc/%d/stat" % pid) as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


def main_run(logf):
    app_port = free_port()
    pf, prom = start(2 * N + 2, gunicorn(app_port), logf)
    all_slots = set(range(2 * N))

    pf.wait_workers(N)
    check_targets(pf, prom, N, "start", labels=range(N))
    wait_listening(app_port)
    pids = send(app_port, 30)
    log("# 30 requests answered by %d workers" % len(pids))
    wait_prom_sum(prom, 30, "30 requests")
    per = {r["metric"]["worker"]: int(float(r["value"][1])) for r in
           prom.query('app_requests_total{job="app",path="/"}')}
    direct = {w: worker_count(p) for w, p in pf.workers().items()}
    check(all(per.get(w, 0) == c for w, c in direct.items()),
          "per worker, Prometheus has each worker's own count: %s" % per)

    # kill -9: gunicorn replaces the worker, which takes the freed slot
    lost = worker_count(pf.low + 1)
    log("# worker 1 served %d requests" % lost)
    kill_replaced(pf, 1)
    check_targets(pf, prom, N, "after kill -9", labels=range(N))
    send(app_port, 20)
    wait_prom_sum(prom, 30 - lost + 20, "after kill -9 and 20 more requests")

    # HUP: new workers start before the old ones stop
    for i in (1, 2):
        old = set(leases(pf).values())
        signal_command(pf, signal.SIGHUP)
        wait_leases(pf, lambda l: len(l) == N and not old & set(l.values()),
                    "HUP %d: %d new workers, every old one gone" % (i, N))
        labels = check_targets(pf, prom, N, "after HUP %d" % i)
        check({int(x) for x in labels} <= all_slots,
              "after HUP %d the labels stay within 0..%d" % (i, 2 * N - 1))
        send(app_port, 15)
        wait_prom_sum(prom, 15, "after HUP %d and 15 requests" % i)

    # TTIN / TTOU, forwarded by promfork to gunicorn
    n = N
    for sig, delta in ((signal.SIGTTIN, 1), (signal.SIGTTIN, 1),
                       (signal.SIGTTOU, -1), (signal.SIGTTOU, -1),
                       (signal.SIGTTOU, -1)):
        n += delta
        signal_command(pf, sig)
        wait_leases(pf, lambda l: len(l) == n, "%d workers" % n)
        check_targets(pf, prom, n, "after %s" % signal.Signals(sig).name)
    send(app_port, 10)
    wait_until(lambda: prom_sum(prom) == direct_sum(pf), timeout=20,
               interval=0.25, what="Prometheus sum == the workers' own")
    check(True, "after TTIN/TTOU Prometheus' sum equals the %d live "
          "workers' own counts (%d)" % (n, direct_sum(pf)))
    end(pf, prom)


def preload_max_requests_run(logf):
    maxreq = 5
    app_port = free_port()
    pf, prom = start(2 * N + 2, gunicorn(app_port, "--preload",
                                         "--max-requests", str(maxreq),
                                         "--max-requests-jitter", "0"), logf)
    pf.wait_workers(N)
    check_targets(pf, prom, N, "--preload", labels=range(N))
    master = wait_until(lambda: children(pf.proc.pid), timeout=10,
                        what="gunicorn master")[0]
    first = leases(pf)
    check(len(set(first.values())) == N and
          all(ppid(p) == master for p in first.values()),
          "--preload: %d ports held by %d distinct workers of the master"
          % (N, N))

    wait_listening(app_port)
    answered = collections.Counter()
    for _ in range(38):  # not a multiple of maxreq: some count stays
        answered.update(send(app_port, 1))
    done = {p for p, c in answered.items() if c >= maxreq}
    check(len(answered) >= 38 // maxreq + 1 and
          all(c <= maxreq for c in answered.values()),
          "--max-requests %d: 38 requests were answered by %d processes"
          % (maxreq, len(answered)))
    now = wait_leases(pf, lambda l: len(l) == N and not done & set(l.values()),
                      "every recycled worker replaced")
    check(sorted(now) == list(range(N)),
          "recycled workers' replacements took the freed slots 0..%d"
          % (N - 1))
    check_targets(pf, prom, N, "after recycling", labels=range(N))
    expected = sum(c for p, c in answered.items() if p not in done)
    check(direct_sum(pf) == expected,
          "the live workers counted the %d requests of theirs" % expected)
    wait_prom_sum(prom, expected, "after recycling")
    end(pf, prom)


def test(logf):
    log("## gunicorn: counts, kill -9, HUP, TTIN/TTOU")
    main_run(logf)
    log("## gunicorn --preload --max-requests")
    preload_max_requests_run(logf)


run_test(lambda: run_logged(test, "promfork/gunicorn"))
