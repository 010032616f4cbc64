"""Serving settings: one default each, overridable by environment variables (the config object)."""
import os

from ..shared.errors import UserError

DEFAULTS = {
    "MODEL_DIR": "models/trained_model",  # an export, or a folder of them (newest is served)
    "MODEL_POLL_S": 10.0,                  # a folder of exports: look for a newer one this often (0: never; reload.py)
    "MODEL_VERSION": "",                  # serve MODEL_DIR/<this timestamp> and no other (a pin, e.g. a rollback)
    "MODEL_NAME": "bert",                 # the <name> of the TF Serving and KServe v2 routes (protocols.py)
    "BACKEND": "auto",                    # auto | tf | onnx (auto: the verified ONNX file when onnxruntime is here)
    "QUANTIZE": "none",                   # none | int8 (the export's accepted model.int8.onnx, or a refusal)
    "MAX_BATCH_SIZE": 32,                 # texts per forward pass at most (sorted, planned; `make bench` sweeps it)
    "MAX_TEXTS": 256,                     # texts per request, more -> 413
    "MAX_CONTENT_LENGTH": 2 * 1024 * 1024,  # bytes per request body, more -> 413
    "MICRO_BATCHING": True,               # coalesce concurrent requests into shared forward passes
    "MICRO_BATCH_WAIT_MS": 2,             # how long the first queued text waits for company (after a shared pass)
    "PREDICT_TIMEOUT_S": 30,              # a request waits at most this long for its forward pass (then 503)
    "MAX_PENDING_TEXTS": 512,             # texts a worker has admitted (queued or running), more -> 429 at once
    "LOG_FILE": "",                       # also append the call log to this file (all workers; logrotate-safe)
    "LOG_TEXTS": False,                   # put raw texts in the call log
    "INTRA_OP_THREADS": 0,                # TF thread pools per worker (0: TF decides)
    "INTER_OP_THREADS": 0,
    "API_KEYS": "",                       # comma-separated keys: then every call but health needs one (access.py)
    "API_KEYS_FILE": "",                  # or a file of keys, one per line
    "CORS_ORIGINS": "",                   # comma-separated origins (or *) browsers may call from
    "TRUSTED_PROXIES": 0,                 # proxy hops whose X-Forwarded-For is believed (0: the peer's address)
    # gunicorn (gunicorn.conf.py); TensorFlow and onnxruntime are not fork-safe, so each worker loads its model
    "HOST": "0.0.0.0",                    # the address to bind (`make start_api` binds 127.0.0.1)
    "PORT": 5000,
    "WORKERS": 1,                         # processes, each with its own model; one forward pass uses every core
    "THREADS": 16,                        # request threads per worker (parsing, I/O, waiting in the queue)
    "TIMEOUT": 120,                       # a worker silent this long is restarted (the model loads in a thread)
    "MAX_REQUESTS": 20000,                # recycle a worker after this many requests (0: never)
    "MAX_REQUESTS_JITTER": 2000,
    "ACCESS_LOG": "",                     # gunicorn's access log: a file, or - for stdout (the call log is the app's)
    "GUNICORN_LOG_LEVEL": "info",
    "BUILD_DATE": "",                     # set by `make build_api`
    "GIT_SHA": "",
}


# Set by gunicorn.conf.py for its workers: the server's state folder (metrics files, first-boot mark).
STATE_DIR_ENV = "BERT_API_STATE_DIR"

MUST_BE_POSITIVE = ("MAX_BATCH_SIZE", "MAX_TEXTS", "MAX_CONTENT_LENGTH", "PREDICT_TIMEOUT_S", "MAX_PENDING_TEXTS",
                    "PORT", "WORKERS", "THREADS", "TIMEOUT")
TRUE, FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def _convert(name, default, raw):
    """The environment's text as the default's type; a UserError naming the variable otherwise."""
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
            raise UserError("%s must be %s, not %r" % (name, "a positive integer" if minimum else "an integer >= 0", raw))
        return value
    return raw


def from_env(environ=None, **overrides):
    """DEFAULTS, then environment variables of the same name, then `overrides` (tests)."""
    environ = os.environ if environ is None else environ
    settings = {}
    for name, default in DEFAULTS.items():
        settings[name] = _convert(name, default, environ[name]) if environ.get(name, "") != "" else default
    settings.update(overrides)
    return settings
