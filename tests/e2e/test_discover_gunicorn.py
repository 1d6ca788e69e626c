"""--discover: Django + django-prometheus (PORT_RANGE) under gunicorn."""

import discover_django
from harness import run_test

run_test(lambda: discover_django.run("gunicorn"))
