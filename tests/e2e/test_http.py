"""promfork --listen: /targets is http_sd and /metrics is promfork's own.

A real Prometheus discovers the workers through http_sd exactly as through
the sd file, and scrapes promfork's /metrics; promtool accepts that text.
"""

import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import PYTHON, check, http_get, wait_until  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
WORKER = os.path.join(HERE, "http_worker.py")


def listening(port):
    return lambda: http_get("http://127.0.0.1:%d/targets" % port)[0] == 200


def test():
    # An empty registry answers [].
    port0 = harness.free_port()
    idle = harness.Promfork(4, [PYTHON, "-c", "import time; time.sleep(60)"],
                            extra=["--listen", "127.0.0.1:%d" % port0])
    wait_until(listening(port0), what="listener of the idle promfork")
    status, headers, body = http_get("http://127.0.0.1:%d/targets" % port0)
    check(status == 200 and json.loads(body) == [],
          "/targets without workers is [] (got %d %r)" % (status, body))
    idle.stop()

    port = harness.free_port()
    pf = harness.Promfork(8, [PYTHON, WORKER, "3"],
                          extra=["--listen", "127.0.0.1:%d" % port])
    base = "http://127.0.0.1:%d" % port
    pf.wait_workers(3)

    status, headers, body = http_get(base + "/targets")
    check(status == 200, "/targets answers 200")
    check(headers.get("Content-Type") == "application/json",
          "/targets is application/json (%s)" % headers.get("Content-Type"))
    check(json.loads(body) == pf.groups(),
          "/targets holds exactly the groups of the sd file")

    status, headers, body = http_get(base + "/metrics")
    check(status == 200, "/metrics answers 200")
    check(headers.get("Content-Type", "").startswith("text/plain; version=0.0.4"),
          "/metrics is the text exposition format")
    text = body.decode()
    r = subprocess.run(["/usr/bin/promtool", "check", "metrics"],
                       input=body, capture_output=True, timeout=30)
    check(r.returncode == 0, "promtool check metrics accepts /metrics (%s)"
          % (r.stdout + r.stderr).decode().strip())
    for family in ("promfork_leases", "promfork_registrations_total",
                   "promfork_releases_total", "promfork_port_pool_size",
                   "promfork_port_pool_free", "promfork_sd_writes_total",
                   "promfork_sd_write_errors_total",
                   "promfork_sd_last_write_timestamp_seconds",
                   "promfork_child_exits_total",
                   "promfork_worker_cpu_seconds_total",
                   "promfork_worker_resident_memory_bytes",
                   "promfork_worker_start_time_seconds",
                   "promfork_worker_restarts_total"):
        check("# HELP %s " % family in text and "# TYPE %s " % family in text,
              "%s has HELP and TYPE" % family)
    check("\npromfork_leases 3\n" in text, "promfork_leases is 3")
    check("\npromfork_port_pool_free 5\n" in text, "5 of 8 ports are free")

    prom = harness.Prometheus([
        harness.Prometheus.file_sd("file", pf.sd_dir),
        {"job_name": "http",
         "http_sd_configs": [{"url": base + "/targets",
                              "refresh_interval": "1s"}]},
        {"job_name": "promfork",
         "static_configs": [{"targets": ["127.0.0.1:%d" % port]}]},
    ])
    by_file = prom.wait_up(3, job="file")
    by_http = prom.wait_up(3, job="http")
    check(by_file == by_http == ["0", "1", "2"],
          "http_sd and file_sd discover the same workers: %s / %s"
          % (by_http, by_file))

    def same_targets():
        def key(job):
            return sorted((l["instance"], l["worker"])
                          for l, _ in prom.targets(job))
        return key("file") == key("http") and key("file")
    check(wait_until(same_targets, what="identical instance/worker pairs"),
          "both jobs see the same instance and worker label pairs")

    prom.wait_up(1, job="promfork")
    got = wait_until(lambda: prom.scalar('promfork_leases{job="promfork"}'),
                     what="promfork_leases in Prometheus")
    check(got == 3, "Prometheus scraped promfork_leases = 3")
    n = wait_until(lambda: prom.scalar(
        "count(promfork_worker_resident_memory_bytes > 0)"),
        what="per-worker memory in Prometheus")
    check(n == 3, "Prometheus has resident memory of all 3 workers")
    n = prom.scalar("count(promfork_worker_start_time_seconds > time() - 3600)")
    check(n == 3, "worker start times are recent wall-clock times")

    # A worker gone disappears from both discoveries alike.
    leases = pf.leases()
    os.kill(leases[0]["pid"], 9)
    wait_until(lambda: len(json.loads(http_get(base + "/targets")[2])) == 2,
               what="/targets to drop the killed worker")
    prom.wait_up(2, job="http")
    prom.wait_up(2, job="file")
    check(True, "a killed worker leaves http_sd and file_sd alike")
    text = http_get(base + "/metrics")[2].decode()
    check('promfork_releases_total{reason="exit"} 1' in text,
          "the exit is counted")
    pf.stop()


harness.run_test(test)
