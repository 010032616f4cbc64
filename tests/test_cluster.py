"""A real multi-worker job on loopback: a chief and a worker train together (collective
all-reduce over gRPC), an evaluator evaluates, exports the best model once and writes the report."""
import json
import os

import pytest

from bert_in_a_flask.tools import cluster
from helpers import TRAIN_ARGS

pytestmark = pytest.mark.slow  # three TensorFlow processes


def test_a_loopback_cluster_learns_and_exports_once(tiny_bert_dir, tiny_csv, tmp_path):
    out = tmp_path / "cluster"
    args = ["--data-file", tiny_csv, "--bert-dir", tiny_bert_dir, "--output-dir", str(out),
            "--cache-dir", str(out / "cache"), "--skip-onnx"] + TRAIN_ARGS + [
        "--batch-size", "8", "--max-steps", "120", "--eval-every-steps", "40"]
    processes = cluster.start(args, workers=2, log_dir=str(tmp_path / "logs"))
    codes = cluster.wait(processes, timeout=900)
    logs = {role: open(path).read() for (role, _), (_, path) in processes.items()}
    assert codes == {("chief", 0): 0, ("worker", 0): 0, ("evaluator", 0): 0}, \
        "\n\n".join("== %s\n%s" % (role, log[-2500:]) for role, log in logs.items())

    for role in ("chief", "worker"):  # both trained, as one job of 2 replicas x 8 examples
        assert "%s 0 of a cluster of 1 chief, 1 worker, 1 evaluator" % role in logs[role]
        assert "training 120 steps of 16 examples" in logs[role]
        assert "exporter:" not in logs[role] and "test accuracy" not in logs[role]

    exports = sorted(name for name in os.listdir(str(out / "trained_model")) if name.isdigit())
    assert exports and logs["evaluator"].count("is the best so far; exported") == len(exports)
    best = json.loads((out / "checkpoints" / "best_export.json").read_text())
    assert best["step"] == 120 or best["loss"] < 0.1, best
    assert best["metrics"]["accuracy"] >= 0.9  # chance is 1/3
    report = json.loads((out / "report" / "metrics.json").read_text())
    assert report["accuracy"] >= 0.9 and report["export_dir"] == best["export_dir"]
