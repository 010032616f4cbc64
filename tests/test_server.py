"""The real gunicorn server on loopback: concurrency, readiness, clean stop, a killed worker, load."""
import json
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from bert_in_a_flask.tools.loadtest import Server, http, run_clients

pytestmark = pytest.mark.slow  # training runs, servers or subprocesses

TEXTS = ["how do i fix my django error?", "spring maven jvm", "react node npm"]


def test_gunicorn_serves_concurrent_clients_and_stops_cleanly(trained, tmp_path):
    server = Server(trained["export_dir"], str(tmp_path / "server.log"), WORKERS="2", THREADS="4")
    try:
        assert server.wait_ready(), server.log()[-3000:]
        body = json.dumps({"X": TEXTS}).encode()
        with ThreadPoolExecutor(max_workers=8) as pool:
            results = list(pool.map(lambda i: http(server.url + "/predict", body), range(48)))
        assert all(status == 200 for status, _ in results)
        answers = {tuple(json.loads(payload)["predictions"]) for _, payload in results}
        assert answers == {("python", "java", "javascript")}
        status, payload = http(server.url + "/predict", b'{"X": 5}')
        assert status == 400 and "request_id" in json.loads(payload)
    finally:
        code = server.stop()
    assert code == 0
    log = server.log()
    assert log.count('"path": "/predict"') >= 49  # the JSON call log, one line per request
    assert "Booting worker" in log and "Shutting down" in log


def test_server_refuses_to_start_without_a_model(tmp_path):
    server = Server(str(tmp_path / "no-models"), str(tmp_path / "server.log"))
    assert not server.wait_ready(timeout=60)
    assert server.stop() != 0
    assert "error: model folder not found: %s" % (tmp_path / "no-models") in server.log()


def test_killed_worker_is_replaced_and_the_others_keep_serving(trained, tmp_path):
    server = Server(trained["export_dir"], str(tmp_path / "server.log"), WORKERS="2", THREADS="4")
    try:
        assert server.wait_ready(), server.log()[-3000:]
        deadline = time.time() + 60
        while len(server.worker_pids()) < 2 and time.time() < deadline:
            time.sleep(0.2)
        victim, survivor = server.worker_pids()
        os.kill(victim, signal.SIGKILL)
        killed_at = time.time()
        # Load right after the kill: the surviving worker answers everything it accepts.
        latencies, failures, _ = run_clients(server.url, lambda i: [TEXTS[i % 3]], 4, 15)
        assert len(latencies) >= 50 and len(failures) <= 4, failures  # at most the kill's in-flight ones
        while time.time() - killed_at < 30:
            pids = server.worker_pids()
            if len(pids) == 2 and victim not in pids:
                break
            time.sleep(0.2)
        assert len(server.worker_pids()) == 2 and victim not in server.worker_pids() \
            and survivor in server.worker_pids()
        assert server.wait_ready(timeout=30)
        latencies, failures, _ = run_clients(server.url, lambda i: [TEXTS[i % 3]], 4, 10)
        assert failures == [] and len(latencies) == 40
        assert time.time() - killed_at < 30
    finally:
        server.stop()


def test_short_soak_has_no_failures_and_flat_memory(trained, tmp_path):
    """CI's slice of `make soak` (16 clients, a few hundred requests)."""
    from bert_in_a_flask.tools.loadtest import soak
    result = soak(trained["export_dir"], 16, 320, str(tmp_path), TEXTS)
    assert result["requests"] == 320 and result["failed"] == 0
    assert result["rss_growth_pct"] < 10, result
    assert result["p99_ms"] > 0


def test_a_setting_of_the_wrong_kind_stops_the_start_with_one_line(tmp_path):
    server = Server(str(tmp_path / "no-models"), str(tmp_path / "server.log"), WORKERS="two")
    assert not server.wait_ready(timeout=60)
    assert server.stop() == 2
    log = server.log()
    assert log.strip().splitlines() == ["error: WORKERS must be a positive integer, not 'two'"], log[-2000:]
