"""Several labels per text: how a row's labels are written, and how independent per-label
probabilities become a set of labels. numpy only: the trainer tunes the thresholds on the validation
split when it writes the export, and serving applies what the export recorded without TensorFlow.

- a row's labels are one string joined by the separator (`python|pandas`), split and stripped;
- label c is chosen for a text when its sigmoid probability is at least the label's threshold;
- a label's threshold is the one that maximises its F1 on the validation split (the middle of a tie);
  a label with fewer than MIN_POSITIVES_TO_TUNE validation positives is too rare to tune and gets the
  global threshold (the one threshold that maximises the micro-F1 of every label at once);
- tuned thresholds fit the validation split's noise: per-label ones when a label has few positives
  there, the global one when the model's probabilities are calibrated near the default already. So
  each is kept only if it beats the simpler choice (global over the default 0.5, per-label over
  global) on held-out halves of the validation split (2-fold cross-validation).
"""
import numpy as np

from .export_contract import DEFAULT_THRESHOLD

MIN_POSITIVES_TO_TUNE = 10
# simplest first: a tuned choice is kept only where it beats the simpler ones on held-out texts
STRATEGIES = ("fixed", "global", "per_label")
THRESHOLD_GRID = tuple(round(0.05 + 0.01 * i, 2) for i in range(91))  # 0.05, 0.06, ..., 0.95


def split_labels(raw, separator):
    """The labels of one row: `raw` split on `separator`, each stripped (empty parts kept, so a caller
    can refuse them)."""
    return [part.strip() for part in raw.split(separator)]


def multi_hot(label_sets, labels):
    """[n, len(labels)] float32 indicator matrix of each row's labels."""
    index = {label: i for i, label in enumerate(labels)}
    matrix = np.zeros((len(label_sets), len(labels)), np.float32)
    for row, chosen in enumerate(label_sets):
        matrix[row, [index[label] for label in chosen]] = 1.0
    return matrix


def decide(probabilities, thresholds):
    """[n, labels] booleans: each label whose probability reaches its threshold, compared in float32
    as the export's graph compares them (serve_text chooses what this chooses)."""
    return np.asarray(probabilities, np.float32) >= np.asarray(thresholds, np.float32)[None, :]


def f1_counts(true_pos, false_pos, false_neg):
    """F1 from counts (arrays allowed); 0 where there is nothing to be right about."""
    denominator = 2 * true_pos + false_pos + false_neg
    return np.where(denominator > 0, 2 * true_pos / np.maximum(denominator, 1), 0.0)


def _counts_per_threshold(probabilities, y):
    """(tp, fp, fn) arrays [grid, labels] for every threshold of THRESHOLD_GRID."""
    p, y = np.asarray(probabilities, np.float32), np.asarray(y) > 0.5
    grid = np.asarray(THRESHOLD_GRID, np.float32)[:, None, None]
    chosen = p[None, :, :] >= grid  # [grid, n, labels]
    true_pos = (chosen & y[None]).sum(axis=1)
    false_pos = (chosen & ~y[None]).sum(axis=1)
    false_neg = (~chosen & y[None]).sum(axis=1)
    return true_pos, false_pos, false_neg


def best_threshold(f1_by_threshold):
    """The middle of the thresholds that reach the best F1: where a plateau of equally good ones is,
    its middle stays good on texts the tuning did not see, where its lowest end would not."""
    best = np.flatnonzero(f1_by_threshold >= f1_by_threshold.max() - 1e-12)
    return float(THRESHOLD_GRID[int(best[len(best) // 2])])


def tune_thresholds(probabilities, y, min_positives=MIN_POSITIVES_TO_TUNE):
    """(thresholds per label, global threshold, which labels were tuned) for validation
    `probabilities` [n, labels] and their multi-hot truth `y`."""
    true_pos, false_pos, false_neg = _counts_per_threshold(probabilities, y)
    micro = f1_counts(true_pos.sum(axis=1), false_pos.sum(axis=1), false_neg.sum(axis=1))
    global_threshold = best_threshold(micro)
    per_label = f1_counts(true_pos, false_pos, false_neg)  # [grid, labels]
    positives = np.asarray(y).sum(axis=0)
    tuned = positives >= min_positives
    thresholds = np.where(tuned, [best_threshold(per_label[:, c]) for c in range(per_label.shape[1])],
                          global_threshold)
    return [float(t) for t in thresholds], global_threshold, [bool(t) for t in tuned]


def candidate_thresholds(probabilities, y, min_positives=MIN_POSITIVES_TO_TUNE):
    """{strategy: (thresholds per label, the threshold of labels too rare to tune, which were tuned)}
    for every one of STRATEGIES, tuned on `probabilities` and their truth `y`."""
    per_label, global_threshold, tuned = tune_thresholds(probabilities, y, min_positives)
    untuned = [False] * y.shape[1]
    return {"fixed": ([DEFAULT_THRESHOLD] * y.shape[1], DEFAULT_THRESHOLD, untuned),
            "global": ([global_threshold] * y.shape[1], global_threshold, untuned),
            "per_label": (per_label, global_threshold, tuned)}


def choose_thresholds(probabilities, y, seed=0):
    """{"thresholds", "global_threshold", "tuned", "strategy", "cv_micro_f1"}: the untuned default for
    every label ("fixed"), the global threshold for all ("global") or per-label thresholds
    ("per_label"), whichever scored the highest micro-F1 tuned on one half of the validation texts and
    scored on the other (both ways round); a tie keeps the simpler."""
    y = np.asarray(y)
    order = np.random.RandomState(seed).permutation(len(y))
    halves = (order[:len(y) // 2], order[len(y) // 2:])
    held_out = {strategy: [] for strategy in STRATEGIES}
    for tune, score in (halves, halves[::-1]):
        candidates = candidate_thresholds(probabilities[tune], y[tune], max(1, MIN_POSITIVES_TO_TUNE // 2))
        for strategy, (thresholds, _, _) in candidates.items():
            held_out[strategy].append(set_scores(y[score], decide(probabilities[score], thresholds))["micro_f1"])
    cv = {strategy: float(np.mean(scores)) for strategy, scores in held_out.items()}
    strategy = max(STRATEGIES, key=lambda name: (cv[name], -STRATEGIES.index(name)))
    thresholds, global_threshold, tuned = candidate_thresholds(probabilities, y)[strategy]
    return {"thresholds": thresholds, "global_threshold": global_threshold, "tuned": tuned,
            "strategy": strategy, "cv_micro_f1": cv}


def thresholds_of(calibration, n_labels):
    """The per-label thresholds an export's calibration record holds (DEFAULT_THRESHOLD each when it
    holds none: trained with --calibrate none)."""
    stored = calibration.get("thresholds")
    return list(map(float, stored)) if stored else [DEFAULT_THRESHOLD] * n_labels


def set_scores(y, chosen):
    """micro-F1, macro-F1 and subset accuracy of boolean decisions `chosen` against multi-hot `y`."""
    y, chosen = np.asarray(y) > 0.5, np.asarray(chosen)
    true_pos, false_pos, false_neg = ((chosen & y).sum(axis=0), (chosen & ~y).sum(axis=0),
                                      (~chosen & y).sum(axis=0))
    return {"micro_f1": float(f1_counts(true_pos.sum(), false_pos.sum(), false_neg.sum())),
            "macro_f1": float(np.mean(f1_counts(true_pos, false_pos, false_neg))),
            "subset_accuracy": float(np.mean((chosen == y).all(axis=1)))}
