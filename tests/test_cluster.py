"""A real multi-worker job on loopback, one process per task with the TF_CONFIG a scheduler would
set: it learns, only the evaluator exports (once per better checkpoint) and writes the report, and a
worker or chief killed mid-training rejoins when started again (the chief from its newest checkpoint)."""
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


def step_in(log_text):
    steps = re.findall(r"step (\d+)/600", log_text)
    return int(steps[-1]) if steps else 0


def newest_checkpoint_step(model_dir):
    """The step of the newest checkpoint whose save finished: the saver names it in the state file (written
    by rename) only after its files are whole; the log's "Saving checkpoints for N" comes before the save,
    so a kill right after that line leaves the previous checkpoint as the newest."""
    try:
        with open(os.path.join(model_dir, "checkpoint")) as state:
            found = re.search(r'^model_checkpoint_path: "\S*model\.ckpt-(\d+)"', state.read(), re.M)
    except FileNotFoundError:
        return 0
    return int(found.group(1)) if found else 0


def wait_for(condition, process, log_path, deadline):
    while not condition():
        assert time.monotonic() < deadline and process.poll() is None, read(log_path)[-3000:]
        time.sleep(0.2)


def kill_and_restart(spec, processes, task, args):
    process, log_path = processes[task]
    process.kill()  # mid-training, as a lost machine would
    process.wait()
    processes[task] = (cluster.launch(spec, task[0], task[1], args, log_path), log_path)


def test_a_killed_worker_and_a_killed_chief_are_started_again_and_the_job_finishes(tiny_bert_dir, tiny_csv, tmp_path):
    out = tmp_path / "cluster"
    args = cluster_args(tiny_bert_dir, tiny_csv, out, 600)
    spec, processes = cluster.start(args, workers=2, log_dir=str(tmp_path / "logs"), ps=1)
    deadline = time.monotonic() + 300
    worker, worker_log = processes[("worker", 0)]
    wait_for(lambda: step_in(read(worker_log)) >= 60, worker, worker_log, deadline)
    kill_and_restart(spec, processes, ("worker", 0), args)
    assert step_in(read(worker_log)) < 500

    # the chief dies after a checkpoint beyond the first; started again, it goes on from its newest
    # checkpoint, not from the pretrained weights
    chief, chief_log = processes[("chief", 0)]
    model_dir = str(out / "checkpoints")
    wait_for(lambda: newest_checkpoint_step(model_dir) >= 80, chief, chief_log, deadline)
    kill_and_restart(spec, processes, ("chief", 0), args)
    last_saved = newest_checkpoint_step(model_dir)  # read after the kill: a save may have finished meanwhile
    assert last_saved < 600

    codes = cluster.wait(processes, timeout=900)
    logs = {role: read(path) for (role, _), (_, path) in processes.items()}
    assert all(code == 0 for code in codes.values()), \
        "\n\n".join("== %s\n%s" % (role, log[-2500:]) for role, log in logs.items())
    # each started twice and its second run rejoined and ended cleanly with the job (whether the worker
    # still got steps depends on how far the others had come meanwhile)
    for role in ("worker", "chief"):
        assert logs[role].count("(TF_CONFIG)") == 2, role
        assert logs[role].rstrip().endswith("the evaluator exports the best model and writes the report"), role
    second_run = logs["chief"].split("(TF_CONFIG)")[-1]
    restored = [int(step) for step in re.findall(r"Restoring parameters from \S*model\.ckpt-(\d+)", second_run)]
    assert restored and restored[0] >= last_saved, second_run[:3000]
    check_outputs(out, logs, 600)
