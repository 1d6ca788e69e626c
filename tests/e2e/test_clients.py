"""The Ruby and Python clients against a scripted promfork socket.

What today's daemon cannot show yet (issue 14's API): a client that sends
a preferred slot asks again without it when the daemon refuses the field
(400 "unknown field"), serves its metrics on the address promfork names
in "bind", and asks for a final scrape (POST /v1/workers/N/retire) which
it takes as done on 204, ignores on 404/405 and never fails on; without
PROMFORK_SOCKET both do nothing.
"""

import json
import os
import socketserver
import subprocess
import threading

from harness import (PYTHON, TestFailure, check, free_port, run_test,
                     tmpdir)

SOURCE_CONTRIB = os.path.join(os.environ.get("PROMFORK_SOURCE", os.getcwd()),
                              "contrib")
RUBY = "/usr/bin/ruby"


class Daemon(socketserver.ThreadingUnixStreamServer):
    """Answers like promfork, as scripted: knows_slot (False: 400 on the
    field, as today), bind (the "bind" it names), retire (its status)."""

    daemon_threads = True

    def __init__(self, path, knows_slot, bind, retire):
        self.knows_slot, self.bind, self.retire = knows_slot, bind, retire
        self.seen = []
        super().__init__(path, Handler)


class Handler(socketserver.StreamRequestHandler):
    def handle(self):
        line = self.rfile.readline(1024).decode()
        method, path = line.split()[:2]
        length = 0
        while True:
            h = self.rfile.readline(1024).decode()
            if h in ("\r\n", ""):
                break
            if h.lower().startswith("content-length:"):
                length = int(h.split(":")[1])
        body = json.loads(self.rfile.read(length) or b"null")
        srv = self.server
        srv.seen.append((method, path, body))
        if method == "POST" and path == "/v1/workers":
            if "slot" in body and not srv.knows_slot:
                return self.answer(400, {"error": 'unknown field "slot": only '
                                         '"pid" and "labels" are known'})
            doc = {"worker": body.get("slot", 0), "port": srv.port,
                   "target": "127.0.0.1:%d" % srv.port}
            if srv.bind:
                doc["bind"] = srv.bind
            return self.answer(201, doc)
        if method == "POST" and path.endswith("/retire"):
            return self.answer(srv.retire, None if srv.retire == 204
                               else {"error": "no"})
        if method == "DELETE":
            return self.answer(204, None)
        return self.answer(404, {"error": "no such resource"})

    def answer(self, status, doc):
        data = json.dumps(doc).encode() if doc is not None else b""
        self.wfile.write(b"HTTP/1.1 %d X\r\nContent-Length: %d\r\n"
                         b"Connection: close\r\n\r\n%s"
                         % (status, len(data), data))


RUBY_CLIENT = r'''
require 'promfork'
lease = Promfork.start_http_server(slot: 2) { "m 1\n" }
require 'net/http'
host = lease.bind || '127.0.0.1'
body = Net::HTTP.get(URI("http://#{host}:#{lease.port}/metrics"))
# Served on the named address only: 127.0.0.1 refuses then.
elsewhere = begin
  TCPSocket.new('127.0.0.1', lease.port).close
  'open'
rescue Errno::ECONNREFUSED
  'refused'
end
puts [lease.worker, lease.bind, body.strip, elsewhere, Promfork.retire(lease)].inspect
'''

PYTHON_CLIENT = r'''
import sys, urllib.request
sys.path.insert(0, sys.argv[1])
import promfork
lease = promfork.register(slot=2)
print(repr([lease.worker, lease.bind, promfork.retire(lease)]))
'''


def run_client(lang, daemon_args):
    d = tmpdir()
    sock = os.path.join(d, "s")
    srv = Daemon(sock, *daemon_args)
    srv.port = free_port()
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        env = dict(os.environ, PROMFORK_SOCKET=sock)
        env.pop("PROMFORK_METRICS_ADDR", None)
        if lang == "ruby":
            argv = [RUBY, "-I", os.path.join(SOURCE_CONTRIB, "ruby"), "-e",
                    RUBY_CLIENT]
        else:
            argv = [PYTHON, "-c", PYTHON_CLIENT,
                    os.path.join(SOURCE_CONTRIB, "python")]
        out = subprocess.run(argv, env=env, capture_output=True, timeout=30)
        if out.returncode != 0:
            raise TestFailure("%s client failed: %s" % (lang, out.stderr))
        return out.stdout.decode().strip(), srv.seen, out.stderr.decode()
    finally:
        srv.shutdown()
        srv.server_close()


def test():
    for lang in ("ruby", "python"):
        # Today's daemon: slot refused, no bind, no retire (405).
        out, seen, err = run_client(lang, (False, None, 405))
        posts = [b for m, p, b in seen if p == "/v1/workers"]
        check(posts[0].get("slot") == 2 and "slot" not in posts[1],
              "%s: slot 2 asked, then asked again without it after the 400"
              % lang)
        want = ("[0, nil, \"m 1\", \"open\", false]" if lang == "ruby"
                else "[0, None, False]")
        check(out == want, "%s: a lease in the daemon's choice of slot; "
              "retire answered 405 is false, silently: %s" % (lang, out))
        check("retire" not in err, "%s: nothing logged about the 405" % lang)
        check(("POST", "/v1/workers/0/retire", None) in seen,
              "%s: retire is POST /v1/workers/0/retire, no body" % lang)
        # Issue 14's daemon: slot granted, bind named, retire 204.
        out, seen, err = run_client(lang, (True, "127.0.0.2", 204))
        want = ("[2, \"127.0.0.2\", \"m 1\", \"refused\", true]"
                if lang == "ruby" else "[2, '127.0.0.2', True]")
        check(out == want and len([1 for m, p, b in seen
                                   if p == "/v1/workers"]) == 1,
              "%s: slot 2 granted at once, bind 127.0.0.2 (Ruby: served "
              "there, not on 127.0.0.1), retire 204 is true: %s" % (lang, out))
        # A retire that fails otherwise: false and a warning, no exception.
        out, seen, err = run_client(lang, (True, None, 500))
        check(out.endswith("false]" if lang == "ruby" else "False]")
              and "retire" in err,
              "%s: retire answered 500 is false with a warning" % lang)


run_test(test)
