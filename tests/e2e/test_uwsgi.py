"""uWSGI under promfork, watched by a real Prometheus (file_sd, 1 s).

contrib/examples/app.py with contrib/uwsgi/uwsgi.ini, 3 workers:
- Prometheus shows exactly one up target per worker, worker="0".."2",
  none down; after 30 requests sum(app_requests_total) == 30;
- kill -9 of a worker: the master respawns it, the new worker takes the
  freed slot, 3 up targets again and the sum follows (fresh counts);
- SIGHUP (graceful reload: the workers stop, the master re-executes
  itself, new workers start), twice: slots 0..2 again, the sum starts over;
- TTIN / TTOU (which uWSGI ignores) change nothing and stop nothing;
- SIGTERM (die-on-term): promfork exits 0, [] and no target left.
Then lazy-apps, cheaper mode with the manual algorithm and the master
FIFO: '+' twice and '-' three times grow and shrink the worker set (uWSGI's
equivalent of TTIN / TTOU) and the targets follow; 'c' (chain reload, one
worker at a time) renews every worker, the labels stay within the
peak; --max-requests 5: recycled workers take
the freed slots back and Prometheus' sum equals the live workers' counts.
"""

import collections
import os
import signal
import socket
import time

from harness import (Promfork, check, free_port, log, run_logged, run_test,
                     tmpdir, wait_until)
from apptest import (CONTRIB, ENV, check_targets, direct_sum, end,
                     kill_replaced, leases, prom_sum, prometheus_for, send, signal_command,
                     wait_leases, wait_prom_sum, worker_count)

UWSGI = "/usr/bin/uwsgi"
INI = os.path.join(CONTRIB, "uwsgi", "uwsgi.ini")
N = 3


def uwsgi(app_port, *extra):
    return [UWSGI, "--ini", INI, "--http-socket", "127.0.0.1:%d" % app_port,
            "--disable-logging", "--worker-reload-mercy", "10",
            "--reload-mercy", "10"] + list(extra)


def wait_listening(port):
    def ok():
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    wait_until(ok, timeout=20, what="uWSGI to listen on %d" % port)


def start(n_ports, argv, logf):
    pf = Promfork(n_ports, argv, env=ENV, stdout=logf, stderr=logf)
    prom = prometheus_for(pf)
    return pf, prom


def master_of(pf):
    with open("/proc/%d/task/%d/children" % (pf.proc.pid, pf.proc.pid)) as f:
        return int(f.read().split()[0])


def state(pid):
    with open("/proc/%d/stat" % pid) as f:
        return f.read().rsplit(")", 1)[1].split()[0]


def main_run(logf):
    app_port = free_port()
    pf, prom = start(N + 2, uwsgi(app_port, "--processes", str(N)), logf)

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

    # kill -9: the master respawns the worker, which takes the freed slot
    lost = worker_count(pf.low + 1)
    log("# worker 1 served %d requests" % lost)
    kill_replaced(pf, 1)
    check_targets(pf, prom, N, "after kill -9", labels=range(N))
    send(app_port, 20)
    wait_prom_sum(prom, 30 - lost + 20, "after kill -9 and 20 more requests")

    # SIGHUP: graceful reload; the master re-executes itself
    master = master_of(pf)
    for i in (1, 2):
        old = set(leases(pf).values())
        signal_command(pf, signal.SIGHUP)
        wait_leases(pf, lambda l: len(l) == N and not old & set(l.values()),
                    "reload %d: %d new workers, every old one gone" % (i, N))
        check(master_of(pf) == master, "reload %d: same master pid %d"
              % (i, master))
        check_targets(pf, prom, N, "after SIGHUP reload %d" % i,
                      labels=range(N))
        wait_listening(app_port)
        send(app_port, 15)
        wait_prom_sum(prom, 15, "after reload %d and 15 requests" % i)

    # uWSGI has no TTIN/TTOU: the forwarded signals change nothing
    before = leases(pf)
    for sig in (signal.SIGTTIN, signal.SIGTTOU):
        signal_command(pf, sig)
    time.sleep(2)
    check(state(master) in "SR" and leases(pf) == before,
          "TTIN/TTOU: uWSGI ignores them (master state %s, same %d workers)"
          % (state(master), N))
    check_targets(pf, prom, N, "after TTIN/TTOU", labels=range(N))
    end(pf, prom)


def cheaper_run(logf, d):
    fifo = os.path.join(d, "master.fifo")
    maxreq = 5
    app_port = free_port()
    pf, prom = start(N + 4, uwsgi(
        app_port, "--lazy-apps", "--master-fifo", fifo,
        "--processes", str(N + 2), "--cheaper", "1",
        "--cheaper-initial", str(N), "--cheaper-algo", "manual",
        "--max-requests", str(maxreq), "--min-worker-lifetime", "1"), logf)

    def fifo_cmd(c):
        log("# master FIFO: %r" % c)
        with open(fifo, "w") as f:
            f.write(c)

    pf.wait_workers(N)
    check_targets(pf, prom, N, "lazy-apps, cheaper", labels=range(N))
    wait_until(lambda: os.path.exists(fifo), timeout=10, what="master fifo")
    n = N
    for c, delta in (("+", 1), ("+", 1), ("-", -1), ("-", -1), ("-", -1)):
        n += delta
        fifo_cmd(c)
        wait_leases(pf, lambda l: len(l) == n, "%d workers" % n)
        check_targets(pf, prom, n, "after FIFO %r" % c)

    # chain reload: one worker after the other; each new one takes the
    # lowest free slot (the ones '-' freed, here), so the labels stay
    # within the peak number of workers
    old = leases(pf)
    fifo_cmd("c")
    new = wait_leases(pf, lambda l: len(l) == n and not set(old.values())
                      & set(l.values()), "chain reload: %d new workers" % n)
    check(max(new) < N + 2, "chain reload: %d new workers in slots %s "
          "(old: %s)" % (n, sorted(new), sorted(old)))
    check_targets(pf, prom, n, "after chain reload", labels=sorted(new))

    # max-requests: recycled workers take their slots back
    wait_listening(app_port)
    time.sleep(1.1)  # every worker is older than min-worker-lifetime
    slots = sorted(leases(pf))
    answered = collections.Counter()
    for _ in range(38):
        answered.update(send(app_port, 1))
    log("# 38 requests answered by %d processes: %s"
        % (len(answered), sorted(answered.values())))
    check(len(answered) > n, "--max-requests %d: %d worker(s) recycled"
          % (maxreq, len(answered) - n))

    def settled():
        l = leases(pf)
        live = sum(answered[p] for p in l.values())
        return (len(l) == n and direct_sum(pf) == live
                and prom_sum(prom) == live and (l, live))
    l, live = wait_until(settled, timeout=25, interval=0.25,
                         what="recycled workers replaced and counted")
    check(sorted(l) == slots, "recycled workers' replacements took the "
          "freed slots %s" % slots)
    check_targets(pf, prom, n, "after recycling", labels=slots)
    check(True, "after recycling Prometheus' sum equals the live workers' "
          "own counts (%d)" % live)
    end(pf, prom)


def test(logf):
    log("## uWSGI: counts, kill -9, SIGHUP reload, TTIN/TTOU")
    main_run(logf)
    log("## uWSGI lazy-apps, cheaper + master FIFO, chain reload, "
        "max-requests")
    cheaper_run(logf, tmpdir())


run_test(lambda: run_logged(test, "promfork/uWSGI"))
