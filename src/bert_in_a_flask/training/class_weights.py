"""--class-weights: how much each label's examples weigh in the training loss (weighted cross-entropy),
for classes of very different sizes. `balanced` gives label c the weight n / (k n_c), sklearn's rule,
so every class weighs as much in all as any other; a FILE is a JSON object {label: weight}. Checked
against the training split's labels before anything is written.

With several labels per text (--label-separator) a weight multiplies that label's positives in its
binary cross-entropy (a positive weight): `balanced` gives label c (n - n_c) / n_c, so its positives
weigh as much in all as its negatives."""
import json
import os

from ..shared.errors import UserError

CHOICES = ("none", "balanced")


def resolve(spec, train_label_sets, labels, multi_label=False):
    """The weight of each of `labels` (in their order) for --class-weights `spec`, or None for `none`.
    `train_label_sets`: each training row's labels (one per row unless `multi_label`)."""
    if spec == "none":
        return None
    if spec == "balanced":
        counts = {label: 0 for label in labels}
        for row_labels in train_label_sets:
            for label in row_labels:
                counts[label] += 1
        if multi_label:  # a label on every row has no negatives to balance against: it keeps weight 1
            n = float(len(train_label_sets))
            return [(n - counts[label]) / counts[label] if 0 < counts[label] < n else 1.0 for label in labels]
        n, k = float(sum(counts.values())), float(len(labels))
        return [n / (k * counts[label]) if counts[label] else 0.0 for label in labels]
    return from_file(spec, labels)


def from_file(path, labels):
    """{label: weight} from a JSON file; labels it leaves out weigh 1."""
    if not os.path.isfile(path):
        raise UserError("--class-weights: no such file %s (or use balanced or none)" % path)
    try:
        with open(path, encoding="utf-8") as handle:
            given = json.load(handle)
    except (ValueError, UnicodeDecodeError) as exc:
        raise UserError("--class-weights: %s is not valid JSON: %s" % (path, exc))
    if not isinstance(given, dict) or not given:
        raise UserError('--class-weights: %s must hold a JSON object {"label": weight, ...}' % path)
    unknown = sorted(set(given) - set(labels))
    if unknown:
        raise UserError("--class-weights: %s names labels the training data does not have: %s (labels: %s)"
                        % (path, ", ".join(map(repr, unknown[:5])), ", ".join(labels)))
    for label, weight in given.items():
        if not _is_weight(weight):
            raise UserError("--class-weights: %s gives %r the weight %s; weights must be positive numbers"
                            % (path, label, json.dumps(weight)))
    return [float(given.get(label, 1.0)) for label in labels]


def _is_weight(value):
    """A positive finite number (JSON integers have no bound: one too large for a float is not)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return 0 < float(value) < float("inf")
    except OverflowError:
        return False
