"""Serving settings: one default each, overridable by environment variables (the config object)."""
import os

DEFAULTS = {
    "MODEL_DIR": "models/trained_model",  # an export, or a folder of them (newest is served)
    "MAX_BATCH_SIZE": 8,                  # texts per forward pass (sorted by length: small batches pad little)
    "MAX_TEXTS": 256,                     # texts per request, more -> 413
    "MAX_CONTENT_LENGTH": 2 * 1024 * 1024,  # bytes per request body, more -> 413
    "MICRO_BATCHING": True,               # coalesce concurrent requests into shared forward passes
    "MICRO_BATCH_WAIT_MS": 2,             # how long the first queued text waits for company
    "LOG_FILE": "",                       # also write the call log to this rotating file
    "LOG_TEXTS": False,                   # put raw texts in the call log
    "INTRA_OP_THREADS": 0,                # TF thread pools per worker (0: TF decides)
    "INTER_OP_THREADS": 0,
    "BUILD_DATE": "",                     # set by `make build_api`
    "GIT_SHA": "",
}


def _convert(default, raw):
    if isinstance(default, bool):
        return raw.strip().lower() in ("1", "true", "yes", "on")
    if isinstance(default, int):
        return int(raw)
    return raw


def from_env(environ=None, **overrides):
    """DEFAULTS, then environment variables of the same name, then `overrides` (tests)."""
    environ = os.environ if environ is None else environ
    settings = {}
    for name, default in DEFAULTS.items():
        settings[name] = _convert(default, environ[name]) if environ.get(name, "") != "" else default
    settings.update(overrides)
    return settings
