"""The status page at /, rendered by headless Chromium (Debian's package).

Assertions run on the DOM Chromium built; a screenshot is kept and its path
printed (in $PROMFORK_ARTIFACTS when set, else a directory that outlives the
test).
"""

import html.parser
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import PYTHON, check, http_get  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
WORKER = os.path.join(HERE, "http_worker.py")
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
NASTY = "<img src=x onerror=alert(1)>&\"'"


class Rows(html.parser.HTMLParser):
    """Collects the worker rows: their data-* attributes and cell texts."""

    def __init__(self):
        super().__init__()
        self.rows = []
        self.cell = None
        self.tags = set()
        self.urls = []
        self.refresh = None
        self.title = ""
        self.in_title = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.add(tag)
        self.urls += [v for k, v in attrs if k in ("src", "href", "action")]
        if tag == "tr" and a.get("class") == "worker":
            self.rows.append({"attrs": a, "cells": []})
        elif tag == "td" and self.rows and self.cell is None:
            self.cell = ""
        elif tag == "meta" and a.get("http-equiv") == "refresh":
            self.refresh = a.get("content")
        elif tag == "title" and "body" not in self.tags:  # not an SVG's
            self.in_title = True

    def handle_endtag(self, tag):
        if tag == "td" and self.cell is not None:
            self.rows[-1]["cells"].append(self.cell)
            self.cell = None
        elif tag == "title":
            self.in_title = False

    def handle_data(self, data):
        if self.cell is not None:
            self.cell += data
        if self.in_title:
            self.title += data


def chromium(url, shot):
    profile = harness.tmpdir()
    argv = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
            "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--user-data-dir=" + profile,
            "--window-size=1280,720", "--screenshot=" + shot, url]
    r = subprocess.run(argv, capture_output=True, timeout=120,
                       start_new_session=True)
    dom = subprocess.run(argv[:-2] + ["--dump-dom", url], capture_output=True,
                         timeout=120, start_new_session=True)
    return r.returncode, dom.returncode, dom.stdout.decode()


def png_size(path):
    with open(path, "rb") as f:
        head = f.read(24)
    if head[:8] != b"\x89PNG\r\n\x1a\n":
        return None
    return struct.unpack(">II", head[16:24])


def test():
    check(os.access(CHROMIUM, os.X_OK), "chromium is installed (%s)" % CHROMIUM)
    port = harness.free_port()
    base = "http://127.0.0.1:%d" % port
    pf = harness.Promfork(6, [PYTHON, WORKER, "3"],
                          extra=["--listen", "127.0.0.1:%d" % port],
                          env={"E2E_LABELS": json.dumps({"note": NASTY})})
    pf.wait_workers(3)
    leases = {l["worker"]: l for l in pf.leases()}
    for l in leases.values():  # a worker leases its port before it binds it
        harness.wait_listening(l["port"])

    status, headers, body = http_get(base + "/")
    check(status == 200 and headers.get("Content-Type", "").startswith(
        "text/html"), "/ is an HTML page")
    served = Rows()
    served.feed(body.decode())
    check(served.urls and all(u.startswith("/") or u == "data:,"
                              for u in served.urls),
          "every link is local, nothing is loaded from elsewhere: %s"
          % sorted(set(served.urls)))
    check(served.tags.isdisjoint({"script", "img", "iframe", "object"}),
          "no script and no injected element: %s" % sorted(served.tags))

    out = os.environ.get("PROMFORK_ARTIFACTS") or tempfile.mkdtemp(
        prefix="promfork-status-")
    os.makedirs(out, exist_ok=True)
    shot = os.path.join(out, "status-page.png")
    t0 = time.monotonic()
    rc_shot, rc_dom, dom = chromium(base + "/", shot)
    elapsed = time.monotonic() - t0
    check(rc_shot == 0 and rc_dom == 0, "chromium rendered the page (%.1f s)"
          % elapsed)

    p = Rows()
    p.feed(dom)
    check(p.title == "promfork: 3 workers", "title: %r" % p.title)
    check(p.refresh == "5", "the page reloads itself every 5 s")
    check("img" not in p.tags and "script" not in p.tags,
          "the label became text, not an element")
    check(len(p.rows) == 3, "3 worker rows in the rendered DOM")
    for row in p.rows:
        a, cells = row["attrs"], row["cells"]
        w = int(a["data-worker"])
        lease = leases[w]
        check(a["data-pid"] == str(lease["pid"])
              and a["data-port"] == str(lease["port"]),
              "worker %d: pid %d and port %d" % (w, lease["pid"], lease["port"]))
        check(cells[1] == str(lease["pid"]) and cells[2] == str(lease["port"]),
              "worker %d: pid and port are shown" % w)
        check(cells[3].endswith("s") and cells[4].endswith(" s")
              and cells[5].endswith(" MiB"),
              "worker %d: uptime %s, CPU %s, memory %s"
              % (w, cells[3], cells[4], cells[5]))
        check(NASTY in cells[7], "worker %d: the label reads as written: %r"
              % (w, cells[7]))
        check(a["data-scrape"] == "ok" and cells[9].startswith("ok, "),
              "worker %d: last scrape %r" % (w, cells[9]))

    size = png_size(shot)
    check(size == (1280, 720) and os.path.getsize(shot) > 10000,
          "screenshot %s (%s, %d bytes)" % (shot, size, os.path.getsize(shot)))
    harness.log("screenshot kept at %s" % shot)

    # A worker that stops answering shows as failed on a later load (the
    # page probes workers whose last scrape is older than its refresh).
    os.kill(leases[0]["pid"], signal.SIGSTOP)  # alive, leased, silent
    try:
        def failed():
            p = Rows()
            p.feed(http_get(base + "/", timeout=10)[2].decode())
            return [r for r in p.rows if r["attrs"]["data-worker"] == "0"
                    and r["attrs"]["data-scrape"] == "error"]
        rows = harness.wait_until(failed, timeout=20,
                                  what="worker 0 to show a failed scrape")
        check("no complete answer" in rows[0]["cells"][9],
              "a silent worker's row says why: %r" % rows[0]["cells"][9])
    finally:
        os.kill(leases[0]["pid"], signal.SIGCONT)
    pf.stop()


harness.run_test(test)
