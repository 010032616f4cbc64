"""What a user or an attacker meets: labels and configs are never unpickled, no debugger answers a
fault, a body is limited by default, and raw texts stay out of the logs unless asked. (That the
API image runs as a non-root user is checked on the built image, by .ci/containers.)"""
import json
import os
import pickle

import pytest

from bert_in_a_flask.shared.errors import UserError
from helpers import FakePredictor, call_log


class WritesAFileIfUnpickled(object):
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def app_with(tmp_path, predictor=None, **settings_overrides):
    from bert_in_a_flask.serving import settings
    from bert_in_a_flask.serving.app import create_app
    config = settings.from_env({}, LOG_FILE=str(tmp_path / "calls.log"), **settings_overrides)
    return create_app(config, predictor=predictor or FakePredictor())


def test_a_pickled_labels_file_is_refused_never_unpickled(tmp_path):
    from bert_in_a_flask.shared.export_contract import ExportConfig, read_assets, write_assets
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\n")
    extra = tmp_path / "export" / "assets.extra"
    extra.mkdir(parents=True)
    write_assets(str(extra), ["java", "python"], str(vocab), ExportConfig(max_seq_length=16, do_lower_case=True))
    marker = tmp_path / "unpickled"
    (extra / "labels.json").write_bytes(pickle.dumps([WritesAFileIfUnpickled(str(marker))]))
    with pytest.raises(UserError, match="corrupt JSON file .*labels.json"):
        read_assets(str(tmp_path / "export"))
    assert not marker.exists()


def test_a_fault_is_json_and_no_debugger_ever_answers(tmp_path):
    class Broken(FakePredictor):
        calls = 0

        def predict(self, texts, client_gone=None, min_confidence=0.0, coverage=None, max_sequences=None):
            Broken.calls += 1
            if Broken.calls > 1:  # the warm-up passes
                raise RuntimeError("disk on fire")
            return FakePredictor.predict(self, texts)

    app = app_with(tmp_path, Broken())
    assert app.debug is False
    response = app.test_client().post("/predict", json={"X": ["jvm"]})
    assert response.status_code == 500 and response.get_json()["error"] == "internal server error"
    assert b"Traceback" not in response.data and b"Werkzeug Debugger" not in response.data


def test_a_body_is_limited_by_default(tmp_path):
    from bert_in_a_flask.serving.settings import DEFAULTS
    client = app_with(tmp_path).test_client()
    big = json.dumps({"X": ["x" * 1024] * (DEFAULTS["MAX_CONTENT_LENGTH"] // 1024 + 10)})
    response = client.post("/predict", data=big, content_type="application/json")
    assert response.status_code == 413 and "bytes" in response.get_json()["error"]
    many = client.post("/predict", json={"X": ["jvm"] * (DEFAULTS["MAX_TEXTS"] + 1)})
    assert many.status_code == 413


def test_raw_texts_stay_out_of_the_logs_by_default(tmp_path):
    app = app_with(tmp_path)
    secret = "my account number is 12345678"
    assert app.test_client().post("/predict", json={"X": [secret]}).status_code == 200
    with open(app.config["LOG_FILE"]) as handle:
        assert secret not in handle.read()
    assert "texts" not in call_log(app)[-1]


def test_the_served_process_is_gunicorn_never_the_flask_debug_server():
    from bert_in_a_flask.tools import APP_ENTRY_POINT
    from helpers import ROOT
    with open(os.path.join(ROOT, "Dockerfile_api")) as handle:
        image_command = [line for line in handle if line.startswith("CMD ")][-1]
    assert json.loads(image_command[4:]) == ["gunicorn", "-c", "gunicorn.conf.py", APP_ENTRY_POINT]
