"""Limits of the HTTP listener, against the real binary.

A client trickling its request is cut off at the absolute deadline, an
oversized request is refused with the right status, connections are capped,
a silent worker's proxy path times out, and all the while other clients
are served promptly.
"""

import os
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import PYTHON, check, http_get, wait_until  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
WORKER = os.path.join(HERE, "http_worker.py")
DEADLINE = 2.0  # --http-deadline
CONNS_MAX = 128  # WEB_CONNS_MAX


def connect(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.settimeout(10)
    return s


def exchange(port, data, timeout=10):
    """Sends data, returns what comes back until the close."""
    s = connect(port)
    try:
        s.sendall(data)
        out = b""
        s.settimeout(timeout)
        while True:
            try:
                b = s.recv(65536)
            except ConnectionResetError:
                break
            if not b:
                break
            out += b
        return out
    finally:
        s.close()


class Prober(threading.Thread):
    """GETs /metrics over and over; records the slowest answer."""

    def __init__(self, base):
        super().__init__(daemon=True)
        self.base = base
        self.stop = threading.Event()
        self.count = 0
        self.failures = 0
        self.slowest = 0.0

    def run(self):
        while not self.stop.is_set():
            t = time.monotonic()
            try:
                status = http_get(self.base + "/metrics", timeout=5)[0]
            except OSError:
                status = 0
            dt = time.monotonic() - t
            self.slowest = max(self.slowest, dt)
            self.count += 1
            if status != 200:
                self.failures += 1
            time.sleep(0.05)


def test():
    port = harness.free_port()
    base = "http://127.0.0.1:%d" % port
    pf = harness.Promfork(4, [PYTHON, WORKER, "1"],
                          extra=["--listen", "127.0.0.1:%d" % port,
                                 "--http-deadline", "%d" % DEADLINE],
                          env={"E2E_DELAY_MS": "10000"})
    pf.wait_workers(1)
    prober = Prober(base)
    prober.start()

    # 1. A client that trickles one byte every 100 ms.
    s = connect(port)
    t0 = time.monotonic()
    answer = b""
    for i in range(100):  # 10 s at most; the deadline is 2 s
        try:
            s.sendall(b"GET /metrics HTTP/1.1\r\nX-Slow: "[i:i + 1] or b"a")
        except OSError:
            break
        s.settimeout(0.1)
        try:
            b = s.recv(4096)
        except socket.timeout:
            continue
        except ConnectionResetError:
            break
        if not b:
            break
        answer += b
        break
    elapsed = time.monotonic() - t0
    s.close()
    check(answer.startswith(b"HTTP/1.1 408 "),
          "the trickling client gets 408 (%r)" % answer[:40])
    check(DEADLINE - 0.2 <= elapsed <= DEADLINE + 1.5,
          "it is cut off at the %.0f s deadline (after %.2f s)"
          % (DEADLINE, elapsed))

    # 2. Oversized and malformed requests.
    r = exchange(port, b"GET / HTTP/1.1\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n")
    check(r.startswith(b"HTTP/1.1 431 "), "a 20 kB header is refused with 431")
    r = exchange(port, b"GET /metrics HTTP/1.1\r\nContent-Length: 100000\r\n\r\n")
    check(r.startswith(b"HTTP/1.1 413 "), "a 100 kB body is refused with 413")
    r = exchange(port, b"GET /" + b"a" * 3000 + b" HTTP/1.1\r\n\r\n")
    check(r.startswith(b"HTTP/1.1 414 "), "a 3000-byte target is refused with 414")
    r = exchange(port, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n")
    check(r.startswith(b"HTTP/1.1 400 "), "a TLS hello is refused with 400")
    r = exchange(port, b"GET / HTTP/1.2\r\n\r\n")
    check(r.startswith(b"HTTP/1.1 505 "), "HTTP/1.2 is refused with 505")
    r = exchange(port, b"DELETE /targets HTTP/1.1\r\n\r\n")
    check(r.startswith(b"HTTP/1.1 405 "), "DELETE is refused with 405")
    r = exchange(port, b"GET /metrics HTTP/1.1\r\nTransfer-Encoding: chunked"
                       b"\r\n\r\n0\r\n\r\n")
    check(r.startswith(b"HTTP/1.1 501 "), "a chunked request is refused with 501")

    # 3. A worker that does not answer: 504 within the deadline.
    t0 = time.monotonic()
    status, _, body = http_get(base + "/workers/0/metrics", timeout=10)
    elapsed = time.monotonic() - t0
    check(status == 504 and elapsed < DEADLINE,
          "a silent worker's proxy path is 504 after %.2f s" % elapsed)
    status, _, body = http_get(base + "/workers/0/metrics", timeout=10,
                               headers={"X-Prometheus-Scrape-Timeout-Seconds":
                                        "0.3"})
    check(status == 504 and b"within 300 ms" in body,
          "Prometheus' own scrape timeout is honoured: %r" % body)

    # 4. The connection cap: the one past it is told 503 at once.
    prober.stop.set()
    prober.join(10)
    held = []
    try:
        for _ in range(CONNS_MAX):
            held.append(connect(port))
        r = exchange(port, b"GET /metrics HTTP/1.1\r\n\r\n", timeout=5)
        check(r.startswith(b"HTTP/1.1 503 "),
              "connection %d is refused with 503 (%r)" % (CONNS_MAX + 1, r[:40]))
    finally:
        for s in held:
            s.close()
    status = wait_until(lambda: http_get(base + "/metrics")[0] == 200,
                        timeout=5, what="service after the held connections")
    check(status, "once they close, clients are served again")

    check(prober.count >= 20 and prober.failures == 0,
          "%d /metrics requests served during the abuse, none failed"
          % prober.count)
    check(prober.slowest < 0.5,
          "the slowest took %.3f s" % prober.slowest)
    pf.stop()


harness.run_test(test)
