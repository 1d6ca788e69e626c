"""What --web.config.file costs a scrape: GET /metrics (promfork's own
metrics) over HTTPS with basic auth, against the same request over plain
HTTP to a promfork without a web configuration, in the same run and
alternately, so drift hits both alike.  Three figures, medians:
- a kept-alive connection (what Prometheus does): TLS record layer and
  the cached password check;
- a new connection per request: the TLS handshake (ECDSA P-256) too;
- the first check of a password: one bcrypt of cost 10, uncached.
"""

import http.client
import os
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import shutil

sys.path.insert(0, os.path.join(os.environ.get("PROMFORK_SOURCE", "."),
                                "tests", "e2e"))
from tlstest import bcrypt, make_pki, write_config  # noqa: E402

PROMFORK = os.environ.get("PROMFORK_BIN", "build/promfork")
ROUNDS = int(sys.argv[1]) if len(sys.argv) > 1 else 400
AUTH = "Basic cHJvbTpzZWNyZXQ="  # prom:secret


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def start(d, name, web=None):
    port = free_port()
    low = free_port()
    argv = [PROMFORK, "--port-range", "%d-%d" % (low, low),
            "--socket", os.path.join(d, name + ".sock"),
            "--listen", "127.0.0.1:%d" % port, "--log-level", "error"]
    if web:
        argv += ["--web.config.file", web]
    p = subprocess.Popen(argv)
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return p, port
        except OSError:
            time.sleep(0.02)
    p.kill()
    raise SystemExit("promfork did not listen")


def get(conn, headers):
    t = time.perf_counter()
    conn.request("GET", "/metrics", headers=headers)
    r = conn.getresponse()
    body = r.read()
    if r.status != 200 or not body:
        raise SystemExit("answer %d" % r.status)
    return (time.perf_counter() - t) * 1e6


def main():
    d = tempfile.mkdtemp(prefix="promfork-bench-tls-")
    procs = []
    try:
        make_pki(d)
        web = os.path.join(d, "web.yml")
        write_config(web, {"prom": bcrypt("secret", cost=10)})
        plain, pport = start(d, "plain")
        procs.append(plain)
        tls, tport = start(d, "tls", web)
        procs.append(tls)
        ctx = ssl.create_default_context(cafile=os.path.join(d, "ca.crt"))

        def plain_conn():
            return http.client.HTTPConnection("127.0.0.1", pport, timeout=10)

        def tls_conn():
            return http.client.HTTPSConnection("127.0.0.1", tport,
                                               context=ctx, timeout=10)
        # the first check of the password: one bcrypt, then cached
        c = tls_conn()
        first = get(c, {"Authorization": AUTH})
        second = get(c, {"Authorization": AUTH})
        c.close()

        keep = {"plain": [], "tls": []}
        cp, ct = plain_conn(), tls_conn()
        for _ in range(ROUNDS):
            keep["plain"].append(get(cp, {}))
            keep["tls"].append(get(ct, {"Authorization": AUTH}))
        cp.close()
        ct.close()
        new = {"plain": [], "tls": []}
        for _ in range(ROUNDS // 4):
            c = plain_conn()
            new["plain"].append(get(c, {}))
            c.close()
            c = tls_conn()
            new["tls"].append(get(c, {"Authorization": AUTH}))
            c.close()
        for what, v in (("kept-alive connection", keep),
                        ("new connection each request", new)):
            p, t = statistics.median(v["plain"]), statistics.median(v["tls"])
            print("GET /metrics, %s, median: HTTPS+basic auth %.0f us, "
                  "plain HTTP (baseline, same run) %.0f us: +%.0f us, %.2fx"
                  % (what, t, p, t - p, t / p))
        print("first request with a password (bcrypt cost 10, uncached): "
              "%.1f ms; the next, cached: %.2f ms" % (first / 1e3,
                                                       second / 1e3))
    finally:
        for p in procs:
            p.kill()
            p.wait()
        shutil.rmtree(d, ignore_errors=True)


main()
