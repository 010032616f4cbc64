"""What a client may send and who may call: top_k / return_all_scores, unknown keys, API keys, CORS
(on a fake predictor: no TensorFlow, the fast tier)."""
import json

import pytest

from bert_in_a_flask.serving import settings
from bert_in_a_flask.serving.app import create_app
from bert_in_a_flask.shared.errors import UserError
from helpers import FakePredictor


def client_with(tmp_path, **overrides):
    overrides.setdefault("LOG_FILE", str(tmp_path / "calls.log"))
    return create_app(settings.from_env({}, **overrides), predictor=FakePredictor()).test_client()


def test_top_k_lists_the_best_labels_first(tmp_path):
    answer = client_with(tmp_path).post("/predict", json={"X": ["spring jvm", "django"], "top_k": 1}).get_json()
    assert answer["top_k"] == [[{"label": "java", "score": 0.9}], [{"label": "python", "score": 0.8}]]
    answer = client_with(tmp_path).post("/predict", json={"X": ["django"], "top_k": 5}).get_json()
    assert answer["top_k"] == [[{"label": "python", "score": 0.8}, {"label": "java", "score": 0.2}]]
    assert "probabilities" in answer  # return_all_scores defaults to true


def test_return_all_scores_false_leaves_out_the_probabilities(tmp_path):
    answer = client_with(tmp_path).post("/predict", json={"X": ["django"], "return_all_scores": False}).get_json()
    assert "probabilities" not in answer and answer["predictions"] == ["python"] and "top_k" not in answer


@pytest.mark.parametrize("body,message", [
    ({"X": ["a"], "debug": True}, 'unknown key "debug" in the body; /predict takes "X" (the list of texts), '
                                  '"top_k", "return_all_scores", "min_confidence" and "coverage"'),
    ({"x": ["a"]}, 'unknown key "x" in the body'),
    ({"X": ["a"], "top_k": 0}, '"top_k" must be a positive integer, not 0'),
    ({"X": ["a"], "top_k": "3"}, '"top_k" must be a positive integer, not "3"'),
    ({"X": ["a"], "top_k": True}, '"top_k" must be a positive integer, not true'),
    ({"X": ["a"], "top_k": 1.5}, '"top_k" must be a positive integer, not 1.5'),
    ({"X": ["a"], "return_all_scores": "no"}, '"return_all_scores" must be true or false, not "no"'),
])
def test_bad_options_are_400s_naming_the_key(tmp_path, body, message):
    response = client_with(tmp_path).post("/predict", json=body)
    assert response.status_code == 400 and response.get_json()["error"].startswith(message)


def test_without_api_keys_everything_is_open(tmp_path):
    assert client_with(tmp_path).post("/predict", json={"X": ["a"]}).status_code == 200


def test_api_keys_guard_every_route_but_health(tmp_path):
    client = client_with(tmp_path, API_KEYS="s3cret-one, s3cret-two")
    response = client.post("/predict", json={"X": ["a"]})
    assert response.status_code == 401 and response.headers["WWW-Authenticate"].startswith("Bearer")
    assert set(response.get_json()) == {"error", "request_id"} \
        and "Authorization: Bearer" in response.get_json()["error"]
    wrong = client.post("/predict", json={"X": ["a"]}, headers={"Authorization": "Bearer s3cret-on"})
    assert wrong.status_code == 401 and wrong.get_json()["error"] == "the API key is not valid"
    assert client.post("/predict", json={"X": ["a"]}, headers={"Authorization": "Basic s3cret-one"}).status_code == 401
    for key in ("s3cret-one", "s3cret-two"):
        assert client.post("/predict", json={"X": ["a"]}, headers={"Authorization": "Bearer " + key}).status_code == 200
    assert client.get("/metadata").status_code == 401 and client.get("/metrics").status_code == 401
    for path in ("/health_check", "/ready", "/openapi.json"):
        assert client.get(path).status_code == 200
    with open(str(tmp_path / "calls.log")) as handle:
        log = handle.read()
    assert "s3cret" not in log and log.count('"status": 401') == 5


def test_api_keys_from_a_file(tmp_path):
    keys = tmp_path / "keys.txt"
    keys.write_text("# team keys\nfile-key-1\n\nfile-key-2\n")
    client = client_with(tmp_path, API_KEYS_FILE=str(keys))
    assert client.post("/predict", json={"X": ["a"]}, headers={"Authorization": "Bearer file-key-2"}).status_code == 200
    assert client.post("/predict", json={"X": ["a"]},
                       headers={"Authorization": "Bearer # team keys"}).status_code == 401
    with pytest.raises(UserError, match="API_KEYS_FILE .*missing.txt does not exist"):
        client_with(tmp_path, API_KEYS_FILE=str(tmp_path / "missing.txt"))
    (tmp_path / "empty.txt").write_text("# nobody\n")
    with pytest.raises(UserError, match="holds no key"):
        client_with(tmp_path, API_KEYS_FILE=str(tmp_path / "empty.txt"))


def test_cors_answers_preflights_and_marks_answers_for_allowed_origins(tmp_path):
    client = client_with(tmp_path, CORS_ORIGINS="https://app.example.com", API_KEYS="k")
    preflight = client.options("/predict", headers={"Origin": "https://app.example.com",
                                                    "Access-Control-Request-Method": "POST",
                                                    "Access-Control-Request-Headers": "authorization, content-type"})
    assert preflight.status_code == 204  # no key needed: browsers send none with a preflight
    assert preflight.headers["Access-Control-Allow-Origin"] == "https://app.example.com"
    assert "POST" in preflight.headers["Access-Control-Allow-Methods"]
    assert "Authorization" in preflight.headers["Access-Control-Allow-Headers"]
    answer = client.post("/predict", json={"X": ["a"]}, headers={"Origin": "https://app.example.com",
                                                                  "Authorization": "Bearer k"})
    assert answer.status_code == 200 and answer.headers["Access-Control-Allow-Origin"] == "https://app.example.com"
    assert "Origin" in answer.headers["Vary"]
    other = client.options("/predict", headers={"Origin": "https://evil.example",
                                                "Access-Control-Request-Method": "POST"})
    assert other.status_code == 403 and "Access-Control-Allow-Origin" not in other.headers
    stranger = client.get("/health_check", headers={"Origin": "https://evil.example"})
    assert stranger.status_code == 200 and "Access-Control-Allow-Origin" not in stranger.headers


def test_cors_is_off_by_default_and_star_allows_any_origin(tmp_path):
    off = client_with(tmp_path).post("/predict", json={"X": ["a"]}, headers={"Origin": "https://app.example.com"})
    assert "Access-Control-Allow-Origin" not in off.headers
    star = client_with(tmp_path, CORS_ORIGINS="*").post("/predict", json={"X": ["a"]}, headers={"Origin": "https://x.y"})
    assert star.headers["Access-Control-Allow-Origin"] == "*"


def test_openapi_documents_the_options_and_the_401():
    from bert_in_a_flask.serving.openapi import spec
    predict = spec(256)["paths"]["/predict"]["post"]
    body = predict["requestBody"]["content"]["application/json"]["schema"]
    assert set(body["properties"]) == {"X", "top_k", "return_all_scores", "min_confidence", "coverage"}
    assert body["additionalProperties"] is False
    assert "401" in predict["responses"] and json.dumps(spec(256))  # serializable
