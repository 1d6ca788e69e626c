"""Example Celery tasks with per-process prometheus_client metrics
(promfork example; see promfork_celery.py).

    CELERY_BROKER_URL=redis://127.0.0.1:6379/0 \\
        promfork --port-range 9400-9463 --listen :9399 -- \\
        python3 celery_cli.py -A tasks worker --pool prefork -c 4 --max-tasks-per-child 100

Each pool process counts in its own (default) registry; the tasks run
are ``sum(celery_tasks_total)`` through promfork's /workers/metrics.
"""

import os
import time

from celery import Celery
from prometheus_client import Counter, Histogram

import promfork_celery  # noqa: F401  (connects the pool signals)

BROKER = os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/0")

app = Celery("tasks", broker=BROKER,
             backend=os.environ.get("CELERY_RESULT_BACKEND", BROKER))
# More settings from the module named by $CELERY_CONFIG_MODULE, if any.
app.config_from_envvar("CELERY_CONFIG_MODULE", silent=True, force=True)

TASKS = Counter("celery_tasks_total", "Tasks run.", ["task"])
DURATION = Histogram("celery_task_duration_seconds", "Time spent in a task.",
                     ["task"])


# Each run of a task also appends a line here when set: a record of the
# runs that does not go through Prometheus (the end-to-end test's count).
RUN_LOG = os.environ.get("TASKS_RUN_LOG")


def _ran(name):
    TASKS.labels(name).inc()
    if RUN_LOG:
        with open(RUN_LOG, "a") as f:
            f.write("%s %d\n" % (name, os.getpid()))


@app.task
def add(x, y):
    with DURATION.labels("add").time():
        _ran("add")
        return x + y


@app.task
def pid(ms=0):
    """The pool process that ran it (after ms milliseconds, capped at 10 s)."""
    with DURATION.labels("pid").time():
        _ran("pid")
        time.sleep(min(max(float(ms), 0.0), 10000.0) / 1000.0)
        return os.getpid()
