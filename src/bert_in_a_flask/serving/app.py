"""The Flask service: `create_app` (the factory) and `serve` (gunicorn's entry point).

    create_app()                        settings from the environment (settings.py)
    create_app(settings, predictor=p)   tests inject their own
    gunicorn -c gunicorn.conf.py "bert_in_a_flask.serving.app:serve()"   production (never the debug server)

Under gunicorn each worker answers at once and loads the model in a background thread:
/health_check is 200 from the start; /ready answers 503 until the model is loaded and warmed in
this worker (and again if its micro-batcher stops); a /predict that arrives while the model
loads waits for it (at most PREDICT_TIMEOUT_S, then 503), so a restarting worker fails no call.
"""
import os
import sys
import threading

from flask import Flask, g, jsonify, request
from werkzeug.exceptions import HTTPException

from ..shared.errors import ServiceUnavailable, UserError
from . import settings as settings_module
from .access import ApiKeys, Cors
from .api import api, model_name
from .call_log import CallLog
from .metrics import Metrics
from .protocols import protocols
from .reload import Reloader, export_to_serve

WARMUP_TEXT = "Why does my code keep throwing me null pointer exception?"


class ModelSlot(object):
    """The predictor this worker serves, set once it is loaded and warmed (what /ready reports)."""

    def __init__(self):
        self.predictor = None
        self._loaded = threading.Event()

    def init_app(self, app):
        app.extensions["model"] = self

    def publish(self, predictor):
        self.predictor = predictor  # one reference assignment: requests see all or nothing
        self._loaded.set()

    def wait(self, timeout):
        """The predictor; while it loads, wait for it (bounded), as a request queued for a booting worker would."""
        if not self._loaded.wait(timeout):
            raise ServiceUnavailable("the model is still loading; retry in a moment")
        return self.predictor


def create_app(settings=None, predictor=None, load_in_background=False, on_load_failure=None):
    """The app serving `predictor`, or the model in settings["MODEL_DIR"] loaded now (a UserError if
    it cannot be), or loaded in a background thread that calls `on_load_failure(exc)` if it fails."""
    settings = settings or settings_module.from_env()
    app = Flask(__name__)
    app.config.update(settings)
    slot = ModelSlot()
    slot.init_app(app)
    app.extensions["metrics"] = Metrics()
    CallLog().init_app(app)
    Cors().init_app(app)  # before the keys: a browser's preflight carries none
    ApiKeys().init_app(app)
    register_error_handlers(app)
    app.register_blueprint(api)
    app.register_blueprint(protocols)
    if predictor is not None:
        slot.publish(warmed(predictor))
    elif load_in_background:
        threading.Thread(target=load_model, args=(app, on_load_failure), name="model-loader", daemon=True).start()
    else:
        slot.publish(warmed(build_predictor(settings)))
        start_reloader(app)
    return app


def start_reloader(app):
    """Poll MODEL_DIR for newer exports (reload.py) when it is a folder of them and MODEL_POLL_S > 0."""
    settings = app.config
    if Reloader.wanted(settings):
        app.extensions["reloader"] = Reloader(
            app.extensions["model"], settings, lambda export_dir: build_predictor(settings, export_dir),
            WARMUP_TEXT).start()


def build_predictor(settings, export_dir=None):
    """The Predictor of `export_dir`, or of the export the settings name (reload.export_to_serve)."""
    from .predictor import Predictor
    return Predictor(
        export_dir or export_to_serve(settings), max_batch_size=settings["MAX_BATCH_SIZE"],
        intra_op_threads=settings["INTRA_OP_THREADS"], inter_op_threads=settings["INTER_OP_THREADS"],
        micro_batch_wait_ms=settings["MICRO_BATCH_WAIT_MS"] if settings["MICRO_BATCHING"] else None,
        predict_timeout_s=settings["PREDICT_TIMEOUT_S"], backend=settings["BACKEND"],
        quantize=settings["QUANTIZE"])


def warmed(predictor):
    predictor.predict([WARMUP_TEXT])  # the first run builds TF's kernels; pay for it before /ready
    return predictor


def load_model(app, on_failure):
    try:
        app.extensions["model"].publish(warmed(build_predictor(app.config)))
        with app.app_context():
            app.logger.info("model loaded and warmed: %s", model_name())
        start_reloader(app)
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


def register_error_handlers(app):
    """Every failure is JSON with the request id: the one place errors become HTTP answers."""

    def error_response(status, message):
        return jsonify({"error": message, "request_id": g.get("request_id", "")}), status

    @app.errorhandler(UserError)
    def user_error(exc):
        response, status = error_response(exc.http_status, exc.message)
        response.headers.extend(getattr(exc, "headers", {}))  # e.g. WWW-Authenticate on a 401
        return response, status

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
