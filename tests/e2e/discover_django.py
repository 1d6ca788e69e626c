"""promfork --discover with real Django and django-prometheus: the demo
project of contrib/django, whose workers each bind the first free port of
PROMETHEUS_METRICS_EXPORT_PORT_RANGE (PROMFORK_PORT_RANGE), under gunicorn
or uWSGI, with a real Prometheus reading promfork's file_sd directory.

A process outside the tree holds the range's first port from the start and
another one takes its last port later: neither is ever published.
"""

import os
import signal
import socket
import time

from harness import (SOURCE, Prometheus, Promfork, TestFailure, check,
                     free_port, free_port_range, log, tmpdir, wait_until)

DJANGO = os.path.join(SOURCE, "contrib", "django")
JOB = "django"
WORKERS = 4
PORTS = 8
ENV = {"PROMETHEUS_METRICS_EXPORT_ADDRESS": "127.0.0.1",
       "PYTHONDONTWRITEBYTECODE": "1"}


def command(server, app_port):
    bind = "127.0.0.1:%d" % app_port
    if server == "gunicorn":
        # no --preload: each worker imports the app, so each starts an exporter
        return ["/usr/bin/gunicorn", "--workers", str(WORKERS), "--bind", bind,
                "--chdir", DJANGO, "promfork_demo.wsgi"]
    return ["/usr/bin/uwsgi", "--ini", os.path.join(DJANGO, "uwsgi.ini"),
            "--processes", str(WORKERS), "--http-socket", bind]


def listener(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", port))
    s.listen(4)
    return s


def is_listening(port):
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            if (fields[3] == "0A"
                    and int(fields[1].rsplit(":", 1)[1], 16) == port):
                return True
    return False


class Watch:
    """Reads the sd file and fails at once if a foreign port shows up."""

    def __init__(self, pf):
        self.pf = pf
        self.foreign = set()
        self.reads = 0

    def workers(self):
        w = self.pf.workers()
        self.reads += 1
        bad = self.foreign & set(w.values())
        if bad:
            raise TestFailure("port %s of a process outside the tree was "
                              "published" % sorted(bad))
        return w

    def leases(self):
        self.workers()
        return self.pf.leases()


def run(server):
    low = free_port_range(PORTS)
    high = low + PORTS - 1
    first = listener(low)  # outside promfork's tree, held throughout
    app_port = free_port()
    while low <= app_port <= high:
        app_port = free_port()
    logpath = os.path.join(tmpdir(), "promfork.log")
    logf = open(logpath, "w")

    t0 = time.monotonic()
    pf = Promfork(PORTS, command(server, app_port), low=low,
                  extra=["--discover"], env=ENV, stdout=logf, stderr=logf)
    watch = Watch(pf)
    watch.foreign.add(low)
    prom = Prometheus([Prometheus.file_sd(JOB, pf.sd_dir)])

    w = wait_until(lambda: (lambda w: w if len(w) == WORKERS else None)(
        watch.workers()), timeout=60, what="%d discovered workers" % WORKERS)
    log("%d workers published %.2fs after start" % (WORKERS,
                                                     time.monotonic() - t0))
    check(sorted(w.values()) == list(range(low + 1, low + 1 + WORKERS)),
          "the workers' exporters are published on ports %d-%d, not on the "
          "foreign port %d" % (low + 1, low + WORKERS, low))
    leases = watch.leases()
    check(all(l["source"] == "discover" for l in leases)
          and len({l["pid"] for l in leases}) == WORKERS,
          "each lease is discovered, one per worker process")
    labels = prom.wait_up(WORKERS, job=JOB, timeout=60)
    check(labels == [str(i) for i in range(1, WORKERS + 1)],
          "Prometheus: exactly %d up targets (workers %s), none down"
          % (WORKERS, ",".join(labels)))
    wait_until(lambda: prom.scalar(
        'count(django_http_requests_before_middlewares_total{job="%s"})'
        % JOB) == WORKERS, timeout=30,
        what="django-prometheus metrics from every worker")
    check(True, "Prometheus scrapes django-prometheus metrics from all %d "
          "workers" % WORKERS)

    # kill one worker: its lease ends, the replacement binds the same port
    victim = next(l for l in leases if l["worker"] == 2)
    os.kill(victim["pid"], signal.SIGKILL)
    t1 = time.monotonic()

    closed, listening = [], []

    def replaced():
        # when the replacement's exporter listens (after the victim's port
        # was seen closed): how long discovery takes to publish it.  Read
        # from /proc/net/tcp: a connection would itself wake promfork.
        if not listening:
            if is_listening(victim["port"]):
                if closed:
                    listening.append(time.monotonic())
            else:
                closed.append(True)
        ls = watch.leases()
        mine = [l for l in ls if l["worker"] == 2]
        return (len(ls) == WORKERS and mine and mine[0]["pid"] !=
                victim["pid"] and mine[0]) or None
    new = wait_until(replaced, timeout=60, interval=0.01,
                     what="a replacement for the killed worker")
    t2 = time.monotonic()
    log("worker 2 (pid %d) killed; replacement pid %d published %.2fs later, "
        "%s after its exporter started listening"
        % (victim["pid"], new["pid"], t2 - t1, "%.0f ms" % (
            (t2 - listening[0]) * 1000) if listening else "(not seen)"))
    labels = prom.wait_up(WORKERS, job=JOB, timeout=60)
    check(labels == [str(i) for i in range(1, WORKERS + 1)],
          "after the replacement Prometheus converges to %d up targets, none "
          "down" % WORKERS)

    # a foreign process takes the range's last port while promfork runs
    late = listener(high)
    watch.foreign.add(high)
    wait_until(lambda: ("port %d is held by a process outside" % high)
               in open(logpath).read(), timeout=10,
               what="promfork noticing the foreign listener on %d" % high)
    check(len(watch.workers()) == WORKERS,
          "the foreign listeners on %d and %d are never published (sd file "
          "read %d times)" % (low, high, watch.reads))

    rc = pf.stop(timeout=30)
    check(rc == 0, "promfork passes on %s's exit status 0 after SIGTERM "
          "(got %d)" % (server, rc))
    check(pf.groups() == [], "the sd file is [] after promfork exits")
    late.close()
    first.close()
    logf.close()
