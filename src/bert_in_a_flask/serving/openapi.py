"""The OpenAPI 3 description served at /openapi.json."""
from ..shared.calibration import COVERAGE_LEVELS

_ERROR = {"$ref": "#/components/schemas/Error"}


def _json(schema, description):
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*codes):
    words = {503: "Model still loading, or no forward pass within PREDICT_TIMEOUT_S",
             429: "This worker's queue is full (MAX_PENDING_TEXTS): retry after Retry-After seconds",
             400: "Malformed request", 401: "Missing or invalid API key (when API_KEYS is set)", 404: "Unknown path",
             405: "Method not allowed",
             413: "Too many texts or body too large", 415: "Body is not JSON", 500: "Server fault"}
    return {str(code): _json(_ERROR, words[code]) for code in codes}


def spec(max_texts, docs_page=False):
    """The description; `docs_page`: the app serves /docs (DOCS_PAGE), so it is described too."""
    predict_request = {
        "type": "object", "required": ["X"], "additionalProperties": False,  # an unknown key is a 400
        # The text-count limit is a size limit (413), not a schema rule, so it is described, not maxItems.
        "properties": {"X": {"type": "array", "minItems": 1, "items": {"type": "string"},
                             "description": "texts to classify, at most %d (more: 413)" % max_texts},
                       "top_k": {"type": "integer", "minimum": 1, "nullable": True,
                                 "description": "also answer the k best labels per text, best first (null: no)"},
                       "return_all_scores": {"type": "boolean", "default": True,
                                             "description": "false: leave out `probabilities`"},
                       "min_confidence": {"type": "number", "minimum": 0, "maximum": 1, "nullable": True,
                                          "description": "texts whose top probability is under this get "
                                                         "prediction null and a reason (null: MIN_CONFIDENCE; "
                                                         "a 400 for a multi-label export)"},
                       "coverage": {"type": "number", "nullable": True, "enum": list(COVERAGE_LEVELS) + [None],
                                    "description": "also answer per text the smallest set of labels that holds "
                                                   "the true one with this probability (split conformal); one of "
                                                   "/metadata's coverage_levels (a calibrated export stores these; "
                                                   "a multi-label export has none)"}},
    }
    predict_response = {
        "type": "object", "required": ["predictions", "prediction_probs", "model"],
        "properties": {
            "predictions": {"type": "array", "items": {
                "oneOf": [{"type": "string", "nullable": True}, {"type": "array", "items": {"type": "string"}}]},
                            "description": "the top label, or null when its probability is under min_confidence; "
                                           "a multi-label export: the list of labels chosen (possibly empty)"},
            "min_confidence": {"type": "number", "description": "the floor applied (present when above 0)"},
            "reasons": {"type": "array", "items": {"type": "string", "nullable": True},
                        "description": "why a prediction is null (null where it is not)"},
            "coverage": {"type": "number"},
            "prediction_sets": {"type": "array", "items": {"type": "array", "items": {"type": "string"}},
                                "description": "with coverage: the labels of each text's conformal set"},
            "prediction_probs": {"type": "array", "items": {"oneOf": [
                {"type": "number", "minimum": 0, "maximum": 1},
                {"type": "array", "items": {"type": "number", "minimum": 0, "maximum": 1}}]},
                                 "description": "the top label's probability (multi-label: the chosen labels')"},
            "probabilities": {"type": "array", "items": {"type": "object",
                                                         "additionalProperties": {"type": "number"}}},
            "top_k": {"type": "array", "items": {"type": "array", "items": {
                "type": "object", "required": ["label", "score"],
                "properties": {"label": {"type": "string"}, "score": {"type": "number"}}}}},
            "model": {"type": "string"},
        },
    }
    plain = {"type": "object"}
    texts = {"type": "array", "minItems": 1, "items": {"type": "string"}}
    name = [{"name": "name", "in": "path", "required": True, "schema": {"type": "string"},
             "description": "MODEL_NAME (default bert); another name is a 404"}]
    paths = {
        "/v1/models/{name}:predict": {"post": {
            "summary": "TensorFlow Serving REST predict (serve_text outputs)", "parameters": name,
            "requestBody": {"required": True, "content": {"application/json": {"schema": {
                "type": "object", "additionalProperties": False,
                "oneOf": [{"required": ["instances"]}, {"required": ["inputs"]}],  # exactly one of them
                "properties": {"instances": texts,
                               "inputs": {"oneOf": [texts, {"type": "object", "required": ["text"],
                                                            "additionalProperties": False,
                                                            "properties": {"text": texts}}]},
                               "signature_name": {"type": "string", "enum": ["serve_text", "serving_default"]}}}}}},
            "responses": dict({"200": _json(plain, '{"predictions": [...]} or {"outputs": {...}}')},
                              **_errors(400, 401, 404, 405, 413, 415, 429, 500, 503))}},
        "/v1/models/{name}": {"get": {
            "summary": "TensorFlow Serving model status", "parameters": name,
            "responses": dict({"200": _json(plain, "model_version_status")}, **_errors(401, 404, 405))}},
        "/v2/health/live": {"get": {"summary": "Open inference protocol v2: liveness",
                                    "responses": dict({"200": _json(plain, "Live")}, **_errors(405))}},
        "/v2/health/ready": {"get": {"summary": "Open inference protocol v2: readiness", "responses": dict(
            {"200": _json(plain, "Ready"), "503": _json(plain, "Not ready")}, **_errors(405))}},
        "/v2/models/{name}": {"get": {
            "summary": "Open inference protocol v2: model metadata", "parameters": name,
            "responses": dict({"200": _json(plain, "Metadata")}, **_errors(401, 404, 405, 503))}},
        "/v2/models/{name}/ready": {"get": {
            "summary": "Open inference protocol v2: model readiness", "parameters": name,
            "responses": dict({"200": _json(plain, "Ready"), "503": _json(plain, "Not ready")},
                              **_errors(401, 404, 405))}},
        "/v2/models/{name}/infer": {"post": {
            "summary": "Open inference protocol v2: infer (one BYTES input named text)", "parameters": name,
            "requestBody": {"required": True, "content": {"application/json": {"schema": {
                "type": "object", "required": ["inputs"], "additionalProperties": False,
                "properties": {"id": {"type": "string"},
                               "parameters": {"type": "object", "additionalProperties": False, "properties": {
                                   "min_confidence": dict(predict_request["properties"]["min_confidence"]),
                                   "binary_data_output": {"type": "boolean",
                                                          "description": "accepted; the answer is JSON"}}},
                               "outputs": {"type": "array", "items": {
                                   "type": "object", "required": ["name"],
                                   "properties": {"name": {"type": "string",
                                                           "enum": ["label", "score", "probabilities",
                                                                    "accepted", "predicted"],
                                                           "description": "predicted: a multi-label "
                                                                          "export's only"}}}},
                               "inputs": {"type": "array", "minItems": 1, "maxItems": 1, "items": {
                                   "type": "object", "required": ["name", "datatype", "shape", "data"],
                                   "properties": {"name": {"type": "string", "enum": ["text"]},
                                                  "datatype": {"type": "string", "enum": ["BYTES"]},
                                                  "shape": {"type": "array", "items": {"type": "integer"},
                                                            "description": "informational; the data's length counts"},
                                                  "data": texts}}}}}}}},
            "responses": dict({"200": _json(plain, "label, score, probabilities and accepted tensors")},
                              **_errors(400, 401, 404, 405, 413, 415, 429, 500, 503))}},
    }
    version = [{"name": "version", "in": "path", "required": True, "schema": {"type": "string"},
                "description": "the export served (its timestamp); another one is a 404"}]
    for plain_path, versioned in (("/v1/models/{name}:predict", "/v1/models/{name}/versions/{version}:predict"),
                                  ("/v2/models/{name}/infer", "/v2/models/{name}/versions/{version}/infer")):
        operation = dict(paths[plain_path]["post"], parameters=name + version)
        paths[versioned] = {"post": dict(operation, summary=operation["summary"] + ", for one version")}
    return {
        "openapi": "3.0.3",
        "info": {"title": "bert-in-a-flask", "version": "1.0.0",
                 "description": "Multi-class text classification with a fine-tuned BERT."},
        "paths": {
            "/predict": {"post": {
                "summary": "Classify texts",
                "requestBody": {"required": True, "content": {"application/json": {"schema": predict_request}}},
                "responses": dict({"200": _json(predict_response, "One answer per text, in order")},
                                  **_errors(400, 401, 405, 413, 415, 429, 500, 503))}},
            "/health_check": {"get": {"summary": "Liveness", "responses": dict(
                {"200": _json({"type": "object", "required": ["text"],
                               "properties": {"text": {"type": "string"}}}, "Alive")}, **_errors(405))}},
            "/ready": {"get": {"summary": "Readiness: 200 once the model is loaded and warmed up",
                               "responses": dict({"200": _json(plain, "Ready"), "503": _json(plain, "Not ready")},
                                                 **_errors(405))}},
            "/metadata": {"get": {"summary": "Labels, model provenance and metrics, versions",
                                  "responses": dict({"200": _json(plain, "Metadata")}, **_errors(401, 405))}},
            "/metrics": {"get": {"summary": "Prometheus metrics, added up over the server's workers", "responses": dict(
                {"200": {"description": "Prometheus text format",
                         "content": {"text/plain": {"schema": {"type": "string"}}}}}, **_errors(401, 405))}},
            "/openapi.json": {"get": {"summary": "This document",
                                      "responses": dict({"200": _json(plain, "OpenAPI 3")}, **_errors(405))}},
            **paths,
            **(_docs_page_paths() if docs_page else {}),
        },
        "components": {
            "schemas": {"Error": {
                "type": "object", "required": ["error", "request_id"],
                "properties": {"error": {"type": "string"}, "request_id": {"type": "string"}}}},
            # Only enforced when the server has API_KEYS; /health_check, /ready and this document stay open.
            "securitySchemes": {"apiKey": {"type": "http", "scheme": "bearer"}}},
    }


def _docs_page_paths():
    return {
        "/docs": {"get": {"summary": "This document as a page (Swagger UI)", "responses": dict(
            {"200": {"description": "HTML", "content": {"text/html": {"schema": {"type": "string"}}}}},
            **_errors(405))}},
        "/docs/assets/{name}": {"get": {
            "summary": "The page's files (Swagger UI's own)",
            "parameters": [{"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}],
            "responses": dict({"200": {"description": "a file"}}, **_errors(404, 405))}},
    }
