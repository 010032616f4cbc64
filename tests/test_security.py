"""Checks that can be made in code: no pickle, no debug server, a body limit, non-root containers,
no raw text in logs by default."""
import os
import re

from helpers import ROOT

SOURCES = [os.path.join(d, f) for d, _, files in os.walk(os.path.join(ROOT, "src")) for f in files if f.endswith(".py")]
SOURCES += [os.path.join(ROOT, "gunicorn.conf.py")]


def read(path):
    with open(path, encoding="utf-8") as handle:
        return handle.read()


def test_no_pickle_anywhere():
    for path in SOURCES:
        text = read(path)
        assert not re.search(r"\b(c?pickle|joblib|dill|shelve)\b", text), path
        assert "np.load(" not in text or "allow_pickle=False" in text, path


def test_flask_debug_server_never_runs():
    for path in SOURCES:
        text = read(path)
        assert not re.search(r"\.run\(\s*(debug|host|port)|debug\s*=\s*True|FLASK_DEBUG", text), path
    assert "gunicorn" in read(os.path.join(ROOT, "Makefile"))
    assert 'CMD ["gunicorn"' in read(os.path.join(ROOT, "Dockerfile_api"))


def test_request_body_is_limited_by_default():
    from bert_in_a_flask.serving import settings
    assert 0 < settings.from_env({})["MAX_CONTENT_LENGTH"] <= 16 * 1024 * 1024
    assert 0 < settings.from_env({})["MAX_TEXTS"] <= 1024


def test_containers_run_as_non_root():
    api = read(os.path.join(ROOT, "Dockerfile_api"))
    users = re.findall(r"^USER\s+(\S+)", api, re.M)
    assert users and users[-1].split(":")[0] not in ("root", "0")
    makefile = read(os.path.join(ROOT, "Makefile"))
    assert "--user $$(id -u):$$(id -g)" in makefile  # the dev container runs as the host user


def test_raw_texts_stay_out_of_logs_by_default():
    from bert_in_a_flask.serving import settings
    assert settings.from_env({})["LOG_TEXTS"] is False
