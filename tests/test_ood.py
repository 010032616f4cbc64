"""`make ood`'s pieces (tools/ood.py): its scores on data whose answer is known, and its reading of a
real export's graph."""
import numpy as np
import pytest


def test_mahalanobis_scores_points_far_from_every_class_lower():
    from bert_in_a_flask.tools.ood import Mahalanobis
    rng = np.random.RandomState(0)
    centers = np.array([[5.0, 0.0, 0.0], [0.0, 5.0, 0.0]])
    y = rng.randint(0, 2, 400)
    train = centers[y] + rng.normal(size=(400, 3))
    known = centers[rng.randint(0, 2, 100)] + rng.normal(size=(100, 3))
    unknown = np.array([0.0, 0.0, 6.0]) + rng.normal(size=(100, 3))
    scorer = Mahalanobis(train, y, 2)
    assert scorer.score(known).min() > np.median(scorer.score(unknown))


@pytest.mark.slow  # reads the SO-titles wheel (make assets)
def test_split_leaves_the_chosen_tags_out_of_training_and_validation_only(tmp_path):
    from bert_in_a_flask.tools.ood import left_out_split, read_rows
    data, left_out, test_rows = left_out_split(str(tmp_path), 5, seed=0)
    assert len(left_out) == 5
    for name in ("train", "val", "test"):
        assert not {row["tags"] for row in read_rows(str(tmp_path / "known" / (name + ".csv")))} & set(left_out)
    assert set(left_out) <= {row["tags"] for row in test_rows}  # the full test split keeps them


@pytest.mark.slow  # the session's trained export
def test_the_graphs_logits_and_features_are_the_exports_own(trained):
    from bert_in_a_flask.serving.predictor import Predictor
    from bert_in_a_flask.shared import calibration
    from bert_in_a_flask.tools.ood import GraphOutputs
    texts = ["spring maven jvm", "django pip", "", "react npm webpack", "hello"]
    outputs = GraphOutputs(trained["export_dir"])
    probabilities, logits, pooled = outputs.run(texts, batch_size=2)
    outputs.session.close()
    predictor = Predictor(trained["export_dir"], backend="tf")
    assert np.abs(probabilities - predictor.predict_proba(texts)).max() < 1e-5
    temperature = predictor.config.calibration["temperature"]
    assert np.abs(calibration.softmax_at(logits, temperature) - probabilities).max() < 1e-4
    assert logits.shape == (5, 3) and pooled.shape == (5, 32)
