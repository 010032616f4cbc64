"""What a model's probabilities mean, measured and adjusted (Guo et al. 2017, "On Calibration of Modern
Neural Networks"; Angelopoulos & Bates, "A Gentle Introduction to Conformal Prediction"). numpy only:
the trainer fits these on the validation split when it writes an export, and serving applies what the
export recorded (prediction sets, the confidence floor) without TensorFlow.

- temperature scaling: one scalar T minimising the validation NLL of softmax(logits / T); it never
  moves the argmax, so labels and accuracy stay as they were;
- ECE (expected calibration error): the gap between confidence and accuracy over equal-width bins,
  and what chance alone gives a calibrated model on a split of that size;
- the confidence floor: the calibrated top probability under which a text gets no label;
- split conformal prediction, LAC score (1 - the true label's probability): a quantile per coverage
  level, and the set {labels whose probability >= 1 - quantile} per text.
"""
import math

import numpy as np

CALIBRATIONS = ("temperature", "none")  # the trainer's --calibrate
ECE_BINS = 15
COVERAGE_LEVELS = (0.8, 0.9, 0.95, 0.99)  # the levels whose conformal quantiles an export stores
CONFIDENCE_KEEPS = 0.9  # the share of validation texts the export's confidence floor keeps (--confidence-keeps)
TEMPERATURE_RANGE = (0.05, 20.0)
# The highest confidence floor an export gets: a model that sure of nearly all its validation texts
# has its top probabilities within float32's rounding of 1, where a floor would split ties at random.
MAX_FLOOR = 0.999


def log_probabilities(probabilities):
    """Logits up to a per-row constant (which softmax ignores): all temperature scaling needs."""
    return np.log(np.clip(np.asarray(probabilities, np.float64), 1e-30, 1.0))


def softmax_at(logits, temperature):
    scaled = np.asarray(logits, np.float64) / temperature
    scaled -= scaled.max(axis=1, keepdims=True)
    e = np.exp(scaled)
    return e / e.sum(axis=1, keepdims=True)


def nll(probabilities, labels):
    """Mean negative log-likelihood of the true labels (indices)."""
    p = np.asarray(probabilities, np.float64)[np.arange(len(labels)), labels]
    return float(-np.mean(np.log(np.clip(p, 1e-30, 1.0))))


def reliability(probabilities, labels, bins=ECE_BINS):
    """Per equal-width confidence bin (0-1/bins, ...): (count, mean confidence, accuracy); empty bins
    have count 0 and NaN means."""
    p = np.asarray(probabilities, np.float64)
    return _binned(p.max(axis=1), (p.argmax(axis=1) == np.asarray(labels)).astype(np.float64), bins)


def _binned(confidence, correct, bins):
    which = np.minimum((confidence * bins).astype(int), bins - 1)  # confidence 1.0 falls in the last bin
    rows = []
    for b in range(bins):
        chosen = which == b
        n = int(chosen.sum())
        rows.append((n, float(confidence[chosen].mean()) if n else math.nan,
                     float(correct[chosen].mean()) if n else math.nan))
    return rows


def _ece_of_rows(rows):
    total = sum(n for n, _, _ in rows)
    return float(sum(n / total * abs(accuracy - confidence) for n, confidence, accuracy in rows if n))


def ece(probabilities, labels, bins=ECE_BINS):
    """Expected calibration error: sum over bins of (share of texts) x |accuracy - mean confidence|."""
    return _ece_of_rows(reliability(probabilities, labels, bins))


def ece_from_sampling(probabilities, draws=200, seed=0, bins=ECE_BINS):
    """The ECE that chance alone gives a perfectly calibrated model with these confidences on this
    many texts: {"mean", "p95"} over `draws` draws in which each text is right with the probability
    its top label claims. A measured ECE under the p95 is within chance, so a calibrator has nothing
    it could reliably remove; both shrink as the split grows (about as 1 / sqrt(texts))."""
    confidence = np.asarray(probabilities, np.float64).max(axis=1)
    rng = np.random.RandomState(seed)
    eces = [_ece_of_rows(_binned(confidence, (rng.uniform(size=len(confidence)) < confidence).astype(np.float64),
                                 bins)) for _ in range(draws)]
    return {"mean": float(np.mean(eces)), "p95": float(np.percentile(eces, 95))}


def fit_temperature(logits, labels, low=TEMPERATURE_RANGE[0], high=TEMPERATURE_RANGE[1], steps=80):
    """The T in [low, high] minimising nll(softmax(logits / T)): golden-section search on log T (the
    NLL is convex in 1/T, so unimodal in log T)."""
    return fit_temperature_of(lambda t: softmax_at(logits, t), labels, low, high, steps)


def fit_temperature_of(probabilities_at, labels, low=TEMPERATURE_RANGE[0], high=TEMPERATURE_RANGE[1], steps=80):
    """fit_temperature for any `probabilities_at(T)`: e.g. a windowed text's windows scaled by T and
    then pooled, as serving pools them."""
    def loss(log_t):
        return nll(probabilities_at(math.exp(log_t)), labels)
    a, b = math.log(low), math.log(high)
    ratio = (math.sqrt(5) - 1) / 2
    c, d = b - ratio * (b - a), a + ratio * (b - a)
    fc, fd = loss(c), loss(d)
    for _ in range(steps):
        if fc < fd:
            b, d, fd = d, c, fc
            c = b - ratio * (b - a)
            fc = loss(c)
        else:
            a, c, fc = c, d, fd
            d = a + ratio * (b - a)
            fd = loss(d)
    return float(math.exp((a + b) / 2))


def confidence_floor(probabilities, keep_share):
    """The top probability that `keep_share` of these texts reach: the floor that keeps that share
    (at most MAX_FLOOR)."""
    top = np.sort(np.asarray(probabilities, np.float64).max(axis=1))
    drop = int(math.floor((1.0 - keep_share) * len(top)))
    return min(float(top[drop]), MAX_FLOOR) if drop > 0 else 0.0


def conformal_quantile(probabilities, labels, coverage):
    """Split conformal (LAC): the ceil((n + 1) coverage) / n empirical quantile of 1 - p(true label)
    over n calibration texts; 1.0 (every label) when n is too small for the level."""
    scores = np.sort(1.0 - np.asarray(probabilities, np.float64)[np.arange(len(labels)), labels])
    rank = int(math.ceil((len(scores) + 1) * coverage))
    return float(scores[rank - 1]) if rank <= len(scores) else 1.0


def prediction_sets(probabilities, quantile):
    """Per row, the label indices whose probability is at least 1 - quantile, most probable first."""
    p = np.asarray(probabilities, np.float64)
    threshold = 1.0 - quantile - 1e-12
    return [[int(i) for i in np.argsort(-row) if row[i] >= threshold] for row in p]


def set_coverage(sets, labels):
    """(share of texts whose set holds the true label, mean set size)."""
    held = [label in chosen for chosen, label in zip(sets, labels)]
    return float(np.mean(held)), float(np.mean([len(chosen) for chosen in sets]))
