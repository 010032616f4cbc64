"""The trainer: data -> records -> model_fn -> estimator -> best-checkpoint exporter -> export."""
# bert's modeling imports tensorflow.contrib.layers, which TF 2 lacks; tf_compat puts tf-slim's in
# its place, so it is imported before any training module imports bert.
from ..shared import tf_compat  # noqa: F401

from bert import modeling as _modeling  # noqa: E402 (after tf_compat)

tf_compat.tune_bert_for_training(_modeling)
