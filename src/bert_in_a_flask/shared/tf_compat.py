"""The only module that knows whether TensorFlow is 1.15 or 2.x.

Everything else imports `tf` (the TF1-style API) from here, and the trainer bert's `tokenization`.
bert-tensorflow 1.0.4 already writes against `tensorflow.compat.v1`; its one
TF1-only import is `tensorflow.contrib.layers` (for `layer_norm`, in `modeling`), which
TF 2 does not have. tf-slim ships the same `layer_norm`, so on TF 2 we register it
under that name here, before the trainer imports bert's `modeling` (see training/__init__.py).
"""
import os
import sys
import types

# TF's C++ start-up chatter (on a CPU box: "failed call to cuInit", cuDNN/cuBLAS factory lines) reads
# like a failure; the trainer says in one plain line which devices it uses instead. Set
# TF_CPP_MIN_LOG_LEVEL=0 to see it all again.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import tensorflow as _tf  # noqa: E402 (after TF_CPP_MIN_LOG_LEVEL is set)

TF_VERSION = _tf.__version__
IS_TF2 = TF_VERSION.startswith("2.")
tf = _tf.compat.v1

if IS_TF2:
    # bert reads `tensor.shape[-1].value`, a TF1 TensorShape idiom.
    tf.disable_v2_tensorshape()
    try:  # the trainer's; a serving install with TensorFlow (BACKEND=tf) has no tf-slim and needs none
        import tf_slim
    except ImportError:
        tf_slim = None
    if tf_slim is not None:
        _contrib = types.ModuleType("tensorflow.contrib")
        _contrib.layers = tf_slim.layers
        sys.modules.setdefault("tensorflow.contrib", _contrib)
        sys.modules.setdefault("tensorflow.contrib.layers", tf_slim.layers)



def __getattr__(name):
    """`tokenization`, bert's module, imported when the trainer first asks for it (serving with
    BACKEND=tf needs TensorFlow only, not bert)."""
    if name != "tokenization":
        raise AttributeError(name)
    from absl import flags as absl_flags
    from bert import tokenization
    # bert defines absl flags at import and its tokenizer reads one of them; nobody parses absl
    # flags in our processes, so they are marked parsed (their defaults).
    if not absl_flags.FLAGS.is_parsed():
        absl_flags.FLAGS.mark_as_parsed()
    return tokenization

if not IS_TF2:
    # Resource variables, TF 2's default, on TF 1.15 too: one variable semantics (reads ordered
    # against assignments) on both runtimes, and one code path for the replica-safe optimizer.
    tf.enable_resource_variables()

# TF's logger has a handler of its own; drop it so its lines go through the app's logging once.
_tf_logger = tf.get_logger()
_tf_logger.handlers = []
_tf_logger.propagate = True
tf.logging.set_verbosity(tf.logging.INFO)
try:  # the estimator API is all "deprecated" on TF 2; one warning per call drowns the progress lines
    from tensorflow.python.util import deprecation as _deprecation
    _deprecation._PRINT_DEPRECATION_WARNINGS = False
except ImportError:  # pragma: no cover
    pass


class _ModuleWith:
    """A module as it is, but for the attributes given."""

    def __init__(self, module, **overrides):
        self._module = module
        self.__dict__.update(overrides)

    def __getattr__(self, name):
        return getattr(self._module, name)


def _lookup_in_a_plain_read(params, ids, *args, **kwargs):
    if hasattr(params, "read_value"):  # a variable, also a mirrored one (not tf.Variable on TF 1.15)
        params = params.read_value()
    return tf.nn.embedding_lookup(params, ids, *args, **kwargs)


def _tf_for_bert_training(module):
    """`tensorflow.compat.v1` as bert's modeling sees it in the trainer: everything as it is, except
    two ops whose speed on a CPU we measured (a profiled MiniLM-L6 training step, both runtimes):

    - `tf.nn.embedding_lookup` on a variable looks up in a plain read of it. bert's word-embedding
      lookup on the variable is a ResourceGather, which puts the 30,522-row table in
      "copy-on-read" mode for good: from then on every dense read or update of it (the AdamW
      step, the checkpoint) first copies all 47 MB (the update ran 2.5x slower).
    - on TF 2, `tf.einsum` builds MatMul/BatchMatMul ops (TF 1.15's own einsum) instead of TF 2's
      Einsum op, whose gradients made TF 2.15 train slower than TF 1.15 (forward + backward of
      one batch: 681 ms with Einsum ops, 416 ms with matmuls, one measurement).
    """
    overrides = {"nn": _ModuleWith(module.nn, embedding_lookup=_lookup_in_a_plain_read)}
    if IS_TF2:
        from tensorflow.python.ops import special_math_ops
        overrides["einsum"] = special_math_ops._einsum_v1
    return _ModuleWith(module, **overrides)


def tune_bert_for_training(modeling):
    """Point bert's `modeling` at the ops above (the trainer does this once, at import)."""
    if not isinstance(modeling.tf, _ModuleWith):
        modeling.tf = _tf_for_bert_training(modeling.tf)


def session_config(intra_op_threads=0, inter_op_threads=0):
    """TF thread pools (0 lets TF pick: one thread per core)."""
    return tf.ConfigProto(intra_op_parallelism_threads=intra_op_threads,
                          inter_op_parallelism_threads=inter_op_threads)
