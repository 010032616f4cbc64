"""The trainer's calibration step: after training, on the validation split, fit the temperature, pick
the confidence floor and the conformal quantiles (shared/calibration.py), and write them into a new
export beside the best one: the graph's calibration scalars (model.py) are set in its variables, so
serving_default, serve_text and the ONNX copy converted from it all answer the calibrated
probabilities, and model_config.json's `calibration` record says what was fitted and how much it
helped. A multi-label export (--label-separator) gets its per-label decision thresholds instead
(shared/multilabel.py): tuned for F1 on the validation split where that beats the default held out,
set in the graph's `thresholds` variable so serve_text chooses as the predictor does. The new export
gets a newer timestamp and is complete before the uncalibrated one is removed, so a server watching
the folder never sees half of it.
"""
import dataclasses
import logging
import os
import shutil
import time

import numpy as np

from ..serving.backends import register_text_ops
from ..serving.predictor import Predictor
from ..shared import calibration, multilabel, windows
from ..shared.errors import UserError
from ..shared.export_contract import (ASSETS_EXTRA, CALIBRATION_SCOPE, MIN_CONFIDENCE_VARIABLE, MODEL_CONFIG_FILE,
                                      TEMPERATURE_VARIABLE, THRESHOLDS_VARIABLE, read_assets)

log = logging.getLogger(__name__)


def calibrate_export(export_dir, texts, label_sets, keep_share):
    """Fit on the labelled validation `texts` (`label_sets`: each text's labels) and write the calibrated
    export; returns its folder (the same folder when it is calibrated already: a rerun that found no
    better model)."""
    predictor = Predictor(export_dir, backend="tf")  # the uncalibrated graph (T = 1)
    try:
        if predictor.config.calibration:
            record = predictor.config.calibration
            log.info("calibration: %s is calibrated already (%s)", export_dir,
                     "T %.3f" % record["temperature"] if "temperature" in record else record["method"])
            return export_dir
        multi_label, labels = predictor.config.multi_label, predictor.labels
        if multi_label:  # sigmoids take no temperature: the answers as they are (windows pooled)
            raw = predictor.predict_proba(list(texts))
        else:
            probabilities_at = uncalibrated_answers(predictor, list(texts))
    finally:
        predictor.close()
    if multi_label:
        record = fit_thresholds(raw, multilabel.multi_hot(label_sets, labels))
        calibrated_dir = write_calibrated_export(export_dir, record, {THRESHOLDS_VARIABLE: record["thresholds"]})
        held_out = record["cv_micro_f1"]
        log.info("thresholds: %s (held-out micro-F1 at 0.5 %.4f, global %.4f, per label %.4f); %d of %d labels tuned "
                 "(the rest %.2f); validation micro-F1 %.4f at 0.5 -> %.4f; wrote %s", record["strategy"],
                 held_out["fixed"], held_out["global"], held_out["per_label"], sum(record["tuned"]), len(labels),
                 record["global_threshold"], record["val"]["micro_f1_before"], record["val"]["micro_f1_after"],
                 calibrated_dir)
        return calibrated_dir
    index = {label: i for i, label in enumerate(labels)}
    record = fit(probabilities_at, np.array([index[chosen[0]] for chosen in label_sets]), keep_share)
    calibrated_dir = write_calibrated_export(export_dir, record, {TEMPERATURE_VARIABLE: record["temperature"],
                                                                  MIN_CONFIDENCE_VARIABLE: record["min_confidence"]})
    log.info("calibration: T %.3f; validation ECE %.4f -> %.4f, NLL %.4f -> %.4f; floor %.3f keeps %.0f%%; "
             "wrote %s", record["temperature"], record["val"]["ece_before"], record["val"]["ece_after"],
             record["val"]["nll_before"], record["val"]["nll_after"], record["min_confidence"],
             100 * keep_share, calibrated_dir)
    return calibrated_dir


def fit_thresholds(probabilities, y):
    """The `calibration` record of a multi-label export: per-label thresholds (label order), the
    global one for labels too rare to tune, and the validation micro-F1 at 0.5 and at them."""
    chosen = multilabel.choose_thresholds(probabilities, y)
    before = multilabel.set_scores(y, multilabel.decide(probabilities, [0.5] * y.shape[1]))
    after = multilabel.set_scores(y, multilabel.decide(probabilities, chosen["thresholds"]))
    return {"method": "thresholds", **chosen, "min_positives_to_tune": multilabel.MIN_POSITIVES_TO_TUNE,
            "val": {"n": int(len(y)), "micro_f1_before": before["micro_f1"], "micro_f1_after": after["micro_f1"],
                    "macro_f1_before": before["macro_f1"], "macro_f1_after": after["macro_f1"]}}


def uncalibrated_answers(predictor, texts):
    """A function of T: the texts' probabilities as the export will answer them once its temperature is
    T (the graph scales each window's logits, the predictor pools a text's windows)."""
    if not predictor.windowed:
        logits = calibration.log_probabilities(predictor.forward_sorted(predictor.preprocess(texts)))
        return lambda temperature: calibration.softmax_at(logits, temperature)
    flat, owners = predictor.window_ids(texts)
    logits = calibration.log_probabilities(predictor.forward_sorted(flat))
    return lambda temperature: windows.pool(calibration.softmax_at(logits, temperature), owners, len(texts),
                                            predictor.config.window_pooling, predictor.multi_label)


def fit(probabilities_at, y, keep_share):
    """The `calibration` record for labelled texts (label indices `y`) whose probabilities at
    temperature T are `probabilities_at(T)`."""
    raw_probabilities = probabilities_at(1.0)
    temperature = calibration.fit_temperature_of(probabilities_at, y)
    calibrated = probabilities_at(temperature)
    return {
        "method": "temperature", "temperature": temperature,
        "min_confidence": calibration.confidence_floor(calibrated, keep_share), "min_confidence_keeps": keep_share,
        "conformal": {"score": "lac", "n": int(len(y)), "quantiles": {
            str(level): calibration.conformal_quantile(calibrated, y, level) for level in calibration.COVERAGE_LEVELS}},
        "val": {"n": int(len(y)), "ece_bins": calibration.ECE_BINS,
                "ece_before": calibration.ece(raw_probabilities, y), "ece_after": calibration.ece(calibrated, y),
                "nll_before": calibration.nll(raw_probabilities, y), "nll_after": calibration.nll(calibrated, y)},
    }


def write_calibrated_export(export_dir, record, values):
    """A copy of `export_dir` under a newer timestamp with the calibration scope's variables set to
    `values` ({name: value}) and the record written; the uncalibrated export is removed once the copy
    is complete."""
    root = os.path.dirname(export_dir)
    stamp = max(int(time.time()), int(os.path.basename(export_dir)) + 1)
    while os.path.exists(os.path.join(root, str(stamp))):
        stamp += 1
    staging = os.path.join(root, "temp-calibrated-%d" % stamp)  # not all digits: never taken for an export
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(export_dir, staging)
    try:
        set_variables(staging, values)
        _, _, config = read_assets(staging)
        # `created` is this export's time, its folder's timestamp (the uncalibrated one's is older)
        dataclasses.replace(config, calibration=record, created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(stamp))
                            ).write(os.path.join(staging, ASSETS_EXTRA, MODEL_CONFIG_FILE))
        final = os.path.join(root, str(stamp))
        os.rename(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    shutil.rmtree(export_dir)
    return final


def set_variables(export_dir, values):
    """Assign the calibration scope's variables in the SavedModel's variables, saved with its own saver."""
    from ..shared.tf_compat import tf

    register_text_ops()
    with tf.Graph().as_default() as graph, tf.Session(graph=graph) as session:
        meta = tf.saved_model.loader.load(session, ["serve"], export_dir)
        by_name = {variable.op.name: variable for variable in tf.global_variables()}
        for name, value in values.items():
            full = "%s/%s" % (CALIBRATION_SCOPE, name)
            if full not in by_name:
                raise UserError("%s has no %s variable (exported by an older trainer); train again or use "
                                "--calibrate none" % (export_dir, full))
            by_name[full].load(value, session)
        saver = tf.train.Saver(saver_def=meta.saver_def)
        saver.save(session, os.path.join(export_dir, "variables", "variables"), write_meta_graph=False,
                   write_state=False)
