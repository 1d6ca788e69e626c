"""Shared pieces of promfork's end-to-end tests.

Every process a test starts goes through start(), runs in its own session
and is killed (the whole process group) when the test ends, however it
ends.  Every wait is bounded in time.  Only loopback addresses are used.
"""

import atexit
import http.client
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

PROMFORK = os.environ.get("PROMFORK_BIN", "build/promfork")
SOURCE = os.environ.get("PROMFORK_SOURCE", os.getcwd())
PYTHON = "/usr/bin/python3"

_procs = []
_tmpdirs = []


class TestFailure(Exception):
    pass


def log(msg):
    print(msg, flush=True)


def check(cond, what):
    """Fails the test with `what` unless cond holds; logs it otherwise."""
    if not cond:
        raise TestFailure(what)
    log("ok - " + what)


def run_test(fn):
    """Runs a test function: exit 0 when it passes, 1 with the reason."""
    try:
        fn()
    except TestFailure as e:
        log("FAIL - %s" % e)
        cleanup()
        sys.exit(1)
    except Exception:
        import traceback
        traceback.print_exc()
        cleanup()
        sys.exit(1)
    cleanup()
    log("PASS")
    sys.exit(0)


def run_logged(body, what="promfork"):
    """Runs body(logf), logf a file for the output of the processes it
    starts; shows the file's tail when body fails."""
    logname = os.path.join(tmpdir(), "log")
    with open(logname, "w") as logf:
        try:
            return body(logf)
        except BaseException:
            logf.flush()
            with open(logname) as f:
                log("--- %s log (tail) ---\n%s" % (what, f.read()[-8000:]))
            raise


def ensure_user(name):
    """A throwaway system user for tests that need "another user"; made
    when absent (harmless: no login, no home) and left for the next run."""
    import pwd
    try:
        return pwd.getpwnam(name)
    except KeyError:
        subprocess.run(["useradd", "-r", "-M", "-s", "/usr/sbin/nologin",
                        name], check=True, timeout=30)
        return pwd.getpwnam(name)


def tmpdir():
    d = tempfile.mkdtemp(prefix="promfork-e2e-")
    _tmpdirs.append(d)
    return d


def wait_until(fn, timeout=15.0, interval=0.05, what="condition"):
    """Polls fn until it returns a true value; fails after timeout."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = fn()
        except (OSError, ValueError, http.client.HTTPException) as e:
            last = e
            last_ok = False
        else:
            last_ok = bool(last)
        if last_ok:
            return last
        time.sleep(interval)
    raise TestFailure("timed out after %.0fs waiting for %s (last: %r)"
                      % (timeout, what, last))


def _bindable(port):
    for fam, addr in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")):
        s = socket.socket(fam, socket.SOCK_STREAM)
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if fam == socket.AF_INET6:
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            s.bind((addr, port))
        except OSError:
            return False
        finally:
            s.close()
    return True


# Every port handed out by this process: a port picked but not yet bound
# (an app port, a --listen port) is free to the next pick, which could put
# it inside promfork's range.
_handed_out = set()


def free_port_range(n):
    """A run of n ports free right now, outside the ephemeral range and
    apart from every port handed out before."""
    # Not seeded from pid and time: two calls within one millisecond
    # would return the same ports.
    rnd = random.SystemRandom()
    for _ in range(200):
        low = rnd.randrange(10000, 32000 - n)
        run = range(low, low + n)
        if _handed_out.isdisjoint(run) and all(_bindable(p) for p in run):
            _handed_out.update(run)
            return low
    raise TestFailure("no free run of %d ports" % n)


def wait_listening(port, host="127.0.0.1", timeout=15.0):
    """Waits until something accepts connections on host:port."""
    def accepts():
        with socket.create_connection((host, port), timeout=1):
            return True
    return wait_until(accepts, timeout=timeout,
                      what="a listener on %s:%d" % (host, port))


def free_port():
    return free_port_range(1)


def start(argv, env=None, **kw):
    """Starts a process in its own session; killed at cleanup."""
    e = dict(os.environ)
    if env:
        e.update(env)
    p = subprocess.Popen(argv, env=e, start_new_session=True, **kw)
    _procs.append(p)
    return p


def stop(p, sig=signal.SIGTERM, timeout=10.0):
    """Signals p and waits for it; returns its exit code."""
    if p.poll() is None:
        p.send_signal(sig)
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            raise TestFailure("pid %d did not exit within %.0fs of signal %d"
                              % (p.pid, timeout, sig))
    return p.returncode


def cleanup():
    for p in reversed(_procs):
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            pass
    _procs.clear()
    for d in _tmpdirs:
        shutil.rmtree(d, ignore_errors=True)
    _tmpdirs.clear()


atexit.register(cleanup)


def http_get(url, timeout=5.0, headers=None):
    """GET url; returns (status, headers, body bytes); no exception on 4xx."""
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout=5.0):
        super().__init__("promfork", timeout=timeout)
        self.unix_path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self.unix_path)
        self.sock = s


def unix_request(path, method, url, body=None):
    """One request on promfork's socket; returns (status, parsed JSON)."""
    c = UnixHTTPConnection(path)
    try:
        data = json.dumps(body).encode() if body is not None else None
        hdrs = {"Content-Type": "application/json"} if data else {}
        c.request(method, url, body=data, headers=hdrs)
        r = c.getresponse()
        raw = r.read()
        return r.status, (json.loads(raw) if raw.strip() else None)
    finally:
        c.close()


class Promfork:
    """promfork wrapping a command, with its sd file in a fresh directory."""

    def __init__(self, n_ports, command, extra=(), env=None, sd=True,
                 stdout=None, stderr=None, low=None):
        self.dir = tmpdir()
        self.low = low if low is not None else free_port_range(n_ports)
        self.high = self.low + n_ports - 1
        self.sd_dir = os.path.join(self.dir, "sd")
        os.mkdir(self.sd_dir)
        self.sd_file = os.path.join(self.sd_dir, "app.json")
        self.socket = os.path.join(self.dir, "promfork.sock")
        argv = [PROMFORK, "--port-range", "%d-%d" % (self.low, self.high),
                "--socket", self.socket, "--target-host", "127.0.0.1"]
        if sd:
            argv += ["--sd-file", self.sd_file]
        argv += list(extra)
        if command:
            argv += ["--"] + list(command)
        self.argv = argv
        self.proc = start(argv, env=env, stdout=stdout, stderr=stderr)
        wait_until(lambda: os.path.exists(self.socket)
                   and (not sd or os.path.exists(self.sd_file))
                   or self.proc.poll() is not None,
                   what="promfork socket and sd file")
        if self.proc.poll() is not None:
            raise TestFailure("promfork exited at start with %d"
                              % self.proc.returncode)

    def groups(self):
        with open(self.sd_file) as f:
            return json.load(f)

    def workers(self):
        """{worker label: port} from the sd file."""
        out = {}
        for g in self.groups():
            port = int(g["targets"][0].rsplit(":", 1)[1])
            out[g["labels"]["worker"]] = port
        return out

    def wait_workers(self, n, timeout=20.0):
        # Wrapped in a tuple so that an empty dict (n == 0) counts as done.
        return wait_until(lambda: (lambda w: (w,) if len(w) == n else None)(
            self.workers()), timeout=timeout,
            what="%d workers in sd file" % n)[0]

    def leases(self):
        return unix_request(self.socket, "GET", "/v1/workers")[1]

    def stop(self, sig=signal.SIGTERM, timeout=15.0):
        return stop(self.proc, sig, timeout)


class Prometheus:
    """A real Prometheus on loopback, scraping every second."""

    def __init__(self, scrape_configs, rule_files=None):
        self.dir = tmpdir()
        self.port = free_port()
        cfg = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "900ms",
                       "evaluation_interval": "1s"},
            "scrape_configs": scrape_configs,
        }
        if rule_files:
            cfg["rule_files"] = rule_files
        self.config = os.path.join(self.dir, "prometheus.yml")
        with open(self.config, "w") as f:
            json.dump(cfg, f)  # JSON is YAML
        self.url = "http://127.0.0.1:%d" % self.port
        self.proc = start(["/usr/bin/prometheus",
                           "--config.file=" + self.config,
                           "--storage.tsdb.path=" + os.path.join(self.dir, "data"),
                           "--web.listen-address=127.0.0.1:%d" % self.port,
                           "--log.level=warn"],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(lambda: http_get(self.url + "/-/ready")[0] == 200,
                   timeout=30, what="prometheus ready")

    @staticmethod
    def file_sd(job, sd_dir, **extra):
        c = {"job_name": job,
             "file_sd_configs": [{"files": [os.path.join(sd_dir, "*.json")],
                                  "refresh_interval": "1s"}]}
        c.update(extra)
        return c

    @staticmethod
    def fan_out(job, listen, **extra):
        """A job scraping promfork's /workers/metrics at listen
        ("127.0.0.1:PORT"): one target, every worker's series."""
        c = {"job_name": job, "metrics_path": "/workers/metrics",
             "static_configs": [{"targets": [listen]}]}
        c.update(extra)
        return c

    def api(self, path, **params):
        url = self.url + path
        if params:
            url += "?" + urllib.parse.urlencode(params)
        status, _, body = http_get(url)
        data = json.loads(body)
        if data.get("status") != "success":
            raise TestFailure("prometheus %s: %s" % (path, data))
        return data["data"]

    def targets(self, job=None):
        """Active targets as [(labels, health)] (optionally of one job)."""
        out = []
        for t in self.api("/api/v1/targets", state="active")["activeTargets"]:
            if job is None or t["labels"].get("job") == job:
                out.append((t["labels"], t["health"]))
        return out

    def wait_up(self, n, job=None, timeout=30.0):
        """Waits until exactly n targets are up and none is down; returns
        their worker labels, sorted."""
        def ok():
            ts = self.targets(job)
            if len(ts) == n and all(h == "up" for _, h in ts):
                return sorted(l.get("worker", "") for l, _ in ts)
            return None
        return wait_until(ok, timeout=timeout,
                          what="%d up targets and none down" % n)

    def query(self, expr):
        return self.api("/api/v1/query", query=expr)["result"]

    def scalar(self, expr):
        r = self.query(expr)
        return float(r[0]["value"][1]) if r else None


def fanout_config(job, listen):
    """A Prometheus scrape config for promfork's /workers/metrics at listen
    ("127.0.0.1:PORT")."""
    return {"job_name": job, "metrics_path": "/workers/metrics",
            "static_configs": [{"targets": [listen]}]}


def expo_samples(text, name, **labels):
    """[(labels, value)] of the samples called name in an exposition whose
    labels include `labels`.  Plain text parsing, for label values without
    commas or escapes."""
    out = []
    for line in text.splitlines():
        if not line.startswith(name + "{"):
            continue
        lab, _, value = line[len(name) + 1:].rpartition("} ")
        got = dict(kv.split("=", 1) for kv in lab.split(",") if "=" in kv)
        got = {k: v.strip('"') for k, v in got.items()}
        if all(got.get(k) == str(v) for k, v in labels.items()):
            out.append((got, float(value.split()[0])))
    return out
