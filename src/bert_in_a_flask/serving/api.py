"""The API's routes, as a Blueprint: /predict and the service endpoints. Request parsing lives here;
the model comes from the app's `ModelSlot` (app.py), so these functions never load anything."""
import json
import os
import select
import socket

from flask import Blueprint, Response, current_app, g, jsonify, request

from ..shared.errors import UserError
from . import openapi
from .slot import model_name
from .backends import tf_version

api = Blueprint("api", __name__)
ROUTES = {"/predict": ["POST"], "/health_check": ["GET"], "/ready": ["GET"], "/metadata": ["GET"],
          "/metrics": ["GET"], "/openapi.json": ["GET"]}


@api.route("/predict", methods=["POST"])
def predict():
    config = current_app.config
    body = read_json_body(config["MAX_CONTENT_LENGTH"])
    texts = parse_texts(body, config["MAX_TEXTS"])
    top_k, all_scores = parse_options(body)
    min_confidence, coverage = parse_calibrated_options(body)
    g.n_texts, g.characters = len(texts), sum(len(t) for t in texts)
    # One predictor for the whole request, leased until it ends: a hot reload may publish another
    # meanwhile, and the answer must name the model that computed it.
    g.predictor = leased_predictor()
    min_confidence, coverage = offered_by(g.predictor, min_confidence, coverage, config["MIN_CONFIDENCE"])
    answer = g.predictor.predict(texts, client_gone_probe(), min_confidence, coverage,
                                 max_sequences=config["MAX_TEXTS"])
    shape_answer(answer, top_k, all_scores)
    current_app.extensions["metrics"].observe_batch(len(texts))
    g.predictions = answer["predictions"]
    if config["LOG_TEXTS"]:
        g.texts = texts
    answer["model"] = model_name(g.predictor)
    return jsonify(answer)


@api.route("/health_check", methods=["GET"])
def health_check():
    return jsonify({"text": "I am alive"})


@api.route("/ready", methods=["GET"])
def ready():
    is_ready, reason = readiness()
    if not is_ready:
        return jsonify({"ready": False, "reason": reason}), 503
    return jsonify({"ready": True, "model": model_name()})


def readiness():
    """(ready, reason): the one rule of every readiness route (ours, KServe's, TF Serving's status)."""
    predictor = current_app.extensions["model"].predictor
    if predictor is None:
        return False, "loading the model"
    if not getattr(predictor, "healthy", True):
        return False, "the micro-batcher stopped"
    return True, ""


def leased_predictor():
    """The predictor this request runs on, held until the request ends (slot.py)."""
    return current_app.extensions["model"].lease_for_request(current_app.config["PREDICT_TIMEOUT_S"])


def client_gone_probe():
    """A function telling whether this request's caller closed its connection, or None where the
    server does not hand the socket over (gunicorn does, as environ["gunicorn.socket"])."""
    sock = request.environ.get("gunicorn.socket")
    if sock is None:
        return None

    def gone():
        try:
            readable, _, _ = select.select([sock], [], [], 0)
            return bool(readable) and sock.recv(1, socket.MSG_PEEK) == b""  # readable and empty: closed
        except (OSError, ValueError):  # reset, or already closed
            return True
    return gone


@api.route("/metadata", methods=["GET"])
def metadata():
    settings = current_app.config
    predictor = g.predictor = leased_predictor()
    config = predictor.config
    answer = {
        "model": model_name(predictor), "export_dir": predictor.export_dir,
        "version": os.path.basename(predictor.export_dir),
        "labels": predictor.labels,
        "hot_reload": {"poll_s": settings["MODEL_POLL_S"], "pinned_version": settings["MODEL_VERSION"] or None},
        "max_seq_length": config.max_seq_length, "do_lower_case": config.do_lower_case,
        "truncate": config.truncate, "base_model": config.base_model, "created": config.created,
        "val_metrics": config.val_metrics, "format_version": config.format_version,
        "backend": predictor.backend_name, "onnx": config.onnx,
        "calibrated": predictor.calibrated, "calibration": config.calibration,
        "min_confidence": predictor.confidence_floor(settings["MIN_CONFIDENCE"]),
        "coverage_levels": sorted(predictor.coverage_quantiles()),
        "tf_version": tf_version(), "build": {"date": settings["BUILD_DATE"], "git_sha": settings["GIT_SHA"]},
        "micro_batching": settings["MICRO_BATCHING"],
        "limits": {"max_texts": settings["MAX_TEXTS"], "max_batch_size": settings["MAX_BATCH_SIZE"],
                   "max_content_length": settings["MAX_CONTENT_LENGTH"],
                   "max_pending_texts": settings["MAX_PENDING_TEXTS"],
                   "predict_timeout_s": settings["PREDICT_TIMEOUT_S"]},
    }
    if config.truncate == "windows":  # as multi_label: absent for the exports that existed before
        answer.update(window_stride=config.window_stride, max_windows=config.max_windows,
                      window_pooling=config.window_pooling, window_loss=config.window_loss)
    if config.multi_label:  # a single-label export's metadata stays as it was
        answer.update(multi_label=True, label_separator=config.label_separator,
                      thresholds=dict(zip(predictor.labels, predictor.thresholds())))
    return jsonify(answer)


@api.route("/metrics", methods=["GET"])
def metrics():
    from .metrics import CONTENT_TYPE
    return Response(current_app.extensions["metrics"].render(), content_type=CONTENT_TYPE)


@api.route("/openapi.json", methods=["GET"])
def openapi_json():
    return jsonify(openapi.spec(current_app.config["MAX_TEXTS"], docs_page="docs_page" in current_app.blueprints))


def read_json_body(max_bytes):
    """The decoded JSON body, read with a size limit (werkzeug 2.2 checks none for JSON)."""
    if not request.is_json:
        raise UserError("send a JSON body with Content-Type: application/json", 415)
    too_large = UserError("the body is over %d bytes" % max_bytes, 413)
    if request.content_length is not None and request.content_length > max_bytes:
        raise too_large
    data = request.stream.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise too_large
    try:
        return json.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise UserError("the body is not valid UTF-8")
    except (ValueError, RecursionError):
        raise UserError("the body is not valid JSON (or nested too deeply)")


PREDICT_KEYS = ("X", "top_k", "return_all_scores", "min_confidence", "coverage")


def is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def parse_calibrated_options(body):
    """(min_confidence or None, coverage or None) of a /predict body (null or absent: None), typed
    before any model is leased: a number in [0, 1], a number. Which coverage levels are offered is the
    export's to say (offered_by, after the lease), so a number out of (0, 1) gets the same answer as
    any other level not offered: the levels to send instead."""
    floor, coverage = body.get("min_confidence"), body.get("coverage")
    if floor is not None and (not is_number(floor) or not 0.0 <= floor <= 1.0):
        raise UserError('"min_confidence" must be a number in [0, 1], not %s' % json.dumps(floor))
    if coverage is not None and not is_number(coverage):
        raise UserError('"coverage" must be a number, one of /metadata coverage_levels, not %s'
                        % json.dumps(coverage))
    return floor, coverage


def offered_by(predictor, floor, coverage, min_confidence_setting):
    """(the confidence floor, the coverage level or None) for this export: without a request's floor,
    MIN_CONFIDENCE's; a coverage level must be one whose conformal quantile the export stores. A
    multi-label export takes neither: its labels are chosen by their own thresholds."""
    if predictor.multi_label:
        for name, value in (("min_confidence", floor), ("coverage", coverage)):
            if value is not None:
                raise UserError('"%s": this export is multi-label; each label is chosen by its own threshold '
                                '(see /metadata thresholds)' % name)
        return 0.0, None
    if floor is None:
        floor = predictor.confidence_floor(min_confidence_setting)
    if coverage is not None:
        levels = predictor.coverage_quantiles()
        if not levels:
            raise UserError('"coverage": this export has no conformal quantiles (it was trained with '
                            '--calibrate none, or before calibration existed)')
        if float(coverage) not in levels:
            raise UserError('"coverage" %s is not offered; this export offers %s'
                            % (json.dumps(coverage), ", ".join("%g" % level for level in sorted(levels))))
        coverage = float(coverage)
    return float(floor), coverage


def parse_options(body):
    """(top_k or None, return_all_scores) of a /predict body whose keys parse_texts checked."""
    top_k = body.get("top_k")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
        raise UserError('"top_k" must be a positive integer, not %s' % json.dumps(top_k))
    all_scores = body.get("return_all_scores", True)
    if not isinstance(all_scores, bool):
        raise UserError('"return_all_scores" must be true or false, not %s' % json.dumps(all_scores))
    return top_k, all_scores


def shape_answer(answer, top_k, all_scores):
    """Add the `top_k` best labels per text ({"label", "score"}, best first); drop `probabilities`
    when return_all_scores is false."""
    if top_k is not None:
        answer["top_k"] = [[{"label": label, "score": score} for label, score in
                            sorted(scores.items(), key=lambda item: -item[1])[:top_k]]
                           for scores in answer["probabilities"]]
    if not all_scores:
        del answer["probabilities"]


def parse_texts(body, max_texts):
    """The `X` list of a /predict body, or a UserError saying what is wrong with it."""
    if isinstance(body, dict):
        unknown = [key for key in body if key not in PREDICT_KEYS]
        if unknown:
            raise UserError('unknown key %s in the body; /predict takes "X" (the list of texts), "top_k", '
                            '"return_all_scores", "min_confidence" and "coverage"' % json.dumps(unknown[0]))
    if not isinstance(body, dict) or "X" not in body:
        raise UserError('the body must be a JSON object with a list of texts under "X"')
    texts = body["X"]
    if not isinstance(texts, list):
        raise UserError('"X" must be a list of strings, not %s' % type(texts).__name__)
    if not texts:
        raise UserError('"X" is empty: send at least one text')
    if len(texts) > max_texts:
        raise UserError('"X" has %d texts; at most %d per request' % (len(texts), max_texts), 413)
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise UserError('"X"[%d] must be a string, not %s' % (i, type(text).__name__))
    return texts
