"""Trust boundaries (issue 15): attacks by other local users and clients.

- Another local user (nobody) tries to stop all registrations by holding
  every connection of the socket, each kept alive by a request now and
  then.  It cannot connect (the socket is for promfork's user and the
  command's), and past a looser mode it is turned away at the accept
  without holding anything; a worker of the tree still registers.
- One client address holds as many connections of the HTTP listener as
  it can: it gets three quarters, is told 503 at once past them, and
  another address is still served.
- In a tree run as a user that is not root, worker B tries to release
  worker A's lease, and to publish labels that the operator sets (--label
  app, job, instance): 403 and 400, and A's target stays as it was.
- Behind --proxy-targets a worker is told to bind loopback; it answers
  text/html with a script, which the proxy serves as the exposition type,
  nosniff, and the status page forbids scripts (CSP).  Then the worker
  closes its listener (still alive, so still leased) and another user
  listens on its port, on 127.0.0.1 and then on [::1]: the proxy and the
  fan-out refuse to scrape it, and the squatter never gets a connection.
"""

import json
import os
import socket
import stat
import subprocess
import time

from harness import (PROMFORK, PYTHON, Promfork, check, free_port,
                     free_port_range, http_get, log, run_test, start, tmpdir,
                     wait_listening, wait_until)

API_CONNS_MAX = 256
WEB_CONNS_MAX = 128

# Run as the attacker: opens n connections to the socket, keeps each alive
# with a request every second for hold seconds, then reports what it got.
FLOOD = r"""
import json, select, socket, sys, time
path, n, hold = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
conns, errors, answers = [], {}, {}
for i in range(n):
    # Blocking: a Unix connect with a timeout fails at once (EAGAIN) when
    # the backlog is full, instead of waiting for the accept.
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(path)
        conns.append(s)
    except OSError as e:
        errors[e.strerror] = errors.get(e.strerror, 0) + 1
        s.close()
print("ready", flush=True)
# What a connection is told before it asks anything (a refusal at once).
told, _, _ = select.select(conns, [], [], 0.5)
quiet = [s for s in conns if s not in told]
for s in told:
    try:
        data = s.recv(4096)
    except OSError:
        data = b""
    if data:
        st = data.split(b" ", 2)[1].decode()
        answers["at once " + st] = answers.get("at once " + st, 0) + 1
    s.close()
conns = quiet
for s in conns:
    s.settimeout(2)
held = 0
end = time.monotonic() + hold
while time.monotonic() < end:
    alive = []
    for s in conns:
        try:
            s.sendall(b"GET /v1/workers HTTP/1.1\r\nHost: x\r\n\r\n")
            data = s.recv(4096)
            if not data:
                raise OSError(0, "closed")
            st = data.split(b" ", 2)[1].decode()
            answers[st] = answers.get(st, 0) + 1
            if st in ("403", "503"):
                raise OSError(0, "refused %s" % st)
            alive.append(s)
        except OSError as e:
            key = e.strerror or str(e)
            errors[key] = errors.get(key, 0) + 1
            s.close()
    conns = alive
    held = max(held, len(conns))
    time.sleep(1)
print(json.dumps({"connected": n - sum(v for k, v in errors.items()
                                       if "denied" in k),
                  "held": held, "errors": errors, "answers": answers}),
      flush=True)
"""

# The wrapped command: a worker that registers (promfork lease) each time
# the file GO appears, and writes what it got to OUT.
WORKER = r"""
while :; do
    if [ -e "$GO" ]; then
        rm -f "$GO"
        "$PROMFORK" lease > "$OUT.tmp" 2>&1; echo "rc=$?" >> "$OUT.tmp"
        mv "$OUT.tmp" "$OUT"
    fi
    sleep 0.05
done
"""


def register_from_tree(d):
    """Has the tree's worker register; returns (exit status, output)."""
    out = os.path.join(d, "out")
    if os.path.exists(out):
        os.unlink(out)
    open(os.path.join(d, "go"), "w").close()
    wait_until(lambda: os.path.exists(out), timeout=15,
               what="the worker's promfork lease")
    with open(out) as f:
        text = f.read()
    rc = int(text.rsplit("rc=", 1)[1])
    return rc, text


def flood_as_nobody(sock, n, hold):
    p = subprocess.Popen([PYTHON, "-c", FLOOD, sock, str(n), str(hold)],
                         user=65534, group=65534, extra_groups=[],
                         stdout=subprocess.PIPE, text=True)
    line = p.stdout.readline()
    if line.strip() != "ready":
        p.kill()
        p.wait()
        raise AssertionError("the flood did not start: %r" % line)
    return p


def flood_result(p):
    out, _ = p.communicate(timeout=60)
    return json.loads(out.strip().splitlines()[-1])


def test_socket_other_user():
    d = tmpdir()
    os.chmod(d, 0o755)
    pf = Promfork(4, ["/bin/sh", "-c", WORKER],
                  env={"GO": os.path.join(d, "go"),
                       "OUT": os.path.join(d, "out"),
                       "PROMFORK": PROMFORK})
    # The setting: the directory open to all.
    os.chmod(pf.dir, 0o755)
    mode = stat.S_IMODE(os.stat(pf.socket).st_mode)
    check(mode == 0o600, "the socket is 0600 (promfork's user, which the "
          "command runs as), was 0666: %o" % mode)

    flood = flood_as_nobody(pf.socket, API_CONNS_MAX + 44, 3)
    rc, text = register_from_tree(d)
    res = flood_result(flood)
    log("nobody's flood: %r" % res)
    check(res["held"] == 0 and res["errors"].get("Permission denied") ==
          API_CONNS_MAX + 44,
          "nobody cannot connect at all: %r" % res["errors"])
    check(rc == 0, "and a worker of the tree registers: %r" % text)

    # Past a mode that lets everyone in, the accept turns nobody away:
    # told 403 at once, nothing held, nothing counted against the cap.
    os.chmod(pf.socket, 0o666)
    flood = flood_as_nobody(pf.socket, API_CONNS_MAX + 44, 3)
    time.sleep(0.5)
    rc, text = register_from_tree(d)
    res = flood_result(flood)
    log("nobody's flood past the mode: %r" % res)
    check(res["held"] == 0 and res["answers"].get("at once 403", 0) > 0
          and "200" not in res["answers"],
          "nobody's %d connections were each refused at the accept (403), "
          "none held or served: %r" % (API_CONNS_MAX + 44, res))
    check(rc == 0, "meanwhile a worker of the tree registered: %r"
          % text.strip())
    pf.stop()


def connect_from(src, port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind((src, 0))
    s.settimeout(3)
    s.connect(("127.0.0.1", port))
    return s


def test_listener_per_address():
    port = free_port()
    url = "http://127.0.0.1:%d" % port
    pf = Promfork(4, ["sleep", "60"],
                  extra=["--listen", "127.0.0.1:%d" % port,
                         "--http-deadline", "10"])
    wait_until(lambda: http_get(url + "/metrics")[0] == 200,
               what="the listener")
    # 127.0.0.2 (loopback too) holds every connection it can: silent.
    held = [connect_from("127.0.0.2", port) for _ in range(WEB_CONNS_MAX)]
    t0 = time.monotonic()
    refused, kept = 0, 0
    for s in held:
        s.settimeout(0.05)
        try:
            data = s.recv(4096)
            refused += data.startswith(b"HTTP/1.1 503")
        except socket.timeout:
            kept += 1
    took = time.monotonic() - t0
    check(kept == WEB_CONNS_MAX * 3 // 4 and refused == WEB_CONNS_MAX // 4,
          "one address holds three quarters of the %d connections (%d), "
          "the rest told 503 at once (%d, %.1fs)"
          % (WEB_CONNS_MAX, kept, refused, took))
    t0 = time.monotonic()
    st, _, body = http_get(url + "/targets", timeout=5)
    check(st == 200, "another address is served meanwhile (%d in %.2fs)"
          % (st, time.monotonic() - t0))
    for s in held:
        s.close()
    pf.stop()


# The wrapped command, run as nobody: worker A registers and stays; its
# sibling B then attacks A's lease and the operator's labels and writes
# the answers to RESULT.
SIBLINGS = r"""
import http.client, json, os, socket, sys, time

class Conn(http.client.HTTPConnection):
    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(5)
        self.sock.connect(os.environ["PROMFORK_SOCKET"])

def call(method, url, body=None):
    c = Conn("promfork")
    data = json.dumps(body).encode() if body is not None else None
    c.request(method, url, body=data)
    r = c.getresponse()
    raw = r.read()
    c.close()
    return r.status, json.loads(raw) if raw.strip() else None

r, w = os.pipe()
if os.fork() == 0:  # A
    st, lease = call("POST", "/v1/workers", {"labels": {"role": "web"}})
    os.write(w, json.dumps([st, lease]).encode())
    time.sleep(120)
    os._exit(0)
a = json.loads(os.read(r, 4096))
if os.fork() == 0:  # B, A's sibling
    out = {"a": a}
    out["delete"] = call("DELETE", "/v1/workers/%d" % a[1]["worker"])
    out["labels"] = [call("POST", "/v1/workers", {"labels": l}) for l in
                     ({"app": "bank"}, {"job": "payments"},
                      {"instance": "db1:9100"})]
    with open(sys.argv[1] + ".tmp", "w") as f:
        json.dump(out, f)
    os.rename(sys.argv[1] + ".tmp", sys.argv[1])
    time.sleep(120)
    os._exit(0)
time.sleep(120)
"""


def test_siblings():
    d = tmpdir()
    os.chmod(d, 0o755)
    os.chown(d, 65534, 65534)
    sd = os.path.join(d, "sd")
    os.mkdir(sd)
    os.chown(sd, 65534, 65534)
    script = os.path.join(d, "siblings.py")
    with open(script, "w") as f:
        f.write(SIBLINGS)
    result = os.path.join(d, "result.json")
    sd_file = os.path.join(sd, "app.json")
    low = free_port_range(4)
    start([PROMFORK, "--port-range", "%d-%d" % (low, low + 3),
           "--socket", os.path.join(d, "promfork.sock"),
           "--sd-file", sd_file, "--target-host", "127.0.0.1",
           "--label", "app=shop", "--label", "job=shopjob",
           "--", PYTHON, script, result],
          user=65534, group=65534, extra_groups=[])
    wait_until(lambda: os.path.exists(result), timeout=20,
               what="the sibling's attacks")
    with open(result) as f:
        res = json.load(f)
    log("answers: %r" % res)
    check(res["a"][0] == 201, "worker A registered: %r" % res["a"])
    check(res["delete"][0] == 403,
          "sibling B cannot release A's worker %d (uid 65534, not root): "
          "%r" % (res["a"][1]["worker"], res["delete"]))
    check([st for st, _ in res["labels"]] == [400, 400, 400],
          "nor publish app, job or instance: %r" % res["labels"])
    with open(sd_file) as f:
        groups = json.load(f)
    check(len(groups) == 1 and groups[0]["labels"]["app"] == "shop"
          and groups[0]["labels"]["job"] == "shopjob"
          and groups[0]["labels"]["role"] == "web",
          "A's target stays, with the operator's labels: %r" % groups)


# The wrapped command: registers through the contrib client, serves HTML
# on the address and port the lease names, and closes its listener when
# the file close appears (staying alive, so the lease stays).
HTML_WORKER = r"""
import http.server, json, os, sys, threading, time
sys.path.insert(0, sys.argv[2])
import promfork

d = sys.argv[1]
lease = promfork.register()

class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"<script>alert(document.domain)</script>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass

srv = http.server.HTTPServer((lease.bind or "0.0.0.0", lease.port), H)
threading.Thread(target=srv.serve_forever, daemon=True).start()
with open(os.path.join(d, "lease.tmp"), "w") as f:
    json.dump({"worker": lease.worker, "port": lease.port,
               "bind": lease.bind}, f)
os.rename(os.path.join(d, "lease.tmp"), os.path.join(d, "lease.json"))
while not os.path.exists(os.path.join(d, "close")):
    time.sleep(0.05)
srv.shutdown()
srv.server_close()
open(os.path.join(d, "closed"), "w").close()
time.sleep(600)
"""

# The squatter: listens on host:port, counts the connections it gets until
# its stdin closes, and prints the count.
SQUATTER = r"""
import select, socket, sys
host, port = sys.argv[1], int(sys.argv[2])
fam = socket.AF_INET6 if ":" in host else socket.AF_INET
s = socket.socket(fam, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
if fam == socket.AF_INET6:
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
s.bind((host, port))
s.listen(16)
print("ready", flush=True)
got = 0
while True:
    r, _, _ = select.select([s, sys.stdin], [], [], 60)
    if not r or sys.stdin in r:
        break
    c, _ = s.accept()
    got += 1
    c.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: text/html\r\n\r\n"
              b"<script>squatted()</script>")
    c.close()
print(got, flush=True)
"""

SQUATTER_UID = 4242  # a throwaway uid: no account needed for setpriv


def squat(host, port):
    argv = [PYTHON, "-c", SQUATTER, host, str(port)]
    if os.geteuid() == 0:
        argv = ["setpriv", "--reuid=%d" % SQUATTER_UID,
                "--regid=%d" % SQUATTER_UID, "--clear-groups"] + argv
    p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         text=True)
    line = p.stdout.readline()
    if line.strip() != "ready":
        p.kill()
        p.wait()
        raise AssertionError("the squatter did not start: %r" % line)
    return p


def squat_result(p):
    out, _ = p.communicate("", timeout=30)
    return int(out.strip().splitlines()[-1])


def test_html_and_squatters():
    d = tmpdir()
    script = os.path.join(d, "html_worker.py")
    with open(script, "w") as f:
        f.write(HTML_WORKER)
    listen = free_port()
    web = "http://127.0.0.1:%d" % listen
    pf = Promfork(2, [PYTHON, script, d, os.path.join(
        os.environ.get("PROMFORK_SOURCE", os.getcwd()), "contrib", "python")],
        extra=["--listen", "127.0.0.1:%d" % listen, "--proxy-targets"])
    wait_until(lambda: os.path.exists(os.path.join(d, "lease.json")),
               timeout=20, what="the worker's lease")
    with open(os.path.join(d, "lease.json")) as f:
        lease = json.load(f)
    port, worker = lease["port"], lease["worker"]
    check(lease["bind"] == "127.0.0.1",
          "behind the proxy the worker binds loopback: %r" % lease)
    wait_listening(port)
    path = "/workers/%d/metrics" % worker

    st, hdrs, body = http_get(web + path)
    log("worker's HTML through the proxy: %d %r" % (st, hdrs))
    check(st == 200 and hdrs.get("Content-Type", "").startswith(
        "text/plain; version=0.0.4"),
        "text/html is served as the exposition type: %r" % hdrs)
    check(hdrs.get("X-Content-Type-Options") == "nosniff",
          "and nosniff: %r" % hdrs)
    st, hdrs, body = http_get(web + "/")
    csp = hdrs.get("Content-Security-Policy", "")
    check(st == 200 and csp.startswith("default-src 'none'")
          and "script-src" not in csp,
          "the status page allows no script: %r" % csp)

    open(os.path.join(d, "close"), "w").close()
    wait_until(lambda: os.path.exists(os.path.join(d, "closed")),
               what="the worker closing its listener")
    for host in ("127.0.0.1", "::1"):
        try:
            p = squat(host, port)
        except OSError:
            if host == "::1":
                log("no IPv6 loopback: the [::1] squatter is skipped")
                continue
            raise
        st, _, body = http_get(web + path)
        log("proxy with a squatter on %s: %d %s" % (host, st, body))
        check(st == 502 and b"port %d is held by" % port in body
              and b"not by worker %d" % worker in body,
              "the proxy refuses a port held by another process: %d %r"
              % (st, body))
        st, _, body = http_get(web + "/workers/metrics")
        check(b"squatted" not in body, "the fan-out takes nothing from it")
        got = squat_result(p)
        check(got == 0, "the squatter on %s:%d was never dialled (%d "
              "connections)" % (host, port, got))
    pf.stop()


def test():
    test_html_and_squatters()
    if os.geteuid() != 0:
        log("not root: the attacker cannot be another user; skipping "
            "the socket part")
    else:
        test_socket_other_user()
        test_siblings()
    test_listener_per_address()


if __name__ == "__main__":
    run_test(test)
