"""The wrapped app of test_privsep.py, run by promfork as the app's user:
it leases a port, then tries to change the targets in every way it can
and writes what happened to $OUT as one JSON object.  It stays until it is
signalled, so that the test sees its lease, and exits 0 on SIGTERM."""

import errno
import json
import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import unix_request  # noqa: E402


def attempt(fn):
    """"ok" when fn succeeds (the attack worked), else the errno name."""
    try:
        fn()
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e))
    return "ok"


def main():
    sd_file = os.environ["SD_FILE"]
    sd_dir = os.path.dirname(sd_file)
    forged = json.dumps([{"targets": ["169.254.169.254:80"],
                          "labels": {"__metrics_path__": "/latest"}}])
    out = {"uid": os.getuid(), "gid": os.getgid(),
           "groups": os.getgroups()}
    status, body = unix_request(os.environ["PROMFORK_SOCKET"], "POST",
                                "/v1/workers", {"labels": {"app": "shop"}})
    out["register"] = status
    out["port"] = body.get("port") if isinstance(body, dict) else None

    def overwrite():
        with open(sd_file, "w") as f:
            f.write(forged)

    def create():
        with open(os.path.join(sd_dir, "forged.json"), "x") as f:
            f.write(forged)

    out["overwrite"] = attempt(overwrite)
    out["create"] = attempt(create)
    out["unlink"] = attempt(lambda: os.unlink(sd_file))
    out["chmod_dir"] = attempt(lambda: os.chmod(sd_dir, 0o777))
    out["signal_promfork"] = attempt(lambda: os.kill(os.getppid(), 0))
    out["become_root"] = attempt(lambda: os.setuid(0))
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(("CapPrm:", "CapEff:", "CapAmb:")):
                k, v = line.split(":")
                out[k] = int(v.strip(), 16)
    with open("/proc/self/limits") as f:
        for line in f:
            if line.startswith("Max open files"):
                out["nofile_soft"] = line.split()[3]
    tmp = os.environ["OUT"] + ".tmp"
    with open(tmp, "w") as f:
        json.dump(out, f)
    os.rename(tmp, os.environ["OUT"])

    signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        time.sleep(0.2)
    sys.exit(3)


main()
