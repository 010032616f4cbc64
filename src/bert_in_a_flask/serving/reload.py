"""Hot reload: a newer export under MODEL_DIR goes live in each worker without a restart.

    MODEL_DIR=models/trained_model   a folder of exports (<timestamp>/ each)
    MODEL_POLL_S=10                  how often each worker looks (0: never)
    MODEL_VERSION=1795637061         serve that export and no other (a pin, e.g. to roll back)

Each worker's reloader thread looks for the newest complete export (the trainer writes each one
under a temp name and renames it). When that is another export than the one served, or the same
export with a changed model_config.json (its ONNX copy arrived), it loads the new one beside the
old, verifies it (labels match the outputs; a warm-up prediction is a probability distribution)
and publishes it with one reference assignment: a request holds the predictor it started with,
so requests in flight finish on the old model and none sees a half-loaded one. The old model is
closed once no request can still be on it (after PREDICT_TIMEOUT_S). An export that fails to
load or verify is logged once and skipped; the old one keeps serving.
"""
import logging
import os
import threading

import numpy as np

from ..shared.errors import UserError
from ..shared.export_contract import ASSETS_EXTRA, MODEL_CONFIG_FILE, is_export, latest_export

log = logging.getLogger(__name__)


def export_to_serve(settings):
    """The export a worker starts with: MODEL_DIR itself, its MODEL_VERSION, or its newest."""
    model_dir, version = settings["MODEL_DIR"], settings["MODEL_VERSION"]
    if version:
        pinned = os.path.join(model_dir, version)
        if not is_export(pinned):
            raise UserError("MODEL_VERSION=%s, but %s is not an export" % (version, pinned))
        return pinned
    return model_dir if is_export(model_dir) else latest_export(model_dir)


def export_key(export_dir):
    """What identifies a servable state of an export: its path and its config's modification time."""
    config = os.path.join(export_dir, ASSETS_EXTRA, MODEL_CONFIG_FILE)
    try:
        return export_dir, os.stat(config).st_mtime_ns
    except OSError:
        return export_dir, None


def verified(predictor, text):
    """The predictor, once a warm-up prediction came out as a probability distribution."""
    probabilities = predictor.predict_proba([text])
    if probabilities.shape != (1, len(predictor.labels)) or not np.all(np.isfinite(probabilities)) \
            or abs(float(probabilities.sum()) - 1.0) > 1e-3:
        raise UserError("its warm-up prediction is not a probability distribution over its %d labels"
                        % len(predictor.labels))
    return predictor


class Reloader(object):

    def __init__(self, slot, settings, build_predictor, warmup_text):
        """`build_predictor(export_dir)` loads one export; `slot` is the app's ModelSlot."""
        self.slot, self.settings, self.build_predictor = slot, settings, build_predictor
        self.warmup_text = warmup_text
        self.served = export_key(slot.predictor.export_dir)
        self.skipped = set()
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
        """Swap in the newest export if it is new and sound; returns True when it swapped."""
        try:
            newest = latest_export(self.settings["MODEL_DIR"])
        except UserError:
            return False  # the folder emptied or vanished: keep serving what is loaded
        key = export_key(newest)
        if key == self.served or key in self.skipped:
            return False
        try:
            predictor = verified(self.build_predictor(newest), self.warmup_text)
        except Exception as exc:  # any failure of a new export leaves the old one serving
            self.skipped.add(key)
            log.warning("hot reload: %s cannot serve (%s); still serving %s",
                        newest, str(exc).splitlines()[0] if str(exc) else type(exc).__name__,
                        self.slot.predictor.export_dir)
            return False
        old = self.slot.predictor
        self.slot.publish(predictor)
        self.served = key
        log.info("hot reload: now serving %s (was %s)", predictor.name, old.name)
        # Requests that took the old predictor finish within PREDICT_TIMEOUT_S; close it after that.
        retire = threading.Timer(self.settings["PREDICT_TIMEOUT_S"] + 1.0, old.close)
        retire.daemon = True
        retire.start()
        return True
