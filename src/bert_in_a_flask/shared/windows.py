"""Long texts as windows (--truncate windows): the model answers each window, and the answers of a
text's windows are pooled into the text's. numpy only, the same rule as the export's serve_text
(model.py's pooled_in_graph):

- one label per text: the mean (or max) over the windows of each label's log-probability, then a
  softmax; for the mean that is softmax(mean of the windows' logits / T), the logits pooled;
- several labels per text: the mean over the windows of each label's logit, then its sigmoid; or the
  max of each label's probability.
"""
import numpy as np

# Probabilities are clipped to [EPSILON, 1 - EPSILON] before their logs or logits are pooled: float32
# resolves 1 - 1e-7, so the graph (model.pooled_in_graph) clips alike and both paths pool the same.
EPSILON = 1e-7


def owners_of(window_lists):
    """(every window's id list, flattened; the index of the text each belongs to)."""
    flat, owners = [], []
    for index, windows in enumerate(window_lists):
        flat.extend(windows)
        owners.extend([index] * len(windows))
    return flat, np.asarray(owners, np.int64)


def pool(probabilities, owners, n_texts, pooling="mean", multi_label=False):
    """[n_texts, labels] answers from the windows' `probabilities` [n_windows, labels]."""
    p = np.asarray(probabilities, np.float64)
    if len(owners) == n_texts:  # one window per text: nothing to pool
        return np.asarray(probabilities, np.float32)
    if multi_label and pooling == "max":
        return _segment(p, owners, n_texts, "max").astype(np.float32)
    clipped = np.clip(p, EPSILON, 1.0 - EPSILON)
    scores = np.log(clipped / (1.0 - clipped)) if multi_label else np.log(clipped)
    pooled = _segment(scores, owners, n_texts, pooling)
    if multi_label:
        return (1.0 / (1.0 + np.exp(-pooled))).astype(np.float32)
    pooled -= pooled.max(axis=1, keepdims=True)
    e = np.exp(pooled)
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


def _segment(values, owners, n_texts, how):
    if how == "max":
        out = np.full((n_texts, values.shape[1]), -np.inf)
        np.maximum.at(out, owners, values)
        return out
    sums = np.zeros((n_texts, values.shape[1]))
    np.add.at(sums, owners, values)
    return sums / np.bincount(owners, minlength=n_texts)[:, None]
