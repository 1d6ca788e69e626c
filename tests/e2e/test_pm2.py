"""PM2 cluster mode under promfork, watched by a real Prometheus.

    promfork ... -- pm2-runtime start contrib/node/app.js -i 3

PM2's God process is the cluster master and runs none of the app's code;
each PM2 worker registers itself (contrib/node/promfork.js, its
NODE_APP_INSTANCE as the preferred slot) and serves prom-client's registry
on its leased port.  Prometheus scrapes every worker's own port (job "app")
and promfork's /workers/metrics (job "fanout"):
- one up target per worker, worker="0".."2", none down; after 40 requests
  the counter sums to 40 in both;
- kill -9 of a worker: PM2 restarts it, 3 up targets again, sums follow;
- `pm2 reload app` (PM2's zero-downtime reload, through the RPC socket of
  the God process that pm2-runtime runs, found by PM2_HOME): every worker
  replaced one by one, the old ones retiring on SIGINT; 3 up targets, all
  new processes, the sums follow;
- SIGTERM: pm2-runtime stops every worker, promfork exits 0, no target left.
The total through /workers/metrics is exact after the kill -9 and the
reload (issue 14).
"""

import os
import re
import subprocess
import time

from harness import check, run_test, tmpdir, wait_until
from apptest import check_targets, end, send
from nodetest import (APP, MODULES, NODE, check_sums, kill_one, leases, note,
                      start, with_log)

N = 3
PM2_BIN = os.path.join(MODULES, "pm2", "bin")


def pm2(home, *args):
    """The pm2 CLI against the God process of pm2-runtime (PM2_HOME)."""
    # Without a God process listening there, the CLI would start a daemon of
    # its own, outside promfork's tree: make sure it is there first.
    if not os.path.exists(os.path.join(home, "rpc.sock")):
        raise ValueError("no PM2 RPC socket in PM2_HOME")
    r = subprocess.run([NODE, os.path.join(PM2_BIN, "pm2")] + list(args),
                       env=dict(os.environ, PM2_HOME=home),
                       capture_output=True, timeout=60)
    if r.returncode != 0:
        raise ValueError("pm2 %s: %s %s" % (" ".join(args), r.stdout.decode(),
                                            r.stderr.decode()))
    return re.sub(r"\x1b\[[0-9;]*m", "", r.stdout.decode())


def god_pid(home):
    with open(os.path.join(home, "pm2.pid")) as f:
        return int(f.read())


def run(logf):
    home = os.path.join(tmpdir(), "pm2")
    os.mkdir(home)
    pf, prom = start(2 * N + 2, [NODE, os.path.join(PM2_BIN, "pm2-runtime"),
                                 "start", APP, "-i", str(N), "--name", "app"],
                     # HOME too: PM2 writes there when it can
                     {"PM2_HOME": home, "HOME": home,
                      # time for a retiring worker's final scrape
                      "PM2_KILL_TIMEOUT": "5000"}, logf)
    runtime = wait_until(lambda: os.path.exists(os.path.join(home, "rpc.sock"))
                         and god_pid(home), timeout=30,
                         what="pm2-runtime's RPC socket in PM2_HOME")
    pf.wait_workers(N, timeout=40)
    check_targets(pf, prom, N, "start", labels=range(N))
    prom.wait_up(1, job="fanout")

    total = 40
    send(pf.app_port, total)
    check_sums(pf, prom, total, total, "40 requests")

    # kill -9: PM2 restarts the worker
    raw = kill_one(pf, prom, N, total, "PM2 to restart the killed worker")
    total += 20

    # PM2's zero-downtime reload
    old = set(leases(pf).values())
    t0 = time.monotonic()
    out = pm2(home, "reload", "app")
    note("pm2 reload app: %.1f s: %s" % (time.monotonic() - t0,
                                         " ".join(out.split()[-8:])))
    check(god_pid(home) == runtime and pf.proc.poll() is None,
          "the reload went through pm2-runtime's own God process (pid %d)"
          % runtime)
    wait_until(lambda: (lambda l: len(l) == N and not old & set(l.values()))(
        leases(pf)), timeout=30, what="%d new workers, every old one gone" % N)
    check_targets(pf, prom, N, "after pm2 reload")
    send(pf.app_port, 15)
    total += 15
    check_sums(pf, prom, 15, total, "after pm2 reload and 15 requests (the "
               "live workers had %d before it)" % raw)
    end(pf, prom)


def test():
    with_log(run, "promfork/pm2 log")


run_test(test)
