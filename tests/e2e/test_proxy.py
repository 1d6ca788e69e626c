"""/workers/N/metrics: the per-worker proxy, and --proxy-targets.

A real Prometheus scrapes every worker through promfork's one port; the
proxy passes a worker's body byte for byte (with and without
Content-Length), refuses workers that are not live, and caps the body.
"""

import hashlib
import http.client
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import PYTHON, check, http_get, wait_until  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
WORKER = os.path.join(HERE, "http_worker.py")
BODY_MAX = 32 * 1024 * 1024  # PROXY_BODY_MAX


def blob(n):
    pattern = bytes(range(256))
    return (pattern * (n // 256 + 1))[:n]


def start(n_workers, env=None, extra=()):
    port = harness.free_port()
    pf = harness.Promfork(n_workers + 2, [PYTHON, WORKER, str(n_workers)],
                          extra=["--listen", "127.0.0.1:%d" % port] + list(extra),
                          env=env)
    pf.wait_workers(n_workers)
    for port_ in pf.workers().values():  # leased before it is bound
        harness.wait_listening(port_)
    return pf, "http://127.0.0.1:%d" % port, port


def raw_get(port, path, version="1.1", timeout=30):
    """Status, headers, raw body bytes and whether the body was whole."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    if version == "1.0":
        c._http_vsn, c._http_vsn_str = 10, "HTTP/1.0"
    try:
        c.request("GET", path)
        r = c.getresponse()
        try:
            body = r.read()
            whole = True
        except http.client.IncompleteRead as e:
            body, whole = e.partial, False
        return r.status, dict(r.getheaders()), body, whole
    finally:
        c.close()


def test_prometheus_through_the_proxy():
    # --carry-hold 1: a slot without a worker serves its carried totals
    # (issue 14) for a second only, then is unknown again.
    pf, base, port = start(3, extra=["--proxy-targets", "--carry-hold", "1"])
    for g in pf.groups():
        w = g["labels"]["worker"]
        check(g["targets"] == ["127.0.0.1:%d" % port]
              and g["labels"]["__metrics_path__"] == "/workers/%s/metrics" % w,
              "worker %s's target is the listener, path /workers/%s/metrics"
              % (w, w))
    prom = harness.Prometheus([harness.Prometheus.file_sd("app", pf.sd_dir)])
    workers = prom.wait_up(3, job="app")
    check(workers == ["0", "1", "2"], "Prometheus scrapes all 3 workers "
          "through the proxy: %s" % workers)
    series = wait_until(
        lambda: (lambda r: r if len(r) == 3 else None)(
            prom.query("e2e_worker_scrapes_total")),
        what="the workers' own metric through the proxy")
    check(sorted(s["metric"]["worker"] for s in series) == ["0", "1", "2"],
          "each worker's own series carries its worker label")
    # The status page shows the proxied scrapes as the last result.
    leases = pf.leases()
    page = http_get(base + "/")[2].decode()
    for l in leases:
        check('data-worker="%d" data-pid="%d"' % (l["worker"], l["pid"]) in page
              and 'data-scrape="ok"' in page,
              "status page: worker %d scraped ok" % l["worker"])

    for path in ("/workers/3/metrics", "/workers/7/metrics",
                 "/workers/-1/metrics", "/workers/0x1/metrics",
                 "/workers/../metrics", "/workers/1/../../metrics",
                 "/workers/0/metrics/x", "/workers/127.0.0.1:22/metrics"):
        status = http_get(base + path)[0]
        check(status == 404, "%s is 404 (%d)" % (path, status))
    status, _, body = http_get(base + "/workers/0/metrics?target=10.0.0.1:80")
    check(status == 200 and b"e2e_worker_scrapes_total" in body,
          "a query string cannot redirect the proxy")

    os.kill(leases[1]["pid"], 9)
    wait_until(lambda: http_get(base + "/workers/%d/metrics"
                                % leases[1]["worker"])[0] == 404,
               what="the dead worker's proxy path to be 404")
    check(True, "a dead worker's proxy path is 404 once its lease ends "
          "and its carried totals' hold time has passed")
    pf.stop()


def test_byte_for_byte():
    size = 3 * 1024 * 1024 + 17
    want = hashlib.sha256(blob(size)).hexdigest()
    for no_length in (False, True):
        env = {"E2E_BLOB_BYTES": str(size)}
        if no_length:
            env["E2E_NO_LENGTH"] = "1"
        pf, base, port = start(1, env=env)
        what = "without Content-Length" if no_length else "with Content-Length"
        for version in ("1.1", "1.0"):
            status, headers, body, whole = raw_get(port, "/workers/0/metrics",
                                                   version)
            check(status == 200 and whole and len(body) == size
                  and hashlib.sha256(body).hexdigest() == want,
                  "%s, HTTP/%s client: %d bytes, same sha256"
                  % (what, version, len(body)))
            check(headers.get("Content-Type", "").startswith(
                "text/plain; version=0.0.4")
                  and headers.get("X-Content-Type-Options") == "nosniff",
                  "the worker's application/octet-stream is not an "
                  "exposition type: the text format goes out, nosniff")
            if not no_length:
                check(headers.get("Content-Length") == str(size),
                      "the worker's Content-Length is passed on")
            elif version == "1.1":
                check(headers.get("Transfer-Encoding") == "chunked",
                      "a body of unknown length goes out in chunks")
        out = os.path.join(pf.dir, "curl.out")
        r = subprocess.run(["curl", "-sS", "--http1.1", "-o", out,
                            "-w", "%{http_code}", base + "/workers/0/metrics"],
                           capture_output=True, timeout=60)
        with open(out, "rb") as f:
            got = hashlib.sha256(f.read()).hexdigest()
        check(r.returncode == 0 and r.stdout == b"200" and got == want,
              "curl gets the same bytes %s" % what)
        pf.stop()


def test_body_cap():
    size = BODY_MAX + 1024
    pf, base, port = start(1, env={"E2E_BLOB_BYTES": str(size)})
    status, _, body, _ = raw_get(port, "/workers/0/metrics")
    check(status == 502 and b"larger than" in body,
          "an announced body over the cap is refused with 502: %r" % body[:200])
    pf.stop()
    pf, base, port = start(1, env={"E2E_BLOB_BYTES": str(size),
                                   "E2E_NO_LENGTH": "1"})
    status, _, body, whole = raw_get(port, "/workers/0/metrics")
    check(status == 200 and not whole and len(body) <= BODY_MAX,
          "an unannounced body over the cap is cut, and seen as cut "
          "(%d bytes, whole=%s)" % (len(body), whole))
    r = subprocess.run(["curl", "-sS", "-o", "/dev/null",
                        base + "/workers/0/metrics"],
                       capture_output=True, timeout=60)
    check(r.returncode != 0, "curl reports the cut body (exit %d: %s)"
          % (r.returncode, r.stderr.decode().strip()))
    status, _, body = http_get(base + "/metrics")
    check(status == 200, "promfork keeps serving")
    pf.stop()


def test():
    test_prometheus_through_the_proxy()
    test_byte_for_byte()
    test_body_cap()


harness.run_test(test)
