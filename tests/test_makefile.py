"""What `make` would run: the GPU index reaches docker, docker=0 runs the same job natively, the
images' targets take model_dir= anywhere, and containers publish on loopback unless told otherwise."""
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
    assert "exec python src/train.py" in out  # the image's trainer, the same command as natively
    assert "-p 127.0.0.1:6006:6006" in out  # TensorBoard on loopback


def test_two_gpus_are_selected_together():
    assert "--gpus '\"device=0,1\"'" in make_n("train", "gpu=0,1", "docker=1")


def test_docker_0_runs_natively_on_the_chosen_gpu():
    out = make_n("train", "gpu=1", "docker=0", "args=--num-train-epochs 2")
    assert "docker" not in out
    assert "CUDA_VISIBLE_DEVICES=1 " in out and "src/train.py --num-train-epochs 2" in out


def test_without_a_built_image_train_and_start_api_run_natively():
    """docker= unset: the image only where it exists (no engine answers here, so none does)."""
    assert "docker" not in make_n("train")
    out = make_n("start_api")
    assert "--docker-image" not in out and "--host 127.0.0.1" in out


def test_api_image_stages_model_dir_from_anywhere_and_gets_build_date_and_sha(tmp_path):
    out = make_n("build_api", "model_dir=%s" % (tmp_path / "elsewhere"))
    assert "stage_export --model-dir %s --to build/api-export" % (tmp_path / "elsewhere") in out
    assert "--build-arg MODEL_EXPORT=build/api-export" in out
    assert "BUILD_DATE=" in out and "GIT_SHA=" in out


def test_start_api_in_the_container_is_one_image_whatever_the_runtime():
    for runtime in ("tf1", "tf2"):
        out = make_n("start_api", "docker=1", "runtime=%s" % runtime, "api_port=5077", "model_dir=models/x")
        assert "--docker-image bert-in-a-flask-api:latest --model-dir models/x" in out
        assert "--port 5077 --host 127.0.0.1" in out
