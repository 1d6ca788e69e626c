"""Benchmark: one scrape of a 16-worker Node cluster, promfork against
prom-client's own cluster answer.

promfork wraps tests/bench/node_cluster.js (contrib/node/app.js with 1 000
more counter series in every worker).  Both scrape paths run in the same
cluster at once:
- promfork: GET /workers/metrics on its listener (every worker scraped on
  its own port, merged by promfork; the cluster master does nothing);
- prom-client: GET on the master's AggregatorRegistry port (the master asks
  every worker over IPC for its metrics as JSON and aggregates them).
For each: median and p90 of the scrape time, and the CPU per scrape of the
cluster master, of promfork and of the workers (utime + stime from
/proc/PID/stat before and after the rounds).  Both answers are checked
against the series the workers hold.

    bench_node_cluster.py [ROUNDS] [WORKERS] [SERIES]   (40, 16, 1000)
"""

import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, os.pardir, "e2e"))
import harness  # noqa: E402
from harness import (Promfork, expo_samples, free_port, http_get,  # noqa: E402
                     wait_listening, wait_until)

SOURCE = harness.SOURCE
APP = os.path.join(SOURCE, "contrib", "node", "app.js")
ENTRY = os.path.join(HERE, "node_cluster.js")
TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def children(pid):
    with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
        return [int(x) for x in f.read().split()]


def expected_total(workers, series, family=0):
    """sum over workers and paths of bench_family_F, as node_cluster.js
    counts it."""
    return sum(w + family + p + 1 for w in range(workers)
               for p in range(series // 10))


def scrape_rounds(url, rounds, pids):
    """Times rounds GETs of url; returns (times ms, {pid: cpu s}, body)."""
    before = {p: cpu_seconds(p) for p in pids}
    times = []
    body = b""
    for _ in range(rounds):
        t0 = time.perf_counter()
        status, _, body = http_get(url, timeout=30)
        times.append((time.perf_counter() - t0) * 1000)
        if status != 200:
            raise harness.TestFailure("%s answered %d: %r"
                                      % (url, status, body[:200]))
    after = {p: cpu_seconds(p) for p in pids}
    return times, {p: after[p] - before[p] for p in pids}, body.decode()


def report(name, times, cpu, rounds, master, pf_pid, workers):
    per = lambda pids: sum(cpu[p] for p in pids) * 1000 / rounds  # noqa: E731
    med = statistics.median(times)
    p90 = sorted(times)[int(len(times) * 0.9) - 1]
    print("%-34s median %7.2f ms  p90 %7.2f ms   CPU per scrape: cluster "
          "master %6.2f ms, promfork %5.2f ms, workers %6.2f ms"
          % (name, med, p90, per([master]), per([pf_pid]), per(workers)),
          flush=True)
    return med, per([master]), per([master, pf_pid] + workers)


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 40
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 16
    series = int(sys.argv[3]) if len(sys.argv) > 3 else 1000
    listen = "127.0.0.1:%d" % free_port()
    agg_port = free_port()
    env = {"WEB_CONCURRENCY": str(n), "PORT": str(free_port()),
           "PROMFORK_METRICS_ADDR": "127.0.0.1", "BENCH_APP": APP,
           "BENCH_SERIES": str(series),
           "PROM_CLIENT_AGGREGATOR_PORT": str(agg_port)}
    log = open(os.path.join(harness.tmpdir(), "log"), "w")
    pf = Promfork(n + 2, ["/usr/bin/node", ENTRY], extra=["--listen", listen],
                  env=env, stdout=log, stderr=log)
    workers = pf.wait_workers(n, timeout=120)
    for port in workers.values():
        wait_listening(port, timeout=60)
    wait_listening(agg_port, timeout=60)
    master = children(pf.proc.pid)[0]
    wpids = [l["pid"] for l in pf.leases()]

    fan_url = "http://%s/workers/metrics" % listen
    agg_url = "http://127.0.0.1:%d/metrics" % agg_port
    want = expected_total(n, series)
    # Both answers must hold every worker's series before timing starts.
    wait_until(lambda: sum(v for _, v in expo_samples(
        http_get(fan_url, timeout=30)[2].decode(), "bench_family_0")) == want, timeout=60, interval=0.5, what="the fan-out answer")
    wait_until(lambda: "bench_family_0{path=\"/api/v1/item/0\"} %d"
               % sum(w + 1 for w in range(n)) in
               http_get(agg_url, timeout=30)[2].decode(),
               timeout=60, interval=0.5, what="the aggregator answer")
    per_worker = sum(1 for line in http_get(
        "http://127.0.0.1:%d/metrics" % workers["0"])[2].decode().splitlines()
        if line and not line.startswith("#"))
    print("node-cluster: %d workers x %d series each (%d bench counters + "
          "app.js' and prom-client's default metrics), %d rounds"
          % (n, per_worker, series, rounds), flush=True)

    pids = [master, pf.proc.pid] + wpids
    # Warm-up: V8 compiles the hot paths of either side's rendering.
    scrape_rounds(fan_url, 10, pids)
    ft, fcpu, ftext = scrape_rounds(fan_url, rounds, pids)
    scrape_rounds(agg_url, 10, pids)
    at, acpu, atext = scrape_rounds(agg_url, rounds, pids)

    got = sum(v for _, v in expo_samples(ftext, "bench_family_0"))
    agg = sum(float(line.rsplit(" ", 1)[1]) for line in atext.splitlines()
              if line.startswith("bench_family_0{"))
    if got != want or agg != want:
        print("FAILED: bench_family_0 sums to %s (promfork) and %s "
              "(AggregatorRegistry), the workers hold %d" % (got, agg, want))
        return 1
    fmed, fmaster, fall = report("GET /workers/metrics (promfork)", ft, fcpu,
                                 rounds, master, pf.proc.pid, wpids)
    amed, amaster, aall = report("AggregatorRegistry (prom-client)", at, acpu,
                                 rounds, master, pf.proc.pid, wpids)
    print("scrape time, promfork / prom-client: %.2f; cluster master CPU per "
          "scrape %.2f ms against %.2f ms; all processes %.1f ms against "
          "%.1f ms" % (fmed / amed, fmaster, amaster, fall, aall), flush=True)
    pf.stop(timeout=60)
    return 0


try:
    rc = main()
except harness.TestFailure as e:
    print("FAILED: %s" % e)
    rc = 1
harness.cleanup()
sys.exit(rc)
