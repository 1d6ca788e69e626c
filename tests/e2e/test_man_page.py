"""The man page: groff renders it without a warning, man(1) shows it, and
it documents every option that `promfork --help` and `promfork lease
--help` list, so the page cannot fall behind the code unnoticed.
"""

import os
import re
import shutil
import subprocess

from harness import PROMFORK, SOURCE, check, log, run_test

MAN = os.path.join(SOURCE, "man", "promfork.8")


def long_options(help_text):
    return sorted(set(re.findall(r"(?<![\w-])--([a-z][a-z0-9-]*(?:\.[a-z0-9-]+)*)", help_text)))


def test():
    check(os.path.exists(MAN), "man/promfork.8 exists")
    check(shutil.which("groff") is not None, "groff is installed")
    r = subprocess.run(["groff", "-mdoc", "-Tutf8", "-ww", "-z", MAN],
                       capture_output=True, text=True, timeout=60)
    check(r.returncode == 0 and r.stderr.strip() == "",
          "groff -mdoc -ww renders it without warnings: %s" % r.stderr)

    check(shutil.which("man") is not None, "man is installed")
    env = dict(os.environ, MANWIDTH="80", MANPAGER="cat", PAGER="cat",
               LC_ALL="C.UTF-8")
    r = subprocess.run(["man", "-l", MAN], capture_output=True, text=True,
                       env=env, timeout=60)
    check(r.returncode == 0 and "SYNOPSIS" in r.stdout and
          "EXIT STATUS" in r.stdout, "man -l shows it")
    rendered = r.stdout

    source = open(MAN).read()
    missing = []
    for argv in ([PROMFORK, "--help"], [PROMFORK, "lease", "--help"]):
        out = subprocess.run(argv, capture_output=True, text=True,
                             timeout=10).stdout
        check("--" in out, "%s prints options" % " ".join(argv[1:]))
        for opt in long_options(out):
            if ("Fl \\-" + opt) not in source:
                missing.append(opt)
    if missing:
        log("options of --help missing from the man page: " +
            ", ".join(missing))
    check(not missing, "every option of --help is in the man page")
    for section in ("OPTIONS", "LEASE SUBCOMMAND", "REGISTRATION API",
                    "FILES", "SIGNALS", "ENVIRONMENT", "EXIT STATUS",
                    "EXAMPLES"):
        check(section in rendered, "the page has a %s section" % section)


run_test(test)
