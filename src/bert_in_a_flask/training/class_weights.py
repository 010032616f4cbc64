"""--class-weights: how much each label's examples weigh in the training loss (weighted cross-entropy),
for classes of very different sizes. `balanced` gives label c the weight n / (k n_c), sklearn's rule,
so every class weighs as much in all as any other; a FILE is a JSON object {label: weight}. Checked
against the training split's labels before anything is written."""
import json
import os

from ..shared.errors import UserError

CHOICES = ("none", "balanced")


def resolve(spec, train_labels, labels):
    """The weight of each of `labels` (in their order) for --class-weights `spec`, or None for `none`.
    `train_labels`: the training split's label column."""
    if spec == "none":
        return None
    if spec == "balanced":
        counts = {label: 0 for label in labels}
        for label in train_labels:
            counts[label] += 1
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
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not 0 < weight < float("inf"):
            raise UserError("--class-weights: %s gives %r the weight %s; weights must be positive numbers"
                            % (path, label, json.dumps(weight)))
    return [float(given.get(label, 1.0)) for label in labels]
