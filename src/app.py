"""Flask service: POST /predict on an exported model, every call logged as one JSON line.

    create_app()            the factory (settings from the environment, see settings.py)
    create_app(settings, predictor=p)   tests inject their own
    gunicorn -c gunicorn.conf.py --pythonpath src "app:serve()"    production (never the debug server)

Under gunicorn each worker answers at once and loads the model in a background thread:
/health_check is 200 from the start; /ready answers 503 until the model is loaded and warmed in
this worker (and again if its micro-batcher stops); a /predict that arrives while the model
loads waits for it (at most PREDICT_TIMEOUT_S, then 503), so a restarting worker fails no call.
"""
import json
import logging
import logging.handlers
import os
import sys
import threading
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from flask import Flask, Response, g, jsonify, request  # noqa: E402
from werkzeug.exceptions import HTTPException  # noqa: E402

import openapi  # noqa: E402
import settings as settings_module  # noqa: E402
from errors import ServiceUnavailable, UserError  # noqa: E402
from metrics import Metrics  # noqa: E402

WARMUP_TEXT = "Why does my code keep throwing me null pointer exception?"
ROUTES = {"/predict": ["POST"], "/health_check": ["GET"], "/ready": ["GET"], "/metadata": ["GET"],
          "/metrics": ["GET"], "/openapi.json": ["GET"]}


def create_app(settings=None, predictor=None, load_in_background=False, on_load_failure=None):
    """The app serving `predictor`, or the model in settings["MODEL_DIR"] loaded now (a UserError if
    it cannot be), or loaded in a background thread that calls `on_load_failure(exc)` if it fails."""
    settings = settings or settings_module.from_env()
    app = Flask(__name__)
    app.config.update(settings)
    app.extensions["predictor"] = None  # set once loaded and warmed: what /ready reports
    app.extensions["loaded"] = threading.Event()
    app.extensions["metrics"] = Metrics()
    app.extensions["call_log"] = build_call_logger(settings["LOG_FILE"])
    register_error_handlers(app)
    register_call_log(app)
    register_routes(app)
    if predictor is not None:
        publish(app, warmed(predictor))
    elif load_in_background:
        threading.Thread(target=load_model, args=(app, on_load_failure), name="model-loader", daemon=True).start()
    else:
        publish(app, warmed(build_predictor(settings)))
    return app


def build_predictor(settings):
    from predictor import Predictor
    return Predictor(
        settings["MODEL_DIR"], max_batch_size=settings["MAX_BATCH_SIZE"],
        intra_op_threads=settings["INTRA_OP_THREADS"], inter_op_threads=settings["INTER_OP_THREADS"],
        micro_batch_wait_ms=settings["MICRO_BATCH_WAIT_MS"] if settings["MICRO_BATCHING"] else None,
        predict_timeout_s=settings["PREDICT_TIMEOUT_S"])


def warmed(predictor):
    predictor.predict([WARMUP_TEXT])  # the first run builds TF's kernels; pay for it before /ready
    return predictor


def publish(app, predictor):
    app.extensions["predictor"] = predictor  # one reference assignment: requests see all or nothing
    app.extensions["loaded"].set()


def load_model(app, on_failure):
    try:
        publish(app, warmed(build_predictor(app.config)))
        app.logger.info("model loaded and warmed: %s", model_name(app))
    except Exception as exc:  # any failure to load is reported to on_failure, never swallowed
        if not isinstance(exc, UserError):
            app.logger.exception("cannot load the model")
        if on_failure is not None:
            on_failure(exc)


def serve():
    """gunicorn's entry point: a model that cannot load stops the server with one line."""

    def give_up(exc):
        print("error: %s" % exc, file=sys.stderr, flush=True)
        os._exit(3)  # gunicorn's WORKER_BOOT_ERROR: the master halts instead of respawning

    try:
        return create_app(load_in_background=True, on_load_failure=give_up)
    except UserError as exc:  # bad settings
        give_up(exc)


# --- routes ---------------------------------------------------------------------------------

def loaded_predictor(app):
    """The predictor; while it loads, wait for it (bounded), as a request queued for a booting worker would."""
    if not app.extensions["loaded"].wait(app.config["PREDICT_TIMEOUT_S"]):
        raise ServiceUnavailable("the model is still loading; retry in a moment")
    return app.extensions["predictor"]


def register_routes(app):

    @app.route("/predict", methods=["POST"])
    def predict():
        texts = parse_texts(read_json_body(app.config["MAX_CONTENT_LENGTH"]), app.config["MAX_TEXTS"])
        g.n_texts, g.characters = len(texts), sum(len(t) for t in texts)
        answer = loaded_predictor(app).predict(texts)
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
        predictor = app.extensions["predictor"]
        if predictor is None:
            return jsonify({"ready": False, "reason": "loading the model"}), 503
        if not getattr(predictor, "healthy", True):
            return jsonify({"ready": False, "reason": "the micro-batcher stopped"}), 503
        return jsonify({"ready": True, "model": model_name(app)})

    @app.route("/metadata", methods=["GET"])
    def metadata():
        from tf_compat import TF_VERSION
        predictor = loaded_predictor(app)
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
    predictor = app.extensions["predictor"]
    if predictor is None:
        return ""
    name = predictor.name
    sha = app.config["GIT_SHA"]
    return "%s (build %s)" % (name, sha[:12]) if sha else name


def read_json_body(max_bytes):
    """The decoded JSON body, read with a size limit (werkzeug 2.2 checks none for JSON)."""
    if not request.is_json:
        raise UserError("send a JSON body with Content-Type: application/json", 415)
    too_large = UserError("the body is over %d bytes" % max_bytes, 413)
    if request.content_length is not None and request.content_length > max_bytes:
        raise too_large
    data = request.stream.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise too_large
    try:
        return json.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise UserError("the body is not valid UTF-8")
    except (ValueError, RecursionError):
        raise UserError("the body is not valid JSON (or nested too deeply)")


def parse_texts(body, max_texts):
    """The `X` list of a /predict body, or a UserError saying what is wrong with it."""
    if not isinstance(body, dict) or "X" not in body:
        raise UserError('the body must be a JSON object with a list of texts under "X"')
    texts = body["X"]
    if not isinstance(texts, list):
        raise UserError('"X" must be a list of strings, not %s' % type(texts).__name__)
    if not texts:
        raise UserError('"X" is empty: send at least one text')
    if len(texts) > max_texts:
        raise UserError('"X" has %d texts; at most %d per request' % (len(texts), max_texts), 413)
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise UserError('"X"[%d] must be a string, not %s' % (i, type(text).__name__))
    return texts


# --- errors: every failure is JSON with a request id ----------------------------------------

def register_error_handlers(app):

    def error_response(status, message):
        return jsonify({"error": message, "request_id": g.get("request_id", "")}), status

    @app.errorhandler(UserError)
    def user_error(exc):
        return error_response(exc.http_status, exc.message)

    @app.errorhandler(ServiceUnavailable)
    def unavailable(exc):
        response, status = error_response(503, str(exc))
        response.headers["Retry-After"] = "1"
        return response, status

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
        g.started = time.perf_counter()  # monotonic: a wall-clock step never skews a latency
        g.request_id = (request.headers.get("X-Request-ID") or uuid.uuid4().hex)[:128]

    @app.after_request
    def log_call(response):
        latency = time.perf_counter() - g.get("started", time.perf_counter())
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
