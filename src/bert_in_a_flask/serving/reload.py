"""Which export a worker serves, at boot and by hot reload: one rule, `ExportChooser`.

    MODEL_DIR=models/trained_model   a folder of exports (<timestamp>/ each), or one export
    MODEL_POLL_S=10                  how often each worker looks for a newer one (0: never)
    MODEL_VERSION=1795637061         serve that export and no other (a pin, e.g. to roll back)

The rule: serve the newest export that loads and passes the warm-up check (labels match the
outputs; a warm-up prediction is a probability distribution); an export that fails is logged once
per worker, with its path and reason, closed at once and skipped, and the next older one is tried.
Only a server's very first boot is strict instead: the export it is given must load, or the
server refuses to start with one `error:` line (app.serve). A worker started later (a restart,
gunicorn's recycling, the OOM killer) never gives up: it serves what loads, and while nothing does
it answers 503 and tries again.

Each worker's reloader thread looks for a newer complete export (the trainer writes each one under
a temp name and renames it). When it finds one, or the same export with a changed model_config.json
(its ONNX copy arrived), it loads it beside the old, verifies it and publishes it in the app's
ModelSlot: requests in flight finish on the old model, which is closed when the last of them is
done (slot.py), and none sees a half-loaded one.
"""
import logging
import os
import threading

import numpy as np

from ..shared.errors import UserError
from ..shared.export_contract import ASSETS_EXTRA, MODEL_CONFIG_FILE, exports_newest_first, is_export

log = logging.getLogger(__name__)


def candidate_exports(settings):
    """The exports a worker may serve, newest first: MODEL_DIR itself, its MODEL_VERSION, or every
    complete export under it (a UserError naming the folder when there is none)."""
    model_dir, version = settings["MODEL_DIR"], settings["MODEL_VERSION"]
    if version:
        pinned = os.path.join(model_dir, version)
        if not is_export(pinned):
            raise UserError("MODEL_VERSION=%s, but %s is not an export" % (version, pinned))
        return [pinned]
    return [model_dir] if is_export(model_dir) else exports_newest_first(model_dir)


def export_key(export_dir):
    """What identifies a servable state of an export: its path and its config's modification time."""
    config = os.path.join(export_dir, ASSETS_EXTRA, MODEL_CONFIG_FILE)
    try:
        return export_dir, os.stat(config).st_mtime_ns
    except OSError:
        return export_dir, None


def verified(predictor, text):
    """The predictor, once a warm-up prediction came out as a probability distribution (a multi-label
    export: a probability per label, each in [0, 1] and not summing to anything in particular)."""
    probabilities = predictor.predict_proba([text])
    sound = probabilities.shape == (1, len(predictor.labels)) and bool(np.all(np.isfinite(probabilities)))
    if sound and predictor.multi_label:
        sound = bool(np.all((probabilities >= 0.0) & (probabilities <= 1.0)))
    elif sound:
        sound = abs(float(probabilities.sum()) - 1.0) <= 1e-3
    if not sound:
        raise UserError("its warm-up prediction is not a probability %s its %d labels"
                        % ("per label over" if predictor.multi_label else "distribution over", len(predictor.labels)))
    return predictor


def first_line(exc):
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


class ExportChooser(object):
    """The newest sound export among candidates; what failed is remembered, so it is logged once."""

    def __init__(self, build_predictor, warmup_text):
        """`build_predictor(export_dir)` loads one export."""
        self.build_predictor, self.warmup_text = build_predictor, warmup_text
        self.skipped = set()

    def load(self, export_dir):
        """A loaded, verified predictor of `export_dir` (raises what went wrong; closes a failed one)."""
        predictor = self.build_predictor(export_dir)
        try:
            return verified(predictor, self.warmup_text)
        except Exception:
            predictor.close()  # a model that failed its check holds memory and a thread: free them now
            raise

    def newest_sound(self, candidates, served_key=None):
        """(key, predictor) of the first candidate that loads, stopping at `served_key` (nothing newer is
        sound); None when none does. Each failure is logged once, with its path and reason."""
        for export_dir in candidates:
            key = export_key(export_dir)
            if key == served_key:
                return None
            if key in self.skipped:
                continue
            try:
                return key, self.load(export_dir)
            except Exception as exc:  # any failure of an export leaves it out, never the worker
                self.skipped.add(key)
                log.warning("skipping export %s: it cannot serve (%s)", export_dir, first_line(exc))
        return None


class Reloader(object):

    def __init__(self, slot, settings, chooser, served_key):
        """`slot` is the app's ModelSlot, `chooser` the worker's ExportChooser."""
        self.slot, self.settings, self.chooser, self.served = slot, settings, chooser, served_key
        self._stop = threading.Event()
        self._thread = None

    @staticmethod
    def wanted(settings):
        """Whether this worker polls: a folder of exports, MODEL_POLL_S > 0 and no MODEL_VERSION pin."""
        return (settings["MODEL_POLL_S"] > 0 and not settings["MODEL_VERSION"]
                and not is_export(settings["MODEL_DIR"]))

    def start(self):
        self._thread = threading.Thread(target=self._run, name="model-reloader", daemon=True)
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()

    def _run(self):
        while not self._stop.wait(self.settings["MODEL_POLL_S"]):
            try:
                self.check_once()
            except Exception:  # never let the poller die: the model served is unaffected
                log.exception("hot reload: polling %s failed", self.settings["MODEL_DIR"])

    def check_once(self):
        """Swap in the newest sound export if it is not the one served; returns True when it swapped."""
        try:
            candidates = candidate_exports(self.settings)
        except UserError:
            return False  # the folder emptied or vanished: keep serving what is loaded
        found = self.chooser.newest_sound(candidates, self.served)
        if found is None:
            return False
        self.served, predictor = found
        old = self.slot.publish(predictor)
        log.info("hot reload: now serving %s (was %s)", predictor.name, old.name if old else "nothing")
        return True
