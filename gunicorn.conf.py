"""gunicorn settings for the API. Each knob reads an environment variable of the same meaning."""
import os

bind = "%s:%s" % (os.environ.get("HOST", "0.0.0.0"), os.environ.get("PORT", "5000"))
# One worker per core is plenty: TF already spreads one forward pass over the cores, and
# every worker holds its own copy of the model. Threads overlap request parsing and I/O.
workers = int(os.environ.get("WORKERS", "1"))
threads = int(os.environ.get("THREADS", "8"))
worker_class = "gthread"
# TensorFlow is not fork-safe: each worker loads the model itself, after the fork.
preload_app = False
timeout = int(os.environ.get("TIMEOUT", "120"))  # a worker silent this long is restarted (the model loads in a thread)
graceful_timeout = 30
max_requests = int(os.environ.get("MAX_REQUESTS", "20000"))
max_requests_jitter = int(os.environ.get("MAX_REQUESTS_JITTER", "2000"))
# The app logs every call as one JSON line; gunicorn's own access line would be a second one per
# call, so it is off unless ACCESS_LOG names a file (or "-" for stdout).
accesslog = os.environ.get("ACCESS_LOG") or None
errorlog = "-"
loglevel = os.environ.get("GUNICORN_LOG_LEVEL", "info")
