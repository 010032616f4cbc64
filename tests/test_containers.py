"""`make start_api docker=1`'s container path against a stand-in `docker` command that records what it
is asked and plays a missing image, a container that dies while starting, and a clean start (the
real engine runs the images in .ci/containers)."""
import json
import os
import stat
import sys

import pytest

from bert_in_a_flask.tools import start_api

pytestmark = pytest.mark.slow  # a stand-in docker command in subprocesses

FAKE_DOCKER = r'''#!%(python)s
import json, os, sys
args = sys.argv[1:]
with open(os.environ["FAKE_DOCKER_LOG"], "a") as log:
    log.write(json.dumps(args) + "\n")
mode = os.environ["FAKE_DOCKER_MODE"]
if args[:2] == ["image", "inspect"]:
    sys.exit(1 if mode == "no-image" else 0)
if args[:2] == ["container", "inspect"]:
    if "-f" in args:
        print("false" if mode == "exits" else "true")
        sys.exit(0)
    sys.exit(0 if os.path.exists(os.environ["FAKE_DOCKER_LOG"] + ".running") else 1)
if args[0] == "run":
    print("c0ffee")
elif args[0] == "logs":
    print("[INFO] Booting worker\nerror: model folder not found: /models (set MODEL_DIR)")
'''


@pytest.fixture
def docker(tmp_path, monkeypatch):
    """The stand-in engine first on PATH; returns the list of calls made so far."""
    path = tmp_path / "bin" / "docker"
    path.parent.mkdir()
    path.write_text(FAKE_DOCKER % {"python": sys.executable})
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    log = tmp_path / "calls.log"
    monkeypatch.setenv("PATH", "%s%s%s" % (path.parent, os.pathsep, os.environ["PATH"]))
    monkeypatch.setenv("FAKE_DOCKER_LOG", str(log))

    def calls():
        return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return calls


def run(port, tmp_path, *extra):
    return start_api.main(["--port", str(port), "--log-dir", str(tmp_path / "logs"), "--timeout", "3",
                           "--docker-image", "bert-in-a-flask-api:latest"] + list(extra))


def test_a_missing_image_is_one_line_naming_build_api(docker, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FAKE_DOCKER_MODE", "no-image")
    assert run(free_port(), tmp_path) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: no image bert-in-a-flask-api:latest: build it with `make build_api` (or start natively "
                   "with docker=0)"]
    assert not [call for call in docker() if call[0] == "run"]


def test_a_container_that_dies_while_starting_is_reported_and_removed(docker, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FAKE_DOCKER_MODE", "exits")
    port = free_port()
    assert run(port, tmp_path) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: the API container bert-api-%d exited: model folder not found: /models (set MODEL_DIR)"
                   % port]
    assert ["rm", "-f", "bert-api-%d" % port] in docker()


def test_model_dir_is_mounted_and_the_port_published_on_loopback(docker, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_DOCKER_MODE", "exits")
    export = tmp_path / "anywhere" / "1700000000"
    export.mkdir(parents=True)
    (export / "saved_model.pb").write_bytes(b"")
    port = free_port()
    run(port, tmp_path, "--model-dir", str(export))
    started = [call for call in docker() if call[0] == "run"][0]
    assert "127.0.0.1:%d:5000" % port in started
    assert "%s:/models/1700000000:ro" % export in started and "MODEL_DIR=/models/1700000000" in started
    run(port, tmp_path, "--model-dir", str(export.parent))  # a folder of exports: mounted as the folder
    started = [call for call in docker() if call[0] == "run"][-1]
    assert "%s:/models:ro" % export.parent in started and "MODEL_DIR=/models" in started


def test_a_busy_port_stops_the_container_start_before_anything_runs(docker, tmp_path, monkeypatch, capsys):
    import socket
    monkeypatch.setenv("FAKE_DOCKER_MODE", "exits")
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        assert run(holder.getsockname()[1], tmp_path) == 2
    assert "is in use by" in capsys.readouterr().err
    assert not [call for call in docker() if call[0] == "run"]


def free_port():
    from bert_in_a_flask.tools.loadtest import free_port as pick
    return pick()


def test_the_services_settings_set_here_reach_the_container(docker, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_DOCKER_MODE", "exits")
    monkeypatch.setenv("WORKERS", "2")
    monkeypatch.setenv("HOST", "0.0.0.0")  # the image's own, never passed on
    run(free_port(), tmp_path)
    started = [call for call in docker() if call[0] == "run"][0]
    assert "WORKERS=2" in started and not [arg for arg in started if arg.startswith("HOST=")]
