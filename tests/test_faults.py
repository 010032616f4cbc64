"""Faults: broken models refuse to serve, broken base models refuse to train, interrupted runs resume."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from helpers import ROOT, SRC, TRAIN_ARGS, run_cli

pytestmark = pytest.mark.slow  # training runs, servers or subprocesses


def broken_exports(trained, tmp_path):
    """name -> (MODEL_DIR, text the error line must contain)"""
    good = trained["export_dir"]
    empty = tmp_path / "empty"
    empty.mkdir()
    corrupt = str(tmp_path / "corrupt" / "1700000000")
    shutil.copytree(good, corrupt)
    with open(os.path.join(corrupt, "saved_model.pb"), "wb") as handle:
        handle.write(b"\x00not a protobuf at all" * 10)
    with open(os.path.join(corrupt, "model.onnx"), "wb") as handle:  # its ONNX copy too
        handle.write(b"\x00not an onnx file either" * 10)
    mislabeled = str(tmp_path / "mislabeled" / "1700000000")
    shutil.copytree(good, mislabeled)
    with open(os.path.join(mislabeled, "assets.extra", "labels.json"), "w") as handle:
        json.dump(["java", "javascript", "python", "rust"], handle)
    return {
        "missing": (str(tmp_path / "nothing-here"), "model folder not found"),
        "empty": (str(empty), "no exported model under"),
        "corrupt": (corrupt, "cannot load SavedModel"),
        "labels": (mislabeled, "labels.json has 4 labels but the model has 3 outputs"),
    }


@pytest.mark.parametrize("case", ["missing", "empty", "corrupt", "labels"])
def test_broken_model_refuses_to_start_with_one_line(case, trained, tmp_path):
    """Through gunicorn, as served: the worker's loader fails, gunicorn halts with one error line."""
    from bert_in_a_flask.tools.loadtest import Server
    model_dir, message = broken_exports(trained, tmp_path)[case]
    server = Server(model_dir, str(tmp_path / "server.log"))
    assert not server.wait_ready(timeout=120)
    assert server.stop() != 0
    log = server.log()
    errors = [line for line in log.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and message in errors[0], log[-2000:]
    assert "Traceback" not in log


def base_args(tiny_bert_dir, tiny_csv, out):
    return ["--data-file", tiny_csv, "--bert-dir", tiny_bert_dir, "--output-dir", str(out),
            "--cache-dir", str(out) + "/cache", "--skip-report", "--skip-onnx"] + TRAIN_ARGS


def test_corrupt_checkpoint_and_mismatched_vocab_are_named(tiny_bert_dir, tiny_csv, tmp_path):
    corrupt = str(tmp_path / "corrupt")
    shutil.copytree(tiny_bert_dir, corrupt)
    with open(os.path.join(corrupt, "bert_model.ckpt.index"), "wb") as handle:
        handle.write(b"garbage")
    result = run_cli("train.py", base_args(corrupt, tiny_csv, tmp_path / "o1"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "cannot read checkpoint %s/bert_model.ckpt" % corrupt in result.stderr.strip().splitlines()[-1]

    short_vocab = str(tmp_path / "short_vocab")
    shutil.copytree(tiny_bert_dir, short_vocab)
    with open(os.path.join(short_vocab, "vocab.txt"), "a") as handle:
        handle.write("extra\n")
    result = run_cli("train.py", base_args(short_vocab, tiny_csv, tmp_path / "o2"))
    assert result.returncode == 2
    assert "%s/vocab.txt has" % short_vocab in result.stderr.strip().splitlines()[-1]


def test_unwritable_output_folder_is_named(tiny_bert_dir, tiny_csv, tmp_path):
    blocker = tmp_path / "file-not-folder"
    blocker.write_text("x")
    result = run_cli("train.py", base_args(tiny_bert_dir, tiny_csv, blocker))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "output folder is not writable: %s" % os.path.join(str(blocker), "checkpoints") in result.stderr


def test_leftovers_of_an_interrupted_run_are_ignored(trained):
    """A half-written cache file and a half-written export never get used."""
    from bert_in_a_flask.shared.export_contract import latest_export
    root = os.path.dirname(trained["export_dir"])
    half = os.path.join(root, "temp-9999999999")
    os.makedirs(half, exist_ok=True)
    assert latest_export(root) != half
    unfinished = os.path.join(root, "9999999999")  # a folder without saved_model.pb
    os.makedirs(unfinished, exist_ok=True)
    try:
        assert latest_export(root) != unfinished
    finally:
        os.rmdir(unfinished)
        os.rmdir(half)


def eval_losses(text):
    import re
    return [float(x) for x in re.findall(r"eval_loss = ([0-9.]+)", text)]


def test_kill_9_mid_training_then_rerun_keeps_the_best_model(tiny_bert_dir, tiny_csv, tmp_path):
    out = tmp_path / "killed"
    args = [sys.executable, os.path.join(SRC, "train.py")] + base_args(tiny_bert_dir, tiny_csv, out)
    args += ["--eval-every-steps", "30"]
    log1 = open(str(tmp_path / "run1.log"), "w")
    first = subprocess.Popen(args, cwd=ROOT, stdout=log1, stderr=subprocess.STDOUT)
    state = out / "checkpoints" / "best_export.json"
    deadline = time.time() + 300
    while not state.exists() and time.time() < deadline and first.poll() is None:
        time.sleep(0.2)
    assert state.exists(), open(str(tmp_path / "run1.log")).read()[-3000:]
    first.send_signal(signal.SIGKILL)
    first.wait()
    log1.close()
    text1 = open(str(tmp_path / "run1.log")).read()
    assert "step 182/182" not in text1  # it really died mid-run

    second = subprocess.run(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            universal_newlines=True, timeout=600)
    assert second.returncode == 0, second.stdout[-3000:]
    assert "Restoring parameters from" in second.stdout  # resumed, not restarted
    best = json.loads(state.read_text())
    losses = eval_losses(text1) + eval_losses(second.stdout)
    assert best["loss"] == pytest.approx(min(losses), abs=1e-6)
    assert os.path.isfile(os.path.join(best["export_dir"], "saved_model.pb"))
