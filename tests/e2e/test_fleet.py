"""A fleet of two hosts, for real: network namespaces joined to this one
by veth pairs, with addresses from the 198.18.0.0/15 benchmarking range.

Each host runs promfork wrapping gunicorn (host 1: 2 workers, host 2: 3),
its workers bound to the host's loopback, --proxy-targets, and the
TLS-and-basic-auth listener on the host's address.  One Prometheus here
uses http_sd_configs (HTTPS and auth) against both hosts' /targets and
scrapes every worker through its host's listener.  Every worker of both
hosts must be up, with the right count per host; after a gunicorn HUP on
host 2 Prometheus follows its new workers.  Everything the test makes is
removed at the end, also on failure.  Skipped (exit 77) when not root or
without network namespaces.
"""

import atexit
import os
import signal
import subprocess
import sys

from harness import (PROMFORK, Prometheus, check, log, run_logged,
                     run_test, start, tmpdir, wait_until)
from apptest import CONTRIB, ENV, EXAMPLES
from tlstest import bcrypt, curl, make_pki, scrape_auth, write_config

GUNICORN = "/usr/bin/gunicorn"
CONF = os.path.join(CONTRIB, "gunicorn", "gunicorn.conf.py")
IP = "/usr/sbin/ip" if os.path.exists("/usr/sbin/ip") else "/sbin/ip"
PORT = 9443  # each host's listener; the namespaces are fresh
TAG = os.getpid() % 10000
# 198.18.0.0/15: host 1 in 198.18.T.0/24, host 2 in 198.19.T.0/24
OCTET = os.getpid() % 250 + 1
HOSTS = [
    {"name": "h1", "workers": 2, "net": "198.18.%d" % OCTET},
    {"name": "h2", "workers": 3, "net": "198.19.%d" % OCTET},
]
for h in HOSTS:
    h["ns"] = "pf%s-%d" % (h["name"], TAG)
    h["veth"] = "pf%s-%d" % (h["name"], TAG)  # at most 15 characters
    h["peer"] = "pf%sp%d" % (h["name"], TAG)
    h["addr"] = h["net"] + ".2"
    h["gw"] = h["net"] + ".1"

_made = []


def ip(*args, check_rc=True):
    r = subprocess.run([IP] + list(args), capture_output=True, timeout=30)
    if check_rc and r.returncode != 0:
        raise RuntimeError("ip %s: %s" % (" ".join(args),
                                          r.stderr.decode().strip()))
    return r


def teardown():
    """Removes every namespace and link the test made (deleting a
    namespace takes its veth end, and so the pair, with it)."""
    for kind, name in reversed(_made):
        if kind == "netns":
            pids = ip("netns", "pids", name, check_rc=False).stdout.split()
            for p in pids:
                try:
                    os.kill(int(p), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass
            ip("netns", "del", name, check_rc=False)
        else:
            ip("link", "del", name, check_rc=False)
    _made.clear()


def skip_unless_possible():
    if os.geteuid() != 0:
        print("SKIP: needs root for network namespaces")
        sys.exit(77)
    if not os.path.exists(IP):
        print("SKIP: no ip command")
        sys.exit(77)
    probe = "pfprobe-%d" % TAG
    if ip("netns", "add", probe, check_rc=False).returncode != 0:
        print("SKIP: cannot make a network namespace")
        sys.exit(77)
    ip("netns", "del", probe, check_rc=False)


def make_host(h):
    ip("netns", "add", h["ns"])
    _made.append(("netns", h["ns"]))
    ip("link", "add", h["veth"], "type", "veth", "peer", "name", h["peer"])
    _made.append(("link", h["veth"]))
    ip("link", "set", h["peer"], "netns", h["ns"])
    ip("addr", "add", h["gw"] + "/24", "dev", h["veth"])
    ip("link", "set", h["veth"], "up")
    ip("-n", h["ns"], "link", "set", "lo", "up")
    ip("-n", h["ns"], "addr", "add", h["addr"] + "/24", "dev", h["peer"])
    ip("-n", h["ns"], "link", "set", h["peer"], "up")
    log("# host %s: namespace %s, %s <-> %s" % (h["name"], h["ns"], h["gw"],
                                                h["addr"]))


def start_host(h, d, web, logf):
    h["dir"] = tmpdir()
    argv = [IP, "netns", "exec", h["ns"], PROMFORK,
            "--port-range", "9400-9409",
            "--socket", os.path.join(h["dir"], "promfork.sock"),
            "--listen", "%s:%d" % (h["addr"], PORT), "--proxy-targets",
            "--web.config.file", web,
            "--", GUNICORN, "-c", CONF, "-b", "127.0.0.1:8000",
            "-w", str(h["workers"]), "--chdir", EXAMPLES,
            "--graceful-timeout", "5", "--log-level", "warning",
            "app:application"]
    h["proc"] = start(argv, env=ENV, stdout=logf, stderr=logf)
    h["url"] = "https://%s:%d" % (h["addr"], PORT)


def host_workers(h, d, user):
    """The worker labels a host's /targets lists (over HTTPS, with auth)."""
    import json
    rc, status, text = curl(h["url"] + "/targets", d, user=user)
    if status != 200:
        return None
    body = text.split("\r\n\r\n", 1)[1]
    return sorted(g["labels"]["worker"] for g in json.loads(body))


def prom_workers(prom, h):
    """{worker: health} of the host's targets in Prometheus."""
    inst = "%s:%d" % (h["addr"], PORT)
    return {t["labels"]["worker"]: t["health"] for t in
            prom.api("/api/v1/targets", state="active")["activeTargets"]
            if t["labels"].get("instance") == inst}


def wait_fleet(prom, d, user, what):
    """Waits until Prometheus has each host's workers, as its /targets
    lists them, all up and none else; returns {host: workers}."""
    seen = {}

    def ok():
        out = {}
        for h in HOSTS:
            want = host_workers(h, d, user)
            got = prom_workers(prom, h)
            seen[h["name"]] = (want, got)
            if (want is None or len(want) != h["workers"]
                    or sorted(got) != want
                    or any(v != "up" for v in got.values())):
                return None
            out[h["name"]] = want
        return out
    try:
        out = wait_until(ok, timeout=40, interval=0.25, what=what)
    except Exception:
        log("# (host /targets, Prometheus) per host: %s" % seen)
        raise
    for h in HOSTS:
        check(True, "%s: host %s (%s) has %d workers up in Prometheus: %s"
              % (what, h["name"], h["addr"], h["workers"],
                 ",".join(out[h["name"]])))
    return out


def main_run(logf):
    d = tmpdir()
    make_pki(d, server_ips=[h["addr"] for h in HOSTS])
    password = "fleet-secret"
    web = os.path.join(d, "web.yml")
    write_config(web, {"prometheus": bcrypt(password)})
    for h in HOSTS:
        make_host(h)
    for h in HOSTS:
        start_host(h, d, web, logf)
    user = "prometheus:" + password
    for h in HOSTS:
        wait_until(lambda: (lambda w: w is not None and len(w) == h["workers"])
                   (host_workers(h, d, user)), timeout=30,
                   what="host %s's %d workers" % (h["name"], h["workers"]))
    rc, status, _ = curl(HOSTS[0]["url"] + "/targets", d)
    check(status == 401, "a host's /targets without the password: 401")

    # The Prometheus configuration of README "Running many hosts".
    auth = scrape_auth(d, "prometheus", password)
    sd_auth = {k: v for k, v in auth.items() if k != "scheme"}
    job = {"job_name": "app",
           "http_sd_configs": [dict({"url": h["url"] + "/targets",
                                     "refresh_interval": "1s"}, **sd_auth)
                               for h in HOSTS]}
    job.update(auth)
    prom = Prometheus([job])
    before = wait_fleet(prom, d, user, "start")

    # HUP on host 2: gunicorn starts new workers, then stops the old ones.
    h2 = HOSTS[1]
    log("# kill -HUP promfork on host %s (forwarded to gunicorn)"
        % h2["name"])
    os.kill(h2["proc"].pid, signal.SIGHUP)
    wait_until(lambda: (lambda w: w is not None and len(w) == h2["workers"]
                        and w != before["h2"])(host_workers(h2, d, user)),
               timeout=30, what="host h2's new workers")
    after = wait_fleet(prom, d, user, "after HUP on h2")
    check(after["h2"] != before["h2"] and after["h1"] == before["h1"],
          "Prometheus followed h2's new workers (%s -> %s); h1's stayed"
          % (before["h2"], after["h2"]))
    for h in HOSTS:
        h["proc"].send_signal(signal.SIGTERM)
        h["proc"].wait(30)
        check(h["proc"].returncode == 0,
              "promfork on host %s exits 0" % h["name"])


def main():
    skip_unless_possible()
    atexit.register(teardown)
    try:
        run_logged(main_run)
    finally:
        teardown()
    left = ip("netns", "list").stdout.decode()
    check(all(h["ns"] not in left for h in HOSTS)
          and all(ip("link", "show", h["veth"], check_rc=False).returncode
                  != 0 for h in HOSTS),
          "the namespaces and veth pairs are gone")


run_test(main)
