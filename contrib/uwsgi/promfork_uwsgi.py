"""uWSGI hook: every worker serves its own /metrics on a port leased from promfork.

Load it in the master so its post-fork hook is in place before the workers
fork (see uwsgi.ini next to this file):

    [uwsgi]
    pythonpath = /path/to/contrib/uwsgi
    shared-import = promfork_uwsgi
    enable-threads = true          ; the metrics server is a thread

Works with and without lazy-apps; imported inside a worker (e.g. by
`import =` with lazy-apps) it registers that worker at once.  Worker N asks
for slot N-1 (its replacement after max-requests takes the same one), and a
worker ending gracefully asks promfork for a last scrape (uwsgi.atexit), so
its counts stay in the slot's totals.  Without
PROMFORK_SOCKET it logs one line and does nothing.  promfork.py is looked
up in $PROMFORK_PYTHONPATH, else ../python next to this file.
"""

import logging
import os
import sys

import uwsgi

_path = os.environ.get("PROMFORK_PYTHONPATH") or os.path.join(
    os.path.dirname(os.path.abspath(__file__)), os.pardir, "python")
_path = os.path.abspath(_path)
if os.path.isdir(_path) and _path not in sys.path:
    sys.path.insert(0, _path)

import promfork  # noqa: E402

# Seconds a worker keeps asking when the port range is full: during a
# reload the old workers may hold their ports for up to worker-reload-mercy.
RETRY = 120.0


class _UwsgiLog(logging.Handler):
    def emit(self, record):
        try:
            uwsgi.log(self.format(record))
        except Exception:
            self.handleError(record)


_log = logging.getLogger("promfork")
if not _log.handlers:
    _handler = _UwsgiLog()
    _handler.setFormatter(logging.Formatter("promfork %(levelname)s: %(message)s"))
    _log.addHandler(_handler)
    _log.setLevel(logging.INFO)
    _log.propagate = False


def register_worker():
    """Register this worker and start its metrics server (idempotent)."""
    if uwsgi.worker_id() <= 0:  # master, mule or spooler
        return
    if not promfork.enabled():
        return
    try:
        # uWSGI numbers its workers from 1: worker N asks for slot N-1, so a
        # recycled worker's replacement takes the same slot and series.
        promfork.start_http_server(retry=RETRY, slot=uwsgi.worker_id() - 1)
    except Exception:
        # Keep serving requests without metrics rather than kill the worker.
        _log.exception("worker %d runs without a metrics port", uwsgi.worker_id())


def _install_postfork(func):
    # uwsgidecorators keeps a chain of hooks (and would replace a plain
    # uwsgi.post_fork_hook if the app imports it later): prefer it.
    try:
        from uwsgidecorators import postfork
    except ImportError:
        previous = getattr(uwsgi, "post_fork_hook", None)

        def chained():
            if previous is not None:
                previous()
            func()

        uwsgi.post_fork_hook = chained
    else:
        postfork(func)


def retire_worker():
    """At a graceful worker exit (max-requests, reload): promfork's last scrape."""
    if uwsgi.worker_id() > 0:
        promfork.retire(promfork.served())


def _install_atexit(func):
    # uwsgi.atexit runs in each worker as it ends gracefully, while the
    # metrics thread still serves; chain whatever the app set before.
    previous = getattr(uwsgi, "atexit", None)

    def chained():
        try:
            func()
        finally:
            if previous is not None:
                previous()

    uwsgi.atexit = chained


_install_postfork(register_worker)
_install_atexit(retire_worker)
if uwsgi.worker_id() > 0:
    register_worker()  # imported in a worker, after the fork (lazy-apps)
else:
    promfork.enabled()  # in the master: log "not set" once, not per worker
