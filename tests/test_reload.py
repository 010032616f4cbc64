"""Hot reload under a real gunicorn worker: a newer export goes live while 8 clients keep sending,
no request fails, each answer comes from one whole model; a broken export never goes live; and
MODEL_VERSION pins one."""
import json
import os
import shutil
import threading
import time

import pytest

from bert_in_a_flask.tools.loadtest import Server, http, predict, wait_for

pytestmark = pytest.mark.slow  # gunicorn servers on loopback

TEXTS = ["spring maven jvm", "numpy pip pandas list", "react node npm"]


def copy_export(source, root, stamp, upper_labels=False):
    """A copy of `source` as <root>/<stamp>, made under a temp name and renamed (as the trainer does).
    With upper_labels its labels are renamed ("java" -> "JAVA"): another model, told apart by its answers."""
    tmp = os.path.join(root, "temp-%s" % stamp)
    shutil.copytree(source, tmp)
    if upper_labels:
        path = os.path.join(tmp, "assets.extra", "labels.json")
        with open(path) as handle:
            labels = json.load(handle)
        with open(path, "w") as handle:
            json.dump([label.upper() for label in labels], handle)
    os.rename(tmp, os.path.join(root, stamp))
    return os.path.join(root, stamp)


def version(server):
    status, body = http(server.url + "/metadata")
    return json.loads(body.decode())["version"] if status == 200 else None


def test_a_newer_export_goes_live_without_a_failed_request(trained, tmp_path):
    root = str(tmp_path / "exports")
    os.makedirs(root)
    copy_export(trained["export_dir"], root, "1700000001")
    server = Server(root, str(tmp_path / "api.log"), MODEL_POLL_S="0.5", THREADS="16")
    try:
        assert server.wait_ready(), server.log()[-3000:]
        answers, stop, lock = [], threading.Event(), threading.Lock()

        def client(number):
            for _ in range(2000):  # bounded; stopped much earlier
                if stop.is_set():
                    return
                status, body = predict(server.url, TEXTS)
                with lock:
                    answers.append((status, json.loads(body.decode()) if status == 200 else body, number))

        clients = [threading.Thread(target=client, args=(number,)) for number in range(8)]
        for thread in clients:
            thread.start()
        time.sleep(2)
        copy_export(trained["export_dir"], root, "1700000002", upper_labels=True)
        switched = wait_for(lambda: version(server) == "1700000002", timeout=90)
        time.sleep(2)  # keep sending on the new model
        broken = os.path.join(root, "1700000003")
        shutil.copytree(os.path.join(root, "1700000002"), broken)
        with open(os.path.join(broken, "saved_model.pb"), "wb") as handle:
            handle.write(b"not a SavedModel")
        os.remove(os.path.join(broken, "model.onnx"))
        skipped = wait_for(lambda: "skipping export %s: it cannot serve" % broken in server.log(), timeout=30)
        time.sleep(1)
        stop.set()
        for thread in clients:
            thread.join(120)
        assert switched, server.log()[-3000:]
        assert skipped, server.log()[-3000:]
        assert version(server) == "1700000002"  # the broken one never went live
    finally:
        server.stop()
    failures = [answer for answer in answers if answer[0] != 200]
    assert not failures, failures[:3]
    before = [a for _, a, _ in answers if "/1700000001 " in a["model"]]
    after = [a for _, a, _ in answers if "/1700000002 " in a["model"]]
    assert len(before) > 10 and len(after) > 10 and len(before) + len(after) == len(answers)
    assert all(a["predictions"] == ["java", "python", "javascript"] for a in before)
    assert all(a["predictions"] == ["JAVA", "PYTHON", "JAVASCRIPT"] for a in after)
    # once a client got an answer from the new model, it never gets one from the old model again
    for number in range(8):
        versions = ["/1700000002 " in a["model"] for _, a, n in answers if n == number]
        assert versions == sorted(versions), (number, versions)


def test_model_version_pins_an_export(trained, tmp_path):
    root = str(tmp_path / "exports")
    os.makedirs(root)
    copy_export(trained["export_dir"], root, "1700000001")
    copy_export(trained["export_dir"], root, "1700000002", upper_labels=True)
    server = Server(root, str(tmp_path / "api.log"), MODEL_VERSION="1700000001", MODEL_POLL_S="0.5")
    try:
        assert server.wait_ready(), server.log()[-3000:]
        meta = json.loads(http(server.url + "/metadata")[1].decode())
        assert meta["version"] == "1700000001" and meta["hot_reload"]["pinned_version"] == "1700000001"
        time.sleep(1.5)
        assert predict(server.url, TEXTS)[0] == 200 and version(server) == "1700000001"
    finally:
        server.stop()
    server = Server(root, str(tmp_path / "bad.log"), MODEL_VERSION="1600000000")
    try:
        assert not server.wait_ready(timeout=120)
        assert server.process.wait(60) != 0
        assert "error: MODEL_VERSION=1600000000, but %s/1600000000 is not an export" % root in server.log()
    finally:
        server.stop()
