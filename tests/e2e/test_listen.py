"""The ways into the listener: --listen repeated, systemd socket activation.

promfork serves the same pages on 127.0.0.1 and [::1] at once (two
--listen); started by systemd-socket-activate (systemd's own tool, which
passes LISTEN_FDS and LISTEN_PID as a .socket unit does) with
--systemd-socket, it serves on the sockets it was handed, on both
families, and the wrapped command does not see LISTEN_FDS; started with
--systemd-socket and no sockets, it exits 2 with a clear message, as it
does for a --listen port inside --port-range (a worker's port).
/-/healthy and /-/ready answer as README says, and every answer of the
listener, errors included, has a Content-Type.  The fan-out answers gzip
when asked (Python's gzip and curl --compressed read it); 80 concurrent
fan-outs by another user, reading slowly, cost one scrape of each worker
and one copy of the answer (measured: scrapes, RSS); a fan-out over
--http-budget stops the worker that does not fit.
"""

import gzip
import os
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import PYTHON, check, http_get, wait_until  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
WORKER = os.path.join(HERE, "http_worker.py")


def free_dual_port():
    """A port free on both 127.0.0.1 and ::1."""
    for _ in range(50):
        port = harness.free_port()
        try:
            s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            s.bind(("::1", port))
            s.close()
            return port
        except OSError:
            s.close()
    raise harness.TestFailure("no port free on both 127.0.0.1 and ::1")


def both_families(port, what):
    for host in ("127.0.0.1", "[::1]"):
        url = "http://%s:%d/targets" % (host, port)
        status, _, body = wait_until(
            lambda: (lambda r: r if r[0] == 200 else None)(http_get(url)),
            what="%s answers on %s" % (what, host))
        check(status == 200 and body.startswith(b"["),
              "%s: /targets answers on %s" % (what, host))


def repeated_listen():
    port = free_dual_port()
    pf = harness.Promfork(4, [PYTHON, WORKER, "2"],
                          extra=["--listen", "127.0.0.1:%d" % port,
                                 "--listen", "[::1]:%d" % port])
    pf.wait_workers(2)
    both_families(port, "two --listen")
    status, _, body = http_get("http://[::1]:%d/metrics" % port)
    check(status == 200 and b"promfork_http_connections" in body,
          "/metrics answers over IPv6 too")
    pf.stop()


def socket_activation():
    port = free_dual_port()
    d = harness.tmpdir()
    env_out = os.path.join(d, "env")
    sock = os.path.join(d, "promfork.sock")
    low = harness.free_port_range(2)
    argv = ["/usr/bin/systemd-socket-activate",
            "-l", "127.0.0.1:%d" % port, "-l", "[::1]:%d" % port,
            harness.PROMFORK, "--systemd-socket",
            "--port-range", "%d-%d" % (low, low + 1), "--socket", sock,
            "--", "/bin/sh", "-c",
            'env > %s; exec sleep 60' % env_out]
    p = harness.start(argv, stderr=subprocess.PIPE, text=True)
    # systemd-socket-activate starts promfork at the first connection
    both_families(port, "--systemd-socket")
    wait_until(lambda: os.path.exists(env_out) and
               os.path.getsize(env_out) > 0, what="COMMAND's environment")
    env = open(env_out).read()
    check("LISTEN_FDS=" not in env and "LISTEN_PID=" not in env,
          "COMMAND does not inherit LISTEN_FDS / LISTEN_PID")
    check("PROMFORK_SOCKET=" in env, "COMMAND runs with PROMFORK_SOCKET")
    harness.stop(p)


def no_sockets():
    low = harness.free_port_range(2)
    r = subprocess.run([harness.PROMFORK, "--systemd-socket",
                        "--port-range", "%d-%d" % (low, low + 1),
                        "--", "/bin/true"],
                       capture_output=True, text=True, timeout=10)
    check(r.returncode == 2 and ".socket unit" in r.stderr,
          "--systemd-socket without sockets exits 2 saying why (%d: %s)"
          % (r.returncode, r.stderr.strip()))
    # LISTEN_PID of another process: not ours, as sd_listen_fds says
    r = subprocess.run([harness.PROMFORK, "--systemd-socket",
                        "--port-range", "%d-%d" % (low, low + 1),
                        "--", "/bin/true"],
                       env=dict(os.environ, LISTEN_PID="1", LISTEN_FDS="1"),
                       capture_output=True, text=True, timeout=10)
    check(r.returncode == 2 and "name another process" in r.stderr,
          "sockets meant for another process are not taken (%d: %s)"
          % (r.returncode, r.stderr.strip()))


def listener_in_the_range():
    low = harness.free_port_range(3)
    r = subprocess.run([harness.PROMFORK, "--port-range",
                        "%d-%d" % (low, low + 2), "--socket",
                        os.path.join(harness.tmpdir(), "promfork.sock"),
                        "--listen", "127.0.0.1:%d" % (low + 1),
                        "--", "/bin/true"],
                       capture_output=True, text=True, timeout=10)
    check(r.returncode == 2 and "inside --port-range" in r.stderr,
          "a --listen port inside --port-range exits 2 saying why (%d: %s)"
          % (r.returncode, r.stderr.strip()))


def request(url, method="GET", headers=None):
    """(status, headers, body) of any method, 4xx and 5xx included."""
    import urllib.request
    import urllib.error
    req = urllib.request.Request(url, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def conventions():
    # A command whose workers never register: healthy, not ready yet.
    port = harness.free_port()
    idle = harness.Promfork(2, [PYTHON, "-c", "import time; time.sleep(60)"],
                            extra=["--listen", "127.0.0.1:%d" % port])
    base = "http://127.0.0.1:%d" % port
    wait_until(lambda: http_get(base + "/-/healthy")[0] == 200,
               what="/-/healthy")
    status, headers, body = http_get(base + "/-/healthy")
    check(headers.get("Content-Type") == "text/plain; charset=utf-8" and
          body == b"promfork is healthy.\n",
          "/-/healthy: 200, text/plain, says healthy")
    status, headers, body = http_get(base + "/-/ready")
    check(status == 503 and b"no worker has registered yet" in body and
          headers.get("Content-Type") == "text/plain; charset=utf-8",
          "/-/ready before the first registration: 503 saying why (%d %r)"
          % (status, body))
    status, _, body = http_get(base + "/targets")
    check(status == 200 and body.strip() == b"[]",
          "http_sd /targets without workers is [] (%d %r)" % (status, body))
    idle.stop()

    # Workers registered: ready; every answer has a Content-Type.
    port = harness.free_port()
    pf = harness.Promfork(4, [PYTHON, WORKER, "2"],
                          extra=["--listen", "127.0.0.1:%d" % port])
    base = "http://127.0.0.1:%d" % port
    pf.wait_workers(2)
    for p in pf.workers().values():
        harness.wait_listening(p)
    status, _, body = http_get(base + "/-/ready")
    check(status == 200 and body == b"promfork is ready.\n",
          "/-/ready once workers hold leases: 200")
    want = {
        ("GET", "/"): (200, "text/html"),
        ("GET", "/metrics"): (200, "text/plain; version=0.0.4"),
        ("GET", "/targets"): (200, "application/json"),
        ("GET", "/workers/metrics"): (200, "text/plain; version=0.0.4"),
        ("GET", "/workers/0/metrics"): (200, "text/plain"),
        ("GET", "/workers/7/metrics"): (404, "application/json"),
        ("GET", "/nothing"): (404, "application/json"),
        ("POST", "/metrics"): (405, "application/json"),
        ("GET", "/-/healthy"): (200, "text/plain"),
        ("GET", "/-/ready"): (200, "text/plain"),
    }
    for (method, path), (code, ctype) in want.items():
        status, headers, _ = request(base + path, method)
        check(status == code and
              headers.get("Content-Type", "").startswith(ctype),
              "%s %s: %d with Content-Type %s (got %d %s)"
              % (method, path, code, ctype, status,
                 headers.get("Content-Type")))
    pf.stop()


ATTACKER = "promfork-e2e-other"
ATTACK_CONNS = 80  # under the listener's 96 from one address
# Run as another user: opens ATTACK_CONNS connections, asks each for the
# fan-out (half with gzip), reads nothing for HOLD seconds, then reads
# every answer and prints the statuses.
ATTACK = r"""
import socket, sys, time
port, n, hold = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
socks = []
for i in range(n):
    s = socket.create_connection(("127.0.0.1", port), timeout=20)
    enc = "Accept-Encoding: gzip\r\n" if i % 2 else ""
    s.sendall(("GET /workers/metrics HTTP/1.1\r\nHost: x\r\n%s"
               "Connection: close\r\n\r\n" % enc).encode())
    socks.append(s)
time.sleep(hold)
codes = []
for s in socks:
    head, got = b"", 0
    try:
        while True:
            b = s.recv(1 << 20)
            if not b:
                break
            if len(head) < 12:
                head += b[:12]
            got += len(b)
    except OSError:
        pass
    codes.append(head[9:12].decode() or "closed")
    s.close()
print(" ".join(codes))
"""


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1


def metric(base, name):
    _, _, body = http_get(base + "/metrics")
    for line in body.decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def worker_scrapes(ports):
    """Each worker's own count of the scrapes it answered."""
    total = 0
    for p in ports:
        _, _, body = http_get("http://127.0.0.1:%d/metrics" % p)
        for line in body.decode().splitlines():
            if line.startswith("e2e_worker_scrapes_total "):
                total += float(line.split()[1])
    return total


def concurrent_fanouts():
    """Another user's 80 concurrent fan-outs of 4 x 20 000 series, read
    slowly: one scrape of each worker, one copy of the answer."""
    harness.ensure_user(ATTACKER)
    port = harness.free_port()
    pf = harness.Promfork(6, [PYTHON, WORKER, "4"],
                          extra=["--listen", "127.0.0.1:%d" % port],
                          env={"E2E_SERIES": "20000", "E2E_DELAY_MS": "500"})
    base = "http://127.0.0.1:%d" % port
    pf.wait_workers(4)
    ports = list(pf.workers().values())
    for p in ports:
        harness.wait_listening(p)
    status, headers, body = http_get(base + "/workers/metrics",
                                     headers={"Accept-Encoding": "gzip"},
                                     timeout=10)
    check(status == 200 and headers.get("Content-Encoding") == "gzip",
          "the fan-out answers gzip when asked (%d %s)"
          % (status, headers.get("Content-Encoding")))
    plain = gzip.decompress(body)
    check(b'e2e_bulk_total{path="/some/path/19999",worker="3"}' in plain or
          b'e2e_bulk_total{worker="3",path="/some/path/19999"}' in plain,
          "it inflates to every worker's series (%d bytes from %d)"
          % (len(plain), len(body)))
    r = subprocess.run(["/usr/bin/curl", "-sS", "--compressed", "-o",
                        os.devnull, "-w", "%{size_download} %{http_code}",
                        base + "/workers/metrics"],
                       capture_output=True, text=True, timeout=20)
    check(r.returncode == 0 and r.stdout.split()[1] == "200" and
          int(r.stdout.split()[0]) < len(plain) / 4,
          "curl --compressed gets it in gzip: %s bytes on the wire of %d"
          % (r.stdout.split()[0], len(plain)))

    scrapes0 = metric(base, "promfork_fanout_scrapes_total")
    worker0 = worker_scrapes(ports)
    rss0 = rss_kib(pf.proc.pid)
    attack = harness.start(["setpriv", "--reuid", ATTACKER, "--regid",
                            ATTACKER, "--clear-groups", PYTHON, "-c", ATTACK,
                            str(port), str(ATTACK_CONNS), "3"],
                           stdout=subprocess.PIPE, text=True)
    time.sleep(2)  # every request is in, the answers wait for the reader
    rss1 = rss_kib(pf.proc.pid)
    peak = metric(base, "promfork_http_budget_peak_bytes")
    out, _ = attack.communicate(timeout=60)
    codes = out.split()
    scrapes = metric(base, "promfork_fanout_scrapes_total") - scrapes0
    joined = metric(base, "promfork_fanout_joined_total")
    # less the scrape that worker_scrapes itself made of each
    per_worker = (worker_scrapes(ports) - worker0) / len(ports) - 1
    harness.log("%d concurrent fan-outs by %s: %d fan-out scrapes, %.1f "
                "scrapes per worker, %d joined; promfork RSS %d KiB -> %d "
                "KiB (+%d) while the answers waited; budget peak %d bytes; "
                "plain answer %d bytes"
                % (ATTACK_CONNS, ATTACKER, scrapes, per_worker, joined,
                   rss0, rss1, rss1 - rss0, peak, len(plain)))
    check(codes.count("200") == ATTACK_CONNS,
          "every one of the %d requests got 200 (%s)"
          % (ATTACK_CONNS, " ".join(sorted(set(codes)))))
    check(scrapes <= 2 and per_worker <= 2,
          "%d fan-outs cost %d scrapes of each worker, not %d"
          % (ATTACK_CONNS, per_worker, ATTACK_CONNS))
    # one plain and one gzip copy, not 80: well under 80 answers' worth
    check((rss1 - rss0) * 1024 < 8 * len(plain),
          "promfork's memory grew %d KiB for %d waiting answers of %d KiB "
          "each (shared, not copied)"
          % (rss1 - rss0, ATTACK_CONNS, len(plain) // 1024))
    check(metric(base, "promfork_http_budget_bytes") == 0,
          "the budget is all given back once the answers are taken")
    pf.stop()


def budget_refuses():
    """A budget of 1 MiB against a 3 MiB fan-out: a worker stops, and a
    request while the answer waits for a reader gets 503, counted."""
    port = harness.free_port()
    pf = harness.Promfork(4, [PYTHON, WORKER, "2"],
                          extra=["--listen", "127.0.0.1:%d" % port,
                                 "--http-budget", "1"],
                          env={"E2E_SERIES": "20000"})
    base = "http://127.0.0.1:%d" % port
    pf.wait_workers(2)
    for p in pf.workers().values():
        harness.wait_listening(p)
    status, _, body = http_get(base + "/workers/metrics", timeout=10)
    text = body.decode()
    check(status == 200 and 'promfork_worker_up{worker="0"}' in text,
          "over the budget the fan-out still answers")
    check(text.count(" 0\n", text.index("promfork_worker_up")) >= 1 and
          metric(base, "promfork_http_budget_stopped_total") >= 1,
          "a worker whose answer did not fit is down, counted in "
          "promfork_http_budget_stopped_total")
    pf.stop()


def test():
    budget_refuses()
    concurrent_fanouts()
    conventions()
    repeated_listen()
    socket_activation()
    no_sockets()
    listener_in_the_range()


harness.run_test(test)
