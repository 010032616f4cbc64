"""Trainer, end to end and stage by stage, on a tiny random BERT."""
import json
import os
import re

import pytest

from helpers import run_cli

pytestmark = pytest.mark.slow  # training runs, servers or subprocesses

EXPORT_ASSETS = ("labels.json", "vocab.txt", "model_config.json")


def test_end_to_end_learns_and_exports_a_self_contained_model(trained):
    export_dir = trained["export_dir"]
    assert os.path.basename(os.path.dirname(export_dir)) == "trained_model"
    assert os.path.isfile(os.path.join(export_dir, "saved_model.pb"))
    for name in EXPORT_ASSETS:
        assert os.path.isfile(os.path.join(export_dir, "assets.extra", name))
    with open(os.path.join(export_dir, "assets.extra", "labels.json")) as handle:
        assert json.load(handle) == ["java", "javascript", "python"]
    with open(os.path.join(export_dir, "assets.extra", "model_config.json")) as handle:
        config = json.load(handle)
    assert config["max_seq_length"] == 32 and config["do_lower_case"] is True
    assert {"eval_loss", "accuracy", "macro_f1"} <= set(config["val_metrics"])
    with open(os.path.join(trained["output_dir"], "report", "metrics.json")) as handle:
        metrics = json.load(handle)
    # Chance is 1/3; the keyword decides the label, so a model that learned gets nearly all.
    assert metrics["accuracy"] >= 0.9, metrics
    assert metrics["tfidf_svm_accuracy"] > 0.5
    assert set(metrics["per_class"]) == {"java", "javascript", "python"}
    for name in ("classification_report.txt", "confusion_matrix.png"):
        assert os.path.getsize(os.path.join(trained["output_dir"], "report", name)) > 0
    assert re.search(r"step \d+/\d+  [0-9.]+ examples/s  ETA \d\d:\d\d:\d\d", trained["log"])
    assert "TF-IDF + linear SVM" in trained["log"]


def test_export_loads_in_a_fresh_process_and_predicts(trained, tmp_path):
    script = tmp_path / "load.py"
    script.write_text(
        "import json, sys\n"
        "from bert_in_a_flask.serving.predictor import Predictor\n"
        "p = Predictor(sys.argv[1])\n"
        "out = p.predict(['how do i fix my django error?', 'spring maven jvm', 'react node npm'])\n"
        "print(json.dumps(out))\n")
    import subprocess
    import sys
    result = subprocess.run([sys.executable, str(script), trained["export_dir"]], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, universal_newlines=True,
                            cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert result.returncode == 0, result.stderr[-2000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["predictions"] == ["python", "java", "javascript"]
    for probs in out["probabilities"]:
        assert sum(probs.values()) == pytest.approx(1.0, abs=1e-5)


def test_signature_takes_any_length_and_has_no_label_input(trained):
    import tensorflow_text  # noqa: F401  (registers the ops of the export's serve_text signature)
    from bert_in_a_flask.shared.tf_compat import tf
    graph = tf.Graph()
    with graph.as_default(), tf.Session() as session:
        meta = tf.saved_model.loader.load(session, ["serve"], trained["export_dir"])
    signature = meta.signature_def["serving_default"]
    assert set(signature.inputs) == {"input_ids", "input_mask", "segment_ids"}
    for tensor in signature.inputs.values():
        assert tensor.dtype == tf.int32.as_datatype_enum
        assert [d.size for d in tensor.tensor_shape.dim] == [-1, -1]
    assert set(signature.outputs) == {"probabilities"}


def test_rerun_resumes_from_the_latest_checkpoint(trained, tiny_bert_dir, tiny_csv):
    """Same command, more steps: it continues from the last checkpoint instead of step 0."""
    from helpers import TRAIN_ARGS
    out = trained["output_dir"]
    args = ["--data-file", tiny_csv, "--bert-dir", tiny_bert_dir, "--output-dir", out,
            "--cache-dir", os.path.join(out, "cache"), "--skip-report", "--skip-onnx"] + TRAIN_ARGS
    from bert_in_a_flask.shared.tf_compat import tf
    last_step = int(tf.train.latest_checkpoint(os.path.join(out, "checkpoints")).rsplit("-", 1)[1])
    result = run_cli("train.py", args + ["--max-steps", str(last_step + 10)])
    assert result.returncode == 0, result.stderr[-3000:]
    assert "reusing" in result.stderr  # tokenization skipped thanks to the cache
    assert "Restoring parameters from" in result.stderr and "model.ckpt-%d" % last_step in result.stderr
    with open(os.path.join(out, "checkpoints", "checkpoint")) as handle:
        assert "model.ckpt-%d" % (last_step + 10) in handle.read()


AMBIGUOUS = ["", "hello there", "how do i", "spring maven jvm", "react npm", "django pip", "python or java?",
             "error error error", "webpack and gradle and pip"]


def test_calibration_is_baked_into_every_path_and_moves_no_label(trained, tmp_path):
    """The export answers softmax(log p / T) on the SavedModel and the ONNX copy alike, p being the same
    graph's answer with the temperature set back to 1; the top label never changes."""
    import shutil

    import numpy as np

    from bert_in_a_flask.serving.predictor import Predictor
    from bert_in_a_flask.shared import calibration
    from bert_in_a_flask.training.calibrate import set_variables

    export_dir = trained["export_dir"]
    with open(os.path.join(export_dir, "assets.extra", "model_config.json")) as handle:
        record = json.load(handle)["calibration"]
    assert record["method"] == "temperature" and record["temperature"] > 0
    assert set(record["conformal"]["quantiles"]) == {"0.8", "0.9", "0.95", "0.99"}
    assert record["val"]["nll_after"] <= record["val"]["nll_before"] + 1e-9
    assert 0 <= record["min_confidence"] <= calibration.MAX_FLOOR and record["min_confidence_keeps"] == 0.9
    raw_dir = str(tmp_path / "raw" / "1")
    shutil.copytree(export_dir, raw_dir)
    set_variables(raw_dir, {"temperature": 1.0, "min_confidence": 0.0})
    raw_predictor = Predictor(raw_dir, backend="tf")
    raw = raw_predictor.predict_proba(AMBIGUOUS)
    raw_predictor.close()
    expected = calibration.softmax_at(calibration.log_probabilities(raw), record["temperature"])
    assert np.abs(expected - raw).max() > 1e-3  # the temperature does change the probabilities
    for backend in ("tf", "onnx"):
        predictor = Predictor(export_dir, backend=backend)
        got = predictor.predict_proba(AMBIGUOUS)
        predictor.close()
        assert np.abs(got - expected).max() < 1e-4, backend
        assert (got.argmax(axis=1) == raw.argmax(axis=1)).all(), backend


def test_the_report_shows_calibration_and_conformal_coverage(trained):
    report = os.path.join(trained["output_dir"], "report")
    with open(os.path.join(report, "metrics.json")) as handle:
        section = json.load(handle)["calibration"]
    assert section["calibrated"] is True and section["labels_unchanged"] is True
    assert section["nll_after"] <= section["nll_before"] + 1e-6
    assert set(section["conformal_sets"]) == {"0.8", "0.9", "0.95", "0.99"}
    assert all(0 <= s["coverage"] <= 1 and s["mean_set_size"] >= 0 for s in section["conformal_sets"].values())
    assert os.path.getsize(os.path.join(report, "reliability_diagram.png")) > 0
    chance = section["ece_from_sampling"]
    assert 0 <= chance["mean"] <= chance["p95"] < 1
    assert "calibration on the test split: T" in trained["log"]
    assert "a calibrated model's by chance: %.4f, 95 %% under %.4f" % (chance["mean"], chance["p95"]) in trained["log"]


def test_calibrate_none_keeps_the_raw_softmax_and_serves_uncalibrated(tiny_bert_dir, tiny_csv, tmp_path):
    from helpers import TRAIN_ARGS

    from bert_in_a_flask.shared.export_contract import latest_export, read_assets
    out = str(tmp_path / "run")
    result = run_cli("train.py", ["--data-file", tiny_csv, "--bert-dir", tiny_bert_dir, "--output-dir", out,
                                  "--cache-dir", str(tmp_path / "cache"), "--calibrate", "none", "--skip-onnx",
                                  "--max-steps", "60"] + TRAIN_ARGS)
    assert result.returncode == 0, result.stderr[-3000:]
    export_dir = latest_export(os.path.join(out, "trained_model"))
    assert read_assets(export_dir)[2].calibration == {}
    assert len(os.listdir(os.path.join(out, "trained_model"))) == 1  # no second, calibrated copy
    with open(os.path.join(out, "report", "metrics.json")) as handle:
        assert json.load(handle)["calibration"]["calibrated"] is False
