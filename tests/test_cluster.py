"""A real multi-worker job on loopback, one process per task with the TF_CONFIG a scheduler would
set: it learns, only the evaluator exports (once per better checkpoint) and writes the report, and a
worker killed mid-training rejoins when started again."""
import json
import os
import re
import time

import pytest

from bert_in_a_flask.shared.tf_compat import IS_TF2
from bert_in_a_flask.tools import cluster
from helpers import TRAIN_ARGS

pytestmark = pytest.mark.slow  # four TensorFlow processes


def cluster_args(tiny_bert_dir, tiny_csv, out, steps):
    return ["--data-file", tiny_csv, "--bert-dir", tiny_bert_dir, "--output-dir", str(out),
            "--cache-dir", str(out / "cache"), "--skip-onnx"] + TRAIN_ARGS + [
        "--batch-size", "8", "--max-steps", str(steps), "--eval-every-steps", "40", "--keep-checkpoint-max", "20"]


def read(path):
    with open(path) as handle:
        return handle.read()


def check_outputs(out, logs, steps):
    for role in ("chief", "worker"):
        assert "exporter:" not in logs[role] and "test accuracy" not in logs[role]
    exports = sorted(name for name in os.listdir(str(out / "trained_model")) if name.isdigit())
    assert exports and logs["evaluator"].count("is the best so far; exported") == len(exports)
    best = json.loads((out / "checkpoints" / "best_export.json").read_text())
    assert best["metrics"]["accuracy"] >= 0.9, best  # chance is 1/3
    assert best["export_dir"].endswith(exports[-1])
    report = json.loads((out / "report" / "metrics.json").read_text())
    assert report["accuracy"] >= 0.9 and report["export_dir"] == best["export_dir"]
    # the chief saved the last step (with parameter servers a step may overshoot by one per other worker)
    saved = [int(step) for step in re.findall(r"Saving checkpoints for (\d+) into", logs["chief"])]
    assert steps <= max(saved) <= steps + 2, saved


@pytest.mark.parametrize("ps", [1, 0], ids=["parameter-servers", "all-reduce"])
def test_a_loopback_cluster_learns_and_exports_once(tiny_bert_dir, tiny_csv, tmp_path, ps):
    if ps == 0 and not IS_TF2:
        pytest.skip("TF 1.15's MultiWorkerMirroredStrategy aborts at the first step; TF 1.15 clusters use ps")
    out = tmp_path / "cluster"
    spec, processes = cluster.start(cluster_args(tiny_bert_dir, tiny_csv, out, 120), workers=2,
                                    log_dir=str(tmp_path / "logs"), ps=ps)
    codes = cluster.wait(processes, timeout=900)
    logs = {role: read(path) for (role, _), (_, path) in processes.items()}
    assert all(code == 0 for code in codes.values()), \
        "\n\n".join("== %s\n%s" % (role, log[-2500:]) for role, log in logs.items())
    roles = "1 chief, 1 worker, %s1 evaluator" % ("1 ps, " if ps else "")
    for role in ("chief", "worker"):
        assert "%s 0 of a cluster of %s" % (role, roles) in logs[role]
        assert "training 120 steps of %d examples" % (8 if ps else 16) in logs[role]
    check_outputs(out, logs, 120)


def test_a_killed_worker_is_started_again_and_the_job_finishes(tiny_bert_dir, tiny_csv, tmp_path):
    out = tmp_path / "cluster"
    args = cluster_args(tiny_bert_dir, tiny_csv, out, 600)
    spec, processes = cluster.start(args, workers=2, log_dir=str(tmp_path / "logs"), ps=1)
    worker, log_path = processes[("worker", 0)]
    deadline = time.monotonic() + 300

    def worker_step():
        steps = re.findall(r"step (\d+)/600", read(log_path))
        return int(steps[-1]) if steps else 0

    while worker_step() < 60:
        assert time.monotonic() < deadline and worker.poll() is None, read(log_path)[-3000:]
        time.sleep(0.2)
    worker.kill()  # mid-training
    worker.wait()
    killed_at = worker_step()
    assert killed_at < 500
    processes[("worker", 0)] = (cluster.launch(spec, "worker", 0, args, log_path), log_path)
    codes = cluster.wait(processes, timeout=900)
    logs = {role: read(path) for (role, _), (_, path) in processes.items()}
    assert all(code == 0 for code in codes.values()), \
        "\n\n".join("== %s\n%s" % (role, log[-2500:]) for role, log in logs.items())
    # it started twice and its second run rejoined and ended cleanly with the job (whether it still got
    # steps depends on how far the chief, training alone meanwhile, had come)
    assert logs["worker"].count("(TF_CONFIG)") == 2
    assert logs["worker"].rstrip().endswith("the evaluator exports the best model and writes the report")
    check_outputs(out, logs, 600)
