"""Helpers of the TLS end-to-end tests: a CA, server and client
certificates made with the openssl command, bcrypt hashes made with
libcrypt (the library promfork checks them with), web configuration files
and HTTPS requests with curl."""

import ctypes
import ctypes.util
import os
import subprocess

from harness import TestFailure

_libcrypt = ctypes.CDLL(ctypes.util.find_library("crypt") or "libcrypt.so.1")
_libcrypt.crypt.restype = ctypes.c_char_p
_libcrypt.crypt.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
_libcrypt.crypt_gensalt.restype = ctypes.c_char_p
_libcrypt.crypt_gensalt.argtypes = [ctypes.c_char_p, ctypes.c_ulong,
                                    ctypes.c_char_p, ctypes.c_int]


def bcrypt(password, cost=10, prefix="$2y$"):
    salt = _libcrypt.crypt_gensalt(prefix.encode(), cost, None, 0)
    out = _libcrypt.crypt(password.encode(), salt)
    if not out or not out.startswith(prefix.encode()):
        raise TestFailure("libcrypt made no bcrypt hash")
    return out.decode()


def _openssl(*args, cwd):
    subprocess.run(["/usr/bin/openssl"] + list(args), cwd=cwd, check=True,
                   timeout=60, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)


def make_pki(d, server_ips=("127.0.0.1",)):
    """In d: ca.crt/ca.key, server.crt/key (SAN: server_ips), client.crt/key
    (signed by the CA) and rogue.crt/key (signed by another CA)."""
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    for ca in ("ca", "rogueca"):
        _openssl("req", "-x509", *ec, "-keyout", ca + ".key", "-out",
                 ca + ".crt", "-days", "2", "-subj", "/CN=" + ca, cwd=d)
    with open(os.path.join(d, "server.ext"), "w") as f:
        f.write("subjectAltName=" + ",".join("IP:" + ip for ip in server_ips)
                + ",DNS:localhost\n")
    with open(os.path.join(d, "client.ext"), "w") as f:
        f.write("extendedKeyUsage=clientAuth\n"
                "subjectAltName=DNS:prometheus.example,IP:192.0.2.7\n")
    for name, ca, ext in (("server", "ca", "server.ext"),
                          ("client", "ca", "client.ext"),
                          ("rogue", "rogueca", "client.ext")):
        _openssl("req", *ec, "-keyout", name + ".key", "-out", name + ".csr",
                 "-subj", "/CN=" + name, cwd=d)
        _openssl("x509", "-req", "-in", name + ".csr", "-CA", ca + ".crt",
                 "-CAkey", ca + ".key", "-CAcreateserial", "-out",
                 name + ".crt", "-days", "2", "-extfile", ext, cwd=d)


def write_config(path, users, client_certs=False, extra="", sans=None):
    """A web configuration with TLS (server.crt next to it), the users
    {name: hash} and, with client_certs, RequireAndVerifyClientCert
    (and sans: client_allowed_sans).
    Written to a temporary file and renamed, as an editor would."""
    text = ("tls_server_config:\n"
            "  cert_file: server.crt\n"
            "  key_file: server.key\n")
    if client_certs:
        text += ("  client_auth_type: RequireAndVerifyClientCert\n"
                 "  client_ca_file: ca.crt\n")
    if sans is not None:
        text += "  client_allowed_sans: [%s]\n" % ", ".join(sans)
    text += "basic_auth_users:\n"
    for u, h in users.items():
        text += "  %s: '%s'\n" % (u, h)
    text += extra
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.rename(tmp, path)


def curl(url, d, user=None, cert=None, insecure=False, prefix=(),
         timeout=10):
    """curl over HTTPS trusting d/ca.crt; returns (exit code, HTTP status,
    headers+body text)."""
    argv = list(prefix) + ["/usr/bin/curl", "-sS", "-i", "--max-time", "5",
                           "-o", "-", "-w", "\n%{http_code}"]
    argv += ["-k"] if insecure else ["--cacert", os.path.join(d, "ca.crt")]
    if user:
        argv += ["-u", user]
    if cert:
        argv += ["--cert", os.path.join(d, cert + ".crt"),
                 "--key", os.path.join(d, cert + ".key")]
    argv.append(url)
    r = subprocess.run(argv, capture_output=True, timeout=timeout)
    out = r.stdout.decode(errors="replace")
    body, _, code = out.rpartition("\n")
    return r.returncode, int(code) if code.isdigit() else 0, body


def scrape_auth(d, user, password, cert=None):
    """basic_auth and tls_config of a Prometheus scrape or sd config."""
    tls = {"ca_file": os.path.join(d, "ca.crt")}
    if cert:
        tls["cert_file"] = os.path.join(d, cert + ".crt")
        tls["key_file"] = os.path.join(d, cert + ".key")
    return {"scheme": "https",
            "basic_auth": {"username": user, "password": password},
            "tls_config": tls}
