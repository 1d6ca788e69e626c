"""Client for promfork's registration API (Python standard library only).

promfork exports PROMFORK_SOCKET, the path of a Unix socket that speaks
HTTP/1.1 + JSON.  Each worker process registers itself there and gets a
lease: a stable ``worker`` slot number and the TCP port on which it should
serve its own /metrics.  The lease ends by itself when the process exits.

    import promfork
    lease = promfork.start_http_server()      # register + serve /metrics
    # lease is None when the app runs without promfork

Without PROMFORK_SOCKET, register() and start_http_server() return None
(logged once, at INFO), so the same app runs unchanged without promfork.

A worker about to exit gracefully calls ``lease.retire()`` (or
``promfork.retire(lease)``): promfork scrapes it one last time, so that
what it counted since the last scrape stays in its slot's totals.  The
lease that start_http_server() made is retired by an ``atexit`` handler.
"""

import atexit
import http.client
import json
import logging
import os
import socket
import threading
import time

__all__ = [
    "Lease", "PromforkError", "SOCKET_ENV", "enabled", "register", "release",
    "retire", "leases", "start_http_server",
]

SOCKET_ENV = "PROMFORK_SOCKET"
ADDR_ENV = "PROMFORK_METRICS_ADDR"  # default listen address of start_http_server
RETIRE_TIMEOUT = 2.0  # a worker's exit is never held up longer

log = logging.getLogger("promfork")

_lock = threading.RLock()
_disabled_logged = False
_served = None  # (pid, lease) of the metrics server started in this process


class PromforkError(Exception):
    """promfork answered an error, or could not be reached.

    ``status`` is the HTTP status (None when the socket could not be used);
    ``message`` is the server's ``error`` text.
    """

    def __init__(self, message, status=None):
        super().__init__(message)
        self.message = message
        self.status = status


class Lease:
    """One registered worker: ``worker`` slot, ``port``, ``target``, ``pid``;
    ``bind``: the address promfork wants the metrics served on (None: the
    caller's choice)."""

    __slots__ = ("worker", "port", "target", "pid", "labels", "created", "socket_path",
                 "bind", "retired")

    def __init__(self, worker, port, target, pid, labels=None, created=True,
                 socket_path=None, bind=None):
        self.worker = worker
        self.port = port
        self.target = target
        self.pid = pid
        self.labels = dict(labels or {})
        self.created = created  # False when promfork returned an existing lease (200)
        self.socket_path = socket_path
        self.bind = bind
        self.retired = False

    def retire(self, timeout=None):
        """Tell promfork this worker is about to exit: see retire()."""
        return retire(self, timeout=timeout)

    def __repr__(self):
        return "Lease(worker=%r, port=%r, target=%r, pid=%r)" % (
            self.worker, self.port, self.target, self.pid)


class _UnixHTTPConnection(http.client.HTTPConnection):
    """HTTPConnection over an AF_UNIX stream socket ("@name" = abstract)."""

    def __init__(self, path, timeout):
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self):
        path = self.unix_path
        if path.startswith("@"):
            path = "\0" + path[1:]
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.timeout)
            sock.connect(path)
        except BaseException:
            sock.close()
            raise
        self.sock = sock


def _socket_path(socket_path):
    return socket_path or os.environ.get(SOCKET_ENV) or None


def enabled(socket_path=None):
    """True when a promfork socket is known (``socket_path`` or PROMFORK_SOCKET).

    Logs once per process (at INFO) when it is not; a master that calls this
    before forking keeps its workers from repeating the message.
    """
    global _disabled_logged
    if _socket_path(socket_path):
        return True
    with _lock:
        if not _disabled_logged:
            _disabled_logged = True
            log.info("%s is not set: running without promfork "
                     "(no per-worker metrics port)", SOCKET_ENV)
    return False


def _request(path, method, url, body=None, timeout=5.0):
    what = "%s %s" % (method, url)
    conn = _UnixHTTPConnection(path, timeout)
    try:
        headers = {"Accept": "application/json", "Connection": "close"}
        data = None
        if body is not None:
            data = json.dumps(body).encode("utf-8")
            headers["Content-Type"] = "application/json"
        conn.request(method, url, body=data, headers=headers)
        resp = conn.getresponse()
        raw = resp.read()
        status = resp.status
    except (OSError, http.client.HTTPException) as e:
        raise PromforkError("promfork at %s: %s: %s" % (path, what, e)) from e
    finally:
        conn.close()
    try:
        doc = json.loads(raw.decode("utf-8")) if raw.strip() else None
    except ValueError:
        doc = None
    if status >= 400:
        msg = doc.get("error") if isinstance(doc, dict) else None
        if not msg:
            msg = raw.decode("utf-8", "replace").strip() or http.client.responses.get(status, "")
        raise PromforkError("promfork: %s: %d %s" % (what, status, msg), status)
    return status, doc


def register(labels=None, pid=None, socket_path=None, timeout=5.0, slot=None):
    """Register ``pid`` (default: this process) and return its Lease.

    ``slot``: the preferred slot (the server's worker index); promfork
    grants it when it is free.  A daemon that does not know the field yet
    is asked again without it.

    Returns None when PROMFORK_SOCKET is not set; raises PromforkError when
    promfork refuses (403, 503 = port range exhausted, ...) or is unreachable.
    Registering the same pid again returns its existing lease.
    """
    path = _socket_path(socket_path)
    if not path:
        enabled()
        return None
    body = {}
    if pid is not None:
        body["pid"] = int(pid)
    if labels:
        labels = body["labels"] = {str(k): str(v) for k, v in labels.items()}
    if slot is not None:
        body["slot"] = int(slot)
    try:
        status, doc = _request(path, "POST", "/v1/workers", body, timeout)
    except PromforkError as e:
        if e.status != 400 or "slot" not in body or "slot" not in e.message:
            raise
        # A daemon from before preferred slots: it makes its usual choice.
        del body["slot"]
        status, doc = _request(path, "POST", "/v1/workers", body, timeout)
    try:
        worker, port = doc["worker"], doc["port"]
        if isinstance(worker, bool) or isinstance(port, bool):
            raise TypeError
        worker, port = int(worker), int(port)
    except (TypeError, KeyError, ValueError):
        raise PromforkError("promfork: POST /v1/workers: malformed answer %r" % (doc,), status)
    target = doc.get("target") or "localhost:%d" % port
    bind = doc.get("bind")
    lease = Lease(worker, port, target, int(doc.get("pid") or pid or os.getpid()),
                  doc.get("labels", labels), created=(status == 201), socket_path=path,
                  bind=bind if isinstance(bind, str) and bind else None)
    log.debug("registered %r", lease)
    return lease


def release(lease, socket_path=None, timeout=5.0):
    """End a lease early (promfork also ends it when the process exits).

    A metrics server started by start_http_server() keeps running.

    Returns True if released, False if it was already gone (404) or None.
    """
    global _served
    if lease is None:
        return False
    path = _socket_path(socket_path) or lease.socket_path
    if not path:
        return False
    with _lock:
        if _served is not None and _served[1] is lease:
            _served = None
    try:
        _request(path, "DELETE", "/v1/workers/%d" % lease.worker, None, timeout)
    except PromforkError as e:
        if e.status == 404:
            return False
        raise
    return True


def retire(lease, socket_path=None, timeout=None):
    """Ask promfork for a final scrape before a graceful exit.

    Call it while the metrics server still runs; waits at most
    RETIRE_TIMEOUT seconds.  Returns True when promfork took it, False
    otherwise (a daemon without retire answers 404 or 405: nothing to do).
    Never raises: it runs on the way out.
    """
    if lease is None or lease.retired:
        return False
    path = _socket_path(socket_path) or lease.socket_path
    if not path:
        return False
    lease.retired = True  # once: a hook and the atexit may both ask
    try:
        _request(path, "POST", "/v1/workers/%d/retire" % lease.worker, None,
                 min(timeout or RETIRE_TIMEOUT, RETIRE_TIMEOUT))
    except PromforkError as e:
        if e.status not in (404, 405):
            log.warning("retire of worker %d: %s", lease.worker, e)
        return False
    return True


def served():
    """The lease of this process' metrics server, or None."""
    with _lock:
        if _served is not None and _served[0] == os.getpid():
            return _served[1]
    return None


def _retire_at_exit():
    # Only the process that made the lease (served() checks the pid): a
    # child forked from it inherits this handler but not the lease.
    try:
        retire(served())
    except Exception:  # an exit hook must not raise
        pass


atexit.register(_retire_at_exit)


def leases(socket_path=None, timeout=5.0):
    """All current leases as a list of dicts (GET /v1/workers); [] without promfork."""
    path = _socket_path(socket_path)
    if not path:
        return []
    return _request(path, "GET", "/v1/workers", None, timeout)[1] or []


def start_http_server(labels=None, addr="", registry=None, socket_path=None,
                      timeout=5.0, retry=0.0, slot=None):
    """Register this process and serve prometheus_client metrics on its port.

    ``addr`` "" means the address promfork names, else
    $PROMFORK_METRICS_ADDR, else all IPv4 interfaces.  ``slot``: the
    preferred slot (see register).
    Call it in each worker after fork (never in a pre-fork master: the
    serving thread would not survive the fork).  Calling it again in the
    same process returns the same lease.  Returns None without promfork.

    ``retry`` > 0: when the port range is exhausted (503, e.g. during a
    reload while old and new workers overlap), return None and keep trying
    in a daemon thread, once a second for ``retry`` seconds.
    """
    global _served
    kwargs = dict(labels=labels, addr=addr, registry=registry,
                  socket_path=socket_path, timeout=timeout, slot=slot)
    with _lock:
        pid = os.getpid()
        if _served is not None and _served[0] == pid:
            return _served[1]
        try:
            lease = register(labels=labels, socket_path=socket_path, timeout=timeout,
                             slot=slot)
        except PromforkError as e:
            if e.status != 503 or retry <= 0:
                raise
            log.warning("%s; retrying for %gs in the background", e, retry)
            _served = (pid, None)  # a retry thread owns this process now
            t = threading.Thread(target=_retry, args=(pid, retry, kwargs),
                                 name="promfork-retry", daemon=True)
            t.start()
            return None
        if lease is None:
            return None
        _serve(lease, addr, registry, timeout)
        _served = (pid, lease)
        return lease


def _serve(lease, addr, registry, timeout):
    import prometheus_client  # lazily: only needed when promfork is there

    kwargs = {}
    if registry is not None:
        kwargs["registry"] = registry
    addr = addr or lease.bind or os.environ.get(ADDR_ENV) or "0.0.0.0"
    try:
        prometheus_client.start_http_server(lease.port, addr, **kwargs)
    except Exception:
        # Do not keep a slot whose port nobody serves.
        try:
            release(lease, socket_path=lease.socket_path, timeout=timeout)
        except PromforkError:
            pass
        raise
    log.info("worker %d (pid %d) serving metrics on %s:%d (target %s)",
             lease.worker, os.getpid(), addr, lease.port, lease.target)


def _retry(pid, retry, kwargs):
    global _served
    deadline = time.monotonic() + retry
    while time.monotonic() < deadline:
        time.sleep(1.0)
        if os.getpid() != pid:
            return  # forked: the child must register for itself
        try:
            lease = register(labels=kwargs["labels"], socket_path=kwargs["socket_path"],
                             timeout=kwargs["timeout"], slot=kwargs["slot"])
        except PromforkError as e:
            if e.status == 503:
                continue
            log.error("giving up on a metrics port: %s", e)
            break
        try:
            _serve(lease, kwargs["addr"], kwargs["registry"], kwargs["timeout"])
        except Exception as e:
            log.error("giving up on a metrics port: %s", e)
            break
        with _lock:
            _served = (pid, lease)
        return
    else:
        log.error("giving up on a metrics port: port range still exhausted after %gs", retry)
    with _lock:
        if _served is not None and _served[0] == pid and _served[1] is None:
            _served = None
