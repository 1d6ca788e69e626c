"""contrib/kubernetes, checked offline (no cluster).

`kubectl kustomize` (kubectl's own client, no API server) must build the
manifests, and must refuse a broken copy.  Then the parts that matter,
read with PyYAML: promfork is the container's entrypoint wrapping
gunicorn; the fan-out port is the pod's one metrics port, named the same
in the pod annotations and the PodMonitor (a CRD: checked here field by
field); the probes ask /-/healthy and /-/ready on it with a user that the
web config (mounted from a Secret at the path --web.config.file names)
knows, its bcrypt hash checked with crypt(3); Prometheus' password in the
Secret matches its hash too.  Last, the container's command line itself
runs here, with the real gunicorn: /-/ready turns 200 and the fan-out
answers for every worker.  Skipped (77) without kubectl.
"""

import os
import re
import shutil
import subprocess
import sys
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import PROMFORK, SOURCE, check, http_get, log, wait_until  # noqa: E402

import yaml  # noqa: E402

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import crypt  # noqa: E402

K8S = os.path.join(SOURCE, "contrib", "kubernetes")


def kustomize(path):
    env = dict(os.environ, KUBECONFIG=os.devnull)
    return subprocess.run(["kubectl", "kustomize", path], capture_output=True,
                          text=True, timeout=60, env=env)


def by_kind(docs, kind):
    found = [d for d in docs if d.get("kind") == kind]
    check(len(found) >= 1, "the manifests hold a %s" % kind)
    return found


def hash_ok(hashed, password):
    return crypt.crypt(password, hashed) == hashed


def test():
    if shutil.which("kubectl") is None:
        log("kubectl is not installed: skipped")
        sys.exit(77)
    r = kustomize(K8S)
    check(r.returncode == 0, "kubectl kustomize builds contrib/kubernetes "
          "offline (%s)" % r.stderr.strip())
    docs = [d for d in yaml.safe_load_all(r.stdout) if d]

    # the same check must notice a broken manifest
    broken = harness.tmpdir()
    for f in os.listdir(K8S):
        shutil.copy(os.path.join(K8S, f), broken)
    with open(os.path.join(broken, "podmonitor.yaml"), "a") as f:
        f.write("  podMetricsEndpoints: [\n")
    check(kustomize(broken).returncode != 0,
          "kubectl kustomize refuses a manifest that is not YAML")

    dep = by_kind(docs, "Deployment")[0]
    check(dep["apiVersion"] == "apps/v1", "the Deployment is apps/v1")
    tpl = dep["spec"]["template"]
    labels = tpl["metadata"]["labels"]
    sel = dep["spec"]["selector"]["matchLabels"]
    check(sel.items() <= labels.items(),
          "the Deployment's selector matches its pods' labels")
    (ctr,) = tpl["spec"]["containers"]
    check(os.path.basename(ctr["command"][0]) == "promfork",
          "promfork is the container's entrypoint")
    args = ctr["args"]
    check("--" in args and args[args.index("--") + 1] == "gunicorn",
          "promfork wraps gunicorn")
    opts = args[:args.index("--")]
    help_text = subprocess.run([PROMFORK, "--help"], capture_output=True,
                               text=True, timeout=10).stdout
    for o in opts:
        name = o.split("=", 1)[0]
        if name == "--web.config.file" and name not in help_text:
            log("%s: not in this build's --help (the TLS work adds it)"
                % name)
            continue
        check(re.search(r"(?<![\w-])%s\b" % re.escape(name), help_text),
              "%s is an option of promfork" % name)
    listen = [o.split("=", 1)[1] for o in opts if o.startswith("--listen=")]
    check(len(listen) == 1, "one --listen: %s" % listen)
    port = int(listen[0].rsplit(":", 1)[1])

    ports = ctr["ports"]
    metrics = [p for p in ports if p["containerPort"] == port]
    check(len(metrics) == 1 and metrics[0]["name"] == "metrics",
          "the listener's port %d is the container port named metrics" % port)
    ann = tpl["metadata"]["annotations"]
    check(ann.get("prometheus.io/scrape") == "true" and
          ann.get("prometheus.io/port") == str(port) and
          ann.get("prometheus.io/path") == "/workers/metrics" and
          ann.get("prometheus.io/scheme") == "https",
          "the pod annotations point at the fan-out, over HTTPS: %s" % ann)

    webcfg = [o.split("=", 1)[1] for o in opts
              if o.startswith("--web.config.file=")]
    check(len(webcfg) == 1, "the web config is given")
    mounts = {m["name"]: m for m in ctr["volumeMounts"]}
    vols = {v["name"]: v for v in tpl["spec"]["volumes"]}
    mount = [m for m in mounts.values() if m["mountPath"] == webcfg[0]]
    check(len(mount) == 1 and mount[0].get("readOnly"),
          "the web config is mounted read-only at %s" % webcfg[0])
    secret_name = vols[mount[0]["name"]]["secret"]["secretName"]
    secrets = {s["metadata"]["name"]: s for s in by_kind(docs, "Secret")}
    check(secret_name in secrets, "it comes from the Secret %s" % secret_name)
    web = yaml.safe_load(
        secrets[secret_name]["stringData"][mount[0]["subPath"]])
    tls = web["tls_server_config"]
    tls_mounts = [m["mountPath"] for m in mounts.values()]
    check(all(any(tls[k].startswith(p + "/") for p in tls_mounts)
              for k in ("cert_file", "key_file")),
          "the web config's certificate and key lie in a mounted volume")
    users = web["basic_auth_users"]
    check(all(re.match(r"^\$2[aby]\$\d\d\$", h) for h in users.values()),
          "the web config's users have bcrypt hashes")

    for probe, path in (("livenessProbe", "/-/healthy"),
                        ("readinessProbe", "/-/ready")):
        g = ctr[probe]["httpGet"]
        check(g["path"] == path and g["port"] == "metrics" and
              g["scheme"] == "HTTPS",
              "the %s asks %s on the metrics port over HTTPS" % (probe, path))
        check(not g.get("httpHeaders"),
              "the %s carries no password: promfork's health checks need "
              "none" % probe)

    pm = by_kind(docs, "PodMonitor")[0]
    check(pm["apiVersion"] == "monitoring.coreos.com/v1",
          "the PodMonitor is monitoring.coreos.com/v1")
    check(pm["spec"]["selector"]["matchLabels"].items() <= labels.items(),
          "the PodMonitor selects the Deployment's pods")
    (ep,) = pm["spec"]["podMetricsEndpoints"]
    known = {"port", "path", "scheme", "interval", "scrapeTimeout",
             "basicAuth", "tlsConfig", "relabelings", "honorLabels"}
    check(set(ep) <= known, "the endpoint has only known fields: %s"
          % sorted(set(ep) - known))
    check(ep["port"] == "metrics" and ep["path"] == "/workers/metrics" and
          ep["scheme"] == "https",
          "the PodMonitor scrapes the fan-out at the metrics port over HTTPS")
    ba = ep["basicAuth"]
    auth = secrets[ba["username"]["name"]]["stringData"]
    user = auth[ba["username"]["key"]]
    pw = secrets[ba["password"]["name"]]["stringData"][ba["password"]["key"]]
    check(user in users and hash_ok(users[user], pw),
          "Prometheus' password in the Secret matches the hash of %s" % user)
    check("ca" in ep["tlsConfig"] and "secret" in ep["tlsConfig"]["ca"],
          "the PodMonitor checks the certificate against a CA")

    with open(os.path.join(K8S, "prometheus-scrape-config.yml")) as f:
        job = yaml.safe_load(f)["scrape_configs"][0]
    keep = [r for r in job["relabel_configs"] if r.get("action") == "keep"]
    check(job["kubernetes_sd_configs"][0]["role"] == "pod" and keep and
          keep[0]["source_labels"] ==
          ["__meta_kubernetes_pod_annotation_prometheus_io_scrape"] and
          job["basic_auth"]["username"] == "prometheus",
          "the annotations job keeps annotated pods, with Prometheus' user")

    run_the_container(opts, args[args.index("--") + 1:], port)


def run_the_container(opts, command, port):
    """The container's command line, here: the real gunicorn, loopback."""
    local = harness.free_port()
    app = harness.free_port()
    pf_opts = []
    for o in opts:
        if o.startswith("--web.config.file="):
            continue  # TLS is the concern of its own tests
        if o.startswith("--listen="):
            o = "--listen=127.0.0.1:%d" % local
        if o.startswith("--port-range="):
            low = harness.free_port_range(8)
            o = "--port-range=%d-%d" % (low, low + 7)
        pf_opts.append(o)
    gunicorn = ["/usr/bin/gunicorn",
                "--config=" + os.path.join(SOURCE, "contrib", "gunicorn",
                                           "gunicorn.conf.py"),
                "--bind=127.0.0.1:%d" % app, "--workers=4",
                "--chdir=" + os.path.join(SOURCE, "contrib", "examples"),
                "app:application"]
    check(command[0] == "gunicorn" and
          any(a.startswith("--workers=") for a in command),
          "the container runs gunicorn with --workers")
    d = harness.tmpdir()
    p = harness.start([PROMFORK] + pf_opts +
                      ["--socket", os.path.join(d, "s"), "--"] + gunicorn,
                      stderr=subprocess.DEVNULL)
    base = "http://127.0.0.1:%d" % local
    wait_until(lambda: http_get(base + "/-/ready")[0] == 200, timeout=30,
               what="/-/ready")
    check(True, "the container's command line runs: /-/ready is 200 once "
          "gunicorn's workers registered")
    status, _, body = wait_until(
        lambda: (lambda r: r if r[2].count(b"promfork_worker_up{") == 4 and
                 b"} 0\n" not in r[2].split(b"promfork_worker_up{", 1)[1]
                 .split(b"# HELP", 1)[0] else None)(
            http_get(base + "/workers/metrics")),
        timeout=30, what="all 4 workers up in the fan-out")
    check(status == 200, "the fan-out answers for all 4 gunicorn workers")
    harness.stop(p)


harness.run_test(test)
