"""The Flask service on a tiny exported model: answers, errors, the call log, the endpoints."""
import csv
import json
import re

import pytest

from helpers import call_log, run_cli

pytestmark = pytest.mark.slow  # the session's trained export (a training run in a subprocess)

ORIGINAL_BODY = {"X": ["Why does my code keep throwing me null pointer exception?",
                       "I wrote a loop that i cannot exit, what am I doing wrong?"]}
TEXTS = ["how do i fix my django error?", "spring maven jvm", "react node npm", "why does the loop not work",
         "numpy pip pandas list", "gradle file error", "", "webpack " * 500]


def post(client, body, **kwargs):
    return client.post("/predict", data=json.dumps(body), content_type="application/json", **kwargs)


def test_original_request_gets_the_documented_answer(client):
    response = post(client, ORIGINAL_BODY)
    assert response.status_code == 200
    answer = response.get_json()
    # The export is calibrated, so its confidence floor applies: a text under it has no label and a reason.
    assert set(answer) == {"predictions", "prediction_probs", "probabilities", "model", "min_confidence", "reasons"}
    assert len(answer["predictions"]) == 2
    assert all(p in ("java", "javascript", "python", None) for p in answer["predictions"])
    for probs, top, label, reason in zip(answer["probabilities"], answer["prediction_probs"], answer["predictions"],
                                         answer["reasons"]):
        assert sum(probs.values()) == pytest.approx(1.0, abs=1e-5)
        assert top == max(probs.values())
        if label is None:
            assert top < answer["min_confidence"] and "under min_confidence" in reason
        else:
            assert probs[label] == top and reason is None
    assert answer["model"].startswith("bert-L2-H32-A2-uncased/")  # what the base model is, then the export
    assert response.headers["X-Request-ID"]


def test_answers_do_not_depend_on_batching(client):
    texts = (TEXTS * 13)[:100]
    together = post(client, {"X": texts}).get_json()
    alone = [post(client, {"X": [t]}).get_json() for t in TEXTS]
    for i, text in enumerate(texts):
        single = alone[TEXTS.index(text)]
        assert together["predictions"][i] == single["predictions"][0]
        for label, p in single["probabilities"][0].items():
            assert together["probabilities"][i][label] == pytest.approx(p, abs=1e-5)


def test_batch_cli_matches_the_api(client, trained, tmp_path):
    source = tmp_path / "in.csv"
    with open(str(source), "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "post"])
        writer.writerows(enumerate(TEXTS))
    result = run_cli("predict.py", ["--model", trained["export_dir"], "--input", str(source),
                                    "--output", str(tmp_path / "out.csv"), "--chunk-size", "3"])
    assert result.returncode == 0, result.stderr[-2000:]
    with open(str(tmp_path / "out.csv"), newline="") as handle:
        rows = list(csv.DictReader(handle))
    api = post(client, {"X": TEXTS}).get_json()
    assert [row["prediction"] for row in rows] == api["predictions"]
    for row, probs in zip(rows, api["probabilities"]):
        for label, p in probs.items():
            assert float(row["prob:" + label]) == pytest.approx(p, abs=1e-5)


BAD_REQUESTS = [
    ("invalid json", dict(data="{not json", content_type="application/json"), 400, "not valid JSON"),
    ("missing X", dict(data='{"texts": ["a"]}', content_type="application/json"), 400, '"X"'),
    ("body is a list", dict(data='["a"]', content_type="application/json"), 400, '"X"'),
    ("X not a list", dict(data='{"X": "a text"}', content_type="application/json"), 400, "must be a list"),
    ("non-string item", dict(data='{"X": ["ok", 3]}', content_type="application/json"), 400, '"X"[1]'),
    ("empty list", dict(data='{"X": []}', content_type="application/json"), 400, "empty"),
    ("too many texts", dict(data=json.dumps({"X": ["a"] * 257}), content_type="application/json"), 413, "at most 256"),
    ("body too large", dict(data=json.dumps({"X": ["a" * 70000]}), content_type="application/json"), 413,
     "over 65536 bytes"),
    ("wrong content type", dict(data='{"X": ["a"]}', content_type="text/plain"), 415, "application/json"),
]


@pytest.mark.parametrize("name,kwargs,status,message", BAD_REQUESTS, ids=[c[0] for c in BAD_REQUESTS])
def test_bad_input_gets_a_json_error(client, name, kwargs, status, message):
    response = client.post("/predict", headers={"X-Request-ID": "req-%s" % name.replace(" ", "-")}, **kwargs)
    assert response.status_code == status
    body = response.get_json()
    assert message in body["error"]
    assert body["request_id"] == "req-%s" % name.replace(" ", "-")


def test_wrong_method_and_unknown_path(client):
    for response, status in ((client.get("/predict"), 405), (client.post("/health_check"), 405),
                             (client.get("/nope"), 404)):
        assert response.status_code == status
        assert set(response.get_json()) == {"error", "request_id"}
        if status == 405:
            assert "GET" in response.headers["Allow"] or "POST" in response.headers["Allow"]


def test_server_fault_is_a_json_500_with_the_traceback_in_the_log(app, predictor, caplog):
    from bert_in_a_flask.serving import settings
    from bert_in_a_flask.serving.app import create_app

    class Broken(object):
        name, labels, config, export_dir = predictor.name, predictor.labels, predictor.config, predictor.export_dir
        multi_label = False

        def __init__(self):
            self.calls = 0

        def predict(self, texts, client_gone=None, min_confidence=0.0, coverage=None, max_sequences=None):
            self.calls += 1
            if self.calls > 1:  # the warm-up call passes, the request fails
                raise RuntimeError("disk on fire")
            return predictor.predict(texts)

        def confidence_floor(self, setting):
            return predictor.confidence_floor(setting)

    broken = create_app(settings.from_env({}, LOG_FILE=app.config["LOG_FILE"]), predictor=Broken()).test_client()
    response = post(broken, ORIGINAL_BODY)
    assert response.status_code == 500
    assert response.get_json()["error"] == "internal server error"
    assert "disk on fire" in caplog.text and "Traceback" in caplog.text


def test_every_call_is_logged_without_raw_text(app, client):
    post(client, ORIGINAL_BODY, headers={"X-Request-ID": "abc", "User-Agent": "pytest-agent",
                                         "X-Forwarded-For": "203.0.113.7, 10.0.0.1"})
    post(client, {"X": []})
    client.get("/nope")
    lines = call_log(app)
    assert [line["status"] for line in lines] == [200, 400, 404]
    first = lines[0]
    for field in ("time", "request_id", "method", "path", "status", "latency_ms", "n_texts", "characters",
                  "predictions", "user_ip", "user_agent", "model"):
        assert field in first
    # the peer's address: X-Forwarded-For is believed only with TRUSTED_PROXIES (test_overload)
    assert first["request_id"] == "abc" and first["user_ip"] == "127.0.0.1"
    assert first["user_agent"] == "pytest-agent" and first["n_texts"] == 2
    assert first["characters"] == sum(len(t) for t in ORIGINAL_BODY["X"])
    assert len(first["predictions"]) == 2
    raw = open(app.config["LOG_FILE"]).read()
    assert "null pointer" not in raw and "texts" not in first


def test_raw_texts_are_logged_only_when_asked(predictor, tmp_path):
    from bert_in_a_flask.serving import settings
    from bert_in_a_flask.serving.app import create_app
    app = create_app(settings.from_env({"LOG_TEXTS": "1", "LOG_FILE": str(tmp_path / "t.log")}),
                     predictor=predictor)
    post(app.test_client(), ORIGINAL_BODY)
    assert call_log(app)[-1]["texts"] == ORIGINAL_BODY["X"]


def test_service_endpoints(client, predictor):
    assert client.get("/health_check").get_json() == {"text": "I am alive"}
    assert client.get("/ready").status_code == 200
    meta = client.get("/metadata").get_json()
    assert meta["labels"] == predictor.labels and meta["max_seq_length"] == 32
    assert "eval_loss" in meta["val_metrics"] and meta["tf_version"]
    post(client, ORIGINAL_BODY)
    metrics = client.get("/metrics").get_data(as_text=True)
    assert 'api_requests_total{endpoint="/predict",status="200"} 1' in metrics
    assert "api_texts_predicted_total 2" in metrics
    assert 'api_request_latency_seconds_count{endpoint="/predict"} 1' in metrics
    spec = client.get("/openapi.json").get_json()
    routes = {re.sub(r"<(?:[^:>]+:)?([^>]+)>", r"{\1}", rule.rule) for rule in client.application.url_map.iter_rules()
              if rule.endpoint != "static"}
    assert set(spec["paths"]) == routes  # every route is documented, and nothing else
    assert {"/predict", "/v1/models/{name}:predict", "/v2/models/{name}/infer"} <= routes
