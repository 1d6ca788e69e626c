"""The ways into the listener: --listen repeated, systemd socket activation.

promfork serves the same pages on 127.0.0.1 and [::1] at once (two
--listen); started by systemd-socket-activate (systemd's own tool, which
passes LISTEN_FDS and LISTEN_PID as a .socket unit does) with
--systemd-socket, it serves on the sockets it was handed, on both
families, and the wrapped command does not see LISTEN_FDS; started with
--systemd-socket and no sockets, it exits 2 with a clear message.
/-/healthy and /-/ready answer as README says, and every answer of the
listener, errors included, has a Content-Type.
"""

import os
import socket
import subprocess
import sys

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


def test():
    conventions()
    repeated_listen()
    socket_activation()
    no_sockets()


harness.run_test(test)
