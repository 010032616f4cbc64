"""Flask service: POST /predict on an exported model, every call logged as one JSON line.

    create_app()            the factory (settings from the environment, see settings.py)
    create_app(settings, predictor=p)   tests inject their own
    gunicorn -c gunicorn.conf.py --pythonpath src "app:serve()"    production (never the debug server)
"""
import json
import logging
import logging.handlers
import os
import sys
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from flask import Flask, Response, g, jsonify, request  # noqa: E402
from werkzeug.exceptions import HTTPException  # noqa: E402

import openapi  # noqa: E402
import settings as settings_module  # noqa: E402
from errors import UserError  # noqa: E402
from metrics import Metrics  # noqa: E402

WARMUP_TEXT = "Why does my code keep throwing me null pointer exception?"
ROUTES = {"/predict": ["POST"], "/health_check": ["GET"], "/ready": ["GET"], "/metadata": ["GET"],
          "/metrics": ["GET"], "/openapi.json": ["GET"]}


class RequestError(Exception):
    """A bad request: status and message for the JSON error body."""

    def __init__(self, status, message):
        super(RequestError, self).__init__(message)
        self.status, self.message = status, message


def create_app(settings=None, predictor=None):
    settings = settings or settings_module.from_env()
    if predictor is None:
        from predictor import Predictor
        predictor = Predictor.from_export(
            settings["MODEL_DIR"], max_batch_size=settings["MAX_BATCH_SIZE"],
            intra_op_threads=settings["INTRA_OP_THREADS"], inter_op_threads=settings["INTER_OP_THREADS"],
            micro_batch_wait_ms=settings["MICRO_BATCH_WAIT_MS"] if settings["MICRO_BATCHING"] else None)
    app = Flask(__name__)
    app.config.update(settings)
    app.extensions["predictor"] = predictor
    app.extensions["metrics"] = Metrics()
    app.extensions["call_log"] = build_call_logger(settings["LOG_FILE"])
    app.extensions["ready"] = False
    register_error_handlers(app)
    register_call_log(app)
    register_routes(app)
    predictor.predict([WARMUP_TEXT])  # the first run builds TF's kernels; pay for it before /ready
    app.extensions["ready"] = True
    return app


def serve():
    """gunicorn's entry point: a model that cannot load stops the server with one line."""
    try:
        return create_app()
    except UserError as exc:
        print("error: %s" % exc, file=sys.stderr, flush=True)
        sys.exit(3)  # gunicorn's WORKER_BOOT_ERROR: the master halts instead of respawning


# --- routes ---------------------------------------------------------------------------------

def register_routes(app):
    predictor = app.extensions["predictor"]

    @app.route("/predict", methods=["POST"])
    def predict():
        texts = parse_texts(read_json_body(app.config["MAX_CONTENT_LENGTH"]), app.config["MAX_TEXTS"])
        g.n_texts, g.characters = len(texts), sum(len(t) for t in texts)
        answer = predictor.predict(texts)
        app.extensions["metrics"].observe_batch(len(texts))
        g.predictions = answer["predictions"]
        if app.config["LOG_TEXTS"]:
            g.texts = texts
        answer["model"] = model_name(app)
        return jsonify(answer)

    @app.route("/health_check", methods=["GET"])
    def health_check():
        return jsonify({"text": "I am alive"})

    @app.route("/ready", methods=["GET"])
    def ready():
        if not app.extensions["ready"]:
            return jsonify({"ready": False}), 503
        return jsonify({"ready": True, "model": model_name(app)})

    @app.route("/metadata", methods=["GET"])
    def metadata():
        from tf_compat import TF_VERSION
        config = predictor.config
        return jsonify({
            "model": model_name(app), "export_dir": predictor.export_dir, "labels": predictor.labels,
            "max_seq_length": config["max_seq_length"], "do_lower_case": config["do_lower_case"],
            "truncate": config.get("truncate", "head"), "base_model": config.get("base_model"),
            "created": config.get("created"), "val_metrics": config.get("val_metrics", {}),
            "tf_version": TF_VERSION, "build": {"date": app.config["BUILD_DATE"], "git_sha": app.config["GIT_SHA"]},
            "micro_batching": app.config["MICRO_BATCHING"],
            "limits": {"max_texts": app.config["MAX_TEXTS"], "max_batch_size": app.config["MAX_BATCH_SIZE"],
                       "max_content_length": app.config["MAX_CONTENT_LENGTH"]},
        })

    @app.route("/metrics", methods=["GET"])
    def metrics():
        return Response(app.extensions["metrics"].render(), mimetype="text/plain; version=0.0.4")

    @app.route("/openapi.json", methods=["GET"])
    def openapi_json():
        return jsonify(openapi.spec(app.config["MAX_TEXTS"]))


def model_name(app):
    name = app.extensions["predictor"].name
    sha = app.config["GIT_SHA"]
    return "%s (build %s)" % (name, sha[:12]) if sha else name


def read_json_body(max_bytes):
    """The decoded JSON body, read with a size limit (werkzeug 2.2 checks none for JSON)."""
    if not request.is_json:
        raise RequestError(415, "send a JSON body with Content-Type: application/json")
    too_large = RequestError(413, "the body is over %d bytes" % max_bytes)
    if request.content_length is not None and request.content_length > max_bytes:
        raise too_large
    data = request.stream.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise too_large
    try:
        return json.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise RequestError(400, "the body is not valid UTF-8")
    except (ValueError, RecursionError):
        raise RequestError(400, "the body is not valid JSON (or nested too deeply)")


def parse_texts(body, max_texts):
    """The `X` list of a /predict body, or a RequestError saying what is wrong with it."""
    if not isinstance(body, dict) or "X" not in body:
        raise RequestError(400, 'the body must be a JSON object with a list of texts under "X"')
    texts = body["X"]
    if not isinstance(texts, list):
        raise RequestError(400, '"X" must be a list of strings, not %s' % type(texts).__name__)
    if not texts:
        raise RequestError(400, '"X" is empty: send at least one text')
    if len(texts) > max_texts:
        raise RequestError(413, '"X" has %d texts; at most %d per request' % (len(texts), max_texts))
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise RequestError(400, '"X"[%d] must be a string, not %s' % (i, type(text).__name__))
    return texts


# --- errors: every failure is JSON with a request id ----------------------------------------

def register_error_handlers(app):

    def error_response(status, message):
        return jsonify({"error": message, "request_id": g.get("request_id", "")}), status

    @app.errorhandler(RequestError)
    def bad_request(exc):
        return error_response(exc.status, exc.message)

    @app.errorhandler(HTTPException)
    def http_error(exc):
        response, status = error_response(exc.code, exc.description)
        for name, value in exc.get_headers():  # e.g. Allow on a 405, as RFC 9110 asks
            if name.lower() != "content-type":
                response.headers[name] = value
        return response, status

    @app.errorhandler(Exception)
    def server_fault(exc):
        app.logger.exception("unhandled error in %s %s (request_id %s)", request.method, request.path,
                             g.get("request_id", ""))
        return error_response(500, "internal server error")


# --- the call log ---------------------------------------------------------------------------

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


def register_call_log(app):

    @app.before_request
    def start_call():
        g.started = time.time()
        g.request_id = (request.headers.get("X-Request-ID") or uuid.uuid4().hex)[:128]

    @app.after_request
    def log_call(response):
        latency = time.time() - g.get("started", time.time())
        endpoint = request.path if request.path in ROUTES else "other"
        app.extensions["metrics"].observe_request(endpoint, response.status_code, latency)
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + "Z",
            "request_id": g.get("request_id", ""), "method": request.method, "path": request.path,
            "status": response.status_code, "latency_ms": round(latency * 1000.0, 2),
            "n_texts": g.get("n_texts", 0), "characters": g.get("characters", 0),
            "predictions": g.get("predictions", []), "user_ip": client_ip(),
            "user_agent": request.headers.get("User-Agent", ""), "model": model_name(app),
        }
        if "texts" in g:
            entry["texts"] = g.texts
        app.extensions["call_log"].info(json.dumps(entry, ensure_ascii=False))
        response.headers["X-Request-ID"] = g.get("request_id", "")
        return response
