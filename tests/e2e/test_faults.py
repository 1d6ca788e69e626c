"""Faults and load: promfork keeps working, loses nothing, lets no one in.

- 10 000 register/release cycles from 8 concurrent clients of the tree:
  every answer right, no worker, port or pid leased twice at once (client
  records and GET /v1/workers snapshots), the counters add up.
- 200 orphaned workers killed at once: all reaped, all released, [].
- kill -9 of promfork in the middle of writes while the file is parsed in a
  loop: never a parse error, never a *.json temp file left behind.
- A full filesystem: the old file stays intact, the error is logged and
  counted, and the file catches up once there is room again.
- Slow, garbage, oversized and truncated requests on the socket and on the
  HTTP listener: each refused or cut off, while a client of the tree and a
  scraper keep being served.
- A dead worker's pid (404), someone else's pid (403), that pid reused by
  another process (403, and a fresh lease for the new process), and
  requests from outside the tree (403).
"""

import json
import os
import random
import select
import signal
import socket
import subprocess
import time

from harness import (PYTHON, SOURCE, Promfork, TestFailure, check, free_port,
                     free_port_range,
                     http_get, log, run_test, start, tmpdir, unix_request,
                     wait_until)

DRIVER = os.path.join(SOURCE, "tests", "e2e", "fault_driver.py")
CHURN_CLIENTS = 8
CHURN_CYCLES = 1250  # per client: 10 000 in all


def driver(*args):
    return [PYTHON, DRIVER] + [str(a) for a in args]


def load(path, timeout=60.0, what=None):
    wait_until(lambda: os.path.exists(path), timeout=timeout,
               what=what or os.path.basename(path))
    with open(path) as f:
        return json.load(f)


def metric(url, name):
    """The value of one unlabelled sample of promfork's /metrics."""
    status, _, body = http_get(url + "/metrics")
    if status != 200:
        raise TestFailure("/metrics answered %d" % status)
    for line in body.decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise TestFailure("no %s in /metrics" % name)


def metric_line(url, prefix):
    body = http_get(url + "/metrics")[2].decode()
    for line in body.splitlines():
        if line.startswith(prefix):
            return float(line.split()[-1])
    return 0.0


def test_churn():
    d = tmpdir()
    out = os.path.join(d, "churn")
    linger = os.path.join(d, "linger")
    listen = "127.0.0.1:%d" % free_port()
    url = "http://" + listen
    low = free_port_range(16)
    pf = Promfork(16, driver("churn", out, CHURN_CLIENTS, CHURN_CYCLES),
                  extra=["--listen", listen, "--log-level", "warn"],
                  env={"FAULT_PORT_LOW": str(low), "FAULT_LINGER": linger},
                  low=low)
    t0 = time.monotonic()
    summary = load(out, timeout=100, what="the churn to end")
    took = time.monotonic() - t0
    total = CHURN_CLIENTS * CHURN_CYCLES
    regs = metric(url, "promfork_registrations_total")
    rel = metric_line(url, 'promfork_releases_total{reason="release"}')
    check(regs == total and rel == total,
          "/metrics counts %d registrations and %d releases (%g, %g)"
          % (total, total, regs, rel))
    check(metric(url, "promfork_leases") == 0 and
          metric(url, "promfork_port_pool_free") == 16,
          "no lease and the whole pool free afterwards")
    with open(linger, "w"):
        pass
    rc = pf.proc.wait(30)
    check(rc == 0, "the churn driver ran to its end (exit %d)" % rc)
    recs, errors = [], []
    for i in range(CHURN_CLIENTS):
        c = load("%s.%d" % (out, i))
        errors += c["errors"]
        recs += [(r[0], r[1], r[2], r[3], c["pid"], r[4]) for r in c["recs"]]
    n = len(recs)
    check(not errors, "no request of %d cycles failed: %s"
          % (n, errors[:5]))
    check(n == total,
          "%d register/release cycles from %d clients in %.1fs (%.0f/s)"
          % (n, CHURN_CLIENTS, took, n / took))
    check(all(p == pf.low + w for w, p, *_ in recs),
          "every lease's port is LOW + worker")
    # A client holds its worker from the 201 it read to the DELETE it sent:
    # no other client may have read a 201 for that worker in between.
    by_worker = {}
    for w, _, got, rel, pid, _ in recs:
        by_worker.setdefault(w, []).append((got, rel, pid))
    overlaps = 0
    for w, spans in by_worker.items():
        spans.sort()
        for (g1, r1, p1), (g2, r2, p2) in zip(spans, spans[1:]):
            if g2 < r1:
                overlaps += 1
    check(overlaps == 0, "no worker was leased to two clients at once "
          "(%d workers used)" % len(by_worker))
    check(max(by_worker) < CHURN_CLIENTS,
          "no slot leaked: workers stayed below %d (max %d)"
          % (CHURN_CLIENTS, max(by_worker)))
    check(summary["nbad"] == 0 and summary["snapshots"] > 50,
          "%d GET /v1/workers snapshots, none with a duplicate worker, port "
          "or pid (%s)" % (summary["snapshots"], summary["bad"][:3]))
    check(summary["maxlive"] <= CHURN_CLIENTS,
          "at most one live lease per client (%d)" % summary["maxlive"])
    check(summary["final"] == [] and pf.groups() == [],
          "no lease left after the last release, the file is []")
    lat = sorted(r[5] for r in recs)
    log("registration latency seen by the clients: p50 %.2f ms, p99 %.2f "
        "ms, max %.2f ms" % (lat[n // 2], lat[n * 99 // 100], lat[-1]))


def zombies_of(ppid):
    out = []
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % p) as f:
                s = f.read()
        except OSError:
            continue
        fields = s[s.rindex(")") + 2:].split()
        if fields[0] == "Z" and int(fields[1]) == ppid:
            out.append(int(p))
    return out


def test_mass_death():
    d = tmpdir()
    out = os.path.join(d, "hold")
    pf = Promfork(256, driver("hold", out, 200, 60),
                  extra=["--log-level", "warn"])
    held = load(out, what="200 registered sleepers")
    sleepers = held["sleepers"]
    pgid = held["pgid"]
    try:
        check(len(sleepers) == 200 and all(s[1] == "201" for s in sleepers),
              "200 orphaned workers registered")
        pf.wait_workers(200)
        pids = {int(s[0]) for s in sleepers}
        ppids = set()
        for p in pids:
            with open("/proc/%d/stat" % p) as f:
                s = f.read()
            ppids.add(int(s[s.rindex(")") + 2:].split()[1]))
        check(ppids == {pf.proc.pid}, "all 200 were adopted by promfork")
        t0 = time.monotonic()
        os.killpg(pgid, signal.SIGKILL)
        wait_until(lambda: pf.groups() == [], timeout=10,
                   what="the sd file to be [] again")
        took = time.monotonic() - t0
        check(True, "200 workers killed at once: the file is [] after "
              "%.0f ms" % (took * 1e3))
        wait_until(lambda: not zombies_of(pf.proc.pid) and not any(
            os.path.exists("/proc/%d" % p) for p in pids), timeout=10,
            what="no zombie left")
        check(True, "all 200 reaped by promfork, no zombie left")
        check(pf.leases() == [], "no lease left")
        check(pf.proc.poll() is None, "promfork still runs")
    finally:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def parse_sd(path):
    with open(path) as f:
        groups = json.load(f)
    if not isinstance(groups, list):
        raise ValueError("not a list")
    for g in groups:
        if not g["targets"] or "worker" not in g["labels"]:
            raise ValueError("bad group %r" % g)
    return len(groups)


def test_kill9_during_writes():
    parses, errors, rounds, versions = 0, [], 5, 0
    for rnd in range(rounds):
        d = tmpdir()
        out = os.path.join(d, "churn")
        stop = os.path.join(d, "stop")
        low = free_port_range(8)
        pf = Promfork(8, driver("churn", out, 4, 0, stop),
                      extra=["--log-level", "warn"],
                      env={"FAULT_PORT_LOW": str(low)}, low=low)
        path = pf.sd_file
        # Once writes are going (workers in the file: bounded, a loaded
        # machine starts the driver slowly), kill -9 at a random moment.
        going = time.monotonic() + 15
        while time.monotonic() < going:
            try:
                if parse_sd(path) > 0:
                    break
            except (OSError, ValueError, KeyError, TypeError):
                pass
            time.sleep(0.005)
        kill_at = time.monotonic() + random.random() * 0.4
        end = kill_at + 0.3
        seen_nonempty, killed, last = 0, False, None
        while time.monotonic() < end:
            if not killed and time.monotonic() >= kill_at:
                os.kill(pf.proc.pid, signal.SIGKILL)
                killed = True
            try:
                st = os.stat(path)
                if (st.st_ino, st.st_mtime_ns) != last:
                    versions += 1
                    last = (st.st_ino, st.st_mtime_ns)
                if parse_sd(path) > 0:
                    seen_nonempty += 1
                parses += 1
            except (ValueError, KeyError, TypeError) as e:
                errors.append("round %d: %s" % (rnd, e))
        pf.proc.wait(5)
        with open(stop, "w"):
            pass
        leftovers = [f for f in os.listdir(pf.sd_dir)
                     if f.endswith(".json") and f != "app.json"]
        if leftovers:
            errors.append("round %d: stray files %s" % (rnd, leftovers))
        if seen_nonempty == 0:
            errors.append("round %d: never saw a worker in the file" % rnd)
    check(not errors, "%d kill -9 in the middle of writes, %d parses of %d "
          "versions of the file meanwhile: no parse error, no stray *.json "
          "(%s)" % (rounds, parses, versions, errors[:3]))


def ctl_command(d, seq, cmd, timeout=20):
    tmp = os.path.join(d, "tmp")
    with open(tmp, "w") as f:
        f.write(cmd)
    os.rename(tmp, os.path.join(d, "cmd.%d" % seq))
    return load(os.path.join(d, "ack.%d" % seq), timeout=timeout,
                what="the driver to run %r" % cmd)


def test_full_filesystem():
    d = tmpdir()
    mnt = os.path.join(d, "mnt")
    os.mkdir(mnt)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs",
                        mnt], capture_output=True, text=True, timeout=20)
    if r.returncode != 0:
        log("SKIP full filesystem: mount is not permitted here (%s)"
            % r.stderr.strip())
        return
    ctl_dir = os.path.join(d, "ctl")
    os.mkdir(ctl_dir)
    errlog = os.path.join(d, "promfork.log")
    listen = "127.0.0.1:%d" % free_port()
    url = "http://" + listen
    sd = os.path.join(mnt, "app.json")
    try:
        with open(errlog, "w") as err:
            pf = Promfork(8, driver("ctl", ctl_dir), sd=False, stderr=err,
                          extra=["--sd-file", sd, "--listen", listen])
        pf.sd_file, pf.sd_dir = sd, mnt
        wait_until(lambda: os.path.exists(sd), what="the sd file")
        ctl_command(ctl_dir, 0, "reg 2")
        pf.wait_workers(2)
        with open(sd, "rb") as f:
            old = f.read()
        # Fill the filesystem to the last byte.
        filler = os.path.join(mnt, "filler")
        with open(filler, "wb", buffering=0) as f:
            for size in (4096, 1):
                while True:
                    try:
                        f.write(b"x" * size)
                    except OSError:
                        break
        errors0 = metric(url, "promfork_sd_write_errors_total")
        ctl_command(ctl_dir, 1, "reg 1")
        wait_until(lambda: metric(url, "promfork_sd_write_errors_total")
                   >= errors0 + 2, timeout=5,
                   what="two failed writes (one retry)")
        with open(sd, "rb") as f:
            now = f.read()
        check(now == old, "with the filesystem full the old file is "
              "intact (%d bytes, 2 workers)" % len(old))
        check(len(pf.leases()) == 3, "the registration itself was served")
        check([f for f in os.listdir(mnt) if f not in ("app.json",
              "filler")] == [], "no temp file left behind")
        with open(errlog) as f:
            text = f.read()
        check("sd file not updated" in text and "No space left" in text,
              "the failure is logged: %s" % [l for l in text.splitlines()
                                              if "not updated" in l][:1])
        check(metric(url, "promfork_sd_write_errors_total") >= 2,
              "and counted in promfork_sd_write_errors_total")
        os.unlink(filler)
        t0 = time.monotonic()
        pf.wait_workers(3, timeout=5)
        check(True, "room again: the file has all 3 workers %.1fs later"
              % (time.monotonic() - t0))
        ctl_command(ctl_dir, 2, "kill 3")
        wait_until(lambda: pf.groups() == [], timeout=5,
                   what="the file to be [] again")
        pf.stop()
    finally:
        from harness import cleanup
        cleanup()
        subprocess.run(["umount", "-l", mnt], timeout=20)


class Conn:
    """A raw connection that records what comes back."""

    def __init__(self, family, addr, name):
        self.name = name
        self.s = socket.socket(family, socket.SOCK_STREAM)
        self.s.settimeout(5)
        # A Unix socket's full backlog says EAGAIN rather than wait.
        deadline = time.monotonic() + 5
        while True:
            try:
                self.s.connect(addr)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.005)
        self.s.setblocking(False)
        self.got = b""
        self.closed = False
        self.closed_at = None

    def send(self, data):
        try:
            self.s.sendall(data)
        except (BlockingIOError, BrokenPipeError, ConnectionResetError):
            pass

    def poll(self):
        while not self.closed:
            try:
                chunk = self.s.recv(65536)
            except BlockingIOError:
                return
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                self.closed = True
                self.closed_at = time.monotonic()
                return
            self.got += chunk

    def status(self):
        if not self.got.startswith(b"HTTP/1.1 "):
            return None
        return int(self.got.split()[1])


def abuse(family, addr, tag, header_max, body_max):
    """Opens the hostile connections; returns [(conn, expected status)]."""
    c = []

    def conn(name, data, want):
        x = Conn(family, addr, tag + " " + name)
        x.send(data)
        c.append((x, want))
        return x

    conn("garbage", b"\x00\xff\xfe garbage \x01\r\n\r\n", 400)
    conn("bad request line", b"GET\r\n\r\n", 400)
    conn("HTTP/2.0", b"GET / HTTP/2.0\r\n\r\n", 400)
    conn("HTTP/1.2", b"GET / HTTP/1.2\r\n\r\n", 505)
    conn("oversized body",
         b"POST /v1/workers HTTP/1.1\r\nContent-Length: %d\r\n\r\n"
         % (body_max + 1) + b"{" * 1024, 413)
    conn("oversized headers", b"GET / HTTP/1.1\r\nX-Big: "
         + b"a" * (header_max + 10), 431)
    conn("many headers", b"GET / HTTP/1.1\r\n"
         + b"".join(b"X-%d: y\r\n" % i for i in range(40)) + b"\r\n", 431)
    conn("chunked", b"POST /v1/workers HTTP/1.1\r\nTransfer-Encoding: "
         b"chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", 501)
    conn("long target", b"GET /" + b"a" * 3000 + b" HTTP/1.1\r\n\r\n", 414)
    t = conn("truncated then closed", b"POST /v1/workers HTTP/1.1\r\n"
             b"Content-Length: 100\r\n\r\n{\"pid\"", "closed")
    t.s.shutdown(socket.SHUT_WR)
    conn("truncated body", b"POST /v1/workers HTTP/1.1\r\n"
         b"Content-Length: 100\r\n\r\n{\"pid\"", 408)
    conn("truncated head", b"GET /metr", 408)
    for i in range(40):
        conn("slow %d" % i, b"G", 408)
    for i in range(10):
        conn("idle %d" % i, b"", "closed")
    return c


def flood(family, addr, tag, conns_max):
    """More idle connections than the cap: the extra ones get 503 at once."""
    return [(Conn(family, addr, "%s flood %d" % (tag, i)), "busy")
            for i in range(conns_max + 10)]


def test_hostile_clients():
    d = tmpdir()
    out = os.path.join(d, "churn")
    stop = os.path.join(d, "stop")
    low = free_port_range(4)
    port = free_port()
    url = "http://127.0.0.1:%d" % port
    pf = Promfork(4, driver("churn", out, 1, 0, stop),
                  extra=["--listen", "127.0.0.1:%d" % port,
                         "--http-deadline", "2", "--log-level", "error"],
                  env={"FAULT_PORT_LOW": str(low)}, low=low)
    wait_until(lambda: http_get(url + "/metrics")[0] == 200,
               what="the listener")
    conns = abuse(socket.AF_UNIX, pf.socket, "socket", 8192, 16384)
    conns += abuse(socket.AF_INET, ("127.0.0.1", port), "listener", 8192,
                   4096)
    slow = [x for x, _ in conns if " slow " in x.name]
    t0 = time.monotonic()
    scrapes, worst = 0, 0.0
    regs0 = None
    # The API's deadline is 5 s, the listener's 2 s: 7 s sees both out.
    while time.monotonic() < t0 + 7.5:
        for x in slow:
            if not x.closed:
                x.send(b"E")
        for x, _ in conns:
            x.poll()
        s0 = time.monotonic()
        status, _, body = http_get(url + "/targets", timeout=5)
        worst = max(worst, time.monotonic() - s0)
        if status != 200:
            raise TestFailure("/targets answered %d under attack" % status)
        scrapes += 1
        if regs0 is None:
            regs0 = metric(url, "promfork_registrations_total")
        time.sleep(0.1)
    regs1 = metric(url, "promfork_registrations_total")

    # Then a flood over the connection caps (256 socket, 128 listener):
    # refused at once with 503, cut at the deadline, and then new
    # connections are served again; the worker's open connection never
    # stops being served.
    fl = flood(socket.AF_UNIX, pf.socket, "socket", 256)
    fl += flood(socket.AF_INET, ("127.0.0.1", port), "listener", 128)
    t1 = time.monotonic()
    wait_until(lambda: [x.poll() for x, _ in fl] and all(
        x.closed for x, _ in fl), timeout=8, interval=0.1,
        what="the flood to be cut by the deadlines")
    fl_took = time.monotonic() - t1
    regs2 = metric(url, "promfork_registrations_total")
    st, _ = unix_request(pf.socket, "POST", "/v1/workers", {})
    served_again = st == 403 and http_get(url + "/targets")[0] == 200
    conns += fl
    with open(stop, "w"):
        pass
    summary = load(out, what="the churn to end")
    client = load(out + ".0")
    bad, busy = [], 0
    for x, want in conns:
        x.poll()
        if want == "busy":
            busy += x.status() == 503
            if not x.closed or x.status() not in (None, 503):
                bad.append("%s: %r, open: %s" % (x.name, x.got[:40],
                                                  not x.closed))
        elif want == "closed":
            if not x.closed:
                bad.append("%s: still open" % x.name)
        elif x.status() != want:
            bad.append("%s: %r, wanted %d" % (x.name, x.got[:40], want))
        elif not x.closed:
            bad.append("%s: answered %d but left open" % (x.name, want))
    check(not bad, "%d hostile connections (garbage, oversized, truncated, "
          "slow, idle) each refused or cut off by the deadline: %s"
          % (len(conns), bad[:4]))
    check(busy >= 20, "a flood of %d idle connections: %d over the caps "
          "told 503 at once, the rest cut by the deadline within %.1fs"
          % (len(fl), busy, fl_took))
    check(regs2 - regs1 > 100, "the worker's open connection was served "
          "all through the flood (%d registrations)" % (regs2 - regs1))
    check(served_again, "after the flood new connections are served again")
    lat = sorted(r[4] for r in client["recs"])
    check(not client["errors"] and regs1 - regs0 > 100,
          "meanwhile a worker of the tree kept registering: %d cycles, "
          "no error, p99 %.1f ms, max %.1f ms"
          % (len(lat), lat[len(lat) * 99 // 100], lat[-1]))
    check(worst < 1.0, "and %d scrapes of /targets were all served, the "
          "slowest in %.0f ms" % (scrapes, worst * 1e3))
    check(summary["nbad"] == 0, "no bad snapshot")
    pf.stop()


def test_stale_and_outsiders():
    d = tmpdir()
    out = os.path.join(d, "stale")
    pf = Promfork(8, driver("stale", out), extra=["--log-level", "error"])
    res = load(out, what="the stale driver")
    check(res["registered"] == 201 and res["dead_lease_gone"],
          "a worker registered, was killed, its lease ended")
    st, body = res["dead_pid"]
    check(st == 404, "registering the dead worker's pid: 404 (%d %s)"
          % (st, body))
    st, body = res["sibling_pid"]
    check(st == 403, "registering a live pid that is not the caller's: 403 "
          "(%d %s)" % (st, body))
    if "reuse_skipped" in res:
        log("SKIP pid reuse: %s" % res["reuse_skipped"])
    else:
        st, body = res["reused_claim"]
        check(st == 403, "the dead worker's pid, reused by another "
              "process: claiming it is refused (%d %s)" % (st, body))
        check(res["reused_self"] == 201 and len(res["reused_leases"]) == 1,
              "the new owner of the pid gets a fresh lease (201), exactly "
              "one")
    pf.proc.wait(20)

    # Outsiders: this test process is not in promfork's tree.
    pf = Promfork(8, [PYTHON, "-c", "import time; time.sleep(60)"],
                  extra=["--log-level", "error"])
    for body in ({}, {"pid": os.getpid()}, {"pid": pf.proc.pid},
                 {"pid": 1}):
        st, ans = unix_request(pf.socket, "POST", "/v1/workers", body)
        check(st == 403, "registration %s from outside the tree: 403" % body)
    outsider = start([PYTHON, "-c", "import time; time.sleep(60)"])
    st, ans = unix_request(pf.socket, "POST", "/v1/workers",
                           {"pid": outsider.pid})
    check(st == 403, "registering an unrelated live process: 403")
    st, ans = unix_request(pf.socket, "DELETE", "/v1/workers/0")
    check(st == 403, "release from outside the tree: 403")
    check(pf.leases() == [] and pf.groups() == [], "nothing was leased")


def test():
    t0 = time.monotonic()
    for fn in (test_stale_and_outsiders, test_churn,
               test_mass_death, test_kill9_during_writes,
               test_full_filesystem, test_hostile_clients):
        # FAULT_ONLY=name,... runs only those parts (for debugging)
        only = os.environ.get("FAULT_ONLY")
        if only and fn.__name__[5:] not in only.split(","):
            continue
        t = time.monotonic()
        log("# %s" % fn.__name__)
        fn()
        log("# %s: %.1fs" % (fn.__name__, time.monotonic() - t))
    log("# all: %.1fs" % (time.monotonic() - t0))


run_test(test)
