"""The trainer: data -> records -> model_fn -> estimator -> best-checkpoint exporter -> export."""
# bert's modeling imports tensorflow.contrib.layers, which TF 2 lacks; tf_compat puts tf-slim's in
# its place, so it is imported before any training module imports bert.
from ..shared import tf_compat  # noqa: F401
