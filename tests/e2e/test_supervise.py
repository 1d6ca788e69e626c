"""Child supervision: exit statuses, signals, reaping, fds, signal state."""

import os
import signal
import subprocess
import time

from harness import (PROMFORK, check, run_test, start, tmpdir,
                     free_port_range, wait_until)


def promfork(cmd, timeout=10, **kw):
    low = free_port_range(1)
    return subprocess.run([PROMFORK, "--port-range", "%d-%d" % (low, low),
                           "--log-level", "error", "--"] + cmd,
                          capture_output=True, text=True, timeout=timeout,
                          **kw)


def zombies_of(pid):
    out = []
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % p) as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] == "Z" and int(fields[1]) == pid:
            out.append(int(p))
    return out


def test():
    bad = [n for n in range(256)
           if promfork(["sh", "-c", "exit %d" % n]).returncode != n]
    check(not bad, "exit statuses 0..255 propagate (wrong: %s)" % bad[:10])

    for sig in (signal.SIGKILL, signal.SIGTERM, signal.SIGSEGV):
        r = promfork(["sh", "-c", "kill -%d $$" % sig])
        check(r.returncode == 128 + sig, "killed by signal %d gives %d (%d)"
              % (sig, 128 + sig, r.returncode))

    r = promfork(["/nonexistent/command"])
    check(r.returncode == 127 and "cannot run" in r.stderr,
          "a missing command gives 127 and says why")
    d = tmpdir()
    noexec = os.path.join(d, "noexec")
    open(noexec, "w").write("#!/bin/sh\n")
    os.chmod(noexec, 0o644)
    r = promfork([noexec])
    check(r.returncode == 126, "a command that is not executable gives 126")

    r = promfork(["sh", "-c", "ls /proc/$$/fd"])
    fds = sorted(r.stdout.split())
    check(fds == ["0", "1", "2"], "no promfork fd leaks into the command: %s"
          % fds)
    r = subprocess.run(
        [PROMFORK, "--port-range", "%d-%d" % ((free_port_range(1),) * 2),
         "--", "grep", "-E", "^Sig(Blk|Ign)", "/proc/self/status"],
        capture_output=True, text=True, timeout=10,
        preexec_fn=lambda: signal.pthread_sigmask(
            signal.SIG_BLOCK, {signal.SIGUSR1}) and None)
    lines = dict(l.split(":") for l in r.stdout.strip().splitlines())
    check(all(int(v, 16) == 0 for v in lines.values()),
          "the command starts with no blocked or ignored signals: %s" % lines)

    # An orphaned grandchild is re-parented to promfork and reaped by it.
    marker = os.path.join(d, "orphan")
    low = free_port_range(1)
    p = start([PROMFORK, "--port-range", "%d-%d" % (low, low), "--log-level",
               "error", "--", "sh", "-c",
               "(sh -c 'sleep 0.3; read -r a b c d rest < /proc/$$/stat; "
               "echo $d > %s' &); sleep 2" % marker])
    ppid = wait_until(lambda: os.path.exists(marker) and
                      open(marker).read().strip(),
                      timeout=5, what="the orphan to report its parent")
    check(int(ppid) == p.pid, "the orphan is re-parented to promfork")
    wait_until(lambda: zombies_of(p.pid) == [] and time.sleep(0.2) is None
               and zombies_of(p.pid) == [], timeout=5,
               what="the orphan to be reaped")
    check(True, "the orphan was reaped: no zombie under promfork")
    p.wait(10)
    check(p.returncode == 0, "promfork exits with the command's status")

    r = promfork(["true"], env={**os.environ, "PROMFORK_SOCKET": "x"})
    check(r.returncode == 0, "runs without --sd-file")


run_test(test)
