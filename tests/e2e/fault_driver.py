"""The command promfork runs in tests/e2e/test_faults.py.

Every process it forks is inside promfork's tree, so its registrations are
allowed; it writes what it saw as JSON for the test to judge.  Modes:

  churn OUT K N [STOP]  K clients, N register/release cycles each (or, with
                        STOP, until that file exists), over keep-alive
                        connections; meanwhile the driver snapshots
                        GET /v1/workers and checks that no two live leases
                        share a worker, port or pid.
  hold OUT N SECS       N orphaned sleepers (their parent exits, promfork
                        adopts them), in one process group, each registered;
                        they sleep at most SECS.
  ctl DIR               runs commands the test drops in DIR/cmd.N (reg K,
                        kill K) and answers in DIR/ack.N.
  stale OUT             a dead worker's pid, and that pid reused, against
                        the registration API.

Everything here is bounded in count and time.
"""

import json
import os
import signal
import socket
import sys
import time

SOCK = os.environ["PROMFORK_SOCKET"]
LIFETIME = 110.0  # no driver process outlives this, whatever happens


class Api:
    """A keep-alive HTTP/1.1 client for promfork's Unix socket."""

    def __init__(self, timeout=10.0):
        self.timeout = timeout
        self.sock = None
        self.buf = b""

    def _connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(SOCK)
        self.sock = s
        self.buf = b""

    def close(self):
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def _read_more(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("connection closed by promfork")
        self.buf += chunk

    def request(self, method, url, body=None):
        """Returns (status, parsed JSON body or None)."""
        if self.sock is None:
            self._connect()
        data = b"" if body is None else json.dumps(body).encode()
        head = "%s %s HTTP/1.1\r\nHost: promfork\r\n" % (method, url)
        if body is not None:
            head += ("Content-Type: application/json\r\n"
                     "Content-Length: %d\r\n" % len(data))
        self.sock.sendall(head.encode() + b"\r\n" + data)
        while b"\r\n\r\n" not in self.buf:
            self._read_more()
        h, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = h.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        length, close = 0, False
        for line in lines[1:]:
            k, _, v = line.partition(":")
            k, v = k.strip().lower(), v.strip().lower()
            if k == "content-length":
                length = int(v)
            elif k == "connection" and v == "close":
                close = True
        while len(self.buf) < length:
            self._read_more()
        raw, self.buf = self.buf[:length], self.buf[length:]
        if close:
            self.close()
        return status, (json.loads(raw) if raw.strip() else None)


def write_json(path, obj):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f)
    os.rename(tmp, path)


def churn_client(out, n, stop):
    """One client: register itself, release, again; records each lease."""
    api = Api()
    me = os.getpid()
    recs, errors = [], []
    deadline = time.monotonic() + LIFETIME / 2
    i = 0
    while time.monotonic() < deadline:
        if stop is None and i >= n:
            break
        if stop is not None and i % 20 == 0 and os.path.exists(stop):
            break
        # Half the time the pid is named, half it defaults to the caller.
        body = {"pid": me, "labels": {"c": str(i % 3)}} if i % 2 else {}
        t0 = time.monotonic()
        try:
            st, lease = api.request("POST", "/v1/workers", body)
        except OSError as e:
            errors.append("POST: %s" % e)
            api.close()
            i += 1
            continue
        t1 = time.monotonic()
        if st != 201:
            errors.append("POST %d %r" % (st, lease))
            i += 1
            continue
        t2 = time.monotonic()
        try:
            st2, _ = api.request("DELETE", "/v1/workers/%d" % lease["worker"])
        except OSError as e:
            errors.append("DELETE: %s" % e)
            api.close()
            st2 = 0
        t3 = time.monotonic()
        if st2 != 204:
            errors.append("DELETE %d" % st2)
        recs.append([lease["worker"], lease["port"], t1, t2,
                     round((t1 - t0) * 1e3, 3), round((t3 - t2) * 1e3, 3)])
        i += 1
    api.close()
    write_json(out, {"pid": me, "recs": recs, "errors": errors})


def snapshot_check(leases, low, pids, bad):
    ws = [l["worker"] for l in leases]
    ports = [l["port"] for l in leases]
    lp = [l["pid"] for l in leases]
    if len(set(ws)) != len(ws) or len(set(ports)) != len(ports) or \
            len(set(lp)) != len(lp):
        bad.append("duplicate in snapshot: %r" % leases)
    for l in leases:
        if l["port"] != low + l["worker"]:
            bad.append("worker %d has port %d" % (l["worker"], l["port"]))
        if l["pid"] not in pids:
            bad.append("lease for unknown pid %d" % l["pid"])


def churn(out, k, n, stop=None):
    low = int(os.environ["FAULT_PORT_LOW"])
    kids = []
    for i in range(k):
        pid = os.fork()
        if pid == 0:
            try:
                churn_client("%s.%d" % (out, i), n, stop)
            finally:
                os._exit(0)
        kids.append(pid)
    pids, bad, snaps, maxlive = set(kids), [], 0, 0
    api = Api()
    live = set(kids)
    deadline = time.monotonic() + LIFETIME / 2
    while live and time.monotonic() < deadline:
        try:
            st, leases = api.request("GET", "/v1/workers")
        except OSError:
            os._exit(1)  # promfork is gone (kill -9 test): nothing to tell
        snaps += 1
        if st != 200:
            bad.append("GET %d" % st)
        else:
            snapshot_check(leases, low, pids, bad)
            maxlive = max(maxlive, len(leases))
        for p in list(live):
            if os.waitpid(p, os.WNOHANG)[0] == p:
                live.discard(p)
        time.sleep(0.002)
    st, leases = api.request("GET", "/v1/workers")
    write_json(out, {"snapshots": snaps, "bad": bad[:20], "nbad": len(bad),
                     "maxlive": maxlive, "final": leases, "clients": kids,
                     "unfinished": sorted(live)})
    # FAULT_LINGER: stay (and so keep promfork up) until that file exists.
    linger = os.environ.get("FAULT_LINGER")
    end = time.monotonic() + 30
    while linger and not os.path.exists(linger) and time.monotonic() < end:
        time.sleep(0.01)


def register_once(labels=None):
    api = Api()
    try:
        return api.request("POST", "/v1/workers",
                           {"labels": labels} if labels else {})
    finally:
        api.close()


def sleeper(w, secs):
    """Registers itself, reports on the pipe w, then sleeps."""
    try:
        st, lease = register_once()
        os.write(w, ("%d %d %s\n" % (os.getpid(), st,
                                     lease.get("worker", -1))).encode())
    except Exception as e:
        os.write(w, ("%d 0 %s\n" % (os.getpid(), e)).encode())
    os.close(w)
    end = time.monotonic() + secs
    while time.monotonic() < end:
        time.sleep(1)


def hold(out, n, secs):
    r, w = os.pipe()
    mid = os.fork()
    if mid == 0:
        # The intermediate parent: a group of its own, n sleepers, exit.
        os.close(r)
        os.setpgid(0, 0)
        for _ in range(n):
            if os.fork() == 0:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                sleeper(w, secs)
                os._exit(0)
        os._exit(0)
    os.close(w)
    os.waitpid(mid, 0)
    got, buf = [], b""
    deadline = time.monotonic() + 30
    while len(got) < n and time.monotonic() < deadline:
        chunk = os.read(r, 65536)
        if not chunk:
            break
        buf += chunk
        *lines, buf = buf.split(b"\n")
        got += [l.decode().split() for l in lines]
    write_json(out, {"pgid": mid, "sleepers": got})
    time.sleep(secs)


def ctl(d):
    """Commands from the test: reg K (K registered sleepers), kill K."""
    kids = []
    seq = 0
    deadline = time.monotonic() + LIFETIME
    while time.monotonic() < deadline:
        cmd = os.path.join(d, "cmd.%d" % seq)
        if not os.path.exists(cmd):
            time.sleep(0.01)
            continue
        with open(cmd) as f:
            verb, arg = f.read().split()
        res = []
        if verb == "reg":
            for _ in range(int(arg)):
                r, w = os.pipe()
                pid = os.fork()
                if pid == 0:
                    os.close(r)
                    sleeper(w, LIFETIME)
                    os._exit(0)
                os.close(w)
                res.append(os.read(r, 256).decode().split())
                os.close(r)
                kids.append(pid)
        elif verb == "kill":
            for _ in range(int(arg)):
                pid = kids.pop()
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                res.append(pid)
        write_json(os.path.join(d, "ack.%d" % seq), res)
        seq += 1


def fork_paused():
    pid = os.fork()
    if pid == 0:
        time.sleep(LIFETIME / 2)
        os._exit(0)
    return pid


def stale(out):
    res = {}
    api = Api()
    # A worker registers, dies, is reaped: its pid names no process.
    r, w = os.pipe()
    a = os.fork()
    if a == 0:
        os.close(r)
        sleeper(w, LIFETIME / 2)
        os._exit(0)
    os.close(w)
    line = os.read(r, 256).decode().split()
    os.close(r)
    res["registered"] = int(line[1])
    os.kill(a, signal.SIGKILL)
    os.waitpid(a, 0)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if all(l["pid"] != a for l in api.request("GET", "/v1/workers")[1]):
            break
        time.sleep(0.01)
    res["dead_lease_gone"] = all(
        l["pid"] != a for l in api.request("GET", "/v1/workers")[1])
    res["dead_pid"] = api.request("POST", "/v1/workers", {"pid": a})
    # A live process of the tree that is not an ancestor: not ours.
    b = fork_paused()
    res["sibling_pid"] = api.request("POST", "/v1/workers", {"pid": b})
    res["delete_sibling_unleased"] = api.request("DELETE", "/v1/workers/999")
    os.kill(b, signal.SIGKILL)
    os.waitpid(b, 0)
    # The dead worker's pid, reused by another process of the tree.
    reused = None
    for _ in range(20):
        try:
            with open("/proc/sys/kernel/ns_last_pid", "w") as f:
                f.write(str(a - 1))
        except OSError as e:
            res["reuse_skipped"] = "cannot set ns_last_pid: %s" % e
            break
        r, w = os.pipe()
        c = os.fork()
        if c == 0:
            os.close(r)
            # Wait to be told to register, so the claim comes first.
            time.sleep(0.3)
            sleeper(w, LIFETIME / 2)
            os._exit(0)
        os.close(w)
        if c == a:
            reused = (c, r)
            break
        os.kill(c, signal.SIGKILL)
        os.waitpid(c, 0)
        os.close(r)
    if reused is not None:
        c, r = reused
        res["reused"] = True
        res["reused_claim"] = api.request("POST", "/v1/workers", {"pid": a})
        line = os.read(r, 256).decode().split()
        res["reused_self"] = int(line[1])
        leases = api.request("GET", "/v1/workers")[1]
        res["reused_leases"] = [l for l in leases if l["pid"] == a]
        os.kill(c, signal.SIGKILL)
        os.waitpid(c, 0)
    elif "reuse_skipped" not in res:
        res["reuse_skipped"] = "pid %d was not handed out again" % a
    api.close()
    write_json(out, res)


def main():
    signal.signal(signal.SIGTERM, lambda *a: os._exit(0))
    mode, args = sys.argv[1], sys.argv[2:]
    if mode == "churn":
        churn(args[0], int(args[1]), int(args[2]),
              args[3] if len(args) > 3 else None)
    elif mode == "hold":
        hold(args[0], int(args[1]), float(args[2]))
    elif mode == "ctl":
        ctl(args[0])
    elif mode == "stale":
        stale(args[0])
    else:
        sys.exit("unknown mode %s" % mode)


if __name__ == "__main__":
    main()
