"""Serving settings: one default each, overridable by environment variables (the config object).
gunicorn's own (HOST, PORT, WORKERS, ...) are read here too, by gunicorn.conf.py."""
import os

from ..shared.errors import UserError

# (name, default, what it does): the one definition of each setting; README's table is made from it
# (`make docs`), and a test fails when the two disagree.
SETTINGS = (
    ("MODEL_DIR", "models/trained_model", "an export, or a folder of them (the newest that loads is served)"),
    ("MODEL_POLL_S", 10.0, "a folder of exports: look for a newer one this often, in seconds (0: never)"),
    ("MODEL_VERSION", "", "serve MODEL_DIR/<this timestamp> and no other (a pin, e.g. a rollback)"),
    ("MODEL_NAME", "bert", "the <name> of the TF Serving and KServe v2 routes"),
    ("BACKEND", "auto", "auto, tf or onnx (auto: the verified ONNX file when onnxruntime is installed)"),
    ("QUANTIZE", "none", "none or int8 (the export's accepted model.int8.onnx, or a refusal to start)"),
    ("MAX_BATCH_SIZE", 32, "texts per forward pass at most (sorted by length, cuts planned; `make bench` sweeps it)"),
    ("MAX_TEXTS", 256, "texts per request (windows, for a --truncate windows export); more: 413"),
    ("MAX_CONTENT_LENGTH", 2 * 1024 * 1024, "bytes per request body; more: 413"),
    ("MIN_CONFIDENCE", "export", "answers whose top probability is under this get prediction null and a reason: "
                                 "a number in [0, 1], or export (the floor the export's calibration chose; 0 for "
                                 "an uncalibrated export); a request's min_confidence overrides it"),
    ("MICRO_BATCHING", True, "coalesce concurrent requests into shared forward passes"),
    ("MICRO_BATCH_WAIT_MS", 2, "how long the first queued text waits for company, after a shared pass"),
    ("PREDICT_TIMEOUT_S", 30, "a request waits at most this long for its forward pass (then 503)"),
    ("MAX_PENDING_TEXTS", 512, "texts (windows, for a --truncate windows export) a worker admits, queued or "
                               "running; more: 429 at once (about a second of the demo model's work on 2 cores)"),
    ("LOG_FILE", "", "also append the call log to this file (one for all workers; rotate it with logrotate)"),
    ("LOG_TEXTS", False, "put the raw texts in the call log"),
    ("INTRA_OP_THREADS", 0, "threads per forward pass (0: one per core)"),
    ("INTER_OP_THREADS", 0, "TensorFlow's and onnxruntime's inter-op threads (0: they decide)"),
    ("API_KEYS", "", "comma-separated keys: then every route but the health routes needs one"),
    ("API_KEYS_FILE", "", "or a file of keys, one per line"),
    ("CORS_ORIGINS", "", "comma-separated origins (or *) browsers may call from"),
    ("DOCS_PAGE", True, "serve the OpenAPI description as a page at /docs (Swagger UI)"),
    ("TRUSTED_PROXIES", 0, "proxy hops whose X-Forwarded-For is believed (0: the peer's address is logged)"),
    ("HOST", "0.0.0.0", "the address gunicorn binds (`make start_api` passes api_host, 127.0.0.1)"),
    ("PORT", 5000, "the port gunicorn binds (`make start_api` passes api_port)"),
    ("WORKERS", 1, "gunicorn processes, each with its own model (one forward pass already uses every core)"),
    ("THREADS", 16, "request threads per worker (parsing, I/O, waiting in the queue)"),
    ("TIMEOUT", 120, "a worker silent this long is restarted (the model loads in a thread)"),
    ("MAX_REQUESTS", 20000, "recycle a worker after this many requests (0: never)"),
    ("MAX_REQUESTS_JITTER", 2000, "a random part of that, so workers do not recycle together"),
    ("ACCESS_LOG", "", "gunicorn's access log: a file, or - for stdout (the call log is the app's own)"),
    ("GUNICORN_LOG_LEVEL", "info", "gunicorn's log level"),
    ("BUILD_DATE", "", "set by `make build_api` (shown in /metadata)"),
    ("GIT_SHA", "", "set by `make build_api` (shown in /metadata and every answer's model field)"),
)
DEFAULTS = {name: default for name, default, _ in SETTINGS}


# Set by gunicorn.conf.py for its workers: the server's state folder (metrics files, first-boot mark).
STATE_DIR_ENV = "BERT_API_STATE_DIR"

MUST_BE_POSITIVE = ("MAX_BATCH_SIZE", "MAX_TEXTS", "MAX_CONTENT_LENGTH", "PREDICT_TIMEOUT_S", "MAX_PENDING_TEXTS",
                    "PORT", "WORKERS", "THREADS", "TIMEOUT")
TRUE, FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def _convert(name, default, raw):
    """The environment's text as the default's type; a UserError naming the variable otherwise."""
    if name == "MIN_CONFIDENCE":
        return min_confidence_setting(raw)
    if isinstance(default, bool):
        word = raw.strip().lower()
        if word not in TRUE + FALSE:
            raise UserError("%s must be one of %s, not %r" % (name, "/".join(TRUE + FALSE), raw))
        return word in TRUE
    if isinstance(default, float):
        try:
            value = float(raw)
        except ValueError:
            value = -1.0
        if not value >= 0:  # also refuses nan
            raise UserError("%s must be a number >= 0, not %r" % (name, raw))
        return value
    if isinstance(default, int):
        try:
            value = int(raw)
        except ValueError:
            value = -1
        minimum = 1 if name in MUST_BE_POSITIVE else 0
        if value < minimum:
            raise UserError("%s must be %s, not %r"
                            % (name, "a positive integer" if minimum else "an integer >= 0", raw))
        return value
    return raw


def min_confidence_setting(raw):
    """MIN_CONFIDENCE: "export", or a number in [0, 1]."""
    if raw.strip().lower() == "export":
        return "export"
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0.0 <= value <= 1.0:
        raise UserError("MIN_CONFIDENCE must be export or a number in [0, 1], not %r" % raw)
    return value


def from_env(environ=None, **overrides):
    """DEFAULTS, then environment variables of the same name, then `overrides` (tests)."""
    environ = os.environ if environ is None else environ
    settings = {}
    for name, default in DEFAULTS.items():
        settings[name] = _convert(name, default, environ[name]) if environ.get(name, "") != "" else default
    settings.update(overrides)
    return settings
