"""The model a worker serves, and safe retirement of the one it replaces (a Flask extension).

A request leases the predictor it starts with (`acquire` ... `release`, done for every request by
the app's teardown): a hot reload may publish another meanwhile, and the request finishes on the
one it took. A replaced predictor is closed when its last lease is released (at once when it has
none), never on a timer, so no request ever meets a closed model.
"""
import threading

from flask import current_app, g

from ..shared.errors import ServiceUnavailable


class _Held(object):
    __slots__ = ("predictor", "leases", "retired")

    def __init__(self, predictor):
        self.predictor, self.leases, self.retired = predictor, 0, False


def close_soon(predictor):
    """Close off the request thread: a model's close may take a moment, no caller should wait for it."""
    threading.Thread(target=predictor.close, name="model-closer", daemon=True).start()


class ModelSlot(object):

    def __init__(self):
        self._lock = threading.Lock()
        self._held = None
        self._loaded = threading.Event()

    def init_app(self, app):
        app.extensions["model"] = self
        app.teardown_request(self._release_request_lease)

    @property
    def predictor(self):
        """The predictor served now (None while the first one loads), for reading its name or health."""
        held = self._held
        return held.predictor if held is not None else None

    def publish(self, predictor):
        """Serve `predictor` from now on; the one it replaces is closed once no request holds it."""
        with self._lock:
            old, self._held = self._held, _Held(predictor)
            idle = old is not None and old.leases == 0
            if old is not None:
                old.retired = True
        self._loaded.set()
        if idle:
            close_soon(old.predictor)
        return old.predictor if old is not None else None

    def acquire(self, timeout):
        """A lease on the predictor served now; while the first one loads, wait for it (bounded), as a
        request queued for a booting worker would. Give it back with `release`."""
        if not self._loaded.wait(timeout):
            raise ServiceUnavailable("the model is still loading; retry in a moment")
        with self._lock:
            held = self._held
            held.leases += 1
        return held

    def release(self, held):
        with self._lock:
            held.leases -= 1
            last = held.retired and held.leases == 0
        if last:
            close_soon(held.predictor)

    def lease_for_request(self, timeout):
        """The predictor for this request, released when the request ends (teardown)."""
        if "model_lease" not in g:
            g.model_lease = self.acquire(timeout)
        return g.model_lease.predictor

    def _release_request_lease(self, _exc=None):
        held = g.pop("model_lease", None)
        if held is not None:
            self.release(held)


def model_name(predictor=None):
    """'<base model>/<export timestamp> (<backend>)' (+ the build's git sha) of `predictor`, else of the
    one served now; "" while the model loads."""
    predictor = predictor or current_app.extensions["model"].predictor
    if predictor is None:
        return ""
    sha = current_app.config["GIT_SHA"]
    return "%s (build %s)" % (predictor.name, sha[:12]) if sha else predictor.name
