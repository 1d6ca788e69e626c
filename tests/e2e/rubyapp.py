"""Shared run of the Ruby end-to-end tests (Puma, Unicorn).

contrib/examples/config.ru (prometheus-client-mmap, counter
app_requests_total{path="/"}) under promfork, its workers registering
through contrib/ruby/promfork.rb; a real Prometheus scrapes every worker
through promfork's file_sd directory (job "app") and promfork's fan-out
/workers/metrics (job "fanout", the exact setup of issue 14).

promfork carries a slot's totals across lifetimes (issue 14), so the
fan-out's sum after a worker is replaced is every request served.
"""

import os
import shutil

from harness import (Prometheus, Promfork, TestFailure, check,
                     free_port, log, tmpdir, wait_listening)
from apptest import (CONTRIB, ENV, JOB, check_targets, direct_sum, end,
                     kill_replaced, leases, send, wait_leases, wait_prom_sum,
                     worker_count)

RUBY = "/usr/bin/ruby"
CONFIG_RU = os.path.join(CONTRIB, "examples", "config.ru")
FANOUT = "fanout"
N = 3


def require(*programs):
    """Fails with a clear message when a peer is not installed."""
    missing = [p for p in programs if not shutil.which(p)]
    if missing or os.system("%s -e 'require \"prometheus/client\"'" % RUBY):
        raise TestFailure("missing %s: install Debian's puma, unicorn and "
                          "ruby-prometheus-client-mmap (contrib/test.sh "
                          "does)" % (", ".join(missing) or
                                     "prometheus-client-mmap"))


def start(n_ports, argv, logf, env=None):
    listen = "127.0.0.1:%d" % free_port()
    # The workers' files directories and Unicorn's pid file in the test's
    # own directories, removed however the test ends.
    env = dict(ENV, prometheus_multiproc_dir=tmpdir(),
               PROMFORK_UNICORN_PID=os.path.join(tmpdir(), "unicorn.pid"),
               **(env or {}))
    pf = Promfork(n_ports, argv, extra=["--listen", listen], env=env,
                  stdout=logf, stderr=logf)
    pf.mmap_dir = env["prometheus_multiproc_dir"]
    prom = Prometheus([Prometheus.file_sd(JOB, pf.sd_dir),
                       Prometheus.fan_out(FANOUT, listen)])
    return pf, prom


def counts(pf, prom, app_port, expected, fanout, what):
    """The per-worker targets' sum is `expected` (each worker's own
    count); the fan-out's is `fanout`."""
    wait_prom_sum(prom, expected, what + ", per-worker targets")
    check(direct_sum(pf) == expected, "%s: the live workers' own counts "
          "add up to %d" % (what, expected))
    wait_prom_sum(prom, fanout, what + ", /workers/metrics", job=FANOUT)


def run(pf, prom, app_port, reload, reload_labels, name):
    """Counts, kill -9, the server's reload; `reload()` triggers it and
    `reload_labels` are the worker labels expected after it (None: any N
    distinct ones)."""
    pf.wait_workers(N)
    check_targets(pf, prom, N, "start", labels=range(N))
    check(all(worker_count(p) == 0 for p in pf.workers().values()),
          "every worker serves its own (empty) files on its port")
    send(app_port, 30)
    total = 30
    counts(pf, prom, app_port, 30, 30, "30 requests")

    # kill -9: the server replaces the worker, which asks for its index
    lost = worker_count(pf.low + 1)
    log("# worker 1 served %d requests" % lost)
    kill_replaced(pf, 1)  # the server gives it its index, the slot it asks
    check_targets(pf, prom, N, "after kill -9", labels=range(N))
    wait_listening(pf.low + 1)  # leased a moment before it serves
    check(worker_count(pf.low + 1) == 0,
          "the replacement starts from empty files, not its predecessor's")
    send(app_port, 20)
    total += 20
    live = 30 - lost + 20
    counts(pf, prom, app_port, live, total,
           "after kill -9 and 20 more requests")

    # the server's own reload: every worker replaced
    old = set(leases(pf).values())
    reload()
    wait_leases(pf, lambda l: len(l) == N and not old & set(l.values()),
                "%s: %d new workers, every old one gone" % (name, N),
                timeout=40)
    check(pf.proc.poll() is None, "%s: promfork still runs" % name)
    check_targets(pf, prom, N, "after " + name, labels=reload_labels)
    send(app_port, 15)
    total += 15
    counts(pf, prom, app_port, 15, total,
           "after %s and 15 requests" % name)
    end(pf, prom)
    left = os.listdir(pf.mmap_dir)
    check(left == [], "every worker removed its files directory on its "
          "graceful exit; the one named by prometheus_multiproc_dir stays "
          "(left in it: %s)" % left)


def no_promfork():
    """Without PROMFORK_SOCKET the client is a no-op."""
    import subprocess
    out = subprocess.run(
        [RUBY, "-I", os.path.join(CONTRIB, "ruby"), "-rpromfork", "-e",
         "p [Promfork.enabled?, Promfork.register, Promfork.leases]"],
        env={k: v for k, v in os.environ.items() if k != "PROMFORK_SOCKET"},
        capture_output=True, timeout=30)
    check(out.returncode == 0 and out.stdout.strip() == b"[false, nil, []]"
          and out.stderr.count(b"PROMFORK_SOCKET is not set") == 1,
          "without PROMFORK_SOCKET the Ruby client does nothing and says so "
          "once")


