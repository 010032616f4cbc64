"""What `make` would run: the GPU index reaches docker, and docker=0 runs the same job natively."""
import subprocess

import pytest

from helpers import ROOT

pytestmark = pytest.mark.slow  # make in a subprocess


def make_n(*args):
    result = subprocess.run(["make", "-n"] + list(args), cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, universal_newlines=True)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_gpu_is_an_index_passed_to_docker():
    out = make_n("train", "gpu=1", "docker=1")
    assert "--gpus '\"device=1\"'" in out
    assert "make train docker=0 VENV=/opt/venv" in out  # the container runs the native recipe


def test_two_gpus_are_selected_together():
    assert "--gpus '\"device=0,1\"'" in make_n("train", "gpu=0,1", "docker=1")


def test_docker_0_runs_natively_on_the_chosen_gpu():
    out = make_n("train", "gpu=1", "docker=0", "args=--num-train-epochs 2")
    assert "docker" not in out
    assert "CUDA_VISIBLE_DEVICES=1 " in out and "src/train.py --num-train-epochs 2" in out


def test_api_image_gets_build_date_sha_and_one_export(tmp_path):
    export = tmp_path / "trained_model" / "1700000000"
    export.mkdir(parents=True)
    (export / "saved_model.pb").write_bytes(b"")
    out = make_n("build_api", "model_dir=%s" % (tmp_path / "trained_model"))
    assert "--build-arg MODEL_EXPORT=%s" % export in out
    assert "BUILD_DATE=" in out and "GIT_SHA=" in out
