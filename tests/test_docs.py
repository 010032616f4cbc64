"""The README tells the truth: its settings table is the code's, its commands run as written, its links
lead somewhere, and the project's pages speak of the project and its users only."""
import json
import os
import re
import shlex
import subprocess

import pytest

from helpers import ROOT

README = os.path.join(ROOT, "README.md")
PAGES = [README, os.path.join(ROOT, "CHANGELOG.md")] + [
    os.path.join(ROOT, "docs", name) for name in sorted(os.listdir(os.path.join(ROOT, "docs"))) if name.endswith(".md")]


def read(path):
    with open(path, encoding="utf-8") as handle:
        return handle.read()


def fenced_commands(text, language="bash"):
    """Each command line of the README's ```bash blocks (comments dropped)."""
    blocks = re.findall(r"```%s\n(.*?)```" % language, text, re.S)
    lines = [line.split(" #")[0].strip() for block in blocks for line in block.splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def test_the_settings_table_is_made_from_the_code():
    from bert_in_a_flask.serving.settings import SETTINGS
    from bert_in_a_flask.tools import docs
    text = read(README)
    assert docs.with_table(text) == text, "README.md's settings table is stale: run `make docs`"
    for name, _, _ in SETTINGS:
        assert "| `%s` |" % name in text


def test_a_changed_default_makes_the_table_stale(monkeypatch):
    from bert_in_a_flask.serving import settings
    from bert_in_a_flask.tools import docs
    changed = tuple((n, 99 if n == "MAX_TEXTS" else d, doc) for n, d, doc in settings.SETTINGS)
    monkeypatch.setattr(docs, "SETTINGS", changed)
    assert docs.with_table(read(README)) != read(README)


def test_the_readme_is_a_short_guide_with_working_links():
    text = read(README)
    assert len(text.splitlines()) <= 200
    for target in re.findall(r"\]\(([^)#]+)\)", text):
        assert os.path.exists(os.path.join(ROOT, target)), target


def test_the_readmes_curl_call_is_a_valid_predict_request():
    from bert_in_a_flask.serving.api import PREDICT_KEYS, ROUTES, parse_texts
    curls = [shlex.split(line) for line in fenced_commands(read(README)) if line.startswith("curl ")]
    assert curls
    for words in curls:
        body = json.loads(words[words.index("--data") + 1])
        assert set(body) <= set(PREDICT_KEYS) and parse_texts(body, 256)
        assert re.sub(r"^http://localhost:\d+", "", words[-1]) in ROUTES


def test_the_pages_speak_of_the_project_only():
    talk = re.compile(r"this session|previous session|last session|earlier session|issue #?\d+|#1\d target", re.I)
    for path in PAGES:
        hits = [line for line in read(path).splitlines() if talk.search(line)]
        assert not hits, (path, hits[:3])


@pytest.mark.slow  # make in subprocesses
def test_every_make_command_in_the_readme_is_one_make_knows():
    commands = [shlex.split(line) for line in fenced_commands(read(README)) if line.startswith("make ")]
    assert len(commands) >= 6
    for words in commands:
        result = subprocess.run(["make", "-n"] + words[1:], cwd=ROOT, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, universal_newlines=True)
        assert result.returncode == 0, (words, result.stderr[-500:])


@pytest.mark.slow  # pytest in a subprocess
def test_an_unmarked_test_that_starts_a_subprocess_fails_the_fast_tier(tmp_path):
    import shutil
    import sys
    for name in ("conftest.py", "helpers.py"):
        shutil.copy(os.path.join(ROOT, "tests", name), str(tmp_path / name))
    (tmp_path / "test_new.py").write_text("import subprocess, sys\n\ndef test_new():\n"
                                          "    subprocess.run([sys.executable, '-c', 'pass'])\n")
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "not slow",
                             str(tmp_path)], cwd=str(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            universal_newlines=True)
    assert result.returncode == 1 and "a test of the fast tier started" in result.stdout, result.stdout
