"""Every call as one JSON line (stdout, and a rotating LOG_FILE when set), plus its Prometheus
counts: a Flask extension (`CallLog().init_app(app)`)."""
import json
import logging
import logging.handlers
import sys
import time
import uuid

from flask import current_app, g, request

from .api import model_name


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
            "predictions": g.get("predictions", []), "user_ip": client_ip(),
            "user_agent": request.headers.get("User-Agent", ""), "model": model_name(g.get("predictor")),
        }
        if "texts" in g:
            entry["texts"] = g.texts
        self.logger.info(json.dumps(entry, ensure_ascii=False))
        response.headers["X-Request-ID"] = g.get("request_id", "")
        return response


def start_call():
    g.started = time.perf_counter()  # monotonic: a wall-clock step never skews a latency
    g.request_id = (request.headers.get("X-Request-ID") or uuid.uuid4().hex)[:128]


def build_call_logger(log_file):
    logger = logging.getLogger("bert_api.calls." + uuid.uuid4().hex)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    handlers = [logging.StreamHandler(sys.stdout)]
    if log_file:
        handlers.append(logging.handlers.RotatingFileHandler(log_file, maxBytes=10 * 2 ** 20, backupCount=5))
    for handler in handlers:
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
    return logger


def client_ip():
    forwarded = request.headers.get("X-Forwarded-For", "")
    return forwarded.split(",")[0].strip() if forwarded else request.remote_addr
