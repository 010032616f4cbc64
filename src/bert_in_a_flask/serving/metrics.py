"""A tiny Prometheus registry (per worker process): counters and histograms, text format 0.0.4."""
import threading
from collections import defaultdict

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


def _labels(pairs):
    return "{%s}" % ",".join('%s="%s"' % (k, str(v).replace('"', '\\"')) for k, v in pairs) if pairs else ""


class Metrics(object):

    def __init__(self):
        self._lock = threading.Lock()
        self._requests = defaultdict(int)         # (endpoint, status) -> count
        self._latency = defaultdict(lambda: [0] * (len(LATENCY_BUCKETS) + 1))
        self._latency_sum = defaultdict(float)
        self._texts = 0
        self._batches = [0] * (len(BATCH_BUCKETS) + 1)
        self._batch_sum = 0

    def observe_request(self, endpoint, status, seconds):
        with self._lock:
            self._requests[(endpoint, status)] += 1
            self._latency[endpoint][_bucket(LATENCY_BUCKETS, seconds)] += 1
            self._latency_sum[endpoint] += seconds

    def observe_batch(self, n_texts):
        with self._lock:
            self._texts += n_texts
            self._batches[_bucket(BATCH_BUCKETS, n_texts)] += 1
            self._batch_sum += n_texts

    def render(self):
        with self._lock:
            lines = ["# HELP api_requests_total Requests by endpoint and status.",
                     "# TYPE api_requests_total counter"]
            for (endpoint, status), count in sorted(self._requests.items()):
                lines.append("api_requests_total%s %d" % (_labels([("endpoint", endpoint), ("status", status)]), count))
            lines += ["# HELP api_request_latency_seconds Request latency.",
                      "# TYPE api_request_latency_seconds histogram"]
            for endpoint in sorted(self._latency):
                lines += _histogram("api_request_latency_seconds", LATENCY_BUCKETS, self._latency[endpoint],
                                    self._latency_sum[endpoint], [("endpoint", endpoint)])
            lines += ["# HELP api_texts_predicted_total Texts classified.",
                      "# TYPE api_texts_predicted_total counter",
                      "api_texts_predicted_total %d" % self._texts,
                      "# HELP api_request_texts Texts per /predict request.",
                      "# TYPE api_request_texts histogram"]
            lines += _histogram("api_request_texts", BATCH_BUCKETS, self._batches, self._batch_sum, [])
        return "\n".join(lines) + "\n"


def _bucket(bounds, value):
    for i, bound in enumerate(bounds):
        if value <= bound:
            return i
    return len(bounds)


def _histogram(name, bounds, counts, total, labels):
    lines, cumulative = [], 0
    for bound, count in zip(list(bounds) + ["+Inf"], counts):
        cumulative += count
        lines.append("%s_bucket%s %d" % (name, _labels(labels + [("le", bound)]), cumulative))
    lines.append("%s_sum%s %s" % (name, _labels(labels), repr(float(total))))
    lines.append("%s_count%s %d" % (name, _labels(labels), cumulative))
    return lines
