"""TF Serving's REST and KServe's open inference protocol v2, answered in their own documented shapes
(a fake predictor for the shapes and errors; the real tiny export for the labels)."""
import pytest

from bert_in_a_flask.serving import settings
from bert_in_a_flask.serving.app import create_app
from helpers import FakePredictor


@pytest.fixture
def fake(tmp_path):
    return create_app(settings.from_env({}, LOG_FILE=str(tmp_path / "calls.log"), MAX_TEXTS=3),
                      predictor=FakePredictor()).test_client()


def test_tf_serving_row_and_columnar_formats(fake):
    rows = fake.post("/v1/models/bert:predict", json={"instances": ["spring jvm", "django"]}).get_json()
    assert rows == {"predictions": [{"label": "java", "score": 0.9, "probabilities": [0.9, 0.1], "accepted": True},
                                    {"label": "python", "score": 0.8, "probabilities": [0.2, 0.8],
                                     "accepted": True}]}
    columns = fake.post("/v1/models/bert:predict", json={"inputs": ["spring jvm"], "signature_name": "serve_text"})
    assert columns.get_json() == {"outputs": {"label": ["java"], "score": [0.9], "probabilities": [[0.9, 0.1]],
                                              "accepted": [True]}}
    named = fake.post("/v1/models/bert:predict", json={"inputs": {"text": ["django"]}}).get_json()
    assert named["outputs"]["label"] == ["python"]
    versioned = fake.post("/v1/models/bert/versions/1700000000:predict", json={"instances": ["django"]})
    assert versioned.status_code == 200
    status = fake.get("/v1/models/bert").get_json()
    assert status == {"model_version_status": [{"version": "1700000000", "state": "AVAILABLE",
                                                "status": {"error_code": "OK", "error_message": ""}}]}


@pytest.mark.parametrize("path,body,status,message", [
    ("/v1/models/other:predict", {"instances": ["a"]}, 404, "no model named 'other' here"),
    ("/v1/models/bert/versions/42:predict", {"instances": ["a"]}, 404, "has no version '42' loaded"),
    ("/v1/models/bert:predict", {"instances": ["a"], "inputs": ["a"]}, 400, 'either "instances"'),
    ("/v1/models/bert:predict", {}, 400, 'either "instances"'),
    ("/v1/models/bert:predict", {"instances": ["a"], "debug": 1}, 400, "unknown key 'debug'"),
    ("/v1/models/bert:predict", {"instances": ["a"], "signature_name": "x"}, 400, "signature_name must be serve_text"),
    ("/v1/models/bert:predict", {"instances": ["a", 3]}, 400, '"instances"[1] must be a string'),
    ("/v1/models/bert:predict", {"instances": ["a"] * 4}, 413, "at most 3 per request"),
    ("/v1/models/bert:predict", {"inputs": {"ids": [1]}}, 400, 'must name the one input "text"'),
    ("/v2/models/bert/infer", {"inputs": [{"name": "text", "datatype": "INT32", "shape": [1], "data": ["a"]}]},
     400, 'named "text" with datatype "BYTES"'),
    ("/v2/models/bert/infer", {"inputs": []}, 400, '"inputs" must be a list with one tensor'),
    ("/v2/models/bert/infer", {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": ["a"]}],
                               "outputs": [{"name": "logits"}]}, 400, '"outputs" must list some of'),
    ("/v2/models/nope/infer", {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": ["a"]}]},
     404, "no model named 'nope'"),
    ("/v2/models/bert/infer", {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": ["a"]}],
                               "id": 7}, 400, '"id" must be a string'),
    ("/v2/models/bert/infer", {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": ["a"]}],
                               "parameters": 7}, 400, '"parameters" must be an object'),
    ("/v2/models/bert/infer", {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": ["a"]}],
                               "parameters": {"coverage": 0.9}}, 400, "unknown parameter 'coverage'"),
    ("/v2/models/bert/infer", {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": ["a"]}],
                               "parameters": {"binary_data_output": "yes"}}, 400, '"binary_data_output" must be'),
    ("/v2/models/bert/infer", {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": ["a"]}],
                               "parameters": {"min_confidence": "abc"}}, 400,
     '"min_confidence" must be a number in [0, 1], not "abc"'),
])
def test_protocol_errors_keep_our_json_shape(fake, path, body, status, message):
    response = fake.post(path, json=body, headers={"X-Request-ID": "r-1"})
    assert response.status_code == status, response.get_data(as_text=True)
    answer = response.get_json()
    assert set(answer) == {"error", "request_id"} and message in answer["error"] and answer["request_id"] == "r-1"


def test_open_inference_protocol_v2(fake):
    assert fake.get("/v2/health/live").get_json() == {"live": True}
    assert fake.get("/v2/health/ready").get_json() == {"ready": True}
    assert fake.get("/v2/models/bert/ready").get_json() == {"name": "bert", "ready": True}
    meta = fake.get("/v2/models/bert").get_json()
    assert meta["name"] == "bert" and meta["versions"] == ["1700000000"]
    assert meta["inputs"] == [{"name": "text", "datatype": "BYTES", "shape": [-1]}]
    assert [o["name"] for o in meta["outputs"]] == ["label", "score", "probabilities", "accepted"]
    body = {"id": "q-7", "inputs": [{"name": "text", "datatype": "BYTES", "shape": [2], "data": ["spring jvm", "x"]}]}
    answer = fake.post("/v2/models/bert/infer", json=body).get_json()
    assert answer["id"] == "q-7" and answer["model_name"] == "bert" and answer["model_version"] == "1700000000"
    assert answer["outputs"] == [
        {"name": "label", "datatype": "BYTES", "shape": [2], "data": ["java", "python"]},
        {"name": "score", "datatype": "FP32", "shape": [2], "data": [0.9, 0.8]},
        {"name": "probabilities", "datatype": "FP32", "shape": [2, 2], "data": [0.9, 0.1, 0.2, 0.8]},
        {"name": "accepted", "datatype": "BOOL", "shape": [2], "data": [True, True]}]
    body["outputs"] = [{"name": "score"}]
    assert [o["name"] for o in fake.post("/v2/models/bert/infer", json=body).get_json()["outputs"]] == ["score"]


def test_a_text_under_the_servers_floor_has_no_label_on_both_protocols(tmp_path):
    """MIN_CONFIDENCE 0.85: "x" (python, 0.8) is not accepted; TF Serving says null, v2 the empty label."""
    client = create_app(settings.from_env({"MIN_CONFIDENCE": "0.85"}, LOG_FILE=str(tmp_path / "calls.log")),
                        predictor=FakePredictor()).test_client()
    rows = client.post("/v1/models/bert:predict", json={"instances": ["spring jvm", "x"]}).get_json()["predictions"]
    assert [(row["label"], row["accepted"], row["score"]) for row in rows] == [("java", True, 0.9), (None, False, 0.8)]
    body = {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [2], "data": ["spring jvm", "x"]}],
            "outputs": [{"name": "label"}, {"name": "accepted"}]}
    label, accepted = client.post("/v2/models/bert/infer", json=body).get_json()["outputs"]
    assert label["data"] == ["java", ""] and accepted["data"] == [True, False]


def test_a_v2_request_sets_its_own_floor(tmp_path):
    """parameters.min_confidence is the request's floor on v2, as min_confidence is on /predict."""
    client = create_app(settings.from_env({"MIN_CONFIDENCE": "0.85"}, LOG_FILE=str(tmp_path / "calls.log")),
                        predictor=FakePredictor()).test_client()
    body = {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [2], "data": ["spring jvm", "x"]}],
            "outputs": [{"name": "label"}, {"name": "accepted"}]}
    lower = client.post("/v2/models/bert/infer", json=dict(body, parameters={"min_confidence": 0.5})).get_json()
    assert [tensor["data"] for tensor in lower["outputs"]] == [["java", "python"], [True, True]]
    higher = client.post("/v2/models/bert/infer", json=dict(body, parameters={"min_confidence": 0.95})).get_json()
    assert [tensor["data"] for tensor in higher["outputs"]] == [["", ""], [False, False]]
    server = client.post("/v2/models/bert/infer", json=dict(body, parameters={"min_confidence": None})).get_json()
    assert [tensor["data"] for tensor in server["outputs"]] == [["java", ""], [True, False]]
    off = client.post("/v2/models/bert/infer", json=dict(body, parameters={"min_confidence": 0})).get_json()
    assert [tensor["data"] for tensor in off["outputs"]] == [["java", "python"], [True, True]]
    triton = dict(body, parameters={"binary_data_output": True})  # what tritonclient sends, naming no outputs
    assert client.post("/v2/models/bert/infer", json=triton).get_json()["outputs"][0]["data"] == ["java", ""]


def test_protocol_calls_are_logged_and_counted_by_route(fake, tmp_path):
    import json
    fake.post("/v1/models/bert:predict", json={"instances": ["spring jvm"]})
    with open(str(tmp_path / "calls.log")) as handle:
        entry = json.loads(handle.read().splitlines()[-1])
    assert entry["path"] == "/v1/models/bert:predict" and entry["predictions"] == ["java"] and entry["n_texts"] == 1
    assert 'endpoint="/v1/models/<model_name:name>:predict"' in fake.get("/metrics").get_data(as_text=True)


@pytest.mark.slow  # the session's trained export
def test_the_three_protocols_give_the_labels_predict_gives(client):
    texts = ["how do i fix my django error?", "spring maven jvm", "react node npm", "", "pourquoi mon café 🐍"]
    expected = client.post("/predict", json={"X": texts}).get_json()["predictions"]
    rows = client.post("/v1/models/bert:predict", json={"instances": texts}).get_json()["predictions"]
    assert [row["label"] for row in rows] == expected
    body = {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [len(texts)], "data": texts}]}
    outputs = client.post("/v2/models/bert/infer", json=body).get_json()["outputs"]
    assert outputs[0]["data"] == expected
