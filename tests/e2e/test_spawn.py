"""Spawn mode end to end: promfork --workers 2 runs a single-process HTTP
server twice, and Prometheus scrapes both through the sd file.

Each copy gets its port and worker number in its arguments and its
environment; kill -9 of one brings a new process up in the same slot and
port, with the same target; TTIN / TTOU add and remove a worker; HUP
restarts them one at a time; TERM stops all of them and leaves []; a
command that keeps failing shows up in the log as a crash loop.
"""

import os
import signal
import time

from harness import (PYTHON, SOURCE, Prometheus, Promfork, check, free_port,
                     http_get, run_test, tmpdir, wait_until)

WORKER = os.path.join(SOURCE, "tests", "e2e", "spawn_worker.py")


def info(port):
    """The worker's one sample as a dict of its labels, or None."""
    status, _, body = http_get("http://127.0.0.1:%d/metrics" % port,
                               timeout=2)
    if status != 200:
        return None
    line = [l for l in body.decode().splitlines()
            if l.startswith("spawn_worker_info{")][0]
    pairs = line[line.index("{") + 1:line.index("}")].split(",")
    return {k: v.strip('"') for k, v in (p.split("=", 1) for p in pairs)}


def lease_pids(pf):
    return {str(l["worker"]): l["pid"] for l in pf.leases()}


def test_workers(d):
    log = open(os.path.join(d, "promfork.log"), "w")
    pf = Promfork(4, [PYTHON, WORKER, "{port}", "{worker}"],
                  extra=["--workers", "2", "--grace", "5"],
                  stderr=log)
    workers = pf.wait_workers(2)
    check(workers == {"0": pf.low, "1": pf.low + 1},
          "two workers in slots 0 and 1 on the lowest ports: %r" % workers)
    pids = lease_pids(pf)
    for w, port in workers.items():
        i = wait_until(lambda: info(port), timeout=10,
                       what="worker %s to serve" % w)
        check(i["arg_port"] == str(port) and i["arg_worker"] == w,
              "worker %s got {port} {worker} = %s %s in its arguments"
              % (w, i["arg_port"], i["arg_worker"]))
        check(i["env_port"] == str(port) and i["env_worker"] == w,
              "worker %s has PROMFORK_PORT=%s PROMFORK_WORKER=%s"
              % (w, i["env_port"], i["env_worker"]))
        check(int(i["pid"]) == pids[w], "worker %s's lease has its pid" % w)

    prom = Prometheus([Prometheus.file_sd("spawn", pf.sd_dir)])
    check(prom.wait_up(2, job="spawn") == ["0", "1"],
          "Prometheus scrapes both workers")

    # kill -9: a new process in the same slot, on the same port
    old = pids["1"]
    os.kill(old, signal.SIGKILL)
    new = wait_until(lambda: (lambda p: p.get("1") not in (None, old)
                              and p["1"])(lease_pids(pf)),
                     timeout=10, what="worker 1 restarted")
    wait_until(lambda: pf.workers() == {"0": pf.low, "1": pf.low + 1},
               timeout=5, what="both workers in the sd file")
    check(True, "after kill -9 worker 1 is back in slot 1, port %d"
          % (pf.low + 1))
    i = wait_until(lambda: (lambda x: x and x["pid"] == str(new) and x)(
        info(pf.low + 1)), timeout=10, what="the new worker 1 to serve")
    check(i["env_worker"] == "1", "the new process is told it is worker 1")
    check(lease_pids(pf)["0"] == pids["0"], "worker 0 was left alone")
    wait_until(lambda: prom.query('spawn_worker_info{worker="1",pid="%d"}'
                                  % new), timeout=20,
               what="Prometheus scraping the new worker 1")
    check(prom.wait_up(2, job="spawn") == ["0", "1"],
          "Prometheus has the same two targets, both up")

    # TTIN / TTOU
    pf.proc.send_signal(signal.SIGTTIN)
    check(pf.wait_workers(3) == {"0": pf.low, "1": pf.low + 1,
                                 "2": pf.low + 2},
          "TTIN adds worker 2")
    wait_until(lambda: info(pf.low + 2), timeout=10, what="worker 2 serving")
    pf.proc.send_signal(signal.SIGTTOU)
    check(sorted(pf.wait_workers(2)) == ["0", "1"], "TTOU removes worker 2")

    # HUP: every worker restarted, never both down at once
    before = lease_pids(pf)
    pf.proc.send_signal(signal.SIGHUP)
    fewest = 2
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        now = lease_pids(pf)
        fewest = min(fewest, len(now))
        if len(now) == 2 and all(now[w] != before[w] for w in now):
            break
        time.sleep(0.02)
    now = lease_pids(pf)
    check(sorted(now) == ["0", "1"] and
          all(now[w] != before[w] for w in now),
          "HUP restarted both workers in their slots")
    check(fewest >= 1, "during HUP at least one worker was always up")

    # TERM: all stop, [] is left, promfork exits 0
    t0 = time.monotonic()
    code = pf.stop(timeout=10)
    check(code == 0, "promfork exits 0 after TERM (got %r)" % code)
    check(time.monotonic() - t0 < 5, "the workers stopped within the grace")
    check(pf.groups() == [], "the sd file is [] after TERM")
    for p in now.values():
        check(not os.path.exists("/proc/%d" % p) or
              open("/proc/%d/stat" % p).read().split(") ")[1][0] == "Z",
              "worker pid %d is gone" % p)
    log.close()
    text = open(os.path.join(d, "promfork.log")).read()
    check("worker 1 (pid %d) exited with status 137" % old in text,
          "the log tells of worker 1's death")


def test_crash_loop(d):
    path = os.path.join(d, "crash.log")
    log = open(path, "w")
    port = free_port()
    pf = Promfork(2, [PYTHON, "-c", "import sys; sys.exit(3)"],
                  extra=["--workers", "1", "--listen", "127.0.0.1:%d" % port],
                  stderr=log)
    wait_until(lambda: "crash looping" in open(path).read(), timeout=10,
               what="a crash loop in the log")
    metrics = http_get("http://127.0.0.1:%d/metrics" % port)[2].decode()
    looping = [l for l in metrics.splitlines()
               if l.startswith("promfork_spawn_crash_looping_workers ")]
    deaths = [l for l in metrics.splitlines()
              if l.startswith("promfork_spawn_deaths_total ")]
    check(looping == ["promfork_spawn_crash_looping_workers 1"]
          and deaths and int(deaths[0].split()[1]) >= 3,
          "/metrics shows the crash loop: %s, %s" % (looping, deaths))
    text = open(path).read()
    check("worker 0 is crash looping: 3 failures in a row" in text,
          "three quick deaths in a row are logged as a crash loop")
    check("exited with status 3" in text, "the exit status is logged")
    check(pf.proc.poll() is None, "promfork keeps running")
    check(pf.stop() == 0, "TERM during the backoff exits 0 at once")
    log.close()


def test():
    d = tmpdir()
    test_workers(d)
    test_crash_loop(d)


if __name__ == "__main__":
    run_test(test)
