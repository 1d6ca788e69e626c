"""A tiny pre-fork server for promfork's HTTP tests.

The master forks N workers (argv[1], default 2); each registers itself on
$PROMFORK_SOCKET and serves GET /metrics on the port it was given, on
127.0.0.1.  What /metrics returns depends on the environment:

  E2E_BLOB_BYTES=N   N deterministic bytes (every byte value, not UTF-8)
                     instead of prometheus_client text
  E2E_NO_LENGTH=1    no Content-Length: the body ends with the close
  E2E_DELAY_MS=N     wait N ms before answering
  E2E_DELAY_WORKER=W only worker W waits (default: every worker)
  E2E_LABELS=JSON    labels to register with
  E2E_RICH=1         also a histogram, a summary, a gauge with escaped
                     label values, a counter of 10*(worker+1) items and a
                     series with its own worker label
  E2E_GARBAGE_WORKER=W  worker W adds malformed lines to its answer
  E2E_CONFLICT=1     e2e_conflict is a gauge in worker 0, untyped in
                     the others
  E2E_SERIES=N       also N series of e2e_bulk_total, for large answers

The master exits on TERM after killing its workers.
"""

import http.server
import json
import os
import signal
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

from prometheus_client import CONTENT_TYPE_LATEST, Counter, generate_latest  # noqa: E402


def blob(n):
    """n bytes, the same for every worker and every request."""
    pattern = bytes(range(256))
    return (pattern * (n // 256 + 1))[:n]


SCRAPES = Counter("e2e_worker_scrapes_total", "Times /metrics was served.")
WORKER = None  # this process's worker number, once registered


def rich_metrics(worker):
    from prometheus_client import Gauge, Histogram, Summary
    Counter("e2e_items_total", "Items, 10 per worker number plus one."
            ).inc(10 * (worker + 1))
    h = Histogram("e2e_latency_seconds", "Latency.",
                  buckets=(0.1, 1.0, 10.0))
    for v in (0.05, 0.5, 5.0, 50.0):
        h.observe(v * (worker + 1))
    Summary("e2e_size_bytes", "Sizes.").observe(100 * (worker + 1))
    Gauge("e2e_path_info", "Label values that need escaping.",
          ["path"]).labels('C:\\dir\n"quoted"').set(worker)
    Counter("e2e_jobs_total", "A series with its own worker label.",
            ["worker"]).labels("own-%d" % worker).inc()


def extra_text(worker):
    text = b""
    if os.environ.get("E2E_SERIES"):
        text += b"# TYPE e2e_bulk_total counter\n" + b"".join(
            b'e2e_bulk_total{path="/some/path/%d"} %d\n' % (i, i)
            for i in range(int(os.environ["E2E_SERIES"])))
    if os.environ.get("E2E_GARBAGE_WORKER") == str(worker):
        text += b"this line { is not metrics\n" \
                b"e2e_bad{l=\"unterminated} 1\n"
    if os.environ.get("E2E_CONFLICT"):
        kind = b"gauge" if worker == 0 else b"untyped"
        text += b"# HELP e2e_conflict Typed unlike another worker's.\n" \
                b"# TYPE e2e_conflict " + kind + b"\ne2e_conflict 1\n"
    return text


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"

    def log_message(self, *args):
        pass

    def do_GET(self):
        if self.path != "/metrics":
            self.send_error(404)
            return
        delay = int(os.environ.get("E2E_DELAY_MS", "0"))
        only = os.environ.get("E2E_DELAY_WORKER")
        if delay and (only is None or only == str(WORKER)):
            time.sleep(delay / 1000.0)
        SCRAPES.inc()
        if os.environ.get("E2E_BLOB_BYTES"):
            body = blob(int(os.environ["E2E_BLOB_BYTES"]))
            ctype = "application/octet-stream"
        else:
            body = generate_latest() + extra_text(WORKER)
            ctype = CONTENT_TYPE_LATEST
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        if not os.environ.get("E2E_NO_LENGTH"):
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass


def worker():
    global WORKER
    body = {"pid": os.getpid()}
    if os.environ.get("E2E_LABELS"):
        body["labels"] = json.loads(os.environ["E2E_LABELS"])
    status, lease = harness.unix_request(os.environ["PROMFORK_SOCKET"],
                                         "POST", "/v1/workers", body)
    if status not in (200, 201):
        print("worker %d: registration failed: %d %r"
              % (os.getpid(), status, lease), file=sys.stderr)
        os._exit(1)
    WORKER = lease["worker"]
    if os.environ.get("E2E_RICH"):
        rich_metrics(WORKER)
    http.server.ThreadingHTTPServer.address_family = socket.AF_INET
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", lease["port"]),
                                          Handler)
    srv.daemon_threads = True
    srv.serve_forever()


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 2
    children = []
    for _ in range(n):
        pid = os.fork()
        if pid == 0:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            try:
                worker()
            finally:
                os._exit(0)
        children.append(pid)

    def stop(sig, frame):
        for c in children:
            try:
                os.kill(c, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for c in children:
            try:
                os.waitpid(c, 0)
            except ChildProcessError:
                pass
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    while True:
        signal.pause()


if __name__ == "__main__":
    main()
