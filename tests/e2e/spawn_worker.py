"""A single-process HTTP server of the kind spawn mode is for.

Usage: spawn_worker.py PORT [WORKER]   (promfork passes {port} {worker})

Serves GET /metrics on 127.0.0.1:PORT with one sample that tells what the
process was given: the port and worker from its arguments and from
PROMFORK_PORT / PROMFORK_WORKER, and its pid.  With E2E_TOUCH_DIR set it
creates DIR/ready.WORKER.PID once it listens.
"""

import http.server
import os
import socket
import sys


def main():
    port = int(sys.argv[1])
    worker = sys.argv[2] if len(sys.argv) > 2 else ""
    body = ("# TYPE spawn_worker_info gauge\n"
            'spawn_worker_info{arg_port="%d",arg_worker="%s",env_port="%s",'
            'env_worker="%s",pid="%d"} 1\n'
            % (port, worker, os.environ.get("PROMFORK_PORT", ""),
               os.environ.get("PROMFORK_WORKER", ""), os.getpid())).encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            if self.path != "/metrics":
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    http.server.ThreadingHTTPServer.address_family = socket.AF_INET
    http.server.ThreadingHTTPServer.allow_reuse_address = True
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    srv.daemon_threads = True
    d = os.environ.get("E2E_TOUCH_DIR")
    if d:
        open(os.path.join(d, "ready.%s.%d" % (worker, os.getpid())),
             "w").close()
    srv.serve_forever()


if __name__ == "__main__":
    main()
