"""The Flask service: `create_app` (the factory) and `serve` (gunicorn's entry point).

    create_app()                        settings from the environment (settings.py)
    create_app(settings, predictor=p)   tests inject their own
    gunicorn -c gunicorn.conf.py "bert_in_a_flask.serving.app:serve()"   production (never the debug server)

Under gunicorn each worker answers at once and loads the model in a background thread:
/health_check is 200 from the start; /ready answers 503 until the model is loaded and warmed in
this worker (and again if its micro-batcher stops); a /predict that arrives while the model
loads waits for it (at most PREDICT_TIMEOUT_S, then 503), so a restarting worker fails no call.
"""
import logging
import os
import sys
import threading
import time

from flask import Flask, g, jsonify, request
from werkzeug.exceptions import HTTPException
from werkzeug.middleware.proxy_fix import ProxyFix

from ..shared.errors import ClientGone, ServiceUnavailable, UserError
from . import docs_page, settings as settings_module
from .settings import STATE_DIR_ENV
from .access import ApiKeys, Cors
from .api import api
from .slot import ModelSlot, model_name
from .call_log import CallLog
from .metrics import Metrics
from .protocols import protocols
from .reload import ExportChooser, Reloader, candidate_exports, export_key, first_line

WARMUP_TEXT = "Why does my code keep throwing me null pointer exception?"
# gunicorn.conf.py names a folder per server (master and workers); a worker that loaded a model
# leaves SERVED_MARK in it, so the workers started after it know the server has served before.
SERVED_MARK = "served"
CLIENT_GONE_STATUS = 499  # nginx's "client closed request": its pass was never computed
log = logging.getLogger(__name__)


def create_app(settings=None, predictor=None, load_in_background=False, on_load_failure=None, strict=True):
    """The app serving `predictor`, or the model in settings["MODEL_DIR"] loaded now (a UserError if
    it cannot be), or loaded in a background thread. `strict`: the newest export must load, else
    `on_load_failure(exc)` is called; not strict: the newest export that loads is served, and while
    none does the worker answers 503 and tries again (reload.py's rule)."""
    settings = settings or settings_module.from_env()
    app = Flask(__name__)
    app.config.update(settings)
    if settings["TRUSTED_PROXIES"]:  # only then is X-Forwarded-For the client's address
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=settings["TRUSTED_PROXIES"])
    ModelSlot().init_app(app)
    app.extensions["metrics"] = Metrics()
    app.extensions["chooser"] = ExportChooser(lambda export_dir: build_predictor(app, export_dir), WARMUP_TEXT)
    CallLog().init_app(app)
    Cors().init_app(app)  # before the keys: a browser's preflight carries none
    ApiKeys().init_app(app)
    register_error_handlers(app)
    app.register_blueprint(api)
    app.register_blueprint(protocols)
    docs_page.init_app(app)
    if predictor is not None:
        app.extensions["model"].publish(warmed(predictor))
    elif load_in_background:
        threading.Thread(target=load_model, args=(app, strict, on_load_failure), name="model-loader",
                         daemon=True).start()
    else:
        export_dir = candidate_exports(settings)[0]
        app.extensions["model"].publish(app.extensions["chooser"].load(export_dir))
        start_reloader(app, export_key(export_dir))
    return app


def start_reloader(app, served_key):
    """Poll MODEL_DIR for newer exports (reload.py) when it is a folder of them and MODEL_POLL_S > 0."""
    if Reloader.wanted(app.config):
        app.extensions["reloader"] = Reloader(
            app.extensions["model"], app.config, app.extensions["chooser"], served_key).start()


def build_predictor(app, export_dir):
    """The Predictor of `export_dir` under the app's settings, its queue reporting to the app's metrics."""
    from .predictor import Predictor, QueuePolicy
    settings = app.config
    return Predictor(
        export_dir, max_batch_size=settings["MAX_BATCH_SIZE"],
        intra_op_threads=settings["INTRA_OP_THREADS"], inter_op_threads=settings["INTER_OP_THREADS"],
        queue=QueuePolicy(coalesce=settings["MICRO_BATCHING"], wait_ms=settings["MICRO_BATCH_WAIT_MS"],
                          timeout_s=settings["PREDICT_TIMEOUT_S"], max_pending_texts=settings["MAX_PENDING_TEXTS"],
                          events=app.extensions["metrics"]),
        backend=settings["BACKEND"], quantize=settings["QUANTIZE"])


def warmed(predictor):
    predictor.predict([WARMUP_TEXT])  # the first run builds TF's kernels; pay for it before /ready
    return predictor


def load_model(app, strict, on_failure):
    """The loader thread: publish the first model; strict, report a failure to `on_failure`; else
    try again every RETRY_S until an export loads."""
    chooser = app.extensions["chooser"]
    while True:
        try:
            candidates = candidate_exports(app.config)
            if strict:
                found = export_key(candidates[0]), chooser.load(candidates[0])
            else:
                found = chooser.newest_sound(candidates)
        except Exception as exc:  # any failure to load is reported, never swallowed
            # Strict only while no worker of this server has served: another worker may have come up
            # while this one loaded (WORKERS=2), and then this one must not stop the server.
            if strict and not has_served_before():
                if not isinstance(exc, UserError):
                    log.exception("cannot load the model")
                if on_failure is not None:
                    on_failure(exc)
                return
            strict = False
            log.warning("no export to serve yet (%s); trying again in %g s", first_line(exc), retry_s(app))
            found = None
        if found is not None:
            break
        time.sleep(retry_s(app))
    served_key, predictor = found
    app.extensions["model"].publish(predictor)
    log.info("worker %d ready: serving %s", os.getpid(), model_name_of(app, predictor))
    mark_served()
    start_reloader(app, served_key)


def retry_s(app):
    return app.config["MODEL_POLL_S"] or RETRY_S


RETRY_S = 5.0  # a worker with nothing to serve tries again this often when MODEL_POLL_S is 0


def model_name_of(app, predictor):
    with app.app_context():
        return model_name(predictor)


def has_served_before():
    """Whether a worker of this server has served already (gunicorn.conf.py's state folder says)."""
    state_dir = os.environ.get(STATE_DIR_ENV, "")
    return bool(state_dir) and os.path.exists(os.path.join(state_dir, SERVED_MARK))


def mark_served():
    state_dir = os.environ.get(STATE_DIR_ENV, "")
    if state_dir and os.path.isdir(state_dir):
        open(os.path.join(state_dir, SERVED_MARK), "a").close()


def serve():
    """gunicorn's entry point. At the server's first boot a model that cannot load stops it with one
    line; a worker started after the server has served never exits for its model (reload.py)."""

    def give_up(exc):
        print("error: %s" % exc, file=sys.stderr, flush=True)
        os._exit(3)  # gunicorn's WORKER_BOOT_ERROR: the master halts instead of respawning

    log_to_stderr()
    try:
        return create_app(load_in_background=True, strict=not has_served_before(), on_load_failure=give_up)
    except UserError as exc:  # bad settings
        give_up(exc)


def log_to_stderr():
    """The package's own lines (loads, reloads, skipped exports) beside gunicorn's, in its format."""
    package = logging.getLogger("bert_in_a_flask")
    if not package.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("[%(asctime)s] [%(process)d] [%(levelname)s] %(name)s: %(message)s",
                                               "%Y-%m-%d %H:%M:%S %z"))
        package.addHandler(handler)
        package.setLevel(logging.INFO)


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

    @app.errorhandler(ClientGone)
    def client_gone(exc):
        return app.response_class(status=CLIENT_GONE_STATUS)  # nobody reads it; the call log and metrics do

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
