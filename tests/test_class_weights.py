"""--class-weights (training/class_weights.py): the weights, and every bad file refused in one line."""
import json

import pytest

from bert_in_a_flask.shared.errors import UserError
from bert_in_a_flask.training import class_weights

LABELS = ["java", "python", "rare"]
TRAIN = [["java"]] * 60 + [["python"]] * 30 + [["rare"]] * 10  # each training row's labels


def test_balanced_weighs_every_class_alike_in_all():
    weights = class_weights.resolve("balanced", TRAIN, LABELS)
    assert weights == pytest.approx([100 / (3 * 60), 100 / (3 * 30), 100 / (3 * 10)])
    counts = [60, 30, 10]
    assert [w * c for w, c in zip(weights, counts)] == pytest.approx([100 / 3] * 3)
    assert class_weights.resolve("none", TRAIN, LABELS) is None


def test_balanced_positive_weights_for_several_labels_per_text():
    rows = [["java", "python"]] * 20 + [["python"]] * 60 + [["rare", "java"]] * 20  # 100 rows
    weights = class_weights.resolve("balanced", rows, LABELS, multi_label=True)
    # a label's positives weigh as much in all as its negatives: java 40 of 100, python 80, rare 20
    assert weights == pytest.approx([60 / 40, 20 / 80, 80 / 20])


def test_a_file_sets_some_labels_and_the_rest_weigh_one(tmp_path):
    path = tmp_path / "w.json"
    path.write_text(json.dumps({"rare": 4, "java": 0.5}))
    assert class_weights.resolve(str(path), TRAIN, LABELS) == [0.5, 1.0, 4.0]


@pytest.mark.parametrize("content,message", [
    (None, "no such file"),
    ("{not json", "is not valid JSON"),
    ("[1, 2]", "must hold a JSON object"),
    ('{"rust": 2}', "names labels the training data does not have: 'rust'"),
    ('{"rare": 0}', "gives 'rare' the weight 0; weights must be positive numbers"),
    ('{"rare": "2"}', "gives 'rare' the weight \"2\""),
    ('{"rare": true}', "gives 'rare' the weight true"),
    ('{"rare": 1%s}' % ("0" * 400), "gives 'rare' the weight 1000"),  # an integer beyond any float
])
def test_a_bad_weights_file_is_one_error_naming_the_flag(tmp_path, content, message):
    path = tmp_path / "w.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(UserError) as raised:
        class_weights.resolve(str(path), TRAIN, LABELS)
    assert str(raised.value).startswith("--class-weights: ") and message in str(raised.value)
