"""The serving environment (requirements_api.txt: Python 3.11, onnxruntime, Flask 3, no TensorFlow)
serves the exports of either training runtime: this runtime's export is trained here and served
there, with the probabilities the trainer's own environment computes."""
import json
import os
import shutil
import subprocess

import numpy as np
import pytest

from bert_in_a_flask.tools.loadtest import Server, http, predict
from helpers import ROOT

pytestmark = pytest.mark.slow  # servers started from another virtualenv

TEXTS = ["spring maven jvm", "numpy pip pandas list", "react node npm", "Why does my code keep throwing me null?"]


def test_the_serving_environment_has_no_tensorflow_and_never_imports_it(api_python):
    probe = ("import importlib.util, sys\n"
             "import bert_in_a_flask.serving.app, bert_in_a_flask.serving.predict_cli\n"
             "print(importlib.util.find_spec('tensorflow') is None, sys.version_info[:2] >= (3, 9),\n"
             "      sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'bert')))")
    out = subprocess.run([api_python, "-c", probe], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         universal_newlines=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["True", "True", "[]"], out.stdout


def test_this_runtimes_export_serves_there_with_the_same_answers(trained, predictor, api_python, tmp_path):
    server = Server(trained["export_dir"], str(tmp_path / "api.log"), python=api_python)
    try:
        assert server.wait_ready(), server.log()[-3000:]
        status, body = predict(server.url, TEXTS)
        meta = json.loads(http(server.url + "/metadata")[1].decode())
    finally:
        server.stop()
    assert status == 200, body
    answer = json.loads(body.decode())
    assert meta["tf_version"] is None and meta["backend"] == "onnx"
    expected = predictor.predict_proba(TEXTS)
    got = np.array([[row[label] for label in predictor.labels] for row in answer["probabilities"]])
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert answer["predictions"] == [predictor.labels[i] for i in expected.argmax(axis=1)]


def test_an_export_without_onnx_is_one_line_naming_the_fixes(trained, api_python, tmp_path):
    export = str(tmp_path / "exports" / "1700000000")
    shutil.copytree(trained["export_dir"], export)
    os.remove(os.path.join(export, "model.onnx"))
    server = Server(export, str(tmp_path / "api.log"), python=api_python)
    assert not server.wait_ready(timeout=120)
    assert server.stop() != 0
    errors = [line for line in server.log().splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, server.log()[-3000:]
    assert "cannot be served without TensorFlow" in errors[0] and "make onnx model_dir=%s" % export in errors[0]
    assert "BACKEND=tf" in errors[0] and "Traceback" not in server.log()


def test_build_api_stages_what_the_tf_free_image_serves_and_refuses_an_export_without_onnx(trained, tmp_path, capsys):
    from bert_in_a_flask.tools import stage_export
    target = tmp_path / "context" / "api-export"
    assert stage_export.main(["--model-dir", os.path.dirname(trained["export_dir"]), "--to", str(target)]) == 0
    stamp = os.path.basename(trained["export_dir"])
    staged = sorted(os.listdir(str(target / stamp)))
    assert staged == sorted(["saved_model.pb", "assets.extra", "model.onnx"]) or \
        staged == sorted(["saved_model.pb", "assets.extra", "model.onnx", "model.int8.onnx"])
    assert "variables" not in staged  # the SavedModel's weights stay out of the TF-free image
    bare = str(tmp_path / "bare" / stamp)
    shutil.copytree(trained["export_dir"], bare)
    os.remove(os.path.join(bare, "model.onnx"))
    capsys.readouterr()
    assert stage_export.main(["--model-dir", bare, "--to", str(target)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "the API image serves the verified ONNX file without TensorFlow" in err[0], err
    assert os.path.isdir(str(target / stamp))  # nothing deleted by the refused call
