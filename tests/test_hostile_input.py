"""A table of malformed and hostile requests: each gets a 4xx JSON error with a request id (or a
correct 200 where the input is valid), and the service keeps answering afterwards."""
import json

import pytest

from bert_in_a_flask.serving.api import ROUTES

pytestmark = pytest.mark.slow  # the session's trained export (a training run in a subprocess)

J = "application/json"
VALID = {"X": ["spring maven jvm"]}
CASES = [
    # (name, body bytes, content type, expected status)
    ("empty body", b"", J, 400),
    ("whitespace body", b"   ", J, 400),
    ("truncated json", b'{"X": ["a"', J, 400),
    ("trailing garbage", b'{"X": ["a"]} xyz', J, 400),
    ("single quotes", b"{'X': ['a']}", J, 400),
    ("json null", b"null", J, 400),
    ("json number", b"42", J, 400),
    ("json string", b'"X"', J, 400),
    ("json list", b'[["a"]]', J, 400),
    ("X null", b'{"X": null}', J, 400),
    ("X number", b'{"X": 1}', J, 400),
    ("X object", b'{"X": {"a": "b"}}', J, 400),
    ("X string", b'{"X": "just one text"}', J, 400),
    ("X bool", b'{"X": true}', J, 400),
    ("item null", b'{"X": [null]}', J, 400),
    ("item number", b'{"X": ["ok", 1.5]}', J, 400),
    ("item list", b'{"X": [["nested"]]}', J, 400),
    ("item object", b'{"X": [{"text": "a"}]}', J, 400),
    ("item bool", b'{"X": [false]}', J, 400),
    ("empty list", b'{"X": []}', J, 400),
    ("lower-case key", b'{"x": ["a"]}', J, 400),
    ("invalid utf-8", b'{"X": ["\xff\xfe bad"]}', J, 400),
    ("latin-1 body", '{"X": ["café"]}'.encode("latin-1"), J, 400),
    ("deep nesting", b'{"X": ' + b"[" * 100000 + b"]" * 100000 + b"}", J, 400),
    ("10,000 texts", json.dumps({"X": ["a"] * 10000}).encode(), J, 413),
    ("1 MB string", json.dumps({"X": ["a" * (1 << 20)]}).encode(), J, 413),
    ("text/plain", json.dumps(VALID).encode(), "text/plain", 415),
    ("form encoded", b"X=a", "application/x-www-form-urlencoded", 415),
    ("no content type", json.dumps(VALID).encode(), None, 415),
    ("null bytes in text", json.dumps({"X": ["a\u0000b", "\u0000"]}).encode(), J, 200),
    ("emoji", json.dumps({"X": ["why does 🐍 crash 💥🔥"]}).encode(), J, 200),
    ("right-to-left", json.dumps({"X": ["\u05dc\u05de\u05d4 \u202e react npm",
                                        "\u0644\u0645\u0627\u0630\u0627"]}).encode(), J, 200),
    ("control chars", json.dumps({"X": ["\t\r\n\x0b\x1b[31m red"]}).encode(), J, 200),
    ("empty string", json.dumps({"X": [""]}).encode(), J, 200),
    ("unknown keys", json.dumps({"X": ["node"], "debug": True, "__proto__": {}}).encode(), J, 400),
    ("utf-8 with BOM", b"\xef\xbb\xbf" + json.dumps(VALID).encode(), J, 400),
    ("long text under the limit", json.dumps({"X": ["react " * 5000]}).encode(), J, 200),
    ("charset param", json.dumps(VALID).encode(), "application/json; charset=utf-8", 200),
]


@pytest.fixture
def roomy_client(predictor, tmp_path):
    from bert_in_a_flask.serving import settings
    from bert_in_a_flask.serving.app import create_app
    return create_app(settings.from_env({}, LOG_FILE=str(tmp_path / "calls.log"),
                                        MAX_CONTENT_LENGTH=256 * 1024), predictor=predictor).test_client()


@pytest.mark.parametrize("name,body,content_type,status", CASES, ids=[c[0] for c in CASES])
def test_hostile_request(roomy_client, name, body, content_type, status):
    headers = {"X-Request-ID": "hostile-%d" % CASES.index(next(c for c in CASES if c[0] == name))}
    if content_type:
        headers["Content-Type"] = content_type
    response = roomy_client.post("/predict", data=body, headers=headers)
    assert response.status_code == status, response.get_data(as_text=True)[:500]
    answer = response.get_json()
    if status == 200:
        n = len(json.loads(body.decode("utf-8"))["X"])
        assert len(answer["predictions"]) == n and len(answer["probabilities"]) == n
        for probs in answer["probabilities"]:
            assert sum(probs.values()) == pytest.approx(1.0, abs=1e-5)
    else:
        assert set(answer) == {"error", "request_id"} and answer["error"]
        assert answer["request_id"] == headers["X-Request-ID"]
    # still serving
    assert roomy_client.get("/health_check").status_code == 200
    assert roomy_client.post("/predict", json=VALID).status_code == 200


METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD"]


@pytest.mark.parametrize("path", sorted(ROUTES) + ["/", "/predict/", "/../etc/passwd", "/%00"])
def test_every_method_on_every_path(roomy_client, path):
    for method in METHODS:
        response = roomy_client.open(path, method=method, data=b"{}", content_type=J)
        allowed = ROUTES.get(path, [])
        if method in allowed or (method == "HEAD" and "GET" in allowed) or method == "OPTIONS" and allowed:
            assert response.status_code < 500
            continue
        if path == "/predict" and method == "POST":
            continue
        assert response.status_code in (404, 405, 308), (method, path, response.status_code)
        if method != "HEAD" and response.status_code != 308:
            assert set(response.get_json()) == {"error", "request_id"}
