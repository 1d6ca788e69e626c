"""Celery's prefork pool under promfork: every pool process serves its own
prometheus_client metrics on a port leased from promfork.

Import this module where the Celery app is defined (see tasks.py); it
connects two signals:

- ``worker_process_init`` (in each pool process, after fork): register
  with the process' pool index as the preferred slot, so that a replaced
  process (``max_tasks_per_child``, a crash, a pool restart) takes its
  predecessor's slot and ``worker`` label, and serve /metrics there;
- ``worker_process_shutdown`` (in the pool process, on its way out): ask
  promfork for a final scrape (retire) while the metrics thread still
  runs, so that no count of a recycled process is lost once promfork
  carries a slot's totals across its processes.

Without PROMFORK_SOCKET nothing happens beyond one log line.

    promfork --port-range 9400-9463 --listen :9399 -- \\
        python3 celery_cli.py -A tasks worker --pool prefork -c 4 --max-tasks-per-child 100

Environment: PROMFORK_METRICS_ADDR (listen address of the metrics
servers, default all unless promfork names one), PROMFORK_PYTHONPATH
(directory holding promfork.py, default ../python next to this file).
"""

import logging
import os
import sys

_here = os.path.dirname(os.path.abspath(__file__))
_path = os.path.abspath(os.environ.get("PROMFORK_PYTHONPATH")
                        or os.path.join(_here, os.pardir, "python"))
if os.path.isdir(_path) and _path not in sys.path:
    sys.path.insert(0, _path)

import promfork  # noqa: E402
from celery import signals  # noqa: E402

log = logging.getLogger("promfork")


def pool_index():
    """This pool process' index (0..concurrency-1) or None.

    billiard sets ``index`` on each pool process object before it starts
    it, and a replacement gets the lowest free index back.
    """
    try:
        from billiard.process import current_process
    except ImportError:
        return None
    index = getattr(current_process(), "index", None)
    return index if isinstance(index, int) else None


@signals.worker_init.connect(weak=False)
def _worker_init(**_):
    # In the main process, before the pool forks: "not set" logged once.
    promfork.enabled()


@signals.worker_process_init.connect(weak=False)
def _process_init(**_):
    if not promfork.enabled():
        return
    try:
        # retry: when a pool restart overlaps old and new processes and the
        # range cannot hold both, keep asking in the background.
        promfork.start_http_server(slot=pool_index(), retry=30)
    except Exception:
        # Tasks matter more than metrics: log and go on.
        log.exception("promfork: pool process %d runs without a metrics port",
                      os.getpid())


@signals.worker_process_shutdown.connect(weak=False)
def _process_shutdown(**_):
    promfork.retire(promfork.served())
