"""Fixtures built once per session: a tiny random BERT, a small learnable data set, and one model
trained and exported from them (the helpers that build them are in helpers.py)."""
import json
import os
import re
import subprocess

import pytest

from helpers import ROOT, TRAIN_ARGS, make_rows, run_cli, write_csv, write_tiny_bert


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory):
    return write_tiny_bert(str(tmp_path_factory.mktemp("tiny_bert")))


@pytest.fixture(scope="session")
def tiny_csv(tmp_path_factory):
    return write_csv(tmp_path_factory.mktemp("data") / "tiny.csv", make_rows(450, seed=1))


@pytest.fixture(scope="session")
def trained(tmp_path_factory, tiny_bert_dir, tiny_csv):
    """One real training run (fresh process) shared by the trainer, predictor and app tests."""
    out = tmp_path_factory.mktemp("run")
    result = run_cli("train.py", ["--data-file", tiny_csv, "--bert-dir", tiny_bert_dir,
                                  "--output-dir", str(out), "--cache-dir", str(out / "cache")] + TRAIN_ARGS)
    assert result.returncode == 0, result.stderr[-3000:]
    with open(os.path.join(str(out), "checkpoints", "best_export.json")) as handle:
        best = json.load(handle)
    return {"output_dir": str(out), "export_dir": best["export_dir"], "best": best, "log": result.stderr}


@pytest.fixture(scope="session")
def api_python():
    """The serving environment's python (requirements_api.txt, no TensorFlow), as `make bench`,
    `make soak` and `make chaos` serve from it."""
    path = os.environ.get("SERVING_PYTHON") or os.path.join(ROOT, ".venv-api", "bin", "python")
    path = path if os.path.isabs(path) else os.path.join(ROOT, path)
    if not os.path.exists(path):
        pytest.skip("no serving environment at %s (make api_venv builds it; make test does)" % path)
    return path


@pytest.fixture(scope="session")
def predictor(trained):
    from bert_in_a_flask.serving.predictor import Predictor
    return Predictor(trained["export_dir"], max_batch_size=8)


@pytest.fixture
def app(predictor, tmp_path):
    """A Flask app on the session's tiny export, its call log in a file of its own."""
    from bert_in_a_flask.serving import settings
    from bert_in_a_flask.serving.app import create_app
    config = settings.from_env({}, LOG_FILE=str(tmp_path / "calls.log"), MAX_TEXTS=256,
                               MAX_CONTENT_LENGTH=64 * 1024)
    app = create_app(config, predictor=predictor)
    app.testing = True
    return app


@pytest.fixture
def client(app):
    return app.test_client()


# The tiers are chosen by the `slow` marker alone (`make test-fast` is pytest -m "not slow"). A test
# is slow when it starts a process of ours (a CLI, a training run, a server), make or a container,
# or uses a fixture that does: left unmarked, it fails at once (below), so a new slow fixture cannot
# land in the fast tier unnoticed. Libraries' own small calls (Python 3.7's platform runs uname) pass.
_real_popen_init = subprocess.Popen.__init__
SLOW_PROGRAMS = re.compile(r"(^|/)(python[0-9.]*|gunicorn|make|docker|podman|chromium|chromedriver)$")


def _no_slow_process_in_the_fast_tier(self, args, *rest, **kwargs):
    program = (args.split() if isinstance(args, str) else [str(arg) for arg in args] or [""])[0]
    if SLOW_PROGRAMS.search(program):
        raise RuntimeError("a test of the fast tier started %r: mark the test @pytest.mark.slow (or its "
                           "module: pytestmark = pytest.mark.slow)" % (args,))
    _real_popen_init(self, args, *rest, **kwargs)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    if item.get_closest_marker("slow") is None:
        subprocess.Popen.__init__ = _no_slow_process_in_the_fast_tier  # fixtures are set up after this


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item, nextitem):
    subprocess.Popen.__init__ = _real_popen_init
