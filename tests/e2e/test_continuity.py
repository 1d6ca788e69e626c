"""Slot continuity: no count lost when a worker is recycled.

contrib/examples/app.py under real gunicorn (--max-requests 50) and real
uWSGI (max-requests 50), both with their contrib hooks (which retire a
worker before it exits), promfork with --listen and --proxy-targets, and a
real Prometheus scraping both the fan-out (/workers/metrics) and the
per-worker proxy targets every second while the workers recycle:
- after all requests, the sum over slots of app_requests_total{path="/"}
  in one GET /workers/metrics equals the requests served, exactly, and so
  does the sum over the proxy targets;
- Prometheus' raw samples of every slot never decrease, in both jobs;
- each worker's own port still serves its raw per-process count;
- after kill -9 of a worker, the loss is at most what it counted since
  promfork's last scrape of it.
"""

import os
import re
import signal
import socket
import time

from harness import (Promfork, Prometheus, check, free_port, http_get, log,
                     run_test, tmpdir, wait_until)
from apptest import (CONTRIB, ENV, EXAMPLES, leases, send, worker_count)

GUNICORN = "/usr/bin/gunicorn"
UWSGI = "/usr/bin/uwsgi"
CONF = os.path.join(CONTRIB, "gunicorn", "gunicorn.conf.py")
INI = os.path.join(CONTRIB, "uwsgi", "uwsgi.ini")
N = 4
MAXREQ = 50
REQUESTS = 600
RATE = 40.0  # requests a second: Prometheus scrapes during the recycles

_SAMPLE = re.compile(
    r'^app_requests_total\{worker="(\d+)",path="/"\} ([0-9.eE+-]+)$', re.M)


def gunicorn(app_port):
    return [GUNICORN, "-c", CONF, "-b", "127.0.0.1:%d" % app_port,
            "-w", str(N), "--chdir", EXAMPLES, "--graceful-timeout", "5",
            "--max-requests", str(MAXREQ), "--max-requests-jitter", "0",
            "--log-level", "warning", "app:application"]


def uwsgi(app_port):
    return [UWSGI, "--ini", INI, "--http-socket", "127.0.0.1:%d" % app_port,
            "--processes", str(N), "--disable-logging",
            "--max-requests", str(MAXREQ), "--min-worker-lifetime", "1",
            "--worker-reload-mercy", "10", "--reload-mercy", "10"]


def fanout_counts(base):
    """{slot: app_requests_total{path="/"}} from one GET /workers/metrics."""
    status, _, body = http_get(base + "/workers/metrics", timeout=10)
    if status != 200:
        raise ValueError("/workers/metrics answered %d" % status)
    return {int(w): float(v) for w, v in _SAMPLE.findall(body.decode())}


def proxy_count(base, slot):
    status, _, body = http_get("%s/workers/%d/metrics" % (base, slot),
                               timeout=10)
    if status != 200:
        return None
    m = re.search(r'^app_requests_total\{path="/"\} ([0-9.eE+-]+)$',
                  body.decode(), re.M)
    return float(m.group(1)) if m else 0.0


def paced(app_port, n, rate):
    t0 = time.monotonic()
    for i in range(n):
        send(app_port, 1)
        ahead = t0 + (i + 1) / rate - time.monotonic()
        if ahead > 0:
            time.sleep(ahead)


def never_decrease(prom, job, what):
    """Every raw sample Prometheus stored for each slot, in order."""
    r = prom.api("/api/v1/query",
                 query='app_requests_total{job="%s",path="/"}[10m]' % job)
    series = r["result"]
    check(series, "%s: Prometheus stored samples of %d slots"
          % (what, len(series)))
    drops = []
    for s in series:
        vals = [float(v) for _, v in s["values"]]
        for a, b in zip(vals, vals[1:]):
            if b < a:
                drops.append((s["metric"].get("worker"), a, b))
    check(not drops, "%s: no slot's raw samples ever decrease (%d series, "
          "%d samples)%s" % (what, len(series),
                             sum(len(s["values"]) for s in series),
                             " drops: %s" % drops[:5] if drops else ""))


def run(name, argv_fn, logf):
    app_port = free_port()
    lport = free_port()
    base = "http://127.0.0.1:%d" % lport
    pf = Promfork(2 * N + 2, argv_fn(app_port), env=ENV, stdout=logf,
                  stderr=logf, extra=["--listen", "127.0.0.1:%d" % lport,
                                      "--proxy-targets"])
    prom = Prometheus([
        {"job_name": "fanout", "metrics_path": "/workers/metrics",
         "static_configs": [{"targets": ["127.0.0.1:%d" % lport]}]},
        Prometheus.file_sd("proxy", pf.sd_dir)])
    pf.wait_workers(N, timeout=30)
    wait_until(lambda: socket.create_connection(("127.0.0.1", app_port), 1),
               timeout=30, what="%s to listen" % name)
    # --proxy-targets: the targets name the listener; a worker's own port
    # is LOW + its slot.
    for slot in leases(pf):
        wait_until(lambda: worker_count(pf.low + slot) >= 0, timeout=20,
                   what="worker metrics on %d" % (pf.low + slot))

    log("# %s: %d requests at %g/s, workers recycled every %d"
        % (name, REQUESTS, RATE, MAXREQ))
    t0 = time.monotonic()
    paced(app_port, REQUESTS, RATE)
    log("# took %.1f s" % (time.monotonic() - t0))
    served = REQUESTS
    wait_until(lambda: len(leases(pf)) == N, timeout=20,
               what="%d leases after the recycles" % N)
    check(True, "%s: %d workers live after the recycles" % (name, N))

    # Workers recycled since; let the last retirements land.
    def exact():
        c = fanout_counts(base)
        return c if sum(c.values()) == served else None
    try:
        counts = wait_until(exact, timeout=15, interval=0.25,
                            what="the fan-out sum to reach %d" % served)
    except Exception:
        log("# last fan-out counts: %s" % fanout_counts(base))
        raise
    check(True, "%s: one GET /workers/metrics sums to %d over slots %s: "
          "exactly the requests served" % (name, served, sorted(counts)))
    # A worker that has just replaced another may not serve yet: its
    # proxied scrape fails (502) until it does, as Prometheus would see.
    def proxied_exact():
        p = {s: proxy_count(base, s) for s in counts}
        return p if sum(v for v in p.values() if v is not None) == served \
            else None
    proxied = wait_until(proxied_exact, timeout=15, interval=0.25,
                         what="the proxy targets to sum to %d" % served)
    check(True, "%s: the proxy targets sum to %d too (%s)"
          % (name, served, sorted(proxied.items())))
    raw = sum(worker_count(pf.low + slot) for slot in leases(pf))
    check(raw < served,
          "%s: the workers' own ports serve raw per-process counts (%d of "
          "%d: the live processes' share)" % (name, raw, served))

    # Prometheus: let it scrape a few more times, then read raw samples.
    time.sleep(3)
    never_decrease(prom, "fanout", "%s fan-out" % name)
    never_decrease(prom, "proxy", "%s proxy targets" % name)
    v = prom.scalar('sum(app_requests_total{job="fanout",path="/"})')
    check(v == served, "%s: Prometheus' sum over slots (fan-out) is %s"
          % (name, v))

    # kill -9: only what the worker counted since promfork's last scrape
    # of it may be lost.
    # The victim: the worker furthest from its own recycling, and fewer
    # requests than it has left, so that it is still there to be killed.
    live = leases(pf)
    counts = {w: worker_count(pf.low + w) for w in live}
    victim_slot = min(counts, key=counts.get)
    victim_pid = live[victim_slot]
    victim_port = pf.low + victim_slot
    extra = max(1, min(20, MAXREQ - 1 - counts[victim_slot]))
    fanout_counts(base)  # promfork's last scrape, as far as we know
    at_scrape = worker_count(victim_port)
    paced(app_port, extra, RATE)
    served += extra
    after = worker_count(victim_port)
    os.kill(victim_pid, signal.SIGKILL)
    log("# kill -9 worker %d (pid %d): it counted %d since the scrape"
        % (victim_slot, victim_pid, after - at_scrape))
    wait_until(lambda: len(leases(pf)) == N and victim_pid not in
               leases(pf).values(), timeout=30,
               what="the killed worker's replacement")
    total = sum(fanout_counts(base).values())
    lost = served - total
    check(0 <= lost <= after - at_scrape,
          "%s: after kill -9 the loss is %d, at most the %d the worker "
          "counted since promfork's last scrape of it"
          % (name, lost, after - at_scrape))
    status, _, body = http_get(base + "/metrics")
    check(re.search(r'^promfork_releases_total\{reason="retire"\} [1-9]',
                    body.decode(), re.M) is not None,
          "%s: /metrics counts the retirements" % name)
    pf.stop(signal.SIGTERM, timeout=40)


def test():
    d = tmpdir()
    for name, fn in (("gunicorn", gunicorn), ("uwsgi", uwsgi)):
        path = os.path.join(d, name + ".log")
        with open(path, "w") as logf:
            try:
                log("## " + name)
                run(name, fn, logf)
            except Exception:
                with open(path) as f:
                    log("# %s log (last lines):\n%s"
                        % (name, "".join(f.readlines()[-40:])))
                raise


run_test(test)
