"""An exporter that keeps the lowest-validation-loss checkpoint as a SavedModel.

Unlike `tf.estimator.BestExporter` it
  * exports on the first evaluation (tensorflow/estimator#41: BestExporter could skip it), and
  * keeps the best loss in a JSON file beside the checkpoints, so after a restart a worse
    model never replaces the best one (tensorflow/estimator#62: BestExporter forgot it).
"""
import logging
import os

from ..shared.files import load_json, save_json
from ..shared.tf_compat import tf

log = logging.getLogger(__name__)

STATE_FILE = "best_export.json"


class BestCheckpointsExporter(tf.estimator.Exporter):

    def __init__(self, serving_input_receiver_fn, export_root, state_dir, assets_builder,
                 metric_key="eval_loss", name="best", finish_export=None):
        """`assets_builder(val_metrics, global_step) -> {name: path}` supplies `assets.extra` per export;
        `finish_export(export_dir)`, when given, runs on each written export (e.g. naming its signatures)."""
        self._serving_input_receiver_fn, self._finish_export = serving_input_receiver_fn, finish_export
        self._export_root, self._state_file = export_root, os.path.join(state_dir, STATE_FILE)
        self._assets_builder, self._metric_key, self._name = assets_builder, metric_key, name

    @property
    def name(self):
        return self._name

    def best(self):
        """{"loss", "step", "export_dir", "metrics"} of the best export so far, or None."""
        return load_json(self._state_file) if os.path.isfile(self._state_file) else None

    def replace_best(self, export_dir):
        """Record `export_dir` (the best export rewritten, e.g. calibrated) as the best; returns the record."""
        best = dict(self.best(), export_dir=export_dir)
        save_json(best, self._state_file)
        return best

    def export(self, estimator, export_path, checkpoint_path, eval_result, is_the_final_export):
        loss = float(eval_result[self._metric_key])
        step = int(eval_result[tf.GraphKeys.GLOBAL_STEP])
        best = self.best()
        if best is not None and not loss < best["loss"]:
            log.info("exporter: step %d %s %.4f is not below the best %.4f (step %d); kept %s",
                     step, self._metric_key, loss, best["loss"], best["step"], best["export_dir"])
            return None
        metrics = {k: float(v) for k, v in eval_result.items() if k != tf.GraphKeys.GLOBAL_STEP}
        assets = self._assets_builder(val_metrics=metrics, global_step=step)
        os.makedirs(self._export_root, exist_ok=True)
        # export_saved_model writes to a temp-<timestamp> dir and renames it when complete.
        export_dir = estimator.export_saved_model(
            self._export_root, self._serving_input_receiver_fn,
            assets_extra=assets, checkpoint_path=checkpoint_path)
        export_dir = export_dir.decode() if isinstance(export_dir, bytes) else export_dir
        if self._finish_export is not None:
            self._finish_export(export_dir)
        save_json({"loss": loss, "step": step, "checkpoint": checkpoint_path,
                   "export_dir": export_dir, "metrics": metrics}, self._state_file)
        log.info("exporter: step %d %s %.4f is the best so far; exported %s",
                 step, self._metric_key, loss, export_dir)
        return export_dir
