"""Installation and the systemd units.

`meson install --destdir` puts the binary, both units (ExecStart naming the
installed binary), the sysusers.d and tmpfiles.d snippets, the man page
and the contrib files where they belong; `systemd-analyze verify` has
nothing to say about either unit nor about the example promfork.socket
(a deliberately broken copy shows that it would); the sandbox keeps the exposure level of both units low: no
higher than measured when privilege separation came (promfork@ 2.1: 1.6
before, plus CAP_SETUID/CAP_SETGID/CAP_KILL and /proc of the app's user,
which privilege separation needs; promfork.service 1.5, as before).  Both
units limit open files, memory and tasks; the sd directory is writable by
the user promfork alone and no command gets promfork's group.
"""

import os
import re
import shutil
import subprocess

from harness import PROMFORK, check, log, run_test, tmpdir

UNITS = ["promfork@.service", "promfork.service"]
# systemd-analyze security's exposure level, at most
EXPOSURE = {"promfork@shop.service": 2.1, "promfork.service": 1.5}


def find(root, name):
    for d, _, files in os.walk(root):
        if name in files:
            return os.path.join(d, name)
    return None


def install():
    build = os.path.dirname(os.path.abspath(PROMFORK))
    check(os.path.isdir(os.path.join(build, "meson-private")),
          "PROMFORK_BIN lies in a meson build directory")
    dest = tmpdir()
    r = subprocess.run(["meson", "install", "-C", build, "--destdir", dest,
                        "--no-rebuild", "--quiet"],
                       capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        log(r.stdout + r.stderr)
    check(r.returncode == 0, "meson install --destdir succeeds")
    return dest


def verify(paths, env):
    r = subprocess.run(["systemd-analyze", "verify"] + paths,
                       capture_output=True, text=True, env=env, timeout=60)
    out = (r.stdout + r.stderr).strip()
    ours = [line for line in out.splitlines() if "promfork" in line]
    return r.returncode, ours, out


def test():
    analyze = shutil.which("systemd-analyze")
    check(analyze is not None, "systemd-analyze is installed")
    dest = install()

    binary = find(dest, "promfork")
    check(binary is not None and os.access(binary, os.X_OK),
          "the binary is installed")
    prefix_bin = binary[len(dest):]
    man = find(dest, "promfork.8")
    check(man is not None and man.endswith("/man8/promfork.8"),
          "the man page is installed in man8")
    check(find(dest, "promfork.py") is not None and
          "/share/doc/promfork/contrib/" in find(dest, "promfork.py"),
          "contrib files are installed under share/doc/promfork")
    check(find(dest, "app.env.example") is not None,
          "the example environment files are installed")
    confs = [os.path.join(d, f) for d, _, fs in os.walk(dest) for f in fs
             if f == "promfork.conf"]
    tmpfiles = [c for c in confs if "/tmpfiles.d/" in c]
    check(tmpfiles and re.search(r"^d /var/lib/promfork/sd 0755 promfork "
                                 r"promfork", open(tmpfiles[0]).read(), re.M),
          "tmpfiles.d makes the sd directory 0755, the user promfork's")
    check(any("/sysusers.d/" in c for c in confs) and
          any("/tmpfiles.d/" in c for c in confs),
          "sysusers.d and tmpfiles.d snippets are installed")

    work = tmpdir()
    copies = []
    for unit in UNITS:
        path = find(dest, unit)
        check(path is not None and "/systemd/system/" in path,
              "%s is installed in a systemd unit directory" % unit)
        text = open(path).read()
        for key in ("LimitNOFILE=", "MemoryMax=", "TasksMax="):
            check("\n" + key in text, "%s sets %s" % (unit, key))
        check("SupplementaryGroups=" not in text,
              "%s gives no supplementary group" % unit)
        check("\nUser=promfork\n" in text, "%s runs promfork as the user "
              "promfork" % unit)
        check("@sbindir@" not in text and
              "ExecStart=%s " % prefix_bin in text,
              "%s runs the installed binary %s" % (unit, prefix_bin))
        # verify wants ExecStart to exist: point a copy at the destdir
        copy = os.path.join(work, unit)
        with open(copy, "w") as f:
            f.write(text.replace("ExecStart=%s " % prefix_bin,
                                 "ExecStart=%s " % binary))
        copies.append(copy)

    # The example socket unit: the standalone daemon's listener on IPv4 and
    # IPv6, handed to promfork.service, which is in the same directory.
    sock = find(dest, "promfork.socket")
    check(sock is not None and "/systemd/system/" in sock,
          "promfork.socket is installed in a systemd unit directory")
    text = open(sock).read()
    check(re.search(r"^ListenStream=127\.0\.0\.1:\d+$", text, re.M) and
          re.search(r"^ListenStream=\[::1\]:\d+$", text, re.M) and
          "\nService=promfork.service\n" in text and
          "\nAccept=no\n" in text,
          "promfork.socket listens on IPv4 and IPv6 for promfork.service, "
          "one service for all connections")
    check("--systemd-socket" in open(find(dest, "daemon.env.example")).read(),
          "daemon.env.example says to add --systemd-socket")
    sock_copy = os.path.join(work, "promfork.socket")
    shutil.copy(sock, sock_copy)

    env = dict(os.environ)
    # Documentation=man:promfork(8) must resolve to the installed page
    env["MANPATH"] = os.path.dirname(os.path.dirname(man))
    targets = [os.path.join(work, "promfork@shop.service"),
               os.path.join(work, "promfork.service")]
    rc, ours, out = verify(targets + [sock_copy], env)
    log(out)
    check(rc == 0 and not ours,
          "systemd-analyze verify has no complaint about the units")

    # the same check must notice a broken unit
    broken = os.path.join(work, "promfork-broken.service")
    with open(broken, "w") as f:
        f.write(open(copies[1]).read().replace(
            "[Service]", "[Service]\nProtectSytem=strict"))
    rc, ours, out = verify([broken], env)
    check(ours, "a misspelt setting is reported: %s" % out)

    r = subprocess.run([analyze, "security", "--help"], capture_output=True,
                       text=True)
    if "--offline" not in r.stdout:
        log("systemd-analyze security --offline unsupported; skipped")
        return
    for t in targets:
        r = subprocess.run([analyze, "security", "--offline=true",
                            "--no-pager", t], capture_output=True, text=True,
                           env=env, timeout=60)
        m = re.search(r"Overall exposure level for \S+: ([0-9.]+)",
                      r.stdout + r.stderr)
        name = os.path.basename(t)
        check(m is not None and float(m.group(1)) <= EXPOSURE[name],
              "%s: exposure level %s is at most %.1f"
              % (name, m.group(1) if m else "?", EXPOSURE[name]))


run_test(test)
