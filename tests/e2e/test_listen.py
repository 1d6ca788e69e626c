"""The ways into the listener: --listen repeated, systemd socket activation.

promfork serves the same pages on 127.0.0.1 and [::1] at once (two
--listen); started by systemd-socket-activate (systemd's own tool, which
passes LISTEN_FDS and LISTEN_PID as a .socket unit does) with
--systemd-socket, it serves on the sockets it was handed, on both
families, and the wrapped command does not see LISTEN_FDS; started with
--systemd-socket and no sockets, it exits 2 with a clear message.
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


def test():
    repeated_listen()
    socket_activation()
    no_sockets()


harness.run_test(test)
