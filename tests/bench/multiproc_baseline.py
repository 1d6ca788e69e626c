"""The baseline for bench_fanout: prometheus_client's multiprocess mode.

Each worker process writes the same 1 000 counter series bench_fanout
serves (10 families of 100 paths); a MultiProcessCollector then collects
them the way a multiprocess /metrics view does.  Timed with 16 workers'
files, then again after RESTARTS more workers came and went: their files
stay behind, as they do in production.  Prints one line per case:

    multiproc FILES MEDIAN_MS
"""

import os
import shutil
import statistics
import sys
import tempfile
import time

DIR = tempfile.mkdtemp(prefix="promfork-bench-multiproc-")
os.environ["PROMETHEUS_MULTIPROC_DIR"] = DIR

from prometheus_client import CollectorRegistry, Counter, generate_latest  # noqa: E402
from prometheus_client import multiprocess  # noqa: E402

FAMILIES, PATHS = 10, 100
COUNTERS = [Counter("bench_family_%d" % f, "Family %d." % f, ["path"])
            for f in range(FAMILIES)]


def worker(w):
    """One worker process: serves its series, then goes away."""
    pid = os.fork()
    if pid == 0:
        try:
            for f, c in enumerate(COUNTERS):
                for p in range(PATHS):
                    c.labels("/api/v1/item/%d" % p).inc(w + f + p + 1)
        finally:
            os._exit(0)
    os.waitpid(pid, 0)


def time_collect(rounds):
    reg = CollectorRegistry()
    multiprocess.MultiProcessCollector(reg)
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        out = generate_latest(reg)
        times.append((time.perf_counter() - t0) * 1000)
    assert out.count(b"\nbench_family_") >= FAMILIES * PATHS, "series lost"
    return statistics.median(times)


def main():
    workers = int(sys.argv[1]) if len(sys.argv) > 1 else 16
    restarts = int(sys.argv[2]) if len(sys.argv) > 2 else 256
    try:
        for w in range(workers):
            worker(w)
        print("multiproc %d %.3f" % (workers, time_collect(20)), flush=True)
        for w in range(restarts):
            worker(workers + w)
        print("multiproc %d %.3f" % (workers + restarts, time_collect(5)),
              flush=True)
    finally:
        shutil.rmtree(DIR, ignore_errors=True)


main()
