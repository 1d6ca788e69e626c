"""A small pre-fork server for promfork's end-to-end tests.

The master forks N workers and replaces any that dies; each worker leases a
port from promfork through contrib/python/promfork.py and serves a counter
on it.  On SIGTERM the master stops its workers and exits with
PREFORK_TERM_STATUS (default 0).  Every signal the master gets is appended
to PREFORK_SIGNAL_LOG, if set.
"""

import http.server
import os
import signal
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "..", "contrib", "python"))
import promfork  # noqa: E402

N = int(sys.argv[1]) if len(sys.argv) > 1 else 4
TERM_STATUS = int(os.environ.get("PREFORK_TERM_STATUS", "0"))
SIGNAL_LOG = os.environ.get("PREFORK_SIGNAL_LOG")


def worker():
    lease = promfork.register(labels={"role": "web"})
    served = [0]

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            served[0] += 1
            body = ("# TYPE prefork_requests_total counter\n"
                    "prefork_requests_total %d\n" % served[0]).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    http.server.HTTPServer.allow_reuse_address = True
    srv = http.server.HTTPServer(("127.0.0.1", lease.port), Handler)
    srv.serve_forever()


def spawn():
    pid = os.fork()
    if pid == 0:
        for s in (signal.SIGTERM, signal.SIGCHLD, signal.SIGHUP,
                  signal.SIGUSR1):
            signal.signal(s, signal.SIG_DFL)
        try:
            worker()
        finally:
            os._exit(1)
    return pid


class Stop(Exception):
    pass


def main():
    workers = set()

    def on_signal(sig, frame):
        if SIGNAL_LOG:
            with open(SIGNAL_LOG, "a") as f:
                f.write(signal.Signals(sig).name + "\n")
        if sig == signal.SIGTERM:
            raise Stop()

    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT,
              signal.SIGUSR1, signal.SIGUSR2, signal.SIGTTIN, signal.SIGTTOU,
              signal.SIGWINCH):
        signal.signal(s, on_signal)
    for _ in range(N):
        workers.add(spawn())
    try:
        while True:
            try:
                pid, _ = os.waitpid(-1, 0)
            except ChildProcessError:
                time.sleep(0.05)
                continue
            if pid in workers:
                workers.discard(pid)
                workers.add(spawn())
    except Stop:
        pass
    for pid in workers:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    for pid in workers:
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass
    sys.exit(TERM_STATUS)


if __name__ == "__main__":
    main()
