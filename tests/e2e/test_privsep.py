"""Privilege separation (issue 15, point 1): a compromised app can change
no target, its own included.

promfork is started as near to the installed promfork@.service as this
machine allows without systemd: as the unit's User= (a throwaway stand-in
for the user promfork), with exactly the unit's AmbientCapabilities=,
CapabilityBoundingSet=, NoNewPrivileges= and LimitNOFILE=, its sd
directory made as tmpfiles.d says (owner, mode), and --user as the unit's
ExecStart= gives it.  The wrapped app (privsep_app.py, as another throwaway
user) registers, then tries to overwrite its sd file, create another one,
remove it, open up the directory, signal promfork and become root: every
attempt fails, the registration works, the sd file holds only the real
target, and TERM still reaches the app through promfork.  The same with
promfork started as root and --privsep-user, and with --workers (each copy
runs as the app's user).  Unsafe or impossible setups are refused with
exit status 2.  On a promfork without privilege separation the app runs
as promfork's user and its overwrite succeeds.
"""

import json
import os
import pwd
import re
import resource
import subprocess

from harness import (PROMFORK, PYTHON, SOURCE, check, ensure_user,
                     free_port_range, log, run_test, start, stop, tmpdir,
                     unix_request, wait_until)

APP = os.path.join(SOURCE, "tests", "e2e", "privsep_app.py")
PF_USER = "pftest-pf"  # stands in for the user promfork
APP_USER = "pftest-app1"  # stands in for the instance, promfork@APP_USER


def unit_settings():
    """The settings of promfork@.service that decide who runs as whom."""
    text = open(os.path.join(SOURCE, "systemd",
                             "promfork@.service.in")).read()
    s = {}
    for line in text.splitlines():
        m = re.match(r"^([A-Za-z]+)=(.*)$", line)
        if m:
            s.setdefault(m.group(1), m.group(2))
    tmpfiles = open(os.path.join(SOURCE, "systemd",
                                 "promfork.tmpfiles")).read()
    m = re.search(r"^d /var/lib/promfork/sd (\d+) (\S+) (\S+)", tmpfiles,
                  re.M)
    check(m is not None, "tmpfiles.d creates /var/lib/promfork/sd")
    s["sd_mode"], s["sd_owner"], s["sd_group"] = (int(m.group(1), 8),
                                                  m.group(2), m.group(3))
    return s


def caps(value):
    return ",".join("+" + c.lower().replace("cap_", "")
                    for c in value.split())


def setpriv_argv(s):
    """setpriv doing what systemd does for the unit (User= mapped)."""
    check(s.get("User") == "promfork" and s.get("Group") == "promfork",
          "the unit runs promfork as the user promfork")
    check("SupplementaryGroups" not in s,
          "the unit gives the command no supplementary group")
    argv = ["setpriv", "--reuid", PF_USER, "--regid", PF_USER,
            "--clear-groups"]
    amb = s.get("AmbientCapabilities", "")
    if amb:
        argv += ["--inh-caps", caps(amb), "--ambient-caps", caps(amb)]
    argv += ["--bounding-set", "-all" + ("," + caps(
        s.get("CapabilityBoundingSet", "")) if s.get(
        "CapabilityBoundingSet") else "")]
    if s.get("NoNewPrivileges") == "yes":
        argv.append("--no-new-privs")
    soft, _, hard = s["LimitNOFILE"].partition(":")
    # a container may cap the hard limit below the unit's
    hard = min(int(hard or soft), resource.getrlimit(
        resource.RLIMIT_NOFILE)[1])
    s["nofile"] = (soft, str(hard))
    return ["prlimit", "--nofile=%s:%d" % (soft, hard), "--"] + argv


def setup_dirs(s, pf):
    d = tmpdir()
    os.chmod(d, 0o755)
    sd = os.path.join(d, "sd")
    os.mkdir(sd)
    os.chmod(sd, s["sd_mode"])
    owner = pf if s["sd_owner"] == "promfork" else pwd.getpwnam(
        s["sd_owner"])
    os.chown(sd, owner.pw_uid, owner.pw_gid)
    run = os.path.join(d, "run")  # RuntimeDirectory=, owned by User=
    os.mkdir(run, 0o755)
    os.chown(run, pf.pw_uid, pf.pw_gid)
    out = os.path.join(d, "out")
    os.mkdir(out, 0o755)
    return d, os.path.join(sd, "shop.json"), os.path.join(run, "pf.sock"), \
        out


def promfork_argv(s, low, sd_file, sock, extra, user=APP_USER):
    # ExecStart= passes --user %i before $PROMFORK_OPTIONS
    check("--user %i" in s["ExecStart"], "ExecStart= runs COMMAND as %i")
    argv = [PROMFORK, "--port-range", "%d-%d" % (low, low + 3),
            "--socket", sock, "--sd-file", sd_file,
            "--target-host", "127.0.0.1"]
    return argv + (["--user", user] if user else []) + extra


def run_app(prefix, extra, what, s, pf, owner, user=APP_USER):
    """promfork running privsep_app.py; returns promfork, the app's report,
    the sd file and the low port."""
    d, sd_file, sock, outdir = setup_dirs(s, pf)
    os.chown(outdir, owner.pw_uid, owner.pw_gid)
    out = os.path.join(outdir, "result.json")
    low = free_port_range(4)
    argv = prefix + promfork_argv(s, low, sd_file, sock, extra, user) + \
        ["--", PYTHON, APP]
    err = open(os.path.join(d, "promfork.log"), "w+")
    p = start(argv, env={"SD_FILE": sd_file, "OUT": out}, stderr=err)
    wait_until(lambda: os.path.exists(out) or p.poll() is not None,
               what="the app's report (%s)" % what)
    err.seek(0)
    check(p.poll() is None, "%s: promfork runs (%s)" % (what, err.read()))
    r = json.load(open(out))
    log("%s: %s" % (what, r))
    return p, r, sd_file, low


def attack(prefix, extra, what, s, pf, app):
    p, r, sd_file, low = run_app(prefix, extra, what, s, pf, app)
    check(r["uid"] == app.pw_uid and r["gid"] == app.pw_gid,
          "%s: the command runs as %s" % (what, APP_USER))
    check(pf.pw_gid not in r["groups"],
          "%s: ... without promfork's group" % what)
    check(r["CapPrm"] == 0 and r["CapEff"] == 0 and r["CapAmb"] == 0,
          "%s: ... and with no capability" % what)
    check(r["register"] == 201 and r["port"] == low,
          "%s: the app may still register" % what)
    for k in ("overwrite", "create", "unlink"):
        check(r[k] == "EACCES", "%s: the app cannot %s an sd file (%s)"
              % (what, k, r[k]))
    check(r["chmod_dir"] == "EPERM",
          "%s: nor open up the sd directory (%s)" % (what, r["chmod_dir"]))
    check(r["signal_promfork"] == "EPERM",
          "%s: nor signal promfork (%s)" % (what, r["signal_promfork"]))
    check(r["become_root"] == "EPERM", "%s: nor become root" % what)
    # written a few ms after the registration
    groups = wait_until(lambda: (lambda g: g if g else None)(
        json.load(open(sd_file))), timeout=10, what="the lease in the sd file")
    check(len(groups) == 1 and groups[0]["targets"] ==
          ["127.0.0.1:%d" % low] and groups[0]["labels"]["app"] == "shop",
          "%s: the sd file holds the real target only" % what)
    check(sorted(os.listdir(os.path.dirname(sd_file))) == ["shop.json"],
          "%s: and nothing else is in the sd directory" % what)
    st = os.stat(sd_file)
    check(st.st_uid == pf.pw_uid and st.st_mode & 0o777 == 0o644,
          "%s: the sd file is promfork's user's, 0644" % what)
    # promfork's own soft limit is raised; the app got the one promfork had
    with open("/proc/%d/limits" % p.pid) as f:
        pf_soft = [ln.split()[3] for ln in f
                   if ln.startswith("Max open files")][0]
    return p, r, pf_soft


def refused(argv, what, expect):
    r = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    check(r.returncode == 2 and expect in r.stderr,
          "%s is refused with exit 2: %s" % (what, r.stderr.strip()))


def test():
    pf = ensure_user(PF_USER)
    app = ensure_user(APP_USER)
    s = unit_settings()
    check(s["sd_mode"] & 0o022 == 0,
          "the sd directory is writable by its owner only (%o)"
          % s["sd_mode"])
    check(all(k in s for k in ("LimitNOFILE", "MemoryMax", "TasksMax")),
          "the unit limits files, memory and tasks")

    # 1. as the unit runs it
    prefix = setpriv_argv(s)
    p, r, pf_soft = attack(prefix, [], "as the unit", s, pf, app)
    check((pf_soft, r["nofile_soft"]) == (s["nofile"][1], s["nofile"][0]),
          "promfork raised its open files limit (%s), the app has the "
          "unit's (%s)" % (pf_soft, r["nofile_soft"]))
    code = stop(p, timeout=10)
    check(code == 0, "TERM reaches the app through promfork, which exits "
          "with the app's status (%d)" % code)

    # the control: without --user (as on main) the same app, run as
    # promfork's own user, does forge its targets
    p, r, _, _ = run_app(["setpriv", "--reuid", PF_USER, "--regid", PF_USER,
                          "--clear-groups"], [], "without --user", s, pf,
                         pf, user=None)
    check(r["uid"] == pf.pw_uid and r["overwrite"] == "ok",
          "control: without --user the app overwrites the sd file")
    stop(p, timeout=10)

    # 2. started as root, promfork drops to --privsep-user
    p, r, _ = attack([], ["--privsep-user", PF_USER], "root, --privsep-user",
                     s, pf, app)
    with open("/proc/%d/status" % p.pid) as f:
        st = dict(ln.split(":", 1) for ln in f)
    check(st["Uid"].split()[:3] == [str(pf.pw_uid)] * 3 and
          int(st["CapEff"], 16) == 1 << 5,
          "promfork itself runs as %s with CAP_KILL only (%s, %s)"
          % (PF_USER, st["Uid"].strip(), st["CapEff"].strip()))
    check(stop(p, timeout=10) == 0, "TERM reaches the app (root start)")

    # 3. --workers: every copy is the app's user
    d, sd_file, sock, _ = setup_dirs(s, pf)
    low = free_port_range(4)
    w = start(prefix + promfork_argv(s, low, sd_file, sock,
                                     ["--workers", "2"]) +
              ["--", "sleep", "60"], stderr=subprocess.DEVNULL)

    def leased():
        if w.poll() is not None:
            raise AssertionError("promfork exited with %d" % w.returncode)
        got = unix_request(sock, "GET", "/v1/workers")[1]
        return got if len(got) == 2 else None
    leases = wait_until(leased, what="two spawned workers")
    for lease in leases:
        with open("/proc/%d/status" % lease["pid"]) as f:
            uid = [ln.split()[1] for ln in f if ln.startswith("Uid:")][0]
        check(uid == str(app.pw_uid), "worker %d runs as %s"
              % (lease["worker"], APP_USER))
    check(stop(w, timeout=15) == 0, "--workers stops cleanly")

    # 4. what is refused
    d, sd_file, sock, _ = setup_dirs(s, pf)
    low = free_port_range(4)
    base = promfork_argv(s, low, sd_file, sock, [])
    refused(base[:-2] + ["--user", "pftest-no-such-user", "--", "true"],
            "an unknown --user", "not a user of this system")
    refused(prefix + base[:-2] + ["--user", PF_USER, "--", "true"],
            "--user equal to promfork's own user", "promfork's own user")
    refused(base[:-2] + ["--user", "root", "--privsep-user", PF_USER,
                         "--", "true"], "--user root", "is root")
    refused(["setpriv", "--reuid", PF_USER, "--regid", PF_USER,
             "--clear-groups"] + base + ["--", "true"],
            "--user without the capabilities to change users",
            "cannot change users")
    refused(prefix + base + ["--discover", "--", "true"],
            "--discover with --user without CAP_SYS_PTRACE",
            "CAP_SYS_PTRACE")


run_test(test)
