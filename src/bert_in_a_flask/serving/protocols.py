"""The serving world's request shapes beside our /predict, on whichever backend serves:

    TensorFlow Serving REST (https://www.tensorflow.org/tfx/serving/api_rest)
        POST /v1/models/<model_name:name>:predict
                                            {"instances": [texts]}  -> {"predictions": [{label, score,
                                                                        probabilities, accepted}]}
                                            {"inputs": [texts]}     -> {"outputs": {label: [..], score: [..],
                                                                                    probabilities: [[..]],
                                                                                    accepted: [..]}}
        POST /v1/models/<name>/versions/<version>:predict   the same, for the version served
        GET  /v1/models/<name>              {"model_version_status": [{"version", "state", "status"}]}
    KServe / open inference protocol v2 (https://kserve.github.io/website/latest/modelserving/data_plane/v2_protocol/)
        GET  /v2/health/live, /v2/health/ready, /v2/models/<name>, /v2/models/<name>/ready
        POST /v2/models/<name>/infer        one BYTES input "text" -> BYTES "label", FP32 "score",
                                            FP32 "probabilities" [n, labels] (row-major data), BOOL "accepted";
                                            "parameters": {"min_confidence": x} sets the floor, as on /predict

The outputs are the export's `serve_text` signature's (labels in labels.json order). `accepted` is
false where the score is under the confidence floor (MIN_CONFIDENCE's, or a v2 request's); that
text's label is null (TF Serving) or "" (v2, whose BYTES tensors have no null). A multi-label export answers as its
serve_text does: `label` the chosen labels joined by the export's separator ("" for none), `accepted`
whether any was chosen, and `predicted` [n, labels] booleans (v2: BOOL). <name> is
MODEL_NAME; another name is a 404. Errors keep our JSON shape ({"error", "request_id"}).
"""
import os

from flask import Blueprint, current_app, g, jsonify
from werkzeug.routing import BaseConverter

from ..shared.errors import UserError
from .api import (client_gone_probe, leased_predictor, offered_by, parse_calibrated_options, readiness,
                  read_json_body)
from .slot import model_name

protocols = Blueprint("protocols", __name__)


class ModelNameConverter(BaseConverter):
    """<model_name:name>: a path segment without ':', so /v1/models/x:predict is never the status route."""
    regex = "[^/:]+"


@protocols.record_once
def register_converter(state):
    state.app.url_map.converters["model_name"] = ModelNameConverter


def served(name, version=None):
    """The predictor for a request naming model `name` (and `version`), or a 404."""
    if name != current_app.config["MODEL_NAME"]:
        raise UserError("no model named %r here (this server's MODEL_NAME is %r)"
                        % (name, current_app.config["MODEL_NAME"]), 404)
    predictor = g.predictor = leased_predictor()
    if version is not None and version != os.path.basename(predictor.export_dir):
        raise UserError("model %r has no version %r loaded (serving %s)"
                        % (name, version, os.path.basename(predictor.export_dir)), 404)
    return predictor


def checked_texts(texts, where):
    """A non-empty list of at most MAX_TEXTS strings, or a 400/413 naming `where`."""
    if not isinstance(texts, list) or not texts:
        raise UserError("%s must be a non-empty list of strings" % where)
    limit = current_app.config["MAX_TEXTS"]
    if len(texts) > limit:
        raise UserError("%s has %d texts; at most %d per request" % (where, len(texts), limit), 413)
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise UserError("%s[%d] must be a string, not %s" % (where, i, type(text).__name__))
    return texts


def body_object(allowed):
    body = read_json_body(current_app.config["MAX_CONTENT_LENGTH"])
    if not isinstance(body, dict):
        raise UserError("the body must be a JSON object")
    unknown = [key for key in body if key not in allowed]
    if unknown:
        raise UserError("unknown key %r in the body; this route takes %s" % (unknown[0], ", ".join(allowed)))
    return body


def classify(predictor, texts, floor=None):
    """The serve_text outputs of `texts` as columns {label, score, probabilities (rows in label order),
    accepted (+ predicted, multi-label)}, logged like /predict's. A text whose score is under `floor`
    (None: the server's, MIN_CONFIDENCE) is not accepted: its label is None."""
    probabilities = predictor.predict_proba(texts, client_gone_probe(), current_app.config["MAX_TEXTS"])
    scores = [float(score) for score in probabilities.max(axis=1)]
    g.n_texts, g.characters = len(texts), sum(len(t) for t in texts)
    if predictor.multi_label:
        return multi_label_columns(predictor, probabilities, scores)
    best = probabilities.argmax(axis=1)
    if floor is None:
        floor = predictor.confidence_floor(current_app.config["MIN_CONFIDENCE"])
    accepted = [score >= floor for score in scores]
    labels = [predictor.labels[i] if ok else None for i, ok in zip(best, accepted)]
    g.predictions = labels
    return {"label": labels, "score": scores, "probabilities": probabilities.tolist(), "accepted": accepted}


def multi_label_columns(predictor, probabilities, scores):
    """serve_text's multi-label outputs: the chosen labels joined in label order, as the graph joins them."""
    chosen = predictor.chosen_labels(probabilities)
    g.predictions = [[predictor.labels[i] for i in row] for row in chosen]
    predicted = [[False] * len(predictor.labels) for _ in chosen]
    for flags, row in zip(predicted, chosen):
        for i in row:
            flags[i] = True
    separator = predictor.config.label_separator
    return {"label": [separator.join(label for label, flag in zip(predictor.labels, flags) if flag)
                      for flags in predicted],
            "score": scores, "probabilities": probabilities.tolist(), "accepted": [any(flags) for flags in predicted],
            "predicted": predicted}


def rows_of(columns):
    """The row format of classify's columns: one object per text."""
    names = list(columns)
    return [dict(zip(names, values)) for values in zip(*(columns[name] for name in names))]


# --- TensorFlow Serving REST ------------------------------------------------------------------

@protocols.route("/v1/models/<model_name:name>:predict", methods=["POST"])
@protocols.route("/v1/models/<model_name:name>/versions/<model_name:version>:predict", methods=["POST"])
def tf_serving_predict(name, version=None):
    body = body_object(("instances", "inputs", "signature_name"))
    if body.get("signature_name", "serve_text") not in ("serve_text", "serving_default"):
        raise UserError("signature_name must be serve_text (texts in), not %r" % body["signature_name"])
    if ("instances" in body) == ("inputs" in body):
        raise UserError('send the texts as either "instances" (row format) or "inputs" (columnar), not both')
    predictor = served(name, version)
    if "instances" in body:
        return jsonify({"predictions": rows_of(classify(predictor, checked_texts(body["instances"], '"instances"')))})
    inputs = body["inputs"]
    if isinstance(inputs, dict):  # {"inputs": {"text": [...]}}, the named-input columnar form
        if set(inputs) != {"text"}:
            raise UserError('"inputs" must name the one input "text", not %s' % ", ".join(sorted(inputs)))
        inputs = inputs["text"]
    return jsonify({"outputs": classify(predictor, checked_texts(inputs, '"inputs"'))})


@protocols.route("/v1/models/<model_name:name>", methods=["GET"])
def tf_serving_status(name):
    if name != current_app.config["MODEL_NAME"]:
        raise UserError("no model named %r here (this server's MODEL_NAME is %r)"
                        % (name, current_app.config["MODEL_NAME"]), 404)
    predictor = current_app.extensions["model"].predictor
    is_ready, reason = readiness()
    state = {"version": os.path.basename(predictor.export_dir) if predictor else "",
             "state": "AVAILABLE" if is_ready else "LOADING" if predictor is None else "UNAVAILABLE",
             "status": {"error_code": "OK" if is_ready else "UNAVAILABLE", "error_message": reason}}
    return jsonify({"model_version_status": [state]})


# --- KServe / open inference protocol v2 -----------------------------------------------------

@protocols.route("/v2/health/live", methods=["GET"])
def v2_live():
    return jsonify({"live": True})


@protocols.route("/v2/health/ready", methods=["GET"])
def v2_ready():
    ready, _ = readiness()
    return jsonify({"ready": ready}), 200 if ready else 503


@protocols.route("/v2/models/<model_name:name>/ready", methods=["GET"])
def v2_model_ready(name):
    if name != current_app.config["MODEL_NAME"]:
        raise UserError("no model named %r here" % name, 404)
    ready, _ = readiness()
    return jsonify({"name": name, "ready": ready}), 200 if ready else 503


@protocols.route("/v2/models/<model_name:name>", methods=["GET"])
def v2_metadata(name):
    predictor = served(name)
    return jsonify({
        "name": name, "versions": [os.path.basename(predictor.export_dir)],
        "platform": "onnxruntime_onnx" if predictor.backend_name.startswith("onnx") else "tensorflow_savedmodel",
        "inputs": [{"name": "text", "datatype": "BYTES", "shape": [-1]}],
        "outputs": [{"name": "label", "datatype": "BYTES", "shape": [-1]},
                    {"name": "score", "datatype": "FP32", "shape": [-1]},
                    {"name": "probabilities", "datatype": "FP32", "shape": [-1, len(predictor.labels)]},
                    {"name": "accepted", "datatype": "BOOL", "shape": [-1]}]
                   + ([{"name": "predicted", "datatype": "BOOL", "shape": [-1, len(predictor.labels)]}]
                      if predictor.multi_label else []),
        "parameters": {"labels": predictor.labels, "model": model_name(predictor)},
    })


V2_OUTPUTS = ("label", "score", "probabilities", "accepted", "predicted")  # predicted: multi-label exports
# Prediction sets have no serve_text output: /predict's "coverage" gives them. Triton's client asks
# binary_data_output when it names no outputs; JSON tensors are what the protocol's base answers.
V2_PARAMETERS = ("min_confidence", "binary_data_output")


def v2_parameters(body):
    """A v2 request's "parameters", checked as /predict checks its own keys: the floor or None."""
    parameters = body.get("parameters", {})
    if not isinstance(parameters, dict):
        raise UserError('"parameters" must be an object, e.g. {"min_confidence": 0.5}')
    unknown = [key for key in parameters if key not in V2_PARAMETERS]
    if unknown:
        raise UserError('unknown parameter %r; this route takes %s (prediction sets: /predict\'s "coverage")'
                        % (unknown[0], ", ".join(V2_PARAMETERS)))
    if not isinstance(parameters.get("binary_data_output", False), bool):
        raise UserError('"binary_data_output" must be true or false (the answer is JSON either way)')
    floor, _ = parse_calibrated_options(parameters)
    return floor


@protocols.route("/v2/models/<model_name:name>/infer", methods=["POST"])
@protocols.route("/v2/models/<model_name:name>/versions/<model_name:version>/infer", methods=["POST"])
def v2_infer(name, version=None):
    body = body_object(("id", "inputs", "outputs", "parameters"))
    inputs = body.get("inputs")
    if not isinstance(inputs, list) or len(inputs) != 1 or not isinstance(inputs[0], dict):
        raise UserError('"inputs" must be a list with one tensor, {"name": "text", "datatype": "BYTES", ...}')
    tensor = inputs[0]
    if tensor.get("name") != "text" or tensor.get("datatype") != "BYTES":
        raise UserError('the input must be named "text" with datatype "BYTES"')
    texts = checked_texts(tensor.get("data"), '"data" of input "text"')  # its "shape" is informational
    if not isinstance(body.get("id", ""), str):
        raise UserError('"id" must be a string (it is echoed in the answer)')
    floor = v2_parameters(body)
    wanted = body.get("outputs")
    if wanted is not None and (not isinstance(wanted, list)
                               or not all(isinstance(o, dict) and o.get("name") in V2_OUTPUTS for o in wanted)):
        raise UserError('"outputs" must list some of %s as {"name": ...}' % ", ".join(V2_OUTPUTS))
    predictor = served(name, version)
    offered = V2_OUTPUTS if predictor.multi_label else V2_OUTPUTS[:-1]
    if wanted is None:
        wanted = [{"name": name_} for name_ in offered]
    elif any(o["name"] not in offered for o in wanted):
        raise UserError('"outputs": "predicted" is a multi-label export\'s; this one offers %s' % ", ".join(offered))
    floor, _ = offered_by(predictor, floor, None, current_app.config["MIN_CONFIDENCE"])
    columns = classify(predictor, texts, floor)
    n, k = len(texts), len(predictor.labels)
    tensors = {  # BYTES has no null: a text under the floor has the empty label and accepted false
        "label": {"name": "label", "datatype": "BYTES", "shape": [n],
                  "data": [label if label is not None else "" for label in columns["label"]]},
        "accepted": {"name": "accepted", "datatype": "BOOL", "shape": [n], "data": columns["accepted"]},
        "score": {"name": "score", "datatype": "FP32", "shape": [n], "data": columns["score"]},
        "probabilities": {"name": "probabilities", "datatype": "FP32", "shape": [n, k],
                          "data": [p for row in columns["probabilities"] for p in row]},
    }
    if predictor.multi_label:
        tensors["predicted"] = {"name": "predicted", "datatype": "BOOL", "shape": [n, k],
                                "data": [flag for row in columns["predicted"] for flag in row]}
    answer = {"model_name": name, "model_version": os.path.basename(predictor.export_dir),
              "outputs": [tensors[o["name"]] for o in wanted]}
    if "id" in body:
        answer["id"] = body["id"]
    return jsonify(answer)
