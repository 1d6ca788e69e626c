"""The README's table of issue 14, remeasured: what Prometheus' stored raw
samples hold of app_requests_total (first value + increases + values after
each reset) when gunicorn recycles its workers, through the workers' own
targets (raw), /workers/metrics and the proxy targets.

gunicorn, 4 workers, contrib/gunicorn/gunicorn.conf.py and the example app,
REQUESTS requests at RATE a second, a real Prometheus.

    /usr/bin/python3 tests/bench/continuity_table.py [REQUESTS [RATE]]

(run from the source tree, with PROMFORK_BIN naming the binary).
"""

import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, os.pardir, "e2e"))

from harness import (Promfork, Prometheus, free_port, wait_until)  # noqa
from apptest import CONTRIB, ENV, EXAMPLES, leases, send  # noqa

GUNICORN = "/usr/bin/gunicorn"
CONF = os.path.join(CONTRIB, "gunicorn", "gunicorn.conf.py")
N = 4


def gunicorn(app_port, maxreq):
    argv = [GUNICORN, "-c", CONF, "-b", "127.0.0.1:%d" % app_port,
            "-w", str(N), "--chdir", EXAMPLES, "--graceful-timeout", "5",
            "--log-level", "warning"]
    if maxreq:
        argv += ["--max-requests", str(maxreq), "--max-requests-jitter", "0"]
    return argv + ["app:application"]


def counted(prom, job):
    """First value + increases + values after each reset, over every
    series Prometheus stored for job."""
    r = prom.api("/api/v1/query",
                 query='app_requests_total{job="%s",path="/"}[1h]' % job)
    total = 0.0
    for s in r["result"]:
        vals = [float(v) for _, v in s["values"]]
        total += vals[0]
        for a, b in zip(vals, vals[1:]):
            total += b - a if b >= a else b
    return int(total)


def run(maxreq, interval, requests, rate):
    app_port, lport = free_port(), free_port()
    listen = "127.0.0.1:%d" % lport
    pf = Promfork(2 * N + 2, gunicorn(app_port, maxreq), env=ENV,
                  stdout=open(os.devnull, "w"), stderr=open(os.devnull, "w"),
                  extra=["--listen", listen])
    sd = Prometheus.file_sd("direct", pf.sd_dir)
    proxy = Prometheus.file_sd("proxy", pf.sd_dir, relabel_configs=[
        {"source_labels": ["worker"], "target_label": "__metrics_path__",
         "replacement": "/workers/${1}/metrics"},
        {"target_label": "__address__", "replacement": listen}])
    fanout = {"job_name": "fanout", "metrics_path": "/workers/metrics",
              "static_configs": [{"targets": [listen]}]}
    for job in (sd, proxy, fanout):
        job["scrape_interval"] = interval
        job["scrape_timeout"] = "900ms"
    prom = Prometheus([sd, proxy, fanout])
    pf.wait_workers(N, timeout=30)
    prom.wait_up(2 * N + 1, timeout=60)
    t0 = time.monotonic()
    for i in range(requests):
        send(app_port, 1)
        ahead = t0 + (i + 1) / rate - time.monotonic()
        if ahead > 0:
            time.sleep(ahead)
    wait_until(lambda: len(leases(pf)) == N, timeout=30, what="workers")
    time.sleep(3 * float(interval.rstrip("s")) + 2)  # a few more scrapes
    row = [counted(prom, j) for j in ("direct", "fanout", "proxy")]
    pf.stop(timeout=40)
    prom.proc.kill()
    return row


def main():
    requests = int(sys.argv[1]) if len(sys.argv) > 1 else 6000
    rate = float(sys.argv[2]) if len(sys.argv) > 2 else 150.0

    def cell(n):
        lost = requests - n
        return "all %d" % n if lost == 0 else "%d (%d%% lost)" % (
            n, round(100.0 * lost / requests))
    print("| recycling | scrape interval | per-worker targets (raw) | "
          "`/workers/metrics` | `--proxy-targets` |")
    print("|---|---|---|---|---|")
    for maxreq, interval in ((0, "5s"), (1000, "5s"), (100, "1s")):
        row = run(maxreq, interval, requests, rate)
        print("| %s | %s | %s |" % (
            "`--max-requests %d`" % maxreq if maxreq else "none",
            interval.replace("s", " s"), " | ".join(cell(n) for n in row)),
            flush=True)


if __name__ == "__main__":
    main()
