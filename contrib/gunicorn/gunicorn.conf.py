# gunicorn config: every worker serves its own /metrics on a port leased
# from promfork, and promfork publishes it as a scrape target.
#
#   promfork --port-range 9400-9463 --sd-file /etc/prometheus/promfork/app.json -- \
#       gunicorn -c /path/to/contrib/gunicorn/gunicorn.conf.py -b 0.0.0.0:8000 app:application
#
# Bind, workers, preload, max_requests, ... come from the command line or
# GUNICORN_CMD_ARGS as usual; only `workers` has a default here.
#
# Environment:
#   PROMFORK_SOCKET        set by promfork; without it this file does nothing
#                          beyond one log line, and the app runs as before.
#   PROMFORK_METRICS_ADDR  address the metrics servers listen on (default all).
#   PROMFORK_PYTHONPATH    directory holding promfork.py (default ../python
#                          next to this file).

import logging
import os
import sys

_here = os.path.dirname(os.path.abspath(__file__))
_path = os.environ.get("PROMFORK_PYTHONPATH") or os.path.join(_here, os.pardir, "python")
_path = os.path.abspath(_path)
if os.path.isdir(_path) and _path not in sys.path:
    sys.path.insert(0, _path)

import promfork  # noqa: E402

workers = int(os.environ.get("WEB_CONCURRENCY", 4))


# Send promfork's log records to gunicorn's error log (same format, same
# file), unless the logger was configured already.  Safe on HUP re-reads.
class _ToGunicornLog(logging.Handler):
    def emit(self, record):
        target = logging.getLogger("gunicorn.error")
        if target.isEnabledFor(record.levelno):
            target.handle(record)


_log = logging.getLogger("promfork")
if not _log.handlers:
    _log.addHandler(_ToGunicornLog())
    _log.setLevel(logging.INFO)
    _log.propagate = False


def on_starting(server):
    # Runs once in the master, before any fork: the "not set" line is logged
    # here, once, and the forked workers inherit the fact that it was.
    promfork.enabled()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR") or os.environ.get("prometheus_multiproc_dir"):
        server.log.warning("promfork: PROMETHEUS_MULTIPROC_DIR is set; per-worker "
                           "ports want prometheus_client's normal (per-process) mode")


def post_fork(server, worker):
    # Runs in the new worker right after fork: with or without --preload, on
    # every --max-requests restart and for the new workers of a HUP.  The
    # metrics thread must start here, never in the master (a thread does not
    # survive fork).  With --preload the worker inherits the master's copy
    # of prometheus_client's default registry, so do not count anything in
    # the master: every worker would report it again.
    if not promfork.enabled():
        return
    try:
        # retry: during a HUP the new workers start while the old ones finish
        # (up to graceful_timeout); if the port range cannot hold both sets,
        # keep asking in the background until the old workers are gone.
        worker.promfork_lease = promfork.start_http_server(
            retry=server.cfg.graceful_timeout + 30)
    except Exception:
        # An exception here would make gunicorn halt ("worker failed to boot");
        # serving requests matters more than metrics, so log and go on.
        server.log.exception("promfork: worker %s runs without a metrics port", worker.pid)


def worker_exit(server, worker):
    # Runs in the worker as it exits gracefully (--max-requests, HUP, TERM),
    # while its metrics thread still serves: promfork scrapes it one last
    # time, so nothing it counted since the last scrape is lost from its
    # slot's totals.  Bounded (2 s); promfork ends the lease itself when the
    # process is gone, so a kill -9 needs no hook.
    if promfork.enabled():
        promfork.retire(promfork.served())
