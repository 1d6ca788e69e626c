"""Settings of the promfork django-prometheus demo: the smallest Django
project whose workers each serve /metrics on a port of their own.

django-prometheus starts an exporter in every process that loads the app,
on the first port of PROMETHEUS_METRICS_EXPORT_PORT_RANGE that it can bind;
promfork --discover publishes exactly the ports those workers listen on.

Environment:
  PROMFORK_PORT_RANGE  LOW-HIGH; promfork sets it to its --port-range, so
                       the range is written once, on promfork's command line
  PROMETHEUS_METRICS_EXPORT_ADDRESS  address the exporters bind (default:
                       all IPv4 addresses, so Prometheus can reach them)
  DJANGO_SECRET_KEY, DJANGO_ALLOWED_HOSTS (comma-separated)
"""

import os


def _port_range(spec):
    low, _, high = spec.partition("-")
    low, high = int(low), int(high or low)
    if not 0 < low <= high < 65536:
        raise ValueError("PROMFORK_PORT_RANGE %r is not LOW-HIGH" % spec)
    return range(low, high + 1)


SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "promfork-demo-not-a-secret")
DEBUG = False
ALLOWED_HOSTS = os.environ.get("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost").split(",")

INSTALLED_APPS = [
    "django_prometheus",
]

MIDDLEWARE = [
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]

ROOT_URLCONF = "promfork_demo.urls"
WSGI_APPLICATION = "promfork_demo.wsgi.application"
DATABASES = {}
USE_TZ = True
TIME_ZONE = "UTC"

# One exporter per worker, each on its own port of the range.  Without
# promfork the range defaults to django-prometheus' documented example.
PROMETHEUS_METRICS_EXPORT_PORT_RANGE = _port_range(
    os.environ.get("PROMFORK_PORT_RANGE", "8001-8050"))
PROMETHEUS_METRICS_EXPORT_ADDRESS = os.environ.get(
    "PROMETHEUS_METRICS_EXPORT_ADDRESS", "")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"stderr": {"class": "logging.StreamHandler"}},
    "loggers": {"django_prometheus": {"handlers": ["stderr"], "level": "INFO"}},
}
