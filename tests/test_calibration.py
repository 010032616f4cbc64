"""The calibration maths (shared/calibration.py) on data whose answers are known."""
import numpy as np
import pytest

from bert_in_a_flask.shared import calibration as cal


def overconfident(n=4000, labels=5, seed=0, sharpen=3.0):
    """Texts drawn from a calibrated softmax, then reported with sharpened logits (T = 1/sharpen
    would make them over-confident by that factor): the truth is a temperature of `sharpen`."""
    rng = np.random.RandomState(seed)
    logits = rng.normal(scale=1.5, size=(n, labels))
    true_p = cal.softmax_at(logits, 1.0)
    y = np.array([rng.choice(labels, p=row) for row in true_p])
    return logits * sharpen, y


def test_temperature_scaling_recovers_the_known_temperature_and_fixes_the_ece():
    logits, y = overconfident(sharpen=3.0)
    t = cal.fit_temperature(logits, y)
    assert t == pytest.approx(3.0, rel=0.1)
    before, after = cal.softmax_at(logits, 1.0), cal.softmax_at(logits, t)
    assert cal.ece(after, y) < 0.02 < cal.ece(before, y) / 2
    assert cal.nll(after, y) < cal.nll(before, y)


def test_temperature_never_moves_the_argmax():
    logits, _ = overconfident(n=500)
    for t in (0.1, 0.7, 3.0, 19.0):
        assert (cal.softmax_at(logits, t).argmax(axis=1) == logits.argmax(axis=1)).all()


def test_log_probabilities_are_logits_up_to_a_constant():
    logits, _ = overconfident(n=50)
    p = cal.softmax_at(logits, 1.0)
    assert np.allclose(cal.softmax_at(cal.log_probabilities(p), 2.5), cal.softmax_at(logits, 2.5), atol=1e-9)


def test_ece_of_a_perfectly_calibrated_bin_is_zero_and_of_a_liar_is_its_gap():
    # 10 texts at confidence 0.8, 8 right: calibrated. Then the same told as 1.0: gap 0.2.
    p = np.tile([[0.8, 0.2]], (10, 1))
    y = np.array([0] * 8 + [1] * 2)
    assert cal.ece(p, y) == pytest.approx(0.0)
    assert cal.ece(np.tile([[1.0, 0.0]], (10, 1)), y) == pytest.approx(0.2)
    counts = [n for n, _, _ in cal.reliability(p, y)]
    assert sum(counts) == 10 and counts[12] == 10  # 0.8 lies in bin 12 of 15 (0.8-0.867)


def test_the_ece_from_sampling_is_what_a_calibrated_model_shows_and_shrinks_with_the_split():
    # Labels drawn from the probabilities themselves: calibrated, so its ECE is chance alone.
    rng = np.random.RandomState(1)
    floors = []
    for n in (500, 8000):
        p = cal.softmax_at(rng.normal(scale=2.0, size=(n, 5)), 1.0)
        y = np.array([rng.choice(5, p=row) for row in p])
        floors.append(cal.ece_from_sampling(p))
        assert 0.0 < floors[-1]["mean"] < floors[-1]["p95"]
        assert cal.ece(p, y) < 1.5 * floors[-1]["p95"]
    assert floors[1]["p95"] < floors[0]["p95"] / 2  # 16 times the texts: about a quarter of it
    logits, y = overconfident(sharpen=3.0)  # an over-confident model is far above it
    assert cal.ece(cal.softmax_at(logits, 1.0), y) > 5 * cal.ece_from_sampling(cal.softmax_at(logits, 1.0))["p95"]


def test_the_confidence_floor_keeps_the_stated_share():
    p = cal.softmax_at(overconfident(n=1000)[0], 1.0)
    floor = cal.confidence_floor(p, 0.9)
    assert np.mean(p.max(axis=1) >= floor) == pytest.approx(0.9, abs=0.002)
    assert cal.confidence_floor(p, 1.0) == 0.0


@pytest.mark.parametrize("coverage", [0.8, 0.9, 0.95])
def test_conformal_sets_hold_the_true_label_at_the_level_on_new_data(coverage):
    logits, y = overconfident(n=6000, seed=1, sharpen=1.0)  # calibrated: the sets are honest
    p = cal.softmax_at(logits, 1.0)
    q = cal.conformal_quantile(p[:3000], y[:3000], coverage)
    held, size = cal.set_coverage(cal.prediction_sets(p[3000:], q), y[3000:])
    assert abs(held - coverage) < 0.02 and size >= 1.0


def test_conformal_sets_are_sorted_and_a_tiny_calibration_set_gives_every_label():
    p = np.array([[0.1, 0.6, 0.3]])
    assert cal.prediction_sets(p, 0.75) == [[1, 2]]
    assert cal.conformal_quantile(p, np.array([1]), 0.9) == 1.0  # n = 1 cannot certify 90 %
    assert cal.prediction_sets(p, 1.0) == [[1, 2, 0]]


# --- what /predict makes of an export's calibration (a fake model: no TensorFlow) -----------------

import json  # noqa: E402

from helpers import FakePredictor  # noqa: E402

from bert_in_a_flask.serving import settings  # noqa: E402
from bert_in_a_flask.serving.app import create_app  # noqa: E402

CALIBRATION = {"method": "temperature", "temperature": 1.7, "min_confidence": 0.85, "min_confidence_keeps": 0.9,
               "conformal": {"score": "lac", "n": 100, "quantiles": {"0.8": 0.15, "0.9": 0.85}}}


class CalibratedFake(FakePredictor):
    """Answers java 0.9 for "jvm" texts, else python 0.8, from an export with CALIBRATION recorded."""

    @property
    def config(self):
        from bert_in_a_flask.shared.export_contract import ExportConfig
        return ExportConfig(max_seq_length=16, do_lower_case=True, base_model="fake", calibration=CALIBRATION)


def client_for(tmp_path, predictor, **environ):
    return create_app(settings.from_env(environ, LOG_FILE=str(tmp_path / "calls.log")),
                      predictor=predictor).test_client()


def test_a_text_under_the_exports_floor_gets_null_a_reason_and_keeps_its_probabilities(tmp_path):
    answer = client_for(tmp_path, CalibratedFake()).post("/predict", json={"X": ["spring jvm", "x"]}).get_json()
    assert answer["predictions"] == ["java", None] and answer["prediction_probs"] == [0.9, 0.8]
    assert answer["min_confidence"] == 0.85
    assert answer["reasons"] == [None, "top probability 0.800 is under min_confidence 0.85"]
    assert answer["probabilities"][1] == {"java": 0.2, "python": 0.8}


def test_the_floor_is_set_per_request_and_per_server(tmp_path):
    client = client_for(tmp_path, CalibratedFake())
    assert client.post("/predict", json={"X": ["x"], "min_confidence": 0.5}).get_json()["predictions"] == ["python"]
    none = client.post("/predict", json={"X": ["x"], "min_confidence": 0}).get_json()
    assert none["predictions"] == ["python"] and "reasons" not in none
    server = client_for(tmp_path, CalibratedFake(), MIN_CONFIDENCE="0.95")
    assert server.post("/predict", json={"X": ["spring jvm"]}).get_json()["predictions"] == [None]
    assert server.get("/metadata").get_json()["min_confidence"] == 0.95


def test_an_uncalibrated_export_answers_as_before_and_says_so(tmp_path):
    client = client_for(tmp_path, FakePredictor())
    answer = client.post("/predict", json={"X": ["spring jvm", "x"]}).get_json()
    assert answer["predictions"] == ["java", "python"] and "reasons" not in answer and "min_confidence" not in answer
    meta = client.get("/metadata").get_json()
    assert meta["calibrated"] is False and meta["calibration"] == {} and meta["coverage_levels"] == []
    refused = client.post("/predict", json={"X": ["x"], "coverage": 0.9})
    assert refused.status_code == 400 and "no conformal quantiles" in refused.get_json()["error"]


def test_coverage_returns_the_conformal_set_of_each_text(tmp_path):
    client = client_for(tmp_path, CalibratedFake())
    # q(0.9) = 0.85: labels with probability >= 0.15 are in the set; q(0.8) = 0.15: >= 0.85.
    wide = client.post("/predict", json={"X": ["spring jvm", "x"], "coverage": 0.9}).get_json()
    assert wide["coverage"] == 0.9 and wide["prediction_sets"] == [["java"], ["python", "java"]]
    narrow = client.post("/predict", json={"X": ["spring jvm", "x"], "coverage": 0.8}).get_json()
    assert narrow["prediction_sets"] == [["java"], []]
    assert client.get("/metadata").get_json()["coverage_levels"] == [0.8, 0.9]


@pytest.mark.parametrize("body,message", [
    ({"min_confidence": 1.5}, '"min_confidence" must be a number in [0, 1], not 1.5'),
    ({"min_confidence": -0.1}, '"min_confidence" must be a number in [0, 1], not -0.1'),
    ({"min_confidence": "0.5"}, '"min_confidence" must be a number in [0, 1], not "0.5"'),
    ({"min_confidence": True}, '"min_confidence" must be a number in [0, 1], not true'),
    ({"coverage": 1}, '"coverage" 1 is not offered; this export offers 0.8, 0.9'),
    ({"coverage": 0}, '"coverage" 0 is not offered; this export offers 0.8, 0.9'),
    ({"coverage": "0.9"}, '"coverage" must be a number, one of /metadata coverage_levels, not "0.9"'),
    ({"coverage": True}, '"coverage" must be a number, one of /metadata coverage_levels, not true'),
    ({"coverage": 0.85}, '"coverage" 0.85 is not offered; this export offers 0.8, 0.9'),
])
def test_bad_calibration_options_are_400s_naming_the_field(tmp_path, body, message):
    response = client_for(tmp_path, CalibratedFake()).post("/predict", json=dict({"X": ["x"]}, **body))
    assert response.status_code == 400 and response.get_json()["error"] == message, response.get_json()
    assert json.dumps(response.get_json())


def test_a_bad_min_confidence_setting_is_one_error_naming_it():
    from bert_in_a_flask.shared.errors import UserError
    for raw in ("1.2", "high", "-1"):
        with pytest.raises(UserError, match="MIN_CONFIDENCE must be export or a number in"):
            settings.from_env({"MIN_CONFIDENCE": raw})
    assert settings.from_env({"MIN_CONFIDENCE": "Export"})["MIN_CONFIDENCE"] == "export"


@pytest.mark.parametrize("flags,message", [
    (["--calibrate", "none", "--confidence-keeps", "0.8"], "which --calibrate none does not choose"),
    (["--label-separator", "|", "--confidence-keeps", "0.8"], "which a multi-label model does not have"),
])
def test_confidence_keeps_is_refused_where_no_floor_is_chosen(capsys, flags, message):
    from bert_in_a_flask.training.cli import parse_args
    with pytest.raises(SystemExit) as stop:
        parse_args(flags)
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error: ")]
    assert stop.value.code == 2 and len(errors) == 1 and errors[0].startswith("error: --confidence-keeps sets")
    assert message in errors[0]


def test_confidence_keeps_defaults_to_the_one_shared_default():
    from bert_in_a_flask.shared.calibration import CONFIDENCE_KEEPS
    from bert_in_a_flask.training.cli import parse_args
    assert parse_args([]).confidence_keeps == CONFIDENCE_KEEPS
    assert parse_args(["--confidence-keeps", "0.8"]).confidence_keeps == 0.8
    assert parse_args(["--calibrate", "none"]).confidence_keeps == CONFIDENCE_KEEPS  # recorded, never used
