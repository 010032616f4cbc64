"""Every call as one JSON line (stdout, and LOG_FILE when set), plus its Prometheus counts: a Flask
extension (`CallLog().init_app(app)`).

Safe with several workers: LOG_FILE is one file for all of them, each line appended with a single
write (O_APPEND, so lines never interleave), and it is not rotated by the app (N processes rotating
one file lose lines): logrotate moves it, and each worker reopens it when its inode changed
(logging's WatchedFileHandler). A line survives any text: one that cannot be encoded as is (a lone
surrogate such as "\ud800" is valid JSON) is written with every non-ASCII character escaped.
`user_ip` is the peer's address, or with TRUSTED_PROXIES=N what N proxies said (app.py's ProxyFix).
"""
import json
import logging
import logging.handlers
import os
import sys
import time
import uuid

from flask import current_app, g, request

from .slot import model_name


class CallLog(object):

    def init_app(self, app):
        self.logger = build_call_logger(app.config["LOG_FILE"])
        app.extensions["call_log"] = self
        app.before_request(start_call)
        app.after_request(self.log_call)

    def log_call(self, response):
        latency = time.perf_counter() - g.get("started", time.perf_counter())
        # the route's pattern (/v1/models/<name>:predict), so metric labels stay few; "other" for no route
        endpoint = request.url_rule.rule if request.url_rule is not None else "other"
        current_app.extensions["metrics"].observe_request(endpoint, response.status_code, latency)
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + "Z",
            "request_id": g.get("request_id", ""), "method": request.method, "path": request.path,
            "status": response.status_code, "latency_ms": round(latency * 1000.0, 2),
            "n_texts": g.get("n_texts", 0), "characters": g.get("characters", 0),
            "predictions": g.get("predictions", []), "user_ip": request.remote_addr,
            "user_agent": request.headers.get("User-Agent", ""), "model": model_name(g.get("predictor")),
        }
        if "texts" in g:
            entry["texts"] = g.texts
        self.logger.info(json_line(entry))
        response.headers["X-Request-ID"] = g.get("request_id", "")
        return response


def start_call():
    g.started = time.perf_counter()  # monotonic: a wall-clock step never skews a latency
    g.request_id = (request.headers.get("X-Request-ID") or uuid.uuid4().hex)[:128]


def json_line(entry):
    """`entry` as one JSON line, readable where it can be (non-ASCII kept), escaped where it must be."""
    line = json.dumps(entry, ensure_ascii=False)
    try:
        line.encode("utf-8")
        encoding = getattr(sys.stdout, "encoding", None) or "utf-8"
        line.encode(encoding)
    except (UnicodeEncodeError, LookupError):
        line = json.dumps(entry)  # \uXXXX escapes: the same text once decoded, and ASCII on the wire
    return line


class AppendedLines(logging.handlers.WatchedFileHandler):
    """One os.write per line on an O_APPEND file, reopened after logrotate moved it."""

    def __init__(self, path):
        super(AppendedLines, self).__init__(path, encoding="utf-8")

    def emit(self, record):
        try:
            self.reopenIfNeeded()
            os.write(self.stream.fileno(), (self.format(record) + "\n").encode("utf-8"))
        except Exception:
            self.handleError(record)


def build_call_logger(log_file):
    logger = logging.getLogger("bert_api.calls." + uuid.uuid4().hex)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    handlers = [logging.StreamHandler(sys.stdout)]
    if log_file:
        handlers.append(AppendedLines(log_file))
    for handler in handlers:
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
    return logger
