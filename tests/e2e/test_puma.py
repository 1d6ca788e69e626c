"""Puma (cluster mode) under promfork, watched by a real Prometheus.

contrib/examples/config.ru with contrib/puma/puma.rb, 3 workers, metrics
from prometheus-client-mmap with one files directory per worker:
- one up target per worker, worker="0".."2", none down; after 30
  requests the per-worker targets and /workers/metrics both sum to 30;
- kill -9 of worker 1: Puma replaces it, the new worker asks for its
  index and gets slot 1, starting from empty files;
- phased restart (SIGUSR1 to promfork, forwarded to Puma): every worker
  replaced one by one, each taking its index back as its slot;
- the exact totals through the fan-out (see rubyapp.py; today's exact
  values without issue 14's continuity);
- SIGTERM: promfork exits 0, the file ends as [], Prometheus drops all.
"""

import os
import signal

from harness import free_port, run_logged, run_test, wait_listening
from apptest import CONTRIB, signal_command
import rubyapp
from rubyapp import N

PUMA = "/usr/bin/puma"
CONF = os.path.join(CONTRIB, "puma", "puma.rb")


def body(logf):
    rubyapp.require(PUMA)
    rubyapp.no_promfork()
    app_port = free_port()
    argv = [PUMA, "-C", CONF, "-w", str(N), "-b",
            "tcp://127.0.0.1:%d" % app_port, "--quiet", rubyapp.CONFIG_RU]
    pf, prom = rubyapp.start(N + 2, argv, logf)
    wait_listening(app_port, timeout=30)

    def phased_restart():
        signal_command(pf, signal.SIGUSR1)
    rubyapp.run(pf, prom, app_port, phased_restart, range(N),
                "phased restart")


run_test(lambda: run_logged(body, "promfork/server"))
