"""The history on / and at /api/v1/history, with real gunicorn.

gunicorn (4 workers, --max-requests 12) runs tests/e2e/history_app.py,
whose worker in slot 0 keeps 4 MiB more on every request; promfork samples
every second (--history-resolution 1).  Requests recycle every worker, a
worker is killed with kill -9, then a HUP replaces them all.  Then:
- the timeline has exactly one bar per lifetime that promfork's log shows
  (leased ... released: REASON), each with its ending: the killed one
  "died", every other ended one "retired" (recycled or HUP'd: gunicorn's
  worker_exit hook retires them), the live ones "live";
- the memory line of a slot-0 lifetime that grew rises, in the SVG and in
  the JSON; the totals say 1 death;
- the page has no script and nothing from elsewhere; headless Chromium
  takes a screenshot of it (history-4.png in $PROMFORK_ARTIFACTS).
Then 64 workers of tests/e2e/http_worker.py: one row and one pair of
sparklines each, and a screenshot (history-64.png).
"""

import gzip
import html.parser
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import (PYTHON, Promfork, check, free_port, http_get, log,  # noqa: E402
                     run_logged, run_test, wait_until)
from apptest import (CONTRIB, ENV, leases, signal_command,  # noqa: E402
                     wait_leases)

HERE = os.path.dirname(os.path.abspath(__file__))
GUNICORN = "/usr/bin/gunicorn"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CONF = os.path.join(CONTRIB, "gunicorn", "gunicorn.conf.py")
N = 4
MAXREQ = 12
ENDINGS = {"exit": "died", "retire": "retired", "release": "released",
           "gone": "gone", "shutdown": "shutdown"}


class Page(html.parser.HTMLParser):
    """The timeline's bars, the sparklines' polylines, the totals."""

    def __init__(self):
        super().__init__()
        self.bars = []
        self.lines = []  # (kind, worker, pid, [(x, y)])
        self.tags = set()
        self.urls = []
        self.totals = {}
        self.slots = 0
        self.sparks = 0
        self.scrapes = []  # each worker row's last scrape: ok, error
        self._svg = None
        self._dd = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.add(tag)
        self.urls += [v for k, v in attrs if k in ("src", "href", "action")]
        cls = a.get("class", "")
        if tag == "rect" and cls.startswith("life "):
            self.bars.append((int(a["data-worker"]), int(a["data-pid"]),
                              a["data-ending"]))
            if cls != "life " + a["data-ending"]:
                check(False, "a bar's colour is its ending: %r" % cls)
        elif tag == "svg" and cls in ("cpu", "mem"):
            self._svg = (cls, int(a["data-worker"]))
        elif tag == "polyline" and self._svg is not None:
            pts = [tuple(float(v) for v in p.split(","))
                   for p in a["points"].split()]
            self.lines.append((self._svg[0], self._svg[1],
                               int(a["data-pid"]), pts))
        elif tag == "g" and cls == "slot":
            self.slots += 1
        elif tag == "div" and cls == "spark":
            self.sparks += 1
        elif tag == "tr" and a.get("class") == "worker":
            self.scrapes.append(a["data-scrape"])
        elif tag == "dd" and "id" in a:
            self._dd = a["id"]
            self.totals[self._dd] = ""

    def handle_endtag(self, tag):
        if tag == "svg":
            self._svg = None
        elif tag == "dd":
            self._dd = None

    def handle_data(self, data):
        if self._dd is not None:
            self.totals[self._dd] += data


def page(base):
    status, headers, body = http_get(base + "/", timeout=10)
    check(status == 200, "/ answers 200")
    csp = headers.get("Content-Security-Policy", "")
    check("default-src 'none'" in csp and "script-src" not in csp,
          "/ is served under its Content-Security-Policy: %s" % csp)
    p = Page()
    p.feed(body.decode())
    check(p.tags.isdisjoint({"script", "img", "iframe", "object", "b"}),
          "no script, no image, no frame: %s" % sorted(p.tags))
    check(all(u.startswith("/") or u == "data:," for u in p.urls),
          "every link is local: %s" % sorted(set(p.urls)))
    return p


def history(base):
    status, headers, body = http_get(base + "/api/v1/history", timeout=10)
    check(status == 200 and headers.get("Content-Type") == "application/json",
          "/api/v1/history answers JSON")
    doc = json.loads(body)
    # A script that polls asks only for what is newer; gzip when asked.
    since = doc["times"][-2] if len(doc["times"]) > 1 else 0
    status, headers, body = http_get(
        base + "/api/v1/history?since=%d" % since, timeout=10,
        headers={"Accept-Encoding": "gzip"})
    newer = json.loads(gzip.decompress(body)
                       if headers.get("Content-Encoding") == "gzip" else body)
    after = [t for t in doc["times"] if t > since]
    check(status == 200 and newer["times"][:len(after)] == after and
          all(t > since for t in newer["times"]) and
          len(newer["times"]) <= len(after) + 2,
          "?since=T gives the samples after T only")
    status, _, body = http_get(base + "/api/v1/history?since=yesterday")
    check(status == 400 and b"since=T" in body, "a bad query is a 400")
    return doc


def wait_samples(base, n):
    """Waits until n more samples were taken."""
    def count():
        return len(json.loads(http_get(base + "/api/v1/history")[2])["times"])
    start = count()
    wait_until(lambda: count() >= start + n, timeout=10, interval=0.2,
               what="%d more samples" % n)


def screenshot(url, name, height):
    out = os.environ.get("PROMFORK_ARTIFACTS") or tempfile.mkdtemp(
        prefix="promfork-history-")
    os.makedirs(out, exist_ok=True)
    shot = os.path.join(out, name)
    if os.path.exists(shot):
        os.unlink(shot)
    argv = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
            "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--user-data-dir=" + harness.tmpdir(),
            "--hide-scrollbars", "--window-size=1280,%d" % height,
            "--screenshot=" + shot, url]
    t0 = time.monotonic()
    r = subprocess.run(argv, capture_output=True, timeout=60,
                       start_new_session=True)
    with open(shot, "rb") as f:
        head = f.read(24)
    check(r.returncode == 0 and head[:8] == b"\x89PNG\r\n\x1a\n",
          "chromium took a screenshot (%.1f s)" % (time.monotonic() - t0))
    w, h = struct.unpack(">II", head[16:24])
    check(w == 1280 and h == height, "%dx%d" % (w, h))
    log("# screenshot: %s" % shot)


def lifetimes_from_log(path):
    """{(worker, pid): ending} from promfork's log; live ones "live"."""
    out = {}
    with open(path) as f:
        for line in f:
            m = re.search(r"worker (\d+) \(pid (\d+)\) leased port", line)
            if m:
                out[(int(m[1]), int(m[2]))] = "live"
            m = re.search(r"worker (\d+) \(pid (\d+), port \d+\) released: "
                          r"(\w+)", line)
            if m:
                out[(int(m[1]), int(m[2]))] = ENDINGS[m[3]]
    return out


def get(app_port):
    status, _, body = http_get("http://127.0.0.1:%d/" % app_port, timeout=10)
    if status != 200:
        check(False, "the app answers 200, not %d" % status)
    _, pid, _, grew = body.decode().split()
    return int(pid), int(grew)


def gunicorn_run(logf):
    app_port = free_port()
    listen = free_port()
    base = "http://127.0.0.1:%d" % listen
    argv = [GUNICORN, "-c", CONF, "-b", "127.0.0.1:%d" % app_port,
            "-w", str(N), "--chdir", HERE, "--graceful-timeout", "5",
            "--max-requests", str(MAXREQ), "--max-requests-jitter", "0",
            "--log-level", "warning", "history_app:application"]
    pf = Promfork(2 * N + 2, argv, env=ENV, stdout=logf, stderr=logf,
                  extra=["--listen", "127.0.0.1:%d" % listen,
                         "--history-resolution", "1",
                         "--history-window", "120"])
    pf.wait_workers(N)
    harness.wait_listening(app_port)

    # recycling: 80 requests, 10 a second; every tenth a fan-out scrape
    grew = {}
    for i in range(80):
        pid, k = get(app_port)
        grew[pid] = max(grew.get(pid, 0), k)
        if i % 10 == 0:
            http_get(base + "/workers/metrics", timeout=10)
        time.sleep(0.1)
    grown = [p for p, k in grew.items() if k >= 6]
    check(grown, "a slot-0 worker grew on 6+ requests: %s" % grew)
    before_kill = leases(pf)
    victim_slot = max(s for s in before_kill if s != 0)
    victim = before_kill[victim_slot]
    log("# kill -9 worker %d (pid %d)" % (victim_slot, victim))
    os.kill(victim, signal.SIGKILL)
    wait_leases(pf, lambda l: len(l) == N and victim not in l.values(),
                "a replacement for the killed worker")
    old = set(leases(pf).values())
    signal_command(pf, signal.SIGHUP)
    wait_leases(pf, lambda l: len(l) == N and not old & set(l.values()),
                "HUP: %d new workers, every old one gone" % N)
    wait_samples(base, 2)

    logf.flush()
    expected = lifetimes_from_log(logf.name)
    p = page(base)
    bars = {(w, pid): e for w, pid, e in p.bars}
    check(len(p.bars) == len(bars), "no lifetime is drawn twice")
    check(bars == expected,
          "one bar per lifetime (%d), each with the ending in the log: "
          "%s" % (len(expected),
                  {k: (bars.get(k), expected.get(k))
                   for k in set(bars) | set(expected)
                   if bars.get(k) != expected.get(k)} or "all match"))
    died = [k for k, e in bars.items() if e == "died"]
    check(died == [(victim_slot, victim)],
          "the killed worker's bar, and only it, says died: %s" % died)
    ended = [k for k, e in bars.items() if e not in ("live", "died")]
    check(ended and all(bars[k] == "retired" for k in ended),
          "the %d recycled and HUP'd lifetimes say retired" % len(ended))
    recycled = [k for k in ended if k[1] not in old]
    check(len(recycled) >= N,
          "%d lifetimes ended by --max-requests before the kill and the "
          "HUP" % len(recycled))
    live = sorted(k for k, e in bars.items() if e == "live")
    check(live == sorted(leases(pf).items()),
          "the live bars are the %d live workers" % N)
    check(p.totals.get("deaths") == "1", "totals: 1 death without retiring "
          "(%r)" % p.totals.get("deaths"))
    up = sum(1 for x in p.scrapes if x != "error")
    check(len(p.scrapes) == N and
          p.totals.get("workers-up") == "%d of %d" % (up, N),
          "totals: workers up %r, as the table's last scrapes say: %s"
          % (p.totals.get("workers-up"), p.scrapes))
    check(float(p.totals.get("recycles", "0")) == len(ended) * 30.0,
          "totals: %d retired in a 2 min window: %s recycles per hour"
          % (len(ended), p.totals.get("recycles")))

    # the grown worker's memory line rises
    doc = history(base)
    w0 = [w for w in doc["workers"] if w["worker"] == 0][0]
    rising = []
    for pid in grown:
        rss = [r for r, p_ in zip(w0["rss_bytes"], w0["pid"])
               if p_ == pid and r is not None]
        lines = [pts for kind, w, lp, pts in p.lines
                 if kind == "mem" and w == 0 and lp == pid]
        if len(rss) >= 3 and lines:
            rising.append((pid, rss, lines[0]))
    check(rising, "a grown slot-0 lifetime has 3+ memory samples")
    for pid, rss, pts in rising:
        check(rss[-1] - rss[0] >= 8 << 20,
              "pid %d: JSON memory rose %.1f -> %.1f MiB"
              % (pid, rss[0] / 1048576, rss[-1] / 1048576))
        check(pts[-1][1] < pts[0][1] - 2,
              "pid %d: its memory line rises (y %.1f -> %.1f of 26)"
              % (pid, pts[0][1], pts[-1][1]))
    spread = {}
    for w in doc["workers"]:
        if w["worker"] == 0:
            continue
        for pid in set(p_ for p_ in w["pid"] if p_ is not None):
            rss = [r for r, p_ in zip(w["rss_bytes"], w["pid"])
                   if p_ == pid and r is not None]
            if rss:
                spread[pid] = max(rss) - min(rss)
    check(spread and max(spread.values()) < 8 << 20,
          "the other slots' %d lifetimes stay within 8 MiB (at most %.1f)"
          % (len(spread), max(spread.values(), default=0) / 1048576))
    check(doc["totals"]["ends"]["died"] == 1
          and doc["totals"]["ends"]["retired"] == len(ended),
          "JSON totals: %s" % doc["totals"]["ends"])
    scraped = [(w["worker"], s_, u) for w in doc["workers"]
               for s_, u in zip(w["scrape_seconds"], w["up"]) if u is not None]
    ups = [x for x in scraped if x[2] == 1 and 0 < x[1] < 5]
    # a worker scraped while it is recycled, or before it binds the port it
    # leased, is down: that is what the samples are for
    check(len(ups) >= N and all(x[2] in (0, 1) for x in scraped),
          "%d samples hold a scrape (fan-out, status page): %d up with "
          "their duration, %d down" % (len(scraped), len(ups),
                                       len(scraped) - len(ups)))
    json_lifetimes = {(w["worker"], lt["pid"]): lt["ending"] or "live"
                      for w in doc["workers"] for lt in w["lifetimes"]}
    check(json_lifetimes == bars, "the JSON's lifetimes are the bars")
    screenshot(base + "/", "history-4.png", 1400)
    rc = pf.stop(signal.SIGTERM, timeout=30)
    check(rc == 0, "promfork exits 0 (got %s)" % rc)


def many_run(logf):
    listen = free_port()
    base = "http://127.0.0.1:%d" % listen
    pf = Promfork(64, [PYTHON, os.path.join(HERE, "http_worker.py"), "64"],
                  stdout=logf, stderr=logf,
                  extra=["--listen", "127.0.0.1:%d" % listen,
                         "--history-resolution", "1",
                         "--history-window", "60"],
                  env={"E2E_LABELS": json.dumps({"note": "<b>&x"})})
    pf.wait_workers(64, timeout=40)
    for w in (5, 17, 40):
        pid = leases(pf)[w]
        os.kill(pid, signal.SIGKILL)
    wait_samples(base, 3)
    p = page(base)
    check(p.slots == 64 and p.sparks == 64,
          "64 workers: %d timeline rows, %d sparkline pairs"
          % (p.slots, p.sparks))
    check(sum(1 for b in p.bars if b[2] == "died") == 3,
          "the 3 killed workers' bars say died")
    screenshot(base + "/", "history-64.png", 2400)
    pf.stop(signal.SIGTERM, timeout=30)


def test(logf):
    check(os.access(CHROMIUM, os.X_OK), "chromium is installed")
    t0 = time.monotonic()
    log("## gunicorn: recycling, kill -9, HUP")
    gunicorn_run(logf)
    log("## 64 workers")
    many_run(logf)
    log("# %.1f s" % (time.monotonic() - t0))


run_test(lambda: run_logged(test, "promfork/history"))
