"""The int8 copy: onnxruntime's dynamic quantization of the verified model.onnx (int8 weights,
activations quantized per batch), kept only when it loses at most MAX_INT8_ACCURACY_DROP points of
accuracy on labelled texts against the fp32 file."""
import contextlib
import logging
import os

import numpy as np

from ..serving.predictor import Predictor
from ..shared.errors import UserError
from ..shared.export_contract import ONNX_FILE, ONNX_INT8_FILE
from ..shared.files import file_sha256
from ..shared.multilabel import split_labels

log = logging.getLogger(__name__)

QUANTIZATIONS = ("none", "int8")
MAX_INT8_ACCURACY_DROP = 0.5  # points of validation accuracy int8 may lose against fp32


def quantize_int8(export_dir, texts, labels):
    """model.int8.onnx from the verified model.onnx, kept when its accuracy on the labelled texts is
    within MAX_INT8_ACCURACY_DROP points of fp32's. Returns the `int8` record."""
    from onnx import TensorProto
    from onnxruntime.quantization import QuantType, quantize_dynamic

    if not texts or labels is None or len(labels) != len(texts):
        raise UserError("--quantize int8 needs labelled texts to judge accuracy by (the validation split)")
    fp32, final = os.path.join(export_dir, ONNX_FILE), os.path.join(export_dir, ONNX_INT8_FILE)
    tmp = "%s.tmp-%d" % (final, os.getpid())
    try:
        # ONNX's shape inference does not know the fused kernels (onnx_fusion.py), so the quantizer is
        # told the type it cannot infer (the tensors it asks about are float32 activations), and its
        # root-logger warning for each such tensor (~100) is held back.
        with root_log_level(logging.ERROR):
            quantize_dynamic(fp32, tmp, weight_type=QuantType.QInt8,
                             extra_options={"DefaultTensorType": TensorProto.FLOAT})
        accuracy = {name: accuracy_of(export_dir, path, texts, labels) for name, path in (("fp32", fp32),
                                                                                           ("int8", tmp))}
        drop = 100 * (accuracy["fp32"] - accuracy["int8"])
        record = {"file": ONNX_INT8_FILE, "sha256": file_sha256(tmp), "n_texts": len(texts),
                  "fp32_accuracy": accuracy["fp32"], "int8_accuracy": accuracy["int8"],
                  "accuracy_drop_points": drop, "max_drop_points": MAX_INT8_ACCURACY_DROP,
                  "accepted": drop <= MAX_INT8_ACCURACY_DROP}
        if record["accepted"]:
            os.replace(tmp, final)
        log.info("onnx: %s/%s %s: accuracy %.2f%% (fp32 %.2f%%) on %d labelled texts", export_dir, ONNX_INT8_FILE,
                 "accepted" if record["accepted"] else "rejected (drop > %g points)" % MAX_INT8_ACCURACY_DROP,
                 100 * accuracy["int8"], 100 * accuracy["fp32"], len(texts))
        return record
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def accuracy_of(export_dir, onnx_file, texts, labels):
    """The share of `texts` the export's labels and tokenizer, run on `onnx_file`, label right: the
    top label, or a multi-label export's whole set of labels. `labels`: per text its label, or its
    labels (a list; a string of a multi-label export is split on its separator)."""
    predictor = Predictor(export_dir, onnx_file=onnx_file)
    try:
        answered = predictor.label_sets(predictor.predict_proba(list(texts)))
        truth = [set(truth_of(label, predictor.config)) for label in labels]
        return float(np.mean([got == want for got, want in zip(answered, truth)]))
    finally:
        predictor.close()


def truth_of(label, config):
    if not isinstance(label, str):
        return label
    return split_labels(label, config.label_separator) if config.multi_label else [label]


@contextlib.contextmanager
def root_log_level(level):
    root = logging.getLogger()
    before = root.level
    root.setLevel(level)
    try:
        yield
    finally:
        root.setLevel(before)
