"""/workers/metrics: every live worker's metrics in one answer.

Checks the merged answer with promtool and prometheus_client's parser,
then has a real Prometheus scrape it and sums a counter without the worker
label; a slow worker, a worker sending garbage and a type conflict between
workers each show up in the answer without breaking it.
"""

import collections
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import PYTHON, check, http_get, wait_until  # noqa: E402

from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
WORKER = os.path.join(HERE, "http_worker.py")


def start(n_workers, env, extra=()):
    port = harness.free_port()
    env = dict(env, E2E_RICH="1")
    log = os.path.join(harness.tmpdir(), "promfork.log")
    pf = harness.Promfork(n_workers + 2, [PYTHON, WORKER, str(n_workers)],
                          extra=["--listen", "127.0.0.1:%d" % port] +
                          list(extra), env=env,
                          stderr=open(log, "w"))
    pf.log = log
    pf.wait_workers(n_workers)
    for p in pf.workers().values():  # leased before it is bound
        harness.wait_listening(p)
    return pf, "http://127.0.0.1:%d" % port


def promtool_accepts(text):
    r = subprocess.run(["/usr/bin/promtool", "check", "metrics"],
                       input=text.encode(), capture_output=True, timeout=60)
    if r.returncode != 0:
        harness.log("promtool: %s%s" % (r.stdout.decode(), r.stderr.decode()))
    return r.returncode == 0


def samples(text):
    """[(name, labels, value)] as prometheus_client parses them."""
    out = []
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out.append((s.name, s.labels, s.value))
    return out


def value(ss, name, **labels):
    for n, l, v in ss:
        if n == name and all(l.get(k) == x for k, x in labels.items()):
            return v
    return None


def test_merge_and_prometheus():
    # --carry-hold 1: a slot without a worker serves its carried totals
    # (issue 14) for a second only.
    pf, base = start(3, {}, extra=["--carry-hold", "1"])
    status, headers, body = http_get(base + "/workers/metrics")
    text = body.decode()
    check(status == 200 and headers.get("Content-Type", "").startswith(
        "text/plain; version=0.0.4"), "GET /workers/metrics is 200 text/plain "
        "version 0.0.4")
    check(promtool_accepts(text), "promtool check metrics accepts the answer")

    types = collections.Counter(l.split()[2] for l in text.splitlines()
                                if l.startswith("# TYPE "))
    check(types and max(types.values()) == 1,
          "every family has one TYPE line (%d families)" % len(types))
    helps = collections.Counter(l.split()[2] for l in text.splitlines()
                                if l.startswith("# HELP "))
    check(max(helps.values()) == 1, "and at most one HELP line")
    # Each family's samples come together: the family name never returns.
    order = [l.split()[2] for l in text.splitlines() if l.startswith("# TYPE")]
    check(len(order) == len(set(order)), "no family appears twice")

    ss = samples(text)
    check(all("worker" in l for _, l, _ in ss),
          "every one of %d samples has a worker label" % len(ss))
    for w in range(3):
        direct = samples(http_get("http://127.0.0.1:%d/metrics"
                                  % pf.workers()[str(w)])[2].decode())
        check(value(ss, "e2e_items_total", worker=str(w))
              == value(direct, "e2e_items_total") == 10 * (w + 1),
              "worker %d's counter is what the worker itself serves" % w)
        check(value(ss, "e2e_latency_seconds_bucket", worker=str(w), le="+Inf")
              == 4 and value(ss, "e2e_latency_seconds_count", worker=str(w))
              == 4, "worker %d's histogram is whole" % w)
        check(value(ss, "e2e_size_bytes_sum", worker=str(w)) == 100 * (w + 1),
              "worker %d's summary is whole" % w)
        check(value(ss, "e2e_jobs_total", worker=str(w),
                    exported_worker="own-%d" % w) == 1,
              "worker %d's own worker label is kept as exported_worker" % w)
        check(value(ss, "e2e_path_info", worker=str(w),
                    path='C:\\dir\n"quoted"') == w,
              "worker %d's escaped label value survives" % w)
        check(value(ss, "promfork_worker_up", worker=str(w)) == 1,
              "promfork_worker_up{worker=\"%d\"} is 1" % w)
        d = value(ss, "promfork_worker_scrape_duration_seconds", worker=str(w))
        check(d is not None and 0 < d < 5,
              "worker %d's scrape duration is %s s" % (w, d))

    prom = harness.Prometheus([{
        "job_name": "fanout", "metrics_path": "/workers/metrics",
        "static_configs": [{"targets": [base[len("http://"):]]}]}])
    prom.wait_up(1, job="fanout")
    total = wait_until(lambda: prom.scalar(
        "sum without (worker) (e2e_items_total)"),
        what="Prometheus to have the merged counter")
    check(total == 60, "Prometheus: sum without (worker) of the counter is "
          "%s, the 10 + 20 + 30 the workers served" % total)
    up = prom.query("promfork_worker_up == 1")
    check(sorted(s["metric"]["worker"] for s in up) == ["0", "1", "2"],
          "Prometheus sees promfork_worker_up 1 for workers 0, 1, 2")

    lease = [l for l in pf.leases() if l["worker"] == 1][0]
    os.kill(lease["pid"], 9)
    wait_until(lambda: '{worker="1"}' not in
               http_get(base + "/workers/metrics")[2].decode(),
               what="the dead worker to leave the answer")
    check(True, "a dead worker leaves the answer once its lease ends and "
          "its carried totals' hold time has passed")
    pf.stop()


def test_slow_garbage_conflict():
    pf, base = start(3, {"E2E_DELAY_WORKER": "1", "E2E_DELAY_MS": "4000",
                         "E2E_GARBAGE_WORKER": "2", "E2E_CONFLICT": "1"})
    t0 = time.monotonic()
    status, _, body = http_get(base + "/workers/metrics", timeout=10,
                               headers={"X-Prometheus-Scrape-Timeout-Seconds":
                                        "0.5"})
    took = time.monotonic() - t0
    text = body.decode()
    check(status == 200 and took < 2.0,
          "a slow worker does not hold the answer past the 0.5 s deadline "
          "(%.2f s)" % took)
    ss = samples(text)
    check(value(ss, "promfork_worker_up", worker="1") == 0
          and value(ss, "promfork_worker_up", worker="0") == 1
          and value(ss, "promfork_worker_up", worker="2") == 1,
          "the slow worker is promfork_worker_up 0, the others 1")
    check(value(ss, "e2e_items_total", worker="1") is None
          and value(ss, "e2e_items_total", worker="0") == 10,
          "the slow worker's samples are missing, the others' are there")
    check(value(ss, "promfork_worker_scrape_malformed_lines", worker="2") == 2
          and value(ss, "e2e_items_total", worker="2") == 30,
          "the garbage worker's 2 bad lines are dropped and counted, its "
          "good lines kept")
    check(text.count("# TYPE e2e_conflict ") == 1
          and 'e2e_conflict{worker="0"} 1' in text
          and 'e2e_conflict{worker="2"}' not in text,
          "a type conflict keeps the first worker's family only")
    check(value(ss, "promfork_worker_scrape_dropped_series", worker="2") == 1
          and value(ss, "promfork_worker_scrape_dropped_series",
                    worker="0") == 0,
          "the conflicting sample is counted as dropped, for its worker only")
    check(promtool_accepts(text), "promtool accepts the answer all the same")
    with open(pf.log) as f:
        log = f.read()
    check("malformed" in log and "typed unlike" in log and "worker 1" in log,
          "the log names the malformed lines, the conflict and the timeout")
    pf.stop()


def test_no_workers():
    port = harness.free_port()
    pf = harness.Promfork(2, [PYTHON, "-c", "import time; time.sleep(60)"],
                          extra=["--listen", "127.0.0.1:%d" % port])
    status, _, body = http_get("http://127.0.0.1:%d/workers/metrics" % port)
    check(status == 200 and promtool_accepts(body.decode())
          and "promfork_worker_up{" not in body.decode(),
          "with no workers the answer is empty but valid")
    pf.stop()


def test():
    test_merge_and_prometheus()
    test_slow_garbage_conflict()
    test_no_workers()


harness.run_test(test)
