"""Celery settings for test_celery.py's PROMFORK_E2E_CELERY_BROKER=filesystem
(kombu's filesystem transport in $CELERY_FS_DIR, results in files)."""

import os

_d = os.environ["CELERY_FS_DIR"]
broker_url = "filesystem://"
broker_transport_options = {
    "data_folder_in": os.path.join(_d, "in"),
    "data_folder_out": os.path.join(_d, "in"),
    "data_folder_processed": os.path.join(_d, "processed"),
}
result_backend = "file://" + os.path.join(_d, "results")
