"""WSGI entry point: each worker that imports it loads Django, and with it
django-prometheus starts that worker's exporter (so: no --preload with
gunicorn, lazy-apps with uWSGI)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "promfork_demo.settings")

application = get_wsgi_application()
