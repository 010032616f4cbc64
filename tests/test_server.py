"""The real gunicorn server on loopback: concurrent requests, readiness, clean stop, refusal to start."""
import json
from concurrent.futures import ThreadPoolExecutor

from server import Server, http

TEXTS = ["how do i fix my django error?", "spring maven jvm", "react node npm"]


def test_gunicorn_serves_concurrent_clients_and_stops_cleanly(trained, tmp_path):
    server = Server(trained["export_dir"], tmp_path, WORKERS="2", THREADS="4")
    try:
        assert server.wait_ready(), server.log()[-3000:]
        body = json.dumps({"X": TEXTS}).encode()

        def one_call(i):
            return http(server.url + "/predict", body)

        with ThreadPoolExecutor(max_workers=8) as pool:
            results = list(pool.map(one_call, range(48)))
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
    server = Server(str(tmp_path / "no-models"), tmp_path)
    assert not server.wait_ready(timeout=60)
    code = server.stop()
    assert code != 0
    assert "error: model folder not found: %s" % (tmp_path / "no-models") in server.log()
