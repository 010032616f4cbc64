"""The service's Prometheus metrics, with prometheus_client.

Under gunicorn (gunicorn.conf.py sets PROMETHEUS_MULTIPROC_DIR) every worker writes its values to
files there and /metrics adds up all of them, the dead workers' counters included: whichever worker
answers a scrape, the totals are the server's and never go backwards. Elsewhere (tests, one
process) the values live in a registry of the app's own.
"""
import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import multiprocess

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


def multiprocess_dir():
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or os.environ.get("prometheus_multiproc_dir")


class Metrics(object):

    def __init__(self):
        self._registry = CollectorRegistry()
        registry = self._registry
        self.requests = Counter("api_requests", "Requests by endpoint and status.", ["endpoint", "status"],
                                registry=registry)
        self.latency = Histogram("api_request_latency_seconds", "Request latency.", ["endpoint"],
                                 buckets=LATENCY_BUCKETS, registry=registry)
        self.texts = Counter("api_texts_predicted", "Texts classified.", registry=registry)
        self.request_texts = Histogram("api_request_texts", "Texts per /predict request.", buckets=BATCH_BUCKETS,
                                       registry=registry)
        self.pending = Gauge("api_pending_texts", "Texts admitted to the workers' queues (queued or running).",
                             multiprocess_mode="livesum", registry=registry)
        self.shed_requests = Counter("api_shed_requests", "Requests refused or dropped before their forward pass, "
                                     "by reason: queue_full (429), deadline (503), client_gone.", ["reason"],
                                     registry=registry)

    # --- what the app and the queue report ----------------------------------------------------

    def observe_request(self, endpoint, status, seconds):
        self.requests.labels(endpoint, str(status)).inc()
        self.latency.labels(endpoint).observe(seconds)

    def observe_batch(self, n_texts):
        self.texts.inc(n_texts)
        self.request_texts.observe(n_texts)

    def admitted(self, n_texts):
        """The queue's admitted texts changed by `n_texts` (batcher.py's events)."""
        self.pending.inc(n_texts)

    def shed(self, reason):
        self.shed_requests.labels(reason).inc()

    # --- /metrics -----------------------------------------------------------------------------

    def render(self):
        if multiprocess_dir():
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry)
        return generate_latest(self._registry)
