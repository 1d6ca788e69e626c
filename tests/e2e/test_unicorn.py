"""Unicorn under promfork, watched by a real Prometheus.

contrib/examples/config.ru with contrib/unicorn/unicorn.conf.rb, 3
workers, run through contrib/unicorn/herder.rb; metrics from
prometheus-client-mmap with one files directory per worker:
- one up target per worker, worker="0".."2", none down; after 30
  requests the per-worker targets and /workers/metrics both sum to 30;
- kill -9 of worker 1: Unicorn replaces it, the new worker asks for its
  worker.nr and gets slot 1, starting from empty files;
- USR2 (sent to promfork, forwarded to the herder): a new master forks
  new workers while the old ones still run (they take other slots), the
  herder sends QUIT to the old master, whose workers exit; promfork,
  whose child the herder stays, keeps running;
- the exact totals through the fan-out (see rubyapp.py; today's exact
  values without issue 14's continuity);
- SIGTERM: promfork exits 0, the file ends as [], Prometheus drops all.
"""

import os
import signal

from harness import (check, free_port, run_logged, run_test, wait_listening,
                     wait_until)
from apptest import CONTRIB, signal_command
import rubyapp
from rubyapp import N, RUBY

UNICORN = "/usr/bin/unicorn"
CONF = os.path.join(CONTRIB, "unicorn", "unicorn.conf.rb")
HERDER = os.path.join(CONTRIB, "unicorn", "herder.rb")


def children(pid):
    try:
        with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def body(logf):
    rubyapp.require(UNICORN)
    rubyapp.no_promfork()
    app_port = free_port()
    argv = [RUBY, HERDER, "--grace", "30", "--", UNICORN, "-c", CONF, "-l",
            "127.0.0.1:%d" % app_port, rubyapp.CONFIG_RU]
    # old and new workers overlap during USR2: twice the ports
    pf, prom = rubyapp.start(2 * N + 2, argv, logf,
                             env={"WEB_CONCURRENCY": str(N)})
    wait_listening(app_port, timeout=30)
    herder = children(pf.proc.pid)
    masters = children(herder[0]) if len(herder) == 1 else []
    check(len(herder) == 1 and len(masters) == 1,
          "promfork runs the herder (pid %s), the herder one master (pid %s)"
          % (herder, masters))

    def usr2():
        signal_command(pf, signal.SIGUSR2)
        wait_until(lambda: not alive(masters[0]), timeout=40,
                   what="the old master to exit after the herder's QUIT")
        now = [p for p in children(pf.proc.pid) if p != herder[0]]
        check(alive(herder[0]) and len(now) == 1,
              "USR2: the old master exited, the herder (promfork's child) "
              "still runs, the new master (pid %s) is promfork's now" % now)
    rubyapp.run(pf, prom, app_port, usr2, None, "USR2 + QUIT")


run_test(lambda: run_logged(body, "promfork/server"))
