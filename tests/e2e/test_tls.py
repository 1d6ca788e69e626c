"""--web.config.file: TLS and basic auth on --listen, with a real
Prometheus 2.42 and real gunicorn.

The test makes a CA, a server and client certificates with openssl and
bcrypt hashes with libcrypt.  promfork wraps gunicorn (2 workers,
--proxy-targets) with a web configuration of TLS and one user; Prometheus
scrapes over HTTPS with basic_auth and tls_config:
- "fanout": /workers/metrics; "proxy": http_sd from /targets (same auth),
  each worker through /workers/N/metrics; both up.
- "other": the fan-out with another password: down, 401 in lastError.
- Without a password: 401 with WWW-Authenticate, for curl and for another
  local user (setpriv, a throwaway uid); plain HTTP gets no answer.
- The file is rewritten with the other password: promfork (same pid) takes
  it, "other" comes up and "fanout" goes down; a broken file keeps the
  configuration in force and is logged once.
- RequireAndVerifyClientCert: curl without a certificate, or with one of
  another CA, is refused in the handshake; "mtls" (Prometheus with the
  client certificate) is up, "other" (none) is down.  client_allowed_sans
  refuses the certificate unless one of its SANs (DNS or IP) is listed.
"""

import json
import os
import signal
import subprocess

from harness import (Promfork, Prometheus, check, free_port, log,
                     run_logged, run_test, tmpdir, wait_until, ensure_user)
from apptest import CONTRIB, ENV, EXAMPLES
from tlstest import bcrypt, curl, make_pki, scrape_auth, write_config

GUNICORN = "/usr/bin/gunicorn"
CONF = os.path.join(CONTRIB, "gunicorn", "gunicorn.conf.py")
N = 2
OTHER_USER = "pftest-app2"


def gunicorn(app_port):
    return [GUNICORN, "-c", CONF, "-b", "127.0.0.1:%d" % app_port,
            "-w", str(N), "--chdir", EXAMPLES, "--graceful-timeout", "5",
            "--log-level", "warning", "app:application"]


def targets(prom, job):
    return [t for t in prom.api("/api/v1/targets", state="active")
            ["activeTargets"] if t["labels"].get("job") == job]


def wait_health(prom, job, n, health, error=None, timeout=30):
    """Waits until job has n targets, all with health (and lastError
    holding error); returns them."""
    seen = []

    def ok():
        ts = targets(prom, job)
        seen[:] = [(t["health"], t["lastError"]) for t in ts]
        if len(ts) != n or any(t["health"] != health for t in ts):
            return None
        if error and not all(error in t["lastError"] for t in ts):
            return None
        return ts
    try:
        ts = wait_until(ok, timeout=timeout, interval=0.25,
                        what="%d %s targets of job %s" % (n, health, job))
    except Exception:
        log("job %s: %s" % (job, seen))
        raise
    check(True, "job %s: %d target(s) %s%s" % (
        job, n, health, " (lastError: %s)" % ts[0]["lastError"]
        if error else ""))
    return ts


def main_run(logf):
    d = tmpdir()
    make_pki(d)
    pw1, pw2 = "first-secret", "second-secret"
    h1, h2 = bcrypt(pw1), bcrypt(pw2)
    web = os.path.join(d, "web.yml")
    write_config(web, {"prom": h1})

    port = free_port()
    listen = "127.0.0.1:%d" % port
    base = "https://" + listen
    pf = Promfork(N + 2, gunicorn(free_port()),
                  extra=["--listen", listen, "--proxy-targets",
                         "--web.config.file", web, "--log-level", "debug"],
                  env=ENV, stdout=logf, stderr=logf)
    pf.wait_workers(N)

    rc, status, text = curl(base + "/targets", d)
    check(status == 401 and "WWW-Authenticate: Basic realm=\"promfork\""
          in text, "no password: 401 with WWW-Authenticate")
    rc, status, text = curl(base + "/targets", d, user="prom:wrong")
    check(status == 401, "a wrong password: 401")
    rc, status, text = curl(base + "/targets", d, user="nobody:" + pw1)
    check(status == 401, "an unknown user: 401")
    rc, status, text = curl(base + "/workers/metrics", d, user="prom:" + pw1)
    check(status == 200 and "promfork_worker_up" in text,
          "the right password over HTTPS: 200 and the fan-out")
    r = subprocess.run(["/usr/bin/curl", "-sS", "--max-time", "3",
                        "http://%s/targets" % listen], capture_output=True,
                       timeout=10)
    check(r.returncode != 0 and b"[" not in r.stdout,
          "plain HTTP to the TLS listener gets no answer (curl exit %d)"
          % r.returncode)

    # Another local user, without the password.
    user = ensure_user(OTHER_USER)
    setpriv = ["/usr/bin/setpriv", "--reuid", str(user.pw_uid), "--regid",
               str(user.pw_gid), "--clear-groups", "--"]
    for path in ("/", "/targets", "/metrics", "/workers/metrics",
                 "/workers/0/metrics", "/api/v1/history",
                 "/-/healthy/", "/-/readyX"):
        rc, status, _ = curl(base + path, d, insecure=True, prefix=setpriv)
        check(status == 401, "uid %d without the password: %s is 401"
              % (user.pw_uid, path))
    # The health checks answer an orchestrator's probe without one.
    for path in ("/-/healthy", "/-/ready", "/-/ready?verbose=1"):
        rc, status, _ = curl(base + path, d, insecure=True, prefix=setpriv)
        check(status == 200, "uid %d without the password: %s is 200"
              % (user.pw_uid, path))

    sd = {"url": base + "/targets", "refresh_interval": "1s"}
    sd.update({k: v for k, v in scrape_auth(d, "prom", pw1).items()
               if k != "scheme"})
    jobs = [
        dict(Prometheus.fan_out("fanout", listen),
             **scrape_auth(d, "prom", pw1)),
        dict({"job_name": "proxy", "http_sd_configs": [sd]},
             **scrape_auth(d, "prom", pw1)),
        dict(Prometheus.fan_out("other", listen),
             **scrape_auth(d, "prom", pw2)),
        dict(Prometheus.fan_out("mtls", listen),
             **scrape_auth(d, "prom", pw2, cert="client")),
    ]
    prom = Prometheus(jobs)
    wait_health(prom, "fanout", 1, "up")
    ts = wait_health(prom, "proxy", N, "up")
    check(sorted(t["labels"]["worker"] for t in ts) == ["0", "1"]
          and all(t["scrapeUrl"].startswith(base + "/workers/") for t in ts),
          "http_sd over HTTPS with auth: every worker through the proxy: %s"
          % [t["scrapeUrl"] for t in ts])
    wait_health(prom, "other", 1, "down", error="401")
    wait_until(lambda: prom.scalar(
        'count(promfork_worker_up{job="fanout"} == 1)') == N,
        what="promfork_worker_up of every worker through the fan-out")
    check(True, "Prometheus stored promfork_worker_up == 1 of %d workers "
          "through the HTTPS fan-out" % N)

    # Reload: the other password, without a restart.
    pid = pf.proc.pid
    write_config(web, {"prom": h2})
    wait_health(prom, "other", 1, "up")
    wait_health(prom, "fanout", 1, "down", error="401")
    check(pf.proc.poll() is None and pf.proc.pid == pid,
          "the new password took effect in the same promfork (pid %d)" % pid)
    check(curl(base + "/targets", d, user="prom:" + pw1)[1] == 401
          and curl(base + "/targets", d, user="prom:" + pw2)[1] == 200,
          "curl: the old password is 401, the new one 200")

    # A broken file keeps the configuration in force.
    with open(web, "w") as f:
        f.write("basic_auth_users:\n  prom: [\n")
    for _ in range(3):
        rc, status, _ = curl(base + "/targets", d, user="prom:" + pw2)
        check(status == 200, "a broken file: the new password still works")
    logf.flush()
    with open(logf.name) as f:
        warned = [l for l in f if "web.yml:3: not YAML" in l]
    check(len(warned) == 1, "the broken file is logged once, with its line "
          "(%d lines)" % len(warned))
    wait_health(prom, "other", 1, "up")

    # Client certificates, required and verified.
    write_config(web, {"prom": h2}, client_certs=True)
    wait_until(lambda: curl(base + "/targets", d, user="prom:" + pw2)[0]
               != 0, what="the client certificate policy in force")
    rc, status, _ = curl(base + "/targets", d, user="prom:" + pw2)
    check(rc != 0 and status == 0,
          "no client certificate: refused in the handshake (curl exit %d)"
          % rc)
    rc, status, _ = curl(base + "/targets", d, user="prom:" + pw2,
                         cert="rogue")
    check(rc != 0 and status == 0,
          "a certificate of another CA: refused (curl exit %d)" % rc)
    rc, status, _ = curl(base + "/targets", d, user="prom:" + pw2,
                         cert="client")
    check(status == 200, "the client certificate and password: 200")
    rc, status, _ = curl(base + "/targets", d, user="prom:wrong",
                         cert="client")
    check(status == 401, "the client certificate without the password: 401")
    wait_health(prom, "mtls", 1, "up")
    ts = wait_health(prom, "other", 1, "down")
    log("# without a certificate, Prometheus says: %s" % ts[0]["lastError"])

    # client_allowed_sans: the client certificate's names must match.
    write_config(web, {"prom": h2}, client_certs=True,
                 sans=["other.example"])
    wait_until(lambda: curl(base + "/targets", d, user="prom:" + pw2,
                            cert="client")[0] != 0,
               what="client_allowed_sans [other.example] in force")
    check(True, "client_allowed_sans without the certificate's names: "
          "refused in the handshake")
    write_config(web, {"prom": h2}, client_certs=True,
                 sans=["nothing.example", "192.0.2.7"])
    wait_until(lambda: curl(base + "/targets", d, user="prom:" + pw2,
                            cert="client")[1] == 200,
               what="client_allowed_sans with the certificate's IP")
    check(True, "client_allowed_sans naming the certificate's IP SAN: 200")
    write_config(web, {"prom": h2}, client_certs=True,
                 sans=["prometheus.example"])
    wait_until(lambda: curl(base + "/targets", d, user="prom:" + pw2,
                            cert="client")[1] == 200,
               what="client_allowed_sans with the certificate's DNS name")
    wait_health(prom, "mtls", 1, "up")
    check(True, "client_allowed_sans naming its DNS SAN: 200, and "
          "Prometheus with the certificate is up")

    rc = pf.stop(signal.SIGTERM, timeout=40)
    check(rc == 0, "promfork exits 0 after SIGTERM (got %s)" % rc)


def test_bad_file_at_start():
    d = tmpdir()
    web = os.path.join(d, "web.yml")
    with open(web, "w") as f:
        f.write("tls_server_config:\n  cert_file: a.crt\n  key_file: a.key\n"
                "  client_auth_type: Sometimes\n")
    r = subprocess.run([os.environ.get("PROMFORK_BIN", "build/promfork"),
                        "--port-range", "20000-20001",
                        "--listen", "127.0.0.1:0", "--web.config.file", web,
                        "--", "/bin/true"], capture_output=True, timeout=30)
    err = r.stderr.decode()
    check(r.returncode == 2 and "web.yml:4: client_auth_type \"Sometimes\""
          in err, "a bad file at start: exit 2 naming file, line and reason: "
          + err.strip())
    r = subprocess.run([os.environ.get("PROMFORK_BIN", "build/promfork"),
                        "--check", "--port-range", "20000-20001",
                        "--listen", "127.0.0.1:0", "--web.config.file", web],
                       capture_output=True, timeout=30)
    out = r.stdout.decode()
    check(r.returncode == 2 and "error" in out and "web.yml:4:" in out,
          "--check reports the bad file and exits 2")


def main():
    test_bad_file_at_start()
    run_logged(main_run)


run_test(main)
