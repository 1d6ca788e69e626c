"""Tiny WSGI app with per-process prometheus_client metrics (promfork example).

    /             -> "hello from worker <pid>"
    /slow?ms=N    -> sleeps N milliseconds (capped at 10 s)

Each worker process counts in its own (default) registry; promfork gives each
worker its own metrics port (see contrib/gunicorn, contrib/uwsgi).
"""

import os
import time
from urllib.parse import parse_qs

from prometheus_client import Counter, Histogram

REQUESTS = Counter("app_requests_total", "HTTP requests handled.", ["path"])
LATENCY = Histogram("app_request_duration_seconds", "Time spent handling a request.")


def application(environ, start_response):
    start = time.monotonic()
    path = environ.get("PATH_INFO") or "/"
    try:
        if path == "/":
            status, body = "200 OK", "hello from worker %d\n" % os.getpid()
        elif path == "/slow":
            try:
                ms = float(parse_qs(environ.get("QUERY_STRING", "")).get("ms", ["100"])[0])
            except ValueError:
                ms = 100.0
            time.sleep(min(max(ms, 0.0), 10000.0) / 1000.0)
            status, body = "200 OK", "slept %g ms in worker %d\n" % (ms, os.getpid())
        else:
            path = "other"  # keep the label's cardinality bounded
            status, body = "404 Not Found", "not found\n"
        data = body.encode()
        start_response(status, [("Content-Type", "text/plain; charset=utf-8"),
                                ("Content-Length", str(len(data)))])
        return [data]
    finally:
        REQUESTS.labels(path=path).inc()
        LATENCY.observe(time.monotonic() - start)


app = application
