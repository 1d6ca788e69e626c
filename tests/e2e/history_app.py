"""A WSGI app for the history test (test_history.py), run by gunicorn with
contrib/gunicorn/gunicorn.conf.py: the worker that holds slot 0 keeps
GROW_MIB more memory on every request it answers (a leak), the others keep
nothing.  Each answer says "pid N grew K": K is how many requests this
process grew on, 0 when it is not in slot 0."""

import os

import promfork

GROW_MIB = 4
_kept = []


def application(environ, start_response):
    lease = promfork.served()
    if lease is not None and lease.worker == 0:
        # written, so that the pages are resident, not just reserved
        _kept.append(b"\x01" * (GROW_MIB * 1024 * 1024))
    body = ("pid %d grew %d\n" % (os.getpid(), len(_kept))).encode()
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]
