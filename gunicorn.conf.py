"""gunicorn settings for the API, read from the service's settings (bert_in_a_flask/serving/settings.py):
one default each, a wrong value stops the start with one `error:` line naming it.

The master keeps a state folder for its workers: prometheus_client's multiprocess files (so /metrics
adds up every worker's counters, the dead ones' included, and never goes backwards) and the mark
of a first successful boot (after it, no worker exits because of its model: app.serve).
"""
import os
import shutil
import sys
import tempfile

from bert_in_a_flask.serving.settings import STATE_DIR_ENV, from_env
from bert_in_a_flask.shared.errors import UserError

try:
    _settings = from_env()
except UserError as exc:
    print("error: %s" % exc, file=sys.stderr, flush=True)
    sys.exit(2)

bind = "%s:%s" % (_settings["HOST"], _settings["PORT"])
workers = _settings["WORKERS"]
threads = _settings["THREADS"]
worker_class = "gthread"
# TensorFlow and onnxruntime are not fork-safe: each worker loads the model itself, after the fork.
preload_app = False
timeout = _settings["TIMEOUT"]
graceful_timeout = 30
max_requests = _settings["MAX_REQUESTS"]
max_requests_jitter = _settings["MAX_REQUESTS_JITTER"]
# The app logs every call as one JSON line; gunicorn's own access line would be a second one per
# call, so it is off unless ACCESS_LOG names a file (or "-" for stdout).
accesslog = _settings["ACCESS_LOG"] or None
errorlog = "-"
loglevel = _settings["GUNICORN_LOG_LEVEL"]


def on_starting(server):
    """A fresh state folder per server: an operator's PROMETHEUS_MULTIPROC_DIR is emptied of old files."""
    state_dir = tempfile.mkdtemp(prefix="bert-api-")
    os.environ[STATE_DIR_ENV] = state_dir
    metrics_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or os.path.join(state_dir, "metrics")
    os.makedirs(metrics_dir, exist_ok=True)
    for name in os.listdir(metrics_dir):
        if name.endswith(".db"):
            os.remove(os.path.join(metrics_dir, name))
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    # Imported here, once the folder is named (prometheus_client picks its mode at import, and the
    # workers inherit the module), and never in child_exit: that runs in a SIGCHLD handler, which can
    # interrupt an import half-way.
    global multiprocess
    from prometheus_client import multiprocess


multiprocess = None


def child_exit(server, worker):
    if multiprocess is not None:
        multiprocess.mark_process_dead(worker.pid)  # its live gauges (the queue depth) leave the sums


def on_exit(server):
    shutil.rmtree(os.environ.get(STATE_DIR_ENV, ""), ignore_errors=True)
